package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// otherCluster is the identity of "another cluster" in these tests.
const otherCluster = "7c1f0d3e-2a4b-4c5d-8e9f-0a1b2c3d4e5f"

func hostStatusOf(t *testing.T, c *client.Client, name string) *resource.HostStatus {
	t.Helper()
	o, _, err := c.Get(context.Background(), resource.KindHost, name, &client.QueryOptions{Stale: true})
	if err != nil {
		return nil
	}
	st, _ := resource.DecodeStatus[resource.HostStatus](o)
	return st
}

func startDomain(t *testing.T, drv hypervisor.Driver, s hypervisor.DomainSpec) {
	t.Helper()
	if err := drv.Define(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if err := drv.Start(context.Background(), s.Name); err != nil {
		t.Fatal(err)
	}
}

// TestForeignDomainsLeftAlone: a host that already runs two Kumoi domains
// of another cluster (and an untagged-cluster one of an older build that
// is assigned to nobody) joins a cluster. The worker learns the cluster's
// identity from its controllers and records it in its data directory; it
// removes the older build's stale domain (its own cluster's, as before),
// lists the other cluster's domains as foreign in the host's status, and
// never stops them: not in removing stale domains, not when a VM of this
// cluster wants the same domain name (that VM fails, saying why), not
// when it fences after losing its controllers. Its own VM's domain carries
// the cluster identity and is fenced.
func TestForeignDomainsLeftAlone(t *testing.T) {
	var obs syncBuffer
	drv := sim.New(sim.Options{Host: "fh", CPUs: 8, MemoryMiB: 16384, ObservationLog: &obs})
	theirs := hypervisor.DomainSpec{Name: "kumoi-theirs", VMID: uuid.NewString(), Epoch: 4, Cluster: otherCluster, CPUs: 1, MemoryMiB: 256}
	clash := hypervisor.DomainSpec{Name: "kumoi-clash", VMID: uuid.NewString(), Epoch: 5, Cluster: otherCluster, CPUs: 1, MemoryMiB: 256}
	old := hypervisor.DomainSpec{Name: "kumoi-old", VMID: uuid.NewString(), Epoch: 2, CPUs: 1, MemoryMiB: 64}
	for _, s := range []hypervisor.DomainSpec{theirs, clash, old} {
		startDomain(t, drv, s)
	}

	a := startTestAgent(t, "f-ctl", "127.0.0.44", 1)
	dataDir := filepath.Join(t.TempDir(), "worker")
	w, err := worker.Start(worker.Config{NodeID: "fh", BindIP: "127.0.0.45", Join: []string{"127.0.0.44:7402"},
		Driver: drv, DriverName: "sim", DataDir: dataDir,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: newTestWriter(t)}).Named("fh")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Kill(); drv.Close() })
	c, err := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "the host to be ready, listing the other cluster's domains as foreign", func() (bool, error) {
		hs := hostStatusOf(t, c, "fh")
		if hs == nil || hs.State != resource.HostReady {
			return false, nil
		}
		if !slices.Equal(hs.ForeignDomains, []string{"kumoi-clash", "kumoi-theirs"}) || hs.ForeignDomainCount != 2 {
			return false, errors.New("foreign domains " + strings.Join(hs.ForeignDomains, ","))
		}
		return true, nil
	})
	id := a.Controller().ClusterID()
	if id == "" || w.ClusterID() != id {
		t.Fatalf("worker cluster %q, controller cluster %q", w.ClusterID(), id)
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, worker.ClusterIDFile)); err != nil || strings.TrimSpace(string(b)) != id {
		t.Fatalf("%s/cluster_id = %q, %v; want %s", dataDir, b, err, id)
	}
	if _, err := drv.Get(context.Background(), old.Name); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("an older build's stale domain (no cluster: this cluster's) was not removed: %v", err)
	}

	createTestVM(t, c, "mine", `{"cpus":1,"memory_mib":256}`)
	createTestVM(t, c, "clash", `{"cpus":1,"memory_mib":256}`)
	testcluster.WaitFor(t, 15*time.Second, "mine running", running(t, c, "mine"))
	testcluster.WaitFor(t, 15*time.Second, "clash failed: its domain name belongs to another cluster", func() (bool, error) {
		_, st := vmStatus(t, c, "clash")
		return st != nil && st.Phase == resource.PhaseFailed && strings.Contains(st.Reason, "another cluster"), nil
	})
	if d, err := drv.Get(context.Background(), "kumoi-mine"); err != nil || d.Cluster != id {
		t.Fatalf("kumoi-mine: %+v, %v; want tagged with cluster %s", d, err, id)
	}

	// The controller goes: the worker fences its own cluster's VM only.
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "the worker to fence kumoi-mine", func() (bool, error) {
		d, err := drv.Get(context.Background(), "kumoi-mine")
		return err == nil && !d.State.Active(), err
	})
	for _, s := range []hypervisor.DomainSpec{theirs, clash} {
		d, err := drv.Get(context.Background(), s.Name)
		if err != nil || d.State != hypervisor.StateRunning || d.VMID != s.VMID || d.Cluster != otherCluster {
			t.Fatalf("%s of another cluster: %+v, %v; want it running, untouched", s.Name, d, err)
		}
	}
	for _, o := range obs.observations(t) {
		if o.Event == hypervisor.ObserveStop && (o.Domain == theirs.Name || o.Domain == clash.Name) {
			t.Fatalf("a domain of another cluster was stopped: %+v", o)
		}
	}
}

