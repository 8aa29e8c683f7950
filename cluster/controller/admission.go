package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/resource"
)

// A controller that starts with an empty data directory (no Raft log, no
// cluster identity) is new. Before it advertises its Raft address (without
// which no leader adds it and no bootstrapping peer counts it), it makes
// sure that its --node-id is not already a server of the cluster it
// reaches: a node whose data directory was wiped must not come back as the
// same voter with an empty log and a forgotten term and vote, where one
// more fault could lose a committed write or elect two leaders in a term.
// The operator removes the old server first (kumoi cluster remove ID);
// then the node joins as a new server.

// nodeMarkerKey is where the stable store (raft.db) records the node UUID
// of the node that took part in Raft with it.
var nodeMarkerKey = []byte("kumoi_node_uuid")

// storeIsOwn reports whether the stable store was marked by this very node
// (its node UUID is recorded there). A node marks its store once it takes
// part in Raft (markStore: when admitted, or at start with Raft state). A
// node whose store is its own but holds no Raft state never took part in
// Raft — it was stopped between its admission and its first entry, e.g.
// right after another node bootstrapped the cluster with it — so it may
// resume its place without the admission check: it has no term, vote or
// log to have forgotten. A store without the mark (a wiped, or refused,
// node's), or with another node's, is a new one.
func storeIsOwn(stable raft.StableStore, nodeUUID string) bool {
	b, err := stable.Get(nodeMarkerKey)
	return err == nil && string(b) == nodeUUID
}

// markStore records this node's UUID in its stable store.
func markStore(stable raft.StableStore, nodeUUID string) error {
	if storeIsOwn(stable, nodeUUID) {
		return nil
	}
	if err := stable.Set(nodeMarkerKey, []byte(nodeUUID)); err != nil {
		return fmt.Errorf("record the node identity in the raft store: %w", err)
	}
	return nil
}

// ErrStillAServer: this new node's id is a voter of the cluster already.
var ErrStillAServer = errors.New("this node's id is still a server of the cluster")

// Failed is closed when the controller has failed in a way that needs the
// operator (FailErr says how); the agent then exits non-zero.
func (c *Controller) Failed() <-chan struct{} { return c.failedCh }

// FailErr says why the controller failed, or nil.
func (c *Controller) FailErr() error {
	c.failMu.Lock()
	defer c.failMu.Unlock()
	return c.failErr
}

// fail records the first fatal error, logs it, and closes Failed.
func (c *Controller) fail(err error) {
	c.failMu.Lock()
	defer c.failMu.Unlock()
	if c.failErr != nil {
		return
	}
	c.failErr = err
	c.logger.Error("controller out of service", "error", err)
	close(c.failedCh)
}

