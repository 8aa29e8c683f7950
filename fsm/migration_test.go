package fsm_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Tests of migrations of running VMs (migration.go, log protocol 9).

// migFSM is an FSM built on the migration fixture, with an index counter:
//
//	1: host/s  ready, 8 CPUs, 8GiB, modes live and restart (the source)
//	2: host/t  ready, 4 CPUs, 4GiB, modes live and restart (the target)
//	3: host/o  ready, 4 CPUs, 4GiB, modes live and restart (a third host)
//	4: volume/dv
//	5: vm/m    2 CPUs, 2GiB, ha=restart
//	6: vm/d    1 CPU, 512MiB, disk dv (ha none)
//	7: place m and d on s (epoch 7; dv is bound to s)
//	8, 9: m and d report running
type migFSM struct {
	t *testing.T
	f *fsm.FSM
	i uint64
}

// migEpoch is the epoch m and d run at on s in the fixture.
const migEpoch = 7

var bothModes = []string{resource.MigrationLive, resource.MigrationRestart}

func migHost(name string, cpus int, mem int64, modes ...string) *fsm.HostStateRequest {
	req := hsReq(name, resource.HostReady, cpus, mem)
	req.MigrationModes = modes
	return req
}

func newMigFSM(t *testing.T) *migFSM {
	t.Helper()
	x := &migFSM{t: t, f: fsm.TestFSM(t)}
	x.must(fsm.HostStateRequestType, migHost("s", 8, 8192, bothModes...))
	x.must(fsm.HostStateRequestType, migHost("t", 4, 4096, bothModes...))
	x.must(fsm.HostStateRequestType, migHost("o", 4, 4096, bothModes...))
	x.must(fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: resource.KindVolume, Name: "dv", ID: fsm.TestID(4), Spec: raw(`{"size_mib":1}`)})
	x.must(fsm.CreateRequestType, createReq(vm, "m", fsm.TestID(5), nil, `{"cpus":2,"memory_mib":2048,"ha":"restart"}`))
	x.must(fsm.CreateRequestType, createReq(vm, "d", fsm.TestID(6), nil, `{"cpus":1,"memory_mib":512,"disks":[{"volume":"dv"}]}`))
	x.i++
	placeAll(t, x.f, x.i, "s", "m", "d")
	x.i++
	report(t, x.f, x.i, "s", "m", migEpoch, resource.PhaseRunning)
	x.i++
	report(t, x.f, x.i, "s", "d", migEpoch, resource.PhaseRunning)
	if x.volHost("dv") != "s" {
		t.Fatalf("fixture: volume dv is on %q, want s", x.volHost("dv"))
	}
	fsm.TestCheckAllocations(t, x.f)
	return x
}

func (x *migFSM) apply(typ fsm.MessageType, req any) *fsm.Result {
	x.t.Helper()
	x.i++
	res := fsm.TestApply(x.t, x.f, x.i, typ, req)
	if f := x.f.Halted(); f != nil {
		x.t.Fatalf("entry %d halted the FSM: %v", x.i, f)
	}
	return res
}

func (x *migFSM) must(typ fsm.MessageType, req any) *fsm.Result {
	x.t.Helper()
	res := x.apply(typ, req)
	if res.Err != nil {
		x.t.Fatalf("apply %s at %d: %v", typ, x.i, res.Err)
	}
	fsm.TestCheckAllocations(x.t, x.f)
	return res
}

// refused applies the entry and asserts that it fails with want and
// changes nothing.
func (x *migFSM) refused(typ fsm.MessageType, req any, want error, says string) {
	x.t.Helper()
	x.i++
	applyFails(x.t, x.f, fsm.TestLog(x.t, x.i, typ, req), want)
	if says != "" {
		res := fsm.TestApply(x.t, fsm.TestSnapshotRestore(x.t, x.f), x.i+1, typ, req)
		if res.Err == nil || !strings.Contains(res.Err.Error(), says) {
			x.t.Errorf("error %v does not say %q", res.Err, says)
		}
	}
}

// start starts a migration of vmName to target in mode; it returns the
// migration's id (the entry's index).
func (x *migFSM) start(vmName, target, mode string) uint64 {
	x.t.Helper()
	x.must(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: vmName, Host: target, Mode: mode})
	return x.i
}

func (x *migFSM) abort(vmName string) *fsm.Result {
	x.t.Helper()
	return x.must(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: vmName, Abort: true})
}

// event applies one migration event from host; the entry must succeed,
// and the event's own outcome is returned.
func (x *migFSM) event(host string, e resource.MigrationEvent) error {
	x.t.Helper()
	res := x.must(fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{Time: fsm.TestTime.Add(time.Minute), Host: host, Events: []resource.MigrationEvent{e}})
	if len(res.ItemErrors) != 1 {
		x.t.Fatalf("ItemErrors = %v, want one", res.ItemErrors)
	}
	return res.ItemErrors[0]
}

// mustEvent applies an event that must be recorded.
func (x *migFSM) mustEvent(host string, e resource.MigrationEvent) {
	x.t.Helper()
	if err := x.event(host, e); err != nil {
		x.t.Fatalf("%s %s from %s: %v", e.VM, e.Event, host, err)
	}
}

// staleEvent applies an event that must be refused with want and change
// nothing at all.
func (x *migFSM) staleEvent(host string, e resource.MigrationEvent, want error) {
	x.t.Helper()
	before := observe(x.t, x.f)
	err := x.event(host, e)
	if !errors.Is(err, want) {
		x.t.Fatalf("%s %s (id %d) from %s: %v, want %v", e.VM, e.Event, e.ID, host, err, want)
	}
	if after := observe(x.t, x.f); after != before {
		x.t.Fatalf("a refused event changed the state:\nbefore %+v\nafter  %+v", before, after)
	}
}

func (x *migFSM) vm(name string) resource.VMStatus { x.t.Helper(); return vmStatus(x.t, x.f, name) }

