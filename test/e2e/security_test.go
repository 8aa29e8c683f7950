package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/internal/tlsutil"
	"github.com/kumoi/kumoi/resource"
)

// secEndpoint is one request of the security matrix.
type secEndpoint struct {
	method, path string
	body         any
	// write: the request would change the state if it were allowed.
	write bool
	// list: a collection read whose answer a token may see filtered.
	list bool
	// stream: only the status of the answer is read (an event stream).
	stream bool
	// admin: needs cluster:admin even to read (/debug/pprof).
	admin bool
	// open: answered without a token (GET /v1/status).
	open bool
	// bootstrap: POST /v1/acl/bootstrap, which needs no token and is
	// refused (409) once ACLs are bootstrapped.
	bootstrap bool
	// self: GET /v1/acl/token/self, which any valid token may read.
	self bool
}

// TestSecurityEveryEndpoint: a cluster of real processes with ACLs, TLS and
// gossip encryption on (3 controllers, 2 workers). Every endpoint is tried
// without a token, with an unknown one, with a read-only token, with a
// worker's node token about the other host, and with a label-scoped token
// outside its labels: each is refused with the right status (401, 403;
// lists filtered) and nothing is written; the management token works. A
// worker with a certificate of another CA (and the right gossip key)
// never becomes a host.
func TestSecurityEveryEndpoint(t *testing.T) {
	key, err := membership.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, testcluster.Options{Controllers: 3, Workers: 2, TLS: true, LogLevel: "info",
		ExtraArgs: []string{"--encrypt", key}})
	c.WaitLeader(leaderTimeout)
	hc := httpClient()
	for w := range c.Workers() {
		c.WaitHostState(c.WorkerName(w), resource.HostReady, hostReadyWithin)
	}
	u := func(path string) string { return c.LiveURLs()[0] + path }
	mgmt := func(method, path string, body any) *testcluster.Response {
		t.Helper()
		r, err := do(hc, method, u(path), mustJSON(t, body))
		if err != nil {
			t.Fatalf("%s %s with the management token: %v", method, path, err)
		}
		if r.Status >= 300 {
			t.Fatalf("%s %s with the management token: %s", method, path, r)
		}
		return r
	}

	// Fixtures, made with the management token.
	mgmt("POST", "/v1/vms", json.RawMessage(createBody("web-1", map[string]string{"team": "web"}, 1)))
	mgmt("POST", "/v1/vms", json.RawMessage(createBody("db-1", map[string]string{"team": "db"}, 1)))
	sts := waitVMs(t, c, hc, vmRunningWithin, "web-1 and db-1 running", func(s map[string]vmState) error {
		for _, n := range []string{"web-1", "db-1"} {
			if s[n].Phase != resource.PhaseRunning {
				return fmt.Errorf("%s is %s", n, s[n])
			}
		}
		return nil
	})
	dbHost := sts["db-1"].Host // the host the forbidden requests are about
	otherHost := c.WorkerName(0)
	if otherHost == dbHost {
		otherHost = c.WorkerName(1)
	}
	mgmt("POST", "/v1/policies", map[string]any{"name": "pol-1", "spec": map[string]any{
		"source": "events = [\"vm.created\"]\ndef on_event(ev):\n    pass\n"}})
	mgmt("POST", "/v1/acl/policies", map[string]any{"name": "readers", "rules": []map[string]string{
		{"kind": "vm", "access": "read"}, {"kind": "host", "access": "read"}, {"kind": "policy", "access": "read"},
		{"kind": "cluster", "access": "read"}, {"kind": "acl", "access": "read"}}})
	mgmt("POST", "/v1/acl/policies", map[string]any{"name": "web-writers", "rules": []map[string]string{
		{"kind": "vm", "access": "write", "selector": "team=web"}}})
	token := func(body map[string]any) resource.ACLToken {
		var tok resource.ACLToken
		if err := mgmt("POST", "/v1/acl/tokens", body).Decode(&tok); err != nil || tok.SecretID == "" {
			t.Fatalf("token %v: %+v %v", body, tok, err)
		}
		return tok
	}
	reader := token(map[string]any{"name": "reader", "policies": []string{"readers"}})
	web := token(map[string]any{"name": "web", "policies": []string{"web-writers"}})
	node := token(map[string]any{"name": "node-" + otherHost, "type": "node", "node": otherHost})
	var self resource.ACLToken
	if err := mgmt("GET", "/v1/acl/token/self", nil).Decode(&self); err != nil || self.Type != resource.TokenManagement {
		t.Fatalf("whoami with the management token: %+v %v", self, err)
	}

	report := resource.ReportRequest{Reports: []resource.VMReport{}}
	endpoints := []secEndpoint{
		{method: "GET", path: "/v1/status", open: true},
		{method: "POST", path: "/v1/acl/bootstrap", body: map[string]any{}, bootstrap: true, write: true},
		{method: "GET", path: "/v1/acl/token/self", self: true},
		{method: "GET", path: "/v1/cluster"},
		{method: "GET", path: "/metrics"},
		{method: "GET", path: "/debug/pprof/", admin: true},
		{method: "GET", path: "/v1/events", stream: true, list: true},
		{method: "GET", path: "/v1/vms", list: true},
		{method: "GET", path: "/v1/vms?index=1&wait=100ms", list: true},
		{method: "GET", path: "/v1/vms/db-1"},
		{method: "GET", path: "/v1/hosts", list: true},
		{method: "GET", path: "/v1/hosts/" + dbHost},
		{method: "GET", path: "/v1/policies"},
		{method: "GET", path: "/v1/policies/pol-1"},
		{method: "GET", path: "/v1/acl/policies"},
		{method: "GET", path: "/v1/acl/policies/readers"},
		{method: "GET", path: "/v1/acl/tokens"},
		{method: "GET", path: "/v1/acl/tokens/" + self.AccessorID},
		{method: "POST", path: "/v1/vms", body: json.RawMessage(createBody("intruder-vm", map[string]string{"team": "db"}, 1)), write: true},
		{method: "PUT", path: "/v1/vms/db-1", body: map[string]any{"labels": map[string]string{"team": "web"}, "spec": map[string]any{"cpus": 1, "memory_mib": 64}}, write: true},
		{method: "DELETE", path: "/v1/vms/db-1", write: true},
		{method: "POST", path: "/v1/vms/db-1/stop", body: map[string]any{}, write: true},
		{method: "POST", path: "/v1/vms/db-1/migrate", body: map[string]any{"host": otherHost}, write: true},
		{method: "PUT", path: "/v1/hosts/" + dbHost, body: map[string]any{"labels": map[string]string{}, "spec": map[string]any{"unschedulable": true}}, write: true},
		{method: "DELETE", path: "/v1/hosts/" + dbHost, write: true},
		{method: "POST", path: "/v1/hosts/" + dbHost + "/report", body: report, write: true},
		{method: "POST", path: "/v1/policies", body: map[string]any{"name": "pol-2", "spec": map[string]any{"source": "events = []\ndef on_event(ev):\n    pass\n"}}, write: true},
		{method: "PUT", path: "/v1/policies/pol-1", body: map[string]any{"labels": map[string]string{}, "spec": map[string]any{"source": "events = []\ndef on_event(ev):\n    pass\n"}}, write: true},
		{method: "DELETE", path: "/v1/policies/pol-1", write: true},
		{method: "POST", path: "/v1/acl/policies", body: map[string]any{"name": "all", "rules": []map[string]string{{"kind": "vm", "access": "admin"}}}, write: true},
		{method: "PUT", path: "/v1/acl/policies/readers", body: map[string]any{"name": "readers", "rules": []map[string]string{{"kind": "vm", "access": "admin"}}}, write: true},
		{method: "DELETE", path: "/v1/acl/policies/readers", write: true},
		{method: "POST", path: "/v1/acl/tokens", body: map[string]any{"type": "management"}, write: true},
		{method: "DELETE", path: "/v1/acl/tokens/" + self.AccessorID, write: true},
		{method: "DELETE", path: "/v1/cluster/servers/" + c.ID(2), write: true},
	}

	before := securityState(t, c, hc)
	creds := []struct {
		name, secret string
		// want is the status this credential must get for e (0: any 2xx,
		// with a filtered answer checked by the caller).
		want func(e secEndpoint) int
	}{
		{"no token", "", func(e secEndpoint) int { return anonymous(e) }},
		{"unknown token", "0b7f6ec4-4c1e-4d39-9c55-7b1b5a1cf001", func(e secEndpoint) int { return anonymous(e) }},
		{"read-only token", reader.SecretID, func(e secEndpoint) int {
			switch {
			case e.open, e.self:
				return 200
			case e.bootstrap:
				return http.StatusConflict
			case e.write, e.admin:
				return http.StatusForbidden
			}
			return 200
		}},
		{"node token of " + otherHost, node.SecretID, func(e secEndpoint) int {
			switch {
			case e.open, e.self:
				return 200
			case e.bootstrap:
				return http.StatusConflict
			case e.list && !e.write:
				return 0 // filtered to its own host
			}
			return http.StatusForbidden
		}},
		{"team=web token", web.SecretID, func(e secEndpoint) int {
			switch {
			case e.open, e.self:
				return 200
			case e.bootstrap:
				return http.StatusConflict
			case e.list && !e.write && strings.Contains(e.path, "/v1/vms") || e.stream:
				return 0 // filtered to team=web
			}
			return http.StatusForbidden
		}},
	}
	for _, cr := range creds {
		t.Run(cr.name, func(t *testing.T) {
			client := testcluster.NewHTTPClientToken(4, requestTimeout, cr.secret)
			for _, e := range endpoints {
				want := cr.want(e)
				for i, base := range c.LiveURLs() { // every controller: followers forward writes
					if e.write && i > 0 && want == 0 {
						continue
					}
					got, body := securityCall(t, client, e, base)
					what := fmt.Sprintf("%s %s on %s", e.method, e.path, base)
					switch {
					case want == 0:
						if got != 200 {
							t.Errorf("%s: %d %s, want 200 (filtered)", what, got, body)
						} else if !e.stream && (bytes.Contains(body, []byte(`"db-1"`)) || bytes.Contains(body, []byte(`"name":"`+dbHost+`"`))) {
							t.Errorf("%s: the answer shows objects the token may not read: %s", what, body)
						}
					case got != want:
						t.Errorf("%s: %d %s, want %d", what, got, body, want)
					case want == 401 || want == 403:
						var eb resource.ErrorResponse
						code := map[int]string{401: resource.CodeUnauthenticated, 403: resource.CodePermissionDenied}[want]
						if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code != code {
							t.Errorf("%s: body %s, want a JSON error %s", what, body, code)
						}
					}
				}
			}
		})
	}
	if after := securityState(t, c, hc); after != before {
		t.Errorf("the refused requests changed the state:\nbefore %s\nafter  %s", before, after)
	}

	// The management token may do all of it; its writes carry its
	// accessor.
	var o resource.Object
	if err := mgmt("PUT", "/v1/vms/db-1", map[string]any{"labels": map[string]string{"team": "db", "owner": "ops"}, "spec": map[string]any{"cpus": 1, "memory_mib": 64}}).Decode(&o); err != nil {
		t.Fatal(err)
	}
	if o.ModifiedBy != self.AccessorID {
		t.Errorf("db-1 modified_by %q, want the management accessor %s", o.ModifiedBy, self.AccessorID)
	}
	mgmt("DELETE", "/v1/policies/pol-1", nil)
	mgmt("GET", "/debug/pprof/", nil)
	// The scoped token may write inside its labels.
	webClient := testcluster.NewHTTPClientToken(4, requestTimeout, web.SecretID)
	if r, err := do(webClient, "POST", u("/v1/vms/web-1/stop"), []byte(`{}`)); err != nil || r.Status != 200 {
		t.Errorf("stop web-1 with the team=web token: %v %v", r, err)
	}

	// A worker with a certificate of another CA (and the right gossip
	// key) never becomes a host: its gossip streams and its API calls are
	// refused.
	other := filepath.Join(t.TempDir(), "other")
	if err := tlsutil.CreateCA(other + "-ca"); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.CreateCert(tlsutil.RoleWorker, other+"-ca", "intruder", nil, nil, other+"-worker"); err != nil {
		t.Fatal(err)
	}
	w := c.AddWorker("intruder", "--tls-ca", other+"-ca.pem", "--tls-cert", other+"-worker.pem", "--tls-key", other+"-worker-key.pem")
	testcluster.WaitFor(t, 30*time.Second, "the intruder's TLS to be refused", func() (bool, error) {
		b, err := os.ReadFile(c.WorkerLogPath(w))
		return bytes.Contains(b, []byte("certificate")), fmt.Errorf("the intruder's log says no certificate error yet (%v)", err)
	})
	var hosts []*resource.Object
	if err := mgmt("GET", "/v1/hosts", nil).Decode(&hosts); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(hosts, func(h *resource.Object) bool { return h.Name == "intruder" }) {
		t.Errorf("a worker with a certificate of another CA became a host")
	}
	c.KillWorker(w)
}

