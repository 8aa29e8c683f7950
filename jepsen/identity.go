package jepsen

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// The identity check (bootstrap-race): every controller of a run must be
// in one cluster, the same one all run long, and every controller's Raft
// configuration must hold exactly the run's controllers. It runs when the
// cluster has started (anomaly type bootstrap-race: the controllers were
// started together with --bootstrap-expect, and two of them could have
// bootstrapped two clusters), after every heal that restarts controllers
// and after the final heal (anomaly type identity), and in every round of
// the bootstrap-race workload (bootstrap.go).

// Anomaly types of the identity check.
const (
	AnomalyBootstrapRace = "bootstrap-race"
	AnomalyIdentity      = "identity"
)

// IdentityView is what one controller says of itself (GET /v1/status) and
// of the Raft configuration (its own, GET /v1/cluster?stale).
type IdentityView struct {
	Node      string            `json:"node"`
	ClusterID string            `json:"cluster_id"`
	NodeUUID  string            `json:"node_uuid"`
	Servers   []resource.Server `json:"servers"`
	// Err says why the controller could not be asked (then the other
	// fields are empty).
	Err string `json:"error,omitempty"`
}

// ErrNotRunning is IdentityView.Err for a controller whose process is not
// running: wrong for good (every check runs when all should run).
const ErrNotRunning = "not running"

// ExpectedServer is a controller of the run: its node id and Raft address.
type ExpectedServer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// IdentityState is what the identity check remembers between checks: the
// cluster's id (the first one seen) and each controller's node UUID.
// Wiped tells it that a controller lost its data directory, so that its
// next UUID is a new one; any other change of a UUID is an anomaly.
type IdentityState struct {
	mu        sync.Mutex
	ClusterID string
	uuids     map[string]string // node id -> node_uuid
}

// Wiped forgets node's UUID: its data directory was emptied.
func (s *IdentityState) Wiped(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.uuids, node)
}

// IdentityProblems checks views against want (every controller, in
// order) and the state st (nil: nothing known yet). It returns what is
// wrong; definite is true when something is wrong for good (two cluster
// ids, a cluster id other than the one the run had, a server that is not
// one of the run's controllers, one node UUID on two controllers, a UUID
// that changed without a wipe, a controller that is not running) rather
// than not settled yet (a controller that does not answer or knows no cluster id yet, a configuration that
// lacks a controller or still has it as a non-voter).
func IdentityProblems(want []ExpectedServer, views []IdentityView, st *IdentityState) (problems []string, definite bool) {
	add := func(def bool, format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
		definite = definite || def
	}
	known := ""
	var uuids map[string]string
	if st != nil {
		st.mu.Lock()
		known = st.ClusterID
		uuids = st.uuids
		st.mu.Unlock()
	}
	wantByID := map[string]string{}
	for _, w := range want {
		wantByID[w.ID] = w.Address
	}
	ids := map[string][]string{} // cluster id -> nodes
	byUUID := map[string][]string{}
	seen := map[string]bool{}
	for _, v := range views {
		seen[v.Node] = true
		if v.Err != "" {
			// A controller that is not running will not come back by
			// itself (the checks run when every one should run).
			add(v.Err == ErrNotRunning, "%s: %s", v.Node, v.Err)
			continue
		}
		if v.ClusterID == "" {
			add(false, "%s knows no cluster id", v.Node)
		} else {
			ids[v.ClusterID] = append(ids[v.ClusterID], v.Node)
			if known != "" && v.ClusterID != known {
				add(true, "%s is in cluster %s, but the run's cluster is %s", v.Node, v.ClusterID, known)
			}
		}
		if v.NodeUUID == "" {
			add(false, "%s has no node_uuid", v.Node)
		} else {
			byUUID[v.NodeUUID] = append(byUUID[v.NodeUUID], v.Node)
			if old, ok := uuids[v.Node]; ok && old != v.NodeUUID {
				add(true, "%s's node_uuid changed from %s to %s, but its data directory was not wiped", v.Node, old, v.NodeUUID)
			}
		}
		// Its Raft configuration: exactly the run's controllers, voters.
		inConfig := map[string]bool{}
		for _, s := range v.Servers {
			addr, ours := wantByID[s.ID]
			switch {
			case !ours:
				add(true, "%s's raft configuration has a stranger: server %s at %s", v.Node, s.ID, s.Address)
			case s.Address != addr:
				add(true, "%s's raft configuration has %s at %s, not at its address %s", v.Node, s.ID, s.Address, addr)
			case inConfig[s.ID]:
				add(true, "%s's raft configuration has %s twice", v.Node, s.ID)
			case !s.Voter:
				add(false, "%s's raft configuration has %s as a %s, not a voter", v.Node, s.ID, cmpOr(s.Role, "non-voter"))
			}
			inConfig[s.ID] = true
		}
		var missing []string
		for _, w := range want {
			if !inConfig[w.ID] {
				missing = append(missing, w.ID)
			}
		}
		if len(missing) > 0 {
			add(false, "%s's raft configuration lacks %s (it has %s)", v.Node, strings.Join(missing, ","), serverList(v.Servers))
		}
	}
	for _, w := range want {
		if !seen[w.ID] {
			add(false, "%s was not asked", w.ID)
		}
	}
	if len(ids) > 1 {
		var parts []string
		for _, id := range slices.Sorted(maps.Keys(ids)) {
			parts = append(parts, fmt.Sprintf("%s: %s", id, strings.Join(ids[id], ",")))
		}
		add(true, "%d cluster ids (%s)", len(ids), strings.Join(parts, "; "))
	}
	for u, nodes := range byUUID {
		if len(nodes) > 1 {
			add(true, "node_uuid %s on %s", u, strings.Join(nodes, ","))
		}
	}
	return problems, definite
}

