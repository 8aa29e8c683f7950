package fsm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// ---- shared helpers for the fsm tests ----

const (
	vm   = resource.KindVM
	host = resource.KindHost
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// entry returns the log entry [t][payload] at index.
func entry(index uint64, t fsm.MessageType, payload string) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: append([]byte{byte(t)}, payload...)}
}

// fieldOf returns the field named by a *resource.FieldError inside err.
func fieldOf(err error) string {
	var fe *resource.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// stateOf is everything observable about an FSM's replicated state plus its
// derived event buffer, for "nothing changed" assertions.
type stateOf struct {
	digest       string
	latest       uint64
	vmIndex      uint64
	hostIndex    uint64
	vms, hosts   int
	lastEventIdx uint64
	events       int
}

func observe(t testing.TB, f *fsm.FSM) stateOf {
	t.Helper()
	s := f.State()
	evs, reset, floor, _ := f.Events().Since(0, 0)
	if reset { // after a restore: what is retained
		evs, _, _, _ = f.Events().Since(floor, 0)
	}
	st := stateOf{
		digest: s.Digest(), latest: s.LatestIndex(),
		vmIndex: s.Index(vm), hostIndex: s.Index(host),
		vms: s.Count(vm), hosts: s.Count(host), events: len(evs),
	}
	if len(evs) > 0 {
		st.lastEventIdx = evs[len(evs)-1].Index
	}
	return st
}

// applyFails applies l, asserts that it fails with an error that is
// errors.Is(want) and that nothing observable changed, and returns the
// result.
func applyFails(t *testing.T, f *fsm.FSM, l *raft.Log, want error) *fsm.Result {
	t.Helper()
	before := observe(t, f)
	res := fsm.TestApplyLog(t, f, l)
	if res.Err == nil {
		t.Fatalf("apply succeeded, want error %v", want)
	}
	if !errors.Is(res.Err, want) {
		t.Fatalf("apply error = %v, want one wrapping %v", res.Err, want)
	}
	if errors.Is(res.Err, fsm.ErrHalted) || f.Halted() != nil {
		t.Fatalf("a refused entry halted the FSM: %v", res.Err)
	}
	if len(res.Objects) != 0 {
		t.Errorf("failed apply returned %d objects", len(res.Objects))
	}
	if after := observe(t, f); after != before {
		t.Fatalf("failed apply changed the state:\nbefore %+v\nafter  %+v", before, after)
	}
	if got := f.AppliedIndex(); got != l.Index {
		t.Errorf("AppliedIndex = %d after a failed entry at %d; the entry is still applied", got, l.Index)
	}
	return res
}

// applyHalts applies l, an entry the FSM cannot understand, and asserts
// the halt rule: its Result is l's *fsm.HaltError (wrapping ErrHalted and
// cause), nothing observable changed, AppliedIndex did not move, Halted
// and HaltedCh report the halt, and the FSM refuses everything after: a
// valid entry (Result wrapping ErrHalted, nothing applied), a snapshot and
// a restore.
func applyHalts(t *testing.T, f *fsm.FSM, l *raft.Log, cause error) *fsm.Result {
	t.Helper()
	before, applied := observe(t, f), f.AppliedIndex()
	if f.Halted() != nil {
		t.Fatalf("FSM halted before the entry: %v", f.Halted())
	}
	res := fsm.TestApplyLog(t, f, l)
	var he *fsm.HaltError
	if !errors.As(res.Err, &he) || he.Index != l.Index || !errors.Is(res.Err, fsm.ErrHalted) {
		t.Fatalf("apply error = %v, want the *fsm.HaltError of entry %d", res.Err, l.Index)
	}
	if !errors.Is(res.Err, cause) {
		t.Fatalf("halt error = %v, want one wrapping %v", res.Err, cause)
	}
	if len(l.Data) > 0 && he.Type != fsm.MessageType(l.Data[0]) {
		t.Errorf("HaltError.Type = %s, want %s", he.Type, fsm.MessageType(l.Data[0]))
	}
	if len(res.Objects) != 0 || len(res.ItemErrors) != 0 {
		t.Errorf("halting entry returned objects %v, item errors %v", res.Objects, res.ItemErrors)
	}
	if after := observe(t, f); after != before {
		t.Fatalf("halting entry changed the state:\nbefore %+v\nafter  %+v", before, after)
	}
	if got := f.AppliedIndex(); got != applied {
		t.Errorf("AppliedIndex = %d after a halting entry at %d, want %d (the last entry applied)", got, l.Index, applied)
	}
	if f.Halted() != res.Err {
		t.Errorf("Halted() = %v, want the entry's error %v", f.Halted(), res.Err)
	}
	select {
	case <-f.HaltedCh():
	default:
		t.Errorf("HaltedCh is not closed")
	}
	// Nothing after it applies.
	next := fsm.TestApply(t, f, l.Index+1, fsm.CreateRequestType, createReq(vm, "after-halt", "id-after-halt", nil, vmSpec1))
	if !errors.Is(next.Err, fsm.ErrHalted) || errors.As(next.Err, &he) {
		t.Errorf("entry after the halt: error %v, want one wrapping ErrHalted (not a HaltError)", next.Err)
	}
	if f.Halted() != res.Err {
		t.Errorf("Halted() changed to %v", f.Halted())
	}
	if _, err := f.Snapshot(); !errors.Is(err, fsm.ErrHalted) {
		t.Errorf("Snapshot of a halted FSM: %v, want ErrHalted", err)
	}
	if err := f.Restore(io.NopCloser(bytes.NewReader(fsm.TestPersist(t, fsm.TestFSM(t))))); !errors.Is(err, fsm.ErrHalted) {
		t.Errorf("Restore into a halted FSM: %v, want ErrHalted", err)
	}
	if after := observe(t, f); after != before || f.AppliedIndex() != applied {
		t.Fatalf("a halted FSM changed its state:\nbefore %+v\nafter  %+v (applied %d)", before, after, f.AppliedIndex())
	}
	return res
}

func mustGet(t testing.TB, f *fsm.FSM, kind resource.Kind, name string) *resource.Object {
	t.Helper()
	o, err := f.State().Get(nil, kind, name)
	if err != nil {
		t.Fatalf("get %s/%s: %v", kind, name, err)
	}
	if o == nil {
		t.Fatalf("get %s/%s: not found", kind, name)
	}
	return o
}

func mustAbsent(t testing.TB, f *fsm.FSM, kind resource.Kind, name string) {
	t.Helper()
	o, err := f.State().Get(nil, kind, name)
	if err != nil {
		t.Fatalf("get %s/%s: %v", kind, name, err)
	}
	if o != nil {
		t.Fatalf("get %s/%s: found %+v, want absent", kind, name, o)
	}
}

func names(objs []*resource.Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Name
	}
	return out
}

