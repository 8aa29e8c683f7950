package fsm_test

import (
	"errors"
	"testing"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// TestClusterInit: the first identity applied wins and never changes; the
// same one again is a no-op; a malformed one is refused; none of it
// writes an object or an event.
func TestClusterInit(t *testing.T) {
	const id1, id2 = "11111111-2222-4333-8444-555555555555", "66666666-7777-4888-9999-000000000000"
	f := fsm.TestFSM(t)
	if got := f.State().ClusterID(nil); got != "" {
		t.Fatalf("new FSM has cluster id %q", got)
	}
	for i, bad := range []string{"", "not-a-uuid", "11111111222243338444555555555555", "{11111111-2222-4333-8444-555555555555}"} {
		res := fsm.TestApply(t, f, uint64(i+1), fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{Time: fsm.TestTime, ID: bad})
		if !errors.Is(res.Err, resource.ErrInvalid) || f.State().ClusterID(nil) != "" {
			t.Fatalf("id %q: %v, cluster id %q; want invalid and none", bad, res.Err, f.State().ClusterID(nil))
		}
	}
	digest := f.State().Digest()
	res := fsm.TestMustApply(t, f, 10, fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{Time: fsm.TestTime, ID: id1})
	if f.State().ClusterID(nil) != id1 || len(res.Objects) != 0 || f.State().Digest() == digest {
		t.Fatalf("after init: id %q, objects %v; want %s, none, and a new digest", f.State().ClusterID(nil), res.Objects, id1)
	}
	digest = f.State().Digest()
	fsm.TestMustApply(t, f, 11, fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{Time: fsm.TestTime, ID: id1})
	res = fsm.TestApply(t, f, 12, fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{Time: fsm.TestTime, ID: id2})
	if !errors.Is(res.Err, fsm.ErrExists) || f.State().ClusterID(nil) != id1 || f.State().Digest() != digest {
		t.Fatalf("second identity: %v, id %q; want ErrExists and %s unchanged", res.Err, f.State().ClusterID(nil), id1)
	}
	if g := fsm.TestSnapshotRestore(t, f); g.State().ClusterID(nil) != id1 || g.State().Digest() != digest {
		t.Fatalf("snapshot/restore: id %q", g.State().ClusterID(nil))
	}
}
