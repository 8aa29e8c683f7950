package jepsen

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/resource"
)

// TestPlacementSimMigrationLogs runs the sim driver's live migration
// between two simulated hosts (as a worker drives it: prepare on the
// target, migrate out of the source, retag and finish on the target) and
// feeds both hosts' observation logs to the placement checker: a clean
// migration is no double run, and the source's stop is logged no later
// than the arrival's start. A cancelled migration leaves the VM on the
// source, with nothing logged on the target.
func TestPlacementSimMigrationLogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	driver := func(host string) (*sim.Driver, string) {
		path := filepath.Join(dir, host+".jsonl")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		d := sim.New(sim.Options{Host: host, CPUs: 4, MemoryMiB: 4096, ObservationLog: f, MigrationLatency: 20 * time.Millisecond})
		t.Cleanup(func() { d.Close() })
		return d, path
	}
	src, srcLog := driver("h1")
	dst, dstLog := driver("h2")
	spec := func(vm string, epoch uint64) hypervisor.DomainSpec {
		return hypervisor.DomainSpec{Name: hypervisor.DomainName(vm), VMID: "id-" + vm, Epoch: epoch, CPUs: 1, MemoryMiB: 256}
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	waitRunning := func(d *sim.Driver, name string) {
		t.Helper()
		must("wait for "+name, pollEvery(ctx, 10*time.Second, 5*time.Millisecond, func() bool {
			in, err := d.Get(ctx, name)
			return err == nil && in.State == hypervisor.StateRunning
		}))
	}
	for _, vm := range []string{"a", "b"} {
		must("define "+vm, src.Define(ctx, spec(vm, 5)))
		must("start "+vm, src.Start(ctx, hypervisor.DomainName(vm)))
		waitRunning(src, hypervisor.DomainName(vm))
	}

	// a: migrated.
	uri, err := dst.PrepareIncoming(ctx, spec("a", 5))
	must("prepare a", err)
	if _, err := src.MigrateOut(ctx, hypervisor.DomainName("a"), uri, hypervisor.MigrateOptions{}); err != nil {
		t.Fatalf("migrate a: %v", err)
	}
	must("retag a", dst.Define(ctx, spec("a", 9)))
	must("finish a", dst.FinishIncoming(ctx, hypervisor.DomainName("a")))
	waitRunning(dst, hypervisor.DomainName("a"))

	// b: cancelled while it is copied; it runs on the source again and
	// the target removes what it prepared.
	uri, err = dst.PrepareIncoming(ctx, spec("b", 5))
	must("prepare b", err)
	mctx, mcancel := context.WithTimeout(ctx, 5*time.Millisecond)
	_, err = src.MigrateOut(mctx, hypervisor.DomainName("b"), uri, hypervisor.MigrateOptions{})
	mcancel()
	if err == nil {
		t.Fatal("migrate b: no error, want the cancelled copy's")
	}
	must("abort b", dst.AbortIncoming(ctx, hypervisor.DomainName("b")))
	waitRunning(src, hypervisor.DomainName("b"))

	p := &Placement{capacity: map[string]resource.Resources{"h1": {CPUs: 4, MemoryMiB: 4096}, "h2": {CPUs: 4, MemoryMiB: 4096}},
		start: time.Now().Add(-time.Minute), end: time.Now(),
		obs:   map[string][]hypervisor.Observation{},
		final: []placedVM{migratedIn("a", "h1", "h2", 9), running("b", "h1", 5)}}
	for host, path := range map[string]string{"h1": srcLog, "h2": dstLog} {
		obs, bad, err := ReadObservations(path)
		must("read "+path, err)
		if len(bad) > 0 {
			t.Fatalf("bad lines in %s: %q", path, bad)
		}
		p.obs[host] = obs
	}
	var lines []string
	for _, h := range []string{"h1", "h2"} {
		for _, o := range p.obs[h] {
			lines = append(lines, h+" "+o.Event+" "+o.Domain)
		}
	}
	want := []string{"h1 start kumoi-a", "h1 start kumoi-b", "h1 stop kumoi-a", "h2 start kumoi-a"}
	if !slices.Equal(lines, want) {
		t.Errorf("observations %q, want %q", lines, want)
	}
	if s, a := p.obs["h1"][2], p.obs["h2"][0]; s.Time.After(a.Time) {
		t.Errorf("the source's stop (%s) is logged after the arrival's start (%s)", s.Time, a.Time)
	}
	chk := p.Check([]Op{createOp("a", 1, 256, StatusOK), createOp("b", 1, 256, StatusOK),
		migrateOp("a", 1, StatusOK, "from=h1 to=h2 id=7 mode=live"), migrateOp("b", 2, StatusOK, "from=h1 to=h2 id=8 mode=live")}, nil, t.TempDir())
	if !chk.Valid {
		t.Fatalf("a clean sim migration is flagged: %+v", chk.Anomalies)
	}
}
