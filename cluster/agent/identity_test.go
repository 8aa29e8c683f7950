package agent

import (
	"context"
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
