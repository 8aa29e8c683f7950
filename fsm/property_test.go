package fsm_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Property tests over random command sequences. The generator works on a
// small name space so that duplicates, CAS conflicts and not-found cases
// are common, and it mixes in invalid input, garbage entries and entries
// that are not commands.

var (
	propNames  = []string{"a", "b", "c", "Bad", ""} // the last two are invalid
	propLabelK = []string{"app", "tier", "zone"}
	propLabelV = []string{"web", "db", ""}
	propPhases = []string{resource.PhasePending, resource.PhaseRunning, resource.PhaseStopped}
	propStates = []string{resource.HostReady, resource.HostDown}
	propZones  = []*time.Location{time.UTC, time.FixedZone("", 9*3600), time.FixedZone("", -5*3600)}
)

// Faults: most generated operations are valid; a fault draw breaks at most
// one part of one.
const (
	faultNone = iota
	faultKind
	faultName
	faultLabels
	faultID
	faultSpec
	faultStatus
	faultCount
)

func drawFault(t *rapid.T) int {
	// Two draws in three are valid.
	if f := rapid.IntRange(0, 3*faultCount-1).Draw(t, "fault"); f < faultCount {
		return f
	}
	return faultNone
}

// propEntry is one generated log entry: a typed command, or raw Data, or a
// log entry that is not a command.
type propEntry struct {
	typ     fsm.MessageType
	req     any
	data    []byte // used when req is nil
	logType raft.LogType
}

func (e propEntry) String() string {
	if e.logType != raft.LogCommand {
		return "log:" + e.logType.String()
	}
	if e.req == nil {
		return fmt.Sprintf("raw:%q", e.data)
	}
	b, _ := json.Marshal(e.req)
	return fmt.Sprintf("%s:%s", e.typ, b)
}

func (e propEntry) log(t fsm.TB, index uint64) *raft.Log {
	switch {
	case e.logType != raft.LogCommand:
		return &raft.Log{Index: index, Term: 1, Type: e.logType, Data: e.data}
	case e.req == nil:
		return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: e.data}
	}
	return fsm.TestLog(t, index, e.typ, e.req)
}

// propGen draws commands. cas chooses the CAS value for kind/name; next is
// the index the command will be applied at.
type propGen struct {
	cas func(t *rapid.T, kind resource.Kind, name string, next uint64) uint64
}

// randomCAS ignores the state: mostly 0, else a small index.
func randomCAS(t *rapid.T, _ resource.Kind, _ string, next uint64) uint64 {
	if rapid.IntRange(0, 2).Draw(t, "cas?") != 2 {
		return 0
	}
	return rapid.Uint64Range(1, next).Draw(t, "cas")
}

func drawTime(t *rapid.T) time.Time {
	h := rapid.IntRange(0, 48).Draw(t, "hour")
	zone := rapid.SampledFrom(propZones).Draw(t, "zone")
	return fsm.TestTime.Add(time.Duration(h) * time.Hour).In(zone)
}

func drawLabels(t *rapid.T, fault int) map[string]string {
	n := rapid.IntRange(0, 2).Draw(t, "nlabels")
	if n == 0 && fault != faultLabels && rapid.Bool().Draw(t, "nil labels") {
		return nil
	}
	l := map[string]string{}
	for range n {
		l[rapid.SampledFrom(propLabelK).Draw(t, "label key")] = rapid.SampledFrom(propLabelV).Draw(t, "label value")
	}
	if fault == faultLabels {
		l[rapid.SampledFrom([]string{"bad key", "-x", ""}).Draw(t, "bad label key")] = "v"
	}
	return l
}

