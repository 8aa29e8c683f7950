package controller

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestLogStoreConversion: a data directory's Raft log store is converted
// to the kind asked for, each way: every entry (from a first index above 1,
// as after a compaction), the term, the vote and the node's mark; the old
// store is kept aside as *.converted (an older one replaced); a second
// agent on the directory fails at once; a conversion left half done is
// redone.
func TestLogStoreConversion(t *testing.T) {
	dir := t.TempDir()
	logger := hclog.NewNullLogger()
	cfg := func(kind string) *Config { return &Config{RaftLogStore: kind} }
	const first, last = 5, 300
	const uuid = "aaaaaaaa-0000-4000-8000-000000000001"

	st, err := openLogStore(cfg(LogStoreBoltDB), dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(first); i <= last; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1 + i/100, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d", i)})
	}
	if err := st.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := st.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := st.Set([]byte("LastVoteCand"), []byte("c2")); err != nil {
		t.Fatal(err)
	}
	if err := markStore(st, uuid); err != nil {
		t.Fatal(err)
	}
	// LastVoteTerm never set: it stays unset.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	check := func(st logStore, kind string) {
		t.Helper()
		if fi, _ := st.FirstIndex(); fi != first {
			t.Fatalf("%s: first index %d, want %d", kind, fi, first)
		}
		if li, _ := st.LastIndex(); li != last {
			t.Fatalf("%s: last index %d, want %d", kind, li, last)
		}
		for i := uint64(first); i <= last; i++ {
			var l raft.Log
			if err := st.GetLog(i, &l); err != nil || l.Term != 1+i/100 || !bytes.Equal(l.Data, fmt.Appendf(nil, "entry %d", i)) {
				t.Fatalf("%s: entry %d = %+v, %v", kind, i, l, err)
			}
		}
		if v, err := st.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
			t.Fatalf("%s: CurrentTerm %d, %v; want 7", kind, v, err)
		}
		if v, _ := st.GetUint64([]byte("LastVoteTerm")); v != 0 {
			t.Fatalf("%s: LastVoteTerm %d; want it unset", kind, v)
		}
		if v, err := st.Get([]byte("LastVoteCand")); err != nil || string(v) != "c2" {
			t.Fatalf("%s: LastVoteCand %q, %v; want c2", kind, v, err)
		}
		if !storeIsOwn(st, uuid) {
			t.Fatalf("%s: the node's mark was not carried over", kind)
		}
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}

	// boltdb → wal; a second agent on the directory fails at once.
	w, err := openLogStore(cfg(LogStoreWAL), dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	check(w, LogStoreWAL)
	if !exists("wal") || exists("raft.db") || !exists("raft.db.converted") || exists("wal.converting") {
		t.Fatalf("after boltdb → wal: wal %t, raft.db %t, raft.db.converted %t, wal.converting %t",
			exists("wal"), exists("raft.db"), exists("raft.db.converted"), exists("wal.converting"))
	}
	if _, err := openLogStore(cfg(LogStoreWAL), dir, logger); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Fatalf("a second open of the wal: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// wal → boltdb, over a conversion cut short (a leftover half store).
	if err := os.WriteFile(filepath.Join(dir, "raft.db.converting"), []byte("half a store"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := openLogStore(cfg(LogStoreBoltDB), dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	check(b, LogStoreBoltDB)
	if exists("wal") || !exists("raft.db") || !exists("wal.converted") || exists("raft.db.converting") {
		t.Fatalf("after wal → boltdb: wal %t, raft.db %t, wal.converted %t, raft.db.converting %t",
			exists("wal"), exists("raft.db"), exists("wal.converted"), exists("raft.db.converting"))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// And back to wal: raft.db is kept aside in place of the first
	// conversion's raft.db.converted.
	w, err = openLogStore(cfg(LogStoreWAL), dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	check(w, LogStoreWAL)
	if !exists("wal") || exists("raft.db") || !exists("raft.db.converted") {
		t.Fatalf("after boltdb → wal again: wal %t, raft.db %t, raft.db.converted %t", exists("wal"), exists("raft.db"), exists("raft.db.converted"))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLogStoreConversionOfAnEmptyStore: a store with no entries yet (a
// node stopped before it joined) converts too.
func TestLogStoreConversionOfAnEmptyStore(t *testing.T) {
	dir := t.TempDir()
	st, err := openLogStore(&Config{}, dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	w, err := openLogStore(&Config{RaftLogStore: LogStoreWAL}, dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if li, err := w.LastIndex(); err != nil || li != 0 {
		t.Fatalf("last index %d, %v; want 0", li, err)
	}
	if has, err := raft.HasExistingState(w, w, raft.NewInmemSnapshotStore()); err != nil || has {
		t.Fatalf("an empty store converted into Raft state: %t, %v", has, err)
	}
}

// TestWALTailTruncation: the WAL reopens after Raft truncated its tail (a
// follower's log that conflicts with a new leader's) and appended again.
// raft-wal before v0.4.2 marked the tail segment sealed without writing
// its index, and the next start panicked ("sealed segment has no index
// block"; hashicorp/raft-wal#31): a controller killed after such a
// truncation never came back (found by make jepsen's kill-majority).
func TestWALTailTruncation(t *testing.T) {
	dir := t.TempDir()
	cfg := &Config{RaftLogStore: LogStoreWAL}
	w, err := openLogStore(cfg, dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	store := func(from, to, term uint64) {
		t.Helper()
		var logs []*raft.Log
		for i := from; i <= to; i++ {
			logs = append(logs, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: fmt.Appendf(nil, "%d/%d", term, i)})
		}
		if err := w.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	store(1, 100, 1)
	if err := w.DeleteRange(91, 100); err != nil {
		t.Fatal(err)
	}
	store(91, 120, 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = openLogStore(cfg, dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := uint64(1); i <= 120; i++ {
		term := uint64(1)
		if i > 90 {
			term = 2
		}
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil || l.Term != term || string(l.Data) != fmt.Sprintf("%d/%d", term, i) {
			t.Fatalf("after the reopen, entry %d = %+v, %v", i, l, err)
		}
	}
}

// TestLogStoreStaleCopyNeverUsed: a conversion that stopped between its
// steps leaves a second store beside the node's; log_store decides which
// is the node's, so a stale copy is never opened as its log, whichever
// --raft-log-store the next start has.
func TestLogStoreStaleCopyNeverUsed(t *testing.T) {
	dir := t.TempDir()
	logger := hclog.NewNullLogger()
	entries := func(st logStore, from, to uint64) {
		t.Helper()
		var logs []*raft.Log
		for i := from; i <= to; i++ {
			logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "%d", i)})
		}
		if err := st.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	// stale writes a store of kind with entries 1..10 at its path, as a
	// conversion that stopped before it recorded its result leaves it.
	stale := func(kind string) {
		t.Helper()
		st, err := openStoreKind(&Config{}, dir, kind, "", hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		entries(st, 1, 10)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	open := func(kind string) logStore {
		t.Helper()
		st, err := openLogStore(&Config{RaftLogStore: kind}, dir, logger)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	lastIs := func(st logStore, want uint64, what string) {
		t.Helper()
		if li, err := st.LastIndex(); err != nil || li != want {
			t.Fatalf("%s: last index %d, %v; want %d", what, li, err, want)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	record := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "log_store"))
		return strings.TrimSpace(string(b))
	}

	st := open(LogStoreBoltDB)
	entries(st, 1, 50)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if r := record(); r != LogStoreBoltDB {
		t.Fatalf("log_store %q, want boltdb", r)
	}

	// Started again with the node's kind: the copy is put aside.
	stale(LogStoreWAL)
	lastIs(open(LogStoreBoltDB), 50, "boltdb beside a stale wal")
	if _, err := os.Stat(filepath.Join(dir, "wal.converted")); err != nil {
		t.Fatalf("the stale wal was not put aside: %v", err)
	}
	// Started with the copy's kind: converted again, from the node's.
	stale(LogStoreWAL)
	lastIs(open(LogStoreWAL), 50, "wal over a stale wal")
	if r := record(); r != LogStoreWAL {
		t.Fatalf("log_store %q after the conversion, want wal", r)
	}
	// The other way: the node's log is the WAL now; a stale raft.db.
	stale(LogStoreBoltDB)
	lastIs(open(LogStoreBoltDB), 50, "boltdb over a stale raft.db")
	if r := record(); r != LogStoreBoltDB {
		t.Fatalf("log_store %q after the conversion back, want boltdb", r)
	}

	// A damaged record is an error that says what to write.
	if err := os.WriteFile(filepath.Join(dir, "log_store"), []byte("bolt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openLogStore(&Config{}, dir, logger); err == nil || !strings.Contains(err.Error(), "not boltdb or wal") {
		t.Fatalf("a damaged log_store: %v", err)
	}
}

// TestWALIsMonotonic: raft learns through every wrapper (the lock, the
// log cache) that the WAL cannot hold a gap, so that after installing a
// snapshot it empties the log instead of appending past a gap, which
// raft-wal refuses; BoltDB says nothing of the kind.
func TestWALIsMonotonic(t *testing.T) {
	for kind, want := range map[string]bool{LogStoreWAL: true, LogStoreBoltDB: false} {
		st, err := openLogStore(&Config{RaftLogStore: kind}, t.TempDir(), hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		c, err := newLogCache(st, 16, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.IsMonotonic(); got != want {
			t.Errorf("%s: IsMonotonic %t, want %t", kind, got, want)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLogStoreDiskFull: with each store on a disk that fills up, an append
// that does not fit fails and changes nothing, every acknowledged entry
// survives, and once space is freed appends work again without a restart
// (raft-wal's tail segment, sealed when its successor could not be
// created, is rotated by the next append: the patch in third_party/raft-wal).
func TestLogStoreDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("TestLogStoreDiskFull mounts a small tmpfs and needs root; CI runs as root")
		}
		t.Skip("TestLogStoreDiskFull mounts a small tmpfs: run as root")
	}
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "%01000d", i)}
	}
	for _, kind := range []string{LogStoreBoltDB, LogStoreWAL} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "kumoi-test", dir).CombinedOutput(); err != nil {
				t.Fatalf("mount a tmpfs on %s: %v: %s", dir, err, out)
			}
			t.Cleanup(func() {
				if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v: %s", dir, err, out)
				}
			})
			filler := filepath.Join(dir, "filler")
			if err := os.WriteFile(filler, make([]byte, 1<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := &Config{RaftLogStore: kind, RaftWALSegmentSize: 256 << 10}
			st, err := openLogStore(cfg, dir, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = st.Close() }()
			if err := st.StoreLogs([]*raft.Log{entry(1)}); err != nil {
				t.Fatal(err)
			}
			// A reader meanwhile, as raft's replicators and apply loop are:
			// a read must never fail, a reopen included.
			stop, readErr := make(chan struct{}), make(chan error, 1)
			go func() {
				defer close(readErr)
				for {
					select {
					case <-stop:
						return
					default:
					}
					var l raft.Log
					if err := st.GetLog(1, &l); err != nil {
						readErr <- err
						return
					}
				}
			}()
			acked := uint64(1)
			var full error
			for i := uint64(2); i <= 5000; i++ {
				if full = st.StoreLogs([]*raft.Log{entry(i)}); full != nil {
					break
				}
				acked = i
			}
			if full == nil || !strings.Contains(full.Error(), "no space left on device") {
				t.Fatalf("after %d entries of 1 KiB on a 3 MiB disk: error %v, want no space left on device", acked, full)
			}
			if li, err := st.LastIndex(); err != nil || li != acked {
				t.Fatalf("last index %d (%v) after a failed append, want %d", li, err, acked)
			}
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			// 300 more entries: past at least one more segment of 256 KiB.
			for i := acked + 1; i <= acked+300; i++ {
				if err := st.StoreLogs([]*raft.Log{entry(i)}); err != nil {
					t.Fatalf("append %d once space was freed (no restart): %v", i, err)
				}
			}
			acked += 300
			close(stop)
			if err := <-readErr; err != nil {
				t.Fatalf("a read while the disk filled and was freed: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			if st, err = openLogStore(cfg, dir, hclog.NewNullLogger()); err != nil {
				t.Fatal(err)
			}
			if li, err := st.LastIndex(); err != nil || li != acked {
				t.Fatalf("reopened: last index %d (%v), want %d", li, err, acked)
			}
			for i := uint64(1); i <= acked; i++ {
				var l raft.Log
				if err := st.GetLog(i, &l); err != nil || !bytes.Equal(l.Data, entry(i).Data) {
					t.Fatalf("reopened: entry %d: %v, data %.20q", i, err, l.Data)
				}
			}
		})
	}
}

// TestLogStoreDefault: without --raft-log-store a new data directory gets
// wal, and one that already has a store keeps it (a BoltDB directory from
// before log_store existed, or either kind log_store records), its entries
// untouched and nothing converted; OpenRaftLog opens whichever it is and
// refuses a directory without Raft state.
func TestLogStoreDefault(t *testing.T) {
	logger := hclog.NewNullLogger()
	if _, _, err := OpenRaftLog(t.TempDir()); err == nil || !strings.Contains(err.Error(), "holds no Raft log") {
		t.Fatalf("OpenRaftLog of an empty directory: %v", err)
	}
	for _, tc := range []struct {
		name, first string // first: the store the directory was made with
		dropRecord  bool   // remove log_store: a directory from before it
	}{
		{name: "new directory"},
		{name: "boltdb recorded", first: LogStoreBoltDB},
		{name: "boltdb from before log_store", first: LogStoreBoltDB, dropRecord: true},
		{name: "wal recorded", first: LogStoreWAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			want := LogStoreWAL
			if tc.first != "" {
				want = tc.first
				st, err := openLogStore(&Config{RaftLogStore: tc.first}, dir, logger)
				if err != nil {
					t.Fatal(err)
				}
				if err := st.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("one")}}); err != nil {
					t.Fatal(err)
				}
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				if tc.dropRecord {
					if err := os.Remove(filepath.Join(dir, logStoreFile)); err != nil {
						t.Fatal(err)
					}
				}
			}
			st, err := openLogStore(&Config{}, dir, logger)
			if err != nil {
				t.Fatal(err)
			}
			if tc.first != "" {
				var l raft.Log
				if err := st.GetLog(1, &l); err != nil || string(l.Data) != "one" {
					t.Fatalf("entry 1 after a start without --raft-log-store: %v %q", err, l.Data)
				}
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			rec, _ := os.ReadFile(filepath.Join(dir, logStoreFile))
			_, convErr := os.Stat(storePath(dir, otherKind(want)) + convertedSuffix)
			if strings.TrimSpace(string(rec)) != want || !storeExists(dir, want) || storeExists(dir, otherKind(want)) || convErr == nil {
				t.Fatalf("log_store %q, %s there %t, %s there %t; want only %s", rec,
					want, storeExists(dir, want), otherKind(want), storeExists(dir, otherKind(want)), want)
			}
			if tc.first == "" {
				return
			}
			ol, kind, err := OpenRaftLog(dir)
			if err != nil || kind != want {
				t.Fatalf("OpenRaftLog: %s, %v; want %s", kind, err, want)
			}
			if li, err := ol.LastIndex(); err != nil || li != 1 {
				t.Fatalf("OpenRaftLog: last index %d, %v", li, err)
			}
			if err := ol.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
