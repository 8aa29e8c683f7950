package fsm_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// ---- report ----

func rep(host string, rs ...fsm.VMReport) *fsm.ReportRequest {
	return &fsm.ReportRequest{Time: reportTime, Host: host, Reports: rs}
}

var reportTime = fsm.TestTime.Add(2 * time.Hour)

func TestReport(t *testing.T) {
	running := func(t *testing.T, f *fsm.FSM) { report(t, f, 9, "h2", "r1", 8, resource.PhaseRunning) }
	tooMany := rep("h2")
	for range fsm.MaxBatchOps + 1 {
		tooMany.Reports = append(tooMany.Reports, fsm.VMReport{VM: "r1", Epoch: 8, Phase: "running"})
	}
	cases := []lifeCase{
		{
			name: "new phase", typ: fsm.ReportRequestType,
			req:       rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseStarting, Reason: "defining the domain"}),
			wantItems: []error{nil}, wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				want := resource.VMStatus{Phase: resource.PhaseStarting, Host: "h2", Epoch: 8, Reason: "defining the domain", Since: reportTime}
				if got := vmStatus(t, f, "r1"); got != want {
					t.Errorf("vm/r1 = %+v, want %+v", got, want)
				}
				if o := mustGet(t, f, vm, "r1"); o.ModifyIndex != lat || string(o.Spec) != `{"cpus":1,"memory_mib":512,"power":"running","ha":"none"}` {
					t.Errorf("vm/r1 = %+v", o)
				}
			},
		},
		{
			name: "same phase, new reason: since is kept", typ: fsm.ReportRequestType, setup: running,
			req:       rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseRunning, Reason: "balloon inflated"}),
			wantItems: []error{nil}, wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				st := vmStatus(t, f, "r1")
				if st.Reason != "balloon inflated" || !st.Since.Equal(fsm.TestTime.Add(9*time.Minute)) {
					t.Errorf("vm/r1 = %+v, want the new reason and since of the running report at 9", st)
				}
			},
		},
		{
			name: "a report that changes nothing writes nothing", typ: fsm.ReportRequestType, setup: running,
			req:       rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseRunning}),
			wantItems: []error{nil},
		},
		{
			name: "wrong host", typ: fsm.ReportRequestType,
			req:       rep("h1", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseRunning}),
			wantItems: []error{fsm.ErrStaleEpoch},
		},
		{
			name: "a host reporting a pending VM", typ: fsm.ReportRequestType,
			req:       rep("h1", fsm.VMReport{VM: "p1", Epoch: 0, Phase: resource.PhaseRunning}),
			wantItems: []error{fsm.ErrStaleEpoch},
		},
		{
			name: "older epoch", typ: fsm.ReportRequestType,
			req:       rep("h2", fsm.VMReport{VM: "r1", Epoch: 7, Phase: resource.PhaseRunning}),
			wantItems: []error{fsm.ErrStaleEpoch},
		},
		{
			name: "newer epoch", typ: fsm.ReportRequestType,
			req:       rep("h2", fsm.VMReport{VM: "r1", Epoch: 9, Phase: resource.PhaseRunning}),
			wantItems: []error{fsm.ErrStaleEpoch},
		},
		{
			name: "epoch 0", typ: fsm.ReportRequestType,
			req:       rep("h2", fsm.VMReport{VM: "r1", Phase: resource.PhaseRunning}),
			wantItems: []error{fsm.ErrStaleEpoch},
		},
		{
			name: "VM not found", typ: fsm.ReportRequestType,
			req:       rep("h2", fsm.VMReport{VM: "zz", Epoch: 8, Phase: resource.PhaseRunning}),
			wantItems: []error{fsm.ErrNotFound},
		},
		{
			name: "set_power follows the guest", typ: fsm.ReportRequestType, setup: running,
			req:       rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseStopped, Reason: "guest powered off", SetPower: resource.PowerStopped}),
			wantItems: []error{nil}, wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				if s := vmSpecOf(t, f, "r1"); s.Power != resource.PowerStopped || s.CPUs != 1 {
					t.Errorf("vm/r1 spec = %+v, want power stopped", s)
				}
				if st := vmStatus(t, f, "r1"); st.Phase != resource.PhaseStopped || st.Reason != "guest powered off" {
					t.Errorf("vm/r1 status = %+v", st)
				}
				if len(r.Objects) != 1 || !r.Objects[0].Equal(mustGet(t, f, vm, "r1")) {
					t.Errorf("Result.Objects[0] is not the stored object")
				}
			},
		},
		{
			name: "set_power alone", typ: fsm.ReportRequestType, setup: running,
			req:       rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseRunning, SetPower: resource.PowerSuspended}),
			wantItems: []error{nil}, wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if s := vmSpecOf(t, f, "r1"); s.Power != resource.PowerSuspended {
					t.Errorf("vm/r1 spec = %+v", s)
				}
			},
		},
		{
			name: "set_power that is not a power state", typ: fsm.ReportRequestType, setup: running,
			req:       rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseStopped, SetPower: "off"}),
			wantItems: []error{resource.ErrInvalid},
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				if got := fieldOf(r.ItemErrors[0]); got != "set_power" {
					t.Errorf("error %v names field %q", r.ItemErrors[0], got)
				}
			},
		},
		{
			name: "reports are judged one by one", typ: fsm.ReportRequestType, setup: running,
			req: rep("h2",
				fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseStopping},
				fsm.VMReport{VM: "zz", Epoch: 8, Phase: resource.PhaseRunning},
				fsm.VMReport{VM: "r1", Epoch: 7, Phase: resource.PhaseFailed},
				fsm.VMReport{VM: "r1", Epoch: 8, Phase: "exploded"},
			),
			wantItems: []error{nil, fsm.ErrNotFound, fsm.ErrStaleEpoch, resource.ErrInvalid}, wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := vmStatus(t, f, "r1"); st.Phase != resource.PhaseStopping {
					t.Errorf("vm/r1 = %+v", st)
				}
			},
		},
		{
			name: "two reports for one VM: the later one wins", typ: fsm.ReportRequestType,
			req: rep("h2",
				fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseStarting},
				fsm.VMReport{VM: "r1", Epoch: 8, Phase: resource.PhaseRunning},
			),
			wantItems: []error{nil, nil}, wantEvents: "updated:vm/r1 updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := vmStatus(t, f, "r1"); st.Phase != resource.PhaseRunning {
					t.Errorf("vm/r1 = %+v", st)
				}
			},
		},
		{name: "no reports", typ: fsm.ReportRequestType, req: rep("h2"), wantItems: []error{}},
		{name: "too many reports", typ: fsm.ReportRequestType, req: tooMany, wantErr: fsm.ErrBadPayload},
		{name: "payload unknown field", halts: true, data: []byte("\x07" + `{"host":"h2","reports":[],"bogus":1}`), wantErr: fsm.ErrBadPayload},
	}
	for _, ph := range []string{resource.PhaseRunning, resource.PhaseStarting, resource.PhaseStopping, resource.PhaseStopped, resource.PhaseSuspended, resource.PhaseFailed} {
		cases = append(cases, lifeCase{
			name: "reportable phase " + ph, typ: fsm.ReportRequestType,
			req:       rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: ph}),
			wantItems: []error{nil}, wantEvents: "updated:vm/r1",
		})
	}
	for _, ph := range []string{resource.PhasePending, resource.PhaseScheduled, resource.PhaseMigrating, resource.PhaseLost, "", "RUNNING"} {
		cases = append(cases, lifeCase{
			name: fmt.Sprintf("phase %q cannot be reported", ph), typ: fsm.ReportRequestType,
			req:       rep("h2", fsm.VMReport{VM: "r1", Epoch: 8, Phase: ph}),
			wantItems: []error{resource.ErrInvalid},
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				if got := fieldOf(r.ItemErrors[0]); got != "phase" {
					t.Errorf("error %v names field %q, want phase", r.ItemErrors[0], got)
				}
			},
		})
	}
	runLifeCases(t, cases)
}

