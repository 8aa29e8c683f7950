package fsm

import (
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// kindCounts is how many objects of each kind the committed state holds,
// for the cap on objects per kind (resource.MaxObjectsPerKind). It is
// derived state, kept only by the goroutine that applies the log (Apply,
// ApplyBatch, Restore): counted once when first needed after a start or
// a restore, then moved by each committed group's events.
type kindCounts map[resource.Kind]int

// maxObjectsPerKind is resource.MaxObjectsPerKind (a variable for tests).
var maxObjectsPerKind = resource.MaxObjectsPerKind

func countObjects(db *memdb.MemDB) kindCounts {
	c := kindCounts{}
	it, err := db.Txn(false).Get(tableObjects, indexID)
	if err != nil {
		return c
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		c[raw.(*resource.Object).Kind]++
	}
	return c
}

// add moves c by the objects evs create and delete.
func (c kindCounts) add(evs []resource.Event) {
	for _, ev := range evs {
		switch ev.Type {
		case resource.EventCreated:
			c[ev.Kind]++
		case resource.EventDeleted:
			c[ev.Kind]--
		}
	}
}

// objectCount is the number of objects of kind the entry being applied
// sees: the committed count, plus what the group's earlier entries and
// this entry created or deleted. It costs O(1) per call plus the entry's
// events since the last call: counting by scanning every event of the
// group made a batch of N creates O(N²), and a group of many batches
// (a new server replaying the log) took minutes (issue 15, found by
// BenchmarkScaleCluster).
func (g *group) objectCount(w *writer, kind resource.Kind) int {
	f := g.f
	if f.counts == nil {
		db, _ := f.store.current()
		f.counts = countObjects(db)
	}
	if w.evCounted < len(w.events) {
		if w.evDelta == nil {
			w.evDelta = kindCounts{}
		}
		w.evDelta.add(w.events[w.evCounted:])
		w.evCounted = len(w.events)
	}
	return f.counts[kind] + g.delta[kind] + w.evDelta[kind]
}

// checkObjectCap refuses a create of kind when the kind is at the cap.
// Entries replayed after a rollback skip it (w.count is nil): they
// succeeded before, and must again.
func (w *writer) checkObjectCap(kind resource.Kind) error {
	if w.count == nil {
		return nil
	}
	if n := w.count(w, kind); n >= maxObjectsPerKind {
		return fmt.Errorf("%w: there are %d %s objects, the most a cluster holds; delete some first", resource.ErrLimitExceeded, n, kind)
	}
	return nil
}