func (x *migFSM) volHost(name string) string {
	x.t.Helper()
	st, err := resource.DecodeStatus[resource.VolumeStatus](mustGet(x.t, x.f, resource.KindVolume, name))
	if err != nil {
		x.t.Fatal(err)
	}
	return st.Host
}

func (x *migFSM) alloc(want map[string]resource.Resources) {
	x.t.Helper()
	for h, r := range want {
		wantAllocated(x.t, x.f, h, r)
	}
	fsm.TestCheckAllocations(x.t, x.f)
}

// onSource asserts that vmName runs on s at the fixture's epoch with no
// migration, and that t holds nothing.
func (x *migFSM) onSource(vmName string) {
	x.t.Helper()
	st := x.vm(vmName)
	if st.Host != "s" || st.Epoch != migEpoch || st.Migration != nil || st.Phase != resource.PhaseRunning {
		x.t.Fatalf("vm/%s = %+v, want running on s at epoch %d with no migration", vmName, st, migEpoch)
	}
	wantAllocated(x.t, x.f, "t", amount(0, 0))
	wantAllocated(x.t, x.f, "s", amount(3, 2560))
	fsm.TestCheckAllocations(x.t, x.f)
}

func migEvent(vmName string, id uint64, event string) resource.MigrationEvent {
	e := resource.MigrationEvent{VM: vmName, ID: id, Event: event}
	if event == resource.MigrationPrepared {
		e.URI = "qemu+tls://t/system"
	}
	return e
}

func migrating(t *testing.T, f *fsm.FSM, host string) []string {
	t.Helper()
	l, err := f.State().VMsMigratingTo(nil, host)
	if err != nil {
		t.Fatal(err)
	}
	return names(l)
}

func TestMigrationLive(t *testing.T) {
	x := newMigFSM(t)
	id := x.start("m", "t", resource.MigrationLive)
	if got := evSummary(t, x.f, id); got != "updated:vm/m updated:host/t" {
		t.Errorf("start: events %q", got)
	}
	st := x.vm("m")
	if st.Phase != resource.PhaseMigrating || st.Host != "s" || st.Epoch != migEpoch || st.Migration == nil ||
		*st.Migration != (resource.VMMigration{ID: id, Target: "t", Mode: resource.MigrationLive, State: resource.MigrationPreparing, Since: fsm.TestTime}) {
		t.Fatalf("after the start: %+v (migration %+v)", st, st.Migration)
	}
	// Both hosts hold it until the migration ends.
	x.alloc(map[string]resource.Resources{"s": amount(3, 2560), "t": amount(2, 2048)})
	if got := migrating(t, x.f, "t"); len(got) != 1 || got[0] != "m" {
		t.Errorf("VMsMigratingTo(t) = %v", got)
	}
	l, _, err := x.f.State().VMsForHostWithIndex(nil, "t")
	if err != nil || len(l) != 1 || l[0].Name != "m" {
		t.Errorf("VMsForHostWithIndex(t) = %v, %v; want m (the target's worker prepares it)", names(l), err)
	}
	if on, _ := x.f.State().VMsOnHost(nil, "t"); len(on) != 0 {
		t.Errorf("VMsOnHost(t) = %v, want none: m is still on s", names(on))
	}

	x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
	st = x.vm("m")
	if st.Phase != resource.PhaseMigrating || st.Migration == nil || st.Migration.State != resource.MigrationReady || st.Migration.URI != "qemu+tls://t/system" {
		t.Fatalf("after prepared: %+v (migration %+v)", st, st.Migration)
	}
	// Prepared again: nothing to do.
	before := observe(t, x.f)
	if err := x.event("t", migEvent("m", id, resource.MigrationPrepared)); err != nil || observe(t, x.f) != before {
		t.Errorf("prepared again: %v, or it wrote", err)
	}

	done := migEvent("m", id, resource.MigrationDone)
	done.DowntimeMS = 42
	x.mustEvent("s", done)
	st = x.vm("m")
	if st.Phase != resource.PhaseRunning || st.Host != "t" || st.Epoch != x.i || st.Migration != nil || st.Reason != "live-migrated from s (paused 42 ms)" {
		t.Fatalf("after done: %+v, want running on t at epoch %d", st, x.i)
	}
	if got := evSummary(t, x.f, x.i); got != "updated:vm/m updated:host/s" {
		t.Errorf("done: events %q (the source is freed, the target keeps its reservation)", got)
	}
	x.alloc(map[string]resource.Resources{"s": amount(1, 512), "t": amount(2, 2048)})
	if got := migrating(t, x.f, "t"); len(got) != 0 {
		t.Errorf("VMsMigratingTo(t) = %v after done", got)
	}
	// The old epoch's reports are stale now; the target's are current.
	res := x.must(fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "s", Reports: []fsm.VMReport{{VM: "m", Epoch: migEpoch, Phase: resource.PhaseStopped}}})
	if !errors.Is(res.ItemErrors[0], fsm.ErrStaleEpoch) {
		t.Errorf("a report of the old epoch from the source: %v", res.ItemErrors[0])
	}
	x.i++
	report(t, x.f, x.i, "t", "m", x.i-2, resource.PhaseRunning)
	// A late event of the migration that ended changes nothing.
	x.staleEvent("s", migEvent("m", id, resource.MigrationFailed), fsm.ErrStaleEpoch)
	x.staleEvent("t", migEvent("m", id, resource.MigrationDone), fsm.ErrStaleEpoch)
}

