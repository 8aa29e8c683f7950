package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// aclEnv is an API with ACLs on, bootstrapped, with a management token.
type aclEnv struct {
	*httpEnv
	mgmt resource.ACLToken
}

func newACLEnv(t *testing.T, id string) *aclEnv {
	t.Helper()
	e := &aclEnv{httpEnv: newHTTPEnv(t, id, httpEnvOpts{acl: true, internalSecret: "internal-" + id})}
	r := e.call(t, "POST", "/v1/acl/bootstrap", nil)
	wantStatus(t, r, http.StatusOK)
	if err := json.Unmarshal(r.body, &e.mgmt); err != nil {
		t.Fatal(err)
	}
	if e.mgmt.SecretID == "" || e.mgmt.Type != resource.TokenManagement {
		t.Fatalf("bootstrap answer %s", r.body)
	}
	return e
}

func auth(secret string) []string { return []string{"Authorization", "Bearer " + secret} }

// as calls with the secret's token.
func (e *aclEnv) as(t *testing.T, secret, method, path string, body any) httpResult {
	t.Helper()
	return e.call(t, method, path, body, auth(secret)...)
}

// policy creates an ACL policy with the management token.
func (e *aclEnv) policy(t *testing.T, name string, rules ...string) {
	t.Helper()
	p := resource.ACLPolicy{Name: name}
	for _, s := range rules {
		r, err := resource.ParseACLRule(s)
		if err != nil {
			t.Fatal(err)
		}
		p.Rules = append(p.Rules, r)
	}
	wantStatus(t, e.as(t, e.mgmt.SecretID, "POST", "/v1/acl/policies", p), http.StatusOK)
}

// token creates a token with the management token.
func (e *aclEnv) token(t *testing.T, body map[string]any) resource.ACLToken {
	t.Helper()
	r := e.as(t, e.mgmt.SecretID, "POST", "/v1/acl/tokens", body)
	wantStatus(t, r, http.StatusOK)
	var tok resource.ACLToken
	if err := json.Unmarshal(r.body, &tok); err != nil {
		t.Fatal(err)
	}
	if tok.SecretID == "" || tok.AccessorID == "" {
		t.Fatalf("token answer %s", r.body)
	}
	return tok
}

func (e *aclEnv) create(t *testing.T, plural, name string, labels map[string]string) *resource.Object {
	t.Helper()
	spec := json.RawMessage(vmSpec)
	if plural == "hosts" {
		spec = json.RawMessage(`{}`)
	}
	r := e.as(t, e.mgmt.SecretID, "POST", "/v1/"+plural, resource.CreateRequest{Name: name, Labels: labels, Spec: spec})
	wantStatus(t, r, http.StatusCreated)
	return r.object(t)
}

func wantCode(t *testing.T, r httpResult, status int, code, msg string) {
	t.Helper()
	wantStatus(t, r, status)
	eb := r.errBody(t)
	if eb.Code != code || !strings.Contains(eb.Message, msg) {
		t.Fatalf("error %+v, want code %s with %q", eb, code, msg)
	}
}

