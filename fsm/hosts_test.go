package fsm_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// ---- host-state ----

func TestHostState(t *testing.T) {
	t1 := fsm.TestTime.Add(3 * time.Hour)
	full := func(name, state string) *fsm.HostStateRequest {
		return &fsm.HostStateRequest{
			Time: t1.In(time.FixedZone("", -5*3600)), Name: name, ID: "id-new", Labels: map[string]string{"rack": "r2"},
			State: state, Address: "127.0.0.12:7946", Capacity: amount(16, 32768), Driver: "libvirt", Reason: "joined",
		}
	}
	runLifeCases(t, []lifeCase{
		{
			name: "creates the host", typ: fsm.HostStateRequestType, req: full("h9", resource.HostReady),
			wantEvents: "created:host/h9",
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				o := mustGet(t, f, host, "h9")
				want := &resource.Object{
					Kind: host, Name: "h9", ID: "id-new", Labels: map[string]string{"rack": "r2"},
					CreateIndex: lat, ModifyIndex: lat, Spec: raw(`{"cpu_overcommit":1,"memory_overcommit":1}`),
					Status: raw(`{"state":"ready","address":"127.0.0.12:7946","capacity":{"cpus":16,"memory_mib":32768},` +
						`"allocated":{"cpus":0,"memory_mib":0},"driver":"libvirt","reason":"joined","since":"2025-01-02T06:04:05Z"}`),
				}
				if !o.Equal(want) || len(r.Objects) != 1 || !r.Objects[0].Equal(want) {
					t.Errorf("host/h9:\n got %+v\nwant %+v", o, want)
				}
			},
		},
		{
			name: "creating a host computes the allocation of the VMs that name it", typ: fsm.HostStateRequestType,
			req: full("h9", resource.HostReady),
			setup: func(t *testing.T, f *fsm.FSM) {
				fsm.TestMustApply(t, f, 9, fsm.StatusRequestType, &fsm.StatusRequest{Kind: vm, Name: "p3", Status: raw(`{"phase":"running","host":"h9","epoch":5}`)})
			},
			wantEvents: "created:host/h9",
			check:      func(t *testing.T, f *fsm.FSM, _ *fsm.Result) { wantAllocated(t, f, "h9", amount(1, 1024)) },
		},
		{
			name: "a new state moves since", typ: fsm.HostStateRequestType, req: full("h2", resource.HostDown),
			wantEvents: "updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				want := resource.HostStatus{State: "down", Address: "127.0.0.12:7946", Capacity: amount(16, 32768),
					Allocated: amount(1, 512), Driver: "libvirt", Reason: "joined", Since: t1}
				if got := hostStatus(t, f, "h2"); !got.SameObservation(&want) {
					t.Errorf("host/h2 = %+v, want %+v", got, want)
				}
				o := mustGet(t, f, host, "h2")
				if o.ID != "id-h2" || len(o.Labels) != 0 || o.CreateIndex != 2 || o.ModifyIndex != lat {
					t.Errorf("host/h2 = %+v: id and labels are only used on create", o)
				}
			},
		},
		{
			name: "the same state keeps since", typ: fsm.HostStateRequestType, req: full("h2", resource.HostReady),
			wantEvents: "updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				st := hostStatus(t, f, "h2")
				if !st.Since.Equal(fsm.TestTime) || st.Capacity != amount(16, 32768) || st.Address != "127.0.0.12:7946" {
					t.Errorf("host/h2 = %+v", st)
				}
			},
		},
		{
			name: "keeps the allocation, even above a shrunk capacity", typ: fsm.HostStateRequestType,
			req: hsReq("h2", resource.HostDraining, 0, 0), wantEvents: "updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				st := hostStatus(t, f, "h2")
				if st.Allocated != amount(1, 512) || st.Capacity != amount(0, 0) || st.State != resource.HostDraining {
					t.Errorf("host/h2 = %+v", st)
				}
				if vs := vmStatus(t, f, "r1"); vs.Host != "h2" {
					t.Errorf("a capacity change moved vm/r1: %+v", vs)
				}
			},
		},
		{name: "no change writes nothing", typ: fsm.HostStateRequestType, req: hsReq("h2", resource.HostReady, 2, 2048)},
		{
			name: "labels and id of an existing host are ignored", typ: fsm.HostStateRequestType,
			req: &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h2", ID: "other", Labels: map[string]string{"x": "y"}, State: resource.HostReady, Capacity: amount(2, 2048)},
		},
		{
			name: "an existing host needs no id", typ: fsm.HostStateRequestType,
			req: &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h2", State: resource.HostDown, Capacity: amount(2, 2048)}, wantEvents: "updated:host/h2",
		},
		{name: "empty name", typ: fsm.HostStateRequestType, req: full("", resource.HostReady), wantErr: resource.ErrInvalid, check: wantField("name")},
		{name: "bad name", typ: fsm.HostStateRequestType, req: full("H9", resource.HostReady), wantErr: resource.ErrInvalid, check: wantField("name")},
		{name: "unknown state", typ: fsm.HostStateRequestType, req: full("h2", "up"), wantErr: resource.ErrInvalid, check: wantField("state")},
		{name: "empty state", typ: fsm.HostStateRequestType, req: full("h2", ""), wantErr: resource.ErrInvalid, check: wantField("state")},
		{name: "negative CPUs", typ: fsm.HostStateRequestType, req: hsReq("h2", resource.HostReady, -1, 2048), wantErr: resource.ErrInvalid, check: wantField("capacity")},
		{name: "negative memory", typ: fsm.HostStateRequestType, req: hsReq("h9", resource.HostReady, 1, -1), wantErr: resource.ErrInvalid, check: wantField("capacity")},
		{
			name: "a new host needs an id", typ: fsm.HostStateRequestType,
			req:     &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h9", State: resource.HostReady},
			wantErr: resource.ErrInvalid, check: wantField("id"),
		},
		{
			name: "a new host with bad labels", typ: fsm.HostStateRequestType,
			req:     &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h9", ID: "x", Labels: map[string]string{"bad key": "v"}, State: resource.HostReady},
			wantErr: resource.ErrInvalid, check: wantField("labels"),
		},
		{name: "payload unknown field", halts: true, data: []byte("\x08" + `{"name":"h9","id":"x","state":"ready","capacity":{"cpus":1,"memory_mib":1,"gpus":1}}`), wantErr: fsm.ErrBadPayload},
	})
}