func TestMigrationLiveMovesVolumes(t *testing.T) {
	x := newMigFSM(t)
	volReport := func(host string, seq uint64) error {
		t.Helper()
		r := x.must(fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: host, Resources: []resource.ResourceReport{
			{Kind: resource.KindVolume, Name: "dv", State: resource.HostResourceReady, Seq: seq},
		}})
		return r.ResourceErrors[0]
	}
	if err := volReport("s", 500); err != nil {
		t.Fatalf("the source's report of dv: %v", err)
	}
	id := x.start("d", "t", resource.MigrationLive)
	if x.volHost("dv") != "s" {
		t.Fatalf("volume dv moved before the migration was done")
	}
	x.mustEvent("t", migEvent("d", id, resource.MigrationPrepared))
	x.mustEvent("s", migEvent("d", id, resource.MigrationDone))
	if h := x.volHost("dv"); h != "t" {
		t.Errorf("volume dv is on %q after the live migration, want t", h)
	}
	if st := x.vm("d"); st.Host != "t" || st.Phase != resource.PhaseRunning || st.Reason != "live-migrated from s" {
		t.Errorf("vm/d = %+v", st)
	}
	if got := evSummary(t, x.f, x.i); !strings.Contains(got, "updated:volume/dv") {
		t.Errorf("done: events %q, want the volume's update", got)
	}
	// The volume keeps its report_seq: a report the source's worker sent
	// before the move stays refused (were the volume to come back); the
	// target's worker numbers above what it reads.
	if err := volReport("t", 500); !errors.Is(err, fsm.ErrStaleEpoch) {
		t.Errorf("a report of dv at the recorded seq 500 after the move: %v, want it refused", err)
	}
	if err := volReport("t", 501); err != nil {
		t.Errorf("the target's report of dv above it: %v", err)
	}
}

func TestMigrationDoneFromTarget(t *testing.T) {
	x := newMigFSM(t)
	id := x.start("m", "t", resource.MigrationLive)
	x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
	// The source's worker died; the target sees the guest running.
	x.mustEvent("t", migEvent("m", id, resource.MigrationDone))
	if st := x.vm("m"); st.Host != "t" || st.Epoch != x.i || st.Phase != resource.PhaseRunning || st.Migration != nil {
		t.Errorf("vm/m = %+v, want running on t at epoch %d", st, x.i)
	}
	x.alloc(map[string]resource.Resources{"s": amount(1, 512), "t": amount(2, 2048)})
}

func TestMigrationRestart(t *testing.T) {
	x := newMigFSM(t)
	id := x.start("m", "t", resource.MigrationRestart)
	st := x.vm("m")
	if st.Phase != resource.PhaseMigrating || st.Migration == nil || st.Migration.State != resource.MigrationReady || st.Migration.Mode != resource.MigrationRestart {
		t.Fatalf("a restart migration is ready at once: %+v (%+v)", st, st.Migration)
	}
	x.alloc(map[string]resource.Resources{"s": amount(3, 2560), "t": amount(2, 2048)})
	// prepared is for live migrations; done of a restart comes from the
	// source (which shut the guest down).
	x.staleEvent("t", migEvent("m", id, resource.MigrationPrepared), fsm.ErrWrongPhase)
	x.staleEvent("t", migEvent("m", id, resource.MigrationDone), fsm.ErrWrongPhase)
	x.mustEvent("s", migEvent("m", id, resource.MigrationDone))
	st = x.vm("m")
	if st.Phase != resource.PhaseScheduled || st.Host != "t" || st.Epoch != x.i || st.Migration != nil || !strings.Contains(st.Reason, "moved from s") {
		t.Fatalf("after done: %+v, want scheduled on t at epoch %d", st, x.i)
	}
	x.alloc(map[string]resource.Resources{"s": amount(1, 512), "t": amount(2, 2048)})
}

func TestMigrationRestartRefusesLocalVolumes(t *testing.T) {
	x := newMigFSM(t)
	x.refused(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "d", Host: "t", Mode: resource.MigrationRestart},
		fsm.ErrHostNotReady, "volume dv is on host s")
	x.onSource("d")
	// Live copies it: allowed.
	x.start("d", "t", resource.MigrationLive)
}

func TestMigrationFailed(t *testing.T) {
	for _, from := range []string{"s", "t"} {
		for _, prepared := range []bool{false, true} {
			name := "from " + from
			if prepared {
				name += " once prepared"
			}
			t.Run(name, func(t *testing.T) {
				x := newMigFSM(t)
				id := x.start("m", "t", resource.MigrationLive)
				if prepared {
					x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
				}
				e := migEvent("m", id, resource.MigrationFailed)
				e.Reason = "the target ran out of memory"
				x.mustEvent(from, e)
				x.onSource("m")
				if st := x.vm("m"); st.Reason != "the migration to t failed ("+from+" says: the target ran out of memory); the VM stays on s" {
					t.Errorf("reason %q", st.Reason)
				}
				if got := migrating(t, x.f, "t"); len(got) != 0 {
					t.Errorf("VMsMigratingTo(t) = %v", got)
				}
				// It may migrate again, with a new id.
				if again := x.start("m", "o", resource.MigrationLive); again == id {
					t.Errorf("the new migration reuses id %d", id)
				}
			})
		}
	}
}

