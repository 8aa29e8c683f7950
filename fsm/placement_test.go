package fsm_test

import (
	"strings"
	"testing"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// ---- place ----

func TestPlace(t *testing.T) {
	tooMany := &fsm.PlaceRequest{Time: placeTime}
	for range fsm.MaxBatchOps + 1 {
		tooMany.Unplaced = append(tooMany.Unplaced, fsm.Unplaced{VM: "p1", Reason: "x"})
	}
	runLifeCases(t, []lifeCase{
		{
			name: "pending VM on a ready host", typ: fsm.PlaceRequestType, req: place("p1@h1"),
			wantItems: []error{nil}, wantEvents: "updated:vm/p1 updated:host/h1",
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				want := resource.VMStatus{Phase: resource.PhaseScheduled, Host: "h1", Epoch: lat, Since: placeTime.UTC()}
				if got := vmStatus(t, f, "p1"); got != want {
					t.Errorf("vm/p1 status = %+v, want %+v (epoch = the log index, reason cleared)", got, want)
				}
				if got := string(mustGet(t, f, vm, "p1").Status); !strings.Contains(got, `"since":"2025-01-02T04:04:05Z"`) {
					t.Errorf("status %s: since is not stored in UTC", got)
				}
				wantAllocated(t, f, "h1", amount(1, 512))
				if h := mustGet(t, f, host, "h1"); h.ModifyIndex != lat || len(r.Objects) != 2 || !r.Objects[1].Equal(h) {
					t.Errorf("host/h1 = %+v; Result.Objects = %+v", h, r.Objects)
				}
				if s := f.State(); s.Index(vm) != lat || s.Index(host) != lat {
					t.Errorf("indexes vm=%d host=%d, want %d", s.Index(vm), s.Index(host), lat)
				}
			},
		},
		{
			name: "VM that is not pending", typ: fsm.PlaceRequestType, req: place("r1@h1"),
			wantItems: []error{fsm.ErrWrongPhase},
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				if !strings.Contains(r.ItemErrors[0].Error(), "scheduled") {
					t.Errorf("error %q does not say the phase", r.ItemErrors[0])
				}
			},
		},
		{
			name: "running VM", typ: fsm.PlaceRequestType, req: place("r1@h1"),
			setup:     func(t *testing.T, f *fsm.FSM) { report(t, f, 9, "h2", "r1", 8, resource.PhaseRunning) },
			wantItems: []error{fsm.ErrWrongPhase},
		},
		{name: "VM not found", typ: fsm.PlaceRequestType, req: place("zz@h1"), wantItems: []error{fsm.ErrNotFound}},
		{name: "host not found", typ: fsm.PlaceRequestType, req: place("p1@zz"), wantItems: []error{fsm.ErrNotFound}},
		{name: "host down", typ: fsm.PlaceRequestType, req: place("p1@dn"), wantItems: []error{fsm.ErrHostNotReady}},
		{
			name: "host draining", typ: fsm.PlaceRequestType, req: place("p1@h1"),
			setup:     func(t *testing.T, f *fsm.FSM) { hostState(t, f, 9, "h1", resource.HostDraining, 4, 4096) },
			wantItems: []error{fsm.ErrHostNotReady},
		},
		{
			name: "host left", typ: fsm.PlaceRequestType, req: place("p1@h1"),
			setup:     func(t *testing.T, f *fsm.FSM) { hostState(t, f, 9, "h1", resource.HostLeft, 4, 4096) },
			wantItems: []error{fsm.ErrHostNotReady},
		},
		{
			name: "host unschedulable", typ: fsm.PlaceRequestType, req: place("p1@h1"),
			setup: func(t *testing.T, f *fsm.FSM) {
				fsm.TestMustApply(t, f, 9, fsm.UpdateRequestType, hostSpecUpdate("h1", `{"unschedulable":true}`))
			},
			wantItems: []error{fsm.ErrHostNotReady},
		},
		{
			name: "host created by a create, never joined", typ: fsm.PlaceRequestType, req: place("p1@new"),
			setup:     func(t *testing.T, f *fsm.FSM) { fsm.TestCreate(t, f, 9, host, "new", nil) },
			wantItems: []error{fsm.ErrHostNotReady},
		},
		{
			name: "not enough CPUs", typ: fsm.PlaceRequestType, req: place("c5@h1"),
			setup:     func(t *testing.T, f *fsm.FSM) { mkVM(t, f, 9, "c5", `{"cpus":5,"memory_mib":1}`) },
			wantItems: []error{fsm.ErrNoCapacity},
		},
		{
			name: "not enough memory", typ: fsm.PlaceRequestType, req: place("m5@h1"),
			setup:     func(t *testing.T, f *fsm.FSM) { mkVM(t, f, 9, "m5", `{"cpus":1,"memory_mib":4097}`) },
			wantItems: []error{fsm.ErrNoCapacity},
		},
		{
			name: "exactly fills the host", typ: fsm.PlaceRequestType, req: place("full@h1"),
			setup:     func(t *testing.T, f *fsm.FSM) { mkVM(t, f, 9, "full", `{"cpus":4,"memory_mib":4096}`) },
			wantItems: []error{nil}, wantEvents: "updated:vm/full updated:host/h1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) { wantAllocated(t, f, "h1", amount(4, 4096)) },
		},
		{
			name: "VMs already on the host count", typ: fsm.PlaceRequestType, req: place("p2@h2", "p3@h2"),
			wantItems: []error{fsm.ErrNoCapacity, nil}, wantEvents: "updated:vm/p3 updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				wantAllocated(t, f, "h2", amount(2, 1536))
				if msg := r.ItemErrors[0].Error(); !strings.Contains(msg, "1/2 CPUs") {
					t.Errorf("error %q does not say what is allocated", msg)
				}
			},
		},
		{
			// The scheduler planned p2 on h1 from a state in which p3 was
			// not there yet: the plan is re-checked when it is applied.
			name: "capacity re-checked at apply time", typ: fsm.PlaceRequestType, req: place("p2@h1"),
			setup: func(t *testing.T, f *fsm.FSM) {
				mkVM(t, f, 9, "big", `{"cpus":3,"memory_mib":1024}`)
				placeAll(t, f, 10, "h1", "big")
			},
			wantItems: []error{fsm.ErrNoCapacity},
		},
		{
			name: "overcommit ratios from the host spec", typ: fsm.PlaceRequestType, req: place("x@h2", "y@h2"),
			setup: func(t *testing.T, f *fsm.FSM) {
				// h2: 2 CPUs × 1.5 = 3, 2048MiB × 2 = 4096; r1 uses 1 and 512.
				fsm.TestMustApply(t, f, 9, fsm.UpdateRequestType, hostSpecUpdate("h2", `{"cpu_overcommit":1.5,"memory_overcommit":2}`))
				mkVM(t, f, 10, "x", `{"cpus":2,"memory_mib":3584}`)
				mkVM(t, f, 11, "y", `{"cpus":1,"memory_mib":1}`)
			},
			wantItems: []error{nil, fsm.ErrNoCapacity}, wantEvents: "updated:vm/x updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) { wantAllocated(t, f, "h2", amount(3, 4096)) },
		},
		{
			name: "schedulable capacity is the floor of capacity × ratio", typ: fsm.PlaceRequestType,
			req: place("c5@odd", "m@odd", "fits@odd"),
			setup: func(t *testing.T, f *fsm.FSM) {
				// 3 CPUs × 1.5 = 4.5 → 4; 1001MiB × 1.5 = 1501.5 → 1501.
				hostState(t, f, 9, "odd", resource.HostReady, 3, 1001)
				fsm.TestMustApply(t, f, 10, fsm.UpdateRequestType, hostSpecUpdate("odd", `{"cpu_overcommit":1.5,"memory_overcommit":1.5}`))
				mkVM(t, f, 11, "c5", `{"cpus":5,"memory_mib":1}`)
				mkVM(t, f, 12, "m", `{"cpus":1,"memory_mib":1502}`)
				mkVM(t, f, 13, "fits", `{"cpus":4,"memory_mib":1501}`)
			},
			wantItems: []error{fsm.ErrNoCapacity, fsm.ErrNoCapacity, nil}, wantEvents: "updated:vm/fits updated:host/odd",
		},
		{
			// 25 × 1.16 is 28.999999999999996 in float64; the user means 29.
			name: "a ratio that is inexact in binary", typ: fsm.PlaceRequestType, req: place("c30@odd", "c29@odd"),
			setup: func(t *testing.T, f *fsm.FSM) {
				hostState(t, f, 9, "odd", resource.HostReady, 25, 1000)
				fsm.TestMustApply(t, f, 10, fsm.UpdateRequestType, hostSpecUpdate("odd", `{"cpu_overcommit":1.16,"memory_overcommit":1.1}`))
				mkVM(t, f, 11, "c30", `{"cpus":30,"memory_mib":1}`)
				mkVM(t, f, 12, "c29", `{"cpus":29,"memory_mib":1100}`)
			},
			wantItems: []error{fsm.ErrNoCapacity, nil}, wantEvents: "updated:vm/c29 updated:host/odd",
		},
		{
			// The vm_host index must not mix up h1 and h10.
			name: "host names that are prefixes of each other", typ: fsm.PlaceRequestType, req: place("p2@h10", "p1@h1"),
			setup:      func(t *testing.T, f *fsm.FSM) { hostState(t, f, 9, "h10", resource.HostReady, 2, 2048) },
			wantItems:  []error{nil, nil},
			wantEvents: "updated:vm/p2 updated:vm/p1 updated:host/h1 updated:host/h10",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				wantAllocated(t, f, "h1", amount(1, 512))
				wantAllocated(t, f, "h10", amount(2, 2048))
			},
		},
		{
			name: "placements that together exceed a host", typ: fsm.PlaceRequestType,
			req:   place("p1@h1", "p2@h1", "c2@h1", "p3@h1"),
			setup: func(t *testing.T, f *fsm.FSM) { mkVM(t, f, 9, "c2", `{"cpus":2,"memory_mib":1024}`) },
			// p1 (1, 512) and p2 (2, 2048) fit; c2 (2, 1024) would make 5
			// CPUs; p3 (1, 1024) still fits after it.
			wantItems:  []error{nil, nil, fsm.ErrNoCapacity, nil},
			wantEvents: "updated:vm/p1 updated:vm/p2 updated:vm/p3 updated:host/h1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				wantAllocated(t, f, "h1", amount(4, 3584))
				if st := vmStatus(t, f, "c2"); st.Phase != resource.PhasePending || st.Host != "" {
					t.Errorf("vm/c2 = %+v, want still pending", st)
				}
				for _, n := range []string{"p1", "p2", "p3"} {
					if st := vmStatus(t, f, n); st.Host != "h1" || st.Epoch != lat {
						t.Errorf("vm/%s = %+v, want on h1 at epoch %d", n, st, lat)
					}
				}
			},
		},
		{
			name: "placements on several hosts, each judged alone", typ: fsm.PlaceRequestType,
			req:        place("p1@h1", "zz@h1", "p2@dn", "r1@h1", "p3@zz", "p2@h1"),
			wantItems:  []error{nil, fsm.ErrNotFound, fsm.ErrHostNotReady, fsm.ErrWrongPhase, fsm.ErrNotFound, nil},
			wantEvents: "updated:vm/p1 updated:vm/p2 updated:host/h1",
		},
		{
			name: "the same VM twice in one plan", typ: fsm.PlaceRequestType, req: place("p1@h1", "p1@h2"),
			wantItems: []error{nil, fsm.ErrWrongPhase}, wantEvents: "updated:vm/p1 updated:host/h1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) { wantAllocated(t, f, "h2", amount(1, 512)) },
		},
		{
			name: "unplaced sets the pending reason", typ: fsm.PlaceRequestType,
			req:       &fsm.PlaceRequest{Time: placeTime, Unplaced: []fsm.Unplaced{{VM: "p1", Reason: "no host has 1 CPU free"}}},
			wantItems: []error{}, wantEvents: "updated:vm/p1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				want := resource.VMStatus{Phase: resource.PhasePending, Reason: "no host has 1 CPU free", Since: fsm.TestTime}
				if got := vmStatus(t, f, "p1"); got != want {
					t.Errorf("vm/p1 = %+v, want %+v (since unchanged)", got, want)
				}
			},
		},
		{
			name: "unplaced with the reason the VM has writes nothing", typ: fsm.PlaceRequestType,
			req: &fsm.PlaceRequest{Time: placeTime, Unplaced: []fsm.Unplaced{{VM: "p1", Reason: "waiting for placement"}}},
		},
		{
			name: "unplaced ignores VMs that are not pending or do not exist", typ: fsm.PlaceRequestType,
			req: &fsm.PlaceRequest{Time: placeTime, Unplaced: []fsm.Unplaced{{VM: "r1", Reason: "x"}, {VM: "zz", Reason: "y"}}},
		},
		{
			name: "placed and unplaced in one plan: the placement wins", typ: fsm.PlaceRequestType,
			req: &fsm.PlaceRequest{
				Time: placeTime, Placements: []fsm.Placement{{VM: "p1", Host: "h1"}},
				Unplaced: []fsm.Unplaced{{VM: "p1", Reason: "x"}, {VM: "p2", Reason: "no room"}},
			},
			wantItems: []error{nil}, wantEvents: "updated:vm/p1 updated:vm/p2 updated:host/h1",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := vmStatus(t, f, "p1"); st.Phase != resource.PhaseScheduled || st.Reason != "" {
					t.Errorf("vm/p1 = %+v", st)
				}
				if st := vmStatus(t, f, "p2"); st.Reason != "no room" {
					t.Errorf("vm/p2 = %+v", st)
				}
			},
		},
		{name: "empty plan", typ: fsm.PlaceRequestType, req: &fsm.PlaceRequest{Time: placeTime}, wantItems: []error{}},
		{name: "too many entries", typ: fsm.PlaceRequestType, req: tooMany, wantErr: fsm.ErrBadPayload},
		{name: "payload unknown field", halts: true, data: []byte("\x06" + `{"placements":[{"vm":"p1","host":"h1","epoch":3}]}`), wantErr: fsm.ErrBadPayload},
		{name: "payload wrong type", halts: true, data: []byte("\x06" + `{"placements":{"vm":"p1"}}`), wantErr: fsm.ErrBadPayload},
	})
}

