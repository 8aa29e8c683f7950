package resource

import (
	"testing"

	"github.com/google/uuid"
)

// TestNewObjectIDOrdered: ids are UUIDs of version 7, unique, and in
// increasing order as strings (what keeps the uid index's inserts local).
func TestNewObjectIDOrdered(t *testing.T) {
	prev := ""
	for i := range 10000 {
		id := NewObjectID()
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		if u.Version() != 7 {
			t.Fatalf("id %q is a UUID of version %d, want 7 (time-ordered)", id, u.Version())
		}
		if id <= prev {
			t.Fatalf("id %d, %q, is not after the one before it, %q", i, id, prev)
		}
		prev = id
	}
}
