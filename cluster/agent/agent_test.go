package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/internal/testcluster"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/resource"
)

// Agents in this file bind 127.0.0.2x addresses with the default ports, so
// they never collide with other packages' tests.

func startTestAgent(tb testing.TB, id, ip string, expect int, join ...string) *Agent {
	tb.Helper()
	a, err := Start(controller.Config{
		NodeID:          id,
		DataDir:         tb.TempDir(),
		BindIP:          ip,
		BootstrapExpect: expect,
		Join:            join,
		Logger:          hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: newTestWriter(tb)}),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	return a
}

// testWriter sends log lines to the test log until the test's cleanups
// start; memberlist's goroutines may still log after Shutdown, and a
// t.Log after the test ends panics.
type testWriter struct {
	tb   testing.TB
	done *atomic.Bool
}

func newTestWriter(tb testing.TB) testWriter {
	w := testWriter{tb: tb, done: new(atomic.Bool)}
	tb.Cleanup(func() { w.done.Store(true) })
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.tb.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func getJSON(tb testing.TB, url string, v any) int {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

func servers(tb testing.TB, a *Agent) []resource.Server {
	var c resource.Cluster
	if getJSON(tb, "http://"+a.APIAddr()+"/v1/cluster", &c) != http.StatusOK {
		return nil
	}
	return c.Servers
}

// TestGossipBootstrapLateJoinAndRemove: three controllers that find each
// other through gossip bootstrap once all three are seen; a fourth started
// without --bootstrap-expect is made a voter by the leader; after it is
// stopped, cluster remove takes it out of the configuration.
func TestGossipBootstrapLateJoinAndRemove(t *testing.T) {
	seed := "127.0.0.21:7402"
	var logs syncBuffer
	agents := []*Agent{
		startIdentityAgent(t, "a1", "127.0.0.21", t.TempDir(), 3, &logs),
		startIdentityAgent(t, "a2", "127.0.0.22", t.TempDir(), 3, &logs, seed),
		startIdentityAgent(t, "a3", "127.0.0.23", t.TempDir(), 3, &logs, seed),
	}
	testcluster.WaitFor(t, 10*time.Second, "a leader and 3 voters", func() (bool, error) {
		s := servers(t, agents[0])
		return len(s) == 3 && s[0].Voter && s[1].Voter && s[2].Voter, nil
	})

	// A write through a follower is forwarded to the leader.
	var follower *Agent
	for _, a := range agents {
		if !a.Controller().IsLeader() {
			follower = a
			break
		}
	}
	// (A follower may need a moment to learn the leader's API address
	// from gossip: 503 no_leader until then.)
	body := `{"name":"web","spec":{"cpus":1,"memory_mib":128}}`
	code := 0
	testcluster.WaitFor(t, 10*time.Second, "a create through a follower", func() (bool, error) {
		resp, err := http.Post("http://"+follower.APIAddr()+"/v1/vms", "application/json", bytes.NewBufferString(body))
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		code = resp.StatusCode
		return code != http.StatusServiceUnavailable, nil
	})
	if code != http.StatusCreated {
		t.Fatalf("create via follower: %d", code)
	}

	late := startTestAgent(t, "a4", "127.0.0.24", 0, seed)
	// Admission, a non-voter's catch-up, then the promotion: give it time
	// on a loaded machine.
	testcluster.WaitFor(t, 30*time.Second, "the late controller to become a voter", func() (bool, error) {
		for _, s := range servers(t, agents[0]) {
			if s.ID == "a4" && s.Voter && s.Role == resource.ServerVoter && s.Health == resource.ServerOK && s.LastIndex > 0 {
				return true, nil
			}
		}
		return false, nil
	})
	// It joined as a non-voter and was promoted once it had caught up (the
	// leader logs the promotion just after the configuration change).
	testcluster.WaitFor(t, 5*time.Second, "the leader's log to show a4 added as a non-voter, then promoted", func() (bool, error) {
		l := logs.String()
		added, promoted := strings.Index(l, "adding controller as a raft non-voter"), strings.Index(l, "promoted a caught-up server to voter")
		return added >= 0 && promoted > added && strings.Contains(l[added:], "server=a4"), nil
	})
	// It catches up and serves the data (stale read: local state).
	testcluster.WaitFor(t, 10*time.Second, "the late controller to catch up", func() (bool, error) {
		return getJSON(t, "http://"+late.APIAddr()+"/v1/vms/web?stale=true", nil) == http.StatusOK, nil
	})
	if err := late.Shutdown(context.Background()); err != nil {
		t.Logf("shutdown a4: %v", err)
	}

	req, _ := http.NewRequest(http.MethodDelete, "http://"+agents[1].APIAddr()+"/v1/cluster/servers/a4", nil)
	testcluster.WaitFor(t, 10*time.Second, "cluster remove a4", func() (bool, error) {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if s := servers(t, agents[0]); len(s) != 3 {
		t.Fatalf("after remove: servers = %+v", s)
	}
	req, _ = http.NewRequest(http.MethodDelete, "http://"+agents[1].APIAddr()+"/v1/cluster/servers/nope", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("remove of an unknown server: %s, want 404", resp.Status)
	}
}

// TestDevClusterThree: `agent -dev --dev-controllers 3` in one process.
func TestDevClusterThree(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := StartDev(ctx, DevConfig{Controllers: 3, BindIP: "127.0.0.25", APIPort: 17400})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	if got := len(d.Addrs()); got != 3 {
		t.Fatalf("addrs = %v", d.Addrs())
	}
	for i, u := range d.Addrs() {
		body := fmt.Sprintf(`{"name":"vm-%d","spec":{"cpus":1,"memory_mib":64}}`, i)
		var code int
		testcluster.WaitFor(t, 10*time.Second, "a create on "+u, func() (bool, error) {
			resp, err := http.Post(u+"/v1/vms", "application/json", bytes.NewBufferString(body))
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			code = resp.StatusCode
			return code != http.StatusServiceUnavailable, nil
		})
		if code != http.StatusCreated {
			t.Fatalf("create on %s: %d", u, code)
		}
	}
	var list []resource.Object
	if code := getJSON(t, d.Addrs()[2]+"/v1/vms", &list); code != http.StatusOK || len(list) != 3 {
		t.Fatalf("list: %d %d objects", code, len(list))
	}
}
