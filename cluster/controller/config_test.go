package controller

import (
	"strings"
	"testing"
)

// TestBootstrapExpect: only 1 (explicitly single-node), 3 or 5 bootstrap
// a cluster; 0 joins one; anything else is refused with what to use.
func TestBootstrapExpect(t *testing.T) {
	for _, n := range []int{0, 1, 3, 5} {
		c := Config{NodeID: "c1", InMemory: true, BootstrapExpect: n}
		c.SetDefaults()
		if err := c.Validate(); err != nil {
			t.Errorf("--bootstrap-expect %d refused: %v", n, err)
		}
	}
	for _, n := range []int{-1, 2, 4, 6, 7, 9} {
		c := Config{NodeID: "c1", InMemory: true, BootstrapExpect: n}
		c.SetDefaults()
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "use 3 or 5") {
			t.Errorf("--bootstrap-expect %d: %v, want a refusal saying to use 3 or 5", n, err)
		}
	}
}

// TestPlacementStrategy: --placement-strategy is spread (the default,
// also when empty) or binpack.
func TestPlacementStrategy(t *testing.T) {
	for _, s := range []string{"", "spread", "binpack"} {
		c := Config{NodeID: "c1", InMemory: true, PlacementStrategy: s}
		c.SetDefaults()
		if err := c.Validate(); err != nil {
			t.Errorf("--placement-strategy %q refused: %v", s, err)
		}
	}
	c := Config{NodeID: "c1", InMemory: true, PlacementStrategy: "pack"}
	c.SetDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `--placement-strategy "pack": use spread`) {
		t.Errorf("--placement-strategy pack: %v", err)
	}
}

// TestRaftLogStoreFlag: --raft-log-store is wal, boltdb or empty (the
// data directory's store; TestLogStoreDefault); anything else is refused
// with what to write, and fsync can be turned off only for boltdb; a wal
// segment is 64 KiB to 1 GiB.
func TestRaftLogStoreFlag(t *testing.T) {
	for _, s := range []string{"", LogStoreBoltDB, LogStoreWAL} {
		c := Config{NodeID: "c1", InMemory: true, RaftLogStore: s}
		c.SetDefaults()
		if err := c.Validate(); err != nil {
			t.Errorf("--raft-log-store %q refused: %v", s, err)
		}
	}
	c := Config{NodeID: "c1", InMemory: true, RaftLogStore: "bolt"}
	c.SetDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `--raft-log-store "bolt": use wal (one fsync per append) or boltdb; without it a data directory keeps the store it has and a new one gets wal`) {
		t.Errorf("--raft-log-store bolt: %v", err)
	}
	for _, n := range []int{1, 64<<10 - 1, 1<<30 + 1} {
		c := Config{NodeID: "c1", InMemory: true, RaftWALSegmentSize: n}
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--raft-wal-segment-size") {
			t.Errorf("a segment of %d bytes: %v", n, err)
		}
	}
	c = Config{NodeID: "c1", InMemory: true, RaftWALSegmentSize: 1 << 20}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("a segment of 1 MiB: %v", err)
	}
	c = Config{NodeID: "c1", InMemory: true, RaftLogStore: LogStoreWAL, NoSync: true}
	c.SetDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "NoSync") {
		t.Errorf("wal with NoSync: %v", err)
	}
}
