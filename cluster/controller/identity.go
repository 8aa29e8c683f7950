package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kumoi/kumoi/cluster/internal/datadir"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/fsm"
)

// clusterIDFile is where a controller keeps the identity of its cluster,
// in its data directory, so that it knows it before its log is replayed.
const clusterIDFile = "cluster_id"

// nodeUUIDFile holds the node's own identity, created with its data
// directory: a wiped and restarted node gets a new one.
const nodeUUIDFile = "node_uuid"

// NodeUUID returns this node's persistent identity (beside its --node-id,
// which an operator may reuse for a new node).
func (c *Controller) NodeUUID() string { return c.nodeUUID }

// readOrCreateNodeUUID reads the node's identity from its data directory,
// creating it there the first time (without a data directory, a new one
// per process).
func readOrCreateNodeUUID(dataDir string) (string, error) {
	if dataDir == "" {
		return uuid.NewString(), nil
	}
	id, err := datadir.ReadUUID(dataDir, nodeUUIDFile, "node id", "remove the file to give the node a new one")
	if err != nil || id != "" {
		return id, err
	}
	id = uuid.NewString()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	return id, datadir.WriteSync(dataDir, nodeUUIDFile, id)
}

// ClusterID returns the identity of this controller's cluster: the one its
// data directory remembers, or the one its replicated state holds once the
// first leader has chosen it; "" before that.
func (c *Controller) ClusterID() string {
	c.idMu.Lock()
	defer c.idMu.Unlock()
	return c.clusterID
}

// readClusterID reads the cluster identity the data directory remembers.
func readClusterID(dataDir string) (string, error) {
	return datadir.ReadUUID(dataDir, clusterIDFile, "cluster id",
		"restore it from a backup, or remove the whole data directory and join the node as a new one")
}

// writeClusterID records id in the data directory.
func writeClusterID(dataDir, id string) error {
	if dataDir == "" {
		return nil
	}
	return datadir.WriteSync(dataDir, clusterIDFile, id)
}

// watchClusterID adopts the identity the replicated state holds once it
// appears: it is recorded in the data directory and advertised in gossip.
// A replicated identity that differs from the one the data directory
// remembers is logged as an error and not adopted, unless the state says a
// forced snapshot restore replaced this very cluster (backup.go).
func (c *Controller) watchClusterID() {
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-c.shutdownCh
		cancel()
	}()
	defer cancel()
	st := c.fsm.State()
	for {
		ws := memdb.NewWatchSet()
		ws.Add(st.AbandonCh())
		id := st.ClusterID(ws)
		if id != "" {
			c.adoptClusterID(id)
		}
		if !st.Watch(ctx, ws) {
			return
		}
		st = c.fsm.State()
	}
}

func (c *Controller) adoptClusterID(id string) {
	// Only the watcher adopts: read, record on disk, then publish, so
	// that a node that shows an identity (ClusterID, /v1/status) has it
	// in its data directory too.
	switch cur := c.ClusterID(); {
	case cur == id:
		return
	case cur != "" && c.fsm.State().ReplacedCluster(nil) == cur:
		// A forced restore of another cluster's snapshot replaced
		// this cluster's state (backup.go): take its identity.
		c.logger.Warn("a snapshot restore replaced this cluster's state with another cluster's: adopting its identity",
			"cluster", id, "replaced_cluster", cur, "data_dir", c.cfg.DataDir)
	case cur != "":
		c.logger.Error("the replicated state names another cluster than the one this node's data directory belongs to; not adopting it",
			"cluster", cur, "replicated_cluster", id, "data_dir", c.cfg.DataDir)
		return
	}
	if err := writeClusterID(c.cfg.DataDir, id); err != nil {
		c.logger.Error("cannot record the cluster identity", "cluster", id, "error", err)
	}
	c.idMu.Lock()
	c.clusterID = id
	c.idMu.Unlock()
	c.logger.Info("cluster identity", "cluster", id)
	c.advertise()
}

// advertise updates this controller's gossip metadata (the cluster
// identity) and sends it to the pool.
func (c *Controller) advertise() {
	c.gossipMu.Lock() // not gossipParts: Shutdown's leave update must not interleave
	defer c.gossipMu.Unlock()
	d, ml := c.gossipDelegate, c.gossip
	if d == nil || ml == nil {
		return
	}
	m := d.Meta()
	m.Cluster = c.ClusterID()
	if err := d.SetMeta(m); err != nil {
		c.logger.Warn("cannot update the gossip metadata", "error", err)
		return
	}
	_ = ml.UpdateNode(time.Second)
}

// identityLoop (leader only) gives a new cluster its identity: the first
// leader proposes a UUID (the one its data directory remembers, if any),
// retrying until it is applied.
func (c *Controller) identityLoop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if c.fsm.State().ClusterID(nil) != "" {
			return
		}
		id := c.ClusterID()
		if id == "" {
			id = uuid.NewString()
		}
		_, err := c.Propose(ctx, fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{Time: time.Now().UTC(), ID: id})
		if err == nil || errors.Is(err, fsm.ErrExists) {
			continue
		}
		c.logger.Warn("cannot record the cluster identity yet; retrying", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
