package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// The ACL tests bind 127.0.0.92-94.

// aclPost POSTs body with the secret's token and decodes the answer into
// out; it returns the status.
func aclPost(t *testing.T, base, secret, path string, body, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", base+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestACLAgent runs a controller with ACLs on, bootstrapped from its
// initial management secret: a worker holding a node token for its host
// runs VMs; one holding another host's node token cannot report (its VM
// never runs); a policy stored by a token with only policy:write cannot
// delete a VM through its script, one stored by the management token can.
func TestACLAgent(t *testing.T) {
	const ip = "127.0.0.92"
	mgmt := "11111111-2222-4333-8444-555555555555"
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: newTestWriter(t)})
	a, err := Start(controller.Config{
		NodeID: "acl1", DataDir: t.TempDir(), BindIP: ip, BootstrapExpect: 1, Logger: logger.Named("acl1"),
		ACL: true, ACLInitialManagement: mgmt,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	base := "http://" + a.APIAddr()
	anon, err := client.New(client.Config{Addrs: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{Addrs: []string{base}, Token: mgmt})
	if err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "ACLs bootstrapped", func() (bool, error) {
		st, err := anon.Status(context.Background())
		return err == nil && st.ACL.Enabled && st.ACL.Bootstrapped, nil
	})
	if _, _, err := anon.VMs().List(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("list without a token: %v", err)
	}

	nodeToken := func(host string) resource.ACLToken {
		var tok resource.ACLToken
		if code := aclPost(t, base, mgmt, "/v1/acl/tokens", map[string]any{"type": "node", "node": host, "name": "worker-" + host}, &tok); code != 200 {
			t.Fatalf("node token for %s: %d", host, code)
		}
		return tok
	}
	tokA, tokB := nodeToken("aw1"), nodeToken("aw2")
	startWorker := func(name, wip, token string) {
		drv := sim.New(sim.Options{Host: name, CPUs: 4, MemoryMiB: 4096})
		w, err := worker.Start(worker.Config{NodeID: name, BindIP: wip, Join: []string{ip + ":7402"}, Driver: drv, DriverName: "sim",
			Token: token, Logger: logger.Named(name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Kill() })
		testcluster.WaitFor(t, 15*time.Second, name+" ready", func() (bool, error) { return hostState(t, c, name) == resource.HostReady, nil })
	}
	startWorker("aw1", "127.0.0.93", tokA.SecretID)
	createTestVM(t, c, "a", `{"cpus":1,"memory_mib":512}`)
	testcluster.WaitFor(t, 15*time.Second, "a running on aw1", func() (bool, error) {
		_, st := vmStatus(t, c, "a")
		return st != nil && st.Phase == resource.PhaseRunning && st.Host == "aw1", nil
	})
	// The worker's reports carry its node token's accessor.
	if v, _, err := c.VMs().Get(context.Background(), "a", nil); err != nil || v.Object.ModifiedBy != tokA.AccessorID {
		t.Fatalf("vm a: modified_by %v, %v; want the node token's accessor %s", v, err, tokA.AccessorID)
	}

	// aw2 holds aw1's token: it may not report for aw2.
	startWorker("aw2", "127.0.0.94", tokA.SecretID)
	createTestVM(t, c, "b", `{"cpus":1,"memory_mib":2048}`) // more free memory on aw2
	testcluster.WaitFor(t, 15*time.Second, "b placed on aw2", func() (bool, error) {
		_, st := vmStatus(t, c, "b")
		return st != nil && st.Host == "aw2", nil
	})
	createTestVM(t, c, "c", `{"cpus":1,"memory_mib":256}`)
	testcluster.WaitFor(t, 15*time.Second, "c running on aw1", func() (bool, error) {
		_, st := vmStatus(t, c, "c")
		return st != nil && st.Phase == resource.PhaseRunning && st.Host == "aw1", nil
	})
	if _, st := vmStatus(t, c, "b"); st.Phase == resource.PhaseRunning {
		t.Fatalf("b runs on aw2 although its worker holds aw1's token: %+v", st)
	}
	var er resource.ErrorResponse
	if code := aclPost(t, base, tokA.SecretID, "/v1/hosts/aw2/report", resource.ReportRequest{Reports: []resource.VMReport{{VM: "b", Epoch: 1, Phase: resource.PhaseRunning}}}, &er); code != 403 ||
		er.Error.Code != resource.CodePermissionDenied {
		t.Fatalf("aw1's token reporting for aw2: %d %+v", code, er)
	}
	_ = tokB

	// Policies run with the rights of the token that stored them.
	var pw resource.ACLPolicy
	if code := aclPost(t, base, mgmt, "/v1/acl/policies", resource.ACLPolicy{Name: "pw", Rules: []resource.ACLRule{
		{Kind: resource.KindPolicy, Access: resource.AccessWrite}, {Kind: resource.KindVM, Access: resource.AccessRead}}}, &pw); code != 200 {
		t.Fatalf("policy pw: %d", code)
	}
	var pwTok resource.ACLToken
	if code := aclPost(t, base, mgmt, "/v1/acl/tokens", map[string]any{"policies": []string{"pw"}}, &pwTok); code != 200 {
		t.Fatalf("token pw: %d", code)
	}
	limited, err := client.New(client.Config{Addrs: []string{base}, Token: pwTok.SecretID})
	if err != nil {
		t.Fatal(err)
	}
	src := `
events = ["vm.created"]
def on_event(ev):
    if ev.name.startswith("doomed"):
        vm(ev.name).delete()
`
	if _, _, err := limited.Policies().Apply(context.Background(), "reaper", resource.PolicySpec{Source: src}); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "reaper active", func() (bool, error) {
		p := policyState(t, c, "reaper")
		return p != nil && p.Status.State == resource.PolicyActive, nil
	})
	createTestVM(t, c, "doomed-1", `{"cpus":1,"memory_mib":128}`)
	testcluster.WaitFor(t, 15*time.Second, "reaper refused", func() (bool, error) {
		p := policyState(t, c, "reaper")
		return p != nil && len(p.Status.RecentErrors) > 0, nil
	})
	if p := policyState(t, c, "reaper"); !strings.Contains(p.Status.RecentErrors[0].Message, "needs vm:write") {
		t.Fatalf("reaper's error: %+v", p.Status.RecentErrors)
	}
	if _, _, err := c.VMs().Get(context.Background(), "doomed-1", nil); err != nil {
		t.Fatalf("doomed-1 was deleted by a policy without vm:write: %v", err)
	}
	// Stored again by the management token: it now has its rights.
	if _, _, err := c.Policies().Apply(context.Background(), "reaper", resource.PolicySpec{Source: src + "\n"}); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "reaper active again", func() (bool, error) {
		p := policyState(t, c, "reaper")
		return p != nil && p.Status.State == resource.PolicyActive && p.Object.ModifiedBy != pwTok.AccessorID, nil
	})
	createTestVM(t, c, "doomed-2", `{"cpus":1,"memory_mib":128}`)
	testcluster.WaitFor(t, 15*time.Second, "doomed-2 deleted by the policy", func() (bool, error) {
		_, _, err := c.VMs().Get(context.Background(), "doomed-2", nil)
		return client.IsNotFound(err), nil
	})
	// The token that stored a policy is deleted: the policy stops, saying
	// why.
	if _, _, err := limited.Policies().Apply(context.Background(), "reaper", resource.PolicySpec{Source: src}); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "reaper stored by pw again", func() (bool, error) {
		p := policyState(t, c, "reaper")
		return p != nil && p.Status.State == resource.PolicyActive && p.Object.ModifiedBy == pwTok.AccessorID, nil
	})
	req, _ := http.NewRequest("DELETE", base+"/v1/acl/tokens/"+pwTok.AccessorID, nil)
	req.Header.Set("Authorization", "Bearer "+mgmt)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("delete token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	testcluster.WaitFor(t, 15*time.Second, "reaper stopped", func() (bool, error) {
		p := policyState(t, c, "reaper")
		return p != nil && p.Status.State == resource.PolicyBroken && strings.Contains(p.Status.Error, "no longer exists"), nil
	})
}
