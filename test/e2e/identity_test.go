package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestWipedControllerRefusedThenRejoins (real processes): a controller
// whose data directory is wiped and that is started again with the same
// command line (same --node-id, same --bootstrap-expect) refuses to take
// its old voter's place: `kumoi agent` exits non-zero telling the operator
// to run `kumoi cluster remove` first, and the cluster's configuration and
// data are untouched. After the removal, the same command line joins it
// again as a new server, which becomes a caught-up voter of the same
// cluster, with a new node UUID.
func TestWipedControllerRefusedThenRejoins(t *testing.T) {
	c := newCluster(t, testcluster.Options{})
	hc := httpClient()
	c.WaitLeader(leaderTimeout)
	waitServers(t, c, hc, "c1", "c2", "c3")
	l := newLedger()
	for i := range 3 {
		l.mustCreate(t, c, hc, fmt.Sprintf("before-%d", i), nil)
	}
	var id, oldUUID string
	testcluster.WaitFor(t, leaderTimeout, "c3 to know the cluster identity", func() (bool, error) {
		st, err := c.Status(2)
		id, oldUUID = st.ClusterID, st.NodeUUID
		return id != "", err
	})

	c.Kill(2)
	if err := os.RemoveAll(c.DataDir(2)); err != nil {
		t.Fatal(err)
	}
	c.Start(2)
	c.ExpectExit(2)
	err := c.Wait(2, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("the wiped controller: %v, want it to exit with status 1", err)
	}
	out, _ := os.ReadFile(c.LogPath(2))
	for _, want := range []string{"this node's id is still a server of the cluster", "kumoi cluster remove c3", id} {
		if !strings.Contains(string(out), want) {
			t.Errorf("its output does not say %q:\n%s", want, tail(string(out), 2000))
		}
	}
	state := waitSameEverywhere(t, c, hc)
	checkLedger(t, "cluster after the refusal", l, state)

	testcluster.WaitFor(t, writeDeadline, "DELETE /v1/cluster/servers/c3", func() (bool, error) {
		for _, u := range c.LiveURLs() {
			r, err := do(hc, http.MethodDelete, u+"/v1/cluster/servers/c3", nil)
			if err != nil {
				return false, err
			}
			if r.Status == http.StatusOK {
				return true, nil
			}
		}
		return false, nil
	})
	if err := os.RemoveAll(c.DataDir(2)); err != nil {
		t.Fatal(err)
	}
	c.Start(2)
	ci := waitServers(t, c, hc, "c1", "c2", "c3")
	for _, s := range ci.Servers {
		if s.Role != resource.ServerVoter {
			t.Fatalf("server %s is %s after rejoining", s.ID, s.Role)
		}
	}
	testcluster.WaitFor(t, leaderTimeout, "the rejoined c3 to catch up in the same cluster", func() (bool, error) {
		st, err := c.Status(2)
		if err != nil {
			return false, err
		}
		return st.ClusterID == id && st.NodeUUID != oldUUID && st.NodeUUID != "", fmt.Errorf("%+v", st)
	})
	state = waitSameEverywhere(t, c, hc)
	checkLedger(t, "cluster after the rejoin", l, state)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
