package controller

import (
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/kumoi/kumoi/cluster/membership"
)

// startGossip joins the controller to the gossip pool: it advertises its
// API and Raft addresses and --bootstrap-expect, records every member in
// c.members (waking the voter reconciler on each change), joins through
// --join in the background, heals partitions, and starts the bootstrap
// loop of a controller without state. Agents of another cluster are
// refused (membership.Delegate).
func (c *Controller) startGossip() error {
	// A new node advertises its Raft address only once admitted
	// (admission.go).
	fresh := !c.admitted.Load()
	meta := membership.Meta{
		ID: c.cfg.NodeID, Role: membership.RoleController, Cluster: c.ClusterID(),
		Version: c.cfg.Version, Proto: c.cfg.MaxProtocol,
		API: c.cfg.APIAddr(), Raft: c.cfg.RaftAddr(), Expect: c.cfg.BootstrapExpect,
		DownGraceMS: c.cfg.HostDownGrace.Milliseconds(),
	}
	if fresh {
		meta.Raft = ""
	}
	d, err := membership.NewDelegate(meta, c.members, c.triggerReconcile, c.cfg.Logger.Named("gossip"))
	if err != nil {
		return err
	}
	ml, err := membership.Create(membership.Options{
		Name: c.cfg.NodeID, BindIP: c.cfg.BindIP, Port: c.cfg.GossipPort,
		ProbeInterval: c.cfg.GossipProbeInterval, ProbeTimeout: c.cfg.GossipProbeTimeout, SuspicionMult: c.cfg.GossipSuspicionMult,
		Logger: c.cfg.Logger.Named("gossip"),
	}, d)
	if err != nil {
		return err
	}
	c.gossipMu.Lock()
	c.gossip, c.gossipDelegate = ml, d
	c.gossipMu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		membership.Reconnect(ml, c.members, c.cfg.NodeID, c.cfg.Join, 2*time.Second, c.shutdownCh)
	}()
	if fresh {
		c.wg.Add(1)
		go c.admit()
	}
	if len(c.cfg.Join) > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			membership.Join(ml, c.cfg.Join, c.logger, c.shutdownCh)
		}()
	}
	// A node that already belongs to a cluster (its log, or its data
	// directory, says so) never bootstraps another.
	if c.cfg.BootstrapExpect > 0 && !c.parts.hasState && c.ClusterID() == "" {
		c.wg.Add(1)
		go c.bootstrapLoop()
	}
	return nil
}

// gossipParts returns the memberlist and delegate (nil before gossip
// starts, and with DisableGossip).
func (c *Controller) gossipParts() (*memberlist.Memberlist, *membership.Delegate) {
	c.gossipMu.Lock()
	defer c.gossipMu.Unlock()
	return c.gossip, c.gossipDelegate
}
