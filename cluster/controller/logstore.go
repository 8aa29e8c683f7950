package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/migrate"

	"github.com/kumoi/kumoi/cluster/internal/datadir"
)

// The Raft log store (Config.RaftLogStore, kumoi agent --raft-log-store):
// where a controller keeps its Raft log and its stable store (current
// term, last vote, the node's mark), under DATA/raft next to the
// snapshots.
//
//   - wal (the default for a new data directory): hashicorp/raft-wal,
//     segment files and a small meta database in DATA/raft/wal/. An append
//     is one write and one fdatasync (as etcd's WAL), which is what the 1-
//     and 16-writer rows of make bench-compare wait on
//     (docs/benchmarks.md). Consul made it its default for new data
//     directories in 1.20.
//   - boltdb: raft-boltdb/v2, one file DATA/raft/raft.db. A commit of new
//     entries is a BoltDB transaction: its pages, fdatasync, its meta
//     page, fdatasync. Every data directory written before wal became the
//     default is in it.
//
// Without --raft-log-store a controller keeps the store its data directory
// already has (so an upgrade converts nothing), and a new one gets wal.
//
// DATA/raft/log_store records which store holds the node's Raft state
// (a data directory from before it has only raft.db). When it names the
// other kind than --raft-log-store asks for, the controller converts at
// start: every log entry and the stable store's keys are copied into a new
// store next to the old one, renamed into place once complete, and only
// then is log_store rewritten: that is the moment the new store becomes
// the node's. The old one is then kept as raft.db.converted or
// wal.converted (delete it once the node runs well). A conversion cut
// short at any step leaves log_store naming the old store, so a stale copy
// is never taken for the log: the next start converts again, or, started
// with the old kind, puts the copy aside.
const (
	LogStoreBoltDB = "boltdb"
	LogStoreWAL    = "wal"
	// LogStoreInMemory is a controller's log store with Config.InMemory
	// (dev mode, some tests): it never names a --raft-log-store.
	LogStoreInMemory = "inmem"
)

// Names under DATA/raft.
const (
	boltLogFile = "raft.db"
	walLogDir   = "wal"
	// storeLockFile is locked by the agent that has the store open.
	storeLockFile = "store.lock"
	// logStoreFile names the store that holds the node's Raft state.
	logStoreFile = "log_store"
	// convertedSuffix marks a store replaced by a conversion;
	// convertingSuffix one being written by a conversion.
	convertedSuffix  = ".converted"
	convertingSuffix = ".converting"
)

// logStore is an open Raft log and stable store.
type logStore = RaftLog

// stableBytesKeys and stableIntKeys are every key a controller keeps in its
// stable store: hashicorp/raft's (raft.go: keyCurrentTerm, keyLastVoteTerm,
// keyLastVoteCand) and the node's mark (admission.go).
var (
	stableIntKeys   = [][]byte{[]byte("CurrentTerm"), []byte("LastVoteTerm")}
	stableBytesKeys = [][]byte{[]byte("LastVoteCand"), nodeMarkerKey}
)

// logStoreKind is the store c asks for in a data directory whose Raft
// state is in cur ("": none yet): --raft-log-store when given, else the
// store the directory has, else wal (boltdb with NoSync, which only
// BoltDB has).
func (c *Config) logStoreKind(cur string) string {
	switch {
	case c.RaftLogStore != "":
		return c.RaftLogStore
	case cur != "":
		return cur
	case c.NoSync:
		return LogStoreBoltDB
	}
	return LogStoreWAL
}

// RaftLog is a controller's Raft log and stable store.
type RaftLog interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// OpenRaftLog opens the Raft log and stable store in raftDir (a stopped
// controller's DATA/raft), whichever store it is in, for a tool or a test
// that reads or repairs it offline; it says which kind it opened. It
// holds the directory's lock (a controller cannot start on it) until
// closed, and fails on a directory without Raft state.
func OpenRaftLog(raftDir string) (RaftLog, string, error) {
	kind, _, err := currentLogStore(raftDir)
	if err != nil {
		return nil, "", err
	}
	if kind == "" {
		return nil, "", fmt.Errorf("%s holds no Raft log (neither %s nor %s/)", raftDir, boltLogFile, walLogDir)
	}
	st, err := openLogStore(&Config{RaftLogStore: kind}, raftDir, hclog.NewNullLogger())
	if err != nil {
		return nil, "", err
	}
	return st, kind, nil
}