func eventsAt(t fsm.TB, f *fsm.FSM, index uint64) []resource.Event {
	evs, reset, floor, _ := f.Events().Since(index-1, 0)
	if reset {
		t.Fatalf("event buffer asks for a reset (floor %d) when reading events at %d", floor, index)
	}
	var out []resource.Event
	for _, ev := range evs {
		if ev.Index == index {
			out = append(out, ev)
		}
	}
	return out
}

func eventSummary(evs []resource.Event) string {
	parts := make([]string, len(evs))
	for i, ev := range evs {
		parts[i] = fmt.Sprintf("%d:%s:%s/%s", ev.Index, ev.Type, ev.Kind, ev.Name)
	}
	return strings.Join(parts, " ")
}

func initialStatus(t testing.TB, kind resource.Kind, at time.Time) json.RawMessage {
	t.Helper()
	s, err := resource.InitialStatus(kind, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noHostsStatus is the status of a VM created when there is no host at all
// (the seed's vm/a and vm/b): pending, and saying why.
func noHostsStatus(t testing.TB, at time.Time) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(&resource.VMStatus{Phase: resource.PhasePending, Reason: resource.ReasonNoHosts, Since: at.UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seed writes the fixture most table cases start from:
//
//	1: vm/a   {app=web}  (pending: "no hosts")
//	2: vm/b   {app=db}   (pending: "no hosts")
//	3: host/h1
func seed(t testing.TB, f *fsm.FSM) {
	t.Helper()
	fsm.TestCreate(t, f, 1, vm, "a", map[string]string{"app": "web"})
	fsm.TestCreate(t, f, 2, vm, "b", map[string]string{"app": "db"})
	fsm.TestCreate(t, f, 3, host, "h1", nil)
}

// at is the index every table case applies its entry at.
const at = 10

func batchOf(t testing.TB, ops ...any) *fsm.BatchRequest {
	t.Helper()
	req := &fsm.BatchRequest{Time: fsm.TestTime}
	for i := 0; i < len(ops); i += 2 {
		op, err := fsm.NewBatchOp(ops[i].(fsm.MessageType), ops[i+1])
		if err != nil {
			t.Fatal(err)
		}
		req.Ops = append(req.Ops, op)
	}
	return req
}

func createReq(kind resource.Kind, name, id string, labels map[string]string, spec string) *fsm.CreateRequest {
	return &fsm.CreateRequest{Time: fsm.TestTime, Kind: kind, Name: name, ID: id, Labels: labels, Spec: raw(spec)}
}

const (
	vmSpec1 = `{"cpus":1,"memory_mib":512}`
	vmSpec2 = `{"cpus":2,"memory_mib":1024,"power":"stopped","ha":"restart"}`
)

// ---- Apply table ----

type applyCase struct {
	name string
	typ  fsm.MessageType
	req  any    // encoded with fsm.Encode(typ, req) unless data is set
	data []byte // the raw entry Data
	// wantErr: nil means the entry must succeed; otherwise the error must
	// wrap it and the state must be unchanged.
	wantErr error
	// halts: the FSM cannot understand the entry (wantErr is the cause):
	// it must halt (applyHalts).
	halts     bool
	wantField string // for resource.ErrInvalid: the FieldError's field
	wantMsg   string // a substring of the error message
	check     func(t *testing.T, f *fsm.FSM, res *fsm.Result)
}

func runApplyCases(t *testing.T, cases []applyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.TestFSM(t)
			seed(t, f)
			l := &raft.Log{Index: at, Term: 1, Type: raft.LogCommand, Data: tc.data}
			if tc.data == nil {
				l = fsm.TestLog(t, at, tc.typ, tc.req)
			}
			if tc.wantErr != nil {
				var res *fsm.Result
				if tc.halts {
					res = applyHalts(t, f, l, tc.wantErr)
				} else {
					res = applyFails(t, f, l, tc.wantErr)
				}
				if tc.wantField != "" {
					if got := fieldOf(res.Err); got != tc.wantField {
						t.Errorf("error %q names field %q, want %q", res.Err, got, tc.wantField)
					}
				}
				if tc.wantMsg != "" && !strings.Contains(res.Err.Error(), tc.wantMsg) {
					t.Errorf("error %q does not mention %q", res.Err, tc.wantMsg)
				}
				if tc.check != nil {
					tc.check(t, f, res)
				}
				return
			}
			res := fsm.TestApplyLog(t, f, l)
			if res.Err != nil {
				t.Fatalf("apply: %v", res.Err)
			}
			if f.AppliedIndex() != at {
				t.Errorf("AppliedIndex = %d, want %d", f.AppliedIndex(), at)
			}
			if tc.check != nil {
				tc.check(t, f, res)
			}
		})
	}
}

func TestApplyBatch(t *testing.T) {
	tooMany := &fsm.BatchRequest{}
	for range fsm.MaxBatchOps + 1 {
		tooMany.Ops = append(tooMany.Ops, fsm.BatchOp{Type: fsm.DeleteRequestType, Payload: raw(`{"kind":"vm","name":"zz"}`)})
	}
	unchanged := func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
		t.Helper()
		mustAbsent(t, f, vm, "c")
		if o := mustGet(t, f, vm, "a"); o.ModifyIndex != 1 || o.Labels["app"] != "web" {
			t.Errorf("vm/a changed by a failed batch: %+v", o)
		}
		mustGet(t, f, vm, "b")
	}
	runApplyCases(t, []applyCase{
		{
			name: "ops see earlier ops' writes", typ: fsm.BatchRequestType,
			req: batchOf(t,
				fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1),
				fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "c", CAS: at, Labels: map[string]string{"x": "1"}, Spec: raw(vmSpec2)},
				fsm.StatusRequestType, &fsm.StatusRequest{Kind: vm, Name: "c", CAS: at, Status: raw(`{"phase":"scheduled","host":"h1"}`)},
				fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a", CAS: 1},
				fsm.CreateRequestType, createReq(vm, "a", "id-a2", nil, vmSpec1), // reuse the name just freed
				fsm.CreateRequestType, createReq(host, "h2", fsm.TestID(1), nil, `{}`), // and the id
			),
			check: func(t *testing.T, f *fsm.FSM, res *fsm.Result) {
				c := mustGet(t, f, vm, "c")
				if c.CreateIndex != at || c.ModifyIndex != at || c.Labels["x"] != "1" ||
					string(c.Spec) != `{"cpus":2,"memory_mib":1024,"power":"stopped","ha":"restart"}` ||
					string(c.Status) != `{"phase":"scheduled","host":"h1"}` {
					t.Errorf("vm/c = %+v", c)
				}
				if a := mustGet(t, f, vm, "a"); a.ID != "id-a2" || a.CreateIndex != at {
					t.Errorf("vm/a = %+v, want the re-created one", a)
				}
				if h := mustGet(t, f, host, "h2"); h.ID != fsm.TestID(1) {
					t.Errorf("host/h2 = %+v", h)
				}
				// One object per op in order, then host/h1, whose
				// allocation vm/c's status changed (recomputed once, at
				// the end of the entry).
				if got := strings.Join(names(res.Objects), ","); got != "c,c,c,a,a,h2,h1" {
					t.Errorf("Result.Objects names = %s, want one per op in order, then h1", got)
				}
				if res.Objects[0].ModifyIndex != at || string(res.Objects[0].Status) == string(res.Objects[2].Status) {
					t.Errorf("Result.Objects must be each op's own result")
				}
				if hs, err := resource.DecodeStatus[resource.HostStatus](mustGet(t, f, host, "h1")); err != nil ||
					hs.Allocated != (resource.Resources{CPUs: 2, MemoryMiB: 1024}) {
					t.Errorf("host/h1 status = %+v, %v; want vm/c's 2 CPUs and 1GiB allocated", hs, err)
				}
				want := "10:created:vm/c 10:updated:vm/c 10:updated:vm/c 10:deleted:vm/a 10:created:vm/a 10:created:host/h2 10:updated:host/h1"
				if got := eventSummary(eventsAt(t, f, at)); got != want {
					t.Errorf("events:\n got %s\nwant %s", got, want)
				}
				if s := f.State(); s.Index(vm) != at || s.Index(host) != at || s.LatestIndex() != at {
					t.Errorf("indexes vm=%d host=%d latest=%d", s.Index(vm), s.Index(host), s.LatestIndex())
				}
			},
		},
		{
			name: "failing last op leaves no trace", typ: fsm.BatchRequestType,
			req: batchOf(t,
				fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1),
				fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Spec: raw(vmSpec2)},
				fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "b"},
				fsm.CreateRequestType, createReq(host, "h1", "id-h1b", nil, `{}`),
			),
			wantErr: fsm.ErrExists, wantMsg: "batch operation 3 (create)", check: unchanged,
		},
		{
			name: "CAS failure in the middle", typ: fsm.BatchRequestType,
			req: batchOf(t,
				fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1),
				fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a", CAS: 2},
				fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "b"},
			),
			wantErr: fsm.ErrCASMismatch, wantMsg: "batch operation 1 (delete)", check: unchanged,
		},
		{
			name: "invalid op names the field", typ: fsm.BatchRequestType,
			req: batchOf(t,
				fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1),
				fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "c", Spec: raw(`{"cpus":1,"memory_mib":0}`)},
			),
			wantErr: resource.ErrInvalid, wantField: "spec.memory_mib", check: unchanged,
		},
		{
			name: "op sees an earlier op's delete", typ: fsm.BatchRequestType,
			req: batchOf(t,
				fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a"},
				fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Spec: raw(vmSpec1)},
			),
			wantErr: fsm.ErrNotFound, check: unchanged,
		},
		{
			name: "duplicate create inside one batch", typ: fsm.BatchRequestType,
			req: batchOf(t,
				fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1),
				fsm.CreateRequestType, createReq(vm, "c", "id-c2", nil, vmSpec1),
			),
			wantErr: fsm.ErrExists, check: unchanged,
		},
		{
			name: "nested batch", typ: fsm.BatchRequestType,
			req: batchOf(t,
				fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1),
				fsm.BatchRequestType, batchOf(t, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a"}),
			),
			wantErr: fsm.ErrBadPayload, wantMsg: "do not nest", check: unchanged,
		},
		{name: "empty batch", typ: fsm.BatchRequestType, req: &fsm.BatchRequest{Time: fsm.TestTime}, wantErr: fsm.ErrBadPayload},
		{name: "ops null", data: []byte("\x04" + `{"ops":null}`), wantErr: fsm.ErrBadPayload},
		{name: "too many ops", typ: fsm.BatchRequestType, req: tooMany, wantErr: fsm.ErrBadPayload, wantMsg: "limit"},
		{
			name: "unknown op type", halts: true, typ: fsm.BatchRequestType,
			req:     &fsm.BatchRequest{Ops: []fsm.BatchOp{{Type: fsm.CreateRequestType, Payload: raw(`{"kind":"vm","name":"c","id":"x","spec":{"cpus":1,"memory_mib":1}}`)}, {Type: 99, Payload: raw(`{}`)}}},
			wantErr: fsm.ErrUnknownCommand, check: unchanged,
		},
		{
			name: "op with garbage payload", halts: true, typ: fsm.BatchRequestType,
			req:     &fsm.BatchRequest{Ops: []fsm.BatchOp{{Type: fsm.CreateRequestType, Payload: raw(`{"kind":"vm","name":"c","id":"x","spec":{"cpus":1,"memory_mib":1}}`)}, {Type: fsm.DeleteRequestType, Payload: raw(`[]`)}}},
			wantErr: fsm.ErrBadPayload, check: unchanged,
		},
		{name: "op type out of range", halts: true, data: []byte("\x04" + `{"ops":[{"type":300,"payload":{}}]}`), wantErr: fsm.ErrBadPayload},
		{name: "op payload missing", halts: true, data: []byte("\x04" + `{"ops":[{"type":3}]}`), wantErr: fsm.ErrBadPayload},
	})
}