func TestMigrationAbort(t *testing.T) {
	t.Run("while preparing: at once", func(t *testing.T) {
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationLive)
		x.abort("m")
		x.onSource("m")
		if st := x.vm("m"); !strings.Contains(st.Reason, "aborted before it began") {
			t.Errorf("reason %q", st.Reason)
		}
		// The target's late prepared belongs to no migration.
		x.staleEvent("t", migEvent("m", id, resource.MigrationPrepared), fsm.ErrStaleEpoch)
		x.refused(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "m", Abort: true}, fsm.ErrWrongPhase, "no migration is under way")
	})
	t.Run("once ready: the source cancels", func(t *testing.T) {
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationLive)
		x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
		x.abort("m")
		st := x.vm("m")
		if st.Phase != resource.PhaseMigrating || st.Migration == nil || st.Migration.State != resource.MigrationAborting {
			t.Fatalf("after the abort: %+v (%+v), want aborting", st, st.Migration)
		}
		x.alloc(map[string]resource.Resources{"s": amount(3, 2560), "t": amount(2, 2048)})
		// A late prepared changes nothing.
		x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
		if st := x.vm("m"); st.Migration == nil || st.Migration.State != resource.MigrationAborting {
			t.Fatalf("prepared while aborting: %+v", st.Migration)
		}
		x.mustEvent("s", migEvent("m", id, resource.MigrationFailed))
		x.onSource("m")
		if st := x.vm("m"); st.Reason != "the migration to t was aborted (no reason given); the VM stays on s" {
			t.Errorf("reason %q", st.Reason)
		}
	})
	t.Run("aborted again: at once", func(t *testing.T) {
		// The source says nothing (stuck, or it lost the outcome): a
		// second abort ends the migration, the VM stays on the source.
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationLive)
		x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
		x.abort("m")
		x.abort("m")
		x.onSource("m")
		if st := x.vm("m"); !strings.Contains(st.Reason, "aborted again, so at once") {
			t.Errorf("reason %q", st.Reason)
		}
		x.alloc(map[string]resource.Resources{"s": amount(3, 2560), "t": amount(0, 0)})
		x.staleEvent("s", migEvent("m", id, resource.MigrationDone), fsm.ErrStaleEpoch)
	})
	t.Run("once ready: done still wins", func(t *testing.T) {
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationLive)
		x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
		x.abort("m")
		x.mustEvent("s", migEvent("m", id, resource.MigrationDone))
		if st := x.vm("m"); st.Host != "t" || st.Epoch != x.i || st.Migration != nil {
			t.Errorf("done while aborting: %+v, want on t", st)
		}
		x.alloc(map[string]resource.Resources{"s": amount(1, 512), "t": amount(2, 2048)})
	})
	t.Run("restart: aborting at once", func(t *testing.T) {
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationRestart)
		x.abort("m")
		if st := x.vm("m"); st.Migration == nil || st.Migration.State != resource.MigrationAborting {
			t.Fatalf("abort of a restart migration: %+v", st.Migration)
		}
		x.mustEvent("s", migEvent("m", id, resource.MigrationFailed))
		x.onSource("m")
	})
	t.Run("of a VM that does not exist", func(t *testing.T) {
		x := newMigFSM(t)
		x.refused(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "zz", Abort: true}, fsm.ErrNotFound, "")
	})
}

func TestMigrationStaleEvents(t *testing.T) {
	cases := []struct {
		name string
		// ready: the target has said prepared.
		ready bool
		host  string
		ev    func(id uint64) resource.MigrationEvent
		want  error
	}{
		{name: "wrong id", host: "t", ev: func(id uint64) resource.MigrationEvent { return migEvent("m", id+1, resource.MigrationPrepared) }, want: fsm.ErrStaleEpoch},
		{name: "an older id", ready: true, host: "s", ev: func(id uint64) resource.MigrationEvent { return migEvent("m", id-1, resource.MigrationDone) }, want: fsm.ErrStaleEpoch},
		{name: "from a third host", ready: true, host: "o", ev: func(id uint64) resource.MigrationEvent { return migEvent("m", id, resource.MigrationDone) }, want: fsm.ErrStaleEpoch},
		{name: "failed from a third host", host: "o", ev: func(id uint64) resource.MigrationEvent { return migEvent("m", id, resource.MigrationFailed) }, want: fsm.ErrStaleEpoch},
		{name: "prepared from the source", host: "s", ev: func(id uint64) resource.MigrationEvent { return migEvent("m", id, resource.MigrationPrepared) }, want: fsm.ErrWrongPhase},
		{name: "done while preparing (source)", host: "s", ev: func(id uint64) resource.MigrationEvent { return migEvent("m", id, resource.MigrationDone) }, want: fsm.ErrWrongPhase},
		{name: "done while preparing (target)", host: "t", ev: func(id uint64) resource.MigrationEvent { return migEvent("m", id, resource.MigrationDone) }, want: fsm.ErrWrongPhase},
		{name: "for a VM that is not migrating", host: "s", ev: func(id uint64) resource.MigrationEvent { return migEvent("d", id, resource.MigrationDone) }, want: fsm.ErrStaleEpoch},
		{name: "for a VM that does not exist", host: "s", ev: func(id uint64) resource.MigrationEvent { return migEvent("zz", id, resource.MigrationDone) }, want: fsm.ErrNotFound},
		{name: "not an event", host: "s", ev: func(id uint64) resource.MigrationEvent { return migEvent("m", id, "teleported") }, want: resource.ErrInvalid},
		{name: "no id", host: "t", ev: func(uint64) resource.MigrationEvent { return migEvent("m", 0, resource.MigrationPrepared) }, want: resource.ErrInvalid},
		{name: "prepared without a uri", host: "t", ev: func(id uint64) resource.MigrationEvent {
			return resource.MigrationEvent{VM: "m", ID: id, Event: resource.MigrationPrepared}
		}, want: resource.ErrInvalid},
		{name: "a uri with a control character", host: "t", ev: func(id uint64) resource.MigrationEvent {
			return resource.MigrationEvent{VM: "m", ID: id, Event: resource.MigrationPrepared, URI: "tcp://t\n"}
		}, want: resource.ErrInvalid},
		{name: "a negative downtime", ready: true, host: "s", ev: func(id uint64) resource.MigrationEvent {
			return resource.MigrationEvent{VM: "m", ID: id, Event: resource.MigrationDone, DowntimeMS: -1}
		}, want: resource.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newMigFSM(t)
			id := x.start("m", "t", resource.MigrationLive)
			if tc.ready {
				x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
			}
			x.staleEvent(tc.host, tc.ev(id), tc.want)
		})
	}
	t.Run("after the migration ended", func(t *testing.T) {
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationLive)
		x.mustEvent("t", migEvent("m", id, resource.MigrationFailed))
		x.staleEvent("s", migEvent("m", id, resource.MigrationDone), fsm.ErrStaleEpoch)
		x.staleEvent("t", migEvent("m", id, resource.MigrationPrepared), fsm.ErrStaleEpoch)
		// A new migration's events do not take the old one's.
		id2 := x.start("m", "t", resource.MigrationLive)
		x.staleEvent("t", migEvent("m", id, resource.MigrationPrepared), fsm.ErrStaleEpoch)
		x.mustEvent("t", migEvent("m", id2, resource.MigrationPrepared))
	})
	t.Run("each event of an entry on its own", func(t *testing.T) {
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationLive)
		res := x.must(fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{Time: fsm.TestTime, Host: "t", Events: []resource.MigrationEvent{
			migEvent("m", id+1, resource.MigrationPrepared), migEvent("m", id, resource.MigrationPrepared), migEvent("m", id, resource.MigrationDone),
		}})
		if !errors.Is(res.ItemErrors[0], fsm.ErrStaleEpoch) || res.ItemErrors[1] != nil || res.ItemErrors[2] != nil {
			t.Fatalf("ItemErrors = %v, want stale, recorded, recorded", res.ItemErrors)
		}
		if st := x.vm("m"); st.Host != "t" || st.Epoch != x.i {
			t.Errorf("vm/m = %+v, want on t (done after prepared, in one entry)", st)
		}
	})
	t.Run("too many events", func(t *testing.T) {
		x := newMigFSM(t)
		req := &fsm.MigrationEventRequest{Time: fsm.TestTime, Host: "t"}
		for range fsm.MaxBatchOps + 1 {
			req.Events = append(req.Events, migEvent("m", 1, resource.MigrationFailed))
		}
		x.refused(fsm.MigrationEventRequestType, req, fsm.ErrBadPayload, "")
	})
}

