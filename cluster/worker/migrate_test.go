package worker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/resource"
)

func testWorker(drv hypervisor.Driver) *Worker {
	return &Worker{cfg: Config{NodeID: "hv-1", ShutdownGrace: time.Second, MigrationTimeout: time.Minute}, cluster: idA, drv: drv,
		logger: hclog.NewNullLogger(), stopping: map[string]bool{}, shutdowns: map[string]*pendingShutdown{},
		out: map[string]*outMig{}, in: map[string]*inMig{}, arrivals: map[string]uint64{}, reported: map[string]resource.VMReport{}}
}

func TestMigrationModes(t *testing.T) {
	full := sim.New(sim.Options{})
	defer full.Close()
	if got := testWorker(full).migrationModes(); !slices.Equal(got, []string{"live", "restart"}) {
		t.Errorf("sim: %v", got)
	}
	noLive := sim.New(sim.Options{Capabilities: hypervisor.NewCapabilities(hypervisor.CapEvents)})
	defer noLive.Close()
	if got := testWorker(noLive).migrationModes(); !slices.Equal(got, []string{"restart"}) {
		t.Errorf("sim without live-migration: %v", got)
	}
}

func simSpec(name string) hypervisor.DomainSpec {
	return hypervisor.DomainSpec{Name: name, VMID: "vm-" + name, Epoch: 3, Cluster: idA, CPUs: 1, MemoryMiB: 64}
}

// TestFenceDestroysArrivals: fencing stops an incoming migration's
// domain (prepared or arrived, paused) as it stops any domain of the
// cluster, and cancels an outgoing one first.
func TestFenceDestroysArrivals(t *testing.T) {
	ctx := context.Background()
	drv := sim.New(sim.Options{})
	defer drv.Close()
	w := testWorker(drv)
	if _, err := drv.PrepareIncoming(ctx, simSpec("kumoi-in")); err != nil {
		t.Fatal(err)
	}
	canceled := false
	w.out["x"] = &outMig{id: 1, cancel: func() { canceled = true }}
	w.fence(ctx)
	d, err := drv.Get(ctx, "kumoi-in")
	if err != nil || d.State.Active() {
		t.Fatalf("the arrival after fencing: %+v, %v", d, err)
	}
	if !canceled {
		t.Error("fencing did not cancel the outgoing migration")
	}
}

// TestMigrateOutOutcomes: what the source says of a migration: done with
// the downtime, failed with the hypervisor's reason (the guest runs
// here), done after a restart's shutdown.
func TestMigrateOutOutcomes(t *testing.T) {
	ctx := context.Background()
	a, b := sim.New(sim.Options{}), sim.New(sim.Options{MigrationDowntime: 5 * time.Millisecond})
	defer a.Close()
	defer b.Close()
	w := testWorker(a)
	for _, n := range []string{"kumoi-one", "kumoi-two", "kumoi-three"} {
		if err := a.Define(ctx, simSpec(n)); err != nil {
			t.Fatal(err)
		}
		if err := a.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	uri, err := b.PrepareIncoming(ctx, simSpec("kumoi-one"))
	if err != nil {
		t.Fatal(err)
	}
	if ev := w.migrateOut(ctx, ctx, "kumoi-one", uri, resource.MigrationLive); ev == nil || ev.Event != resource.MigrationDone || ev.DowntimeMS < 0 {
		t.Fatalf("live: %+v", ev)
	}
	if !b.Arrived("kumoi-one") {
		t.Fatal("nothing arrived")
	}
	ev := w.migrateOut(ctx, ctx, "kumoi-two", uri, resource.MigrationLive) // not prepared there
	if ev == nil || ev.Event != resource.MigrationFailed || ev.Reason == "" {
		t.Fatalf("live to a target that did not prepare: %+v", ev)
	}
	if d, err := a.Get(ctx, "kumoi-two"); err != nil || d.State != hypervisor.StateRunning {
		t.Fatalf("after the failed migration: %+v, %v", d, err)
	}
	if ev := w.migrateOut(ctx, ctx, "kumoi-three", "", resource.MigrationRestart); ev == nil || ev.Event != resource.MigrationDone {
		t.Fatalf("restart: %+v", ev)
	}
	if d, err := a.Get(ctx, "kumoi-three"); err != nil || d.State.Active() {
		t.Fatalf("after the restart migration: %+v, %v", d, err)
	}
}

// TestMigrateOutNoDomain: a source without the domain says nothing while
// the migration lasts (the target may confirm an earlier run's), failed
// once it is aborted or times out, and nothing when the worker itself
// stops.
func TestMigrateOutNoDomain(t *testing.T) {
	drv := sim.New(sim.Options{})
	defer drv.Close()
	w := testWorker(drv)
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	ctx, abort := context.WithTimeout(parent, 50*time.Millisecond)
	defer abort()
	if ev := w.migrateOut(parent, ctx, "kumoi-none", "sim://x/1", resource.MigrationLive); ev == nil || ev.Event != resource.MigrationFailed {
		t.Fatalf("timed out: %+v, want failed", ev)
	}
	ctx2, cancel2 := context.WithCancel(parent)
	defer cancel2()
	stop()
	if ev := w.unknownOutcome(parent, ctx2, "kumoi-none", true); ev != nil {
		t.Fatalf("worker stopping: %+v, want nothing said", ev)
	}
}

// TestFinishArrivalKeepsTheOnlyCopy: an arrival that cannot be finished
// yet is kept and tried again, never removed; once finished it runs.
func TestFinishArrivalKeepsTheOnlyCopy(t *testing.T) {
	ctx := context.Background()
	a, b := sim.New(sim.Options{}), sim.New(sim.Options{MigrationDowntime: time.Millisecond})
	defer a.Close()
	defer b.Close()
	s := simSpec("kumoi-arr")
	if err := a.Define(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx, s.Name); err != nil {
		t.Fatal(err)
	}
	uri, err := b.PrepareIncoming(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.MigrateOut(ctx, s.Name, uri, hypervisor.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	w := testWorker(b)
	w.notes = map[string]note{}
	w.arrivals["arr"] = 9
	d, _ := b.Get(ctx, s.Name)
	v := &vmPass{o: &resource.Object{Name: "arr"}, st: &resource.VMStatus{Epoch: 9, Reason: "live-migrated from a"}, name: s.Name, d: d}
	b.InjectFault(sim.OpFinishIncoming, sim.Fault{Times: 1})
	if !w.finishArrival(ctx, v) {
		t.Fatal("a failed finish did not make the pass wait")
	}
	if d, err := b.Get(ctx, s.Name); err != nil || d.State != hypervisor.StatePaused {
		t.Fatalf("the arrival after a failed finish: %+v, %v", d, err)
	}
	if w.finishArrival(ctx, v) || v.d.State != hypervisor.StateRunning || w.arrivals["arr"] != 0 || w.notes["arr"].reason == "" {
		t.Fatalf("after the finish: %+v arrivals %v notes %v", v.d, w.arrivals, w.notes)
	}
}
