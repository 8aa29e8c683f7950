package controller

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore is an in-memory log store that counts the reads that
// reach it and can fail writes.
type countingStore struct {
	*raft.InmemStore
	reads   int
	failing bool
}

func (s *countingStore) GetLog(idx uint64, l *raft.Log) error {
	s.reads++
	return s.InmemStore.GetLog(idx, l)
}

func (s *countingStore) StoreLogs(logs []*raft.Log) error {
	if s.failing {
		return errors.New("disk full")
	}
	return s.InmemStore.StoreLogs(logs)
}

type monotonicStore struct{ *countingStore }

func (monotonicStore) IsMonotonic() bool { return true }

func entries(from, to uint64, size int) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, size)})
	}
	return out
}

// get reads index idx through c and says whether the store was read.
func get(t *testing.T, c *logCache, s *countingStore, idx uint64) (fromStore bool) {
	t.Helper()
	before := s.reads
	var l raft.Log
	if err := c.GetLog(idx, &l); err != nil {
		t.Fatalf("GetLog(%d): %v", idx, err)
	}
	if l.Index != idx || len(l.Data) == 0 || l.Data[0] != byte(idx) {
		t.Fatalf("GetLog(%d) = index %d, data %v", idx, l.Index, l.Data[:min(len(l.Data), 4)])
	}
	return s.reads > before
}

// TestLogCacheBoundsBytes: the cache serves the newest entries from
// memory and never holds more than its byte bound, dropping the oldest;
// what it dropped is read from the store.
func TestLogCacheBoundsBytes(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	const size = 1000
	c, err := newLogCache(s, 1024, 10*(size+128))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs(entries(1, 25, size)); err != nil {
		t.Fatal(err)
	}
	if n, b := c.cached(); n != 10 || b != 10*(size+128) {
		t.Fatalf("cached %d entries, %d bytes; want 10 and %d", n, b, 10*(size+128))
	}
	for i := uint64(16); i <= 25; i++ {
		if get(t, c, s, i) {
			t.Fatalf("entry %d (among the newest 10) was read from the store", i)
		}
	}
	for i := uint64(1); i <= 15; i++ {
		if !get(t, c, s, i) {
			t.Fatalf("entry %d (dropped) did not come from the store", i)
		}
	}
	// One entry over the bound is not kept at all.
	if err := c.StoreLogs(entries(26, 26, 20*size)); err != nil {
		t.Fatal(err)
	}
	if n, b := c.cached(); n != 0 || b != 0 {
		t.Fatalf("after an entry larger than the bound: %d entries, %d bytes cached", n, b)
	}
	if !get(t, c, s, 26) {
		t.Fatal("the oversized entry was served from the cache")
	}
	if err := c.StoreLogs(entries(27, 28, size)); err != nil {
		t.Fatal(err)
	}
	if get(t, c, s, 28) {
		t.Fatal("entry 28 was read from the store")
	}
}