func TestMigrationRefusedAtStart(t *testing.T) {
	live := func(vmName, target string) *fsm.MigrateRequest {
		return &fsm.MigrateRequest{Time: fsm.TestTime, VM: vmName, Host: target, Mode: resource.MigrationLive}
	}
	cases := []struct {
		name  string
		setup func(x *migFSM)
		req   *fsm.MigrateRequest
		want  error
		says  string
	}{
		{name: "a VM placed that does not run yet", setup: func(x *migFSM) {
			x.must(fsm.CreateRequestType, createReq(vm, "p", fsm.TestID(x.i+1), nil, `{"cpus":1,"memory_mib":256}`))
			x.i++
			placeAll(x.t, x.f, x.i, "s", "p")
		}, req: live("p", "t"), want: fsm.ErrWrongPhase, says: "a migration moves a running VM"},
		{name: "a running VM asked to stop", setup: func(x *migFSM) {
			x.must(fsm.ActionRequestType, act("m", resource.ActionStop))
		}, req: live("m", "t"), want: fsm.ErrWrongPhase},
		{name: "a suspended VM", setup: func(x *migFSM) {
			x.i++
			report(x.t, x.f, x.i, "s", "m", migEpoch, resource.PhaseSuspended)
		}, req: live("m", "t"), want: fsm.ErrWrongPhase},
		{name: "the source does not offer the mode", setup: func(x *migFSM) {
			x.must(fsm.HostStateRequestType, migHost("s", 8, 8192, resource.MigrationRestart))
		}, req: live("m", "t"), want: fsm.ErrHostNotReady, says: `host "s" cannot migrate VMs live`},
		{name: "the source offers no mode (an older worker)", setup: func(x *migFSM) {
			x.must(fsm.HostStateRequestType, migHost("s", 8, 8192))
		}, req: live("m", "t"), want: fsm.ErrHostNotReady, says: "none: an older worker"},
		{name: "the target does not offer the mode", setup: func(x *migFSM) {
			x.must(fsm.HostStateRequestType, migHost("t", 4, 4096, resource.MigrationLive))
		}, req: &fsm.MigrateRequest{Time: fsm.TestTime, VM: "m", Host: "t", Mode: resource.MigrationRestart}, want: fsm.ErrHostNotReady, says: `host "t" cannot take VMs by restart`},
		{name: "the source is down", setup: func(x *migFSM) {
			x.must(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "s", State: resource.HostDown, Capacity: amount(8, 8192), MigrationModes: bothModes})
		}, req: live("m", "t"), want: fsm.ErrHostNotReady, says: "needs the source host up"},
		{name: "the target is not ready", setup: func(x *migFSM) {
			x.must(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "t", State: resource.HostDraining, Capacity: amount(4, 4096), MigrationModes: bothModes})
		}, req: live("m", "t"), want: fsm.ErrHostNotReady},
		{name: "the target is unschedulable", setup: func(x *migFSM) {
			x.must(fsm.UpdateRequestType, hostSpecUpdate("t", `{"unschedulable":true}`))
		}, req: live("m", "t"), want: fsm.ErrHostNotReady},
		{name: "the target does not exist", req: live("m", "zz"), want: fsm.ErrNotFound},
		{name: "the target lacks capacity", setup: func(x *migFSM) {
			x.must(fsm.CreateRequestType, createReq(vm, "big", fsm.TestID(x.i+1), nil, `{"cpus":3,"memory_mib":1024}`))
			x.i++
			placeAll(x.t, x.f, x.i, "t", "big")
		}, req: live("m", "t"), want: fsm.ErrNoCapacity},
		{name: "already migrating", setup: func(x *migFSM) { x.start("m", "o", resource.MigrationLive) }, req: live("m", "t"), want: fsm.ErrWrongPhase, says: "already migrating"},
		{name: "already migrating: a cold move", setup: func(x *migFSM) { x.start("m", "o", resource.MigrationLive) },
			req: &fsm.MigrateRequest{Time: fsm.TestTime, VM: "m", Host: "t", PhaseOnly: true}, want: fsm.ErrWrongPhase, says: "already migrating"},
		{name: "to its own host", req: live("m", "s"), want: fsm.ErrWrongPhase, says: "already on host"},
		{name: "no mode: a running VM moves cold only", req: &fsm.MigrateRequest{Time: fsm.TestTime, VM: "m", Host: "t", PhaseOnly: true}, want: fsm.ErrWrongPhase},
		{name: "an unknown mode", req: &fsm.MigrateRequest{Time: fsm.TestTime, VM: "m", Host: "t", Mode: "teleport"}, want: resource.ErrInvalid},
		{name: "no target", req: live("m", ""), want: resource.ErrInvalid},
		{name: "a VM that does not exist", req: live("zz", "t"), want: fsm.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newMigFSM(t)
			if tc.setup != nil {
				tc.setup(x)
			}
			x.refused(fsm.MigrateRequestType, tc.req, tc.want, tc.says)
			if st := x.vm("m"); st.Host != "s" || st.Epoch != migEpoch {
				t.Errorf("vm/m = %+v after a refused migration", st)
			}
		})
	}
	t.Run("the target fits the VM exactly (counted on the source only)", func(t *testing.T) {
		x := newMigFSM(t)
		x.must(fsm.CreateRequestType, createReq(vm, "half", fsm.TestID(x.i+1), nil, `{"cpus":2,"memory_mib":2048}`))
		x.i++
		placeAll(t, x.f, x.i, "t", "half")
		x.start("m", "t", resource.MigrationLive)
		x.alloc(map[string]resource.Resources{"s": amount(3, 2560), "t": amount(4, 4096)})
	})
	t.Run("a draining source may migrate its VMs away", func(t *testing.T) {
		x := newMigFSM(t)
		x.must(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "s", State: resource.HostDraining, Capacity: amount(8, 8192), MigrationModes: bothModes})
		x.start("m", "t", resource.MigrationLive)
	})
}