// openLogStore opens the log store c asks for in dir (DATA/raft),
// converting the node's Raft state into it first when log_store says it is
// in the other kind.
func openLogStore(c *Config, dir string, logger hclog.Logger) (*heldStore, error) {
	// One agent at a time in dir, from the first look at it (a conversion
	// included) until the store is closed; raft-wal's meta database would
	// wait for its file lock forever, and BoltDB's only guards its file.
	lock, err := datadir.Lock(filepath.Join(dir, storeLockFile))
	if err != nil {
		return nil, fmt.Errorf("lock the raft log in %s: %w (is another agent using this --data-dir?)", dir, err)
	}
	st, kind, err := openLogStoreLocked(c, dir, logger)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return &heldStore{logStore: st, lock: lock, kind: kind}, nil
}

// heldStore is an open store, its kind and the lock on its directory.
type heldStore struct {
	logStore
	lock *os.File
	kind string
}

// IsMonotonic passes the store's answer on (raft-wal's is true: after a
// snapshot is installed, raft must empty it rather than leave a gap).
func (h *heldStore) IsMonotonic() bool {
	m, ok := h.logStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (h *heldStore) Close() error {
	return errors.Join(h.logStore.Close(), h.lock.Close())
}

func openLogStoreLocked(c *Config, dir string, logger hclog.Logger) (logStore, string, error) {
	cur, recorded, err := currentLogStore(dir)
	if err != nil {
		return nil, "", err
	}
	want := c.logStoreKind(cur)
	if c.RaftLogStore == "" && cur == LogStoreBoltDB {
		logger.Info("keeping this data directory's Raft log store; --raft-log-store wal converts it (one sync per append instead of two)",
			"store", cur, "dir", dir)
	}
	switch {
	case cur == "":
		// No Raft state yet: the store asked for is created.
	case cur != want:
		logger.Info("converting the Raft log store", "from", cur, "to", want, "dir", dir)
		n, err := convertLogStore(c, dir, cur, want, logger)
		if err != nil {
			return nil, "", fmt.Errorf("convert the Raft log in %s from %s to %s (--raft-log-store %s): %w; the %s store is still the node's: start with --raft-log-store %s, or fix the cause and start again",
				dir, cur, want, want, err, cur, cur)
		}
		logger.Info("converted the Raft log store; the old one is kept until you delete it",
			"from", cur, "to", want, "entries", n, "kept", storePath(dir, cur)+convertedSuffix)
		recorded = true
	case storeExists(dir, otherKind(want)):
		// A copy a conversion left behind (stopped before or after it
		// recorded its result): the store log_store names is the node's.
		logger.Warn("putting aside a Raft log store that is not this node's (left by a conversion that stopped)",
			"using", storePath(dir, want), "aside", storePath(dir, otherKind(want))+convertedSuffix)
		if err := setAside(dir, otherKind(want)); err != nil {
			return nil, "", err
		}
	}
	st, err := openStoreKind(c, dir, want, "", logger)
	if err != nil {
		return nil, "", err
	}
	if !recorded {
		if err := datadir.WriteSync(dir, logStoreFile, want); err != nil {
			_ = st.Close()
			return nil, "", err
		}
	}
	return st, want, nil
}

// currentLogStore says which store holds dir's Raft state: what log_store
// records (recorded true), else in a data directory from before that file
// BoltDB when raft.db exists, else "" (no state yet).
func currentLogStore(dir string) (kind string, recorded bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, logStoreFile))
	switch {
	case err == nil:
		kind = strings.TrimSpace(string(b))
		if kind != LogStoreBoltDB && kind != LogStoreWAL {
			return "", false, fmt.Errorf("%s holds %q, not boltdb or wal: write the kind of the store this node's Raft log is in (raft.db: boltdb, wal/: wal)",
				filepath.Join(dir, logStoreFile), kind)
		}
		return kind, true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, err
	case storeExists(dir, LogStoreBoltDB):
		return LogStoreBoltDB, false, nil
	}
	return "", false, nil
}

func otherKind(kind string) string {
	if kind == LogStoreWAL {
		return LogStoreBoltDB
	}
	return LogStoreWAL
}

// setAside renames the store of kind in dir to its *.converted name,
// replacing one put aside before (older still).
func setAside(dir, kind string) error {
	path := storePath(dir, kind)
	if err := os.RemoveAll(path + convertedSuffix); err != nil {
		return err
	}
	if err := os.Rename(path, path+convertedSuffix); err != nil {
		return err
	}
	return datadir.SyncDir(dir)
}