// TestLogCacheBoundsEntries: without the byte bound biting, it keeps the
// last entries entries, as raft.LogCache does.
func TestLogCacheBoundsEntries(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	c, err := newLogCache(s, 8, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 20; i++ {
		if err := c.StoreLog(entries(i, i, 10)[0]); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := c.cached(); n != 8 {
		t.Fatalf("cached %d entries, want 8", n)
	}
	if get(t, c, s, 13) || !get(t, c, s, 12) {
		t.Fatal("want 13..20 from memory and 12 from the store")
	}
}

// TestLogCacheTruncationAndErrors: DeleteRange of a suffix (a follower's
// log truncated after a conflict) forgets those entries, a write that does
// not continue the cached run starts a new run, and a failed write caches
// nothing.
func TestLogCacheTruncationAndErrors(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	c, err := newLogCache(s, 64, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs(entries(1, 10, 10)); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteRange(6, 10); err != nil {
		t.Fatal(err)
	}
	if n, b := c.cached(); n != 5 || b != 5*logSize(entries(1, 1, 10)[0]) {
		t.Fatalf("after DeleteRange(6, 10): %d entries, %d bytes cached; want entries 1-5", n, b)
	}
	// Index 6 rewritten in term 2: the cache must not answer with the
	// old entry 6.
	repl := &raft.Log{Index: 6, Term: 2, Type: raft.LogCommand, Data: []byte{6, 2}}
	if err := c.StoreLogs([]*raft.Log{repl}); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := c.GetLog(6, &l); err != nil || l.Term != 2 {
		t.Fatalf("GetLog(6) = term %d, %v; want the rewritten entry of term 2", l.Term, err)
	}
	if get(t, c, s, 5) {
		t.Fatal("entry 5, kept by the truncation, came from the store")
	}
	// A gap (entries 8.. after 6) starts a new run too.
	if err := c.StoreLogs(entries(8, 9, 10)); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.cached(); n != 2 {
		t.Fatalf("after a gap: %d entries cached, want 2", n)
	}
	s.failing = true
	if err := c.StoreLogs(entries(10, 10, 10)); err == nil {
		t.Fatal("a failed store write returned no error")
	}
	s.failing = false
	if n, _ := c.cached(); n != 2 {
		t.Fatalf("a failed write changed the cache: %d entries", n)
	}
	if c.IsMonotonic() {
		t.Fatal("IsMonotonic true over a store that is not")
	}
	if m, _ := newLogCache(monotonicStore{s}, 1, 1); !m.IsMonotonic() {
		t.Fatal("IsMonotonic false over a monotonic store (raft then keeps logs a snapshot restore must drop)")
	}
	if _, err := newLogCache(s, 0, 1); err == nil {
		t.Fatal("a cache of 0 entries was accepted")
	}
}

// TestLogCacheDeleteRange: compaction (a prefix) keeps the newer entries
// cached, a range in the middle empties the cache, one outside it changes
// nothing.
func TestLogCacheDeleteRange(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	c, err := newLogCache(s, 64, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs(entries(1, 20, 10)); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteRange(1, 15); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.cached(); n != 5 || get(t, c, s, 16) {
		t.Fatalf("after compacting 1-15: %d entries cached (want 16-20), entry 16 from the cache", n)
	}
	if err := c.DeleteRange(1, 3); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.cached(); n != 5 {
		t.Fatalf("a range before the cache changed it: %d entries", n)
	}
	if err := c.DeleteRange(17, 18); err != nil {
		t.Fatal(err)
	}
	if n, b := c.cached(); n != 0 || b != 0 {
		t.Fatalf("after deleting the middle: %d entries, %d bytes cached", n, b)
	}
}

// TestLogCacheStaging: staged entries are readable before the store has
// them (the leader replicates them while it writes), stay cached once
// written (counted once), are forgotten when the write fails (and only
// they), survive a compaction meanwhile, and entries beyond the bounds
// are not staged.
func TestLogCacheStaging(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	c, err := newLogCache(s, 16, 10*logSize(entries(1, 1, 10)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs(entries(1, 3, 10)); err != nil {
		t.Fatal(err)
	}
	if !c.StageLogs(entries(4, 6, 10)) {
		t.Fatal("three small entries not staged")
	}
	var l raft.Log
	if err := s.GetLog(5, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("the store has entry 5 before StoreLogs: %v", err)
	}
	if get(t, c, s, 5) {
		t.Fatal("staged entry 5 read from the store")
	}
	// Compaction of older entries while the leader writes.
	if err := c.DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	if get(t, c, s, 6) {
		t.Fatal("staged entry 6 lost to a compaction")
	}
	if err := c.StoreLogs(entries(4, 6, 10)); err != nil {
		t.Fatal(err)
	}
	if n, b := c.cached(); n != 4 || b != 4*logSize(entries(1, 1, 10)[0]) {
		t.Fatalf("after writing the staged entries: %d entries, %d bytes; want 3-6 once each", n, b)
	}
	// A failed write forgets what was staged, and only that.
	if !c.StageLogs(entries(7, 8, 10)) {
		t.Fatal("not staged")
	}
	s.failing = true
	if err := c.StoreLogs(entries(7, 8, 10)); err == nil {
		t.Fatal("a failed write returned no error")
	}
	s.failing = false
	if n, _ := c.cached(); n != 4 {
		t.Fatalf("after a failed write of staged 7-8: %d entries cached, want 3-6", n)
	}
	if err := c.GetLog(7, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("entry 7, never written, still readable: %v", err)
	}
	// Then the same indexes written again (by the next leader's entries).
	if err := c.StoreLogs(entries(7, 7, 10)); err != nil || get(t, c, s, 7) {
		t.Fatalf("entry 7 after a rewrite: %v, or read from the store", err)
	}
	if c.StageLogs(entries(8, 30, 10)) || c.StageLogs(entries(8, 8, 20*logSize(entries(1, 1, 10)[0]))) || c.StageLogs(nil) {
		t.Fatal("entries beyond the cache's bounds (count or bytes), or none, were staged")
	}
}