// anonymous is what a request without a valid token gets.
func anonymous(e secEndpoint) int {
	switch {
	case e.open:
		return 200
	case e.bootstrap:
		return http.StatusConflict
	}
	return http.StatusUnauthorized
}

// securityCall sends e to base with client and returns the status and
// body (a stream: the status only).
func securityCall(t *testing.T, client *http.Client, e secEndpoint, base string) (int, []byte) {
	t.Helper()
	if e.stream {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, e.method, base+e.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", e.method, e.path, err)
		}
		defer resp.Body.Close()
		var b []byte
		if resp.StatusCode != 200 {
			b, _ = readAll(resp)
		}
		return resp.StatusCode, b
	}
	r, err := do(client, e.method, base+e.path, mustJSON(t, e.body))
	if err != nil {
		t.Fatalf("%s %s: %v", e.method, e.path, err)
	}
	return r.Status, r.Body
}

func readAll(resp *http.Response) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(resp.Body)
	return buf.Bytes(), err
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	if v == nil {
		return nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// securityState renders what a refused request must not change: the
// VMs' names, labels, specs and writers, the hosts' labels and specs, the
// policies, the ACL policies and tokens, and the Raft servers.
func securityState(t *testing.T, c *testcluster.Cluster, hc *http.Client) string {
	t.Helper()
	var sb strings.Builder
	get := func(path string, v any) {
		r, err := do(hc, "GET", c.LiveURLs()[0]+path, nil)
		if err != nil || r.Status != 200 {
			t.Fatalf("GET %s: %v %v", path, r, err)
		}
		if err := r.Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, plural := range []string{"vms", "hosts", "policies"} {
		var objs []*resource.Object
		get("/v1/"+plural, &objs)
		for _, o := range objs {
			fmt.Fprintf(&sb, "%s/%s labels=%v spec=%s by=%s; ", o.Kind, o.Name, o.Labels, o.Spec, o.ModifiedBy)
		}
	}
	var pols []resource.ACLPolicy
	get("/v1/acl/policies", &pols)
	for _, p := range pols {
		fmt.Fprintf(&sb, "acl-policy/%s %v %d; ", p.Name, p.Rules, p.ModifyIndex)
	}
	var toks []resource.ACLToken
	get("/v1/acl/tokens", &toks)
	for _, tk := range toks {
		fmt.Fprintf(&sb, "acl-token/%s %s %v; ", tk.AccessorID, tk.Type, tk.Policies)
	}
	var cl resource.Cluster
	get("/v1/cluster", &cl)
	for _, s := range cl.Servers {
		fmt.Fprintf(&sb, "server/%s voter=%t; ", s.ID, s.Voter)
	}
	return sb.String()
}