func TestApplyRawEntries(t *testing.T) {
	validCreate := `{"kind":"vm","name":"c","id":"x","spec":{"cpus":1,"memory_mib":1}}`
	unchangedNoErr := func(t *testing.T, f *fsm.FSM, res *fsm.Result) {
		t.Helper()
		if len(res.Objects) != 0 {
			t.Errorf("Result.Objects = %v", res.Objects)
		}
		mustAbsent(t, f, vm, "c")
		fresh := fsm.TestFSM(t)
		seed(t, fresh)
		if f.State().Digest() != fresh.State().Digest() {
			t.Errorf("a skipped entry changed the state digest")
		}
		if s := f.State(); s.LatestIndex() != 3 || s.Count(vm) != 2 || len(eventsAt(t, f, at)) != 0 {
			t.Errorf("a skipped entry changed the state: latest=%d", s.LatestIndex())
		}
	}
	runApplyCases(t, []applyCase{
		{name: "unknown type 99", halts: true, data: []byte("\x63{}"), wantErr: fsm.ErrUnknownCommand, wantMsg: "99"},
		{name: "type 0", halts: true, data: []byte("\x00" + validCreate), wantErr: fsm.ErrUnknownCommand},
		{name: "unknown type 127", halts: true, data: []byte("\x7f" + validCreate), wantErr: fsm.ErrUnknownCommand},
		{name: "unknown ignorable type 128|99", data: []byte("\xe3" + validCreate), check: unchangedNoErr},
		{name: "ignorable flag alone", data: []byte("\x80"), check: unchangedNoErr},
		{name: "ignorable 255 with garbage", data: []byte("\xff\x00\x01garbage"), check: unchangedNoErr},
		{name: "known type with the ignorable flag is not applied", data: []byte("\x81" + validCreate), check: unchangedNoErr},
		{name: "empty data", halts: true, data: []byte{}, wantErr: fsm.ErrBadPayload},
		{name: "type byte only", halts: true, data: []byte{byte(fsm.CreateRequestType)}, wantErr: fsm.ErrBadPayload},
		{name: "garbage payload", halts: true, data: []byte("\x01not json"), wantErr: fsm.ErrBadPayload},
		{name: "truncated payload", halts: true, data: []byte("\x01" + validCreate[:20]), wantErr: fsm.ErrBadPayload},
		{name: "array payload", halts: true, data: []byte("\x01[1,2]"), wantErr: fsm.ErrBadPayload},
		{name: "string payload", halts: true, data: []byte("\x03\"vm/a\""), wantErr: fsm.ErrBadPayload},
		{name: "trailing value", halts: true, data: []byte("\x01" + validCreate + ` {"kind":"vm"}`), wantErr: fsm.ErrBadPayload},
		{name: "trailing garbage", halts: true, data: []byte("\x01" + validCreate + `xyz`), wantErr: fsm.ErrBadPayload},
		{name: "binary payload", halts: true, data: []byte{byte(fsm.DeleteRequestType), 0xff, 0xfe, 0x00, 0x7b}, wantErr: fsm.ErrBadPayload},
	})
}

