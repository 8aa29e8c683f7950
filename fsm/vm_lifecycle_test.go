package fsm_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// ---- action ----

func act(vmName, action string) *fsm.ActionRequest {
	return &fsm.ActionRequest{Time: fsm.TestTime, VM: vmName, Action: action}
}

func TestAction(t *testing.T) {
	running := func(t *testing.T, f *fsm.FSM) { report(t, f, 9, "h2", "r1", 8, resource.PhaseRunning) }
	power := func(want string) func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
		return func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
			t.Helper()
			if got := vmSpecOf(t, f, r.Objects[0].Name).Power; got != want {
				t.Errorf("spec.power = %q, want %q", got, want)
			}
		}
	}
	runLifeCases(t, []lifeCase{
		{name: "stop", typ: fsm.ActionRequestType, req: act("r1", resource.ActionStop), wantEvents: "updated:vm/r1", check: power(resource.PowerStopped)},
		{name: "stop a pending VM", typ: fsm.ActionRequestType, req: act("p1", resource.ActionStop), wantEvents: "updated:vm/p1", check: power(resource.PowerStopped)},
		{
			name: "start a stopped VM", typ: fsm.ActionRequestType, req: act("r1", resource.ActionStart),
			setup: func(t *testing.T, f *fsm.FSM) {
				fsm.TestMustApply(t, f, 9, fsm.ActionRequestType, act("r1", resource.ActionStop))
			},
			wantEvents: "updated:vm/r1", check: power(resource.PowerRunning),
		},
		{name: "start a VM that is to run writes nothing", typ: fsm.ActionRequestType, req: act("r1", resource.ActionStart)},
		{
			name: "start a failed VM places it anew", typ: fsm.ActionRequestType, req: act("r1", resource.ActionStart),
			setup:      func(t *testing.T, f *fsm.FSM) { report(t, f, 9, "h2", "r1", 8, resource.PhaseFailed) },
			wantEvents: "updated:vm/r1 updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := vmStatus(t, f, "r1"); st.Phase != resource.PhasePending || st.Host != "" || st.Epoch != 0 || !st.Since.Equal(fsm.TestTime) {
					t.Errorf("vm/r1 = %+v, want pending with no host and epoch", st)
				}
				wantAllocated(t, f, "h2", amount(0, 0))
			},
		},
		{
			name: "start a lost VM places it anew", typ: fsm.ActionRequestType, req: act("rn", resource.ActionStart),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup(t, f)
				fsm.TestMustApply(t, f, 16, fsm.EvacuateRequestType, evac("h3", time.Minute, 0))
			},
			wantEvents: "updated:vm/rn updated:host/h3",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := vmStatus(t, f, "rn"); st.Phase != resource.PhasePending || st.Host != "" {
					t.Errorf("vm/rn = %+v, want pending with no host", st)
				}
				wantAllocated(t, f, "h3", amount(0, 0))
			},
		},
		{
			name: "start a stopped VM keeps its placement", typ: fsm.ActionRequestType, req: act("r1", resource.ActionStart),
			setup: func(t *testing.T, f *fsm.FSM) {
				fsm.TestMustApply(t, f, 9, fsm.ReportRequestType, rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseStopped, SetPower: resource.PowerStopped}))
			},
			wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := vmStatus(t, f, "r1"); st.Phase != resource.PhaseStopped || st.Host != "h2" || st.Epoch != 8 {
					t.Errorf("vm/r1 = %+v", st)
				}
			},
		},
		{
			name: "suspend a running VM", typ: fsm.ActionRequestType, req: act("r1", resource.ActionSuspend), setup: running,
			wantEvents: "updated:vm/r1", check: power(resource.PowerSuspended),
		},
		{name: "suspend a VM that is not running", typ: fsm.ActionRequestType, req: act("r1", resource.ActionSuspend), wantErr: fsm.ErrWrongPhase},
		{
			name: "resume a suspended VM", typ: fsm.ActionRequestType, req: act("r1", resource.ActionResume),
			setup: func(t *testing.T, f *fsm.FSM) {
				running(t, f)
				fsm.TestMustApply(t, f, 10, fsm.ActionRequestType, act("r1", resource.ActionSuspend))
			},
			wantEvents: "updated:vm/r1", check: power(resource.PowerRunning),
		},
		{name: "resume a VM that is not suspended", typ: fsm.ActionRequestType, req: act("r1", resource.ActionResume), setup: running, wantErr: fsm.ErrWrongPhase},
		{
			name: "reboot a running VM", typ: fsm.ActionRequestType, req: act("r1", resource.ActionReboot), setup: running,
			wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := vmStatus(t, f, "r1"); st.RebootRequested != lat || st.RebootDone != 0 || st.Phase != resource.PhaseRunning {
					t.Errorf("vm/r1 = %+v, want reboot_requested %d", st, lat)
				}
				if vmSpecOf(t, f, "r1").Power != resource.PowerRunning {
					t.Errorf("reboot changed the power")
				}
			},
		},
		{
			name: "reboot a VM that is not running", typ: fsm.ActionRequestType, req: act("r1", resource.ActionReboot), wantErr: fsm.ErrWrongPhase,
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				if !strings.Contains(r.Err.Error(), "scheduled") {
					t.Errorf("error %q does not say the phase", r.Err)
				}
			},
		},
		{name: "unknown action", typ: fsm.ActionRequestType, req: act("r1", "explode"), wantErr: resource.ErrInvalid, check: wantField("action")},
		{name: "VM not found", typ: fsm.ActionRequestType, req: act("zz", resource.ActionStop), wantErr: fsm.ErrNotFound},
		{name: "payload unknown field", halts: true, data: []byte("\x0a" + `{"vm":"r1","action":"stop","explode":true}`), wantErr: fsm.ErrBadPayload},
		{
			name: "forced stop of a running VM", typ: fsm.ActionRequestType, setup: running,
			req:        &fsm.ActionRequest{Time: fsm.TestTime, VM: "r1", Action: resource.ActionStop, Force: true},
			wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				power(resource.PowerStopped)(t, f, r)
				if st := vmStatus(t, f, "r1"); !st.StopForced {
					t.Errorf("vm/r1 = %+v, want stop_forced", st)
				}
			},
		},
		{
			name: "a forced stop cuts short a graceful one", typ: fsm.ActionRequestType,
			req: &fsm.ActionRequest{Time: fsm.TestTime, VM: "r1", Action: resource.ActionStop, Force: true},
			setup: func(t *testing.T, f *fsm.FSM) {
				running(t, f)
				fsm.TestMustApply(t, f, 10, fsm.ActionRequestType, act("r1", resource.ActionStop))
				report(t, f, 11, "h2", "r1", 8, resource.PhaseStopping)
			},
			wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := vmStatus(t, f, "r1"); !st.StopForced || st.Phase != resource.PhaseStopping {
					t.Errorf("vm/r1 = %+v, want stop_forced while stopping", st)
				}
			},
		},
		{
			name: "a forced stop of a stopped VM writes nothing", typ: fsm.ActionRequestType,
			req: &fsm.ActionRequest{Time: fsm.TestTime, VM: "r1", Action: resource.ActionStop, Force: true},
			setup: func(t *testing.T, f *fsm.FSM) {
				fsm.TestMustApply(t, f, 9, fsm.ReportRequestType, rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseStopped, SetPower: resource.PowerStopped}))
			},
		},
		{
			name: "start clears a forced stop", typ: fsm.ActionRequestType, req: act("r1", resource.ActionStart),
			setup: func(t *testing.T, f *fsm.FSM) {
				running(t, f)
				fsm.TestMustApply(t, f, 10, fsm.ActionRequestType, &fsm.ActionRequest{Time: fsm.TestTime, VM: "r1", Action: resource.ActionStop, Force: true})
			},
			wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				power(resource.PowerRunning)(t, f, r)
				if st := vmStatus(t, f, "r1"); st.StopForced {
					t.Errorf("vm/r1 = %+v, want stop_forced cleared", st)
				}
			},
		},
		{
			name: "force with another action", typ: fsm.ActionRequestType, setup: running,
			req:     &fsm.ActionRequest{Time: fsm.TestTime, VM: "r1", Action: resource.ActionReboot, Force: true},
			wantErr: resource.ErrInvalid, check: wantField("force"),
		},
	})
}

