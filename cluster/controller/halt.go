package controller

import (
	"errors"
	"fmt"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// A controller whose state machine halts (fsm: a committed log entry this
// build cannot apply) takes itself out of service: it logs why and what
// to do, and shuts its Raft node down, so that it neither votes nor leads
// with a state that diverges from the other replicas. Its API keeps
// answering GET /v1/status (health "halted") and /metrics and refuses
// everything else (cluster/api); `kumoi agent` then exits non-zero
// (cluster/agent). Restarting the same build replays the log and halts
// again at the same entry.

// Halted returns why this controller's state machine halted (an error
// wrapping fsm.ErrHalted, with what the operator should do), or nil.
func (c *Controller) Halted() error {
	err := c.fsm.Halted()
	if err == nil {
		return nil
	}
	return &haltedError{err: err, node: c.cfg.NodeID}
}

// haltRaftGrace is how long a halted controller keeps its Raft node
// running before shutting it down: long enough for the other servers to
// learn that the halting entry is committed (so that they too apply it, or
// halt on it) when this node is the leader. It proposes nothing meanwhile
// (Apply refuses).
var haltRaftGrace = 2 * time.Second

// HaltedCh is closed when this controller's state machine halts.
func (c *Controller) HaltedCh() <-chan struct{} { return c.fsm.HaltedCh() }

// haltedError is Halted's error: the FSM's, with the operator's way out.
type haltedError struct {
	err  error
	node string
}

func (e *haltedError) Error() string {
	return fmt.Sprintf("%v. This build of kumoi cannot apply the cluster's replicated log, so controller %s stopped applying it and "+
		"left Raft rather than diverge from the other replicas; it serves no requests. "+
		"Upgrade it to the cluster's newer version, or remove it (kumoi cluster remove %s) and replace it with a node with an empty data dir",
		e.err, e.node, e.node)
}

func (e *haltedError) Unwrap() error { return e.err }

// watchHalt waits for the state machine to halt and then takes the
// controller out of service.
func (c *Controller) watchHalt() {
	defer c.wg.Done()
	select {
	case <-c.shutdownCh:
		return
	case <-c.fsm.HaltedCh():
	}
	err := c.Halted()
	var he *fsm.HaltError
	errors.As(err, &he)
	c.logger.Error("STATE MACHINE HALTED: this controller cannot apply a committed log entry and is out of service; "+
		"upgrade it, or remove and replace the node",
		"index", he.Index, "type", he.Type.String(), "cause", he.Cause, "applied_index", c.fsm.AppliedIndex(), "error", err)
	select {
	case <-c.shutdownCh:
		return // Shutdown stops raft
	case <-time.After(haltRaftGrace):
	}
	if ferr := c.raft.Shutdown().Error(); ferr != nil {
		c.logger.Error("shutting down raft after the halt", "error", ferr)
	}
	c.logger.Error("raft stopped: this controller neither votes nor leads until it is restarted with a build that can apply the log, or replaced")
}

// health fills st's health fields.
func (c *Controller) health(st *resource.Status) {
	st.Health = resource.HealthOK
	if err := c.Halted(); err != nil {
		st.Health, st.HealthReason = resource.HealthHalted, err.Error()
	}
}
