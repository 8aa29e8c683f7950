package fsm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/resource"
)

// snapshotVersion is the format of Persist's stream. Bump it (and keep
// reading the old one) when the format changes. Version 2 adds the meta
// records (the cluster's identity); version 3 the ACL policy and token
// records, and is written only when there are some (so that a build of
// protocol 5 still reads the snapshots of a cluster without ACLs during a
// rolling upgrade); versions 1 and 2 are still read.
const snapshotVersion = 3

// snapshotHeader starts every snapshot stream; records follow, one JSON
// value each.
type snapshotHeader struct {
	Version      int    `json:"version"`
	AppliedIndex uint64 `json:"applied_index"`
}

// snapshotRecord is one record: exactly one field is set.
type snapshotRecord struct {
	Object *resource.Object `json:"object,omitempty"`
	Index  *indexEntry      `json:"index,omitempty"`
	Meta   *metaEntry       `json:"meta,omitempty"`

	ACLPolicy *resource.ACLPolicy `json:"acl_policy,omitempty"`
	ACLToken  *ACLTokenEntry      `json:"acl_token,omitempty"`
}

// count is how many of the record's fields are set.
func (r *snapshotRecord) count() int {
	n := 0
	for _, set := range []bool{r.Object != nil, r.Index != nil, r.Meta != nil, r.ACLPolicy != nil, r.ACLToken != nil} {
		if set {
			n++
		}
	}
	return n
}

type fsmSnapshot struct {
	txn     *memdb.Txn
	applied uint64
}

// Snapshot captures the state in O(1) (go-memdb snapshots are immutable
// trees); Persist writes it out while Apply goes on. A halted FSM takes
// no snapshot: raft would label it with the index of the last entry it
// handed over, which the FSM did not apply, and a node restarted from it
// would silently skip that entry.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.Halted(); err != nil {
		return nil, fmt.Errorf("fsm: no snapshot of a halted state machine: %w", err)
	}
	db, _ := f.store.current()
	return &fsmSnapshot{txn: db.Snapshot().Txn(false), applied: f.applied.Load()}, nil
}

// Persist streams the header and then every record.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapshotHeader{Version: streamVersion(s.txn), AppliedIndex: s.applied}); err != nil {
		return err
	}
	it, err := s.txn.Get(tableObjects, indexID)
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if err := enc.Encode(snapshotRecord{Object: raw.(*resource.Object)}); err != nil {
			return err
		}
	}
	it, err = s.txn.Get(tableIndex, indexID)
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if err := enc.Encode(snapshotRecord{Index: raw.(*indexEntry)}); err != nil {
			return err
		}
	}
	it, err = s.txn.Get(tableMeta, indexID)
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if err := enc.Encode(snapshotRecord{Meta: raw.(*metaEntry)}); err != nil {
			return err
		}
	}
	it, err = s.txn.Get(tableACLPolicies, indexID)
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if err := enc.Encode(snapshotRecord{ACLPolicy: raw.(*resource.ACLPolicy)}); err != nil {
			return err
		}
	}
	it, err = s.txn.Get(tableACLTokens, indexID)
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if err := enc.Encode(snapshotRecord{ACLToken: raw.(*ACLTokenEntry)}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// streamVersion is the version a snapshot of txn is written with: 2, or
// 3 when it holds ACL records (see snapshotVersion).
func streamVersion(txn *memdb.Txn) int {
	for _, table := range []string{tableACLPolicies, tableACLTokens} {
		if raw, err := txn.First(table, indexID); err == nil && raw != nil {
			return snapshotVersion
		}
	}
	return 2
}

// Release does nothing: the memdb snapshot is garbage collected.
func (s *fsmSnapshot) Release() {}

// Restore replaces the whole state with a snapshot's. The new store is built
// aside and swapped in under the lock readers take; blocked readers are woken
// (their abandon channel closes) and re-run against the new state. A
// halted FSM stays halted: it restores nothing until the process restarts.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.Halted(); err != nil {
		return fmt.Errorf("fsm: not restoring a snapshot into a halted state machine: %w", err)
	}
	db, hdr, err := readSnapshot(rc, f.store.caches)
	if err != nil {
		return fmt.Errorf("fsm: restore snapshot: %w", err)
	}
	f.store.swap(db)
	f.counts = nil // recounted when next needed
	f.applied.Store(hdr.AppliedIndex)
	f.events.Reset(hdr.AppliedIndex)
	return nil
}

