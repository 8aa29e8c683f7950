package fsm

// Helpers for tests of this package and of packages that build on it. They
// take a TB (a testing.TB or a *rapid.T) and fail the test on misuse; no
// production code path uses them.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/resource"
)

// TB is the part of testing.TB the helpers use; *testing.T, *testing.B,
// *testing.F and *rapid.T all satisfy it.
type TB interface {
	Fatalf(format string, args ...any)
}

// helper is testing.TB's Helper, when tb has one (*rapid.T does not).
type helper interface{ Helper() }

// TestTime is the command time the helpers put into requests.
var TestTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// TestEventBufferSize is the event buffer size of TestFSM's FSMs: small,
// so that tests and fuzzers that build many FSMs stay cheap.
const TestEventBufferSize = 1024

// TestFSM returns an FSM with an empty store, a null logger and an event
// buffer of TestEventBufferSize.
func TestFSM(tb TB) *FSM {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	return New(Config{EventBufferSize: TestEventBufferSize})
}

// TestID returns a deterministic UUID-shaped object id for n.
func TestID(n uint64) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
}

// TestSpec returns a small valid spec of kind (in canonical form: what the
// store keeps after defaults are filled in).
func TestSpec(tb TB, kind resource.Kind) json.RawMessage {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	var raw string
	switch kind {
	case resource.KindVM:
		raw = `{"cpus":1,"memory_mib":512,"power":"running","ha":"none"}`
	case resource.KindHost:
		raw = `{"cpu_overcommit":1,"memory_overcommit":1}`
	default:
		tb.Fatalf("fsm.TestSpec: no test spec for kind %q", kind)
	}
	return json.RawMessage(raw)
}