func wantField(field string) func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
	return func(t *testing.T, _ *fsm.FSM, r *fsm.Result) {
		t.Helper()
		if got := fieldOf(r.Err); got != field {
			t.Errorf("error %q names field %q, want %q", r.Err, got, field)
		}
	}
}

// ---- evacuate ----

var tDown = fsm.TestTime.Add(time.Hour)

// evacSetup puts three VMs on h3 and lets h3 go down at tDown:
//
//	9-12: host/h3 ready (8, 8192); vm/ra (2, 1024, restart); vm/rn (1, 512,
//	      none); vm/rs (1, 256, restart, stopped)
//	13:   place ra, rn, rs on h3 (epoch 13); 14: ra and rn report running
//	15:   host/h3 down since tDown
func evacSetup(t *testing.T, f *fsm.FSM) {
	t.Helper()
	hostState(t, f, 9, "h3", resource.HostReady, 8, 8192)
	mkVM(t, f, 10, "ra", `{"cpus":2,"memory_mib":1024,"ha":"restart"}`)
	mkVM(t, f, 11, "rn", `{"cpus":1,"memory_mib":512,"ha":"none"}`)
	mkVM(t, f, 12, "rs", `{"cpus":1,"memory_mib":256,"ha":"restart","power":"stopped"}`)
	placeAll(t, f, 13, "h3", "ra", "rn", "rs")
	fsm.TestMustApply(t, f, 14, fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "h3", Reports: []fsm.VMReport{
		{VM: "ra", Epoch: 13, Phase: resource.PhaseRunning}, {VM: "rn", Epoch: 13, Phase: resource.PhaseRunning},
	}})
	fsm.TestMustApply(t, f, 15, fsm.HostStateRequestType, &fsm.HostStateRequest{
		Time: tDown, Name: "h3", State: resource.HostDown, Capacity: amount(8, 8192), Reason: "missed probes",
	})
}