func drawSpec(t *rapid.T, kind resource.Kind, fault int) json.RawMessage {
	if fault == faultSpec {
		return raw(rapid.SampledFrom([]string{
			`null`, `{"cpus":1,"memory_mib":1,"bogus":true}`, `[]`, `{"cpus":"1"}`, `{}`,
			`{"cpu_overcommit":2}`, `{"cpus":0,"memory_mib":64}`, `{"cpus":1,"memory_mib":0}`,
			`{"cpus":1,"memory_mib":1,"power":"off"}`, `{"cpu_overcommit":0.5}`, `{"memory_overcommit":65}`,
		}).Draw(t, "bad spec"))
	}
	m := map[string]any{}
	if kind == host {
		for _, k := range []string{"cpu_overcommit", "memory_overcommit"} {
			if v := rapid.SampledFrom([]float64{0, 1, 1.5, 4}).Draw(t, k); v != 0 {
				m[k] = v
			}
		}
		if rapid.Bool().Draw(t, "unschedulable") {
			m["unschedulable"] = true
		}
	} else {
		m["cpus"] = rapid.IntRange(1, 4).Draw(t, "cpus")
		m["memory_mib"] = rapid.SampledFrom([]int{256, 1024, 4096}).Draw(t, "memory")
		if p := rapid.SampledFrom([]string{"", "running", "stopped", "suspended"}).Draw(t, "power"); p != "" {
			m["power"] = p
		}
		if h := rapid.SampledFrom([]string{"", "none", "restart"}).Draw(t, "ha"); h != "" {
			m["ha"] = h
		}
	}
	b, _ := json.Marshal(m)
	return b
}

func drawStatus(t *rapid.T, kind resource.Kind, fault int) json.RawMessage {
	if fault == faultStatus {
		return raw(rapid.SampledFrom([]string{`null`, `{"bogus":1}`, `{"phase":7}`, `[]`, `{"epoch":-1}`}).Draw(t, "bad status"))
	}
	var m map[string]any
	if kind == host {
		m = map[string]any{
			"state":    rapid.SampledFrom(propStates).Draw(t, "state"),
			"capacity": map[string]any{"cpus": rapid.IntRange(0, 64).Draw(t, "cap cpus"), "memory_mib": 65536},
		}
	} else {
		m = map[string]any{"phase": rapid.SampledFrom(propPhases).Draw(t, "phase")}
		if h := rapid.SampledFrom([]string{"", "h1", "h2"}).Draw(t, "host"); h != "" {
			m["host"] = h
			m["epoch"] = rapid.IntRange(1, 50).Draw(t, "epoch")
		}
		m["since"] = drawTime(t)
	}
	b, _ := json.Marshal(m)
	return b
}

// op draws one non-batch command.
func (g propGen) op(t *rapid.T, next uint64) (fsm.MessageType, any) {
	fault := drawFault(t)
	kind := rapid.SampledFrom([]resource.Kind{vm, host}).Draw(t, "kind")
	name := rapid.SampledFrom(propNames[:3]).Draw(t, "name")
	if fault == faultName {
		name = rapid.SampledFrom(propNames[3:]).Draw(t, "bad name")
	}
	spec := drawSpec(t, kind, fault)
	if fault == faultKind {
		kind = rapid.SampledFrom([]resource.Kind{"nope", ""}).Draw(t, "bad kind")
	}
	switch rapid.IntRange(0, 9).Draw(t, "op") {
	case 0, 1, 2:
		id := fmt.Sprintf("id-%s-%d", name, rapid.IntRange(0, 2).Draw(t, "id"))
		if fault == faultID {
			id = ""
		}
		return fsm.CreateRequestType, &fsm.CreateRequest{
			Time: drawTime(t), Kind: kind, Name: name, ID: id,
			Labels: drawLabels(t, fault), Spec: spec,
		}
	case 3, 4, 5:
		return fsm.UpdateRequestType, &fsm.UpdateRequest{
			Time: drawTime(t), Kind: kind, Name: name, CAS: g.cas(t, kind, name, next),
			Labels: drawLabels(t, fault), Spec: spec,
		}
	case 6, 7:
		return fsm.StatusRequestType, &fsm.StatusRequest{
			Time: drawTime(t), Kind: kind, Name: name, CAS: g.cas(t, kind, name, next),
			Status: drawStatus(t, kind, fault),
		}
	}
	return fsm.DeleteRequestType, &fsm.DeleteRequest{Time: drawTime(t), Kind: kind, Name: name, CAS: g.cas(t, kind, name, next)}
}

