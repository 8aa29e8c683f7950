package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

const (
	idA = "8c5abbd7-b7cd-437b-b566-a6ff509150e4"
	idB = "7c1f0d3e-2a4b-4c5d-8e9f-0a1b2c3d4e5f"
)

// TestMetaForeignFits: however many foreign domains there are, the
// advertised metadata fits memberlist's limit (ready and leaving set, the
// largest labels allowed), names what fits (at most MaxForeignDomains)
// and counts them all, with the migration modes.
func TestMetaForeignFits(t *testing.T) {
	labels := map[string]string{}
	for i := 0; i < 8; i++ {
		labels[fmt.Sprintf("key-%d", i)] = strings.Repeat("v", 20)
	}
	for _, n := range []int{1, 5, 40, 200} {
		var names []string
		for i := 0; i < n; i++ {
			names = append(names, fmt.Sprintf("kumoi-a-rather-long-vm-name-%03d", i))
		}
		for _, lb := range []map[string]string{nil, labels} {
			w := &Worker{cfg: Config{NodeID: "hv-1", CPUs: 64, MemoryMiB: 1 << 20, Labels: lb, DriverName: "libvirt"},
				cluster: idA, foreign: names, leaving: true}
			m := w.meta(context.Background(), true)
			if _, err := m.Encode(); err != nil {
				t.Fatalf("%d foreign domains, labels %v: %v", n, lb != nil, err)
			}
			// With the largest labels, even one long name may not fit
			// beside the migration modes: the count still says.
			if m.ForeignCount != n || len(m.Foreign) == 0 && lb == nil || len(m.Foreign) > min(n, resource.MaxForeignDomains) {
				t.Fatalf("%d foreign domains: named %d, count %d", n, len(m.Foreign), m.ForeignCount)
			}
			if !slices.Equal(m.Migrate, []string{resource.MigrationRestart}) {
				t.Fatalf("meta migrate %q: a driver that is no Migrator migrates by restart only", m.Migrate)
			}
			if m.Cluster != idA {
				t.Fatalf("meta cluster %q, want %s", m.Cluster, idA)
			}
		}
	}
}

func TestIsForeign(t *testing.T) {
	w := &Worker{cluster: idA}
	for _, tc := range []struct {
		d    hypervisor.DomainInfo
		want bool
	}{
		{hypervisor.DomainInfo{Name: "kumoi-a", Kumoi: true, Cluster: idA}, false},
		{hypervisor.DomainInfo{Name: "kumoi-b", Kumoi: true, Cluster: idB}, true},
		{hypervisor.DomainInfo{Name: "kumoi-old", Kumoi: true}, false}, // an older build's: this cluster's
		{hypervisor.DomainInfo{Name: "someone-elses"}, false},          // untagged: not Kumoi's at all
	} {
		if got := w.isForeign(tc.d); got != tc.want {
			t.Errorf("isForeign(%+v) = %v, want %v", tc.d, got, tc.want)
		}
	}
	if (&Worker{}).isForeign(hypervisor.DomainInfo{Kumoi: true, Cluster: idB}) {
		t.Error("a worker that knows no cluster yet called a domain foreign")
	}
}

func TestClusterIDFile(t *testing.T) {
	dir := t.TempDir()
	if id, err := readClusterID(dir); err != nil || id != "" {
		t.Fatalf("empty dir: %q, %v", id, err)
	}
	if err := writeClusterID(dir, idA); err != nil {
		t.Fatal(err)
	}
	if id, err := readClusterID(dir); err != nil || id != idA {
		t.Fatalf("read back %q, %v", id, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ClusterIDFile), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readClusterID(dir); err == nil || !strings.Contains(err.Error(), "not a cluster id") {
		t.Fatalf("a damaged cluster_id: %v", err)
	}
}
