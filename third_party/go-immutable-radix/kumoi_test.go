package iradix

// Kumoi: tests of the watch channels made on demand (watch.go).

import (
	"fmt"
	"sync"
	"testing"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// trackedTree is a tree of n keys k000.. written by one tracked
// transaction.
func trackedTree(t *testing.T, n int) *Tree {
	t.Helper()
	txn := New().Txn()
	txn.TrackMutate(true)
	for i := range n {
		txn.Insert(fmt.Appendf(nil, "k%03d", i), i)
	}
	return txn.Commit()
}

// TestKumoiLookupsMakeNoChannel: Get, SeekPrefix and writes make no
// channel; only a watcher's request does, once per node.
func TestKumoiLookupsMakeNoChannel(t *testing.T) {
	r := trackedTree(t, 100)
	for i := range 100 {
		if _, ok := r.Get(fmt.Appendf(nil, "k%03d", i)); !ok {
			t.Fatalf("k%03d missing", i)
		}
	}
	it := r.Root().Iterator()
	it.SeekPrefix([]byte("k05"))
	if k, _, ok := it.Next(); !ok || string(k) != "k050" {
		t.Fatalf("SeekPrefix(k05) then Next = %q, %v", k, ok)
	}
	r.Root().Walk(func(k []byte, v interface{}) bool { return false })
	made := 0
	var count func(n *Node)
	count = func(n *Node) {
		if b := n.mutate.p.Load(); b != nil && b.ch != nil { // not a mark
			made++
		}
		if n.leaf != nil && n.leaf.mutate.p.Load() != nil {
			made++
		}
		for _, e := range n.edges {
			count(e.node)
		}
	}
	count(r.root)
	if made != 0 {
		t.Fatalf("lookups and writes made %d channels, want none", made)
	}
	ch1, _, _ := r.Root().GetWatch([]byte("k007"))
	ch2, _, _ := r.Root().GetWatch([]byte("k007"))
	if ch1 != ch2 {
		t.Fatal("two watchers of one leaf got different channels")
	}
	count(r.root)
	if made != 1 {
		t.Fatalf("one watched leaf: %d channels, want 1", made)
	}
}

// TestKumoiWatchBeforeAndAfterCommit: a watch taken before a commit that
// replaces its node is closed by the commit; one taken afterwards on the
// old tree is closed already; watches of untouched keys stay open; an
// aborted transaction closes nothing.
func TestKumoiWatchBeforeAndAfterCommit(t *testing.T) {
	r := trackedTree(t, 100)
	before, _, _ := r.Root().GetWatch([]byte("k010"))
	other, _, _ := r.Root().GetWatch([]byte("k090"))
	missing, _, ok := r.Root().GetWatch([]byte("k010x"))
	if ok {
		t.Fatal("k010x found")
	}

	aborted := r.Txn()
	aborted.TrackMutate(true)
	aborted.Insert([]byte("k010"), "x")
	aborted.Insert([]byte("k010x"), "x")
	if closed(before) || closed(missing) || closed(other) {
		t.Fatal("a transaction never committed closed a watch")
	}

	txn := r.Txn()
	txn.TrackMutate(true)
	txn.Insert([]byte("k010"), "new")
	txn.Insert([]byte("k010x"), "new")
	r2 := txn.CommitOnly()
	if closed(before) {
		t.Fatal("closed before Notify")
	}
	txn.Notify()
	if !closed(before) {
		t.Fatal("the watch of a replaced leaf is open after the commit")
	}
	if !closed(missing) {
		t.Fatal("the watch of a missing key is open after it was inserted")
	}
	if closed(other) {
		t.Fatal("the watch of an untouched key closed")
	}
	after, v, _ := r.Root().GetWatch([]byte("k010"))
	if v != 10 || !closed(after) {
		t.Fatalf("a watch taken on the old tree after the commit: value %v, closed %v; want 10, true", v, closed(after))
	}
	fresh, v, _ := r2.Root().GetWatch([]byte("k010"))
	if v != "new" || closed(fresh) {
		t.Fatalf("a watch on the new tree: value %v, closed %v; want new, false", v, closed(fresh))
	}
	txn.Notify() // a second notification is harmless

	// The prefix watch of an iterator, the same way.
	it := r2.Root().Iterator()
	pw := it.SeekPrefixWatch([]byte("k02"))
	t3 := r2.Txn()
	t3.TrackMutate(true)
	t3.Delete([]byte("k025"))
	t3.Commit()
	if !closed(pw) {
		t.Fatal("a prefix watch stayed open after a delete under the prefix")
	}
}

// TestKumoiWatchRace: watchers asking for channels while commits replace
// the nodes they watch (run with -race): every watch a watcher took on
// a tree that a later commit changed under its key is closed once that
// commit has notified.
func TestKumoiWatchRace(t *testing.T) {
	r := trackedTree(t, 64)
	var mu sync.Mutex
	cur := r
	type taken struct {
		ch   <-chan struct{}
		tree *Tree
	}
	var wg sync.WaitGroup
	results := make(chan taken, 4*500)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				mu.Lock()
				tr := cur
				mu.Unlock()
				ch, _, _ := tr.Root().GetWatch(fmt.Appendf(nil, "k%03d", (w+i)%64))
				results <- taken{ch, tr}
			}
		}()
	}
	for i := range 500 {
		mu.Lock()
		tr := cur
		mu.Unlock()
		txn := tr.Txn()
		txn.TrackMutate(true)
		for k := range 64 {
			txn.Insert(fmt.Appendf(nil, "k%03d", k), i)
		}
		nt := txn.CommitOnly()
		mu.Lock()
		cur = nt
		mu.Unlock()
		txn.Notify()
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.tree != cur && !closed(r.ch) {
			t.Fatal("a watch on a replaced tree's leaf is open after every commit notified")
		}
	}
}

