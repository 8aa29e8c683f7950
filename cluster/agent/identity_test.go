package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// startIdentityAgent starts a controller whose log goes to the test log
// and to logs, in dataDir (kept across restarts).
func startIdentityAgent(t *testing.T, id, ip, dataDir string, expect int, logs io.Writer, join ...string) *Agent {
	t.Helper()
	a, err := Start(controller.Config{
		NodeID: id, DataDir: dataDir, BindIP: ip, BootstrapExpect: expect, Join: join,
		Logger: hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Info, Output: io.MultiWriter(newTestWriter(t), logs)}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	return a
}

func status(t *testing.T, a *Agent) resource.Status {
	t.Helper()
	var st resource.Status
	if code := getJSON(t, "http://"+a.APIAddr()+"/v1/status", &st); code != http.StatusOK {
		t.Fatalf("GET /v1/status: %d", code)
	}
	return st
}

// waitClusterID waits until a leads its own cluster and knows its identity.
func waitClusterID(t *testing.T, a *Agent) string {
	t.Helper()
	var id string
	testcluster.WaitFor(t, 15*time.Second, a.Controller().NodeID()+" to lead a cluster with an identity", func() (bool, error) {
		st := status(t, a)
		id = st.ClusterID
		return id != "" && st.LeaderID == st.NodeID, nil
	})
	return id
}

// TestTwoClustersNeverMerge: two controllers each bootstrap a cluster of
// their own (--bootstrap-expect 1); when one is restarted with the other
// as its --join address, gossip refuses the other cluster's agent (the
// log names both identities), neither leader adds the other as a voter,
// and each keeps its identity, in its status and its data directory.
func TestTwoClustersNeverMerge(t *testing.T) {
	var logsA, logsB syncBuffer
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startIdentityAgent(t, "ida", "127.0.0.47", dirA, 1, &logsA)
	b := startIdentityAgent(t, "idb", "127.0.0.48", dirB, 1, &logsB)
	idA, idB := waitClusterID(t, a), waitClusterID(t, b)
	if idA == idB {
		t.Fatalf("two clusters bootstrapped apart share the identity %s", idA)
	}
	for dir, want := range map[string]string{dirA: idA, dirB: idB} {
		b, err := os.ReadFile(filepath.Join(dir, "cluster_id"))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Fatalf("%s/cluster_id = %q, %v; want %s", dir, b, err, want)
		}
	}

	// b meets a through gossip.
	uuidB := status(t, b).NodeUUID
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	b = startIdentityAgent(t, "idb", "127.0.0.48", dirB, 1, &logsB, "127.0.0.47:7402")
	refused := func(logs *syncBuffer) func() (bool, error) {
		return func() (bool, error) {
			s := logs.String()
			return strings.Contains(s, "refusing a gossip peer of another cluster") && strings.Contains(s, idA) && strings.Contains(s, idB), nil
		}
	}
	testcluster.WaitFor(t, 15*time.Second, "the restarted node to refuse the other cluster's gossip, naming both identities", refused(&logsB))
	if got := waitClusterID(t, b); got != idB {
		t.Fatalf("restarted b has cluster id %s, want %s (its data directory's)", got, idB)
	}
	if got := status(t, b).NodeUUID; got != uuidB || got == "" {
		t.Fatalf("restarted b has node uuid %q, want %q (its data directory's)", got, uuidB)
	}
	// Each leader reconciles its voters on every gossip event and every
	// few seconds: neither may ever add the other.
	for _, ag := range []*Agent{a, b} {
		ag.Controller().TriggerReconcile()
	}
	deadline := time.Now().Add(testcluster.Stretch(3 * time.Second))
	for time.Now().Before(deadline) {
		for _, ag := range []*Agent{a, b} {
			if s := servers(t, ag); len(s) != 1 || s[0].ID != ag.Controller().NodeID() {
				t.Fatalf("%s's raft configuration is %+v: the clusters merged", ag.Controller().NodeID(), s)
			}
			if m := members(t, ag); len(m) != 1 {
				t.Fatalf("%s's gossip pool is %+v: it took in the other cluster's agent", ag.Controller().NodeID(), m)
			}
		}
		time.Sleep(100 * time.Millisecond) // sampling that nothing changes, not waiting for a condition
	}
}

