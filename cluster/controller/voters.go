package controller

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
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
	if c.gossip == nil {
		return
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
		c.logger.Info("adding controller as a raft voter", "server", id, "address", addr)
		if err := c.raft.AddVoter(id, addr, 0, c.cfg.ApplyTimeout).Error(); err != nil {
			c.logger.Warn("add voter failed", "server", id, "error", err)
		}
	}
}

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