func TestACLBootstrapAndStatus(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{acl: true})
	var st resource.Status
	r := e.call(t, "GET", "/v1/status", nil)
	wantStatus(t, r, http.StatusOK)
	if err := json.Unmarshal(r.body, &st); err != nil || !st.ACL.Enabled || st.ACL.Bootstrapped {
		t.Fatalf("status before bootstrap: %s", r.body)
	}
	wantCode(t, e.call(t, "GET", "/v1/vms", nil), http.StatusUnauthorized, resource.CodeUnauthenticated, "not bootstrapped")
	r = e.call(t, "POST", "/v1/acl/bootstrap", nil)
	wantStatus(t, r, http.StatusOK)
	var mgmt resource.ACLToken
	if err := json.Unmarshal(r.body, &mgmt); err != nil || mgmt.SecretID == "" || mgmt.AccessorID == "" || mgmt.Type != "management" {
		t.Fatalf("bootstrap: %s", r.body)
	}
	wantCode(t, e.call(t, "POST", "/v1/acl/bootstrap", nil), http.StatusConflict, resource.CodeConflict, "already bootstrapped")
	r = e.call(t, "GET", "/v1/status", nil)
	if err := json.Unmarshal(r.body, &st); err != nil || !st.ACL.Bootstrapped {
		t.Fatalf("status after bootstrap: %s", r.body)
	}
	wantCode(t, e.call(t, "GET", "/v1/vms", nil), http.StatusUnauthorized, resource.CodeUnauthenticated, "needs an ACL token")
	wantCode(t, e.call(t, "GET", "/v1/vms", nil, auth("nope")...), http.StatusUnauthorized, resource.CodeUnauthenticated, "not known")
	wantStatus(t, e.call(t, "GET", "/v1/vms", nil, auth(mgmt.SecretID)...), http.StatusOK)
	wantStatus(t, e.call(t, "GET", "/v1/vms", nil, resource.HeaderToken, mgmt.SecretID), http.StatusOK)
	// whoami
	r = e.call(t, "GET", "/v1/acl/token/self", nil, auth(mgmt.SecretID)...)
	wantStatus(t, r, http.StatusOK)
	var self resource.ACLToken
	if err := json.Unmarshal(r.body, &self); err != nil || self.AccessorID != mgmt.AccessorID || self.SecretID != "" {
		t.Fatalf("whoami: %s", r.body)
	}
	wantStatus(t, e.call(t, "GET", "/v1/acl/token/self", nil), http.StatusUnauthorized)
	// The write records the accessor.
	r = e.call(t, "POST", "/v1/vms", createBody("a"), auth(mgmt.SecretID)...)
	wantStatus(t, r, http.StatusCreated)
	if o := r.object(t); o.ModifiedBy != mgmt.AccessorID {
		t.Fatalf("modified_by %q, want %q", o.ModifiedBy, mgmt.AccessorID)
	}
}

func TestACLOffRecordsNothing(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	var st resource.Status
	if err := json.Unmarshal(e.call(t, "GET", "/v1/status", nil).body, &st); err != nil || st.ACL.Enabled {
		t.Fatalf("status: %+v %v", st, err)
	}
	r := e.call(t, "POST", "/v1/acl/bootstrap", nil)
	wantStatus(t, r, http.StatusOK)
	var mgmt resource.ACLToken
	if err := json.Unmarshal(r.body, &mgmt); err != nil {
		t.Fatal(err)
	}
	for _, hdr := range [][]string{nil, auth(mgmt.SecretID)} {
		r = e.call(t, "POST", "/v1/vms", createBody("a"+strings.Repeat("a", len(hdr))), hdr...)
		wantStatus(t, r, http.StatusCreated)
		if strings.Contains(string(r.body), "modified_by") {
			t.Fatalf("modified_by with ACLs off: %s", r.body)
		}
	}
	r = e.call(t, "GET", "/v1/acl/token/self", nil, auth(mgmt.SecretID)...)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), mgmt.AccessorID) {
		t.Fatalf("whoami with ACLs off: %s", r.body)
	}
}

