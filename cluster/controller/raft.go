package controller

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"go.etcd.io/bbolt"
)

// raftParts are the stores and transport a raft node is built from.
type raftParts struct {
	logs     raft.LogStore
	stable   raft.StableStore
	snaps    raft.SnapshotStore
	trans    raft.Transport
	closeFns []func() error
	hasState bool
	// logStore is the kind of log store opened: LogStoreWAL,
	// LogStoreBoltDB or LogStoreInMemory.
	logStore string
}

func (p *raftParts) close() {
	for i := len(p.closeFns) - 1; i >= 0; i-- {
		_ = p.closeFns[i]()
	}
}

func (c *Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	rc.MaxAppendEntries = c.MaxAppendEntries
	// Group commit: the leader drains every pending Apply into one batch,
	// appended (and fsync'd) to the log in one write.
	rc.BatchApplyCh = true
	rc.Logger = c.Logger.Named("raft")
	return rc
}

// openRaftParts opens the log, stable and snapshot stores and the
// transport; cluster tells the transport this node's cluster identity;
// with tlsc the transport runs over mutual TLS.
func openRaftParts(c *Config, tlsc *tlsConfigs, cluster func() string, admitted func() bool, logger hclog.Logger) (*raftParts, error) {
	p := &raftParts{}
	ok := false
	defer func() {
		if !ok {
			p.close()
		}
	}()
	if c.InMemory {
		store := raft.NewInmemStore()
		p.logs, p.stable = store, store
		p.logStore = LogStoreInMemory
		p.snaps = raft.NewInmemSnapshotStore()
	} else {
		dir := filepath.Join(c.DataDir, "raft")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		store, err := openLogStore(c, dir, logger)
		if err != nil {
			return nil, err
		}
		p.logStore = store.kind
		p.closeFns = append(p.closeFns, store.Close)
		cached, err := newLogCache(store, logCacheEntries, logCacheBytes)
		if err != nil {
			return nil, err
		}
		p.logs, p.stable = cached, store
		snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 3, c.Logger.Named("snapshot"))
		if err != nil {
			return nil, fmt.Errorf("open snapshot store: %w", err)
		}
		p.snaps = snaps
	}
	if c.Transport != nil {
		p.trans = c.Transport
	} else {
		ln, err := net.Listen("tcp", c.RaftAddr())
		if err != nil {
			return nil, fmt.Errorf("listen for raft on %s: %w", c.RaftAddr(), err)
		}
		trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  newStreamLayerTLS(ln, net.ParseIP(c.BindIP), cluster, admitted, logger.Named("raft-net"), tlsc),
			MaxPool: 8,
			Timeout: 5 * time.Second,
			Logger:  c.Logger.Named("raft-net"),
		})
		p.trans = trans
		p.closeFns = append(p.closeFns, trans.Close)
	}
	has, err := raft.HasExistingState(p.logs, p.stable, p.snaps)
	if err != nil {
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}
	p.hasState = has
	ok = true
	return p, nil
}

var (
	_ logStore = (*raftboltdb.BoltStore)(nil)
	_ logStore = (*raftwal.WAL)(nil)
	_ logStore = (*heldStore)(nil)

	_ raft.MonotonicLogStore = (*heldStore)(nil)
	_ raft.MonotonicLogStore = (*raftwal.WAL)(nil)
)

// boltOptions are the Raft log's BoltDB options. The free-page list is not
// written on every commit (Consul's raft_boltdb NoFreelistSync): a commit
// of a few log entries then writes their pages and the meta page, not also
// the free list, which grows with the log; BoltDB rebuilds the list by
// scanning the file when it opens (the log is short: it is truncated after
// each snapshot). The hashmap free list finds pages in constant time. A
// second agent on the same data directory fails after a second instead of
// waiting for the file lock forever.
func boltOptions() *bbolt.Options {
	return &bbolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	}
}