func evac(host string, after, grace time.Duration) *fsm.EvacuateRequest {
	return &fsm.EvacuateRequest{Time: tDown.Add(after), Host: host, Grace: grace, Reason: "h3 is down"}
}

func TestEvacuate(t *testing.T) {
	evacuated := func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
		t.Helper()
		now := tDown.Add(time.Minute)
		for _, n := range []string{"ra", "rs"} {
			st := vmStatus(t, f, n)
			if st.Phase != resource.PhasePending || st.Host != "" || st.Epoch != 0 || !st.Since.Equal(now) || !strings.Contains(st.Reason, "h3 is down") {
				t.Errorf("vm/%s (ha=restart) = %+v, want pending with no host, epoch 0, since %v and the reason", n, st, now)
			}
		}
		want := resource.VMStatus{Phase: resource.PhaseLost, Host: "h3", Epoch: 13, Reason: "h3 is down", Since: now}
		if st := vmStatus(t, f, "rn"); st != want {
			t.Errorf("vm/rn (ha=none) = %+v, want %+v (lost, still assigned)", st, want)
		}
		wantAllocated(t, f, "h3", amount(1, 512))
		if vmSpecOf(t, f, "rs").Power != resource.PowerStopped {
			t.Errorf("evacuation changed vm/rs's spec")
		}
	}
	runLifeCases(t, []lifeCase{
		{
			name: "ha=restart VMs go back to pending, the others are lost", setup: evacSetup,
			typ: fsm.EvacuateRequestType, req: evac("h3", time.Minute, 30*time.Second),
			wantEvents: "updated:vm/ra updated:vm/rn updated:vm/rs updated:host/h3", check: evacuated,
		},
		{
			name: "at exactly the grace", setup: evacSetup,
			typ: fsm.EvacuateRequestType, req: evac("h3", time.Minute, time.Minute),
			wantEvents: "updated:vm/ra updated:vm/rn updated:vm/rs updated:host/h3", check: evacuated,
		},
		{
			name: "before the grace has passed", setup: evacSetup,
			typ: fsm.EvacuateRequestType, req: evac("h3", 29*time.Second, 30*time.Second), wantErr: fsm.ErrWrongPhase,
		},
		{
			name: "a command time before the host went down", setup: evacSetup,
			typ: fsm.EvacuateRequestType, req: evac("h3", -time.Minute, time.Second), wantErr: fsm.ErrWrongPhase,
		},
		{
			name: "while the host is ready", typ: fsm.EvacuateRequestType,
			req: evac("h2", 100*time.Hour, 0), wantErr: fsm.ErrWrongPhase,
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				if !strings.Contains(r.Err.Error(), "ready") {
					t.Errorf("error %q does not say the host's state", r.Err)
				}
			},
		},
		{
			name: "while the host is draining", typ: fsm.EvacuateRequestType, req: evac("h2", 100*time.Hour, 0),
			setup:   func(t *testing.T, f *fsm.FSM) { hostState(t, f, 9, "h2", resource.HostDraining, 2, 2048) },
			wantErr: fsm.ErrWrongPhase,
		},
		{
			name: "a host that left", typ: fsm.EvacuateRequestType, req: evac("h2", 100*time.Hour, time.Hour),
			setup: func(t *testing.T, f *fsm.FSM) { hostState(t, f, 9, "h2", resource.HostLeft, 2, 2048) },
			// r1 (ha=none) is lost but still assigned: h2's allocation
			// does not change.
			wantEvents: "updated:vm/r1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := vmStatus(t, f, "r1"); st.Phase != resource.PhaseLost || st.Host != "h2" {
					t.Errorf("vm/r1 = %+v", st)
				}
				wantAllocated(t, f, "h2", amount(1, 512))
			},
		},
		{name: "host not found", typ: fsm.EvacuateRequestType, req: evac("zz", time.Hour, 0), wantErr: fsm.ErrNotFound},
		{name: "a down host without VMs", typ: fsm.EvacuateRequestType, req: evac("dn", time.Hour, 0)},
		{
			name: "a second evacuation writes nothing", typ: fsm.EvacuateRequestType, req: evac("h3", time.Hour, 30*time.Second),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup(t, f)
				fsm.TestMustApply(t, f, 16, fsm.EvacuateRequestType, evac("h3", time.Minute, 30*time.Second))
			},
		},
		{
			name: "a lost VM keeps its reservation: its host cannot be deleted", typ: fsm.DeleteRequestType,
			req: &fsm.DeleteRequest{Kind: host, Name: "h3"}, wantErr: fsm.ErrHostBusy,
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup(t, f)
				fsm.TestMustApply(t, f, 16, fsm.EvacuateRequestType, evac("h3", time.Minute, 30*time.Second))
			},
		},
		{
			name: "grace as a string", halts: true, data: []byte("\x09" + `{"host":"h3","grace":"30s"}`), wantErr: fsm.ErrBadPayload,
		},
	})
}

