package fsm_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// createsFixture is the creates of TestCreatesBin: two that succeed, one
// whose name the first took, one with an invalid label, one with an
// accessor, one of a name an earlier entry took.
func createsFixture() []*fsm.CreateBinRequest {
	now := time.Date(2026, 12, 5, 0, 30, 0, 0, time.UTC)
	c := func(name string, id uint64, labels map[string]string) *fsm.CreateRequest {
		return &fsm.CreateRequest{Time: now, Kind: resource.KindVM, Name: name, ID: fsm.TestID(id), Labels: labels, Spec: raw(vmSpec2)}
	}
	return []*fsm.CreateBinRequest{
		{Create: c("a", 11, map[string]string{"app": "web"})},
		{Create: c("b", 12, nil)},
		{Create: c("a", 13, nil)},                                // taken in this entry
		{Create: c("d", 14, map[string]string{"bad key!": "x"})}, // invalid
		{Accessor: "3f2b1a0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c", Create: c("e", 15, nil)},
		{Create: c("old", 16, nil)}, // taken by an earlier entry
	}
}

func createBinEntries(reqs []*fsm.CreateBinRequest) [][]byte {
	out := make([][]byte, len(reqs))
	for i, r := range reqs {
		out[i] = fsm.EncodeCreateBin(r.Accessor, r.Create)
	}
	return out
}