// TestRebootAcknowledged: a report acknowledges a reboot with reboot_done,
// which only moves forward and never past the reboot asked for.
func TestRebootAcknowledged(t *testing.T) {
	f := fsm.TestFSM(t)
	lifeSeed(t, f)
	report(t, f, 9, "h2", "r1", 8, resource.PhaseRunning)
	fsm.TestMustApply(t, f, 10, fsm.ActionRequestType, act("r1", resource.ActionReboot))
	fsm.TestMustApply(t, f, 11, fsm.ActionRequestType, act("r1", resource.ActionReboot))
	ack := func(index, done, want uint64, wantWrite bool) {
		t.Helper()
		r := fsm.TestMustApply(t, f, index, fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime.Add(9 * time.Minute), Host: "h2",
			Reports: []fsm.VMReport{{VM: "r1", Epoch: 8, Phase: resource.PhaseRunning, RebootDone: done}}})
		if r.ItemErrors[0] != nil {
			t.Fatalf("report: %v", r.ItemErrors[0])
		}
		if st := vmStatus(t, f, "r1"); st.RebootDone != want || st.RebootRequested != 11 {
			t.Errorf("reboot_done %d: status %+v, want reboot_done %d", done, st, want)
		}
		if wrote := len(r.Objects) > 0; wrote != wantWrite {
			t.Errorf("reboot_done %d: wrote %v, want %v", done, wrote, wantWrite)
		}
	}
	ack(12, 12, 0, false) // beyond the reboot asked for: ignored
	ack(13, 10, 10, true)
	ack(14, 10, 10, false) // again: nothing new
	ack(15, 9, 10, false)  // backwards: ignored
	ack(16, 11, 11, true)
}

