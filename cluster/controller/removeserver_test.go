package controller

import (
	"context"
	"errors"
	"testing"

	"github.com/kumoi/kumoi/resource"
)

// TestRemoveOnlyVoterRefused: removing the only voting controller is
// refused with resource.ErrLastVoter (the API's 409), not attempted.
func TestRemoveOnlyVoterRefused(t *testing.T) {
	ic := newInmemCluster(t, 1)
	l := ic.leader(t)
	c := ic.ctrls[l]
	if _, err := c.RemoveServer(context.Background(), c.NodeID()); !errors.Is(err, resource.ErrLastVoter) {
		t.Fatalf("RemoveServer(only voter) = %v, want ErrLastVoter", err)
	}
	if l2 := ic.leader(t); l2 != l {
		t.Fatalf("leader changed")
	}
}