func TestACLRouteClasses(t *testing.T) {
	e := newACLEnv(t, "n1")
	e.policy(t, "readers", "vm:read", "host:read")
	e.policy(t, "web", "vm:write:team=web")
	e.policy(t, "power", "vm:power")
	e.policy(t, "ops", "cluster:read")
	e.policy(t, "admin", "cluster:admin", "host:admin")
	e.policy(t, "acl-read", "acl:read")
	readers := e.token(t, map[string]any{"name": "ci", "policies": []string{"readers"}})
	web := e.token(t, map[string]any{"name": "web", "policies": []string{"web"}})
	power := e.token(t, map[string]any{"name": "pow", "policies": []string{"power"}})
	ops := e.token(t, map[string]any{"name": "ops", "policies": []string{"ops"}})
	admin := e.token(t, map[string]any{"name": "admin", "policies": []string{"admin"}})
	aclRead := e.token(t, map[string]any{"name": "aclr", "policies": []string{"acl-read"}})
	e.create(t, "vms", "web-1", map[string]string{"team": "web"})
	e.create(t, "vms", "db-1", map[string]string{"team": "db"})
	e.create(t, "hosts", "h1", nil)

	vmBody := func(name, team string) string {
		return `{"name":"` + name + `","labels":{"team":"` + team + `"},"spec":` + vmSpec + `}`
	}
	for _, tc := range []struct {
		tok          string
		method, path string
		body         any
		want         int
		msg          string
	}{
		{"", "GET", "/v1/vms", nil, 401, "needs an ACL token"},
		{"", "GET", "/v1/cluster", nil, 401, ""},
		{"", "GET", "/metrics", nil, 401, ""},
		{"", "GET", "/v1/events", nil, 401, ""},
		{"", "POST", "/v1/vms", vmBody("x", "web"), 401, ""},
		{"", "GET", "/v1/acl/policies", nil, 401, ""},
		{readers.SecretID, "GET", "/v1/vms", nil, 200, ""},
		{readers.SecretID, "GET", "/v1/vms/web-1", nil, 200, ""},
		{readers.SecretID, "GET", "/v1/vms/web-1?stale", nil, 200, ""},
		{readers.SecretID, "GET", "/v1/hosts/h1", nil, 200, ""},
		{readers.SecretID, "GET", "/v1/policies", nil, 403, `may not read policies: needs policy:read (policies: readers)`},
		{readers.SecretID, "POST", "/v1/vms", vmBody("x", "web"), 403, `token "ci" may not write vms: needs vm:write (policies: readers)`},
		{readers.SecretID, "DELETE", "/v1/vms/web-1", nil, 403, `token "ci" may not write vm "web-1": needs vm:write (policies: readers)`},
		{readers.SecretID, "POST", "/v1/vms/web-1/stop", nil, 403, "needs vm:power"},
		{readers.SecretID, "POST", "/v1/hosts/h1/report", `{"reports":[{"vm":"web-1","epoch":1,"phase":"running"}]}`, 403, "needs host:admin"},
		{readers.SecretID, "GET", "/v1/cluster", nil, 403, "needs cluster:read"},
		{readers.SecretID, "GET", "/metrics", nil, 403, "needs cluster:read"},
		{readers.SecretID, "DELETE", "/v1/cluster/servers/n9", nil, 403, "needs cluster:admin"},
		{readers.SecretID, "GET", "/v1/acl/tokens", nil, 403, "needs acl:read"},
		{readers.SecretID, "POST", "/v1/acl/tokens", map[string]any{"type": "management"}, 403, "needs acl:write"},
		{web.SecretID, "POST", "/v1/vms", vmBody("db-2", "db"), 403, "with a selector that its labels match"},
		{web.SecretID, "PUT", "/v1/vms/db-1", `{"labels":{"team":"web"},"spec":` + vmSpec + `}`, 403, "needs vm:write"},
		{web.SecretID, "PUT", "/v1/vms/web-1", `{"labels":{"team":"db"},"spec":` + vmSpec + `}`, 403, "needs vm:write"},
		{web.SecretID, "DELETE", "/v1/vms/db-1", nil, 403, "needs vm:write"},
		{web.SecretID, "POST", "/v1/vms/db-1/stop", nil, 403, "needs vm:power"},
		{web.SecretID, "GET", "/v1/vms/db-1", nil, 403, "needs vm:read"},
		{web.SecretID, "GET", "/v1/hosts", nil, 403, "needs host:read"},
		{power.SecretID, "DELETE", "/v1/vms/web-1", nil, 403, "needs vm:write"},
		{power.SecretID, "POST", "/v1/vms", vmBody("p", "web"), 403, "needs vm:write"},
		{ops.SecretID, "DELETE", "/v1/cluster/servers/n9", nil, 403, "needs cluster:admin"},
		{ops.SecretID, "GET", "/v1/cluster", nil, 200, ""},
		{ops.SecretID, "GET", "/metrics", nil, 200, ""},
		{admin.SecretID, "DELETE", "/v1/cluster/servers/n9", nil, 404, ""},
		{ops.SecretID, "GET", "/v1/operator/snapshot", nil, 403, "needs cluster:admin"},
		{readers.SecretID, "GET", "/v1/operator/snapshot", nil, 403, "needs cluster:admin"},
		{admin.SecretID, "GET", "/v1/operator/snapshot", nil, 200, ""},
		{ops.SecretID, "POST", "/v1/operator/raft/transfer-leader", nil, 403, "needs cluster:admin"},
		{admin.SecretID, "POST", "/v1/operator/raft/transfer-leader", `{"to":"n9"}`, 404, ""},
		{aclRead.SecretID, "GET", "/v1/acl/tokens", nil, 200, ""},
		{aclRead.SecretID, "GET", "/v1/acl/policies/web", nil, 200, ""},
		{aclRead.SecretID, "DELETE", "/v1/acl/policies/web", nil, 403, "needs acl:write"},
		{aclRead.SecretID, "POST", "/v1/acl/tokens", map[string]any{"policies": []string{"web"}}, 403, "needs acl:write"},
		{aclRead.SecretID, "GET", "/v1/acl/token/self", nil, 200, ""},
	} {
		before := e.digest()
		applies := e.b.appliedCount()
		r := e.call(t, tc.method, tc.path, tc.body, auth(tc.tok)...)
		if tc.tok == "" {
			r = e.call(t, tc.method, tc.path, tc.body)
		}
		if r.status != tc.want {
			t.Errorf("%s %s as %q: %d %s; want %d", tc.method, tc.path, tc.tok, r.status, r.body, tc.want)
			continue
		}
		if tc.want >= 400 {
			eb := r.errBody(t)
			code := map[int]string{401: resource.CodeUnauthenticated, 403: resource.CodePermissionDenied, 404: resource.CodeNotFound}[tc.want]
			if eb.Code != code || !strings.Contains(eb.Message, tc.msg) {
				t.Errorf("%s %s: error %+v; want %s with %q", tc.method, tc.path, eb, code, tc.msg)
			}
			if e.digest() != before || e.b.appliedCount() != applies {
				t.Errorf("%s %s: refused, but something was written", tc.method, tc.path)
			}
		}
	}
	// What the label-scoped token may do.
	r := e.as(t, web.SecretID, "POST", "/v1/vms", vmBody("web-2", "web"))
	wantStatus(t, r, http.StatusCreated)
	if o := r.object(t); o.ModifiedBy != web.AccessorID {
		t.Fatalf("modified_by %q", o.ModifiedBy)
	}
	wantStatus(t, e.as(t, web.SecretID, "PUT", "/v1/vms/web-2", `{"labels":{"team":"web","x":"y"},"spec":`+vmSpec+`}`), http.StatusOK)
	wantStatus(t, e.as(t, web.SecretID, "POST", "/v1/vms/web-2/stop", nil), http.StatusOK)
	wantStatus(t, e.as(t, web.SecretID, "GET", "/v1/vms/web-2", nil), http.StatusOK)
	wantStatus(t, e.as(t, power.SecretID, "POST", "/v1/vms/web-1/stop", nil), http.StatusOK)
	wantStatus(t, e.as(t, web.SecretID, "DELETE", "/v1/vms/web-2", nil), http.StatusOK)
	// Its list holds only what it may read.
	var objs []*resource.Object
	r = e.as(t, web.SecretID, "GET", "/v1/vms", nil)
	wantStatus(t, r, http.StatusOK)
	if err := json.Unmarshal(r.body, &objs); err != nil || len(objs) != 1 || objs[0].Name != "web-1" {
		t.Fatalf("web token's list: %s", r.body)
	}
	// A token that is deleted stops working at once.
	wantStatus(t, e.as(t, e.mgmt.SecretID, "DELETE", "/v1/acl/tokens/"+readers.AccessorID, nil), http.StatusOK)
	wantCode(t, e.as(t, readers.SecretID, "GET", "/v1/vms", nil), http.StatusUnauthorized, resource.CodeUnauthenticated, "not known")
	// A deleted policy: the token keeps the name and loses the rules.
	wantStatus(t, e.as(t, e.mgmt.SecretID, "DELETE", "/v1/acl/policies/ops", nil), http.StatusOK)
	wantCode(t, e.as(t, ops.SecretID, "GET", "/v1/cluster", nil), http.StatusForbidden, resource.CodePermissionDenied, "missing: ops")
}