// admit runs once for a new node after it joined gossip: it waits until
// it can tell whether its node id is free, then advertises its Raft
// address; if the id is taken, the controller fails.
func (c *Controller) admit() {
	defer c.wg.Done()
	lastLog := time.Time{}
	for {
		wait := c.members.Changed()
		ok, joining, err := c.checkAdmission()
		switch {
		case err != nil && errors.Is(err, ErrStillAServer):
			c.fail(err)
			return
		case ok && !joining:
			// Its store is marked before any peer can count it in a
			// bootstrap configuration (advertiseRaft), so that a restart
			// after that finds it its own.
			c.openRaft("new node admitted to bootstrap a new cluster")
			c.advertiseRaft()
			return
		case ok:
			c.advertiseRaft()
			c.awaitAddition()
			return
		case time.Since(lastLog) > 10*time.Second:
			lastLog = time.Now()
			c.logger.Info("new node: waiting to reach a controller of the cluster through gossip (--join) before joining Raft", "reason", err)
		}
		select {
		case <-c.shutdownCh:
			return
		case <-wait:
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkAdmission reports whether this new node may advertise its Raft
// address: its id is not a voter of the cluster the other controllers
// belong to, or it was started to bootstrap a cluster (--bootstrap-expect
// N), N controllers are in the pool and none belongs to a cluster yet.
//
// joining is true when the node joins an existing cluster: its Raft
// connections then stay refused until the leader has added it
// (awaitAddition).
func (c *Controller) checkAdmission() (ok, joining bool, err error) {
	var lastErr error
	inCluster, seen := 0, 1 // seen counts this node
	for _, m := range c.members.Controllers() {
		if m.Meta.ID == c.cfg.NodeID || m.Meta.API == "" {
			continue
		}
		seen++
		st, err := c.peerStatus(context.Background(), m.Meta.API)
		if err != nil {
			lastErr = err
			continue
		}
		if st.ClusterID == "" {
			continue
		}
		inCluster++
		cl, err := c.peerCluster(m.Meta.API)
		if err != nil {
			lastErr = fmt.Errorf("cannot read the raft configuration through %s: %w", m.Meta.ID, err)
			continue
		}
		// Only a voter's place matters: a non-voter has no vote to forget
		// and no say in commits, so a new node may take it (it replicates
		// the log and is promoted like any new server).
		if i := slices.IndexFunc(cl.Servers, func(s resource.Server) bool { return s.ID == c.cfg.NodeID && s.Voter }); i >= 0 {
			return false, false, fmt.Errorf("%w: node id %s is a %s of cluster %s (at %s), and this node starts with an empty data directory (%s): "+
				"it would take that server's place with an empty log. If the old node is gone for good, run "+
				"'kumoi cluster remove %s' on the cluster first; then start this node again and it joins as a new server",
				ErrStillAServer, c.cfg.NodeID, cl.Servers[i].Role, cl.ClusterID, cl.Servers[i].Address, c.cfg.DataDir, c.cfg.NodeID)
		}
		return true, true, nil
	}
	if inCluster == 0 && c.cfg.BootstrapExpect > 0 && seen >= c.cfg.BootstrapExpect {
		return true, false, nil // a new cluster is forming: all its controllers are here, none has a cluster
	}
	if lastErr == nil {
		lastErr = errors.New("no controller of a cluster is in the gossip pool yet")
	}
	return false, false, lastErr
}

// peerCluster asks a controller for GET /v1/cluster (the leader's view:
// the controller forwards it).
func (c *Controller) peerCluster(apiAddr string) (*resource.Cluster, error) {
	var cl resource.Cluster
	if err := c.peerGet(context.Background(), apiAddr, "/v1/cluster", 3*time.Second, &cl); err != nil {
		return nil, err
	}
	return &cl, nil
}

// advertiseRaft adds this node's Raft address to its gossip metadata: from
// now on leaders may add it and bootstrapping peers count it.
func (c *Controller) advertiseRaft() {
	c.gossipMu.Lock()
	defer c.gossipMu.Unlock()
	d, ml := c.gossipDelegate, c.gossip
	if d == nil || ml == nil {
		return
	}
	m := d.Meta()
	m.Raft = c.cfg.RaftAddr()
	if err := d.SetMeta(m); err != nil {
		c.logger.Warn("cannot update the gossip metadata", "error", err)
		return
	}
	_ = ml.UpdateNode(time.Second)
}

// openRaft lets Raft connections in: the node takes part in Raft.
func (c *Controller) openRaft(why string) {
	if err := markStore(c.parts.stable, c.nodeUUID); err != nil {
		c.logger.Error("cannot mark the raft store as this node's", "error", err)
	}
	c.admitted.Store(true)
	c.logger.Info(why + "; taking part in raft")
}

// awaitAddition keeps a node that joins an existing cluster out of Raft
// until the leader has added it to the configuration (as a non-voter):
// until then a connection could only come from a replication to the old
// server of the same id and address (one the leader has not stopped yet
// after its removal), which must not feed this new node the old server's
// log and configuration.
func (c *Controller) awaitAddition() {
	c.logger.Info("new node admitted: its id is not a voter of the cluster; advertising its raft address and waiting for the leader to add it")
	lastLog := time.Now()
	for {
		for _, m := range c.members.Controllers() {
			if m.Meta.ID == c.cfg.NodeID || m.Meta.API == "" || m.Meta.Cluster == "" {
				continue
			}
			cl, err := c.peerCluster(m.Meta.API)
			if err != nil {
				continue
			}
			if slices.ContainsFunc(cl.Servers, func(s resource.Server) bool {
				return s.ID == c.cfg.NodeID && s.Address == c.cfg.RaftAddr()
			}) {
				c.openRaft("the leader added this node to the raft configuration")
				return
			}
			break
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			c.logger.Info("new node: waiting for the leader to add it to the raft configuration")
		}
		select {
		case <-c.shutdownCh:
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}