// TestCreateVMWithoutHosts: a VM created when there is no host object at
// all says so in its reason; with any host (even one that is down) it is
// waiting for placement.
func TestCreateVMWithoutHosts(t *testing.T) {
	f := fsm.TestFSM(t)
	reason := func(name string) string { t.Helper(); return vmStatus(t, f, name).Reason }
	mkVM(t, f, 1, "v1", vmSpec1)
	if got := reason("v1"); got != resource.ReasonNoHosts {
		t.Errorf("vm/v1 reason = %q, want %q", got, resource.ReasonNoHosts)
	}
	fsm.TestCreate(t, f, 2, host, "h1", nil) // down, never joined
	mkVM(t, f, 3, "v2", vmSpec1)
	if got := reason("v2"); got != resource.ReasonWaitingForPlacement {
		t.Errorf("vm/v2 reason = %q, want %q", got, resource.ReasonWaitingForPlacement)
	}
	if got := reason("v1"); got != resource.ReasonNoHosts {
		t.Errorf("a host's arrival rewrote vm/v1's reason to %q", got)
	}
	fsm.TestMustApply(t, f, 4, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: host, Name: "h1"})
	fsm.TestMustApply(t, f, 5, fsm.BatchRequestType, batchOf(t,
		fsm.CreateRequestType, createReq(vm, "v3", "id-v3", nil, vmSpec1),
		fsm.HostStateRequestType, hsReq("h2", resource.HostReady, 1, 1024),
		fsm.CreateRequestType, createReq(vm, "v4", "id-v4", nil, vmSpec1),
	))
	if got := reason("v3"); got != resource.ReasonNoHosts {
		t.Errorf("vm/v3 reason = %q, want %q", got, resource.ReasonNoHosts)
	}
	if got := reason("v4"); got != resource.ReasonWaitingForPlacement {
		t.Errorf("vm/v4, created after host/h2 in the same batch: reason = %q", got)
	}
}