// record remembers the cluster id and the UUIDs of views that passed.
func (s *IdentityState) record(views []IdentityView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uuids == nil {
		s.uuids = map[string]string{}
	}
	for _, v := range views {
		if v.ClusterID != "" && s.ClusterID == "" {
			s.ClusterID = v.ClusterID
		}
		if v.NodeUUID != "" {
			s.uuids[v.Node] = v.NodeUUID
		}
	}
}

func serverList(ss []resource.Server) string {
	if len(ss) == 0 {
		return "no server"
	}
	var out []string
	for _, s := range ss {
		out = append(out, s.ID+"/"+cmpOr(s.Role, "?"))
	}
	return strings.Join(out, ",")
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// expectedServers are the run's controllers and their Raft addresses.
func expectedServers(c *testcluster.Cluster) []ExpectedServer {
	out := make([]ExpectedServer, c.N())
	for i := range out {
		out[i] = ExpectedServer{ID: c.ID(i), Address: net.JoinHostPort(c.IP(i), strconv.Itoa(testcluster.RaftPort))}
	}
	return out
}

// identityViews asks every controller, in parallel, for its status and
// its own view of the Raft configuration.
func identityViews(ctx context.Context, c *testcluster.Cluster) []IdentityView {
	views := make([]IdentityView, c.N())
	var wg sync.WaitGroup
	for i := range views {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := IdentityView{Node: c.ID(i)}
			defer func() { views[i] = v }()
			if !c.Alive(i) {
				v.Err = ErrNotRunning
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			var st resource.Status
			if err := testcluster.GetJSON(cctx, c.HTTPClient(), c.URL(i)+"/v1/status", &st); err != nil {
				v.Err = "status: " + err.Error()
				return
			}
			var cl resource.Cluster
			if err := testcluster.GetJSON(cctx, c.HTTPClient(), c.URL(i)+"/v1/cluster?stale", &cl); err != nil {
				v.Err = "cluster: " + err.Error()
				return
			}
			v.ClusterID, v.NodeUUID, v.Servers = st.ClusterID, st.NodeUUID, cl.Servers
		}()
	}
	wg.Wait()
	return views
}

// checkIdentity polls the controllers until their identities and
// configurations are right (nil), something is definitely wrong, or
// timeout passes; then it returns an anomaly of type typ with key and the
// last problems and views. st learns the cluster id and UUIDs of a check
// that passes.
func checkIdentity(ctx context.Context, c *testcluster.Cluster, st *IdentityState, typ, key string, timeout time.Duration) *Anomaly {
	want := expectedServers(c)
	var (
		problems []string
		views    []IdentityView
		definite bool
	)
	ok := false
	perr := testcluster.Poll(ctx, timeout, func() (bool, error) {
		views = identityViews(ctx, c)
		problems, definite = IdentityProblems(want, views, st)
		ok = len(problems) == 0
		return ok || definite, nil
	})
	if ok {
		st.record(views)
		return nil
	}
	if perr != nil && ctx.Err() != nil && !definite {
		return nil // the run is being cut short: no verdict
	}
	why := "for " + timeout.String()
	if definite {
		why = "for good"
	}
	return &Anomaly{Type: typ, Key: key,
		Detail: fmt.Sprintf("the controllers are not one cluster of exactly the run's servers (%s): %s; views: %s",
			why, strings.Join(problems, "; "), describeViews(views))}
}

// describeViews is a one-line account of views.
func describeViews(views []IdentityView) string {
	var out []string
	for _, v := range views {
		if v.Err != "" {
			out = append(out, fmt.Sprintf("%s: %s", v.Node, v.Err))
			continue
		}
		out = append(out, fmt.Sprintf("%s: cluster=%s node_uuid=%s config=[%s]", v.Node, cmpOr(v.ClusterID, "none"), cmpOr(v.NodeUUID, "none"), serverList(v.Servers)))
	}
	return strings.Join(out, " | ")
}

// RestartsControllers reports whether the heal of the nemesis called name
// starts controllers again (after which the identity check runs).
func RestartsControllers(name string) bool {
	switch name {
	case "kill-leader", "kill-random", "kill-majority", "transfer-leader", "member-change", "wipe-restart":
		return true
	}
	return false
}