// TestLog returns the raft log entry that carries req as a command of type t
// at index.
func TestLog(tb TB, index uint64, t MessageType, req any) *raft.Log {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	data, err := Encode(t, req)
	if err != nil {
		tb.Fatalf("fsm.TestLog: %v", err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// TestApply encodes req as a command of type t and applies it at index.
// Business errors are returned in Result.Err; use TestMustApply when the
// command must succeed.
func TestApply(tb TB, f *FSM, index uint64, t MessageType, req any) *Result {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	return TestApplyLog(tb, f, TestLog(tb, index, t, req))
}

// TestApplyLog applies one raw log entry and returns its Result.
func TestApplyLog(tb TB, f *FSM, l *raft.Log) *Result {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	out := f.Apply(l)
	res, ok := out.(*Result)
	if !ok || res == nil {
		tb.Fatalf("fsm.TestApplyLog: Apply returned %T, want a non-nil *fsm.Result", out)
	}
	if res.Index != l.Index {
		tb.Fatalf("fsm.TestApplyLog: Result.Index = %d, want %d", res.Index, l.Index)
	}
	return res
}

// TestMustApply is TestApply for commands that must succeed.
func TestMustApply(tb TB, f *FSM, index uint64, t MessageType, req any) *Result {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	res := TestApply(tb, f, index, t, req)
	if res.Err != nil {
		tb.Fatalf("apply %s at index %d: %v", t, index, res.Err)
	}
	return res
}

// TestLogger applies commands to an FSM at consecutive log indexes from
// 1, each of which must succeed; Index is the last one applied.
type TestLogger struct {
	tb    TB
	f     *FSM
	Index uint64
}

// NewTestLogger returns a TestLogger of f.
func NewTestLogger(tb TB, f *FSM) *TestLogger { return &TestLogger{tb: tb, f: f} }

// Apply applies req at the next index (TestMustApply).
func (l *TestLogger) Apply(t MessageType, req any) *Result {
	if h, ok := l.tb.(helper); ok {
		h.Helper()
	}
	l.Index++
	return TestMustApply(l.tb, l.f, l.Index, t, req)
}

// TestCreate creates kind/name at index with TestSpec and the given labels
// (id TestID(index), time TestTime) and returns the stored object.
func TestCreate(tb TB, f *FSM, index uint64, kind resource.Kind, name string, labels map[string]string) *resource.Object {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	res := TestMustApply(tb, f, index, CreateRequestType, &CreateRequest{
		Time: TestTime, Kind: kind, Name: name, ID: TestID(index),
		Labels: labels, Spec: TestSpec(tb, kind),
	})
	if len(res.Objects) != 1 {
		tb.Fatalf("create %s/%s: Result has %d objects, want 1", kind, name, len(res.Objects))
	}
	return res.Objects[0]
}

// TestSink is an in-memory raft.SnapshotSink.
type TestSink struct {
	bytes.Buffer
	Closed    bool
	Cancelled bool
}

var _ raft.SnapshotSink = (*TestSink)(nil)

// ID implements raft.SnapshotSink.
func (s *TestSink) ID() string { return "test" }

// Close implements raft.SnapshotSink.
func (s *TestSink) Close() error { s.Closed = true; return nil }

// Cancel implements raft.SnapshotSink.
func (s *TestSink) Cancel() error { s.Cancelled = true; return nil }

// TestPersist takes a snapshot of f and returns the persisted stream.
func TestPersist(tb TB, f *FSM) []byte {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	snap, err := f.Snapshot()
	if err != nil {
		tb.Fatalf("fsm.TestPersist: snapshot: %v", err)
	}
	defer snap.Release()
	var sink TestSink
	if err := snap.Persist(&sink); err != nil {
		tb.Fatalf("fsm.TestPersist: persist: %v", err)
	}
	if !sink.Closed || sink.Cancelled {
		tb.Fatalf("fsm.TestPersist: sink closed=%v cancelled=%v, want closed only", sink.Closed, sink.Cancelled)
	}
	return sink.Bytes()
}

// TestRestore returns a fresh FSM restored from a persisted snapshot stream.
func TestRestore(tb TB, data []byte) *FSM {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	f := TestFSM(tb)
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		tb.Fatalf("fsm.TestRestore: %v", err)
	}
	return f
}

// TestSnapshotRestore round-trips f through Snapshot, Persist and Restore
// and returns the restored FSM.
func TestSnapshotRestore(tb TB, f *FSM) *FSM {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	return TestRestore(tb, TestPersist(tb, f))
}

// TestCheckAllocations fails tb unless every host's status.allocated is
// the sum of the specs of the VMs whose status.host names it and of those
// migrating to it (status.migration.target: a migration reserves both
// hosts), and every VM that names a host counts towards exactly that host.
func TestCheckAllocations(tb TB, f *FSM) {
	if h, ok := tb.(helper); ok {
		h.Helper()
	}
	s := f.State()
	vms, err := s.List(nil, resource.KindVM, nil)
	if err != nil {
		tb.Fatalf("fsm.TestCheckAllocations: %v", err)
	}
	sums := map[string]resource.Resources{}
	counts := map[string]int{}
	for _, o := range vms {
		spec, err1 := resource.DecodeSpec[resource.VMSpec](o)
		st, err2 := resource.DecodeStatus[resource.VMStatus](o)
		if err1 != nil || err2 != nil {
			tb.Fatalf("fsm.TestCheckAllocations: %s: %v %v", o, err1, err2)
		}
		if m := st.Migration; m != nil {
			if st.Host == "" || m.Target == "" || m.Target == st.Host {
				tb.Fatalf("fsm.TestCheckAllocations: %s migrates from %q to %q", o.Name, st.Host, m.Target)
			}
			r := sums[m.Target]
			r.CPUs += spec.CPUs
			r.MemoryMiB += spec.MemoryMiB
			sums[m.Target] = r
		}
		if st.Host == "" {
			continue
		}
		counts[st.Host]++
		r := sums[st.Host]
		r.CPUs += spec.CPUs
		r.MemoryMiB += spec.MemoryMiB
		sums[st.Host] = r
	}
	hosts, err := s.List(nil, resource.KindHost, nil)
	if err != nil {
		tb.Fatalf("fsm.TestCheckAllocations: %v", err)
	}
	for _, o := range hosts {
		st, err := resource.DecodeStatus[resource.HostStatus](o)
		if err != nil {
			tb.Fatalf("fsm.TestCheckAllocations: %s: %v", o, err)
		}
		if st.Allocated != sums[o.Name] {
			tb.Fatalf("fsm.TestCheckAllocations: host %q has status.allocated %+v, but its VMs (and those migrating to it) add up to %+v",
				o.Name, st.Allocated, sums[o.Name])
		}
		on, err := s.VMsOnHost(nil, o.Name)
		if err != nil {
			tb.Fatalf("fsm.TestCheckAllocations: %v", err)
		}
		for _, v := range on {
			if vst, _ := resource.DecodeStatus[resource.VMStatus](v); vst == nil || vst.Host != o.Name {
				tb.Fatalf("fsm.TestCheckAllocations: VMsOnHost(%q) returns %s, which is not on it", o.Name, v)
			}
		}
		if len(on) != counts[o.Name] {
			tb.Fatalf("fsm.TestCheckAllocations: VMsOnHost(%q) returns %d VMs, %d name it", o.Name, len(on), counts[o.Name])
		}
	}
}