// TestApplyRejectsTrailingBrace is a regression test for decodePayload's
// trailing-data check: json.Decoder.More reports false when the next byte is
// '}' or ']', so a payload followed by "}" or "]..." is accepted and applied.
func TestApplyRejectsTrailingBrace(t *testing.T) {
	validCreate := `{"kind":"vm","name":"c","id":"x","spec":{"cpus":1,"memory_mib":1}}`
	for _, trailer := range []string{`}`, `]`, `}}garbage`, `] trailing`} {
		t.Run(trailer, func(t *testing.T) {
			f := fsm.TestFSM(t)
			seed(t, f)
			applyHalts(t, f, entry(at, fsm.CreateRequestType, validCreate+trailer), fsm.ErrBadPayload)
		})
	}
}

func TestApplyNonCommandLogs(t *testing.T) {
	for _, lt := range []raft.LogType{raft.LogNoop, raft.LogBarrier, raft.LogConfiguration, raft.LogAddPeerDeprecated, raft.LogRemovePeerDeprecated, raft.LogType(200)} {
		t.Run(lt.String(), func(t *testing.T) {
			f := fsm.TestFSM(t)
			seed(t, f)
			before := observe(t, f)
			// Data that would be a valid command must still be ignored.
			l := entry(at, fsm.CreateRequestType, `{"kind":"vm","name":"c","id":"x","spec":{"cpus":1,"memory_mib":1}}`)
			l.Type = lt
			res := fsm.TestApplyLog(t, f, l)
			if res.Err != nil || len(res.Objects) != 0 {
				t.Fatalf("result = %+v", res)
			}
			if after := observe(t, f); after != before {
				t.Errorf("state changed: %+v -> %+v", before, after)
			}
			if f.AppliedIndex() != at {
				t.Errorf("AppliedIndex = %d, want %d", f.AppliedIndex(), at)
			}
		})
	}
}