func TestACLEndpoints(t *testing.T) {
	e := newACLEnv(t, "n1")
	m := e.mgmt.SecretID
	wantCode(t, e.as(t, m, "POST", "/v1/acl/policies", `{"name":"p","rules":[{"kind":"zz","access":"read"}]}`), 400, resource.CodeInvalidArgument, "unknown kind")
	wantCode(t, e.as(t, m, "POST", "/v1/acl/policies", `{"name":"p","rules":[{"kind":"vm","access":"read"}],"zz":1}`), 400, resource.CodeInvalidArgument, "")
	wantStatus(t, e.as(t, m, "POST", "/v1/acl/policies", `{"name":"p","description":"d","rules":[{"kind":"vm","access":"read"}]}`), 200)
	wantCode(t, e.as(t, m, "POST", "/v1/acl/policies", `{"name":"p","rules":[{"kind":"vm","access":"read"}]}`), 409, resource.CodeAlreadyExists, "")
	r := e.as(t, m, "GET", "/v1/acl/policies/p", nil)
	wantStatus(t, r, 200)
	var p resource.ACLPolicy
	if err := json.Unmarshal(r.body, &p); err != nil || p.Description != "d" || p.CreateIndex == 0 {
		t.Fatalf("policy %s", r.body)
	}
	wantCode(t, e.as(t, m, "PUT", "/v1/acl/policies/p?cas=1", `{"rules":[{"kind":"vm","access":"write"}]}`), 409, resource.CodeCASMismatch, "")
	wantStatus(t, e.as(t, m, "PUT", "/v1/acl/policies/p", `{"rules":[{"kind":"vm","access":"write"}]}`), 200)
	wantCode(t, e.as(t, m, "PUT", "/v1/acl/policies/p", `{"name":"q","rules":[{"kind":"vm","access":"write"}]}`), 400, resource.CodeInvalidArgument, "renamed")
	var pols []resource.ACLPolicy
	r = e.as(t, m, "GET", "/v1/acl/policies", nil)
	if err := json.Unmarshal(r.body, &pols); err != nil || len(pols) != 1 || r.index(t) == 0 {
		t.Fatalf("policies %s", r.body)
	}
	wantCode(t, e.as(t, m, "POST", "/v1/acl/tokens", map[string]any{"policies": []string{"nope"}}), 400, resource.CodeInvalidArgument, `no ACL policy "nope"`)
	wantCode(t, e.as(t, m, "POST", "/v1/acl/tokens", map[string]any{"type": "node"}), 400, resource.CodeInvalidArgument, "needs the host")
	wantCode(t, e.as(t, m, "POST", "/v1/acl/tokens", map[string]any{"policies": []string{"p"}, "secret_id": "mine"}), 400, resource.CodeInvalidArgument, "")
	tok := e.token(t, map[string]any{"name": "ci", "policies": []string{"p"}})
	r = e.as(t, m, "GET", "/v1/acl/tokens/"+tok.AccessorID, nil)
	wantStatus(t, r, 200)
	if strings.Contains(string(r.body), tok.SecretID) || strings.Contains(string(r.body), "secret") {
		t.Fatalf("token GET shows a secret: %s", r.body)
	}
	r = e.as(t, m, "GET", "/v1/acl/tokens", nil)
	if strings.Contains(string(r.body), tok.SecretID) || strings.Contains(string(r.body), e.mgmt.SecretID) {
		t.Fatalf("token list shows a secret: %s", r.body)
	}
	wantStatus(t, e.as(t, m, "DELETE", "/v1/acl/tokens/"+tok.AccessorID, nil), 200)
	wantCode(t, e.as(t, m, "DELETE", "/v1/acl/tokens/"+tok.AccessorID, nil), 404, resource.CodeNotFound, "")
	wantStatus(t, e.as(t, m, "DELETE", "/v1/acl/policies/p", nil), 200)
	wantCode(t, e.as(t, m, "GET", "/v1/acl/policies/p", nil), 404, resource.CodeNotFound, "")
	wantCode(t, e.as(t, m, "GET", "/v1/acl/nope", nil), 404, resource.CodeNotFound, "")
}

