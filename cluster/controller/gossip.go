package controller

import (
	"time"

	"github.com/kumoi/kumoi/cluster/membership"
)

// startGossip joins the controller to the gossip pool: it advertises its
// API and Raft addresses and --bootstrap-expect, records every member in
// c.members (waking the voter reconciler on each change), joins through
// --join in the background, heals partitions, and starts the bootstrap
// loop of a controller without state.
func (c *Controller) startGossip() error {
	d, err := membership.NewDelegate(membership.Meta{
		ID: c.cfg.NodeID, Role: membership.RoleController, API: c.cfg.APIAddr(), Raft: c.cfg.RaftAddr(), Expect: c.cfg.BootstrapExpect,
	}, c.members, c.triggerReconcile)
	if err != nil {
		return err
	}
	c.gossipDelegate = d
	ml, err := membership.Create(membership.Options{
		Name: c.cfg.NodeID, BindIP: c.cfg.BindIP, Port: c.cfg.GossipPort,
		ProbeInterval: c.cfg.GossipProbeInterval, ProbeTimeout: c.cfg.GossipProbeTimeout, SuspicionMult: c.cfg.GossipSuspicionMult,
		Logger: c.cfg.Logger.Named("gossip"),
	}, d)
	if err != nil {
		return err
	}
	c.gossip = ml
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		membership.Reconnect(ml, c.members, c.cfg.NodeID, c.cfg.Join, 2*time.Second, c.shutdownCh)
	}()
	if len(c.cfg.Join) > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			membership.Join(ml, c.cfg.Join, c.logger, c.shutdownCh)
		}()
	}
	if c.cfg.BootstrapExpect > 0 && !c.parts.hasState {
		c.wg.Add(1)
		go c.bootstrapLoop()
	}
	return nil
}