func (g propGen) batch(t *rapid.T, next uint64) *fsm.BatchRequest {
	req := &fsm.BatchRequest{Time: drawTime(t), Ops: []fsm.BatchOp{}}
	n := rapid.IntRange(1, 6).Draw(t, "batch size")
	if n == 6 {
		n = 0 // an empty batch, rejected
	}
	for i := range n {
		var op fsm.BatchOp
		switch rapid.IntRange(0, 39).Draw(t, "batch op kind") {
		case 39:
			op = fsm.BatchOp{Type: fsm.BatchRequestType, Payload: raw(`{"ops":[]}`)}
		case 38:
			op = fsm.BatchOp{Type: 99, Payload: raw(`{}`)}
		case 37:
			op = fsm.BatchOp{Type: fsm.DeleteRequestType, Payload: raw(`"garbage"`)}
		default:
			mt, r := g.op(t, next)
			var err error
			if op, err = fsm.NewBatchOp(mt, r); err != nil {
				t.Fatalf("batch op %d: %v", i, err)
			}
		}
		req.Ops = append(req.Ops, op)
	}
	return req
}

// entry draws one log entry to be applied at index next.
func (g propGen) entry(t *rapid.T, next uint64) propEntry {
	switch rapid.IntRange(0, 29).Draw(t, "entry kind") {
	case 29:
		return propEntry{logType: rapid.SampledFrom([]raft.LogType{raft.LogNoop, raft.LogBarrier, raft.LogConfiguration}).Draw(t, "log type")}
	case 28:
		return propEntry{data: rapid.SliceOfN(rapid.Byte(), 0, 12).Draw(t, "garbage")}
	case 27:
		return propEntry{data: []byte("\x63{}")} // unknown type
	case 26:
		return propEntry{data: []byte("\xe3{}")} // unknown, ignorable
	case 20, 21, 22, 23, 24, 25:
		return propEntry{typ: fsm.BatchRequestType, req: g.batch(t, next)}
	}
	mt, req := g.op(t, next)
	return propEntry{typ: mt, req: req}
}

// drawLog draws a log of n entries (indexes 1..n).
func drawLog(t *rapid.T, minLen, maxLen int) []propEntry {
	g := propGen{cas: randomCAS}
	n := rapid.IntRange(minLen, maxLen).Draw(t, "log length")
	out := make([]propEntry, n)
	for i := range out {
		out[i] = g.entry(t, uint64(i)+1)
	}
	return out
}

// ---- comparing two FSMs ----

var propSelectors = []string{"", "app=web", "app!=web", "tier", "!tier", "app=db,zone"}

// sameState asserts that a and b hold the same replicated state and
// return the same answers to every read.
func sameState(t *rapid.T, what string, a, b *fsm.FSM) {
	sa, sb := a.State(), b.State()
	if da, db := sa.Digest(), sb.Digest(); da != db {
		t.Fatalf("%s: digests differ: %s vs %s", what, da, db)
	}
	if sa.LatestIndex() != sb.LatestIndex() {
		t.Fatalf("%s: LatestIndex %d vs %d", what, sa.LatestIndex(), sb.LatestIndex())
	}
	if a.AppliedIndex() != b.AppliedIndex() {
		t.Fatalf("%s: AppliedIndex %d vs %d", what, a.AppliedIndex(), b.AppliedIndex())
	}
	for _, k := range []resource.Kind{vm, host, "nope"} {
		if sa.Index(k) != sb.Index(k) || sa.Count(k) != sb.Count(k) {
			t.Fatalf("%s: Index/Count(%s) %d/%d vs %d/%d", what, k, sa.Index(k), sa.Count(k), sb.Index(k), sb.Count(k))
		}
		for _, s := range propSelectors {
			sel, err := resource.ParseSelector(s)
			if err != nil {
				t.Fatal(err)
			}
			la, errA := sa.List(nil, k, sel)
			lb, errB := sb.List(nil, k, sel)
			if errA != nil || errB != nil {
				t.Fatalf("%s: List errors %v, %v", what, errA, errB)
			}
			if !slices.EqualFunc(la, lb, (*resource.Object).Equal) {
				t.Fatalf("%s: List(%s, %q) differs:\n%v\n%v", what, k, s, objs(la), objs(lb))
			}
		}
		for _, n := range propNames {
			oa, _ := sa.Get(nil, k, n)
			ob, _ := sb.Get(nil, k, n)
			if !oa.Equal(ob) {
				t.Fatalf("%s: Get(%s/%s) differs: %+v vs %+v", what, k, n, oa, ob)
			}
		}
	}
}

