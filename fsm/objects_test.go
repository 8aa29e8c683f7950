package fsm_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// ---- create, update, status, delete (objects.go) ----

func TestApplyCreate(t *testing.T) {
	longName := strings.Repeat("a", resource.MaxNameLen+1)
	tooMany := map[string]string{}
	for i := range resource.MaxLabels + 1 {
		tooMany[fmt.Sprintf("k%d", i)] = "v"
	}
	runApplyCases(t, []applyCase{
		{
			name: "vm ok", typ: fsm.CreateRequestType,
			req: createReq(vm, "c", "id-c", map[string]string{"app": "web", "tier": "front"}, vmSpec1),
			check: func(t *testing.T, f *fsm.FSM, res *fsm.Result) {
				want := &resource.Object{
					Kind: vm, Name: "c", ID: "id-c",
					Labels:      map[string]string{"app": "web", "tier": "front"},
					CreateIndex: at, ModifyIndex: at,
					Spec:   raw(`{"cpus":1,"memory_mib":512,"power":"running","ha":"none"}`),
					Status: initialStatus(t, vm, fsm.TestTime),
				}
				got := mustGet(t, f, vm, "c")
				if !got.Equal(want) {
					t.Errorf("stored object:\n got %+v\nwant %+v", got, want)
				}
				if len(res.Objects) != 1 || !res.Objects[0].Equal(want) {
					t.Errorf("Result.Objects = %+v, want [%+v]", res.Objects, want)
				}
				st, err := resource.DecodeStatus[resource.VMStatus](got)
				if err != nil || st.Phase != resource.PhasePending || !st.Since.Equal(fsm.TestTime) {
					t.Errorf("initial status = %+v (%v), want pending since the command time", st, err)
				}
				if s := f.State(); s.Index(vm) != at || s.LatestIndex() != at || s.Index(host) != 3 {
					t.Errorf("indexes vm=%d host=%d latest=%d, want %d 3 %d", s.Index(vm), s.Index(host), s.LatestIndex(), at, at)
				}
				if evs := eventsAt(t, f, at); eventSummary(evs) != "10:created:vm/c" || !evs[0].Object.Equal(want) {
					t.Errorf("events at %d = %s", at, eventSummary(evs))
				}
			},
		},
		{
			name: "host ok with defaults", typ: fsm.CreateRequestType,
			req: createReq(host, "h2", "id-h2", nil, `{}`),
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				o := mustGet(t, f, host, "h2")
				if string(o.Spec) != `{"cpu_overcommit":1,"memory_overcommit":1}` {
					t.Errorf("spec = %s, want defaults filled in", o.Spec)
				}
				if o.Labels == nil || len(o.Labels) != 0 {
					t.Errorf("labels = %#v, want an empty non-nil map", o.Labels)
				}
				if s := f.State(); s.Index(host) != at || s.Index(vm) != 2 {
					t.Errorf("Index(host)=%d Index(vm)=%d, want %d 2", s.Index(host), s.Index(vm), at)
				}
			},
		},
		{
			name: "same name in another kind ok", typ: fsm.CreateRequestType,
			req: createReq(host, "a", "id-ha", nil, `{}`),
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				mustGet(t, f, host, "a")
				if mustGet(t, f, vm, "a").ID != fsm.TestID(1) {
					t.Errorf("vm/a changed")
				}
			},
		},
		{name: "duplicate name", typ: fsm.CreateRequestType, req: createReq(vm, "a", "id-new", nil, vmSpec1), wantErr: fsm.ErrExists, wantMsg: `vm "a"`},
		{name: "duplicate id", typ: fsm.CreateRequestType, req: createReq(vm, "c", fsm.TestID(2), nil, vmSpec1), wantErr: fsm.ErrExists, wantMsg: fsm.TestID(2)},
		{name: "duplicate id across kinds", typ: fsm.CreateRequestType, req: createReq(host, "h2", fsm.TestID(1), nil, `{}`), wantErr: fsm.ErrExists},
		{name: "empty name", typ: fsm.CreateRequestType, req: createReq(vm, "", "x", nil, vmSpec1), wantErr: resource.ErrInvalid, wantField: "name"},
		{name: "upper-case name", typ: fsm.CreateRequestType, req: createReq(vm, "Web", "x", nil, vmSpec1), wantErr: resource.ErrInvalid, wantField: "name"},
		{name: "name with leading dash", typ: fsm.CreateRequestType, req: createReq(vm, "-a", "x", nil, vmSpec1), wantErr: resource.ErrInvalid, wantField: "name"},
		{name: "name too long", typ: fsm.CreateRequestType, req: createReq(vm, longName, "x", nil, vmSpec1), wantErr: resource.ErrInvalid, wantField: "name"},
		{name: "bad label key", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", map[string]string{"bad key": "v"}, vmSpec1), wantErr: resource.ErrInvalid, wantField: "labels"},
		{name: "bad label value", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", map[string]string{"app": "a\nb"}, vmSpec1), wantErr: resource.ErrInvalid, wantField: "labels.app"},
		{name: "too many labels", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", tooMany, vmSpec1), wantErr: resource.ErrInvalid, wantField: "labels"},
		{name: "empty id", typ: fsm.CreateRequestType, req: createReq(vm, "c", "", nil, vmSpec1), wantErr: resource.ErrInvalid, wantField: "id"},
		{name: "spec missing", typ: fsm.CreateRequestType, data: []byte("\x01" + `{"kind":"vm","name":"c","id":"x"}`), wantErr: resource.ErrInvalid, wantField: "spec"},
		{name: "spec null", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", nil, `null`), wantErr: resource.ErrInvalid, wantField: "spec"},
		{name: "spec cpus zero", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", nil, `{"cpus":0,"memory_mib":1}`), wantErr: resource.ErrInvalid, wantField: "spec.cpus"},
		{name: "spec cpus wrong type", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", nil, `{"cpus":"two","memory_mib":1}`), wantErr: resource.ErrInvalid, wantField: "spec.cpus"},
		{name: "spec memory too large", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", nil, `{"cpus":1,"memory_mib":1099511627776}`), wantErr: resource.ErrInvalid, wantField: "spec.memory_mib"},
		{name: "spec bad power", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", nil, `{"cpus":1,"memory_mib":1,"power":"on"}`), wantErr: resource.ErrInvalid, wantField: "spec.power"},
		{name: "spec unknown field", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", nil, `{"cpus":1,"memory_mib":1,"bogus":1}`), wantErr: resource.ErrInvalid, wantField: "spec.bogus"},
		{name: "spec of another kind", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", nil, `{"cpu_overcommit":2}`), wantErr: resource.ErrInvalid, wantField: "spec.cpu_overcommit"},
		{name: "host spec overcommit below 1", typ: fsm.CreateRequestType, req: createReq(host, "h2", "x", nil, `{"cpu_overcommit":0.5}`), wantErr: resource.ErrInvalid, wantField: "spec.cpu_overcommit"},
		{name: "spec not an object", typ: fsm.CreateRequestType, req: createReq(vm, "c", "x", nil, `[1]`), wantErr: resource.ErrInvalid, wantField: "spec"},
		{name: "unknown kind", typ: fsm.CreateRequestType, req: createReq("gadget", "c", "x", nil, `{}`), wantErr: resource.ErrInvalid, wantField: "kind"},
		{name: "empty kind", typ: fsm.CreateRequestType, req: createReq("", "c", "x", nil, `{}`), wantErr: resource.ErrInvalid, wantField: "kind"},
		{name: "payload unknown field", halts: true, data: []byte("\x01" + `{"kind":"vm","name":"c","id":"x","spec":{"cpus":1,"memory_mib":1},"extra":1}`), wantErr: fsm.ErrBadPayload},
		{name: "payload wrong type", halts: true, data: []byte("\x01" + `{"kind":"vm","name":7}`), wantErr: fsm.ErrBadPayload},
		{name: "payload bad time", halts: true, data: []byte("\x01" + `{"time":"yesterday","kind":"vm","name":"c","id":"x","spec":{"cpus":1,"memory_mib":1}}`), wantErr: fsm.ErrBadPayload},
		{name: "payload null", data: []byte("\x01null"), wantErr: resource.ErrInvalid},
	})
}

// TestApplyCreateTimeOutOfRange: the initial status records the command time
// in UTC; a time that cannot be encoded in UTC must be rejected as invalid
// input naming the "time" field, not surface as an untyped JSON encoding
// error (which the API layer would report as a 500).
func TestApplyCreateTimeOutOfRange(t *testing.T) {
	for _, ts := range []string{"9999-12-31T23:30:00-01:00", "0000-01-01T00:30:00+01:00"} {
		t.Run(ts, func(t *testing.T) {
			f := fsm.TestFSM(t)
			seed(t, f)
			res := applyFails(t, f, entry(at, fsm.CreateRequestType,
				`{"time":"`+ts+`","kind":"vm","name":"c","id":"x","spec":{"cpus":1,"memory_mib":1}}`), resource.ErrInvalid)
			if got := fieldOf(res.Err); got != "time" {
				t.Errorf("error %q names field %q, want \"time\"", res.Err, got)
			}
		})
	}
}

func TestApplyUpdate(t *testing.T) {
	upd := func(name string, cas uint64, labels map[string]string, spec string) *fsm.UpdateRequest {
		return &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: name, CAS: cas, Labels: labels, Spec: raw(spec)}
	}
	replaced := func(t *testing.T, f *fsm.FSM, res *fsm.Result) {
		t.Helper()
		old := fsm.TestSpec(t, vm)
		o := mustGet(t, f, vm, "a")
		want := &resource.Object{
			Kind: vm, Name: "a", ID: fsm.TestID(1),
			Labels:      map[string]string{"tier": "front"},
			CreateIndex: 1, ModifyIndex: at,
			Spec:   raw(`{"cpus":2,"memory_mib":1024,"power":"stopped","ha":"restart"}`),
			Status: noHostsStatus(t, fsm.TestTime),
		}
		if !o.Equal(want) {
			t.Errorf("stored:\n got %+v\nwant %+v", o, want)
		}
		if string(old) == string(o.Spec) {
			t.Errorf("spec not replaced")
		}
		if len(res.Objects) != 1 || !res.Objects[0].Equal(want) {
			t.Errorf("Result.Objects = %+v", res.Objects)
		}
		if s := f.State(); s.Index(vm) != at || s.LatestIndex() != at || s.Index(host) != 3 {
			t.Errorf("indexes vm=%d host=%d latest=%d", s.Index(vm), s.Index(host), s.LatestIndex())
		}
		if got := eventSummary(eventsAt(t, f, at)); got != "10:updated:vm/a" {
			t.Errorf("events = %s", got)
		}
	}
	runApplyCases(t, []applyCase{
		{name: "replace labels and spec", typ: fsm.UpdateRequestType, req: upd("a", 0, map[string]string{"tier": "front"}, vmSpec2), check: replaced},
		{name: "CAS ok", typ: fsm.UpdateRequestType, req: upd("a", 1, map[string]string{"tier": "front"}, vmSpec2), check: replaced},
		{
			name: "nil labels clear the labels", typ: fsm.UpdateRequestType, req: upd("a", 0, nil, vmSpec1),
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if o := mustGet(t, f, vm, "a"); o.Labels == nil || len(o.Labels) != 0 {
					t.Errorf("labels = %#v, want empty", o.Labels)
				}
			},
		},
		{
			name: "status is kept", typ: fsm.UpdateRequestType, req: upd("b", 0, nil, vmSpec2),
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if o := mustGet(t, f, vm, "b"); string(o.Status) != string(noHostsStatus(t, fsm.TestTime)) {
					t.Errorf("status changed by a spec update: %s", o.Status)
				}
			},
		},
		{name: "CAS mismatch", typ: fsm.UpdateRequestType, req: upd("a", 2, nil, vmSpec2), wantErr: fsm.ErrCASMismatch, wantMsg: "it is 1, the request expected 2"},
		{name: "CAS in the future", typ: fsm.UpdateRequestType, req: upd("a", at, nil, vmSpec2), wantErr: fsm.ErrCASMismatch},
		{name: "not found", typ: fsm.UpdateRequestType, req: upd("zz", 0, nil, vmSpec1), wantErr: fsm.ErrNotFound},
		{name: "not found with CAS", typ: fsm.UpdateRequestType, req: upd("zz", 1, nil, vmSpec1), wantErr: fsm.ErrNotFound},
		{name: "wrong kind is not found", typ: fsm.UpdateRequestType, req: &fsm.UpdateRequest{Kind: host, Name: "a", Spec: raw(`{}`)}, wantErr: fsm.ErrNotFound},
		{name: "unknown kind", typ: fsm.UpdateRequestType, req: &fsm.UpdateRequest{Kind: "gadget", Name: "a", Spec: raw(`{}`)}, wantErr: resource.ErrInvalid, wantField: "kind"},
		{name: "bad labels", typ: fsm.UpdateRequestType, req: upd("a", 0, map[string]string{"-x": "1"}, vmSpec1), wantErr: resource.ErrInvalid, wantField: "labels"},
		{name: "bad spec", typ: fsm.UpdateRequestType, req: upd("a", 0, nil, `{"cpus":0,"memory_mib":1}`), wantErr: resource.ErrInvalid, wantField: "spec.cpus"},
		{name: "spec missing", data: []byte("\x02" + `{"kind":"vm","name":"a"}`), wantErr: resource.ErrInvalid, wantField: "spec"},
		{name: "payload unknown field", halts: true, data: []byte("\x02" + `{"kind":"vm","name":"a","spec":{"cpus":1,"memory_mib":1},"status":{}}`), wantErr: fsm.ErrBadPayload},
	})
}

func TestApplyStatus(t *testing.T) {
	st := func(name string, cas uint64, status string) *fsm.StatusRequest {
		return &fsm.StatusRequest{Time: fsm.TestTime, Kind: vm, Name: name, CAS: cas, Status: raw(status)}
	}
	running := `{"phase":"running","host":"h1","epoch":7,"since":"2025-01-02T03:04:05Z"}`
	ok := func(t *testing.T, f *fsm.FSM, res *fsm.Result) {
		t.Helper()
		o := mustGet(t, f, vm, "a")
		if string(o.Status) != running {
			t.Errorf("status = %s, want %s", o.Status, running)
		}
		if string(o.Spec) != string(fsm.TestSpec(t, vm)) || o.Labels["app"] != "web" || o.CreateIndex != 1 || o.ModifyIndex != at {
			t.Errorf("status update touched more than status and modify_index: %+v", o)
		}
		// Naming a host assigns the VM to it: the host's allocation is
		// recomputed in the same entry (an update of host/h1 after vm/a).
		h := mustGet(t, f, host, "h1")
		hs, err := resource.DecodeStatus[resource.HostStatus](h)
		if err != nil || hs.Allocated != (resource.Resources{CPUs: 1, MemoryMiB: 512}) || h.ModifyIndex != at {
			t.Errorf("host/h1 = %+v (allocated %+v, %v), want vm/a's 1 CPU and 512MiB allocated at %d", h, hs, err, at)
		}
		if len(res.Objects) != 2 || !res.Objects[0].Equal(o) || !res.Objects[1].Equal(h) {
			t.Errorf("Result.Objects = %+v, want vm/a then host/h1", res.Objects)
		}
		if s := f.State(); s.Index(vm) != at || s.Index(host) != at || s.LatestIndex() != at {
			t.Errorf("indexes vm=%d host=%d latest=%d", s.Index(vm), s.Index(host), s.LatestIndex())
		}
		if got := eventSummary(eventsAt(t, f, at)); got != "10:updated:vm/a 10:updated:host/h1" {
			t.Errorf("events = %s", got)
		}
	}
	runApplyCases(t, []applyCase{
		{name: "ok", typ: fsm.StatusRequestType, req: st("a", 0, running), check: ok},
		{name: "CAS ok", typ: fsm.StatusRequestType, req: st("a", 1, running), check: ok},
		{
			name: "canonicalised", typ: fsm.StatusRequestType, req: st("a", 0, `{ "host" : "h1", "phase":"running" }`),
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if got := string(mustGet(t, f, vm, "a").Status); got != `{"phase":"running","host":"h1"}` {
					t.Errorf("status = %s, want canonical JSON", got)
				}
			},
		},
		{
			name: "host status", typ: fsm.StatusRequestType,
			req: &fsm.StatusRequest{Kind: host, Name: "h1", Status: raw(`{"state":"ready","capacity":{"cpus":8,"memory_mib":16384},"allocated":{"cpus":0,"memory_mib":0}}`)},
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				hs, err := resource.DecodeStatus[resource.HostStatus](mustGet(t, f, host, "h1"))
				if err != nil || hs.State != resource.HostReady || hs.Capacity.CPUs != 8 {
					t.Errorf("host status = %+v, %v", hs, err)
				}
				if f.State().Index(host) != at || f.State().Index(vm) != 2 {
					t.Errorf("Index(host)=%d Index(vm)=%d", f.State().Index(host), f.State().Index(vm))
				}
			},
		},
		{name: "CAS mismatch", typ: fsm.StatusRequestType, req: st("a", 3, running), wantErr: fsm.ErrCASMismatch},
		{name: "not found", typ: fsm.StatusRequestType, req: st("zz", 0, running), wantErr: fsm.ErrNotFound},
		{name: "unknown kind", typ: fsm.StatusRequestType, req: &fsm.StatusRequest{Kind: "nope", Name: "a", Status: raw(`{}`)}, wantErr: resource.ErrInvalid, wantField: "kind"},
		{name: "unknown status field", typ: fsm.StatusRequestType, req: st("a", 0, `{"phase":"running","bogus":1}`), wantErr: resource.ErrInvalid, wantField: "status.bogus"},
		{name: "status wrong type", typ: fsm.StatusRequestType, req: st("a", 0, `{"epoch":"x"}`), wantErr: resource.ErrInvalid, wantField: "status.epoch"},
		{name: "status missing", data: []byte("\x05" + `{"kind":"vm","name":"a"}`), wantErr: resource.ErrInvalid, wantField: "status"},
		{name: "status null", typ: fsm.StatusRequestType, req: st("a", 0, `null`), wantErr: resource.ErrInvalid, wantField: "status"},
	})
}

func TestApplyDelete(t *testing.T) {
	del := func(kind resource.Kind, name string, cas uint64) *fsm.DeleteRequest {
		return &fsm.DeleteRequest{Time: fsm.TestTime, Kind: kind, Name: name, CAS: cas}
	}
	ok := func(t *testing.T, f *fsm.FSM, res *fsm.Result) {
		t.Helper()
		mustAbsent(t, f, vm, "a")
		mustGet(t, f, vm, "b")
		s := f.State()
		if s.Count(vm) != 1 {
			t.Errorf("Count(vm) = %d, want 1", s.Count(vm))
		}
		if s.Index(vm) != at || s.LatestIndex() != at || s.Index(host) != 3 {
			t.Errorf("a delete must bump the kind's index: vm=%d host=%d latest=%d", s.Index(vm), s.Index(host), s.LatestIndex())
		}
		if len(res.Objects) != 1 || res.Objects[0].Name != "a" || res.Objects[0].ModifyIndex != 1 {
			t.Errorf("Result.Objects = %+v, want vm/a as it was", res.Objects)
		}
		evs := eventsAt(t, f, at)
		if eventSummary(evs) != "10:deleted:vm/a" || evs[0].Object == nil || evs[0].Object.ID != fsm.TestID(1) {
			t.Errorf("events = %s, want a delete carrying the old object", eventSummary(evs))
		}
	}
	runApplyCases(t, []applyCase{
		{name: "ok", typ: fsm.DeleteRequestType, req: del(vm, "a", 0), check: ok},
		{name: "CAS ok", typ: fsm.DeleteRequestType, req: del(vm, "a", 1), check: ok},
		{
			name: "last of its kind", typ: fsm.DeleteRequestType, req: del(host, "h1", 3),
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				s := f.State()
				if s.Count(host) != 0 || s.Index(host) != at {
					t.Errorf("Count(host)=%d Index(host)=%d, want 0 and %d", s.Count(host), s.Index(host), at)
				}
				if l, _ := s.List(nil, host, nil); len(l) != 0 {
					t.Errorf("List(host) = %v", names(l))
				}
			},
		},
		{name: "CAS mismatch", typ: fsm.DeleteRequestType, req: del(vm, "a", 2), wantErr: fsm.ErrCASMismatch},
		{name: "not found", typ: fsm.DeleteRequestType, req: del(vm, "zz", 0), wantErr: fsm.ErrNotFound},
		{name: "wrong kind", typ: fsm.DeleteRequestType, req: del(host, "a", 0), wantErr: fsm.ErrNotFound},
		{name: "unknown kind", typ: fsm.DeleteRequestType, req: del("nope", "a", 0), wantErr: resource.ErrInvalid, wantField: "kind"},
		{name: "payload unknown field", halts: true, data: []byte("\x03" + `{"kind":"vm","name":"a","force":true}`), wantErr: fsm.ErrBadPayload},
	})
}

// TestCreateTakenIDInGroup: a create whose id another object has fails
// after its insert began (memdb InsertNew finds the id taken); in a group
// of entries the failed one's writes are rolled back and its neighbours
// stay applied, as when each entry is applied on its own.
func TestCreateTakenIDInGroup(t *testing.T) {
	group, alone := fsm.TestFSM(t), fsm.TestFSM(t)
	logs := []*raft.Log{
		fsm.TestLog(t, 1, fsm.CreateRequestType, createReq(vm, "a", "id-a", nil, vmSpec1)),
		fsm.TestLog(t, 2, fsm.CreateRequestType, createReq(vm, "b", "id-a", nil, vmSpec1)),
		fsm.TestLog(t, 3, fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1)),
	}
	out := group.ApplyBatch(logs)
	for i, want := range []error{nil, fsm.ErrExists, nil} {
		if err := out[i].(*fsm.Result).Err; !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Fatalf("entry %d: %v, want %v", i+1, err, want)
		}
	}
	for _, l := range logs {
		fsm.TestApplyLog(t, alone, l)
	}
	if group.State().Digest() != alone.State().Digest() {
		t.Fatal("the group's state differs from its entries applied one by one")
	}
	if o, _ := group.State().Get(nil, vm, "b"); o != nil {
		t.Fatalf("b was stored: %+v", o)
	}
	// The ids stay taken by a and c (the uid index holds them).
	for i, id := range []string{"id-a", "id-c"} {
		r := fsm.TestApply(t, group, uint64(4+i), fsm.CreateRequestType, createReq(vm, fmt.Sprintf("d%d", i), id, nil, vmSpec1))
		if !errors.Is(r.Err, fsm.ErrExists) || !strings.Contains(r.Err.Error(), id) {
			t.Fatalf("create with %s: %v, want ErrExists naming it", id, r.Err)
		}
	}
	if r := fsm.TestSnapshotRestore(t, group); r.State().Digest() != group.State().Digest() {
		t.Fatal("snapshot round trip changed the state")
	}
}