// TestEvacuateReplaceEpochs follows an ha=restart VM from a dead host to a
// new one: the new placement has a new epoch, and reports for the old
// placement are rejected from the old host and from the new one.
func TestEvacuateReplaceEpochs(t *testing.T) {
	f := fsm.TestFSM(t)
	lifeSeed(t, f)
	evacSetup(t, f)
	fsm.TestMustApply(t, f, 16, fsm.EvacuateRequestType, evac("h3", time.Minute, 30*time.Second))
	placeAll(t, f, 17, "h1", "ra")
	if st := vmStatus(t, f, "ra"); st.Host != "h1" || st.Epoch != 17 || st.Phase != resource.PhaseScheduled {
		t.Fatalf("vm/ra = %+v, want scheduled on h1 at epoch 17", st)
	}
	for i, tc := range []struct {
		host  string
		epoch uint64
		want  error
	}{
		{"h3", 13, fsm.ErrStaleEpoch}, // the old host, the old placement
		{"h1", 13, fsm.ErrStaleEpoch}, // the new host, the old placement
		{"h3", 17, fsm.ErrStaleEpoch}, // the old host, the new epoch
		{"h1", 17, nil},
	} {
		index := uint64(18 + i)
		r := fsm.TestMustApply(t, f, index, fsm.ReportRequestType, rep(tc.host, fsm.VMReport{VM: "ra", Epoch: tc.epoch, Phase: resource.PhaseRunning}))
		if got := r.ItemErrors[0]; (tc.want == nil) != (got == nil) || !errors.Is(got, tc.want) {
			t.Errorf("report from %s for epoch %d: %v, want %v", tc.host, tc.epoch, got, tc.want)
		}
	}
	if st := vmStatus(t, f, "ra"); st.Phase != resource.PhaseRunning || st.Host != "h1" {
		t.Errorf("vm/ra = %+v", st)
	}
	wantAllocated(t, f, "h1", amount(2, 1024))
	wantAllocated(t, f, "h3", amount(1, 512))
	// The dead host comes back: a lost VM is still assigned to it, and its
	// reports for that placement are accepted.
	hostState(t, f, 22, "h3", resource.HostReady, 8, 8192)
	report(t, f, 23, "h3", "rn", 13, resource.PhaseStopped)
	// It can be deleted only when nothing is assigned to it.
	applyFails(t, f, fsm.TestLog(t, 24, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: host, Name: "h3"}), fsm.ErrHostBusy)
	fsm.TestMustApply(t, f, 25, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "rn"})
	fsm.TestMustApply(t, f, 26, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: host, Name: "h3"})
	fsm.TestCheckAllocations(t, f)
}
