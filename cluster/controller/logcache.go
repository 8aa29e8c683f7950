package controller

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// Bounds of the Raft log cache: the last logCacheEntries entries, as
// hashicorp/raft's LogCache keeps, but never more than logCacheBytes of
// entry data.
const (
	logCacheEntries = 1024
	logCacheBytes   = 64 << 20
)

// logCache is raft.LogCache (an in-memory ring of the entries written
// last, so that replication and the FSM read them without BoltDB) with a
// bound on bytes as well as entries. raft.LogCache bounds only the
// count: with entries of MaxBatchOps operations (a batch of 4,096
// creates is about 1 MiB), its 1,024 entries can hold a gigabyte per
// controller for as long as they are the newest. Here the oldest entries
// leave once the data cached passes maxBytes.
//
// The cache holds one run of consecutive indexes [lo, hi]; a write that
// does not continue it (after a truncation, or the first one) starts a
// new run. It caches what the store accepted and, on the leader, what
// raft staged before writing it (StageLogs: forgotten if the write
// fails); DeleteRange forgets the range deleted; like raft.LogCache it
// hands out copies of the cached raft.Log structs (whose Data raft never
// changes).
type logCache struct {
	store    raft.LogStore
	maxBytes int

	mu     sync.RWMutex
	ring   []*raft.Log
	lo, hi uint64 // the cached indexes, when n > 0
	n      int    // entries cached
	bytes  int    // their size (logSize)
	// stagedLo..stagedHi are entries StageLogs cached that StoreLogs has
	// not written yet (0: none).
	stagedLo, stagedHi uint64
}

var _ raft.LogStore = (*logCache)(nil)
var _ raft.MonotonicLogStore = (*logCache)(nil)
var _ raft.LogStager = (*logCache)(nil)

func newLogCache(store raft.LogStore, entries, maxBytes int) (*logCache, error) {
	if entries <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("log cache: %d entries and %d bytes: both must be positive", entries, maxBytes)
	}
	return &logCache{store: store, maxBytes: maxBytes, ring: make([]*raft.Log, entries)}, nil
}

// logSize is what a cached entry holds: its data and extensions, and
// the struct around them.
func logSize(l *raft.Log) int { return len(l.Data) + len(l.Extensions) + 128 }

// IsMonotonic passes the store's answer on, as raft.LogCache does.
func (c *logCache) IsMonotonic() bool {
	if m, ok := c.store.(raft.MonotonicLogStore); ok {
		return m.IsMonotonic()
	}
	return false
}

func (c *logCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	if c.n > 0 && idx >= c.lo && idx <= c.hi {
		*log = *c.ring[idx%uint64(len(c.ring))]
		c.mu.RUnlock()
		return nil
	}
	c.mu.RUnlock()
	return c.store.GetLog(idx, log)
}

func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

func (c *logCache) StoreLogs(logs []*raft.Log) error {
	err := c.store.StoreLogs(logs)
	c.mu.Lock()
	defer c.mu.Unlock()
	if lo, hi := c.stagedLo, c.stagedHi; lo != 0 {
		// The leader's write of what it staged (StageLogs).
		c.stagedLo, c.stagedHi = 0, 0
		if len(logs) > 0 && logs[0].Index == lo && logs[len(logs)-1].Index == hi {
			if err != nil {
				c.dropFrom(lo) // never written: not in the log
				return fmt.Errorf("unable to store logs within log store, err: %q", err)
			}
			return nil // cached already
		}
		c.reset() // not what was staged (raft does not do this): start again
	}
	if err != nil {
		return fmt.Errorf("unable to store logs within log store, err: %q", err)
	}
	c.add(logs)
	return nil
}

// StageLogs makes logs readable (GetLog) before StoreLogs writes them
// (raft.LogStager, a Kumoi change in third_party/raft): the leader's
// replicators send them to the followers while the leader writes its own
// copy. StoreLogs of the same entries follows; if it fails they are
// forgotten. Entries that would not all fit in the cache are not staged
// (false): raft then writes them before it replicates them.
func (c *logCache) StageLogs(logs []*raft.Log) bool {
	size := 0
	for _, l := range logs {
		size += logSize(l)
	}
	if len(logs) == 0 || len(logs) > len(c.ring) || size > c.maxBytes {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(logs)
	c.stagedLo, c.stagedHi = logs[0].Index, logs[len(logs)-1].Index
	return true
}

// add caches logs after what the cache holds, or alone when they do not
// continue it, dropping the oldest entries past the bounds.
func (c *logCache) add(logs []*raft.Log) {
	for _, l := range logs {
		if c.n > 0 && l.Index != c.hi+1 {
			c.reset()
		}
		if c.n == len(c.ring) {
			c.dropOldest()
		}
		if c.n == 0 {
			c.lo = l.Index
		}
		c.hi = l.Index
		c.ring[l.Index%uint64(len(c.ring))] = l
		c.n++
		c.bytes += logSize(l)
		for c.bytes > c.maxBytes && c.n > 0 {
			c.dropOldest()
		}
	}
}

// dropFrom forgets the entries from index idx on.
func (c *logCache) dropFrom(idx uint64) {
	for c.n > 0 && c.hi >= idx {
		s := c.hi % uint64(len(c.ring))
		c.bytes -= logSize(c.ring[s])
		c.ring[s] = nil
		c.hi--
		c.n--
	}
}

// dropOldest forgets the entry at lo.
func (c *logCache) dropOldest() {
	s := c.lo % uint64(len(c.ring))
	c.bytes -= logSize(c.ring[s])
	c.ring[s] = nil
	c.lo++
	c.n--
}

// reset forgets every entry.
func (c *logCache) reset() {
	clear(c.ring)
	c.n, c.bytes = 0, 0
}

func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// DeleteRange forgets the cached entries in [min, max]: a prefix (raft's
// compaction after a snapshot, which runs while the leader writes and
// must not take the entries it staged away) or a suffix (a follower's
// conflicting entries); anything else empties the cache.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	switch {
	case c.n == 0 || max < c.lo || min > c.hi:
	case min <= c.lo && max >= c.hi:
		c.reset()
	case min <= c.lo:
		for c.n > 0 && c.lo <= max {
			c.dropOldest()
		}
	case max >= c.hi:
		c.dropFrom(min)
	default:
		c.reset()
	}
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}

// cached says how many entries and bytes the cache holds (tests).
func (c *logCache) cached() (entries, bytes int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.n, c.bytes
}