func TestACLNodeToken(t *testing.T) {
	e := newACLEnv(t, "n1")
	for _, h := range []string{"h1", "h2"} {
		e.b.applyDirect(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: h, ID: "id-" + h,
			State: resource.HostReady, Capacity: resource.Resources{CPUs: 8, MemoryMiB: 8192}})
	}
	e.create(t, "vms", "on-1", nil)
	e.create(t, "vms", "on-2", nil)
	e.create(t, "vms", "pending", nil)
	e.b.applyDirect(t, fsm.PlaceRequestType, &fsm.PlaceRequest{Time: time.Now().UTC(),
		Placements: []fsm.Placement{{VM: "on-1", Host: "h1"}, {VM: "on-2", Host: "h2"}}})
	node := e.token(t, map[string]any{"type": "node", "node": "h1", "name": "worker-h1"})
	n := node.SecretID
	wantStatus(t, e.as(t, n, "GET", "/v1/hosts/h1", nil), 200)
	wantCode(t, e.as(t, n, "GET", "/v1/hosts/h2", nil), 403, resource.CodePermissionDenied, "node token (host h1)")
	wantStatus(t, e.as(t, n, "GET", "/v1/vms/on-1", nil), 200)
	wantStatus(t, e.as(t, n, "GET", "/v1/vms/on-2", nil), 403)
	wantStatus(t, e.as(t, n, "GET", "/v1/vms/pending", nil), 403)
	for _, path := range []string{"/v1/vms?host=h1", "/v1/vms", "/v1/hosts"} {
		var objs []*resource.Object
		r := e.as(t, n, "GET", path, nil)
		wantStatus(t, r, 200)
		if err := json.Unmarshal(r.body, &objs); err != nil || len(objs) != 1 || (objs[0].Name != "on-1" && objs[0].Name != "h1") {
			t.Fatalf("%s as the node token: %s", path, r.body)
		}
	}
	vm, _ := e.b.f.State().Get(nil, resource.KindVM, "on-1")
	_, st := resource.VMStateOf(vm)
	report := map[string]any{"reports": []map[string]any{{"vm": "on-1", "epoch": st.Epoch, "phase": "running"}}}
	r := e.as(t, n, "POST", "/v1/hosts/h1/report", report)
	wantStatus(t, r, 200)
	if strings.Contains(string(r.body), `"error"`) {
		t.Fatalf("report: %s", r.body)
	}
	if o, _ := e.b.f.State().Get(nil, resource.KindVM, "on-1"); o.ModifiedBy != node.AccessorID {
		t.Fatalf("report's modified_by %q", o.ModifiedBy)
	}
	before := e.digest()
	wantCode(t, e.as(t, n, "POST", "/v1/hosts/h2/report", report), 403, resource.CodePermissionDenied, "only report for its own host h1")
	wantStatus(t, e.as(t, n, "POST", "/v1/vms", createBody("x")), 403)
	wantStatus(t, e.as(t, n, "POST", "/v1/vms/on-1/stop", nil), 403)
	wantStatus(t, e.as(t, n, "PUT", "/v1/hosts/h1", `{"spec":{}}`), 403)
	wantStatus(t, e.as(t, n, "GET", "/v1/cluster", nil), 403)
	wantStatus(t, e.as(t, n, "GET", "/v1/policies", nil), 403)
	wantStatus(t, e.as(t, n, "GET", "/v1/acl/tokens", nil), 403)
	if e.digest() != before {
		t.Fatal("a refused request wrote")
	}
	// host:admin may report for any host.
	e.policy(t, "hosts", "host:admin")
	admin := e.token(t, map[string]any{"policies": []string{"hosts"}})
	wantStatus(t, e.as(t, admin.SecretID, "POST", "/v1/hosts/h2/report", map[string]any{"reports": []map[string]any{{"vm": "on-2", "epoch": 1, "phase": "running"}}}), 200)
}

