package fsm_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// TestSaveSnapshotDescribes checks that SaveSnapshot writes the stream a
// Raft snapshot holds and describes it: index, identity, counts.
func TestSaveSnapshotDescribes(t *testing.T) {
	f := fsm.TestFSM(t)
	const id = "0b7c6f0e-6a0e-4c5e-9d43-0f5d6a1d2b3c"
	fsm.TestMustApply(t, f, 1, fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{Time: fsm.TestTime, ID: id})
	fsm.TestCreate(t, f, 2, resource.KindVM, "a", nil)
	fsm.TestCreate(t, f, 3, resource.KindVM, "b", nil)
	fsm.TestCreate(t, f, 4, resource.KindHost, "h", nil)
	var buf bytes.Buffer
	info, err := f.SaveSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if info.AppliedIndex != 4 || info.ClusterID != id || info.Objects[resource.KindVM] != 2 || info.Objects[resource.KindHost] != 1 || info.CountObjects() != 3 {
		t.Errorf("info %+v", info)
	}
	if !bytes.Equal(buf.Bytes(), fsm.TestPersist(t, f)) {
		t.Error("SaveSnapshot's stream differs from a Raft snapshot's")
	}
	v, err := fsm.ValidateSnapshot(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if v.AppliedIndex != info.AppliedIndex || v.ClusterID != id || v.CountObjects() != 3 || v.Version != info.Version {
		t.Errorf("validate %+v, save %+v", v, info)
	}
}

// TestPrepareRestore checks what a restore hands Raft: the state
// unchanged but for every index raised to the floor, and the identity
// replaced when the caller says so; an invalid stream or a refusal stops
// it.
func TestPrepareRestore(t *testing.T) {
	f := fsm.TestFSM(t)
	const theirs = "0b7c6f0e-6a0e-4c5e-9d43-0f5d6a1d2b3c"
	fsm.TestMustApply(t, f, 1, fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{Time: fsm.TestTime, ID: theirs})
	a := fsm.TestCreate(t, f, 2, resource.KindVM, "a", map[string]string{"k": "v"})
	state := fsm.TestPersist(t, f)

	var asked string
	data, info, err := fsm.PrepareRestore(bytes.NewReader(state), 100, func(id string) (string, error) {
		asked = id
		return "1d0c4f37-4b1e-4d6c-8a3f-2b1f5e6d7c8a", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if asked != theirs || info.ClusterID != theirs || info.AppliedIndex != 2 || info.Objects[resource.KindVM] != 1 {
		t.Errorf("asked about %q; info %+v", asked, info)
	}
	g := fsm.TestRestore(t, data)
	st := g.State()
	if g.AppliedIndex() != 100 || st.Index(resource.KindVM) != 100 {
		t.Errorf("applied %d, vm index %d: want both raised to 100", g.AppliedIndex(), st.Index(resource.KindVM))
	}
	got, err := st.Get(nil, resource.KindVM, "a")
	if err != nil || got == nil || got.ModifyIndex != a.ModifyIndex || got.Labels["k"] != "v" || !bytes.Equal(got.Spec, a.Spec) {
		t.Errorf("vm a after restore: %+v (%v), want %+v", got, err, a)
	}
	if st.ClusterID(nil) != theirs || st.ReplacedCluster(nil) != "1d0c4f37-4b1e-4d6c-8a3f-2b1f5e6d7c8a" {
		t.Errorf("identity %q, replaced %q", st.ClusterID(nil), st.ReplacedCluster(nil))
	}

	// A floor below the snapshot's indexes changes none of them.
	data, _, err = fsm.PrepareRestore(bytes.NewReader(state), 1, func(string) (string, error) { return "", nil })
	if err != nil {
		t.Fatal(err)
	}
	if g := fsm.TestRestore(t, data); g.AppliedIndex() != 2 || g.State().Index(resource.KindVM) != 2 || g.State().ReplacedCluster(nil) != "" {
		t.Errorf("applied %d, vm index %d, replaced %q", g.AppliedIndex(), g.State().Index(resource.KindVM), g.State().ReplacedCluster(nil))
	}

	// Refused by the caller, or not a snapshot: nothing comes out.
	no := errors.New("no")
	if _, _, err := fsm.PrepareRestore(bytes.NewReader(state), 100, func(string) (string, error) { return "", no }); !errors.Is(err, no) {
		t.Errorf("refusal: %v", err)
	}
	for _, bad := range []string{"", "{}", `{"version":99,"applied_index":1}`, string(state[:len(state)-7]) + "garbage", strings.Repeat("x", 100)} {
		_, _, err := fsm.PrepareRestore(strings.NewReader(bad), 100, func(string) (string, error) { return "", nil })
		if !errors.Is(err, fsm.ErrBadPayload) {
			t.Errorf("PrepareRestore(%.40q): %v, want ErrBadPayload", bad, err)
		}
		if _, err := fsm.ValidateSnapshot(strings.NewReader(bad)); err == nil {
			t.Errorf("ValidateSnapshot(%.40q) accepted it", bad)
		}
	}
}
