package controller

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// TestMapRaftError: Raft's errors reach the API as the controller's own
// (package resource), so that nothing above the controller knows Raft.
func TestMapRaftError(t *testing.T) {
	other := errors.New("disk on fire")
	cases := []struct {
		in   error
		want error
	}{
		{raft.ErrNotLeader, ErrNotLeader},
		{fmt.Errorf("wrapped: %w", raft.ErrNotLeader), ErrNotLeader},
		{raft.ErrNotVoter, ErrNotLeader},
		{raft.ErrLeadershipLost, ErrLeadershipLost},
		{raft.ErrLeadershipTransferInProgress, ErrLeadershipLost},
		{raft.ErrRaftShutdown, ErrShuttingDown},
		{raft.ErrEnqueueTimeout, ErrNotReady},
		{other, other},
	}
	for _, tc := range cases {
		got := mapRaftError(tc.in)
		if !errors.Is(got, tc.want) {
			t.Errorf("mapRaftError(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if tc.want != other && errors.Is(got, tc.in) && tc.in != tc.want {
			// The raft error itself must not leak through %w.
			t.Errorf("mapRaftError(%v) = %v still wraps the raft error", tc.in, got)
		}
	}
}