// TestKumoiInsertEdgeRoom: an insert that adds an edge to a node it
// copies makes the copy's edges with room for the new one (upstream copied
// exactly the old edges, and the append reallocated them at twice the
// size); a split makes its node's two edges at once. The trees stay right.
func TestKumoiInsertEdgeRoom(t *testing.T) {
	txn := New().Txn()
	for i := range 9 {
		txn.Insert([]byte(fmt.Sprintf("a%d", i)), i) // "a" with nine edges
	}
	base := txn.Commit()
	txn = base.Txn()
	txn.Insert([]byte("a9"), 9)
	tree := txn.Commit()
	for i := range 10 {
		if v, ok := tree.Get([]byte(fmt.Sprintf("a%d", i))); !ok || v != i {
			t.Fatalf("a%d: %v, %v", i, v, ok)
		}
	}
	if _, ok := base.Get([]byte("a9")); ok || len(base.Root().edges[0].node.edges) != 9 {
		t.Fatal("the old tree changed")
	}
	if n := tree.Root().edges[0].node; len(n.edges) != 10 || cap(n.edges) != 10 {
		t.Fatalf("the copied node's edges: len %d cap %d, want 10 and 10", len(n.edges), cap(n.edges))
	}

	// A key that shares part of a node's prefix splits the node.
	txn = New().Txn()
	txn.Insert([]byte("xyz1"), 1)
	txn.Insert([]byte("xab2"), 2) // splits "xyz1" at "x"
	txn.Insert([]byte("x"), 0)    // the split node's own leaf
	tree = txn.Commit()
	split := tree.Root().edges[0].node
	if string(split.prefix) != "x" || len(split.edges) != 2 || cap(split.edges) != 2 {
		t.Fatalf("split node %q: edges len %d cap %d, want 2 and 2", split.prefix, len(split.edges), cap(split.edges))
	}
	for k, want := range map[string]int{"xyz1": 1, "xab2": 2, "x": 0} {
		if v, ok := tree.Get([]byte(k)); !ok || v != want {
			t.Fatalf("%s: %v, %v", k, v, ok)
		}
	}
}

// nodeAt is the node whose path from root is exactly key, or nil.
func nodeAt(root *Node, key string) *Node {
	n, search := root, []byte(key)
	for len(search) > 0 {
		_, c := n.getEdge(search[0])
		if c == nil || len(c.prefix) > len(search) || string(search[:len(c.prefix)]) != string(c.prefix) {
			return nil
		}
		n, search = c, search[len(c.prefix):]
	}
	return n
}

