package conformance

import (
	"context"
	"errors"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
)

// migrators returns this test's driver (the source) and a second one
// (the target) as Migrators, each with its environment; it skips the
// test for a driver without CapLiveMigration.
func (e *env) migrators() (src hypervisor.Migrator, dst *env, dm hypervisor.Migrator) {
	e.t.Helper()
	e.needCap(hypervisor.CapLiveMigration)
	src, ok := e.d.(hypervisor.Migrator)
	if !ok {
		// A driver whose capability list runs ahead of its code: the
		// worker does not migrate live with it either.
		e.t.Skipf("the driver claims %s but is no hypervisor.Migrator", hypervisor.CapLiveMigration)
	}
	dst = newEnv(e.t, e.newDriver, e.h)
	dm, ok = dst.d.(hypervisor.Migrator)
	if !ok {
		e.t.Fatal("the second driver is no hypervisor.Migrator")
	}
	return src, dst, dm
}

// prepare prepares dst to receive s, checks that it is idempotent and
// that nothing runs there yet, and returns the URI.
func (e *env) prepare(dst *env, dm hypervisor.Migrator, s hypervisor.DomainSpec) string {
	e.t.Helper()
	dst.mu.Lock()
	dst.names = append(dst.names, s.Name) // cleaned up with the target
	dst.mu.Unlock()
	uri, err := dm.PrepareIncoming(e.ctx(), s)
	e.must("PrepareIncoming", err)
	if uri == "" {
		e.t.Fatal("PrepareIncoming returned no URI")
	}
	again, err := dm.PrepareIncoming(e.ctx(), s)
	e.must("PrepareIncoming again", err)
	if again != uri {
		e.t.Errorf("PrepareIncoming again: URI %q, want %q", again, uri)
	}
	running, err := dm.Incoming(e.ctx(), s.Name)
	e.must("Incoming before the migration", err)
	if running {
		e.t.Fatalf("Incoming %s: running before anything was migrated", s.Name)
	}
	return uri
}

// testMigrate: prepare on B, migrate out of A, finish on B: A has no
// domain, B runs it with the same VM id, and it can be retagged there.
func testMigrate(e *env) {
	src, dst, dm := e.migrators()
	s := e.running()
	uri := e.prepare(dst, dm, s)
	if in, err := dst.d.Get(e.ctx(), s.Name); err == nil && in.State == hypervisor.StateRunning {
		e.t.Fatalf("the target runs %s before the migration", s.Name)
	}
	res, err := src.MigrateOut(e.ctx(), s.Name, uri, hypervisor.MigrateOptions{CopyStorage: true})
	e.must("MigrateOut", err)
	e.t.Logf("migrated %s to %s; downtime %v", s.Name, uri, res.Downtime)
	if res.Downtime < 0 {
		e.t.Errorf("downtime %v", res.Downtime)
	}
	if _, err := e.d.Get(e.ctx(), s.Name); !errors.Is(err, hypervisor.ErrNotFound) {
		e.t.Fatalf("the source still has %s after the migration (err %v)", s.Name, err)
	}
	e.must("FinishIncoming", dm.FinishIncoming(e.ctx(), s.Name))
	in := dst.waitState(s.Name, hypervisor.StateRunning)
	if !in.Kumoi || in.VMID != s.VMID || in.Cluster != s.Cluster {
		e.t.Fatalf("the arrival: %+v, want VM %s of cluster %s", in, s.VMID, s.Cluster)
	}
	running, err := dm.Incoming(e.ctx(), s.Name)
	e.must("Incoming after FinishIncoming", err)
	if !running {
		e.t.Error("Incoming after FinishIncoming: not running")
	}
	e.must("FinishIncoming again", dm.FinishIncoming(e.ctx(), s.Name))
	// The target's worker retags it with the epoch that passed to it.
	s.Epoch++
	e.must("Define (retag)", dst.d.Define(e.ctx(), s))
	if in := dst.get(s.Name); in.Epoch != s.Epoch || in.State != hypervisor.StateRunning {
		e.t.Fatalf("after the retag: %+v, want epoch %d, running", in, s.Epoch)
	}
}

// testMigrateCancel: a migration cancelled before it switches over
// leaves the guest running on the source; AbortIncoming cleans the
// target.
func testMigrateCancel(e *env) {
	src, dst, dm := e.migrators()
	e.needHook(e.h.SlowMigrations != nil, "SlowMigrations")
	s := e.running()
	uri := e.prepare(dst, dm, s)
	e.h.SlowMigrations(e.t, e.d)
	ctx, cancel := context.WithCancel(e.ctx())
	timer := time.AfterFunc(200*time.Millisecond, cancel)
	defer timer.Stop()
	_, err := src.MigrateOut(ctx, s.Name, uri, hypervisor.MigrateOptions{})
	if err == nil {
		e.t.Fatal("MigrateOut: cancelled, but it succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		e.t.Errorf("MigrateOut cancelled: %v, want one wrapping context.Canceled", err)
	}
	e.waitState(s.Name, hypervisor.StateRunning)
	if in := e.get(s.Name); in.VMID != s.VMID || in.Epoch != s.Epoch {
		e.t.Fatalf("the source after the cancel: %+v", in)
	}
	e.must("AbortIncoming", dm.AbortIncoming(e.ctx(), s.Name))
	if _, err := dst.d.Get(e.ctx(), s.Name); !errors.Is(err, hypervisor.ErrNotFound) {
		e.t.Fatalf("the target keeps %s after AbortIncoming (err %v)", s.Name, err)
	}
}

// testMigrateAbortIncoming: AbortIncoming removes a prepared domain, and
// is a no-op when there is none; a migration to a target that no longer
// waits fails and leaves the guest running.
func testMigrateAbortIncoming(e *env) {
	src, dst, dm := e.migrators()
	s := e.running()
	uri := e.prepare(dst, dm, s)
	e.must("AbortIncoming", dm.AbortIncoming(e.ctx(), s.Name))
	if _, err := dst.d.Get(e.ctx(), s.Name); !errors.Is(err, hypervisor.ErrNotFound) {
		e.t.Fatalf("the target keeps %s after AbortIncoming (err %v)", s.Name, err)
	}
	e.must("AbortIncoming again", dm.AbortIncoming(e.ctx(), s.Name))
	if _, err := src.MigrateOut(e.ctx(), s.Name, uri, hypervisor.MigrateOptions{}); err == nil {
		e.t.Fatal("MigrateOut to a target that aborted: it succeeded")
	}
	e.waitState(s.Name, hypervisor.StateRunning)
}