func objs(l []*resource.Object) string {
	var sb strings.Builder
	for _, o := range l {
		b, _ := json.Marshal(o)
		sb.Write(b)
		sb.WriteByte('\n')
	}
	return sb.String()
}

func sameResult(t *rapid.T, what string, ra, rb *fsm.Result) {
	if ra.Index != rb.Index || fmt.Sprint(ra.Err) != fmt.Sprint(rb.Err) ||
		!slices.EqualFunc(ra.Objects, rb.Objects, (*resource.Object).Equal) {
		t.Fatalf("%s: results differ:\n%+v\n%+v", what, ra, rb)
	}
}

func eventStrings(evs []resource.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		b, _ := json.Marshal(ev)
		out[i] = string(b)
	}
	return out
}

func applyProp(t *rapid.T, f *fsm.FSM, e propEntry, index uint64) *fsm.Result {
	res := fsm.TestApplyLog(t, f, e.log(t, index))
	if res.Err != nil && strings.Contains(res.Err.Error(), "internal error applying") {
		t.Fatalf("entry %d (%s) panicked inside Apply: %v", index, e, res.Err)
	}
	return res
}

// TestPropertySameLogSameState: two FSMs fed the same log — one entry at a
// time through Apply, the other in random chunks through ApplyBatch — give
// the same results and end in the same state, with the same events.
func TestPropertySameLogSameState(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		entries := drawLog(t, 1, 60)
		a, b := fsm.New(fsm.Config{}), fsm.New(fsm.Config{})
		var resA []*fsm.Result
		for i, e := range entries {
			resA = append(resA, applyProp(t, a, e, uint64(i)+1))
		}
		for i := 0; i < len(entries); {
			n := rapid.IntRange(1, 8).Draw(t, "chunk")
			n = min(n, len(entries)-i)
			logs := make([]*raft.Log, n)
			for j := range logs {
				logs[j] = entries[i+j].log(t, uint64(i+j)+1)
			}
			for j, r := range b.ApplyBatch(logs) {
				sameResult(t, fmt.Sprintf("entry %d", i+j+1), resA[i+j], r.(*fsm.Result))
			}
			i += n
		}
		sameState(t, "after the log", a, b)
		ea, _, _, _ := a.Events().Since(0, 0)
		eb, _, _, _ := b.Events().Since(0, 0)
		if !slices.Equal(eventStrings(ea), eventStrings(eb)) {
			t.Fatalf("events differ:\n%v\n%v", eventStrings(ea), eventStrings(eb))
		}
	})
}