// TestKumoiWritesInPlace: a transaction writes in place the nodes it made
// (copied, split or added) since its last commit or clone, and no other:
// not a committed tree's, not a clone's, not one a reader took a channel
// of.
func TestKumoiWritesInPlace(t *testing.T) {
	txn := New().Txn()
	txn.Insert([]byte("abc"), 1)
	made := nodeAt(txn.Root(), "abc")
	if made == nil {
		t.Fatal("no node at abc")
	}
	txn.Insert([]byte("abcd"), 2) // adds an edge under the node it added
	if n := nodeAt(txn.Root(), "abc"); n != made {
		t.Fatal("the node the transaction added was copied to add an edge under it, not written in place")
	}
	txn.Insert([]byte("abx"), 3) // splits: the split node is the transaction's too
	split := nodeAt(txn.Root(), "ab")
	txn.Insert([]byte("aby"), 4)
	if n := nodeAt(txn.Root(), "ab"); n == nil || n != split {
		t.Fatal("the split node was copied by the next insert under it")
	}

	tree := txn.Commit()
	// The same transaction after its commit, a new one and a clone must
	// all copy the committed nodes.
	txn.Insert([]byte("abcf"), 5)
	next := tree.Txn()
	next.Insert([]byte("abce"), 6)
	clone := next.Clone()
	next.Insert([]byte("abcg"), 7)
	clone.Insert([]byte("abch"), 8)
	if n := nodeAt(tree.Root(), "abc"); n != made || len(n.edges) != 1 {
		t.Fatalf("the committed node at abc was written after the commit: %d edges", len(made.edges))
	}
	for _, c := range []struct {
		root *Node
		has  string
		not  []string
	}{
		{tree.Root(), "abcd", []string{"abcf", "abce", "abcg", "abch"}},
		{txn.Root(), "abcf", []string{"abce", "abcg", "abch"}},
		{next.Root(), "abcg", []string{"abcf", "abch"}},
		{clone.Root(), "abch", []string{"abcf", "abcg"}},
	} {
		if _, ok := c.root.Get([]byte(c.has)); !ok {
			t.Errorf("%s missing", c.has)
		}
		for _, k := range c.not {
			if _, ok := c.root.Get([]byte(k)); ok {
				t.Errorf("a write leaked: %s is in a tree that did not write it (along with %s)", k, c.has)
			}
		}
	}

	// A node the transaction made whose channel a reader took is copied
	// by the next write, and the commit closes the reader's channel.
	w := tree.Txn()
	w.TrackMutate(true)
	w.Insert([]byte("q1"), 9)
	it := w.Root().Iterator()
	ch := it.SeekPrefixWatch([]byte("q1"))
	w.Insert([]byte("q12"), 10)
	if closed(ch) {
		t.Fatal("the channel closed before the commit")
	}
	w.Commit()
	if !closed(ch) {
		t.Fatal("a channel taken on a node the transaction made stayed open after the transaction changed the node")
	}
}

// TestKumoiDeletePrefixOfMadeNode: DeletePrefix at a node the transaction
// made (written in place) still counts the keys it removes and closes
// the watches of the published nodes under it.
func TestKumoiDeletePrefixOfMadeNode(t *testing.T) {
	txn := New().Txn()
	txn.Insert([]byte("abc1"), 1)
	txn.Insert([]byte("abc2"), 2)
	tree := txn.Commit()
	ch, _, _ := tree.Root().GetWatch([]byte("abc1"))

	w := tree.Txn()
	w.TrackMutate(true)
	w.Insert([]byte("abd"), 3) // splits off a node at "ab" that w made
	if !w.DeletePrefix([]byte("ab")) {
		t.Fatal("DeletePrefix(ab) deleted nothing")
	}
	got := w.Commit()
	if got.Len() != 0 {
		t.Errorf("Len after deleting every key = %d, want 0", got.Len())
	}
	if !closed(ch) {
		t.Error("the watch of a deleted key stayed open")
	}

	x := New().Txn()
	x.Insert([]byte("x"), 1)
	x.Insert([]byte("abc"), 2) // a leaf node x made
	x.DeletePrefix([]byte("abc"))
	if n := x.Commit().Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
}