func members(t *testing.T, a *Agent) []resource.Member {
	var c resource.Cluster
	if getJSON(t, "http://"+a.APIAddr()+"/v1/cluster", &c) != http.StatusOK {
		t.Fatal("GET /v1/cluster failed")
	}
	return c.Members
}

// TestWipedVoterRefusedThenRejoins: a controller whose data directory was
// wiped, restarted with the same --node-id (and the same command line),
// refuses to take its old voter's place: it fails, telling the operator to
// run `kumoi cluster remove`; after that removal it joins again as a new
// server (non-voter, then promoted) and learns the cluster's identity.
func TestWipedVoterRefusedThenRejoins(t *testing.T) {
	seed := "127.0.0.49:7402"
	var logs syncBuffer
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	agents := []*Agent{
		startIdentityAgent(t, "w1", "127.0.0.49", dirs[0], 3, &logs),
		startIdentityAgent(t, "w2", "127.0.0.50", dirs[1], 3, &logs, seed),
		startIdentityAgent(t, "w3", "127.0.0.54", dirs[2], 3, &logs, seed),
	}
	var id string
	testcluster.WaitFor(t, 15*time.Second, "3 voters and a cluster identity", func() (bool, error) {
		s := servers(t, agents[0])
		id = status(t, agents[0]).ClusterID
		return len(s) == 3 && s[0].Voter && s[1].Voter && s[2].Voter && id != "", nil
	})

	// w3 loses its data directory.
	oldUUID := status(t, agents[2]).NodeUUID
	if err := agents[2].Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dirs[2]); err != nil {
		t.Fatal(err)
	}
	wiped := startIdentityAgent(t, "w3", "127.0.0.54", dirs[2], 3, &logs, seed)
	select {
	case <-wiped.Controller().Failed():
	case <-time.After(testcluster.Stretch(15 * time.Second)):
		t.Fatal("a wiped voter restarted with its old node id did not refuse to start")
	}
	err := wiped.Controller().FailErr()
	if !errors.Is(err, controller.ErrStillAServer) || !strings.Contains(err.Error(), "kumoi cluster remove w3") || !strings.Contains(err.Error(), id) {
		t.Fatalf("refusal = %v; want ErrStillAServer naming the cluster and 'kumoi cluster remove w3'", err)
	}
	if st := status(t, wiped); st.LastLogIndex != 0 || st.ClusterID != "" {
		t.Fatalf("the refused node replicated something: %+v", st)
	}
	if s := servers(t, agents[0]); len(s) != 3 {
		t.Fatalf("servers after the refusal: %+v", s)
	}
	if err := wiped.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Started again on what the refused start left, still without the
	// removal: refused again (the refused start did not make its store
	// its own).
	again := startIdentityAgent(t, "w3", "127.0.0.54", dirs[2], 3, &logs, seed)
	select {
	case <-again.Controller().Failed():
	case <-time.After(testcluster.Stretch(15 * time.Second)):
		t.Fatal("a refused node restarted on the refused start's data directory was not refused again")
	}
	if err := again.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The operator removes the old server; the node joins as a new one.
	req, _ := http.NewRequest(http.MethodDelete, "http://"+agents[0].APIAddr()+"/v1/cluster/servers/w3", nil)
	testcluster.WaitFor(t, 10*time.Second, "cluster remove w3", func() (bool, error) {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err := os.RemoveAll(dirs[2]); err != nil {
		t.Fatal(err)
	}
	rejoined := startIdentityAgent(t, "w3", "127.0.0.54", dirs[2], 3, &logs, seed)
	agents[0].Controller().TriggerReconcile()
	testcluster.WaitFor(t, 45*time.Second, "w3 back as a caught-up voter of the same cluster", func() (bool, error) {
		for _, s := range servers(t, agents[0]) {
			if s.ID == "w3" && s.Role == resource.ServerVoter && s.Health == resource.ServerOK {
				st := status(t, rejoined)
				return st.ClusterID == id && st.NodeUUID != oldUUID && st.NodeUUID != "", nil
			}
		}
		return false, nil
	})
}
