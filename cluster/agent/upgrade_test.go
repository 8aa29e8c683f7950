package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestRollingUpgradeGating: a cluster in which one controller still speaks
// an older log protocol refuses the commands it could not apply — with a
// 409 upgrade_required naming it — and never proposes them (the cluster
// identity, a protocol 3 command, waits too); once that controller is
// restarted at the current protocol (upgraded), the same commands work.
func TestRollingUpgradeGating(t *testing.T) {
	seed := "127.0.0.55:7402"
	var logs syncBuffer
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	start := func(i, maxProto int) *Agent {
		id, ip := []string{"u1", "u2", "u3"}[i], []string{"127.0.0.55", "127.0.0.56", "127.0.0.57"}[i]
		var join []string
		if i > 0 {
			join = []string{seed}
		}
		a, err := Start(controller.Config{
			NodeID: id, DataDir: dirs[i], BindIP: ip, BootstrapExpect: 3, Join: join, MaxProtocol: maxProto,
			Logger: hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Info, Output: io.MultiWriter(newTestWriter(t), &logs)}),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
		return a
	}
	agents := []*Agent{start(0, 0), start(1, 0), start(2, 1)}
	testcluster.WaitFor(t, 15*time.Second, "3 voters and a leader", func() (bool, error) {
		s := servers(t, agents[0])
		return len(s) == 3 && s[0].Voter && s[1].Voter && s[2].Voter && status(t, agents[0]).LeaderID != "", nil
	})
	post := func(path, body string) (int, resource.ErrorBody) {
		resp, err := http.Post("http://"+agents[0].APIAddr()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e resource.ErrorResponse
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	for path, body := range map[string]string{
		"/v1/vms":   `{"name":"web","spec":{"cpus":1,"memory_mib":64}}`,
		"/v1/hosts": `{"name":"h1","spec":{}}`,
	} {
		if code, e := post(path, body); code != http.StatusCreated {
			t.Fatalf("POST %s: %d %+v", path, code, e)
		}
	}
	// A cold migration (protocol 2) to a named host: the API checks the
	// VM and the host, then the leader's gate refuses to propose it.
	migrate := func() (int, resource.ErrorBody) { return post("/v1/vms/web/migrate", `{"host":"h1"}`) }
	code, body := migrate()
	if code != http.StatusConflict || body.Code != resource.CodeUpgradeRequired ||
		!strings.Contains(body.Message, "u3 (version ") || !strings.Contains(body.Message, "protocol 1") {
		t.Fatalf("migrate with an old controller: %d %+v; want 409 upgrade_required naming u3 and protocol 1", code, body)
	}
	for _, a := range agents {
		if st := status(t, a); st.ClusterID != "" {
			t.Fatalf("%s has cluster id %s although u3 cannot apply cluster-init", st.NodeID, st.ClusterID)
		}
	}
	for _, s := range servers(t, agents[0]) {
		if want := map[string]int{"u1": fsm.ProtocolVersion, "u2": fsm.ProtocolVersion, "u3": 1}[s.ID]; s.Protocol != want {
			t.Fatalf("server %s shows protocol %d, want %d", s.ID, s.Protocol, want)
		}
	}
	// A worker's report of a restart (restarts, protocol 4) with its
	// sequence (seq, protocol 11) is not refused: the API records it
	// without either (here the VM is not on h1, so the report itself is
	// answered stale_epoch, per item).
	if code, e := post("/v1/hosts/h1/report", `{"reports":[{"vm":"web","epoch":0,"phase":"running","reason":"restarted","restarts":1,"seq":5}]}`); code != http.StatusOK {
		t.Fatalf("a report with restarts and seq on a protocol 1 cluster: %d %+v; want it recorded without them (200)", code, e)
	}
	if st := status(t, agents[2]); st.Health == resource.HealthHalted {
		t.Fatalf("the old controller halted: %s", st.HealthReason)
	}

	// Upgrade u3: restart it at the current protocol, with its data.
	if err := agents[2].Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	agents[2] = start(2, 0)
	testcluster.WaitFor(t, 20*time.Second, "the cluster identity once every controller speaks protocol 3", func() (bool, error) {
		id := status(t, agents[0]).ClusterID
		for _, a := range agents {
			if st := status(t, a); st.ClusterID == "" || st.ClusterID != id {
				return false, nil
			}
		}
		return true, nil
	})
	// Past the gate, the state machine itself judges the move (h1 has no
	// worker: it is not ready).
	testcluster.WaitFor(t, 10*time.Second, "migrate to pass the gate", func() (bool, error) {
		code, body := migrate()
		return code == http.StatusConflict && body.Code == resource.CodeConflict, fmt.Errorf("%d %+v", code, body)
	})
}
