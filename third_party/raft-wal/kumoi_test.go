// Tests of the Kumoi changes (KUMOI.md): a tail segment sealed with no
// segment after it is rotated before the next append.

package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// fullFS is the real file system whose Create fails, while full is set, as
// a full disk makes it: after the file was made (and, unlike fs.FS since
// the Kumoi change, left behind).
type fullFS struct {
	*fs.FS
	full atomic.Bool
}

func (f *fullFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	if f.full.Load() {
		if fl, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644); err == nil {
			fl.Close()
		}
		return nil, &os.PathError{Op: "fallocate", Path: name, Err: syscall.ENOSPC}
	}
	return f.FS.Create(dir, name, size)
}

func kumoiEntry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry %06d %0200d", i, i))}
}

func kumoiCheck(t *testing.T, w *WAL, last uint64) {
	t.Helper()
	if li, err := w.LastIndex(); err != nil || li != last {
		t.Fatalf("last index %d (%v), want %d", li, err, last)
	}
	for i := uint64(1); i <= last; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil || string(l.Data) != string(kumoiEntry(i).Data) {
			t.Fatalf("entry %d: %v %q", i, err, l.Data)
		}
	}
}

// TestKumoiRotationRetried: when the next segment cannot be created, the
// appends fail (upstream: for good, "segment is sealed", even once the
// disk has room); once it can, the next append rotates and succeeds,
// without a restart, and nothing acknowledged is lost.
func TestKumoiRotationRetried(t *testing.T) {
	dir := t.TempDir()
	vfs := &fullFS{FS: fs.New()}
	w, err := Open(dir, WithSegmentSize(8<<10), WithSegmentFiler(segment.NewFiler(dir, vfs)))
	if err != nil {
		t.Fatal(err)
	}
	vfs.full.Store(true)
	var acked uint64
	var failed error
	for i := uint64(1); i <= 200; i++ {
		if failed = w.StoreLogs([]*raft.Log{kumoiEntry(i)}); failed != nil {
			break
		}
		acked = i
	}
	if failed == nil {
		t.Fatal("200 appends of 200 bytes into 8 KiB segments, the next segment never creatable: no append failed")
	}
	// Still full: it fails again, and changes nothing.
	if err := w.StoreLogs([]*raft.Log{kumoiEntry(acked + 1)}); err == nil {
		t.Fatal("an append succeeded while no segment could be created")
	}
	vfs.full.Store(false)
	for i := acked + 1; i <= acked+100; i++ {
		if err := w.StoreLogs([]*raft.Log{kumoiEntry(i)}); err != nil {
			t.Fatalf("append %d once the segment can be created (the first failure: %v): %v", i, failed, err)
		}
	}
	acked += 100
	kumoiCheck(t, w, acked)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w, err = Open(dir, WithSegmentSize(8<<10)); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	kumoiCheck(t, w, acked)
}

// TestKumoiRecoveredSealedTail: a WAL whose process died after the append
// that sealed its tail segment and before the rotation recorded it (the
// metadata still has the sealed segment as the open tail, and no segment
// after it) takes appends after a restart (upstream: "segment is sealed"
// on every append, for good).
func TestKumoiRecoveredSealedTail(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, WithSegmentSize(8<<10))
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := uint64(1); i <= 200; i++ {
		if err := w.StoreLogs([]*raft.Log{kumoiEntry(i)}); err != nil {
			t.Fatal(err)
		}
		last = i
		s, release := w.acquireState()
		sealed, _, _ := s.tail.Sealed()
		release()
		if sealed {
			break
		}
	}
	// The rotation runs in the background: wait for the new tail.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, release := w.acquireState()
		n := s.segments.Len()
		release()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d segments after the seal, want 2", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Undo the rotation's record, as a crash before it would have left it.
	meta := &metadb.BoltMetaDB{}
	ps, err := meta.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Segments) != 2 {
		t.Fatalf("%d segments recorded, want 2", len(ps.Segments))
	}
	gone := ps.Segments[1]
	ps.Segments = ps.Segments[:1]
	ps.Segments[0].SealTime, ps.Segments[0].IndexStart, ps.Segments[0].MaxIndex = time.Time{}, 0, 0
	if err := meta.CommitState(ps); err != nil {
		t.Fatal(err)
	}
	if err := meta.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, segment.FileName(gone))); err != nil {
		t.Fatal(err)
	}

	if w, err = Open(dir, WithSegmentSize(8<<10)); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	kumoiCheck(t, w, last)
	for i := last + 1; i <= last+100; i++ {
		if err := w.StoreLogs([]*raft.Log{kumoiEntry(i)}); err != nil {
			t.Fatalf("append %d after recovering a sealed tail: %v", i, err)
		}
	}
	kumoiCheck(t, w, last+100)
}

// TestKumoiHeadTruncatedInTail: after a head truncation (raft's DeleteRange
// after a snapshot) whose new first index lies in the tail segment, the
// entries before it are not found, before and after a restart (upstream
// still returned them from the tail segment, and raft sent a new follower
// the whole log instead of the snapshot).
func TestKumoiHeadTruncatedInTail(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 20; i++ {
		if err := w.StoreLogs([]*raft.Log{kumoiEntry(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.DeleteRange(1, 12); err != nil {
		t.Fatal(err)
	}
	check := func(w *WAL) {
		t.Helper()
		if fi, err := w.FirstIndex(); err != nil || fi != 13 {
			t.Fatalf("first index %d (%v), want 13", fi, err)
		}
		for i := uint64(1); i <= 20; i++ {
			var l raft.Log
			err := w.GetLog(i, &l)
			switch {
			case i < 13 && err != raft.ErrLogNotFound:
				t.Fatalf("entry %d, truncated: %v %q, want %v", i, err, l.Data, raft.ErrLogNotFound)
			case i >= 13 && (err != nil || string(l.Data) != string(kumoiEntry(i).Data)):
				t.Fatalf("entry %d: %v %q", i, err, l.Data)
			}
		}
	}
	check(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	check(w)
}

// TestKumoiAppendEncode: the batch encoding of StoreLogs writes what
// BinaryCodec.Encode writes, byte for byte, for every field's extremes
// (the segment files stay readable by any raft-wal).
func TestKumoiAppendEncode(t *testing.T) {
	c := &BinaryCodec{}
	logs := []*raft.Log{
		{},
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")},
		{Index: 1<<64 - 1, Term: 1<<64 - 1, Type: raft.LogConfiguration, Data: make([]byte, 70000), Extensions: []byte("ext"),
			AppendedAt: time.Date(2026, 12, 4, 18, 0, 0, 123456789, time.UTC)},
		{Index: 300, Term: 2, Data: []byte{}, AppendedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.FixedZone("", 3600))},
		{Index: 301, Term: 2, AppendedAt: time.Now()},
	}
	var all []byte
	for _, l := range logs {
		var buf bytes.Buffer
		if err := c.Encode(l, &buf); err != nil {
			t.Fatal(err)
		}
		start := len(all)
		var err error
		if all, err = c.appendEncode(all, l); err != nil {
			t.Fatal(err)
		}
		if got := all[start:]; !bytes.Equal(got, buf.Bytes()) {
			t.Fatalf("log %d: appendEncode %x, Encode %x", l.Index, got, buf.Bytes())
		}
		if len(buf.Bytes()) > maxEncodedLen(l) {
			t.Fatalf("log %d: %d bytes encoded, bound %d", l.Index, buf.Len(), maxEncodedLen(l))
		}
	}
}
