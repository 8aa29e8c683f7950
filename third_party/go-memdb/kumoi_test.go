package memdb

import (
	"fmt"
	"testing"
)

// Kumoi: point lookups in a write transaction read its own tree
// (peekIndex) instead of a clone. These tests check that this changes
// nothing a caller can see: what a lookup returned, an iterator taken
// before later writes, the committed state, and what other transactions
// see.

func TestKumoiPeekThenWrite(t *testing.T) {
	db := testDB(t)
	txn := db.Txn(true)
	for i := range 100 {
		if err := txn.Insert("main", &TestObject{ID: fmt.Sprintf("id-%03d", i), Foo: "a", Qux: []string{"q"}}); err != nil {
			t.Fatal(err)
		}
	}
	txn.Commit()

	// A reader of the committed state, open through the writes below.
	before := db.Txn(false)

	txn = db.Txn(true)
	// Lookups and writes interleaved, on the same indexes.
	for i := range 100 {
		id := fmt.Sprintf("id-%03d", i)
		raw, err := txn.First("main", "id", id)
		if err != nil || raw == nil {
			t.Fatalf("First(%s) = %v, %v", id, raw, err)
		}
		old := raw.(*TestObject)
		if old.Foo != "a" {
			t.Fatalf("%s: Foo %q before its update", id, old.Foo)
		}
		if err := txn.Insert("main", &TestObject{ID: id, Foo: "b", Qux: []string{"q"}}); err != nil {
			t.Fatal(err)
		}
		// What the lookup returned is unchanged by the write.
		if old.Foo != "a" {
			t.Fatalf("%s: the object a lookup returned changed to %q", id, old.Foo)
		}
		raw, _ = txn.First("main", "id", id)
		if raw.(*TestObject).Foo != "b" {
			t.Fatalf("%s: the transaction does not see its own write", id)
		}
		if _, err := txn.First("main", "foo", "b"); err != nil {
			t.Fatal(err)
		}
	}
	// An iterator taken now is not changed by writes after it.
	it, err := txn.Get("main", "foo", "b")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := txn.Insert("main", &TestObject{ID: fmt.Sprintf("id-%03d", i), Foo: "c", Qux: []string{"q"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := txn.First("main", "foo", "c"); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if raw.(*TestObject).Foo != "b" {
			t.Fatalf("the iterator saw a later write: %+v", raw)
		}
		n++
	}
	if n != 100 {
		t.Fatalf("the iterator saw %d objects, want 100", n)
	}
	// Other transactions do not see the uncommitted writes.
	if raw, _ := before.First("main", "foo", "c"); raw != nil {
		t.Fatalf("a reader saw an uncommitted write: %+v", raw)
	}
	txn.Commit()

	// The committed state, through every index.
	read := db.Txn(false)
	for i := range 100 {
		raw, _ := read.First("main", "id", fmt.Sprintf("id-%03d", i))
		if raw == nil || raw.(*TestObject).Foo != "c" {
			t.Fatalf("id-%03d after commit: %+v", i, raw)
		}
	}
	for foo, want := range map[string]int{"a": 0, "b": 0, "c": 100} {
		it, err := read.Get("main", "foo", foo)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for raw := it.Next(); raw != nil; raw = it.Next() {
			n++
		}
		if n != want {
			t.Fatalf("foo=%s: %d objects, want %d", foo, n, want)
		}
	}
	// The reader opened before still sees the old state.
	if raw, _ := before.First("main", "id", "id-050"); raw == nil || raw.(*TestObject).Foo != "a" {
		t.Fatalf("the old reader sees %+v", raw)
	}
}

// A watch taken on committed state fires when a later transaction that
// looked the object up before writing it commits.
func TestKumoiWatchFiresAfterPeekedWrite(t *testing.T) {
	db := testDB(t)
	txn := db.Txn(true)
	if err := txn.Insert("main", &TestObject{ID: "x", Foo: "a", Qux: []string{"q"}}); err != nil {
		t.Fatal(err)
	}
	txn.Commit()

	ch, raw, err := db.Txn(false).FirstWatch("main", "id", "x")
	if err != nil || raw == nil {
		t.Fatalf("FirstWatch: %v, %v", raw, err)
	}
	txn = db.Txn(true)
	if _, err := txn.First("main", "id", "x"); err != nil {
		t.Fatal(err)
	}
	if err := txn.Insert("main", &TestObject{ID: "x", Foo: "b", Qux: []string{"q"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("the watch fired before the commit")
	default:
	}
	txn.Commit()
	select {
	case <-ch:
	default:
		t.Fatal("the watch did not fire at the commit")
	}
}
