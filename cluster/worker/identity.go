package worker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/kumoi/kumoi/cluster/internal/datadir"

	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/hypervisor"
)

// ClusterIDFile is where a worker with a data directory keeps the identity
// of its cluster.
const ClusterIDFile = "cluster_id"

// ErrOtherCluster: the controllers this worker reached belong to another
// cluster than the one its data directory remembers; the worker stops.
var ErrOtherCluster = errors.New("this worker belongs to another cluster than its controllers")

// readClusterID reads the identity dir remembers ("" if none).
func readClusterID(dir string) (string, error) {
	return datadir.ReadUUID(dir, ClusterIDFile, "cluster id",
		"restore it, or remove it to let the worker learn its cluster from its controllers again (Kumoi domains of another cluster on this host are then left alone)")
}

// writeClusterID records id in dir.
func writeClusterID(dir, id string) error {
	if dir == "" {
		return nil
	}
	return datadir.WriteSync(dir, ClusterIDFile, id)
}

// ClusterID is the identity of the cluster the worker belongs to: the one
// its data directory remembers, or the one it learned from its
// controllers; "" before it knows.
func (w *Worker) ClusterID() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cluster
}

// refusal is the error a worker stops with when its controllers belong
// to another cluster than the one it remembers: it names both and says how
// to reset.
func (w *Worker) refusal(theirs, how string) error {
	mine := w.ClusterID()
	where := "this worker belongs to cluster " + mine
	reset := "restart the worker with a data directory that does not remember cluster " + mine
	if w.cfg.DataDir != "" {
		file := filepath.Join(w.cfg.DataDir, ClusterIDFile)
		where = fmt.Sprintf("this worker's data directory (%s) says it belongs to cluster %s", file, mine)
		reset = "remove " + file + " and start the worker again"
	}
	return fmt.Errorf("%w: %s, but %s cluster %s: refusing to start. "+
		"To move this host to cluster %s, %s (the Kumoi domains of cluster %s on this host are then left alone, listed as foreign in its host status); "+
		"otherwise fix --join (%s) to point at agents of cluster %s",
		ErrOtherCluster, where, how, theirs, theirs, reset, mine, strings.Join(w.cfg.Join, ", "), mine)
}

// learnCluster waits until the controllers in the pool say which cluster
// they are (their gossip metadata; their API status while gossip shows
// none), then adopts it (recording it in the data directory and
// advertising it) if the worker knew none, or returns the refusal if it
// remembers another one.
func (w *Worker) learnCluster(ctx context.Context) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	logged := time.Now()
	for {
		changed := w.ctrls.Changed()
		theirs := w.controllersCluster(ctx)
		mine := w.ClusterID()
		switch {
		case theirs == "":
			if time.Since(logged) > 10*time.Second {
				logged = time.Now()
				w.logger.Info("waiting for the controllers to say which cluster they are (their cluster is chosen by the first leader)")
			}
		case mine == theirs:
			w.logger.Info("the controllers are this worker's cluster", "cluster", mine)
			return nil
		case mine == "":
			if err := writeClusterID(w.cfg.DataDir, theirs); err != nil {
				return err
			}
			w.mu.Lock()
			w.cluster = theirs
			w.mu.Unlock()
			if err := w.advertise(ctx, false); err != nil {
				w.logger.Warn("cannot advertise the cluster identity", "error", err)
			}
			w.logger.Info("cluster identity learned from the controllers", "cluster", theirs, "recorded_in", w.cfg.DataDir)
			return nil
		default:
			return w.refusal(theirs, "the controllers it joined are in")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-tick.C:
		}
	}
}

// controllersCluster is the cluster the alive controllers advertise, or
// (if none does yet) the one the API answers with; "" if unknown.
func (w *Worker) controllersCluster(ctx context.Context) string {
	for _, m := range w.ctrls.AliveControllers() {
		if m.Meta.Cluster != "" {
			return m.Meta.Cluster
		}
	}
	// Gossip refuses a controller's update that names another cluster
	// than this worker's, so one that learned its identity after this
	// worker joined may still show none: ask it.
	c := w.client()
	if c == nil {
		return ""
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if st, err := c.Status(sctx); err == nil {
		return st.ClusterID
	}
	return ""
}

// joinRefusal turns JoinCluster's refusal into the worker's.
func (w *Worker) joinRefusal(err error) error {
	var oc *membership.OtherClusterError
	if errors.As(err, &oc) {
		return w.refusal(oc.PeerCluster, fmt.Sprintf("the agent it joined (%s at %s) is in", oc.Peer, oc.Address))
	}
	return err
}

// isForeign reports whether d is a Kumoi domain of another cluster: the
// worker never stops, starts, redefines or removes it. A domain without a
// cluster (defined by a build older than cluster identity) is this
// worker's cluster's.
func (w *Worker) isForeign(d hypervisor.DomainInfo) bool {
	if !d.Kumoi || d.Cluster == "" {
		return false
	}
	mine := w.ClusterID()
	return mine != "" && d.Cluster != mine
}

// noteForeign records the Kumoi domains of another cluster seen in this
// pass, logs the new ones, and advertises the list when it changed.
func (w *Worker) noteForeign(ctx context.Context, doms []hypervisor.DomainInfo) {
	var names []string
	seen := map[string]bool{}
	for _, d := range doms {
		if !w.isForeign(d) {
			continue
		}
		names = append(names, d.Name)
		seen[d.Name] = true
		if !w.foreignLogged[d.Name] {
			w.logger.Warn("leaving alone a domain of another cluster (never stopped, started or removed by this worker)",
				"domain", d.Name, "domain_cluster", d.Cluster, "cluster", w.ClusterID(), "state", d.State)
		}
	}
	w.foreignLogged = seen
	w.mu.Lock()
	same := len(names) == len(w.foreign)
	for i := 0; same && i < len(names); i++ {
		same = names[i] == w.foreign[i]
	}
	w.foreign = names
	w.mu.Unlock()
	if !same && w.ready {
		if err := w.advertise(ctx, true); err != nil {
			w.logger.Warn("cannot advertise the foreign domains", "error", err)
		}
	}
}