func TestApplyBatchingFSM(t *testing.T) {
	f := fsm.TestFSM(t)
	seed(t, f)
	logs := []*raft.Log{
		fsm.TestLog(t, 4, fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1)),
		fsm.TestLog(t, 5, fsm.CreateRequestType, createReq(vm, "c", "id-c2", nil, vmSpec1)), // duplicate
		{Index: 6, Type: raft.LogNoop},
		fsm.TestLog(t, 7, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a"}),
		entry(8, 0xe3, `{}`), // unknown, ignorable: skipped
		fsm.TestLog(t, 9, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "c", CAS: 4, Spec: raw(vmSpec2)}),
	}
	out := f.ApplyBatch(logs)
	if len(out) != len(logs) {
		t.Fatalf("ApplyBatch returned %d results for %d logs", len(out), len(logs))
	}
	wantErr := []error{nil, fsm.ErrExists, nil, nil, nil, nil}
	for i, r := range out {
		res := r.(*fsm.Result)
		if res.Index != logs[i].Index {
			t.Errorf("result %d: Index = %d, want %d", i, res.Index, logs[i].Index)
		}
		if (wantErr[i] == nil) != (res.Err == nil) || (wantErr[i] != nil && !errors.Is(res.Err, wantErr[i])) {
			t.Errorf("result %d: err = %v, want %v", i, res.Err, wantErr[i])
		}
	}
	if c := mustGet(t, f, vm, "c"); c.ID != "id-c" || c.ModifyIndex != 9 {
		t.Errorf("vm/c = %+v", c)
	}
	mustAbsent(t, f, vm, "a")
	if f.AppliedIndex() != 9 || f.State().LatestIndex() != 9 {
		t.Errorf("AppliedIndex=%d LatestIndex=%d, want 9 9", f.AppliedIndex(), f.State().LatestIndex())
	}
	if f.Halted() != nil {
		t.Errorf("halted on business errors and an ignorable entry: %v", f.Halted())
	}
}

// TestApplyBatchHalts: an entry the FSM cannot understand in the middle of
// one ApplyBatch (one shared transaction, with writes before it and a
// rolled-back failure): the entries before it stay applied and are
// committed, it and every later one are not applied, and AppliedIndex is
// the last entry before it. One entry at a time gives the same.
func TestApplyBatchHalts(t *testing.T) {
	logs := func() []*raft.Log {
		return []*raft.Log{
			fsm.TestLog(t, 4, fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1)),
			fsm.TestLog(t, 5, fsm.BatchRequestType, batchOf(t, // fails after writing
				fsm.CreateRequestType, createReq(vm, "d", "id-d", nil, vmSpec1),
				fsm.CreateRequestType, createReq(vm, "a", "id-a2", nil, vmSpec1))),
			{Index: 6, Type: raft.LogNoop},
			fsm.TestLog(t, 7, fsm.BatchRequestType, &fsm.BatchRequest{Time: fsm.TestTime, Ops: []fsm.BatchOp{
				{Type: fsm.DeleteRequestType, Payload: raw(`{"kind":"vm","name":"a"}`)},
				{Type: 99, Payload: raw(`{}`)}, // not understood: halts
			}}),
			fsm.TestLog(t, 8, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "b"}),
			{Index: 9, Type: raft.LogNoop},
		}
	}
	check := func(t *testing.T, f *fsm.FSM, results []*fsm.Result) {
		t.Helper()
		for i, want := range []error{nil, fsm.ErrExists, nil, fsm.ErrUnknownCommand, fsm.ErrHalted, fsm.ErrHalted} {
			res := results[i]
			if res.Index != uint64(i+4) || (want == nil) != (res.Err == nil) || !errors.Is(res.Err, want) {
				t.Fatalf("entry %d: index %d, error %v; want %v", i+4, res.Index, res.Err, want)
			}
		}
		var he *fsm.HaltError
		if !errors.As(results[3].Err, &he) || he.Index != 7 || he.Type != fsm.BatchRequestType || !errors.Is(results[3].Err, fsm.ErrHalted) {
			t.Fatalf("entry 7: %v, want its HaltError", results[3].Err)
		}
		if !strings.Contains(he.Error(), "batch operation 1 (type(99))") {
			t.Errorf("halt error %q does not name the operation", he)
		}
		if errors.As(results[4].Err, &he) && he.Index == 8 {
			t.Errorf("entry 8 has a HaltError of its own: %v", results[4].Err)
		}
		if f.Halted() != results[3].Err {
			t.Errorf("Halted() = %v", f.Halted())
		}
		if f.AppliedIndex() != 6 {
			t.Errorf("AppliedIndex = %d, want 6 (the last entry before the halt)", f.AppliedIndex())
		}
		mustGet(t, f, vm, "a")
		mustGet(t, f, vm, "b")
		mustGet(t, f, vm, "c")
		mustAbsent(t, f, vm, "d")
		if evs, _, _, _ := f.Events().Since(3, 0); eventSummary(evs) != "4:created:vm/c" {
			t.Errorf("events after the seed: %s", eventSummary(evs))
		}
	}
	f := fsm.TestFSM(t)
	seed(t, f)
	var batched []*fsm.Result
	for _, r := range f.ApplyBatch(logs()) {
		batched = append(batched, r.(*fsm.Result))
	}
	check(t, f, batched)

	g := fsm.TestFSM(t)
	seed(t, g)
	var single []*fsm.Result
	for _, l := range logs() {
		single = append(single, fsm.TestApplyLog(t, g, l))
	}
	check(t, g, single)
	if f.State().Digest() != g.State().Digest() {
		t.Errorf("batched and one-at-a-time halted states differ")
	}
}

