package fsm_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// The fixture and helpers of the table tests of the placement life cycle
// (placement_test.go, reports_test.go, hosts_test.go, vm_lifecycle_test.go
// and capacity_test.go).

// ---- fixture and helpers ----

// lat is the index lifecycle cases apply their entry at; setups use the
// indexes between the fixture's and lat.
const lat = 30

// The fixture of the lifecycle tables:
//
//	1: host/h1  ready, 4 CPUs, 4GiB
//	2: host/h2  ready, 2 CPUs, 2GiB
//	3: host/dn  down,  8 CPUs, 8GiB
//	4: vm/p1    1 CPU, 512MiB, pending
//	5: vm/p2    2 CPUs, 2GiB, ha=restart, pending
//	6: vm/p3    1 CPU, 1GiB, pending
//	7: vm/r1    1 CPU, 512MiB
//	8: place r1 on h2 (epoch 8): h2 has 1 CPU and 512MiB allocated
func lifeSeed(t testing.TB, f *fsm.FSM) {
	t.Helper()
	hostState(t, f, 1, "h1", resource.HostReady, 4, 4096)
	hostState(t, f, 2, "h2", resource.HostReady, 2, 2048)
	hostState(t, f, 3, "dn", resource.HostDown, 8, 8192)
	mkVM(t, f, 4, "p1", `{"cpus":1,"memory_mib":512}`)
	mkVM(t, f, 5, "p2", `{"cpus":2,"memory_mib":2048,"ha":"restart"}`)
	mkVM(t, f, 6, "p3", `{"cpus":1,"memory_mib":1024}`)
	mkVM(t, f, 7, "r1", `{"cpus":1,"memory_mib":512}`)
	placeAll(t, f, 8, "h2", "r1")
}

func hostState(t testing.TB, f *fsm.FSM, index uint64, name, state string, cpus int, mem int64) {
	t.Helper()
	fsm.TestMustApply(t, f, index, fsm.HostStateRequestType, hsReq(name, state, cpus, mem))
}

func hsReq(name, state string, cpus int, mem int64) *fsm.HostStateRequest {
	return &fsm.HostStateRequest{
		Time: fsm.TestTime, Name: name, ID: "id-" + name, State: state,
		Capacity: resource.Resources{CPUs: cpus, MemoryMiB: mem},
	}
}

func mkVM(t testing.TB, f *fsm.FSM, index uint64, name, spec string) {
	t.Helper()
	fsm.TestMustApply(t, f, index, fsm.CreateRequestType, createReq(vm, name, fsm.TestID(index), nil, spec))
}

// placeAll places vms on host at index; every placement must succeed.
func placeAll(t testing.TB, f *fsm.FSM, index uint64, host string, vms ...string) {
	t.Helper()
	req := &fsm.PlaceRequest{Time: fsm.TestTime}
	for _, v := range vms {
		req.Placements = append(req.Placements, fsm.Placement{VM: v, Host: host})
	}
	res := fsm.TestMustApply(t, f, index, fsm.PlaceRequestType, req)
	for i, err := range res.ItemErrors {
		if err != nil {
			t.Fatalf("place %s on %s at %d: %v", vms[i], host, index, err)
		}
	}
}

// report applies one report for vm from host at index; it must succeed.
func report(t testing.TB, f *fsm.FSM, index uint64, host, vmName string, epoch uint64, phase string) {
	t.Helper()
	res := fsm.TestMustApply(t, f, index, fsm.ReportRequestType, &fsm.ReportRequest{
		Time: fsm.TestTime.Add(time.Duration(index) * time.Minute), Host: host,
		Reports: []fsm.VMReport{{VM: vmName, Epoch: epoch, Phase: phase}},
	})
	if res.ItemErrors[0] != nil {
		t.Fatalf("report %s %s from %s at %d: %v", vmName, phase, host, index, res.ItemErrors[0])
	}
}

func vmStatus(t testing.TB, f *fsm.FSM, name string) resource.VMStatus {
	t.Helper()
	st, err := resource.DecodeStatus[resource.VMStatus](mustGet(t, f, vm, name))
	if err != nil {
		t.Fatal(err)
	}
	return *st
}

func vmSpecOf(t testing.TB, f *fsm.FSM, name string) resource.VMSpec {
	t.Helper()
	s, err := resource.DecodeSpec[resource.VMSpec](mustGet(t, f, vm, name))
	if err != nil {
		t.Fatal(err)
	}
	return *s
}

