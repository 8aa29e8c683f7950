package fsm_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// restore restores data into f (not a fresh FSM) and fails on error.
func restore(t testing.TB, f *fsm.FSM, data []byte) {
	t.Helper()
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("restore: %v", err)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	f := fsm.TestFSM(t)
	seed(t, f)
	fsm.TestMustApply(t, f, 4, fsm.StatusRequestType, &fsm.StatusRequest{Kind: host, Name: "h1", Status: raw(`{"state":"ready","reason":"<joined> & \u2028 ok"}`)})
	fsm.TestCreate(t, f, 5, vm, "gone", map[string]string{"x": "é<>&"})
	fsm.TestMustApply(t, f, 6, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "gone"})
	fsm.TestCreate(t, f, 7, host, "h2", nil)
	fsm.TestMustApply(t, f, 8, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: host, Name: "h2"})
	fsm.TestApply(t, f, 9, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: host, Name: "h2"}) // fails, still applied

	data := fsm.TestPersist(t, f)
	g := fsm.TestRestore(t, data)
	if g.State().Digest() != f.State().Digest() {
		t.Fatalf("digest differs after restore")
	}
	if g.AppliedIndex() != 9 {
		t.Errorf("AppliedIndex = %d, want 9", g.AppliedIndex())
	}
	for _, k := range []resource.Kind{vm, host} {
		if g.State().Index(k) != f.State().Index(k) {
			t.Errorf("Index(%s) = %d, want %d", k, g.State().Index(k), f.State().Index(k))
		}
		a, _ := f.State().List(nil, k, nil)
		b, _ := g.State().List(nil, k, nil)
		if len(a) != len(b) {
			t.Fatalf("List(%s): %d vs %d objects", k, len(a), len(b))
		}
		for i := range a {
			if !a[i].Equal(b[i]) {
				t.Errorf("object %d of %s differs:\n%+v\n%+v", i, k, a[i], b[i])
			}
		}
	}
	if g.State().LatestIndex() != 8 || g.State().Index(vm) != 6 || g.State().Index(host) != 8 {
		t.Errorf("restored indexes: latest=%d vm=%d host=%d, want 8 6 8",
			g.State().LatestIndex(), g.State().Index(vm), g.State().Index(host))
	}
	// The restored store keeps enforcing uniqueness of names and ids.
	applyFails(t, g, fsm.TestLog(t, 10, fsm.CreateRequestType, createReq(vm, "a", "new", nil, vmSpec1)), fsm.ErrExists)
	applyFails(t, g, fsm.TestLog(t, 11, fsm.CreateRequestType, createReq(vm, "new", fsm.TestID(3), nil, vmSpec1)), fsm.ErrExists)
}

func TestSnapshotFormat(t *testing.T) {
	f := fsm.TestFSM(t)
	seed(t, f)
	data := fsm.TestPersist(t, f)
	sc := bufio.NewScanner(bytes.NewReader(data))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) == 0 || lines[0] != `{"version":2,"applied_index":3}` {
		t.Fatalf("header = %q", lines)
	}
	objects, indexes, metas := 0, 0, 0
	for _, l := range lines[1:] {
		var rec map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &rec); err != nil || len(rec) != 1 {
			t.Fatalf("record %q is not a one-field object", l)
		}
		switch {
		case rec["object"] != nil:
			objects++
		case rec["index"] != nil:
			indexes++
		case rec["meta"] != nil:
			metas++
		}
	}
	if objects != 3 || indexes != 2 || metas != 0 { // objects/vm, objects/host
		t.Errorf("snapshot has %d objects, %d index and %d meta records, want 3, 2 and 0:\n%s", objects, indexes, metas, data)
	}
}

