package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	lvd "github.com/kumoi/kumoi/internal/libvirtd"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// libvirtd is a libvirt daemon of the test's own (internal/libvirtd):
// libvirt's test driver served on a unix socket, so domains outlive the
// workers that define them.
type libvirtd struct {
	*lvd.Daemon
	uri string
}

func startLibvirtd(t *testing.T) *libvirtd {
	t.Helper()
	d := lvd.StartT(t)
	return &libvirtd{Daemon: d, uri: d.URI}
}

// virsh runs virsh against uri and returns its output.
func virsh(uri string, args ...string) (string, error) {
	return lvd.Virsh(context.Background(), uri, args...)
}

// domState is a domain's state as virsh reports it ("" if it is not
// defined).
func (d *libvirtd) domState(t *testing.T, name string) string {
	t.Helper()
	st, err := d.DomState(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func clusterID(t *testing.T, c *testcluster.Cluster) string {
	t.Helper()
	var id string
	testcluster.WaitFor(t, leaderTimeout, "the cluster to have an identity", func() (bool, error) {
		var st resource.Status
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		if err := testcluster.GetJSON(ctx, c.HTTPClient(), c.URL(0)+"/v1/status", &st); err != nil {
			return false, err
		}
		id = st.ClusterID
		return id != "", nil
	})
	return id
}

func readID(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cluster_id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestForeignDomainOfAnotherCluster is issue 10's scenario on real
// processes: a worker of a first cluster runs a VM's domain on a libvirtd
// (libvirt's test driver, served remotely, so the domain outlives the
// worker) and is stopped. A worker of a second, fresh cluster started on
// the same libvirtd with a fresh data directory leaves that domain
// running and lists it as foreign in its host's status. The first worker,
// restarted with its data directory against the second cluster, refuses
// to start: it exits non-zero, naming both identities and the reset.
func TestForeignDomainOfAnotherCluster(t *testing.T) {
	lv := startLibvirtd(t)
	hc := httpClient()
	libvirtArgs := []string{"--hypervisor", "libvirt", "--libvirt-uri", lv.uri}
	const host = "lv-1"

	// The first cluster runs "keep" on the libvirtd.
	c1 := newCluster(t, testcluster.Options{Controllers: 1})
	c1.WaitLeader(leaderTimeout)
	id1 := clusterID(t, c1)
	dir1 := t.TempDir()
	// Without a fence guard: the point is a domain of cluster 1 that still
	// runs when cluster 2's worker meets it (with its guard, cluster 1
	// would stop it once its worker is gone, as docs/ha.md says).
	w1 := c1.AddWorker(host, append(libvirtArgs, "--data-dir", dir1, "--fence-guard", "off")...)
	c1.WaitHostState(host, resource.HostReady, hostReadyWithin)
	mustCreateVM(t, c1, hc, "keep", "none")
	testcluster.WaitFor(t, vmRunningWithin, "keep to run on "+host, func() (bool, error) {
		return lv.domState(t, "kumoi-keep") == "running", nil
	})
	if got := readID(t, dir1); got != id1 {
		t.Fatalf("%s/cluster_id = %q, want the first cluster's %s", dir1, got, id1)
	}
	meta, err := virsh(lv.uri, "metadata", "kumoi-keep", "https://kumoi.dev/xmlns/domain/1")
	if err != nil || !strings.Contains(meta, "<cluster>"+id1+"</cluster>") {
		t.Fatalf("kumoi-keep's Kumoi metadata %q (%v) does not carry the cluster %s", meta, err, id1)
	}
	c1.StopWorker(w1)
	c1.StopAll()
	if st := lv.domState(t, "kumoi-keep"); st != "running" {
		t.Fatalf("kumoi-keep is %q after its worker stopped, want running (domains outlive the worker)", st)
	}

	// A second, fresh cluster's worker on the same libvirtd.
	c2 := newCluster(t, testcluster.Options{Controllers: 1})
	c2.WaitLeader(leaderTimeout)
	id2 := clusterID(t, c2)
	if id1 == id2 {
		t.Fatalf("two clusters share the identity %s", id1)
	}
	dir2 := t.TempDir()
	w2 := c2.AddWorker(host, append(libvirtArgs, "--data-dir", dir2)...)
	// Ready comes after the first reconciliation, which would have
	// removed a domain it took for a stale one of its own.
	c2.WaitHostState(host, resource.HostReady, hostReadyWithin)
	if st := lv.domState(t, "kumoi-keep"); st != "running" {
		t.Fatalf("the first cluster's kumoi-keep is %q once the second cluster's worker is ready, want running", st)
	}
	testcluster.WaitFor(t, hostReadyWithin, "the second cluster's host to list kumoi-keep as foreign", func() (bool, error) {
		_, hs, err := c2.Host(host)
		if err != nil {
			return false, err
		}
		if !slices.Equal(hs.ForeignDomains, []string{"kumoi-keep"}) || hs.ForeignDomainCount != 1 {
			return false, fmt.Errorf("foreign_domains %v, foreign_domain_count %d", hs.ForeignDomains, hs.ForeignDomainCount)
		}
		return true, nil
	})
	if got := readID(t, dir2); got != id2 {
		t.Fatalf("%s/cluster_id = %q, want the second cluster's %s", dir2, got, id2)
	}
	// The second cluster's own VMs still run there.
	mustCreateVM(t, c2, hc, "fresh", "none")
	testcluster.WaitFor(t, vmRunningWithin, "fresh to run on "+host, func() (bool, error) {
		return lv.domState(t, "kumoi-fresh") == "running", nil
	})
	if st := lv.domState(t, "kumoi-keep"); st != "running" {
		t.Fatalf("the first cluster's kumoi-keep is %q under the second cluster's worker, want running", st)
	}
	c2.StopWorker(w2)

	// The first worker, with its data directory, against the second
	// cluster: it refuses to start.
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Stretch(30*time.Second))
	defer cancel()
	cmd := exec.CommandContext(ctx, testcluster.Binary(t, ""), append([]string{"agent", "--worker",
		"--node-id", host, "--bind", c2.WorkerIP(w2), "--gossip-port", strconv.Itoa(testcluster.GossipPort),
		"--join", c2.GossipAddr(0), "--data-dir", dir1, "--log-level", "info"}, libvirtArgs...)...)
	cmd.Env = testcluster.CLIEnv(os.Environ())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if ctx.Err() != nil || !errors.As(err, &exit) || exit.ExitCode() <= 0 {
		t.Fatalf("the first cluster's worker against the second cluster: %v (context: %v), want a non-zero exit; output:\n%s", err, ctx.Err(), out)
	}
	reset := "remove " + filepath.Join(dir1, "cluster_id")
	for _, want := range []string{id1, id2, reset, "--join"} {
		if !strings.Contains(string(out), "kumoi: ") || !strings.Contains(string(out), want) {
			t.Fatalf("the refusal does not say %q; output:\n%s", want, out)
		}
	}
	t.Logf("refused with exit code %d", exit.ExitCode())
	if st := lv.domState(t, "kumoi-keep"); st != "running" {
		t.Fatalf("kumoi-keep is %q after the refused start, want running", st)
	}
	if got := readID(t, dir1); got != id1 {
		t.Fatalf("the refused worker's cluster_id became %q, want %s kept", got, id1)
	}
}
