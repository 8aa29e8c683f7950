package cluster

import (
	"context"
	"errors"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Errors of the controller. Raft's own errors are mapped onto these.
var (
	// ErrNotLeader: this node is not the leader; forward to LeaderAPIAddr.
	ErrNotLeader = errors.New("this controller is not the leader")
	// ErrNoLeader: no leader is known (election in progress or no quorum).
	ErrNoLeader = errors.New("no cluster leader is known; an election may be in progress or a quorum of controllers is down")
	// ErrLeadershipLost: the command was proposed but leadership was lost
	// before it committed; it may or may not have been applied.
	ErrLeadershipLost = errors.New("leadership lost while the write was in flight; it may or may not have been applied")
	// ErrShuttingDown: the controller is stopping.
	ErrShuttingDown = errors.New("this controller is shutting down")
	// ErrNotReady: the leader has not yet applied its barrier, so it cannot
	// serve linearizable reads yet.
	ErrNotReady = errors.New("the leader is still catching up; retry shortly")
	// ErrUnknownServer: cluster remove was given an id not in the configuration.
	ErrUnknownServer = errors.New("no such server in the raft configuration")
)

// Backend is what the HTTP API needs from a controller. *Controller
// implements it; tests may implement it over a bare FSM.
type Backend interface {
	// NodeID is this controller's id.
	NodeID() string
	// Apply proposes a command through Raft and waits until it is applied
	// on this node. On a follower it returns ErrNotLeader; the command's
	// business errors are in Result.Err.
	Apply(ctx context.Context, t fsm.MessageType, req any) (*fsm.Result, error)
	// ConsistentRead returns once the local state reflects every write
	// acknowledged before the call (leader only: ErrNotLeader otherwise,
	// ErrNotReady before the leader's first barrier).
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
}
