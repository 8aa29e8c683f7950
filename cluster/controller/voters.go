package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/cluster/membership"
)

// reconcileVotersLoop keeps the Raft configuration in step with the alive
// controllers of this cluster in the gossip pool, on gossip events and
// periodically: a new controller joins as a non-voter, and is promoted to
// voter once its log has caught up (checked every promoteInterval while
// some server waits).
func (c *Controller) reconcileVotersLoop(ctx context.Context) {
	const promoteInterval = 250 * time.Millisecond
	for {
		wait := c.cfg.ReconcileInterval
		if c.reconcileVoters(ctx) {
			wait = min(wait, promoteInterval)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-c.reconcileCh:
			t.Stop()
		}
	}
}

// reconcileVoters adds the alive controllers of this cluster that are not
// servers yet as non-voters, promotes the non-voters that caught up, and
// reports whether some non-voter still waits.
func (c *Controller) reconcileVoters(ctx context.Context) (waiting bool) {
	if ml, _ := c.gossipParts(); ml == nil {
		return false
	}
	mine := c.ClusterID()
	if mine == "" {
		return false // the cluster has no identity yet: add no one
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false
	}
	known := map[raft.ServerID]raft.Server{}
	for _, s := range f.Configuration().Servers {
		known[s.ID] = s
	}
	for _, m := range c.members.AliveControllers() {
		id := raft.ServerID(m.Meta.ID)
		addr := raft.ServerAddress(m.Meta.Raft)
		s, ok := known[id]
		switch {
		case ok && s.Address == addr && s.Suffrage == raft.Voter:
			continue
		case ok && s.Address == addr && s.Suffrage == raft.Nonvoter:
			if !c.promote(ctx, m) {
				waiting = true
			}
			continue
		}
		if c.recentlyRemoved(string(id)) && m.Meta.Cluster != "" {
			// A removed node still running with its old state (gossip
			// takes a few probes to notice it died); a new node of the
			// same id, with an empty data directory, may join.
			continue
		}
		if err := c.mayJoin(m); err != nil {
			c.logger.Debug("not adding controller to the raft configuration", "server", id, "address", addr, "reason", err)
			continue
		}
		// With TLS, its role=controller metadata proves nothing: its Raft
		// address must present a server certificate of the cluster CA
		// (refusals are logged by raftCertOK).
		if err := c.raftCertOK(m); err != nil {
			continue
		}
		c.logger.Info("adding controller as a raft non-voter; it becomes a voter once it has caught up", "server", id, "address", addr)
		if err := c.raft.AddNonvoter(id, addr, 0, c.cfg.ApplyTimeout).Error(); err != nil {
			c.logger.Warn("add non-voter failed", "server", id, "error", err)
		}
		waiting = true
	}
	return waiting
}

// promote makes a non-voter a voter once it belongs to this cluster (it
// has applied the cluster's identity) and has applied everything that
// was committed when the check began. It reports whether it promoted.
func (c *Controller) promote(ctx context.Context, m membership.Member) bool {
	if m.Meta.Cluster != c.ClusterID() {
		return false // it has not replicated as far as the identity yet
	}
	commit := c.raft.CommitIndex()
	st, err := c.peerStatus(ctx, m.Meta.API)
	if err != nil || st.ClusterID != c.ClusterID() || st.AppliedIndex < commit {
		return false
	}
	id, addr := raft.ServerID(m.Meta.ID), raft.ServerAddress(m.Meta.Raft)
	if err := c.raft.AddVoter(id, addr, 0, c.cfg.ApplyTimeout).Error(); err != nil {
		c.logger.Warn("promotion to voter failed", "server", id, "error", err)
		return false
	}
	c.logger.Info("promoted a caught-up server to voter", "server", id, "applied", st.AppliedIndex, "commit", commit)
	return true
}

// mayJoin says whether a controller seen in gossip may be added to this
// cluster's Raft configuration: it belongs to this cluster, or it belongs
// to none and has no log at all (a new node). A node that bootstrapped a
// cluster of its own, and does not know its identity yet, has a log: it is
// not added, so two clusters never merge.
func (c *Controller) mayJoin(m membership.Member) error {
	switch theirs := m.Meta.Cluster; {
	case theirs == c.ClusterID():
		return nil
	case theirs != "":
		return fmt.Errorf("it belongs to cluster %s, this one is %s", theirs, c.ClusterID())
	}
	st, err := c.peerStatus(context.Background(), m.Meta.API)
	if err != nil {
		return fmt.Errorf("cannot ask it whether it has a log: %w", err)
	}
	if st.ClusterID != "" && st.ClusterID != c.ClusterID() {
		return fmt.Errorf("it belongs to cluster %s, this one is %s", st.ClusterID, c.ClusterID())
	}
	if st.LastLogIndex > 0 || st.LeaderID != "" {
		return fmt.Errorf("it has a log (last index %d, leader %q) but no cluster identity yet", st.LastLogIndex, st.LeaderID)
	}
	return nil
}

// TriggerReconcile asks the leader's voter reconciler to run now (it also
// runs on every gossip event and every ReconcileInterval).
func (c *Controller) TriggerReconcile() { c.triggerReconcile() }

// triggerReconcile asks the leader's reconcile loop to run now.
func (c *Controller) triggerReconcile() {
	select {
	case c.reconcileCh <- struct{}{}:
	default:
	}
}

// recentlyRemoved reports whether id was removed in the last 30 s.
func (c *Controller) recentlyRemoved(id string) bool {
	c.removedMu.Lock()
	defer c.removedMu.Unlock()
	t, ok := c.removed[id]
	if ok && time.Since(t) > 30*time.Second {
		delete(c.removed, id)
		return false
	}
	return ok
}