// TestRestartsCounted: a report of a restart (restarts = status.restarts
// + 1) counts it once: the same report re-sent, a stale count and a jump
// change nothing; the reports that follow it in the placement carry the
// same count and write nothing new.
func TestRestartsCounted(t *testing.T) {
	f := fsm.TestFSM(t)
	lifeSeed(t, f)
	report(t, f, 9, "h2", "r1", 8, resource.PhaseRunning)
	send := func(index, restarts, want uint64, reason string, wantWrite bool) {
		t.Helper()
		r := fsm.TestMustApply(t, f, index, fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime.Add(9 * time.Minute), Host: "h2",
			Reports: []fsm.VMReport{{VM: "r1", Epoch: 8, Phase: resource.PhaseRunning, Reason: reason, Restarts: restarts}}})
		if r.ItemErrors[0] != nil {
			t.Fatalf("report: %v", r.ItemErrors[0])
		}
		if st := vmStatus(t, f, "r1"); st.Restarts != want || st.Reason != reason {
			t.Errorf("restarts %d: status %+v, want restarts %d, reason %q", restarts, st, want, reason)
		}
		if wrote := len(r.Objects) > 0; wrote != wantWrite {
			t.Errorf("restarts %d: wrote %v, want %v", restarts, wrote, wantWrite)
		}
	}
	send(10, 1, 1, "restarted after the guest crashed", true)
	send(11, 1, 1, "restarted after the guest crashed", false) // re-sent: counted once
	send(12, 3, 1, "restarted after the guest crashed", false) // a jump: ignored
	send(13, 2, 2, "restarted again", true)
	send(14, 1, 2, "restarted again", false) // stale: ignored
	send(15, 0, 2, "", true)                 // reports without it keep the count
}

// TestReportSeq: reports with a sequence are recorded only in order, per
// placement. A report sent before one already recorded (delivered late,
// after a partition held it back) is refused and changes nothing, even
// when the newer report had changed nothing itself; reports without a
// sequence (workers of an earlier release) are recorded as before; a new
// placement starts the sequence again.
func TestReportSeq(t *testing.T) {
	f := fsm.TestFSM(t)
	lifeSeed(t, f)
	index := uint64(8)
	send := func(seq uint64, phase string, wantErr error, wantWrite bool) {
		t.Helper()
		index++
		st := vmStatus(t, f, "r1")
		r := fsm.TestMustApply(t, f, index, fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime.Add(9 * time.Minute), Host: st.Host,
			Reports: []fsm.VMReport{{VM: "r1", Epoch: st.Epoch, Phase: phase, Seq: seq}}})
		if !errors.Is(r.ItemErrors[0], wantErr) {
			t.Fatalf("seq %d (%s): %v, want %v", seq, phase, r.ItemErrors[0], wantErr)
		}
		if wrote := len(r.Objects) > 0; wrote != wantWrite {
			t.Errorf("seq %d (%s): wrote %v, want %v", seq, phase, wrote, wantWrite)
		}
		if wantErr != nil && vmStatus(t, f, "r1") != st {
			t.Errorf("seq %d (%s): refused, yet the status changed: %+v, was %+v", seq, phase, vmStatus(t, f, "r1"), st)
		}
	}
	seqOf := func() uint64 { t.Helper(); return vmStatus(t, f, "r1").ReportSeq }

	send(100, resource.PhaseRunning, nil, true)
	if seqOf() != 100 {
		t.Fatalf("report_seq = %d, want 100", seqOf())
	}
	send(200, resource.PhaseRunning, nil, true) // only the sequence is new: recorded
	send(150, resource.PhaseStopping, fsm.ErrStaleEpoch, false)
	send(200, resource.PhaseStopping, fsm.ErrStaleEpoch, false) // the same sequence again: a re-delivery
	if st := vmStatus(t, f, "r1"); st.Phase != resource.PhaseRunning || st.ReportSeq != 200 {
		t.Fatalf("after the late reports: %+v, want running at report_seq 200", st)
	}
	send(0, resource.PhaseStopping, nil, true) // no sequence: recorded, and the sequence kept
	if st := vmStatus(t, f, "r1"); st.Phase != resource.PhaseStopping || st.ReportSeq != 200 {
		t.Fatalf("after a report without a sequence: %+v, want stopping at report_seq 200", st)
	}
	send(201, resource.PhaseStopped, nil, true)

	// A new placement (cold migration to h1): its sequence starts again.
	index++
	fsm.TestMustApply(t, f, index, fsm.ActionRequestType, act("r1", resource.ActionStop))
	index++
	if r := fsm.TestMustApply(t, f, index, fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime.Add(10 * time.Minute), VM: "r1", Host: "h1"}); r.Err != nil {
		t.Fatalf("migrate: %v", r.Err)
	}
	if st := vmStatus(t, f, "r1"); st.Host != "h1" || st.ReportSeq != 0 {
		t.Fatalf("after the migration: %+v, want on h1 with report_seq 0", st)
	}
	send(5, resource.PhaseStarting, nil, true)
	send(4, resource.PhaseStopped, fsm.ErrStaleEpoch, false)
}
