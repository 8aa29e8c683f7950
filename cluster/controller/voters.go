package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/cluster/membership"
)

// reconcileVotersLoop makes every alive controller in the gossip pool a
// raft voter, on gossip events and periodically.
func (c *Controller) reconcileVotersLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		c.reconcileVoters()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.reconcileCh:
		}
	}
}

func (c *Controller) reconcileVoters() {
	if ml, _ := c.gossipParts(); ml == nil {
		return
	}
	mine := c.ClusterID()
	if mine == "" {
		return // the cluster has no identity yet: add no one
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	known := map[raft.ServerID]raft.Server{}
	for _, s := range f.Configuration().Servers {
		known[s.ID] = s
	}
	for _, m := range c.members.AliveControllers() {
		id := raft.ServerID(m.Meta.ID)
		addr := raft.ServerAddress(m.Meta.Raft)
		if s, ok := known[id]; ok && s.Address == addr && s.Suffrage == raft.Voter {
			continue
		}
		if c.recentlyRemoved(string(id)) {
			continue
		}
		if err := c.mayJoin(m); err != nil {
			c.logger.Debug("not adding controller as a raft voter", "server", id, "address", addr, "reason", err)
			continue
		}
		c.logger.Info("adding controller as a raft voter", "server", id, "address", addr)
		if err := c.raft.AddVoter(id, addr, 0, c.cfg.ApplyTimeout).Error(); err != nil {
			c.logger.Warn("add voter failed", "server", id, "error", err)
		}
	}
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
	st, err := peerStatus(m.Meta.API)
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
