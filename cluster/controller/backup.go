package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
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

// checkNoWorkers refuses a restore while any host's worker runs (its host
// ready or draining): the restored state puts every VM back on the host
// and at the epoch it had at the save, and until the restore fences the
// hosts as a rejoin does, a VM that moved since could start on its old
// host while its new host still runs it, and volumes that moved or were
// created since would be deleted as orphans. Down and departed hosts run
// nothing of the cluster's (their workers fenced, docs/ha.md).
func (c *Controller) checkNoWorkers() error {
	hosts, err := c.fsm.State().List(nil, resource.KindHost, resource.Selector{})
	if err != nil {
		return err
	}
	var up []string
	for _, h := range hosts {
		st, err := resource.DecodeStatus[resource.HostStatus](h)
		if err != nil || st.State == resource.HostDown || st.State == resource.HostLeft {
			continue
		}
		up = append(up, h.Name)
	}
	if len(up) == 0 {
		return nil
	}
	shown := up
	if len(shown) > 10 {
		shown = shown[:10]
	}
	more := ""
	if len(up) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(up)-len(shown))
	}
	return fmt.Errorf("%w on %d hosts (%s%s): a restore under running workers can run a VM that moved since the save on two hosts and delete volumes that moved or were created since; stop those workers (their domains stopped), wait until kumoi host list shows the hosts down, then restore (docs/operations.md, \"Backup and restore\")",
		resource.ErrWorkersRunning, len(up), strings.Join(shown, ", "), more)
}

// RestoreSnapshot replaces the whole cluster's state with a snapshot
// stream's, through Raft (raft.Restore: the leader installs it and sends
// it to every follower), and returns once a quorum holds it. Leader only.
//
// A snapshot of another cluster (its identity differs from this one's) is
// refused with resource.ErrOtherCluster unless force: then the cluster takes
// the snapshot's identity too, as disaster recovery into a freshly
// bootstrapped cluster needs (its workers, domains and volumes carry the
// old identity). While any host's worker runs, a restore is refused with
// resource.ErrWorkersRunning (checkNoWorkers). Writes in flight when the restore lands fail; every index
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
	if err := c.checkNoWorkers(); err != nil {
		return out, err
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