// TestPropertySnapshotRestore: Snapshot → Persist → Restore into a fresh FSM
// gives an identical state; the same further log keeps both identical. The
// snapshot is taken at a point in time: entries applied between Snapshot and
// Persist are not in it.
func TestPropertySnapshotRestore(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		entries := drawLog(t, 0, 60)
		cut := rapid.IntRange(0, len(entries)).Draw(t, "snapshot at")
		late := rapid.IntRange(cut, len(entries)).Draw(t, "persist at")
		a := fsm.New(fsm.Config{})
		for i, e := range entries[:cut] {
			applyProp(t, a, e, uint64(i)+1)
		}
		ref := fsm.TestSnapshotRestore(t, a) // what the snapshot must contain
		sameState(t, "restored", a, ref)
		snap, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		for i := cut; i < late; i++ {
			applyProp(t, a, entries[i], uint64(i)+1)
		}
		var sink fsm.TestSink
		if err := snap.Persist(&sink); err != nil {
			t.Fatal(err)
		}
		snap.Release()
		b := fsm.TestRestore(t, sink.Bytes())
		sameState(t, "restored from a snapshot taken before later writes", ref, b)
		if b.AppliedIndex() != uint64(cut) {
			t.Fatalf("restored AppliedIndex = %d, want %d", b.AppliedIndex(), cut)
		}
		// The restored node has no event history: readers must reset.
		if _, reset, floor, _ := b.Events().Since(0, 0); uint64(cut) > 0 && (!reset || floor != uint64(cut)) {
			t.Fatalf("after restore Since(0): reset=%v floor=%d, want a reset at %d", reset, floor, cut)
		}
		// Bring b up to a's position, then apply the rest to both.
		for i := cut; i < late; i++ {
			applyProp(t, b, entries[i], uint64(i)+1)
		}
		sameState(t, "caught up", a, b)
		for i := late; i < len(entries); i++ {
			ra := applyProp(t, a, entries[i], uint64(i)+1)
			rb := applyProp(t, b, entries[i], uint64(i)+1)
			sameResult(t, fmt.Sprintf("entry %d after restore", i+1), ra, rb)
			sameState(t, fmt.Sprintf("after entry %d", i+1), a, b)
		}
		// Events b recorded after the restore are the same as a's.
		ea, _, _, _ := a.Events().Since(uint64(cut), 0)
		eb, _, _, _ := b.Events().Since(uint64(cut), 0)
		if !slices.Equal(eventStrings(ea), eventStrings(eb)) {
			t.Fatalf("events after the restore differ:\n%v\n%v", eventStrings(ea), eventStrings(eb))
		}
		// A second round trip is a fixed point.
		p1 := fsm.TestPersist(t, b)
		if p2 := fsm.TestPersist(t, fsm.TestRestore(t, p1)); string(p1) != string(p2) {
			t.Fatalf("persist(restore(persist(s))) != persist(s)")
		}
	})
}

// ---- model check ----

type mKey struct {
	kind resource.Kind
	name string
}

type mObj struct {
	id             string
	labels         map[string]string
	spec, status   string
	create, modify uint64
}

// model is the specification: a map of objects and the per-kind indexes.
type model struct {
	objs   map[mKey]mObj
	kindIx map[resource.Kind]uint64
	latest uint64
}

func newModel() *model {
	return &model{objs: map[mKey]mObj{}, kindIx: map[resource.Kind]uint64{}}
}

func (m *model) clone() *model {
	return &model{objs: maps.Clone(m.objs), kindIx: maps.Clone(m.kindIx), latest: m.latest}
}

func (m *model) bump(kind resource.Kind, index uint64) {
	m.kindIx[kind] = index
	m.latest = index
}

func (m *model) idUsed(id string) bool {
	for _, o := range m.objs {
		if o.id == id {
			return true
		}
	}
	return false
}

// modelOp is one operation's expected outcome: either the errors any of
// which the FSM may report (the request may break several rules; the FSM
// reports one), or success with its events ("created vm/a").
type modelOp struct {
	errs   []error
	events []string
}

func known(kind resource.Kind) bool { _, ok := resource.Lookup(kind); return ok }

