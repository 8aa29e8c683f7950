package controller

import (
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
)

// TestACLInitialManagement: every controller has the same initial
// management secret; the first leader bootstraps ACLs with it, and a later
// leader finds them bootstrapped (one token, the same everywhere).
func TestACLInitialManagement(t *testing.T) {
	const secret = "0f1e2d3c-4b5a-4697-8877-665544332211"
	ic := newInmemCluster(t, 3, func(c *Config) { c.ACL, c.ACLInitialManagement = true, secret })
	first := ic.leader(t)
	testcluster.WaitFor(t, 10*time.Second, "bootstrapped everywhere", func() (bool, error) {
		for _, c := range ic.ctrls {
			if !c.FSM().State().ACLBootstrapped(nil) || c.FSM().State().ACLTokenBySecret(secret) == nil {
				return false, nil
			}
		}
		return true, nil
	})
	ic.isolate(first)
	var others []int
	for i := range ic.ctrls {
		if i != first {
			others = append(others, i)
		}
	}
	second := ic.leader(t, others...)
	ic.heal()
	// The new leader's bootstrap loop ran (and found it done): still one
	// token, on every node.
	testcluster.WaitFor(t, 10*time.Second, "one token everywhere", func() (bool, error) {
		for _, c := range ic.ctrls {
			if len(c.FSM().State().ACLTokens(nil)) != 1 {
				return false, nil
			}
		}
		return ic.ctrls[second].FSM().AppliedIndex() > 0, nil
	})
	if ic.ctrls[0].InternalSecret() == "" || ic.ctrls[0].InternalSecret() == ic.ctrls[1].InternalSecret() {
		t.Fatal("internal secrets are empty or shared between controllers")
	}
}
