package fsm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// TestCreateBin: a create in the binary encoding decodes to the same
// create, applies as its JSON form does (same objects, events, accessor),
// is proposed only to a cluster of protocol 10, and halts a build of
// protocol 9 (which the leader's gating keeps it from meeting).
func TestCreateBin(t *testing.T) {
	const acc = "3f2b1a0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
	req := &fsm.CreateRequest{
		Time: time.Date(2026, 12, 3, 16, 1, 2, 345678901, time.UTC), Kind: resource.KindVM, Name: "web-1", ID: fsm.TestID(1),
		Labels: map[string]string{"b": "2", "a": "1", "c": ""}, Spec: raw(vmSpec2),
	}
	data := fsm.EncodeCreateBin(acc, req)
	if fsm.MessageType(data[0]) != fsm.CreateBinRequestType {
		t.Fatalf("type byte %d", data[0])
	}
	gotAcc, got, err := fsm.DecodeCreateBin(data[1:])
	if err != nil || gotAcc != acc || !reflect.DeepEqual(got, req) {
		t.Fatalf("decoded %q %+v (%v), want %q %+v", gotAcc, got, err, acc, req)
	}
	if again := fsm.EncodeCreateBin(acc, req); !bytes.Equal(again, data) {
		t.Fatal("the same create encodes to other bytes (label order)")
	}
	// A nil spec is JSON's null, as in a CreateRequest's JSON.
	if _, c, err := fsm.DecodeCreateBin(fsm.EncodeCreateBin("", &fsm.CreateRequest{Kind: "vm"})[1:]); err != nil || string(c.Spec) != "null" || !c.Time.IsZero() {
		t.Fatalf("empty create: %+v %v", c, err)
	}

	// EncodeFor: JSON below protocol 10, binary from it.
	_, env, err := fsm.WithAccessor(acc, fsm.CreateRequestType, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		t     fsm.MessageType
		req   any
		proto int
		want  fsm.MessageType
	}{
		{fsm.CreateRequestType, req, 9, fsm.CreateRequestType},
		{fsm.AccessorRequestType, env, 9, fsm.AccessorRequestType},
		{fsm.CreateRequestType, req, 10, fsm.CreateBinRequestType},
		{fsm.AccessorRequestType, env, 10, fsm.CreateBinRequestType},
		{fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: "vm", Name: "x"}, 10, fsm.UpdateRequestType},
	} {
		b, err := fsm.EncodeFor(c.t, c.req, c.proto)
		if err != nil || fsm.MessageType(b[0]) != c.want {
			t.Errorf("EncodeFor(%s, protocol %d) = type %d (%v), want %s", c.t, c.proto, b[0], err, c.want)
		}
	}

	// Applied, the binary create and its JSON form (in the accessor's
	// envelope) leave the same state and answer alike.
	jsonEntry, err := fsm.EncodeFor(fsm.AccessorRequestType, env, 9)
	if err != nil {
		t.Fatal(err)
	}
	viaJSON, viaBin := fsm.TestFSM(t), fsm.TestFSM(t)
	rj := fsm.TestApplyLog(t, viaJSON, logAt(1, jsonEntry))
	rb := fsm.TestApplyLog(t, viaBin, logAt(1, data))
	if rj.Err != nil || rb.Err != nil {
		t.Fatalf("apply: %v / %v", rj.Err, rb.Err)
	}
	if viaJSON.State().Digest() != viaBin.State().Digest() || !rj.Objects[0].Equal(rb.Objects[0]) || rb.Objects[0].ModifiedBy != acc {
		t.Fatalf("states differ: %+v / %+v", rj.Objects[0], rb.Objects[0])
	}
	// The same name again: refused alike.
	rj = fsm.TestApplyLog(t, viaJSON, logAt(2, jsonEntry))
	rb = fsm.TestApplyLog(t, viaBin, logAt(2, data))
	if !errors.Is(rb.Err, fsm.ErrExists) || errString(rj.Err) != errString(rb.Err) {
		t.Fatalf("second create: %v / %v", rj.Err, rb.Err)
	}

	// Strings that are not valid UTF-8 (a label value, the accessor)
	// decode as encoding/json decodes them from the JSON form (each such
	// byte U+FFFD), so that the state is the JSON form's and survives a
	// snapshot's JSON (FuzzApply found a label value that did not).
	bad := &fsm.CreateRequest{Time: req.Time, Kind: resource.KindVM, Name: "web-2", ID: fsm.TestID(2),
		Labels: map[string]string{"k": "a\xffb\xe2\x82"}, Spec: raw(vmSpec2)}
	_, dec, err := fsm.DecodeCreateBin(fsm.EncodeCreateBin("acc\xc3", bad)[1:])
	if err != nil || dec.Labels["k"] != "a\ufffdb\ufffd\ufffd" {
		t.Fatalf("invalid UTF-8 label: %q (%v), want each bad byte U+FFFD", dec.Labels["k"], err)
	}
	badJSON, err := json.Marshal(bad.Labels)
	if err != nil {
		t.Fatal(err)
	}
	var viaJSONLabels map[string]string
	if err := json.Unmarshal(badJSON, &viaJSONLabels); err != nil || viaJSONLabels["k"] != dec.Labels["k"] {
		t.Fatalf("encoding/json gives %q, the binary decoder %q", viaJSONLabels["k"], dec.Labels["k"])
	}
	// Keys that differ only in such bytes become one key, the later
	// value staying, as the JSON form decodes (no error).
	two := &fsm.CreateRequest{Kind: resource.KindVM, Name: "web-3", ID: fsm.TestID(3),
		Labels: map[string]string{"a\xfe": "1", "a\xff": "2", "a\ufffd": "0"}, Spec: raw(vmSpec2)}
	_, dec2, err := fsm.DecodeCreateBin(fsm.EncodeCreateBin("", two)[1:])
	twoJSON, _ := json.Marshal(two.Labels)
	var twoViaJSON map[string]string
	if jerr := json.Unmarshal(twoJSON, &twoViaJSON); err != nil || jerr != nil || !reflect.DeepEqual(dec2.Labels, twoViaJSON) {
		t.Fatalf("colliding keys: %q (%v), encoding/json %q (%v)", dec2.Labels, err, twoViaJSON, jerr)
	}
	fb := fsm.TestFSM(t)
	if r := fsm.TestApplyLog(t, fb, logAt(1, fsm.EncodeCreateBin("acc\xc3", bad))); r.Err != nil || r.Objects[0].ModifiedBy != "acc\ufffd" {
		t.Fatalf("apply: %v, %+v", r.Err, r.Objects)
	}
	if rs := fsm.TestSnapshotRestore(t, fb); rs.State().Digest() != fb.State().Digest() {
		t.Fatal("a snapshot round trip changed the state")
	}

	// Malformed payloads are entries not understood: the FSM halts on
	// them, as on a JSON payload that does not decode.
	for _, p := range [][]byte{
		{}, data[1 : len(data)-1], append(bytes.Clone(data[1:]), 0),
		{0, 0, 0xff}, // nanoseconds past a second
		{0, 0, 0, 0, 0, 0, 5, 1, 'a', 0, 1, 'a', 0, 0},                  // label "a" twice
		{0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0},             // labels beyond the payload
		{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1}, // varint overflow
	} {
		if _, _, err := fsm.DecodeCreateBin(p); !errors.Is(err, fsm.ErrBadPayload) {
			t.Errorf("DecodeCreateBin(%x) = %v, want ErrBadPayload", p, err)
		}
		f := fsm.TestFSM(t)
		if r := fsm.TestApplyLog(t, f, logAt(1, append([]byte{byte(fsm.CreateBinRequestType)}, p...))); !errors.Is(r.Err, fsm.ErrHalted) {
			t.Errorf("payload %x: %v, want a halt", p, r.Err)
		}
	}

	// A build of protocol 9 does not know the type: it halts, which is
	// why the leader proposes it only to a cluster of protocol 10.
	old := fsm.New(fsm.Config{MaxProtocol: 9})
	if r := fsm.TestApplyLog(t, old, logAt(1, data)); !errors.Is(r.Err, fsm.ErrHalted) || !errors.Is(r.Err, fsm.ErrUnknownCommand) {
		t.Fatalf("protocol 9 build: %v, want a halt on an unknown command", r.Err)
	}
	if _, err := fsm.NewBatchOp(fsm.CreateBinRequestType, &fsm.CreateBinRequest{Create: req}); err == nil {
		t.Fatal("a binary create went into a batch (whose payloads are JSON)")
	}
}

func logAt(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}