// apply applies one non-batch operation to m (only when it succeeds).
func (m *model) apply(t *rapid.T, index uint64, mt fsm.MessageType, req any) modelOp {
	var r modelOp
	fail := func(err error) { r.errs = append(r.errs, err) }
	switch mt {
	case fsm.CreateRequestType:
		q := req.(*fsm.CreateRequest)
		k := mKey{q.Kind, q.Name}
		if !known(q.Kind) || resource.ValidateName(q.Name) != nil || resource.ValidateLabels(q.Labels) != nil || q.ID == "" {
			fail(resource.ErrInvalid)
		}
		var spec json.RawMessage
		if known(q.Kind) {
			var err error
			if spec, err = resource.NormalizeSpec(q.Kind, q.Spec); err != nil {
				fail(resource.ErrInvalid)
			}
		}
		if _, ok := m.objs[k]; ok {
			fail(fsm.ErrExists)
		}
		if q.ID != "" && m.idUsed(q.ID) {
			fail(fsm.ErrExists)
		}
		if r.errs != nil {
			return r
		}
		status, err := resource.InitialStatus(q.Kind, q.Time)
		if err != nil {
			t.Fatalf("model: initial status: %v", err)
		}
		labels := maps.Clone(q.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		m.objs[k] = mObj{id: q.ID, labels: labels, spec: string(spec), status: string(status), create: index, modify: index}
		m.bump(q.Kind, index)
		r.events = append(r.events, fmt.Sprintf("created %s/%s", q.Kind, q.Name))
	case fsm.UpdateRequestType:
		q := req.(*fsm.UpdateRequest)
		if resource.ValidateLabels(q.Labels) != nil {
			fail(resource.ErrInvalid)
		}
		cur, ok := m.lookup(q.Kind, q.Name, q.CAS, fail)
		var spec json.RawMessage
		if known(q.Kind) {
			var err error
			if spec, err = resource.NormalizeSpec(q.Kind, q.Spec); err != nil {
				fail(resource.ErrInvalid)
			}
		}
		if r.errs != nil || !ok {
			return r
		}
		cur.labels = maps.Clone(q.Labels)
		if cur.labels == nil {
			cur.labels = map[string]string{}
		}
		cur.spec, cur.modify = string(spec), index
		m.objs[mKey{q.Kind, q.Name}] = cur
		m.bump(q.Kind, index)
		r.events = append(r.events, fmt.Sprintf("updated %s/%s", q.Kind, q.Name))
	case fsm.StatusRequestType:
		q := req.(*fsm.StatusRequest)
		cur, ok := m.lookup(q.Kind, q.Name, q.CAS, fail)
		var status json.RawMessage
		if known(q.Kind) {
			var err error
			if status, err = resource.NormalizeStatus(q.Kind, q.Status); err != nil {
				fail(resource.ErrInvalid)
			}
		}
		if r.errs != nil || !ok {
			return r
		}
		cur.status, cur.modify = string(status), index
		m.objs[mKey{q.Kind, q.Name}] = cur
		m.bump(q.Kind, index)
		r.events = append(r.events, fmt.Sprintf("updated %s/%s", q.Kind, q.Name))
	case fsm.DeleteRequestType:
		q := req.(*fsm.DeleteRequest)
		if _, ok := m.lookup(q.Kind, q.Name, q.CAS, fail); !ok || r.errs != nil {
			return r
		}
		delete(m.objs, mKey{q.Kind, q.Name})
		m.bump(q.Kind, index)
		r.events = append(r.events, fmt.Sprintf("deleted %s/%s", q.Kind, q.Name))
	default:
		fail(fsm.ErrUnknownCommand)
	}
	return r
}

func (m *model) lookup(kind resource.Kind, name string, cas uint64, fail func(error)) (mObj, bool) {
	if !known(kind) {
		fail(resource.ErrInvalid)
		return mObj{}, false
	}
	cur, ok := m.objs[mKey{kind, name}]
	if !ok {
		fail(fsm.ErrNotFound)
		return mObj{}, false
	}
	if cas != 0 && cas != cur.modify {
		fail(fsm.ErrCASMismatch)
	}
	return cur, true
}

// applyEntry applies a whole log entry to the model and returns the
// expected outcome; the model changes only if the entry succeeds.
func (m *model) applyEntry(t *rapid.T, index uint64, e propEntry) modelOp {
	switch {
	case e.logType != raft.LogCommand:
		return modelOp{}
	case e.req == nil:
		switch {
		case len(e.data) == 0:
			return modelOp{errs: []error{fsm.ErrBadPayload}}
		case e.data[0]&byte(fsm.IgnoreUnknownTypeFlag) != 0:
			return modelOp{} // unknown and ignorable: skipped
		case e.data[0] >= 1 && e.data[0] <= 5:
			// A known type with a random payload: decoding decides; the
			// model cannot say which, so accept a payload error or an
			// invalid-object error (e.g. "null"), but nothing else.
			return modelOp{errs: []error{fsm.ErrBadPayload, resource.ErrInvalid, fsm.ErrNotFound}, events: nil}
		}
		return modelOp{errs: []error{fsm.ErrUnknownCommand}}
	case e.typ != fsm.BatchRequestType:
		return m.apply(t, index, e.typ, e.req)
	}
	b := e.req.(*fsm.BatchRequest)
	if len(b.Ops) == 0 {
		return modelOp{errs: []error{fsm.ErrBadPayload}}
	}
	next := m.clone()
	var evs []string
	for _, op := range b.Ops {
		var r modelOp
		switch op.Type {
		case fsm.BatchRequestType:
			r.errs = []error{fsm.ErrBadPayload}
		case fsm.CreateRequestType, fsm.UpdateRequestType, fsm.StatusRequestType, fsm.DeleteRequestType:
			req, err := decodeOp(op)
			if err != nil {
				r.errs = []error{fsm.ErrBadPayload}
			} else {
				r = next.apply(t, index, op.Type, req)
			}
		default:
			r.errs = []error{fsm.ErrUnknownCommand}
		}
		if r.errs != nil {
			return r
		}
		evs = append(evs, r.events...)
	}
	*m = *next
	return modelOp{events: evs}
}

func decodeOp(op fsm.BatchOp) (any, error) {
	var req any
	switch op.Type {
	case fsm.CreateRequestType:
		req = new(fsm.CreateRequest)
	case fsm.UpdateRequestType:
		req = new(fsm.UpdateRequest)
	case fsm.StatusRequestType:
		req = new(fsm.StatusRequest)
	case fsm.DeleteRequestType:
		req = new(fsm.DeleteRequest)
	}
	return req, json.Unmarshal(op.Payload, req)
}

// check asserts that the FSM answers every read as the model does.
func (m *model) check(t *rapid.T, f *fsm.FSM) {
	s := f.State()
	if s.LatestIndex() != m.latest {
		t.Fatalf("LatestIndex = %d, model %d", s.LatestIndex(), m.latest)
	}
	for _, k := range []resource.Kind{vm, host} {
		if s.Index(k) != m.kindIx[k] {
			t.Fatalf("Index(%s) = %d, model %d", k, s.Index(k), m.kindIx[k])
		}
		var want []string
		for key := range m.objs {
			if key.kind == k {
				want = append(want, key.name)
			}
		}
		slices.Sort(want)
		got, err := s.List(nil, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(names(got), want) {
			t.Fatalf("List(%s) = %v, model %v", k, names(got), want)
		}
		if s.Count(k) != len(want) {
			t.Fatalf("Count(%s) = %d, model %d", k, s.Count(k), len(want))
		}
		for _, o := range got {
			mo := m.objs[mKey{k, o.Name}]
			exp := &resource.Object{Kind: k, Name: o.Name, ID: mo.id, Labels: mo.labels, CreateIndex: mo.create,
				ModifyIndex: mo.modify, Spec: raw(mo.spec), Status: raw(mo.status)}
			if !o.Equal(exp) {
				t.Fatalf("%s/%s:\n  fsm   %+v\n  model %+v", k, o.Name, o, exp)
			}
			if g, _ := s.Get(nil, k, o.Name); g != o {
				t.Fatalf("Get(%s/%s) and List disagree", k, o.Name)
			}
		}
		for _, n := range propNames {
			g, err := s.Get(nil, k, n)
			if _, ok := m.objs[mKey{k, n}]; err != nil || ok != (g != nil) {
				t.Fatalf("Get(%s/%s) = %v, %v; model has it: %v", k, n, g, err, ok)
			}
		}
		for _, sel := range modelSelectors {
			ps, err := resource.ParseSelector(sel.sel)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := s.List(nil, k, ps)
			var want []string
			for _, o := range all(t, s, k) {
				if sel.match(m.objs[mKey{k, o.Name}].labels) {
					want = append(want, o.Name)
				}
			}
			if !slices.Equal(names(got), want) {
				t.Fatalf("List(%s, %q) = %v, model %v", k, sel.sel, names(got), want)
			}
		}
	}
}

func all(t *rapid.T, s *fsm.Store, k resource.Kind) []*resource.Object {
	l, err := s.List(nil, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// modelSelectors pairs selectors with an independent implementation.
var modelSelectors = []struct {
	sel   string
	match func(map[string]string) bool
}{
	{"app=web", func(l map[string]string) bool { v, ok := l["app"]; return ok && v == "web" }},
	{"app!=web", func(l map[string]string) bool { v, ok := l["app"]; return !ok || v != "web" }},
	{"tier", func(l map[string]string) bool { _, ok := l["tier"]; return ok }},
	{"!tier", func(l map[string]string) bool { _, ok := l["tier"]; return !ok }},
	{"app=db,zone=", func(l map[string]string) bool { z, ok := l["zone"]; return l["app"] == "db" && ok && z == "" }},
}

// TestPropertyModel runs random commands against the FSM and a map model
// side by side, checking every result and the whole state after each step.
// Some steps replace the FSM by its own snapshot/restore round trip.
func TestPropertyModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		f := fsm.New(fsm.Config{})
		m := newModel()
		var index uint64
		g := propGen{cas: func(t *rapid.T, kind resource.Kind, name string, next uint64) uint64 {
			switch rapid.IntRange(0, 4).Draw(t, "cas mode") {
			case 0, 1:
				return 0
			case 2:
				if o, ok := m.objs[mKey{kind, name}]; ok {
					return o.modify // the current one: succeeds
				}
				return next // created earlier in the same batch
			case 3:
				return next
			}
			return rapid.Uint64Range(1, next).Draw(t, "cas")
		}}
		step := func(t *rapid.T, e propEntry) {
			index++
			before := f.State().Digest()
			want := m.applyEntry(t, index, e)
			res := applyProp(t, f, e, index)
			evs := eventsAt(t, f, index)
			switch {
			case want.errs == nil && res.Err != nil:
				t.Fatalf("entry %d %s: FSM error %v, model expects success", index, e, res.Err)
			case want.errs != nil && res.Err == nil:
				t.Fatalf("entry %d %s: FSM succeeded, model expects one of %v", index, e, want.errs)
			case want.errs != nil:
				if !slices.ContainsFunc(want.errs, func(w error) bool { return errors.Is(res.Err, w) }) {
					t.Fatalf("entry %d %s: FSM error %v, model expects one of %v", index, e, res.Err, want.errs)
				}
				if f.State().Digest() != before || len(evs) != 0 {
					t.Fatalf("entry %d: failed entry changed the state or added events", index)
				}
			}
			var got []string
			for _, ev := range evs {
				got = append(got, fmt.Sprintf("%s %s/%s", ev.Type, ev.Kind, ev.Name))
			}
			if !slices.Equal(got, want.events) {
				t.Fatalf("entry %d %s: events %v, model %v", index, e, got, want.events)
			}
			if len(res.Objects) != len(want.events) {
				t.Fatalf("entry %d: Result has %d objects, want one per write (%d)", index, len(res.Objects), len(want.events))
			}
		}
		t.Repeat(map[string]func(*rapid.T){
			"op": func(t *rapid.T) {
				mt, req := g.op(t, index+1)
				step(t, propEntry{typ: mt, req: req})
			},
			"batch": func(t *rapid.T) {
				step(t, propEntry{typ: fsm.BatchRequestType, req: g.batch(t, index+1)})
			},
			"any entry": func(t *rapid.T) {
				step(t, g.entry(t, index+1))
			},
			"snapshot and restore": func(t *rapid.T) {
				f = fsm.TestSnapshotRestore(t, f)
			},
			"": func(t *rapid.T) {
				m.check(t, f)
			},
		})
	})
}