func hostStatus(t testing.TB, f *fsm.FSM, name string) resource.HostStatus {
	t.Helper()
	st, err := resource.DecodeStatus[resource.HostStatus](mustGet(t, f, host, name))
	if err != nil {
		t.Fatal(err)
	}
	return *st
}

func amount(cpus int, mem int64) resource.Resources {
	return resource.Resources{CPUs: cpus, MemoryMiB: mem}
}

func wantAllocated(t testing.TB, f *fsm.FSM, name string, want resource.Resources) {
	t.Helper()
	if got := hostStatus(t, f, name).Allocated; got != want {
		t.Errorf("host/%s allocated = %+v, want %+v", name, got, want)
	}
}

// evSummary is the entry's events without the index: "updated:vm/p1 …".
func evSummary(t testing.TB, f *fsm.FSM, index uint64) string {
	var parts []string
	for _, ev := range eventsAt(t, f, index) {
		parts = append(parts, fmt.Sprintf("%s:%s/%s", ev.Type, ev.Kind, ev.Name))
	}
	return strings.Join(parts, " ")
}

func hostSpecUpdate(name, spec string) *fsm.UpdateRequest {
	return &fsm.UpdateRequest{Time: fsm.TestTime, Kind: host, Name: name, Spec: raw(spec)}
}

func vmUpdate(name, spec string) *fsm.UpdateRequest {
	return &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: name, Spec: raw(spec)}
}

type lifeCase struct {
	name string
	// setup applies entries at indexes 9..lat-1.
	setup func(t *testing.T, f *fsm.FSM)
	typ   fsm.MessageType
	req   any
	data  []byte // raw entry data instead of typ/req
	// wantErr: the whole entry fails with it and changes nothing.
	wantErr error
	// halts: the FSM cannot understand the entry (wantErr is the cause):
	// it must halt (applyHalts).
	halts bool
	// wantItems are the per-item outcomes (nil: succeeded); checked when
	// non-nil.
	wantItems []error
	// wantEvents are the entry's events (evSummary); "" means the entry
	// must change nothing at all.
	wantEvents string
	check      func(t *testing.T, f *fsm.FSM, res *fsm.Result)
}

func runLifeCases(t *testing.T, cases []lifeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.TestFSM(t)
			lifeSeed(t, f)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			fsm.TestCheckAllocations(t, f)
			l := &raft.Log{Index: lat, Term: 1, Type: raft.LogCommand, Data: tc.data}
			if tc.data == nil {
				l = fsm.TestLog(t, lat, tc.typ, tc.req)
			}
			if tc.wantErr != nil {
				var r *fsm.Result
				if tc.halts {
					r = applyHalts(t, f, l, tc.wantErr)
				} else {
					r = applyFails(t, f, l, tc.wantErr)
				}
				if tc.check != nil {
					tc.check(t, f, r)
				}
				return
			}
			before := observe(t, f)
			r := fsm.TestApplyLog(t, f, l)
			if r.Err != nil {
				t.Fatalf("apply: %v", r.Err)
			}
			if tc.wantItems != nil {
				if len(r.ItemErrors) != len(tc.wantItems) {
					t.Fatalf("ItemErrors = %v, want %d entries", r.ItemErrors, len(tc.wantItems))
				}
				for i, want := range tc.wantItems {
					got := r.ItemErrors[i]
					if (want == nil) != (got == nil) || (want != nil && !errors.Is(got, want)) {
						t.Errorf("ItemErrors[%d] = %v, want %v", i, got, want)
					}
				}
			}
			if got := evSummary(t, f, lat); got != tc.wantEvents {
				t.Errorf("events:\n got %q\nwant %q", got, tc.wantEvents)
			}
			if len(r.Objects) != len(eventsAt(t, f, lat)) {
				t.Errorf("Result has %d objects for %d events", len(r.Objects), len(eventsAt(t, f, lat)))
			}
			if tc.wantEvents == "" {
				if after := observe(t, f); after != before {
					t.Errorf("an entry that writes nothing changed the state:\nbefore %+v\nafter  %+v", before, after)
				}
			}
			fsm.TestCheckAllocations(t, f)
			if tc.check != nil {
				tc.check(t, f, r)
			}
		})
	}
}

func place(ps ...string) *fsm.PlaceRequest {
	req := &fsm.PlaceRequest{Time: placeTime}
	for _, p := range ps {
		v, h, _ := strings.Cut(p, "@")
		req.Placements = append(req.Placements, fsm.Placement{VM: v, Host: h})
	}
	return req
}

// placeTime is a command time outside UTC: stored times are UTC.
var placeTime = fsm.TestTime.Add(time.Hour).In(time.FixedZone("", 9*3600))
