package fsm

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/resource"
)

func createLog(tb testing.TB, index uint64, kind resource.Kind, name string) *raft.Log {
	return TestLog(tb, index, CreateRequestType, &CreateRequest{
		Time: TestTime, Kind: kind, Name: name, ID: TestID(index), Spec: TestSpec(tb, kind),
	})
}

// TestObjectsPerKindCap: creates beyond maxObjectsPerKind are refused
// with resource.ErrLimitExceeded, counting the committed state, the
// entries before in the same batch, deletes, and a restored snapshot.
func TestObjectsPerKindCap(t *testing.T) {
	defer func(n int) { maxObjectsPerKind = n }(maxObjectsPerKind)
	maxObjectsPerKind = 3
	f := TestFSM(t)
	TestCreate(t, f, 1, resource.KindVM, "a", nil)
	// One batch: b and c fit, d does not; a host is another kind.
	out := f.ApplyBatch([]*raft.Log{
		createLog(t, 2, resource.KindVM, "b"),
		createLog(t, 3, resource.KindVM, "c"),
		createLog(t, 4, resource.KindVM, "d"),
		createLog(t, 5, resource.KindHost, "h"),
	})
	for i, want := range []bool{true, true, false, true} {
		err := out[i].(*Result).Err
		if (err == nil) != want {
			t.Fatalf("batch entry %d: err %v, want ok=%v", i, err, want)
		}
		if err != nil && !errors.Is(err, resource.ErrLimitExceeded) {
			t.Fatalf("batch entry %d: %v, want ErrLimitExceeded", i, err)
		}
	}
	if r := TestApply(t, f, 6, CreateRequestType, &CreateRequest{Time: TestTime, Kind: resource.KindVM, Name: "e", ID: TestID(6), Spec: TestSpec(t, resource.KindVM)}); !errors.Is(r.Err, resource.ErrLimitExceeded) {
		t.Fatalf("create over the cap: %v", r.Err)
	}
	TestMustApply(t, f, 7, DeleteRequestType, &DeleteRequest{Time: TestTime, Kind: resource.KindVM, Name: "a"})
	TestCreate(t, f, 8, resource.KindVM, "e", nil)
	// A restored state is counted again.
	g := TestSnapshotRestore(t, f)
	if r := TestApply(t, g, 9, CreateRequestType, &CreateRequest{Time: TestTime, Kind: resource.KindVM, Name: "x", ID: TestID(9), Spec: TestSpec(t, resource.KindVM)}); !errors.Is(r.Err, resource.ErrLimitExceeded) {
		t.Fatalf("create over the cap after a restore: %v", r.Err)
	}
	if n := g.State().Count(resource.KindVM); n != 3 {
		t.Fatalf("%d VMs", n)
	}
}