func TestMigrationAntiAffinity(t *testing.T) {
	setup := func(t *testing.T) *migFSM {
		x := newMigFSM(t)
		for _, n := range []string{"a1", "a2"} {
			x.must(fsm.CreateRequestType, createReq(vm, n, fsm.TestID(x.i+1), nil, `{"cpus":1,"memory_mib":256,"affinity":{"group":"g","rule":"anti-affine","hard":true}}`))
		}
		x.i++
		placeAll(t, x.f, x.i, "s", "a1")
		epoch := x.i
		x.i++
		placeAll(t, x.f, x.i, "o", "a2")
		x.i++
		report(t, x.f, x.i, "s", "a1", epoch, resource.PhaseRunning)
		x.i++
		report(t, x.f, x.i, "o", "a2", x.i-2, resource.PhaseRunning)
		return x
	}
	t.Run("a member on the target", func(t *testing.T) {
		x := setup(t)
		x.refused(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "a1", Host: "o", Mode: resource.MigrationLive},
			fsm.ErrPlacementRule, `hard anti-affinity of group g: vm "a2" is on host "o"`)
		x.start("a1", "t", resource.MigrationLive) // elsewhere: fine
	})
	t.Run("a member migrating to the target", func(t *testing.T) {
		x := setup(t)
		x.start("a2", "t", resource.MigrationLive)
		x.refused(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "a1", Host: "t", Mode: resource.MigrationLive},
			fsm.ErrPlacementRule, `vm "a2" is on host "t"`)
		// Nor is a member placed there (the rule counts it on both).
		x.must(fsm.CreateRequestType, createReq(vm, "a3", fsm.TestID(x.i+1), nil, `{"cpus":1,"memory_mib":256,"affinity":{"group":"g","rule":"anti-affine","hard":true}}`))
		res := x.must(fsm.PlaceRequestType, place("a3@t"))
		if !errors.Is(res.ItemErrors[0], fsm.ErrPlacementRule) {
			t.Errorf("placing a3 on the target of a2's migration: %v", res.ItemErrors[0])
		}
		// Nor on its source, which it still holds.
		res = x.must(fsm.PlaceRequestType, place("a3@o"))
		if !errors.Is(res.ItemErrors[0], fsm.ErrPlacementRule) {
			t.Errorf("placing a3 on the source of a2's migration: %v", res.ItemErrors[0])
		}
	})
}

func TestMigrationRefusesChanges(t *testing.T) {
	for _, a := range []string{resource.ActionStart, resource.ActionStop, resource.ActionSuspend, resource.ActionResume, resource.ActionReboot, "explode"} {
		t.Run("action "+a, func(t *testing.T) {
			x := newMigFSM(t)
			x.start("m", "t", resource.MigrationLive)
			x.refused(fsm.ActionRequestType, act("m", a), fsm.ErrWrongPhase, "it is migrating to host")
		})
	}
	t.Run("a spec update", func(t *testing.T) {
		x := newMigFSM(t)
		x.start("m", "t", resource.MigrationLive)
		x.refused(fsm.UpdateRequestType, vmUpdate("m", `{"cpus":1,"memory_mib":2048,"ha":"restart"}`), fsm.ErrWrongPhase, "change its spec once the migration has ended")
	})
	t.Run("a labels-only update", func(t *testing.T) {
		x := newMigFSM(t)
		x.start("m", "t", resource.MigrationLive)
		req := vmUpdate("m", string(mustGet(t, x.f, vm, "m").Spec))
		req.Labels = map[string]string{"app": "web"}
		x.must(fsm.UpdateRequestType, req)
		if o := mustGet(t, x.f, vm, "m"); o.Labels["app"] != "web" {
			t.Errorf("labels %v", o.Labels)
		}
		if st := x.vm("m"); st.Migration == nil {
			t.Errorf("a labels update ended the migration")
		}
		x.alloc(map[string]resource.Resources{"s": amount(3, 2560), "t": amount(2, 2048)})
	})
	t.Run("a cold migrate", func(t *testing.T) {
		x := newMigFSM(t)
		x.start("m", "t", resource.MigrationLive)
		x.refused(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "m", Host: "o", Grace: time.Hour}, fsm.ErrWrongPhase, "already migrating")
	})
	t.Run("deleting the target host", func(t *testing.T) {
		x := newMigFSM(t)
		x.start("m", "t", resource.MigrationLive)
		x.refused(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: host, Name: "t"}, fsm.ErrHostBusy, "")
	})
}