// storePath is where the store of kind lives in dir.
func storePath(dir, kind string) string {
	if kind == LogStoreWAL {
		return filepath.Join(dir, walLogDir)
	}
	return filepath.Join(dir, boltLogFile)
}

func storeExists(dir, kind string) bool {
	_, err := os.Stat(storePath(dir, kind))
	return err == nil
}

// openStoreKind opens (creating it if needed) the store of kind in dir, at
// its own path plus suffix.
func openStoreKind(c *Config, dir, kind, suffix string, logger hclog.Logger) (logStore, error) {
	path := storePath(dir, kind) + suffix
	if kind == LogStoreBoltDB {
		bolt, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: c.NoSync, BoltOptions: boltOptions()})
		if err != nil {
			return nil, fmt.Errorf("open raft log %s: %w (is another agent using this --data-dir?)", path, err)
		}
		return bolt, nil
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("create raft log directory: %w", err)
	}
	// raft-wal is patched (third_party/raft-wal/KUMOI.md): a tail segment
	// left sealed with no segment after it (a rotation that failed on a
	// full disk, or that a crash cut short) is rotated before the next
	// append, where upstream failed every append from then on.
	size := raftwal.WithSegmentSize(raftwal.DefaultSegmentSize)
	if c.RaftWALSegmentSize > 0 {
		size = raftwal.WithSegmentSize(c.RaftWALSegmentSize)
	}
	w, err := raftwal.Open(path, raftwal.WithLogger(logger.Named("wal")), size)
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", path, err)
	}
	return w, nil
}

// convertLogStore copies the store of kind from in dir into a new store of
// kind to, puts it in place, records it in log_store and puts the old one
// aside. It returns how many log entries it copied.
func convertLogStore(c *Config, dir, from, to string, logger hclog.Logger) (int, error) {
	src, err := openStoreKind(c, dir, from, "", logger)
	if err != nil {
		return 0, err
	}
	srcOpen := true
	defer func() {
		if srcOpen {
			_ = src.Close()
		}
	}()
	// A store of kind to here is a copy an earlier conversion made and
	// never recorded; one being written, a conversion cut short.
	tmp := storePath(dir, to) + convertingSuffix
	for _, p := range []string{tmp, storePath(dir, to)} {
		if err := os.RemoveAll(p); err != nil {
			return 0, err
		}
	}
	dst, err := openStoreKind(c, dir, to, convertingSuffix, logger)
	if err != nil {
		return 0, err
	}
	n, err := copyLogStore(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, storePath(dir, to)); err != nil {
		return 0, err
	}
	if err := datadir.SyncDir(dir); err != nil {
		return 0, err
	}
	srcOpen = false
	if err := src.Close(); err != nil {
		return 0, err
	}
	// The new store becomes the node's here.
	if err := datadir.WriteSync(dir, logStoreFile, to); err != nil {
		return 0, err
	}
	return n, setAside(dir, from)
}

// copyLogStore copies every log entry and every stable key of src into
// the empty dst, and returns how many entries it copied.
func copyLogStore(dst, src logStore) (int, error) {
	first, err := src.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := src.LastIndex()
	if err != nil {
		return 0, err
	}
	n := 0
	if last > 0 {
		if err := migrate.CopyLogs(context.Background(), dst, src, 4<<20, nil); err != nil {
			return 0, err
		}
		n = int(last - first + 1)
	}
	for _, k := range stableIntKeys {
		v, err := src.GetUint64(k)
		switch {
		case errors.Is(err, raftboltdb.ErrKeyNotFound) || err == nil && v == 0:
			continue // never set
		case err != nil:
			return 0, fmt.Errorf("read %s: %w", k, err)
		}
		if err := dst.SetUint64(k, v); err != nil {
			return 0, fmt.Errorf("write %s: %w", k, err)
		}
	}
	for _, k := range stableBytesKeys {
		v, err := src.Get(k)
		switch {
		case errors.Is(err, raftboltdb.ErrKeyNotFound) || err == nil && len(v) == 0:
			continue
		case err != nil:
			return 0, fmt.Errorf("read %s: %w", k, err)
		}
		if err := dst.Set(k, v); err != nil {
			return 0, fmt.Errorf("write %s: %w", k, err)
		}
	}
	return n, nil
}
