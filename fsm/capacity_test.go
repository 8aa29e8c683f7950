package fsm_test

import (
	"strings"
	"testing"

	"github.com/kumoi/kumoi/fsm"
)

// ---- allocation bookkeeping of create, update, status, delete ----

func TestAllocation(t *testing.T) {
	runLifeCases(t, []lifeCase{
		{
			name: "deleting a placed VM frees its host", typ: fsm.DeleteRequestType,
			req: &fsm.DeleteRequest{Kind: vm, Name: "r1"}, wantEvents: "deleted:vm/r1 updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) { wantAllocated(t, f, "h2", amount(0, 0)) },
		},
		{
			name: "deleting a pending VM touches no host", typ: fsm.DeleteRequestType,
			req: &fsm.DeleteRequest{Kind: vm, Name: "p1"}, wantEvents: "deleted:vm/p1",
		},
		{
			name: "deleting a host with VMs is refused", typ: fsm.DeleteRequestType,
			req: &fsm.DeleteRequest{Kind: host, Name: "h2"}, wantErr: fsm.ErrHostBusy,
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				if !strings.Contains(r.Err.Error(), "1 CPUs") {
					t.Errorf("error %q does not say what is assigned", r.Err)
				}
			},
		},
		{
			name: "deleting a host with VMs is refused inside a batch too", typ: fsm.BatchRequestType,
			req: batchOf(t, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "p1"},
				fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: host, Name: "h2"}),
			wantErr: fsm.ErrHostBusy,
		},
		{
			name: "deleting a host after its VMs, in one batch", typ: fsm.BatchRequestType,
			req: batchOf(t, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "r1"},
				fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: host, Name: "h2"}),
			wantEvents: "deleted:vm/r1 deleted:host/h2",
		},
		{name: "deleting an empty host", typ: fsm.DeleteRequestType, req: &fsm.DeleteRequest{Kind: host, Name: "h1"}, wantEvents: "deleted:host/h1"},
		{
			name: "resizing a placed VM beyond its host's CPUs", typ: fsm.UpdateRequestType,
			req: vmUpdate("r1", `{"cpus":3,"memory_mib":512}`), wantErr: fsm.ErrNoCapacity,
			check: func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
				if !strings.Contains(r.Err.Error(), `resize vm "r1"`) {
					t.Errorf("error %q does not say what was refused", r.Err)
				}
			},
		},
		{
			name: "resizing a placed VM beyond its host's memory", typ: fsm.UpdateRequestType,
			req: vmUpdate("r1", `{"cpus":1,"memory_mib":2049}`), wantErr: fsm.ErrNoCapacity,
		},
		{
			name: "resizing a placed VM within its host", typ: fsm.UpdateRequestType,
			req: vmUpdate("r1", `{"cpus":2,"memory_mib":2048}`), wantEvents: "updated:vm/r1 updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) { wantAllocated(t, f, "h2", amount(2, 2048)) },
		},
		{
			name: "shrinking a placed VM frees capacity", typ: fsm.UpdateRequestType,
			req: vmUpdate("r1", `{"cpus":1,"memory_mib":256}`), wantEvents: "updated:vm/r1 updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) { wantAllocated(t, f, "h2", amount(1, 256)) },
		},
		{
			name: "a spec change that keeps the size writes no host", typ: fsm.UpdateRequestType,
			req: vmUpdate("r1", `{"cpus":1,"memory_mib":512,"power":"stopped"}`), wantEvents: "updated:vm/r1",
		},
		{
			name: "resizing counts the host's other VMs", typ: fsm.UpdateRequestType,
			req:   vmUpdate("r1", `{"cpus":2,"memory_mib":512}`),
			setup: func(t *testing.T, f *fsm.FSM) { placeAll(t, f, 9, "h2", "p3") },
			// r1 (1, 512) + p3 (1, 1024) on h2 (2, 2048).
			wantErr: fsm.ErrNoCapacity,
		},
		{
			name: "resizing honours the overcommit ratios", typ: fsm.UpdateRequestType,
			req: vmUpdate("r1", `{"cpus":4,"memory_mib":4096}`),
			setup: func(t *testing.T, f *fsm.FSM) {
				fsm.TestMustApply(t, f, 9, fsm.UpdateRequestType, hostSpecUpdate("h2", `{"cpu_overcommit":2,"memory_overcommit":2}`))
			},
			wantEvents: "updated:vm/r1 updated:host/h2",
		},
		{
			name: "resizing a pending VM is not checked", typ: fsm.UpdateRequestType,
			req: vmUpdate("p1", `{"cpus":1024,"memory_mib":1048576}`), wantEvents: "updated:vm/p1",
		},
		{
			name: "a host spec change keeps the allocation", typ: fsm.UpdateRequestType,
			req: hostSpecUpdate("h2", `{"unschedulable":true}`), wantEvents: "updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) { wantAllocated(t, f, "h2", amount(1, 512)) },
		},
		{
			name: "a status write that moves a VM recomputes both hosts", typ: fsm.StatusRequestType,
			req:        &fsm.StatusRequest{Kind: vm, Name: "r1", Status: raw(`{"phase":"running","host":"h1","epoch":8}`)},
			wantEvents: "updated:vm/r1 updated:host/h1 updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				wantAllocated(t, f, "h1", amount(1, 512))
				wantAllocated(t, f, "h2", amount(0, 0))
			},
		},
		{
			name: "a status write that clears the host frees it", typ: fsm.StatusRequestType,
			req:        &fsm.StatusRequest{Kind: vm, Name: "r1", Status: raw(`{"phase":"pending"}`)},
			wantEvents: "updated:vm/r1 updated:host/h2",
		},
		{
			name: "a status write naming a host that does not exist", typ: fsm.StatusRequestType,
			req:        &fsm.StatusRequest{Kind: vm, Name: "p1", Status: raw(`{"phase":"running","host":"nowhere","epoch":1}`)},
			wantEvents: "updated:vm/p1",
		},
		{
			// Allocation is recomputed once per entry, and written only
			// if it changed.
			name: "a batch that places and deletes a VM leaves the host alone", typ: fsm.BatchRequestType,
			req: batchOf(t, fsm.PlaceRequestType, place("p1@h1"),
				fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "p1"}),
			wantEvents: "updated:vm/p1 deleted:vm/p1",
		},
		{
			name: "a batch that places then resizes writes the host once", typ: fsm.BatchRequestType,
			req: batchOf(t, fsm.PlaceRequestType, place("p1@h1"),
				fsm.UpdateRequestType, vmUpdate("p1", `{"cpus":4,"memory_mib":4096}`)),
			wantEvents: "updated:vm/p1 updated:vm/p1 updated:host/h1",
			check:      func(t *testing.T, f *fsm.FSM, _ *fsm.Result) { wantAllocated(t, f, "h1", amount(4, 4096)) },
		},
		{
			name: "a batch whose placement overfills the host on resize fails whole", typ: fsm.BatchRequestType,
			req: batchOf(t, fsm.PlaceRequestType, place("p1@h1"),
				fsm.UpdateRequestType, vmUpdate("p1", `{"cpus":5,"memory_mib":512}`)),
			wantErr: fsm.ErrNoCapacity,
		},
		{
			name: "a batch sees its own placements", typ: fsm.BatchRequestType,
			req: batchOf(t, fsm.PlaceRequestType, place("p2@h1"), fsm.PlaceRequestType, place("p3@h1", "p1@h1")),
			// p2 (2, 2048) + p3 (1, 1024) + p1 (1, 512) = (4, 3584) on h1.
			wantEvents: "updated:vm/p2 updated:vm/p3 updated:vm/p1 updated:host/h1",
			check:      func(t *testing.T, f *fsm.FSM, _ *fsm.Result) { wantAllocated(t, f, "h1", amount(4, 3584)) },
		},
	})
}
