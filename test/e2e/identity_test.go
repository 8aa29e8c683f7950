package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// soloController is one `kumoi agent --controller` process started by the
// test itself (testcluster names every node c1…: two clusters of its own
// would share node ids), its output in a file.
type soloController struct {
	cmd *exec.Cmd
	out string
	url string
}

func startSolo(t *testing.T, bin, id, ip, dataDir string, join ...string) *soloController {
	t.Helper()
	out := filepath.Join(t.TempDir(), id+".log")
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"agent", "--controller", "--acl=false", "--node-id", id, "--data-dir", dataDir, "--bind", ip, "--bootstrap-expect", "1", "--log-level", "info"}
	for _, j := range join {
		args = append(args, "--join", j)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &soloController{cmd: cmd, out: out, url: "http://" + ip + ":7400"}
	t.Cleanup(func() { s.stop(t); f.Close() })
	return s
}

func (s *soloController) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(testcluster.Stretch(20 * time.Second)):
		_ = s.cmd.Process.Kill()
		<-done
		t.Errorf("%s did not stop on SIGTERM", s.url)
	}
}

func (s *soloController) output() string {
	b, _ := os.ReadFile(s.out)
	return string(b)
}

// TestSingleNodeClustersNeverMerge (real processes): two controllers
// started with --bootstrap-expect 1 each form a cluster of their own; when
// one is restarted with the other as its --join address, gossip refuses
// the other cluster's agent (its output names both identities), neither
// adds the other to its Raft configuration, and each keeps its identity.
func TestSingleNodeClustersNeverMerge(t *testing.T) {
	bin := testcluster.Binary(t, "")
	ips := testcluster.ReserveIPs(t, 2)
	hc := httpClient()
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startSolo(t, bin, "solo-a", ips[0], dirA)
	b := startSolo(t, bin, "solo-b", ips[1], dirB)
	identity := func(s *soloController) string {
		var id string
		testcluster.WaitFor(t, leaderTimeout, s.url+" to lead a cluster with an identity", func() (bool, error) {
			r, err := do(hc, http.MethodGet, s.url+"/v1/status", nil)
			if err != nil {
				return false, err
			}
			var st resource.Status
			if err := r.Decode(&st); err != nil {
				return false, err
			}
			id = st.ClusterID
			return id != "" && st.LeaderID == st.NodeID, fmt.Errorf("%+v", st)
		})
		return id
	}
	idA, idB := identity(a), identity(b)
	if idA == idB {
		t.Fatalf("two clusters bootstrapped apart share the identity %s", idA)
	}

	b.stop(t)
	b = startSolo(t, bin, "solo-b", ips[1], dirB, ips[0]+":7402")
	testcluster.WaitFor(t, leaderTimeout, "the restarted node to refuse the other cluster, naming both identities", func() (bool, error) {
		out := b.output()
		return strings.Contains(out, "another cluster") && strings.Contains(out, idA) && strings.Contains(out, idB), nil
	})
	if got := identity(b); got != idB {
		t.Fatalf("restarted node has cluster id %s, want %s", got, idB)
	}
	for _, s := range []*soloController{a, b} {
		r, err := do(hc, http.MethodGet, s.url+"/v1/cluster", nil)
		if err != nil {
			t.Fatal(err)
		}
		var ci resource.Cluster
		if err := r.Decode(&ci); err != nil {
			t.Fatal(err)
		}
		if len(ci.Servers) != 1 || len(ci.Members) != 1 {
			t.Fatalf("%s: servers %s, members %+v: the clusters merged", s.url, describeServers(ci.Servers), ci.Members)
		}
	}
}
