package memdb

import (
	"errors"
	"fmt"
	"strings"
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

// Kumoi: InsertNew inserts an object known to be new without looking its
// ID up first. It must leave every index as Insert does, and refuse (for
// the caller to abort) an object whose ID, or value of a unique index, is
// taken.

func kumoiUniqueDB(t *testing.T) *MemDB {
	t.Helper()
	db, err := NewMemDB(&DBSchema{Tables: map[string]*TableSchema{
		"t": {Name: "t", Indexes: map[string]*IndexSchema{
			"id":  {Name: "id", Unique: true, Indexer: &StringFieldIndex{Field: "ID"}},
			"uid": {Name: "uid", Unique: true, Indexer: &StringFieldIndex{Field: "Foo"}},
			"qux": {Name: "qux", AllowMissing: true, Indexer: &StringSliceFieldIndex{Field: "Qux"}},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func kumoiIndexDump(t *testing.T, db *MemDB) string {
	t.Helper()
	txn := db.Txn(false)
	out := ""
	for _, ix := range []string{"id", "uid", "qux"} {
		it, err := txn.Get("t", ix+"_prefix", "")
		if err != nil {
			t.Fatal(err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			o := raw.(*TestObject)
			out += fmt.Sprintf("%s:%s/%s/%v ", ix, o.ID, o.Foo, o.Qux)
		}
	}
	return out
}

func TestKumoiInsertNew(t *testing.T) {
	byInsert, byNew := kumoiUniqueDB(t), kumoiUniqueDB(t)
	a, b := byInsert.Txn(true), byNew.Txn(true)
	b.TrackChanges()
	for i := range 200 {
		o := &TestObject{ID: fmt.Sprintf("id-%03d", i), Foo: fmt.Sprintf("u-%03d", 199-i)}
		if i%3 != 0 {
			o.Qux = []string{"q", fmt.Sprintf("q%d", i%5)}
		}
		if err := a.Insert("t", o); err != nil {
			t.Fatal(err)
		}
		if err := b.InsertNew("t", o); err != nil {
			t.Fatalf("InsertNew %s: %v", o.ID, err)
		}
	}
	if ch := b.Changes(); len(ch) != 200 || ch[0].Before != nil || ch[0].After == nil || !ch[0].Created() {
		t.Fatalf("changes: %d, first %+v; want 200 creates", len(ch), ch[0])
	}
	a.Commit()
	b.Commit()
	want := kumoiIndexDump(t, byInsert)
	if got := kumoiIndexDump(t, byNew); got != want {
		t.Fatalf("indexes after InsertNew:\n%s\nafter Insert:\n%s", got, want)
	}

	for _, c := range []struct {
		obj   *TestObject
		index string
	}{
		{&TestObject{ID: "id-007", Foo: "fresh"}, "id"},                      // the ID taken
		{&TestObject{ID: "id-new", Foo: "u-010", Qux: []string{"q"}}, "uid"}, // a unique value taken
		{&TestObject{ID: "id-008", Foo: "u-011", Qux: []string{"z"}}, "id"},  // both: named in order
	} {
		txn := byNew.Txn(true)
		err := txn.InsertNew("t", c.obj)
		if !errors.Is(err, ErrNotNew) || !strings.Contains(err.Error(), "index '"+c.index+"'") {
			t.Errorf("InsertNew %+v: %v, want ErrNotNew naming index %s", c.obj, err, c.index)
		}
		txn.Abort()
		if got := kumoiIndexDump(t, byNew); got != want {
			t.Fatalf("after a refused InsertNew and its abort the indexes changed:\n%s", got)
		}
	}
}

// Kumoi: GetUnique finds what First finds by a unique index's whole key,
// in read and write transactions (before and after the index is written
// in it), and nothing on an index that is not unique or not there.
func TestKumoiGetUnique(t *testing.T) {
	db := kumoiUniqueDB(t)
	txn := db.Txn(true)
	for i := range 50 {
		if err := txn.Insert("t", &TestObject{ID: fmt.Sprintf("id-%02d", i), Foo: fmt.Sprintf("u-%02d", i), Qux: []string{"q"}}); err != nil {
			t.Fatal(err)
		}
	}
	txn.Commit()
	check := func(txn *Txn, what string) {
		t.Helper()
		for i := range 52 {
			for _, c := range []struct{ index, val string }{{"id", fmt.Sprintf("id-%02d", i)}, {"uid", fmt.Sprintf("u-%02d", i)}} {
				want, err := txn.First("t", c.index, c.val)
				if err != nil {
					t.Fatal(err)
				}
				if got := txn.GetUnique("t", c.index, append([]byte(c.val), 0)); got != want {
					t.Fatalf("%s: GetUnique(%s, %s) = %v, First %v", what, c.index, c.val, got, want)
				}
			}
		}
		if txn.GetUnique("t", "qux", []byte("q\x00")) != nil || txn.GetUnique("t", "nope", []byte("x")) != nil || txn.GetUnique("nope", "id", []byte("id-01\x00")) != nil {
			t.Fatalf("%s: GetUnique found something where it must not", what)
		}
	}
	check(db.Txn(false), "read")
	w := db.Txn(true)
	check(w, "write, unmodified")
	if err := w.Insert("t", &TestObject{ID: "id-50", Foo: "u-50"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Delete("t", &TestObject{ID: "id-03", Foo: "u-03", Qux: []string{"q"}}); err != nil {
		t.Fatal(err)
	}
	check(w, "write, modified")
	w.Abort()
}

// Kumoi: FirstPrefix finds what First of a prefix query finds, in read
// and write transactions, before and after the index is written.
func TestKumoiFirstPrefix(t *testing.T) {
	db := kumoiUniqueDB(t)
	txn := db.Txn(true)
	for _, id := range []string{"b-1", "b-2", "c-1"} {
		if err := txn.Insert("t", &TestObject{ID: id, Foo: "u" + id}); err != nil {
			t.Fatal(err)
		}
	}
	txn.Commit()
	check := func(txn *Txn, what string) {
		t.Helper()
		for _, p := range []string{"", "a", "b", "b-2", "c", "d"} {
			want, err := txn.First("t", "id_prefix", p)
			if err != nil {
				t.Fatal(err)
			}
			if got := txn.FirstPrefix("t", "id", []byte(p)); got != want {
				t.Fatalf("%s: FirstPrefix(%q) = %v, First %v", what, p, got, want)
			}
		}
		if txn.FirstPrefix("t", "nope", nil) != nil || txn.FirstPrefix("nope", "id", nil) != nil {
			t.Fatalf("%s: found something in what is not there", what)
		}
	}
	check(db.Txn(false), "read")
	w := db.Txn(true)
	check(w, "write, unmodified")
	if err := w.Insert("t", &TestObject{ID: "a-1", Foo: "ua-1"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Delete("t", &TestObject{ID: "c-1", Foo: "uc-1"}); err != nil {
		t.Fatal(err)
	}
	check(w, "write, modified")
	w.Abort()
}

// Kumoi: an indexer that gives one value twice for an object is not a
// taken key for InsertNew (Insert tolerates it too).
func TestKumoiInsertNewRepeatedValue(t *testing.T) {
	db := kumoiUniqueDB(t)
	txn := db.Txn(true)
	if err := txn.InsertNew("t", &TestObject{ID: "x", Foo: "ux", Qux: []string{"q", "q", "r"}}); err != nil {
		t.Fatalf("a repeated multi-index value: %v", err)
	}
	txn.Commit()
	if raw, err := db.Txn(false).First("t", "qux", "q"); err != nil || raw == nil {
		t.Fatalf("qux q: %v, %v", raw, err)
	}
}