func TestACLEventsFiltered(t *testing.T) {
	e := newACLEnv(t, "n1")
	e.policy(t, "vms", "vm:read")
	tok := e.token(t, map[string]any{"policies": []string{"vms"}})
	vmsOnly := openEvents(t, e.srv.URL, "", auth(tok.SecretID)...)
	all := openEvents(t, e.srv.URL, "", auth(e.mgmt.SecretID)...)
	e.create(t, "hosts", "h1", nil)
	e.policy(t, "other", "host:read")
	e.create(t, "vms", "v1", nil)
	if ev := vmsOnly.next(t); ev.Kind != resource.KindVM || ev.Name != "v1" || ev.Accessor != e.mgmt.AccessorID || ev.Object.ModifiedBy != e.mgmt.AccessorID {
		t.Fatalf("vm:read stream got %+v", ev)
	}
	var kinds []string
	for range 3 {
		kinds = append(kinds, string(all.next(t).Kind))
	}
	if !slices.Equal(kinds, []string{"host", "acl_policy", "vm"}) {
		t.Fatalf("management stream: %v", kinds)
	}
	wantStatus(t, e.call(t, "GET", "/v1/events", nil, auth("bad")...), http.StatusUnauthorized)
}

// TestACLForwardedCheckedOnLeader: a follower does not judge a request it
// forwards; the leader does (a token the follower has not seen yet works).
func TestACLForwardedCheckedOnLeader(t *testing.T) {
	leader := newACLEnv(t, "n1")
	follower := newHTTPEnv(t, "n2", httpEnvOpts{acl: true})
	follower.follow(leader.httpEnv)
	leader.policy(t, "w", "vm:write")
	tok := leader.token(t, map[string]any{"policies": []string{"w"}})
	r := follower.call(t, "POST", "/v1/vms", createBody("a"), auth(tok.SecretID)...)
	wantStatus(t, r, http.StatusCreated)
	if r.object(t).ModifiedBy != tok.AccessorID {
		t.Fatalf("forwarded write: %s", r.body)
	}
	<-leader.forwardedBy // the create's
	// No token at all: refused by the follower itself, body unread.
	wantStatus(t, follower.call(t, "DELETE", "/v1/vms/a", nil), http.StatusUnauthorized)
	select {
	case by := <-leader.forwardedBy:
		t.Fatalf("a request without a token was forwarded by %s", by)
	default:
	}
	// A stale read is served, and so checked, by the follower.
	wantStatus(t, follower.call(t, "GET", "/v1/vms?stale", nil, auth(tok.SecretID)...), http.StatusUnauthorized)
}

