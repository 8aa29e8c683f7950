package controller

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/resource"
)

// Errors of the controller: the API's own (package resource), under the
// names this package uses. Raft's errors are mapped onto them once, here.
var (
	ErrNotLeader      = resource.ErrNotLeader
	ErrNoLeader       = resource.ErrNoLeader
	ErrLeadershipLost = resource.ErrLeadershipLost
	ErrShuttingDown   = resource.ErrShuttingDown
	ErrNotReady       = resource.ErrNotReady
	ErrUnknownServer  = resource.ErrUnknownServer
)

// mapRaftError maps hashicorp/raft's errors onto the controller's, so that
// no package above the controller needs to know Raft.
func mapRaftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w (%v)", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShuttingDown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: the write could not be enqueued in time", ErrNotReady)
	case errors.Is(err, raft.ErrNotVoter):
		return ErrNotLeader
	}
	return err
}