// TestCreatesBin: creates coalesced into one entry apply exactly as the
// same creates do, each an entry of its own at that index: the same
// state, events and per-create results (a failure affects no other); a
// rollback of the shared transaction replays them; a malformed one halts
// with none applied; a build of protocol 11 halts on the entry; nested in
// another command it is refused.
func TestCreatesBin(t *testing.T) {
	reqs := createsFixture()
	old := &fsm.CreateRequest{Time: reqs[0].Create.Time, Kind: resource.KindVM, Name: "old", ID: fsm.TestID(1), Spec: raw(vmSpec2)}
	entry, err := fsm.EncodeCreates(createBinEntries(reqs))
	if err != nil {
		t.Fatal(err)
	}
	if fsm.MessageType(entry[0]) != fsm.CreatesBinRequestType || fsm.MinProtocol(fsm.CreatesBinRequestType) != 12 {
		t.Fatalf("type byte %d, protocol %d", entry[0], fsm.MinProtocol(fsm.CreatesBinRequestType))
	}

	// One entry of creates, at index 2.
	f := fsm.TestFSM(t)
	fsm.TestMustApply(t, f, 1, fsm.CreateRequestType, old)
	res := fsm.TestApplyLog(t, f, logAt(2, entry))
	// The same creates, each its own entry at index 2 (one batch).
	g := fsm.TestFSM(t)
	fsm.TestMustApply(t, g, 1, fsm.CreateRequestType, old)
	var logs []*raft.Log
	for _, e := range createBinEntries(reqs) {
		logs = append(logs, logAt(2, e))
	}
	each := g.ApplyBatch(logs)

	if res.Err != nil || len(res.Subs) != len(reqs) {
		t.Fatalf("entry: %v, %d results for %d creates", res.Err, len(res.Subs), len(reqs))
	}
	wantErr := []error{nil, nil, fsm.ErrExists, resource.ErrInvalid, nil, fsm.ErrExists}
	for i, sub := range res.Subs {
		one := each[i].(*fsm.Result)
		if !errors.Is(sub.Err, wantErr[i]) || (wantErr[i] == nil) != (sub.Err == nil) {
			t.Errorf("create %d: %v, want %v", i, sub.Err, wantErr[i])
		}
		if sub.Index != 2 || !reflect.DeepEqual(sub.Objects, one.Objects) || errString(sub.Err) != errString(one.Err) {
			t.Errorf("create %d: %+v, as an entry of its own %+v", i, sub, one)
		}
	}
	if o := mustGet(t, f, vm, "e"); o.ModifiedBy != reqs[4].Accessor || o.CreateIndex != 2 {
		t.Errorf("e: modified by %q at %d", o.ModifiedBy, o.CreateIndex)
	}
	sameCreatesState(t, f, g)

	// A later entry of the same batch that fails after writing rolls the
	// shared transaction back: the creates are replayed, one by one.
	h := fsm.TestFSM(t)
	fsm.TestMustApply(t, h, 1, fsm.CreateRequestType, old)
	op := func(name string) fsm.BatchOp {
		p, err := json.Marshal(&fsm.CreateRequest{Time: old.Time, Kind: vm, Name: name, ID: fsm.TestID(uint64(len(name)) + 40), Spec: raw(vmSpec2)})
		if err != nil {
			t.Fatal(err)
		}
		return fsm.BatchOp{Type: fsm.CreateRequestType, Payload: p}
	}
	out := h.ApplyBatch([]*raft.Log{
		logAt(2, entry),
		fsm.TestLog(t, 3, fsm.BatchRequestType, &fsm.BatchRequest{Time: old.Time, Ops: []fsm.BatchOp{op("zz"), op("b")}}),
	})
	if r := out[1].(*fsm.Result); !errors.Is(r.Err, fsm.ErrExists) {
		t.Fatalf("the failing batch: %v", r.Err)
	}
	mustAbsent(t, h, vm, "zz")
	if h.State().Digest() != f.State().Digest() {
		t.Fatal("after the rollback's replay the state differs")
	}

	// Malformed: none of the creates is applied, the FSM halts.
	subs := createBinEntries(reqs[:2])
	for name, data := range map[string][]byte{
		"no creates":         {byte(fsm.CreatesBinRequestType), 0},
		"count past the end": {byte(fsm.CreatesBinRequestType), 3, 1, 0},
		"trailing bytes":     append(append([]byte{}, entry...), 0),
		"a malformed create": mustCreates(t, append(subs, []byte{byte(fsm.CreateBinRequestType), 0xff})),
		"a truncated create": entry[:len(entry)-3],
	} {
		m := fsm.TestFSM(t)
		r := fsm.TestApplyLog(t, m, logAt(1, data))
		if !errors.Is(r.Err, fsm.ErrHalted) || r.Subs != nil {
			t.Errorf("%s: %+v, want a halt", name, r)
		}
		if n := m.State().Count(vm); n != 0 {
			t.Errorf("%s: %d VMs applied", name, n)
		}
	}

	// A build of protocol 11 does not know the type: it halts.
	p11 := fsm.New(fsm.Config{MaxProtocol: 11})
	if r := fsm.TestApplyLog(t, p11, logAt(1, entry)); !errors.Is(r.Err, fsm.ErrHalted) || p11.State().Count(vm) != 0 {
		t.Errorf("protocol 11: %v", r.Err)
	}

	// Inside a batch it is refused (the batch fails), not a halt.
	nb := fsm.TestFSM(t)
	r := fsm.TestApply(t, nb, 1, fsm.BatchRequestType, &fsm.BatchRequest{Time: old.Time, Ops: []fsm.BatchOp{{Type: fsm.CreatesBinRequestType, Payload: raw(`{}`)}}})
	if !errors.Is(r.Err, fsm.ErrBadPayload) || errors.Is(r.Err, fsm.ErrHalted) {
		t.Errorf("nested: %v", r.Err)
	}

	if _, err := fsm.EncodeCreates(nil); err == nil {
		t.Error("EncodeCreates of none")
	}
	if _, err := fsm.EncodeCreates([][]byte{{byte(fsm.UpdateRequestType), '{', '}'}}); err == nil {
		t.Error("EncodeCreates of an update")
	}
}

func mustCreates(t *testing.T, entries [][]byte) []byte {
	t.Helper()
	b, err := fsm.EncodeCreates(entries)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameCreatesState fails unless f and g hold the same objects, events and
// applied index.
func sameCreatesState(t *testing.T, f, g *fsm.FSM) {
	t.Helper()
	if f.State().Digest() != g.State().Digest() || f.AppliedIndex() != g.AppliedIndex() {
		t.Fatalf("states differ (applied %d and %d)", f.AppliedIndex(), g.AppliedIndex())
	}
	fe, _, _, _ := f.Events().Since(0, 0)
	ge, _, _, _ := g.Events().Since(0, 0)
	if !reflect.DeepEqual(fe, ge) {
		t.Fatalf("events differ:\n%+v\n%+v", fe, ge)
	}
	if f.State().Count(vm) != g.State().Count(vm) || f.State().Index(vm) != g.State().Index(vm) {
		t.Fatalf("counts or indexes differ")
	}
}