// TestSnapshotIsPointInTime: Persist writes the state as of Snapshot, even
// when entries are applied (and a Restore happens) in between.
func TestSnapshotIsPointInTime(t *testing.T) {
	f := fsm.TestFSM(t)
	seed(t, f)
	want := f.State().Digest()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	fsm.TestCreate(t, f, 4, vm, "later", nil)
	fsm.TestMustApply(t, f, 5, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a"})
	var sink fsm.TestSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := fsm.TestRestore(t, sink.Bytes())
	if g.State().Digest() != want || g.AppliedIndex() != 3 {
		t.Errorf("snapshot taken at 3 restored to applied=%d with a different state", g.AppliedIndex())
	}
	mustGet(t, g, vm, "a")
	mustAbsent(t, g, vm, "later")
}

type failingSink struct {
	fsm.TestSink
	failAfter int
}

func (s *failingSink) Write(p []byte) (int, error) {
	if s.Len()+len(p) > s.failAfter {
		return 0, errors.New("disk full")
	}
	return s.TestSink.Write(p)
}

func TestPersistCancelsOnError(t *testing.T) {
	f := fsm.TestFSM(t)
	// Enough data to overflow Persist's write buffer.
	for i := uint64(1); i <= 2000; i++ {
		fsm.TestCreate(t, f, i, vm, "vm-"+strings.Repeat("x", 20)+"-"+fsm.TestID(i)[24:], map[string]string{"k": strings.Repeat("v", 200)})
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &failingSink{failAfter: 1000}
	err = snap.Persist(sink)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Persist = %v, want the sink's error", err)
	}
	if !sink.Cancelled || sink.Closed {
		t.Errorf("sink cancelled=%v closed=%v, want Cancel and no Close", sink.Cancelled, sink.Closed)
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestRestoreErrors(t *testing.T) {
	good := `{"object":{"kind":"vm","name":"x","id":"i","labels":{},"create_index":1,"modify_index":1,"spec":{},"status":{}}}`
	for _, tc := range []struct{ name, data string }{
		{"empty", ``},
		{"garbage", `not json`},
		{"header null", `null`},
		{"no version", `{"applied_index":3}`},
		{"version 4", `{"version":4,"applied_index":3}`},
		{"acl token and policy", `{"version":3}` + "\n" + `{"acl_token":{"accessor_id":"a","type":"management","create_time":"2025-01-01T00:00:00Z","create_index":1,"modify_index":1,"secret_hash":"x"},"acl_policy":{"name":"p","rules":[]}}`},
		{"acl token unknown field", `{"version":3}` + "\n" + `{"acl_token":{"accessor_id":"a","secret_id":"leak","type":"management","create_time":"2025-01-01T00:00:00Z","create_index":1,"modify_index":1,"secret_hash":"x","zz":1}}`},
		{"meta without key", `{"version":2}` + "\n" + `{"meta":{"value":"x"}}`},
		{"version 0", `{"version":0}`},
		{"header unknown field", `{"version":1,"applied_index":3,"term":1}`},
		{"record null", `{"version":1}` + "\nnull"},
		{"empty record", `{"version":1}` + "\n{}"},
		{"both fields", `{"version":1}` + "\n" + `{"object":{"kind":"vm","name":"x","id":"i"},"index":{"key":"k","value":1}}`},
		{"record unknown field", `{"version":1}` + "\n" + `{"thing":{}}`},
		{"object unknown field", `{"version":1}` + "\n" + `{"object":{"kind":"vm","name":"x","id":"i","owner":"me"}}`},
		{"object without id", `{"version":1}` + "\n" + `{"object":{"kind":"vm","name":"x"}}`},
		{"object without name", `{"version":1}` + "\n" + `{"object":{"kind":"vm","id":"i"}}`},
		{"object without kind", `{"version":1}` + "\n" + `{"object":{"name":"x","id":"i"}}`},
		{"index without key", `{"version":1}` + "\n" + `{"index":{"value":4}}`},
		{"meta and index", `{"version":2}` + "\n" + `{"meta":{"key":"cluster_id","value":"x"},"index":{"key":"k","value":1}}`},
		{"meta unknown field", `{"version":2}` + "\n" + `{"meta":{"key":"cluster_id","value":"x","extra":1}}`},
		{"truncated record", `{"version":1}` + "\n" + good[:40]},
		{"garbage after records", `{"version":1}` + "\n" + good + "\n]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.TestFSM(t)
			seed(t, f)
			before := observe(t, f)
			abandon := f.State().AbandonCh()
			rc := &closeRecorder{Reader: strings.NewReader(tc.data)}
			if err := f.Restore(rc); err == nil {
				t.Fatalf("Restore(%q) succeeded", tc.data)
			}
			if !rc.closed {
				t.Errorf("Restore did not close its reader")
			}
			if after := observe(t, f); after != before || f.AppliedIndex() != 3 {
				t.Errorf("a failed Restore changed the state: %+v -> %+v, applied %d", before, after, f.AppliedIndex())
			}
			if isClosed(abandon) {
				t.Errorf("a failed Restore woke blocked readers")
			}
		})
	}
}

func TestRestoreReplacesEverything(t *testing.T) {
	src := fsm.TestFSM(t)
	fsm.TestCreate(t, src, 20, host, "only", nil)
	f := fsm.TestFSM(t)
	seed(t, f)
	rc := &closeRecorder{Reader: bytes.NewReader(fsm.TestPersist(t, src))}
	if err := f.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if !rc.closed {
		t.Errorf("Restore did not close its reader")
	}
	if f.State().Digest() != src.State().Digest() {
		t.Errorf("restored state differs from the snapshot's")
	}
	mustAbsent(t, f, vm, "a")
	if f.State().Index(vm) != 0 || f.State().Count(vm) != 0 || f.AppliedIndex() != 20 {
		t.Errorf("vm index %d count %d applied %d, want 0 0 20", f.State().Index(vm), f.State().Count(vm), f.AppliedIndex())
	}
}

func TestRestoreFillsNilLabels(t *testing.T) {
	data := `{"version":1,"applied_index":2}` + "\n" +
		`{"object":{"kind":"vm","name":"x","id":"i","labels":null,"create_index":1,"modify_index":2,"spec":{"cpus":1,"memory_mib":1,"power":"running","ha":"none"},"status":{"phase":"pending"}}}` + "\n" +
		`{"index":{"key":"objects/vm","value":2}}` + "\n" + `{"index":{"key":"_all","value":2}}` + "\n"
	f := fsm.TestRestore(t, []byte(data))
	o := mustGet(t, f, vm, "x")
	if o.Labels == nil {
		t.Errorf("restored object has nil labels")
	}
	if f.State().Index(vm) != 2 || f.State().LatestIndex() != 2 {
		t.Errorf("indexes %d %d", f.State().Index(vm), f.State().LatestIndex())
	}
	// And it can be updated like any other.
	fsm.TestMustApply(t, f, 3, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "x", CAS: 2, Labels: map[string]string{"a": "b"}, Spec: raw(vmSpec1)})
}

// TestRestoreManyRecords: a stream of more records than the decoding
// goroutine hands over at a time restores in order, and an error after
// them names the record where it is and changes nothing.
func TestRestoreManyRecords(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"version":1,"applied_index":1000}` + "\n")
	const n = 1000
	for i := range n {
		fmt.Fprintf(&b, `{"object":{"kind":"vm","name":"v%04d","id":"i%04d","labels":{},"create_index":%d,"modify_index":%d,"spec":{},"status":{}}}`+"\n", i, i, i+1, i+1)
	}
	good := b.String()
	f := fsm.TestFSM(t)
	restore(t, f, []byte(good))
	objs, err := f.State().List(nil, vm, resource.Selector{})
	if err != nil || len(objs) != n {
		t.Fatalf("restored %d VMs (%v), want %d", len(objs), err, n)
	}
	for i, o := range objs {
		if o.Name != fmt.Sprintf("v%04d", i) || o.CreateIndex != uint64(i+1) {
			t.Fatalf("VM %d is %s (create index %d)", i, o.Name, o.CreateIndex)
		}
	}
	for _, tc := range []struct{ name, tail string }{
		{"bad JSON", `{"object":`},
		{"two fields", `{"object":{"kind":"vm","name":"x","id":"x"},"index":{"key":"k","value":1}}`},
		{"unknown field", `{"thing":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.TestFSM(t)
			seed(t, f)
			before := observe(t, f)
			err := f.Restore(io.NopCloser(strings.NewReader(good + tc.tail)))
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("record %d:", n)) {
				t.Fatalf("Restore = %v, want an error naming record %d", err, n)
			}
			if after := observe(t, f); after != before {
				t.Errorf("a failed Restore changed the state: %+v -> %+v", before, after)
			}
		})
	}
}