// readSnapshot reads a snapshot stream into a new database whose
// indexers use caches (nil: caches of its own).
func readSnapshot(r io.Reader, caches *indexCaches) (*memdb.MemDB, *snapshotHeader, error) {
	if caches == nil {
		caches = &indexCaches{}
	}
	dec := json.NewDecoder(bufio.NewReaderSize(r, 256<<10))
	dec.DisallowUnknownFields()
	var hdr snapshotHeader
	if err := dec.Decode(&hdr); err != nil {
		return nil, nil, fmt.Errorf("read header: %w", err)
	}
	if hdr.Version < 1 || hdr.Version > snapshotVersion {
		return nil, nil, fmt.Errorf("unsupported snapshot version %d (this build reads %d)", hdr.Version, snapshotVersion)
	}
	db, err := memdb.NewMemDB(schema(caches))
	if err != nil {
		return nil, nil, err
	}
	txn := db.Txn(true)
	defer txn.Abort()
	// The records are decoded on another goroutine while this one
	// inserts them, in order: JSON is about 60% of a restore and memdb's
	// inserts the rest, and a server that installs a snapshot has nothing
	// else to do (a new or far-behind follower catching up).
	recs := make(chan restoreBatch, 4)
	stop := make(chan struct{})
	defer close(stop)
	go decodeRecords(dec, recs, stop)
	n := 0
	for b := range recs {
		for i := range b.recs {
			if err := insertRecord(txn, &b.recs[i]); err != nil {
				return nil, nil, fmt.Errorf("record %d: %w", n, err)
			}
			n++
		}
		if b.err != nil {
			return nil, nil, fmt.Errorf("record %d: %w", n, b.err)
		}
	}
	txn.Commit()
	return db, &hdr, nil
}

// restoreBatch is records decoded in a row, then the error that ended
// the stream (nil while it goes on and at its end).
type restoreBatch struct {
	recs []snapshotRecord
	err  error
}

// restoreBatchSize is how many records go to the inserting goroutine at
// a time.
const restoreBatchSize = 256

// decodeRecords decodes dec's records into batches on recs until the
// stream ends (the last batch's err is the decode error, if any; io.EOF
// ends it cleanly) or stop closes, and closes recs.
func decodeRecords(dec *json.Decoder, recs chan<- restoreBatch, stop <-chan struct{}) {
	defer close(recs)
	b := restoreBatch{recs: make([]snapshotRecord, 0, restoreBatchSize)}
	for {
		b.recs = append(b.recs, snapshotRecord{})
		err := dec.Decode(&b.recs[len(b.recs)-1])
		if err != nil {
			b.recs = b.recs[:len(b.recs)-1]
			if !errors.Is(err, io.EOF) {
				b.err = err
			}
		}
		if err != nil || len(b.recs) == restoreBatchSize {
			select {
			case recs <- b:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
			b = restoreBatch{recs: make([]snapshotRecord, 0, restoreBatchSize)}
		}
	}
}

// insertRecord inserts one snapshot record into txn.
func insertRecord(txn *memdb.Txn, rec *snapshotRecord) error {
	if rec.count() != 1 {
		return fmt.Errorf("must hold exactly one of object, index, meta, acl_policy or acl_token")
	}
	switch {
	case rec.ACLPolicy != nil:
		return txn.Insert(tableACLPolicies, rec.ACLPolicy)
	case rec.ACLToken != nil:
		return txn.Insert(tableACLTokens, rec.ACLToken)
	case rec.Meta != nil:
		return txn.Insert(tableMeta, rec.Meta)
	case rec.Object != nil:
		o := rec.Object
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		return txn.Insert(tableObjects, o)
	default: // rec.Index, the one left
		return txn.Insert(tableIndex, rec.Index)
	}
}
