package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// clusterInfo is GET /v1/cluster through any live node.
func clusterInfo(hc *http.Client, c *testcluster.Cluster) (resource.Cluster, error) {
	var last error
	for _, u := range c.LiveURLs() {
		r, err := do(hc, http.MethodGet, u+"/v1/cluster", nil)
		if err != nil {
			last = err
			continue
		}
		if r.Status != http.StatusOK {
			last = fmt.Errorf("GET %s/v1/cluster: %s", u, r)
			continue
		}
		var ci resource.Cluster
		err = r.Decode(&ci)
		return ci, err
	}
	return resource.Cluster{}, last
}

func describeServers(ss []resource.Server) string {
	var out []string
	for _, s := range ss {
		out = append(out, fmt.Sprintf("%s(%s voter=%t leader=%t)", s.ID, s.Address, s.Voter, s.Leader))
	}
	return strings.Join(out, " ")
}

// waitServers polls GET /v1/cluster until the raft servers are exactly ids,
// all voters.
func waitServers(t *testing.T, c *testcluster.Cluster, hc *http.Client, ids ...string) resource.Cluster {
	t.Helper()
	var ci resource.Cluster
	testcluster.WaitFor(t, leaderTimeout, fmt.Sprintf("the raft servers to be %v", ids), func() (bool, error) {
		var err error
		if ci, err = clusterInfo(hc, c); err != nil {
			return false, err
		}
		var got []string
		for _, s := range ci.Servers {
			if !s.Voter {
				return false, fmt.Errorf("%s is not a voter: %s", s.ID, describeServers(ci.Servers))
			}
			got = append(got, s.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			return false, fmt.Errorf("servers are %s", describeServers(ci.Servers))
		}
		return true, nil
	})
	return ci
}

// addFourth starts a 3-node cluster and a fourth controller without
// --bootstrap-expect, and waits until the leader made it a voter.
func addFourth(t *testing.T) (*testcluster.Cluster, *http.Client, int) {
	c := newCluster(t, testcluster.Options{})
	hc := httpClient()
	c.WaitLeader(leaderTimeout)
	waitServers(t, c, hc, "c1", "c2", "c3")
	late := c.Add()
	ci := waitServers(t, c, hc, "c1", "c2", "c3", "c4")
	c.WaitLeader(leaderTimeout)
	t.Logf("%s joined: %s", c.ID(late), describeServers(ci.Servers))
	return c, hc, late
}

// TestLateControllerBecomesVoter starts a fourth controller after the
// cluster formed; the leader adds it as a voter and it serves the API.
func TestLateControllerBecomesVoter(t *testing.T) {
	c, hc, late := addFourth(t)
	l := newLedger()
	name := "via-late"
	l.attempt(name)
	r, err := do(hc, http.MethodPost, c.URL(late)+"/v1/vms", createBody(name, nil, 1))
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("POST through the late controller: %v %v", r, err)
	}
	var o resource.Object
	if err := r.Decode(&o); err != nil {
		t.Fatal(err)
	}
	l.ack(&o)
	state := waitSameEverywhere(t, c, hc)
	checkLedger(t, "cluster", l, state)
	objs, err := list(hc, c.URL(late), true)
	if err != nil {
		t.Fatal(err)
	}
	checkLedger(t, c.ID(late), l, setOf(objs))
}

// TestClusterRemove kills a controller and removes it from the raft
// configuration with DELETE /v1/cluster/servers/{id}; it stays removed and
// the cluster keeps taking writes.
func TestClusterRemove(t *testing.T) {
	c, hc, late := addFourth(t)
	id := c.ID(late)
	c.Kill(late)
	var removed bool
	testcluster.WaitFor(t, writeDeadline, "DELETE /v1/cluster/servers/"+id, func() (bool, error) {
		for _, u := range c.LiveURLs() {
			r, err := do(hc, http.MethodDelete, u+"/v1/cluster/servers/"+id, nil)
			if err != nil {
				return false, err
			}
			switch r.Status {
			case http.StatusOK:
				removed = true
				return true, nil
			case http.StatusServiceUnavailable:
				continue
			default:
				return false, fmt.Errorf("DELETE through %s: %s", u, r)
			}
		}
		return false, nil
	})
	if !removed {
		t.Fatal("not removed")
	}
	waitServers(t, c, hc, "c1", "c2", "c3")

	// Once gossip has noticed that the removed node is gone, the leader
	// must not have added it back while gossip still thought it alive.
	testcluster.WaitFor(t, leaderTimeout, "gossip to mark "+id+" dead", func() (bool, error) {
		ci, err := clusterInfo(hc, c)
		if err != nil {
			return false, err
		}
		for _, m := range ci.Members {
			if m.Name == id {
				return m.Status != "alive", fmt.Errorf("%s is %s in gossip", id, m.Status)
			}
		}
		return true, nil
	})
	ci := waitServers(t, c, hc, "c1", "c2", "c3")
	t.Logf("after removing %s: %s", id, describeServers(ci.Servers))

	l := newLedger()
	for i := range 5 {
		l.mustCreate(t, c, hc, fmt.Sprintf("after-remove-%d", i), nil)
	}
	// Removing it again is a clean 404.
	r, err := do(hc, http.MethodDelete, c.LiveURLs()[0]+"/v1/cluster/servers/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, "removing a removed server", r, http.StatusNotFound, []string{resource.CodeNotFound}, id)
}