// TestWorkerRefusesOtherCluster: a worker whose data directory remembers
// another cluster than its --join controllers' does not start: Done
// closes and Err names both identities and how to reset. With the file
// removed it joins, adopts the controllers' cluster, and leaves its old
// cluster's domains alone as foreign.
func TestWorkerRefusesOtherCluster(t *testing.T) {
	a := startTestAgent(t, "r-ctl", "127.0.0.41", 1)
	c, err := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	testcluster.WaitFor(t, 15*time.Second, "the controller to know its cluster", func() (bool, error) {
		id = a.Controller().ClusterID()
		return id != "", nil
	})
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, worker.ClusterIDFile), []byte(otherCluster+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	drv := sim.New(sim.Options{Host: "rh"})
	t.Cleanup(func() { drv.Close() })
	startDomain(t, drv, hypervisor.DomainSpec{Name: "kumoi-before", VMID: uuid.NewString(), Epoch: 1, Cluster: otherCluster, CPUs: 1, MemoryMiB: 64})
	cfg := worker.Config{NodeID: "rh", BindIP: "127.0.0.42", Join: []string{"127.0.0.41:7402"},
		Driver: drv, DriverName: "sim", DataDir: dataDir,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: newTestWriter(t)}).Named("rh")}
	w, err := worker.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Done():
	case <-time.After(testcluster.Stretch(15 * time.Second)):
		w.Kill()
		t.Fatal("a worker of another cluster did not stop")
	}
	_ = w.Shutdown(context.Background())
	msg := w.Err().Error()
	if !errors.Is(w.Err(), worker.ErrOtherCluster) || !strings.Contains(msg, id) || !strings.Contains(msg, otherCluster) ||
		!strings.Contains(msg, "remove "+filepath.Join(dataDir, worker.ClusterIDFile)) || !strings.Contains(msg, "--join") {
		t.Fatalf("refusal %q: want ErrOtherCluster naming %s and %s, the file to remove and --join", msg, id, otherCluster)
	}
	t.Logf("refused: %s", msg)
	if hs := hostStatusOf(t, c, "rh"); hs != nil {
		t.Fatalf("a refused worker got a host object: %+v", hs)
	}
	if d, err := drv.Get(context.Background(), "kumoi-before"); err != nil || d.State != hypervisor.StateRunning {
		t.Fatalf("kumoi-before: %+v, %v; want running", d, err)
	}

	// Reset as the message says: the host moves to this cluster.
	if err := os.Remove(filepath.Join(dataDir, worker.ClusterIDFile)); err != nil {
		t.Fatal(err)
	}
	w, err = worker.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Kill)
	testcluster.WaitFor(t, 15*time.Second, "the reset host to be ready, with its old cluster's domain foreign", func() (bool, error) {
		hs := hostStatusOf(t, c, "rh")
		return hs != nil && hs.State == resource.HostReady && slices.Equal(hs.ForeignDomains, []string{"kumoi-before"}), nil
	})
	if w.ClusterID() != id {
		t.Fatalf("reset worker's cluster %q, want %s", w.ClusterID(), id)
	}
	if d, err := drv.Get(context.Background(), "kumoi-before"); err != nil || d.State != hypervisor.StateRunning {
		t.Fatalf("kumoi-before: %+v, %v; want running", d, err)
	}
}
