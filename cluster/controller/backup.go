package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// restoreTimeout bounds a restore's wait for Raft to take the snapshot
// and for the followers to install it.
const restoreTimeout = 5 * time.Minute

// SaveSnapshot writes the cluster's state, as of a linearizable read, to w
// (the state machine's snapshot stream) and describes it (the archive's
// size and checksum are the caller's). Leader only.
func (c *Controller) SaveSnapshot(ctx context.Context, w io.Writer) (resource.SnapshotMeta, error) {
	if err := c.ConsistentRead(ctx); err != nil {
		return resource.SnapshotMeta{}, err
	}
	info, err := c.fsm.SaveSnapshot(w)
	if err != nil {
		return resource.SnapshotMeta{}, err
	}
	return resource.SnapshotMeta{
		ClusterID: info.ClusterID, Index: info.AppliedIndex,
		Version: c.cfg.Version, Protocol: c.cfg.MaxProtocol, StateVersion: info.Version,
		Node: c.cfg.NodeID, Created: time.Now().UTC(),
		Objects: info.Objects, ACLPolicies: info.ACLPolicies, ACLTokens: info.ACLTokens,
	}, nil
}

// RestoreSnapshot replaces the whole cluster's state with a snapshot
// stream's, through Raft (raft.Restore: the leader installs it and sends
// it to every follower), and returns once a quorum holds it. Leader only.
//
// A snapshot of another cluster (its identity differs from this one's) is
// refused with resource.ErrOtherCluster unless force: then the cluster takes
// the snapshot's identity too, as disaster recovery into a freshly
// bootstrapped cluster needs (its workers, domains and volumes carry the
// old identity). Writes in flight when the restore lands fail; every index
// of the restored state is raised above this cluster's last one, so that
// clients' blocking queries and event streams see it as new.
func (c *Controller) RestoreSnapshot(ctx context.Context, state []byte, force bool) (resource.SnapshotRestoreResponse, error) {
	var out resource.SnapshotRestoreResponse
	if err := c.ConsistentRead(ctx); err != nil {
		return out, err
	}
	c.restoreMu.Lock()
	defer c.restoreMu.Unlock()
	cur := c.ClusterID()
	if cur == "" {
		// Its followers may already hold the identity this leader has
		// not adopted yet: compare against it first.
		return out, fmt.Errorf("%w: this cluster has no identity yet (its first leader is choosing it); retry shortly", ErrNotReady)
	}
	floor := c.raft.LastIndex() + 1
	var replaced string
	data, info, err := fsm.PrepareRestore(bytes.NewReader(state), floor, func(theirs string) (string, error) {
		if theirs == cur {
			return "", nil
		}
		if !force {
			return "", fmt.Errorf("%w: it was saved from cluster %s, this is cluster %s; restore it with force to replace this cluster's state and identity with the snapshot's (disaster recovery into a new cluster)",
				resource.ErrOtherCluster, theirs, cur)
		}
		replaced = cur
		return cur, nil
	})
	if errors.Is(err, fsm.ErrBadPayload) {
		return out, fmt.Errorf("%w: %v", resource.ErrBadSnapshot, err)
	}
	if err != nil {
		return out, err
	}
	c.logger.Warn("restoring a snapshot: the cluster's state is being replaced",
		"snapshot_cluster", info.ClusterID, "cluster", cur, "objects", info.CountObjects(), "bytes", len(data))
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: max(info.AppliedIndex, floor), Size: int64(len(data))}
	if err := c.raft.Restore(meta, bytes.NewReader(data), restoreTimeout); err != nil {
		return out, mapRaftError(err)
	}
	c.logger.Warn("restored a snapshot", "cluster", info.ClusterID, "replaced_cluster", replaced, "index", c.raft.LastIndex())
	return resource.SnapshotRestoreResponse{
		ClusterID: info.ClusterID, Replaced: replaced,
		SnapshotIndex: info.AppliedIndex, Index: c.raft.LastIndex(), Objects: info.Objects,
	}, nil
}