// ---- migrate ----

func mig(vmName, host string, after, grace time.Duration) *fsm.MigrateRequest {
	return &fsm.MigrateRequest{Time: tDown.Add(after), VM: vmName, Host: host, Grace: grace}
}

// migPhase is mig with protocol 5's phase_only.
func migPhase(vmName, host string, after, grace time.Duration) *fsm.MigrateRequest {
	r := mig(vmName, host, after, grace)
	r.PhaseOnly = true
	return r
}

func TestMigrate(t *testing.T) {
	stopped := func(t *testing.T, f *fsm.FSM) {
		fsm.TestMustApply(t, f, 9, fsm.ReportRequestType, rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseStopped, SetPower: resource.PowerStopped}))
	}
	movedTo := func(name, host string, power string) func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
		return func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
			t.Helper()
			st := vmStatus(t, f, name)
			if st.Phase != resource.PhaseScheduled || st.Host != host || st.Epoch != lat || !strings.Contains(st.Reason, "migrated") {
				t.Errorf("vm/%s = %+v, want scheduled on %s at epoch %d", name, st, host, lat)
			}
			if got := vmSpecOf(t, f, name).Power; got != power {
				t.Errorf("vm/%s power = %s, want %s (kept)", name, got, power)
			}
			fsm.TestCheckAllocations(t, f)
		}
	}
	runLifeCases(t, []lifeCase{
		{
			name: "a stopped VM moves to another host", setup: stopped, typ: fsm.MigrateRequestType, req: mig("r1", "h1", 0, 0),
			wantEvents: "updated:vm/r1 updated:host/h1 updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				movedTo("r1", "h1", resource.PowerStopped)(t, f, r)
				wantAllocated(t, f, "h1", amount(1, 512))
				wantAllocated(t, f, "h2", amount(0, 0))
			},
		},
		{
			name: "a pending VM is placed on the named host", typ: fsm.MigrateRequestType, req: mig("p1", "h2", 0, 0),
			wantEvents: "updated:vm/p1 updated:host/h2", check: movedTo("p1", "h2", resource.PowerRunning),
		},
		{
			name: "a running VM on a live host is refused", typ: fsm.MigrateRequestType, req: mig("r1", "h1", 0, 0),
			setup: func(t *testing.T, f *fsm.FSM) { report(t, f, 9, "h2", "r1", 8, resource.PhaseRunning) }, wantErr: fsm.ErrWrongPhase,
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				if !strings.Contains(r.Err.Error(), "stop it first") {
					t.Errorf("error %q does not say what to do", r.Err)
				}
			},
		},
		{
			name: "a stopped VM that is to run again is refused", typ: fsm.MigrateRequestType, req: mig("r1", "h1", 0, 0),
			setup: func(t *testing.T, f *fsm.FSM) { report(t, f, 9, "h2", "r1", 8, resource.PhaseStopped) }, wantErr: fsm.ErrWrongPhase,
		},
		{
			name: "a running VM on a host down for the grace moves, still to run", setup: evacSetup,
			typ: fsm.MigrateRequestType, req: mig("rn", "h1", time.Minute, 30*time.Second),
			wantEvents: "updated:vm/rn updated:host/h1 updated:host/h3", check: movedTo("rn", "h1", resource.PowerRunning),
		},
		{
			name: "a running VM on a host down for less than the grace is refused", setup: evacSetup,
			typ: fsm.MigrateRequestType, req: mig("rn", "h1", 10*time.Second, 30*time.Second), wantErr: fsm.ErrWrongPhase,
		},
		{
			// Protocol 5: no clock decides. However long ago status.since
			// says the host went down, a VM not yet evacuated stays.
			name: "phase only: a running VM on a host down for hours waits for the evacuation", setup: evacSetup,
			typ: fsm.MigrateRequestType, req: migPhase("rn", "h1", 100*time.Hour, 30*time.Second), wantErr: fsm.ErrWrongPhase,
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				if !strings.Contains(r.Err.Error(), "once the controllers have evacuated the host") {
					t.Errorf("error %q does not say when it can move", r.Err)
				}
			},
		},
		{
			name: "phase only: a failed VM moves", typ: fsm.MigrateRequestType, req: migPhase("r1", "h1", 0, 0),
			setup:      func(t *testing.T, f *fsm.FSM) { report(t, f, 9, "h2", "r1", 8, resource.PhaseFailed) },
			wantEvents: "updated:vm/r1 updated:host/h1 updated:host/h2", check: movedTo("r1", "h1", resource.PowerRunning),
		},
		{
			name: "phase only: a stopped VM moves", setup: stopped, typ: fsm.MigrateRequestType, req: migPhase("r1", "h1", 0, 0),
			wantEvents: "updated:vm/r1 updated:host/h1 updated:host/h2", check: movedTo("r1", "h1", resource.PowerStopped),
		},
		{
			name: "a failed VM moves", typ: fsm.MigrateRequestType, req: mig("r1", "h1", 0, 0),
			setup:      func(t *testing.T, f *fsm.FSM) { report(t, f, 9, "h2", "r1", 8, resource.PhaseFailed) },
			wantEvents: "updated:vm/r1 updated:host/h1 updated:host/h2", check: movedTo("r1", "h1", resource.PowerRunning),
		},
		{name: "to the host it is on", setup: stopped, typ: fsm.MigrateRequestType, req: mig("r1", "h2", 0, 0), wantErr: fsm.ErrWrongPhase},
		{name: "to a down host", setup: stopped, typ: fsm.MigrateRequestType, req: mig("r1", "dn", 0, 0), wantErr: fsm.ErrHostNotReady},
		{
			name: "to a host without room", typ: fsm.MigrateRequestType, req: mig("p2", "h2", 0, 0), wantErr: fsm.ErrNoCapacity,
		},
		{name: "to an unknown host", setup: stopped, typ: fsm.MigrateRequestType, req: mig("r1", "zz", 0, 0), wantErr: fsm.ErrNotFound},
		{name: "an unknown VM", typ: fsm.MigrateRequestType, req: mig("zz", "h1", 0, 0), wantErr: fsm.ErrNotFound},
		{name: "no host", typ: fsm.MigrateRequestType, req: mig("p1", "", 0, 0), wantErr: resource.ErrInvalid, check: wantField("host")},
		{name: "payload unknown field", halts: true, data: []byte("\x0b" + `{"vm":"p1","host":"h1","explode":1}`), wantErr: fsm.ErrBadPayload},
	})
}

// TestMigrateEpochs: after a move the old host's reports are refused and
// the new host's accepted.
func TestMigrateEpochs(t *testing.T) {
	f := fsm.TestFSM(t)
	lifeSeed(t, f)
	fsm.TestMustApply(t, f, 9, fsm.ReportRequestType, rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseStopped, SetPower: resource.PowerStopped}))
	if r := fsm.TestMustApply(t, f, 10, fsm.MigrateRequestType, mig("r1", "h1", 0, 0)); r.Err != nil {
		t.Fatal(r.Err)
	}
	r := fsm.TestMustApply(t, f, 11, fsm.ReportRequestType, rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseRunning}))
	if !errors.Is(r.ItemErrors[0], fsm.ErrStaleEpoch) {
		t.Errorf("report from the old host: %v, want a stale epoch", r.ItemErrors[0])
	}
	report(t, f, 12, "h1", "r1", 10, resource.PhaseStopped)
	fsm.TestCheckAllocations(t, f)
}