func TestMigrationEvacuation(t *testing.T) {
	down := func(x *migFSM, h string, cpus int, mem int64) {
		x.must(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: h, State: resource.HostDown, Capacity: amount(cpus, mem), MigrationModes: bothModes})
	}
	t.Run("of the source", func(t *testing.T) {
		x := newMigFSM(t)
		x.start("m", "t", resource.MigrationLive) // ha restart
		idD := x.start("d", "t", resource.MigrationLive)
		x.alloc(map[string]resource.Resources{"s": amount(3, 2560), "t": amount(3, 2560)})
		down(x, "s", 8, 8192)
		x.must(fsm.EvacuateRequestType, &fsm.EvacuateRequest{Time: fsm.TestTime.Add(time.Hour), Host: "s", Reason: "s is down"})
		if st := x.vm("m"); st.Phase != resource.PhasePending || st.Host != "" || st.Migration != nil {
			t.Errorf("vm/m (ha restart) = %+v, want pending with no migration", st)
		}
		if st := x.vm("d"); st.Phase != resource.PhaseLost || st.Host != "s" || st.Migration != nil {
			t.Errorf("vm/d (ha none) = %+v, want lost on s with no migration", st)
		}
		x.alloc(map[string]resource.Resources{"s": amount(1, 512), "t": amount(0, 0)})
		if got := migrating(t, x.f, "t"); len(got) != 0 {
			t.Errorf("VMsMigratingTo(t) = %v", got)
		}
		x.staleEvent("t", migEvent("d", idD, resource.MigrationPrepared), fsm.ErrStaleEpoch)
	})
	t.Run("of the source once the live migration had begun", func(t *testing.T) {
		// The source's hypervisor may have finished the migration after
		// its worker died: the VM goes to the target, never to a third
		// host (ha restart); ha none is lost as ever.
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationLive) // ha restart
		x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
		idD := x.start("d", "t", resource.MigrationLive)
		x.mustEvent("t", migEvent("d", idD, resource.MigrationPrepared))
		down(x, "s", 8, 8192)
		x.must(fsm.EvacuateRequestType, &fsm.EvacuateRequest{Time: fsm.TestTime.Add(time.Hour), Host: "s", Reason: "s is down"})
		st := x.vm("m")
		if st.Phase != resource.PhaseScheduled || st.Host != "t" || st.Migration != nil || st.Epoch != x.i ||
			!strings.Contains(st.Reason, "its live migration to t had begun, so it continues there") {
			t.Errorf("vm/m (ha restart) = %+v, want scheduled on t at epoch %d", st, x.i)
		}
		if st := x.vm("d"); st.Phase != resource.PhaseLost || st.Host != "s" || st.Migration != nil {
			t.Errorf("vm/d (ha none) = %+v, want lost on s with no migration", st)
		}
		x.alloc(map[string]resource.Resources{"s": amount(1, 512), "t": amount(2, 2048)})
		x.staleEvent("s", migEvent("m", id, resource.MigrationDone), fsm.ErrStaleEpoch)
	})
	t.Run("of the target", func(t *testing.T) {
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationLive)
		x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
		down(x, "t", 4, 4096)
		x.must(fsm.EvacuateRequestType, &fsm.EvacuateRequest{Time: fsm.TestTime.Add(time.Hour), Host: "t", Reason: "t is down"})
		if got := evSummary(t, x.f, x.i); got != "updated:vm/m updated:host/t" {
			t.Errorf("events %q", got)
		}
		x.onSource("m")
		if st := x.vm("m"); !strings.Contains(st.Reason, "the migration to t ended: the target was evacuated (t is down)") {
			t.Errorf("reason %q", st.Reason)
		}
		x.staleEvent("s", migEvent("m", id, resource.MigrationDone), fsm.ErrStaleEpoch)
	})
}

func TestMigrationReports(t *testing.T) {
	rep1 := func(host string, phase string) *fsm.ReportRequest {
		return &fsm.ReportRequest{Time: fsm.TestTime.Add(time.Hour), Host: host, Reports: []fsm.VMReport{{VM: "m", Epoch: migEpoch, Phase: phase, Reason: "the worker says so"}}}
	}
	t.Run("a late report once the source began", func(t *testing.T) {
		// The source has begun (ready): a report of a stopped guest
		// is a late one (or the switch-over's pause); only the
		// migration's events end it.
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationLive)
		x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
		before := x.vm("m")
		res := x.must(fsm.ReportRequestType, rep1("s", resource.PhaseStopped))
		if res.ItemErrors[0] != nil || len(res.Objects) != 0 {
			t.Fatalf("report: %v, %d objects; want accepted with nothing to write", res.ItemErrors[0], len(res.Objects))
		}
		if st := x.vm("m"); st.Phase != resource.PhaseMigrating || st.Migration == nil || st.Migration.State != resource.MigrationReady || st.Reason != before.Reason {
			t.Errorf("vm/m = %+v, want still migrating", st)
		}
	})
	for _, phase := range []string{resource.PhaseRunning, resource.PhaseStarting} {
		t.Run("the source says "+phase, func(t *testing.T) {
			x := newMigFSM(t)
			x.start("m", "t", resource.MigrationLive)
			before := x.vm("m")
			res := x.must(fsm.ReportRequestType, rep1("s", phase))
			if res.ItemErrors[0] != nil || len(res.Objects) != 0 {
				t.Fatalf("report: %v, %d objects; want accepted with nothing to write", res.ItemErrors[0], len(res.Objects))
			}
			if st := x.vm("m"); st.Phase != resource.PhaseMigrating || st.Reason != before.Reason || st.Migration == nil {
				t.Errorf("vm/m = %+v, want still migrating", st)
			}
		})
	}
	for _, phase := range []string{resource.PhaseStopped, resource.PhaseFailed, resource.PhaseSuspended} {
		t.Run("the source says "+phase, func(t *testing.T) {
			x := newMigFSM(t)
			id := x.start("m", "t", resource.MigrationLive)
			x.must(fsm.ReportRequestType, rep1("s", phase))
			st := x.vm("m")
			if st.Phase != phase || st.Migration != nil || st.Host != "s" || st.Reason != "the worker says so (the migration to t ended)" {
				t.Errorf("vm/m = %+v, want %s on s with no migration", st, phase)
			}
			x.alloc(map[string]resource.Resources{"s": amount(3, 2560), "t": amount(0, 0)})
			x.staleEvent("t", migEvent("m", id, resource.MigrationPrepared), fsm.ErrStaleEpoch)
		})
	}
	t.Run("the target's report is stale", func(t *testing.T) {
		x := newMigFSM(t)
		x.start("m", "t", resource.MigrationLive)
		res := x.must(fsm.ReportRequestType, rep1("t", resource.PhaseRunning))
		if !errors.Is(res.ItemErrors[0], fsm.ErrStaleEpoch) {
			t.Errorf("report from the target: %v", res.ItemErrors[0])
		}
	})
}

