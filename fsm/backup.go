package fsm

import (
	"bytes"
	"fmt"
	"io"
	"maps"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// Backups (kumoi operator snapshot save / restore): the state machine's
// own snapshot stream (snapshot.go), taken at an applied index and
// described by a SnapshotInfo. A restore goes through Raft (raft.Restore
// on the leader, which installs the stream on every server); the stream is
// validated and prepared here first, because raft panics when the state
// machine refuses a snapshot it was told to restore.

// metaReplacedCluster is the meta table's key of the identity of the
// cluster whose state a restore replaced with another cluster's (forced):
// the controllers of that cluster adopt the snapshot's identity
// (cluster/controller/identity.go), where any other mismatch is refused.
const metaReplacedCluster = "replaced_cluster"

// SnapshotInfo describes a snapshot stream.
type SnapshotInfo struct {
	// Version is the stream's format (snapshotVersion or older).
	Version int `json:"state_version"`
	// AppliedIndex is the index of the last log entry the state holds.
	AppliedIndex uint64 `json:"index"`
	// ClusterID is the identity the state holds ("" for a cluster that
	// had none yet).
	ClusterID string `json:"cluster_id"`
	// Objects counts the objects per kind; ACLPolicies and ACLTokens the
	// ACL records.
	Objects     map[resource.Kind]int `json:"objects"`
	ACLPolicies int                   `json:"acl_policies"`
	ACLTokens   int                   `json:"acl_tokens"`
}

// SaveSnapshot writes the state as it is now (at the applied index) to w,
// in the stream Raft's snapshots use, and describes it. It is O(1) in
// locks (a memdb snapshot) and streams while writes go on. A halted state
// machine saves nothing.
func (f *FSM) SaveSnapshot(w io.Writer) (SnapshotInfo, error) {
	if err := f.Halted(); err != nil {
		return SnapshotInfo{}, fmt.Errorf("fsm: no snapshot of a halted state machine: %w", err)
	}
	db, _ := f.store.current()
	s := &fsmSnapshot{txn: db.Snapshot().Txn(false), applied: f.applied.Load()}
	info, err := s.writeInfo(w)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("fsm: save snapshot: %w", err)
	}
	return info, nil
}

// writeInfo writes s and describes what it wrote.
func (s *fsmSnapshot) writeInfo(w io.Writer) (SnapshotInfo, error) {
	info, err := describe(s.txn, s.applied)
	if err != nil {
		return info, err
	}
	info.Version = streamVersion(s.txn)
	return info, s.write(w)
}

// describe counts what txn holds.
func describe(txn *memdb.Txn, applied uint64) (SnapshotInfo, error) {
	info := SnapshotInfo{AppliedIndex: applied, Objects: map[resource.Kind]int{}}
	id, err := clusterIDTxn(txn, nil)
	if err != nil {
		return info, err
	}
	info.ClusterID = id
	it, err := txn.Get(tableObjects, indexID)
	if err != nil {
		return info, err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		info.Objects[raw.(*resource.Object).Kind]++
	}
	for table, n := range map[string]*int{tableACLPolicies: &info.ACLPolicies, tableACLTokens: &info.ACLTokens} {
		it, err := txn.Get(table, indexID)
		if err != nil {
			return info, err
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			*n++
		}
	}
	return info, nil
}

// ValidateSnapshot reads a whole snapshot stream as a restore would (every
// record decoded and indexed, duplicates refused) and describes it,
// without touching any state.
func ValidateSnapshot(r io.Reader) (SnapshotInfo, error) {
	db, hdr, err := readSnapshot(r, nil)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("fsm: invalid snapshot: %w", err)
	}
	info, err := describe(db.Txn(false), hdr.AppliedIndex)
	info.Version = hdr.Version
	return info, err
}

// PrepareRestore validates a snapshot stream for a restore through Raft
// (ErrBadPayload if it is not valid) and returns the stream to hand to
// raft.Restore, and the description of the stream it was given. identity
// is asked about the snapshot's cluster identity: it returns the identity
// the restore replaces (see below), or an error that stops the restore.
// The stream returned differs from the one given in two ways:
//
//   - its applied index and every kind's index are raised to at least
//     floor (one past the cluster's last log index): a client's blocking
//     query or event stream holding an index of the cluster being replaced
//     then sees the restored state as newer, not older;
//   - the identity replaced, when set, is recorded as the identity of the cluster the
//     restore replaces (a forced restore of another cluster's snapshot),
//     so that its controllers adopt the snapshot's identity.
func PrepareRestore(state io.Reader, floor uint64, identity func(theirs string) (replaced string, err error)) ([]byte, SnapshotInfo, error) {
	db, hdr, err := readSnapshot(state, nil)
	if err != nil {
		return nil, SnapshotInfo{}, fmt.Errorf("%w: invalid snapshot: %v", ErrBadPayload, err)
	}
	orig, err := describe(db.Txn(false), hdr.AppliedIndex)
	if err != nil {
		return nil, SnapshotInfo{}, err
	}
	orig.Version = hdr.Version
	replaced, err := identity(orig.ClusterID)
	if err != nil {
		return nil, SnapshotInfo{}, err
	}
	txn := db.Txn(true)
	it, err := txn.Get(tableIndex, indexID)
	if err != nil {
		txn.Abort()
		return nil, SnapshotInfo{}, err
	}
	var raise []*indexEntry
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if e := raw.(*indexEntry); e.Value < floor {
			raise = append(raise, &indexEntry{Key: e.Key, Value: floor})
		}
	}
	for _, e := range raise {
		if err := txn.Insert(tableIndex, e); err != nil {
			txn.Abort()
			return nil, SnapshotInfo{}, err
		}
	}
	if replaced != "" {
		if err := txn.Insert(tableMeta, &metaEntry{Key: metaReplacedCluster, Value: replaced}); err != nil {
			txn.Abort()
			return nil, SnapshotInfo{}, err
		}
	}
	txn.Commit()
	var buf bytes.Buffer
	s := &fsmSnapshot{txn: db.Txn(false), applied: max(hdr.AppliedIndex, floor)}
	if err := s.write(&buf); err != nil {
		return nil, SnapshotInfo{}, err
	}
	return buf.Bytes(), orig, nil
}

// ReplacedCluster is the identity of the cluster whose state a forced
// restore replaced with this state ("" if none did).
func (s *Store) ReplacedCluster(ws memdb.WatchSet) string {
	ch, raw, err := s.ReadTxn().FirstWatch(tableMeta, indexID, metaReplacedCluster)
	if err != nil {
		return ""
	}
	ws.Add(ch)
	if raw == nil {
		return ""
	}
	return raw.(*metaEntry).Value
}

// CountObjects is a SnapshotInfo's object count in all.
func (i SnapshotInfo) CountObjects() int {
	n := 0
	for v := range maps.Values(i.Objects) {
		n += v
	}
	return n
}
