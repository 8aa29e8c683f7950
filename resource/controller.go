package resource

import (
	"errors"
	"time"
)

// Errors a controller returns to its API (cluster/controller maps Raft's
// own errors onto these once, so that nothing above it needs to know Raft).
var (
	// ErrNotLeader: this node is not the leader; forward to the leader.
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
	// ErrLastVoter: cluster remove was asked to remove the only voting
	// server; the cluster would have no quorum ever again.
	ErrLastVoter = errors.New("it is the only voting controller: removing it would leave the cluster without a quorum, unable to accept any write again; add another controller first (kumoi agent --controller --join), or stop this one instead")
	// ErrUpgradeRequired: a command needs a log protocol that some server
	// of the cluster does not speak yet; nothing was proposed.
	ErrUpgradeRequired = errors.New("some controllers must be upgraded first")
	// ErrCannotTransfer: a leadership transfer was asked for that cannot
	// be made (the target already leads, does not vote yet, or there is no
	// other voter).
	ErrCannotTransfer = errors.New("cannot transfer leadership")
	// ErrOtherCluster: a snapshot restore was given another cluster's
	// snapshot without force; nothing changed.
	ErrOtherCluster = errors.New("the snapshot is of another cluster")
	// ErrBadSnapshot: a snapshot restore was given a file or stream that
	// is not a valid snapshot; nothing changed.
	ErrBadSnapshot = errors.New("not a valid kumoi snapshot")
	// ErrWorkersRunning: a snapshot restore was asked for while hosts'
	// workers run (a host ready or draining); nothing changed. A restore
	// puts every VM back where it was at the save, and nothing yet stops
	// a VM that moved since from starting on its old host before its new
	// host has destroyed it (docs/operations.md, "Backup and restore").
	ErrWorkersRunning = errors.New("workers are running")
)

// DefaultHostDownGrace is how long a host stays down before its VMs are
// evacuated (ha=restart VMs placed elsewhere), and after which a VM on a
// down host may be migrated while it is to run. It must exceed the
// workers' fence-after plus a margin: see docs/ha.md.
const DefaultHostDownGrace = 3500 * time.Millisecond