func TestMigrationDeleteVM(t *testing.T) {
	x := newMigFSM(t)
	x.start("m", "t", resource.MigrationLive)
	x.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: vm, Name: "m"})
	if got := evSummary(t, x.f, x.i); got != "deleted:vm/m updated:host/s updated:host/t" {
		t.Errorf("events %q", got)
	}
	x.alloc(map[string]resource.Resources{"s": amount(1, 512), "t": amount(0, 0)})
	if got := migrating(t, x.f, "t"); len(got) != 0 {
		t.Errorf("VMsMigratingTo(t) = %v", got)
	}
}

// TestMigrationPlaceOnReservedTarget: a migration's reservation on its
// target keeps other placements out.
func TestMigrationPlaceOnReservedTarget(t *testing.T) {
	x := newMigFSM(t)
	x.must(fsm.CreateRequestType, createReq(vm, "p", fsm.TestID(x.i+1), nil, `{"cpus":3,"memory_mib":1024}`))
	x.start("m", "t", resource.MigrationLive)
	res := x.must(fsm.PlaceRequestType, place("p@t"))
	if !errors.Is(res.ItemErrors[0], fsm.ErrNoCapacity) {
		t.Fatalf("placing p (3 CPUs) on t (4 CPUs, 2 reserved by m's migration): %v", res.ItemErrors[0])
	}
	// Once the migration has failed the room is back.
	x.mustEvent("s", migEvent("m", x.i-1, resource.MigrationFailed))
	res = x.must(fsm.PlaceRequestType, place("p@t"))
	if res.ItemErrors[0] != nil {
		t.Fatalf("placing p on t after the migration failed: %v", res.ItemErrors[0])
	}
}

// TestMigrationSnapshotRestore: a state with migrations under way
// restores with its vm_target index: the reservations hold, and the
// migrations go on.
func TestMigrationSnapshotRestore(t *testing.T) {
	x := newMigFSM(t)
	id := x.start("m", "t", resource.MigrationLive)
	x.must(fsm.CreateRequestType, createReq(vm, "p", fsm.TestID(x.i+1), nil, `{"cpus":3,"memory_mib":1024}`))
	x.f = fsm.TestSnapshotRestore(t, x.f)
	fsm.TestCheckAllocations(t, x.f)
	if got := migrating(t, x.f, "t"); len(got) != 1 || got[0] != "m" {
		t.Fatalf("VMsMigratingTo(t) after a restore = %v", got)
	}
	res := x.must(fsm.PlaceRequestType, place("p@t"))
	if !errors.Is(res.ItemErrors[0], fsm.ErrNoCapacity) {
		t.Errorf("placing p on the reserved target after a restore: %v", res.ItemErrors[0])
	}
	x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
	x.mustEvent("s", migEvent("m", id, resource.MigrationDone))
	x.alloc(map[string]resource.Resources{"s": amount(1, 512), "t": amount(2, 2048)})
	if st := x.vm("m"); st.Host != "t" || st.Epoch != x.i {
		t.Errorf("vm/m = %+v", st)
	}
}

// TestMigrationSameLogSameState: replaying the same migration log gives
// the same state (the epoch is the entry's index, times the entries').
func TestMigrationSameLogSameState(t *testing.T) {
	run := func() *fsm.FSM {
		x := newMigFSM(t)
		id := x.start("m", "t", resource.MigrationLive)
		x.mustEvent("t", migEvent("m", id, resource.MigrationPrepared))
		x.mustEvent("s", migEvent("m", id, resource.MigrationDone))
		x.start("d", "o", resource.MigrationLive)
		return x.f
	}
	a, b := run(), run()
	if a.State().Digest() != b.State().Digest() {
		t.Errorf("the same log gave different states")
	}
}

// TestMigrationStatusWriteTarget: a status write (the admin's) names a
// migration's target as it names a host: a valid name, so that the
// vm_target index counts the VM on no other host.
func TestMigrationStatusWriteTarget(t *testing.T) {
	for _, target := range []string{`"t\u0000x"`, `"T x"`, `""`, `"s"`} { // JSON
		x := newMigFSM(t)
		x.refused(fsm.StatusRequestType, &fsm.StatusRequest{Time: fsm.TestTime, Kind: vm, Name: "m",
			Status: raw(`{"phase":"migrating","host":"s","epoch":7,"migration":{"id":7,"target":` + target + `,"mode":"live","state":"ready"}}`)},
			resource.ErrInvalid, "status.migration.target")
		x.alloc(map[string]resource.Resources{"s": amount(3, 2560), "t": amount(0, 0)})
	}
	// A valid one is the admin's to write: it reserves the target.
	x := newMigFSM(t)
	x.must(fsm.StatusRequestType, &fsm.StatusRequest{Time: fsm.TestTime, Kind: vm, Name: "m",
		Status: raw(`{"phase":"migrating","host":"s","epoch":7,"migration":{"id":7,"target":"t","mode":"live","state":"ready"}}`)})
	x.alloc(map[string]resource.Resources{"s": amount(3, 2560), "t": amount(2, 2048)})
}