// TestApplyPanicHalts: a panic in an applier is a bug the FSM cannot
// apply past: it halts (cause ErrApplyPanic), drops what the entry wrote,
// keeps what came before it in the same ApplyBatch, and does not panic.
func TestApplyPanicHalts(t *testing.T) {
	const boom = fsm.MessageType(77)
	fsm.RegisterPanicApplierForTest(t, boom)
	f := fsm.TestFSM(t)
	seed(t, f)
	applyHalts(t, f, entry(at, boom, `{}`), fsm.ErrApplyPanic)

	// Inside a batch, after an op that wrote, and after another entry of
	// the same ApplyBatch.
	g := fsm.TestFSM(t)
	seed(t, g)
	out := g.ApplyBatch([]*raft.Log{
		fsm.TestLog(t, 4, fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1)),
		fsm.TestLog(t, 5, fsm.BatchRequestType, &fsm.BatchRequest{Time: fsm.TestTime, Ops: []fsm.BatchOp{
			{Type: fsm.DeleteRequestType, Payload: raw(`{"kind":"vm","name":"a"}`)},
			{Type: boom, Payload: raw(`{}`)},
		}}),
	})
	if r := out[0].(*fsm.Result); r.Err != nil {
		t.Fatalf("entry 4: %v", r.Err)
	}
	if r := out[1].(*fsm.Result); !errors.Is(r.Err, fsm.ErrApplyPanic) || !errors.Is(r.Err, fsm.ErrHalted) {
		t.Fatalf("entry 5: %v, want a halt caused by ErrApplyPanic", r.Err)
	}
	mustGet(t, g, vm, "a")
	mustGet(t, g, vm, "c")
	if g.AppliedIndex() != 4 || g.Halted() == nil {
		t.Errorf("AppliedIndex %d, Halted %v", g.AppliedIndex(), g.Halted())
	}
}