// TestACLActAs: the controller's internal secret with X-Kumoi-Act-As has
// the rights of that accessor's token, no more (a policy stored by a token
// with policy:write only cannot delete a VM through its script).
func TestACLActAs(t *testing.T) {
	e := newACLEnv(t, "n1")
	e.policy(t, "pw", "policy:write")
	tok := e.token(t, map[string]any{"policies": []string{"pw"}})
	e.create(t, "vms", "v", nil)
	internal := e.api.internalSecret
	actAs := func(acc string) []string { return append(auth(internal), resource.HeaderActAs, acc) }
	wantCode(t, e.call(t, "DELETE", "/v1/vms/v", nil, actAs(tok.AccessorID)...), 403, resource.CodePermissionDenied, "needs vm:write")
	wantStatus(t, e.call(t, "GET", "/v1/policies", nil, actAs(tok.AccessorID)...), 200)
	wantStatus(t, e.call(t, "DELETE", "/v1/vms/v", nil, actAs(e.mgmt.AccessorID)...), 200)
	wantCode(t, e.call(t, "GET", "/v1/vms", nil, auth(internal)...), 401, resource.CodeUnauthenticated, resource.HeaderActAs)
	wantCode(t, e.call(t, "GET", "/v1/vms", nil, append(auth(tok.SecretID), resource.HeaderActAs, e.mgmt.AccessorID)...), 401, resource.CodeUnauthenticated, "only accepted from the controller")
	wantStatus(t, e.as(t, e.mgmt.SecretID, "DELETE", "/v1/acl/tokens/"+tok.AccessorID, nil), 200)
	wantCode(t, e.call(t, "GET", "/v1/policies", nil, actAs(tok.AccessorID)...), 401, resource.CodeUnauthenticated, "that stored this policy no longer exists")
}
