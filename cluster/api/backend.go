package api

import (
	"context"
	"io"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Backend is what the HTTP API needs from a controller.
// *controller.Controller implements it (cluster/agent checks that); tests
// implement it over a bare FSM. Its errors are resource's: ErrNotLeader,
// ErrNoLeader, ErrLeadershipLost, ErrShuttingDown, ErrNotReady and
// ErrUnknownServer (the controller maps Raft's own errors onto them).
type Backend interface {
	// NodeID is this controller's id.
	NodeID() string
	// Apply proposes a command through Raft and waits until it is applied
	// on this node. On a follower it returns resource.ErrNotLeader; the command's
	// business errors are in Result.Err.
	Apply(ctx context.Context, t fsm.MessageType, req any) (*fsm.Result, error)
	// ConsistentRead returns once the local state reflects every write
	// acknowledged before the call (leader only: resource.ErrNotLeader
	// otherwise, resource.ErrNotReady before the leader's first barrier).
	ConsistentRead(ctx context.Context) error
	// FSM is the local state machine (state store and event buffer).
	FSM() *fsm.FSM
	// IsLeader reports whether this node currently believes it leads.
	IsLeader() bool
	// Leader returns the leader's node id and API address ("" if unknown).
	Leader() (id, apiAddr string)
	// Status is GET /v1/status.
	Status() resource.Status
	// Cluster is GET /v1/cluster (read on the leader for an
	// authoritative configuration; any node may answer with ?stale).
	Cluster(ctx context.Context) (resource.Cluster, error)
	// RemoveServer removes a Raft server (leader only).
	RemoveServer(ctx context.Context, id string) (uint64, error)
	// TransferLeader hands leadership to the voter to (any voter when
	// "") and returns the new leader's id (leader only).
	TransferLeader(ctx context.Context, to string) (string, error)
	// SaveSnapshot writes the state, as of a linearizable read, to w (the
	// state machine's snapshot stream) and describes it (leader only).
	SaveSnapshot(ctx context.Context, w io.Writer) (resource.SnapshotMeta, error)
	// RestoreSnapshot replaces the cluster's state with a snapshot
	// stream's through Raft (leader only): resource.ErrBadSnapshot if it
	// is not valid, resource.ErrOtherCluster if it is another cluster's
	// and not force.
	RestoreSnapshot(ctx context.Context, state []byte, force bool) (resource.SnapshotRestoreResponse, error)
}