// TestApplyIndexes walks a sequence of writes and checks create_index,
// modify_index, the per-kind indexes and LatestIndex after each.
func TestApplyIndexes(t *testing.T) {
	f := fsm.TestFSM(t)
	s := f.State()
	check := func(vmIdx, hostIdx, latest uint64) {
		t.Helper()
		if s.Index(vm) != vmIdx || s.Index(host) != hostIdx || s.LatestIndex() != latest {
			t.Fatalf("Index(vm)=%d Index(host)=%d LatestIndex=%d, want %d %d %d",
				s.Index(vm), s.Index(host), s.LatestIndex(), vmIdx, hostIdx, latest)
		}
	}
	check(0, 0, 0)
	if s.Index("nope") != 0 {
		t.Errorf("Index of an unknown kind = %d", s.Index("nope"))
	}
	fsm.TestCreate(t, f, 5, vm, "a", nil)
	check(5, 0, 5)
	fsm.TestCreate(t, f, 6, host, "h", nil)
	check(5, 6, 6)
	fsm.TestMustApply(t, f, 9, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", CAS: 5, Spec: raw(vmSpec2)})
	check(9, 6, 9)
	if o := mustGet(t, f, vm, "a"); o.CreateIndex != 5 || o.ModifyIndex != 9 {
		t.Fatalf("vm/a indexes create=%d modify=%d, want 5 9", o.CreateIndex, o.ModifyIndex)
	}
	fsm.TestMustApply(t, f, 10, fsm.StatusRequestType, &fsm.StatusRequest{Kind: host, Name: "h", CAS: 6, Status: raw(`{"state":"ready"}`)})
	check(9, 10, 10)
	// Failed entries and non-command entries do not move the indexes.
	applyFails(t, f, fsm.TestLog(t, 11, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", CAS: 5, Spec: raw(vmSpec2)}), fsm.ErrCASMismatch)
	fsm.TestApplyLog(t, f, &raft.Log{Index: 12, Type: raft.LogBarrier})
	check(9, 10, 10)
	if f.AppliedIndex() != 12 {
		t.Fatalf("AppliedIndex = %d, want 12", f.AppliedIndex())
	}
	fsm.TestMustApply(t, f, 13, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a", CAS: 9})
	check(13, 10, 13)
	// Re-creating gets fresh indexes.
	o := fsm.TestCreate(t, f, 14, vm, "a", nil)
	if o.CreateIndex != 14 || o.ModifyIndex != 14 {
		t.Fatalf("re-created vm/a indexes %d %d", o.CreateIndex, o.ModifyIndex)
	}
	check(14, 10, 14)
}

func TestListOrderAndSelectors(t *testing.T) {
	f := fsm.TestFSM(t)
	labels := map[string]map[string]string{
		"web-2":  {"app": "web", "tier": "front"},
		"a":      {"app": "db"},
		"web-10": {"app": "web"},
		"m":      nil,
		"b-1":    {"tier": "back"},
		"0":      {"app": "web", "tier": "back"},
		"web":    {"app": "web", "tier": "front"},
	}
	idx := uint64(1)
	for _, n := range []string{"web-2", "a", "web-10", "m", "b-1", "0", "web"} {
		fsm.TestCreate(t, f, idx, vm, n, labels[n])
		idx++
	}
	fsm.TestCreate(t, f, idx, host, "aa", map[string]string{"app": "web"})
	for _, tc := range []struct{ sel, want string }{
		{"", "0,a,b-1,m,web,web-10,web-2"},
		{"app=web", "0,web,web-10,web-2"},
		{"app==web", "0,web,web-10,web-2"},
		{"app!=web", "a,b-1,m"},
		{"app", "0,a,web,web-10,web-2"},
		{"!app", "b-1,m"},
		{"app=web,tier=front", "web,web-2"},
		{"app=web, !tier", "web-10"},
		{"tier!=front,tier", "0,b-1"},
		{"app=nope", ""},
	} {
		t.Run(tc.sel, func(t *testing.T) {
			sel, err := resource.ParseSelector(tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.State().List(nil, vm, sel)
			if err != nil {
				t.Fatal(err)
			}
			if got == nil {
				t.Errorf("List returned nil, want an empty slice")
			}
			if g := strings.Join(names(got), ","); g != tc.want {
				t.Errorf("List(vm, %q) = %s, want %s", tc.sel, g, tc.want)
			}
			for _, o := range got {
				if o.Kind != vm {
					t.Errorf("List(vm) returned %s", o)
				}
			}
		})
	}
	hosts, _ := f.State().List(nil, host, nil)
	if g := strings.Join(names(hosts), ","); g != "aa" {
		t.Errorf("List(host) = %s", g)
	}
	none, err := f.State().List(nil, "nope", nil)
	if err != nil || len(none) != 0 {
		t.Errorf("List(unknown kind) = %v, %v; want empty, nil", none, err)
	}
}

func TestEventsOnlyForSuccessfulEntries(t *testing.T) {
	f := fsm.TestFSM(t)
	fsm.TestCreate(t, f, 1, vm, "a", nil)
	fsm.TestApply(t, f, 2, fsm.CreateRequestType, createReq(vm, "a", "dup", nil, vmSpec1))
	fsm.TestMustApply(t, f, 3, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Spec: raw(vmSpec2)})
	fsm.TestApply(t, f, 4, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a", CAS: 1})
	fsm.TestApply(t, f, 5, fsm.BatchRequestType, &fsm.BatchRequest{Time: fsm.TestTime}) // empty: refused
	fsm.TestApplyLog(t, f, entry(6, 0xe3, "{}"))
	fsm.TestApplyLog(t, f, &raft.Log{Index: 7, Type: raft.LogNoop})
	fsm.TestMustApply(t, f, 8, fsm.StatusRequestType, &fsm.StatusRequest{Kind: vm, Name: "a", Status: raw(`{"phase":"running"}`)})
	fsm.TestMustApply(t, f, 9, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a", CAS: 8})
	evs, reset, floor, _ := f.Events().Since(0, 0)
	want := "1:created:vm/a 3:updated:vm/a 8:updated:vm/a 9:deleted:vm/a"
	if reset || floor != 0 || eventSummary(evs) != want {
		t.Fatalf("events (reset=%v floor=%d):\n got %s\nwant %s", reset, floor, eventSummary(evs), want)
	}
	if evs[2].Object == nil || string(evs[2].Object.Status) != `{"phase":"running"}` {
		t.Errorf("updated event carries %+v, want the object after the change", evs[2].Object)
	}
	if evs[3].Object == nil || evs[3].Object.ModifyIndex != 8 {
		t.Errorf("deleted event carries %+v, want the object as it was", evs[3].Object)
	}
	evs, _, _, _ = f.Events().Since(3, 0)
	if got := eventSummary(evs); got != "8:updated:vm/a 9:deleted:vm/a" {
		t.Errorf("Since(3) = %s", got)
	}
}

// TestStoredObjectsAreImmutable: an object handed out by the store keeps
// its value when later commands change the object.
func TestStoredObjectsAreImmutable(t *testing.T) {
	f := fsm.TestFSM(t)
	created := fsm.TestCreate(t, f, 1, vm, "a", map[string]string{"app": "web"})
	got := mustGet(t, f, vm, "a")
	snapshot := got.Copy()
	listed, _ := f.State().List(nil, vm, nil)
	fsm.TestMustApply(t, f, 2, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Labels: map[string]string{"app": "db"}, Spec: raw(vmSpec2)})
	fsm.TestMustApply(t, f, 3, fsm.StatusRequestType, &fsm.StatusRequest{Kind: vm, Name: "a", Status: raw(`{"phase":"running"}`)})
	for what, o := range map[string]*resource.Object{"Result": created, "Get": got, "List": listed[0]} {
		if !o.Equal(snapshot) {
			t.Errorf("object from %s changed under the caller: %+v", what, o)
		}
	}
	// Mutating a caller's labels map must not reach the store.
	labels := map[string]string{"app": "x"}
	fsm.TestMustApply(t, f, 4, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Labels: labels, Spec: raw(vmSpec1)})
	labels["app"] = "y"
	if mustGet(t, f, vm, "a").Labels["app"] != "x" {
		t.Errorf("store shares the request's labels map")
	}
}

func TestOnApplyHook(t *testing.T) {
	f := fsm.TestFSM(t)
	type call struct {
		t   fsm.MessageType
		err bool
	}
	var calls []call
	f.OnApply = func(mt fsm.MessageType, d time.Duration, err error) {
		if d < 0 {
			t.Errorf("negative duration %v", d)
		}
		calls = append(calls, call{mt, err != nil})
	}
	fsm.TestCreate(t, f, 1, vm, "a", nil)
	fsm.TestApplyLog(t, f, entry(2, 0xe3, "{}"))
	fsm.TestApply(t, f, 3, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "zz"})
	fsm.TestApplyLog(t, f, entry(4, 99, "{}"))                                             // halts: an error
	fsm.TestApply(t, f, 5, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a"}) // not applied: not observed
	want := []call{{fsm.CreateRequestType, false}, {0xe3, false}, {fsm.DeleteRequestType, true}, {99, true}}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("OnApply calls = %v, want %v", calls, want)
	}
}

func TestMessageTypeString(t *testing.T) {
	for mt, want := range map[fsm.MessageType]string{
		fsm.CreateRequestType: "create", fsm.UpdateRequestType: "update", fsm.DeleteRequestType: "delete",
		fsm.BatchRequestType: "batch", fsm.StatusRequestType: "status", fsm.PlaceRequestType: "place",
		fsm.ReportRequestType: "report", fsm.HostStateRequestType: "host-state", fsm.EvacuateRequestType: "evacuate",
		fsm.ActionRequestType: "action", fsm.MigrateRequestType: "migrate", fsm.ClusterInitRequestType: "cluster-init",
		fsm.HostFenceRequestType: "host-fence", fsm.ACLBootstrapRequestType: "acl-bootstrap", fsm.AccessorRequestType: "with-accessor",
		fsm.MigrationEventRequestType: "migration-event", fsm.CreateBinRequestType: "create-bin", fsm.CreatesBinRequestType: "creates-bin", 23: "type(23)", 99: "type(99)",
	} {
		if got := mt.String(); got != want {
			t.Errorf("MessageType(%d).String() = %q, want %q", uint8(mt), got, want)
		}
	}
}

// TestMessageTypeRegistry: the message types that have a name, the ones
// MessageTypes lists and the ones Apply knows are the same set.
func TestMessageTypeRegistry(t *testing.T) {
	listed := map[fsm.MessageType]bool{}
	for _, mt := range fsm.MessageTypes {
		listed[mt] = true
	}
	for i := range 256 {
		mt := fsm.MessageType(i)
		named := !strings.HasPrefix(mt.String(), "type(")
		// No command has this field: a known type rejects the payload,
		// an unknown one is refused (or skipped, when ignorable) as such.
		data := append([]byte{byte(mt)}, `{"no such field":0}`...)
		res := fsm.TestApplyLog(t, fsm.TestFSM(t), &raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
		known := errors.Is(res.Err, fsm.ErrBadPayload)
		if named != listed[mt] || named != known {
			t.Errorf("message type %d (%s): named %t, in MessageTypes %t, known to Apply %t (err %v)", i, mt, named, listed[mt], known, res.Err)
		}
	}
}

// TestApplyBatchRollback: inside one ApplyBatch (one shared transaction),
// an entry that fails after writing — a batch whose second op is a
// duplicate — leaves no trace, while the entries before and after it keep
// their effects, results and events; readers see the batch only once it is
// committed as a whole.
func TestApplyBatchRollback(t *testing.T) {
	f := fsm.New(fsm.Config{})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	create := func(name string) fsm.CreateRequest {
		return fsm.CreateRequest{Time: now, Kind: vm, Name: name, ID: "id-" + name, Spec: raw(`{"cpus":1,"memory_mib":64}`)}
	}
	op := func(name string) fsm.BatchOp {
		p, err := json.Marshal(create(name))
		if err != nil {
			t.Fatal(err)
		}
		return fsm.BatchOp{Type: fsm.CreateRequestType, Payload: p}
	}
	a, c := create("a"), create("c")
	logs := []*raft.Log{
		fsm.TestLog(t, 1, fsm.CreateRequestType, &a),
		fsm.TestLog(t, 2, fsm.BatchRequestType, &fsm.BatchRequest{Time: now, Ops: []fsm.BatchOp{op("b"), op("a")}}),
		fsm.TestLog(t, 3, fsm.DeleteRequestType, &fsm.DeleteRequest{Time: now, Kind: vm, Name: "zz"}),
		fsm.TestLog(t, 4, fsm.CreateRequestType, &c),
	}
	out := f.ApplyBatch(logs)
	for i, want := range []error{nil, fsm.ErrExists, fsm.ErrNotFound, nil} {
		res := out[i].(*fsm.Result)
		if !errors.Is(res.Err, want) || (want == nil) != (res.Err == nil) {
			t.Fatalf("entry %d: error %v, want %v", i+1, res.Err, want)
		}
		if res.Index != uint64(i+1) {
			t.Fatalf("entry %d: index %d", i+1, res.Index)
		}
	}
	mustGet(t, f, vm, "a")
	mustAbsent(t, f, vm, "b")
	if o := mustGet(t, f, vm, "c"); o.CreateIndex != 4 {
		t.Fatalf("c created at %d", o.CreateIndex)
	}
	if n := f.State().Count(vm); n != 2 {
		t.Fatalf("%d VMs, want 2", n)
	}
	evs, _, _, _ := f.Events().Since(0, 0)
	if len(evs) != 2 || evs[0].Name != "a" || evs[1].Name != "c" {
		t.Fatalf("events %+v", evs)
	}
	if f.AppliedIndex() != 4 || f.State().Index(vm) != 4 {
		t.Fatalf("applied %d, vm index %d", f.AppliedIndex(), f.State().Index(vm))
	}

	// The same log one entry at a time ends in the same state.
	g := fsm.New(fsm.Config{})
	for _, l := range logs {
		g.Apply(l)
	}
	if f.State().Digest() != g.State().Digest() {
		t.Fatalf("batched and one-at-a-time states differ")
	}
}
