package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testapi"
)

// aclFake is an in-memory API of the ACL endpoints (docs/security.md), with
// GET /v1/vms for commands other than acl. Every request but the bootstrap
// needs a known token; the /v1/acl endpoints need a management token.
type aclFake struct {
	*httptest.Server
	mu       sync.Mutex
	n        int
	index    uint64
	bySecret map[string]*client.ACLToken
	policies map[string]*client.ACLPolicy
	auth     []string // "METHOD PATH AUTHORIZATION" of every request
}

func newACLFake(t *testing.T) *aclFake {
	f := &aclFake{bySecret: map[string]*client.ACLToken{}, policies: map[string]*client.ACLPolicy{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/acl/bootstrap", f.bootstrap)
	mux.HandleFunc("GET /v1/acl/token/self", f.authed(false, func(w http.ResponseWriter, r *http.Request, tok *client.ACLToken) {
		writeFakeJSON(w, 200, withoutSecret(tok))
	}))
	mux.HandleFunc("GET /v1/acl/policies", f.authed(true, f.listPolicies))
	mux.HandleFunc("POST /v1/acl/policies", f.authed(true, f.putPolicy))
	mux.HandleFunc("GET /v1/acl/policies/{name}", f.authed(true, f.getPolicy))
	mux.HandleFunc("PUT /v1/acl/policies/{name}", f.authed(true, f.putPolicy))
	mux.HandleFunc("DELETE /v1/acl/policies/{name}", f.authed(true, f.deletePolicy))
	mux.HandleFunc("GET /v1/acl/tokens", f.authed(true, f.listTokens))
	mux.HandleFunc("POST /v1/acl/tokens", f.authed(true, f.createToken))
	mux.HandleFunc("GET /v1/acl/tokens/{id}", f.authed(true, f.getToken))
	mux.HandleFunc("DELETE /v1/acl/tokens/{id}", f.authed(true, f.deleteToken))
	mux.HandleFunc("GET /v1/vms", f.authed(false, func(w http.ResponseWriter, r *http.Request, _ *client.ACLToken) {
		writeFakeJSON(w, 200, []any{})
	}))
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth = append(f.auth, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func writeFakeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fakeError(w http.ResponseWriter, status int, code, msg string) {
	writeFakeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func withoutSecret(t *client.ACLToken) *client.ACLToken {
	c := *t
	c.SecretID = ""
	return &c
}

// newToken stores a token; call with f.mu held.
func (f *aclFake) newToken(req client.ACLTokenRequest) *client.ACLToken {
	f.n++
	f.index++
	tok := &client.ACLToken{
		AccessorID: fmt.Sprintf("acc-%d", f.n), SecretID: fmt.Sprintf("secret-%d", f.n),
		Name: req.Name, Type: cmpOr(req.Type, "client"), Policies: req.Policies, Node: req.Node,
		CreateTime: testapi.Now.Add(-time.Hour), CreateIndex: f.index, ModifyIndex: f.index,
	}
	f.bySecret[tok.SecretID] = tok
	return tok
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (f *aclFake) bootstrap(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n > 0 {
		fakeError(w, 409, "conflict", "ACLs are already bootstrapped")
		return
	}
	writeFakeJSON(w, 200, f.newToken(client.ACLTokenRequest{Name: "bootstrap", Type: "management"}))
}

func (f *aclFake) authed(acl bool, h func(http.ResponseWriter, *http.Request, *client.ACLToken)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		tok := f.bySecret[secret]
		f.mu.Unlock()
		switch {
		case !ok || tok == nil:
			fakeError(w, 401, "unauthenticated", "the request has no ACL token, or one the cluster does not know")
		case acl && tok.Type != "management":
			fakeError(w, 403, "permission_denied", fmt.Sprintf("token %s may not do this: it needs acl:write", tok.AccessorID))
		default:
			f.mu.Lock()
			defer f.mu.Unlock()
			w.Header().Set(client.HeaderIndex, fmt.Sprint(f.index))
			h(w, r, tok)
		}
	}
}

func (f *aclFake) listPolicies(w http.ResponseWriter, r *http.Request, _ *client.ACLToken) {
	out := []*client.ACLPolicy{}
	for _, p := range f.policies {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *client.ACLPolicy) int { return strings.Compare(a.Name, b.Name) })
	writeFakeJSON(w, 200, map[string]any{"items": out, "index": f.index})
}

func (f *aclFake) getPolicy(w http.ResponseWriter, r *http.Request, _ *client.ACLToken) {
	p, ok := f.policies[r.PathValue("name")]
	if !ok {
		fakeError(w, 404, "not_found", "no such ACL policy")
		return
	}
	writeFakeJSON(w, 200, p)
}

func (f *aclFake) putPolicy(w http.ResponseWriter, r *http.Request, _ *client.ACLToken) {
	var p client.ACLPolicy
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || r.Header.Get("Content-Type") != "application/json" {
		fakeError(w, 400, "invalid_json", fmt.Sprint(err))
		return
	}
	old, exists := f.policies[p.Name]
	switch {
	case r.Method == "POST" && exists:
		fakeError(w, 409, "already_exists", fmt.Sprintf("ACL policy %q already exists", p.Name))
		return
	case r.Method == "PUT" && (!exists || r.PathValue("name") != p.Name):
		fakeError(w, 404, "not_found", "no such ACL policy")
		return
	}
	f.index++
	p.CreateIndex, p.ModifyIndex = f.index, f.index
	if exists {
		p.CreateIndex = old.CreateIndex
	}
	f.policies[p.Name] = &p
	writeFakeJSON(w, 200, &p)
}

func (f *aclFake) deletePolicy(w http.ResponseWriter, r *http.Request, _ *client.ACLToken) {
	name := r.PathValue("name")
	if _, ok := f.policies[name]; !ok {
		fakeError(w, 404, "not_found", "no such ACL policy")
		return
	}
	delete(f.policies, name)
	f.index++
	writeFakeJSON(w, 200, map[string]any{})
}

func (f *aclFake) listTokens(w http.ResponseWriter, r *http.Request, _ *client.ACLToken) {
	out := []*client.ACLToken{}
	for _, t := range f.bySecret {
		out = append(out, withoutSecret(t))
	}
	slices.SortFunc(out, func(a, b *client.ACLToken) int { return strings.Compare(a.AccessorID, b.AccessorID) })
	writeFakeJSON(w, 200, out)
}

func (f *aclFake) createToken(w http.ResponseWriter, r *http.Request, _ *client.ACLToken) {
	var req client.ACLTokenRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fakeError(w, 400, "invalid_json", err.Error())
		return
	}
	for _, p := range req.Policies {
		if _, ok := f.policies[p]; !ok {
			fakeError(w, 400, "invalid_argument", fmt.Sprintf("policies: no ACL policy %q", p))
			return
		}
	}
	writeFakeJSON(w, 200, f.newToken(req))
}

func (f *aclFake) byAccessor(id string) (string, *client.ACLToken) {
	for s, t := range f.bySecret {
		if t.AccessorID == id {
			return s, t
		}
	}
	return "", nil
}

func (f *aclFake) getToken(w http.ResponseWriter, r *http.Request, _ *client.ACLToken) {
	if _, t := f.byAccessor(r.PathValue("id")); t != nil {
		writeFakeJSON(w, 200, withoutSecret(t))
		return
	}
	fakeError(w, 404, "not_found", "no such ACL token")
}

func (f *aclFake) deleteToken(w http.ResponseWriter, r *http.Request, _ *client.ACLToken) {
	s, t := f.byAccessor(r.PathValue("id"))
	if t == nil {
		fakeError(w, 404, "not_found", "no such ACL token")
		return
	}
	delete(f.bySecret, s)
	f.index++
	writeFakeJSON(w, 200, withoutSecret(t))
}

// seenAuth returns the Authorization header of every request so far.
func (f *aclFake) seenAuth() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.auth)
}

func TestACLCommands(t *testing.T) {
	f := newACLFake(t)
	const mgmt = "--token=secret-1" // the bootstrap token of the fake
	const unauth = "kumoi: the API refused the request without a valid token (401): set --token or KUMOI_TOKEN"
	runCases(t, f.URL, []cliCase{
		{name: "whoami before bootstrap", args: []string{"acl", "whoami"}, code: 1, stderr: unauth},
		{name: "bootstrap", args: []string{"acl", "bootstrap"}, exact: "" +
			"AccessorID:  acc-1\n" +
			"SecretID:    secret-1\n" +
			"Name:        bootstrap\n" +
			"Type:        management\n" +
			"Policies:    -\n" +
			"Created:     " + testapi.Now.Add(-time.Hour).UTC().Format(time.RFC3339) + " (1h ago), index 1\n" +
			"\nThe secret is shown only now: the cluster keeps a hash of it. Send it with\n--token or KUMOI_TOKEN.\n"},
		{name: "bootstrap twice", args: []string{"acl", "bootstrap"}, code: 1, stderr: "kumoi: ACLs are already bootstrapped\n"},
		{name: "whoami", args: []string{"acl", "whoami", mgmt}, stdout: []string{"AccessorID:  acc-1\n", "Type:        management\n"}},
		{name: "whoami hides the secret", args: []string{"acl", "whoami", mgmt, "-o", "json"}, stdout: []string{`"accessor_id": "acc-1"`, `"type": "management"`}},
		{name: "unknown token", args: []string{"acl", "token", "list", "--token", "nope"}, code: 1,
			stderr: unauth + " (the API said: the request has no ACL token, or one the cluster does not know)\n"},
		{name: "policy create", args: []string{"acl", "policy", "create", "web-ops", "--rule", "vm:read", "--rule", "vm:write:team=web,tier", "--description", "web team", mgmt},
			exact: "Name:         web-ops\nDescription:  web team\nRules:        vm:read\n              vm:write:team=web,tier\nIndex:        2 (created at 2)\n"},
		{name: "policy create json", args: []string{mgmt, "acl", "policy", "create", "ro", "--rule", "host:read", "--rule", "cluster:read", "-o", "json"},
			exact: "{\n  \"name\": \"ro\",\n  \"rules\": [\n    {\n      \"kind\": \"host\",\n      \"access\": \"read\"\n    },\n" +
				"    {\n      \"kind\": \"cluster\",\n      \"access\": \"read\"\n    }\n  ],\n  \"create_index\": 3,\n  \"modify_index\": 3\n}\n"},
		{name: "policy create duplicate", args: []string{"acl", "policy", "create", "ro", "--rule", "vm:read", mgmt}, code: 1,
			stderr: `kumoi: ACL policy "ro" already exists (change it with 'kumoi acl policy update')`},
		{name: "policy list", args: []string{"acl", "policy", "ls", mgmt}, exact: "" +
			"NAME      RULES                            INDEX   DESCRIPTION\n" +
			"ro        host:read;cluster:read           3       -\n" +
			"web-ops   vm:read;vm:write:team=web,tier   2       web team\n"},
		{name: "policy update rules", args: []string{"acl", "policy", "update", "web-ops", "--rule", "vm:power:team=web", mgmt},
			exact: "Name:         web-ops\nDescription:  web team\nRules:        vm:power:team=web\nIndex:        4 (created at 2)\n"},
		{name: "policy update description", args: []string{"acl", "policy", "update", "web-ops", "--description", "", mgmt, "-o", "yaml"},
			exact: "create_index: 2\nmodify_index: 5\nname: web-ops\nrules:\n- access: power\n  kind: vm\n  selector: team=web\n"},
		{name: "policy get", args: []string{"acl", "policy", "get", "web-ops", mgmt}, stdout: []string{"Description:  -\n", "Rules:        vm:power:team=web\n"}},
		{name: "policy get missing", args: []string{"acl", "policy", "get", "nope", mgmt}, code: 1, stderr: `kumoi: ACL policy "nope" not found` + "\n"},
		{name: "policy update missing", args: []string{"acl", "policy", "update", "nope", "--rule", "vm:read", mgmt}, code: 1, stderr: `kumoi: ACL policy "nope" not found`},
		{name: "token create", args: []string{"acl", "token", "create", "--policy", "web-ops", "--name", "ci", mgmt},
			stdout: []string{"AccessorID:  acc-2\n", "SecretID:    secret-2\n", "Name:        ci\n", "Type:        client\n", "Policies:    web-ops\n", "shown only now"}},
		{name: "token create json", args: []string{"acl", "token", "create", "--policy", "web-ops", "--policy", "ro", mgmt, "-o", "json"},
			stdout: []string{`"accessor_id": "acc-3"`, `"secret_id": "secret-3"`, `"type": "client"`, "\"policies\": [\n    \"web-ops\",\n    \"ro\"\n  ]"}},
		{name: "token create node", args: []string{"acl", "token", "create", "--type", "node", "--node", "hv-1", mgmt},
			stdout: []string{"SecretID:    secret-4\n", "Type:        node\n", "Node:        hv-1\n"}},
		{name: "token create unknown policy", args: []string{"acl", "token", "create", "--policy", "nope", mgmt}, code: 1,
			stderr: `kumoi: policies: no ACL policy "nope"` + "\n"},
		{name: "token list", args: []string{"acl", "token", "list", mgmt}, exact: "" +
			"ACCESSOR   NAME        TYPE         POLICIES     NODE   AGE\n" +
			"acc-1      bootstrap   management   -            -      1h\n" +
			"acc-2      ci          client       web-ops      -      1h\n" +
			"acc-3      -           client       web-ops,ro   -      1h\n" +
			"acc-4      -           node         -            hv-1   1h\n"},
		{name: "token get", args: []string{"acl", "token", "get", "acc-2", mgmt}, stdout: []string{"AccessorID:  acc-2\n", "Name:        ci\n"}},
		{name: "token get missing", args: []string{"acl", "token", "get", "acc-9", mgmt}, code: 1, stderr: `kumoi: ACL token "acc-9" not found`},
		{name: "client token whoami", args: []string{"acl", "whoami", "--token", "secret-2"}, stdout: []string{"AccessorID:  acc-2\n", "Policies:    web-ops\n"}},
		{name: "client token is denied", args: []string{"acl", "token", "list", "--token", "secret-2"}, code: 1,
			stderr: "kumoi: token acc-2 may not do this: it needs acl:write\n"},
		{name: "token delete", args: []string{"acl", "token", "rm", "acc-2", mgmt}, exact: "ACL token acc-2 deleted\n"},
		{name: "deleted token", args: []string{"acl", "whoami", "--token", "secret-2"}, code: 1, stderr: unauth},
		{name: "token delete missing", args: []string{"acl", "token", "delete", "acc-2", mgmt}, code: 1, stderr: `kumoi: ACL token "acc-2" not found`},
		{name: "policy delete", args: []string{"acl", "policy", "delete", "ro", mgmt}, exact: "ACL policy \"ro\" deleted\n"},
		{name: "policy delete missing", args: []string{"acl", "policy", "delete", "ro", mgmt}, code: 1, stderr: `kumoi: ACL policy "ro" not found`},
		{name: "token for other commands", args: []string{"vm", "list", "-o", "json", mgmt}, exact: "[]\n"},
		{name: "no token for other commands", args: []string{"vm", "list"}, code: 1, stderr: unauth},
	})
	// Nothing sent a secret it was not given.
	for _, a := range f.seenAuth() {
		if fields := strings.Fields(a); len(fields) > 2 && fields[2] != "Bearer" {
			t.Errorf("request %q: Authorization is not a bearer token", a)
		}
	}
}

func TestACLUsageErrors(t *testing.T) {
	f := newACLFake(t)
	n := len(f.seenAuth())
	runCases(t, f.URL, []cliCase{
		{name: "rule without access", args: []string{"acl", "policy", "create", "p", "--rule", "vm"}, code: 2,
			stderr: `kumoi: invalid --rule "vm": write KIND:ACCESS[:SELECTOR], e.g. --rule vm:read or --rule vm:write:team=web` + "\n"},
		{name: "unknown kind", args: []string{"acl", "policy", "create", "p", "--rule", "vms:read"}, code: 2,
			stderr: `kumoi: invalid --rule "vms:read": unknown kind "vms"; use vm, host, policy, cluster or acl` + "\n"},
		{name: "star is not a kind", args: []string{"acl", "policy", "create", "p", "--rule", "*:read"}, code: 2, stderr: `unknown kind "*"`},
		{name: "unknown access", args: []string{"acl", "policy", "create", "p", "--rule", "vm:delete"}, code: 2,
			stderr: `kumoi: invalid --rule "vm:delete": unknown access "delete"; use read, power, write or admin` + "\n"},
		{name: "empty selector", args: []string{"acl", "policy", "create", "p", "--rule", "vm:read:"}, code: 2, stderr: "the selector after the second colon is empty"},
		{name: "bad selector", args: []string{"acl", "policy", "create", "p", "--rule", "vm:read:a b=c"}, code: 2, stderr: `label selector term "a b=c"`},
		{name: "duplicate rule", args: []string{"acl", "policy", "create", "p", "--rule", "vm:read", "--rule", "vm:read"}, code: 2, stderr: "--rule vm:read given twice"},
		{name: "no rule", args: []string{"acl", "policy", "create", "p"}, code: 2, stderr: "missing --rule"},
		{name: "no name", args: []string{"acl", "policy", "create", "--rule", "vm:read"}, code: 2, stderr: "missing ACL policy name"},
		{name: "update nothing", args: []string{"acl", "policy", "update", "p"}, code: 2, stderr: "nothing to change"},
		{name: "bad type", args: []string{"acl", "token", "create", "--type", "root"}, code: 2, stderr: `invalid --type "root": use client, management or node`},
		{name: "client without policy", args: []string{"acl", "token", "create"}, code: 2, stderr: "missing --policy"},
		{name: "node without host", args: []string{"acl", "token", "create", "--type", "node"}, code: 2, stderr: "--type node needs --node HOST"},
		{name: "node with policy", args: []string{"acl", "token", "create", "--type", "node", "--node", "h", "--policy", "p"}, code: 2, stderr: "--policy is for client tokens"},
		{name: "node flag on a client token", args: []string{"acl", "token", "create", "--policy", "p", "--node", "h"}, code: 2, stderr: "--node is for --type node only"},
		{name: "whoami takes no argument", args: []string{"acl", "whoami", "x"}, code: 2, stderr: "takes no arguments"},
		{name: "token get without accessor", args: []string{"acl", "token", "get"}, code: 2, stderr: "missing ACL token accessor name"},
		{name: "unknown verb", args: []string{"acl", "frob"}, code: 2, stderr: `unknown command "frob"`},
	})
	if got := len(f.seenAuth()); got != n {
		t.Errorf("%d requests were sent for command lines that are wrong", got-n)
	}
}

func TestACLHelp(t *testing.T) {
	for _, args := range [][]string{
		{"acl", "--help"}, {"acl", "policy", "--help"}, {"acl", "token", "--help"},
		{"acl", "bootstrap", "--help"}, {"acl", "whoami", "--help"},
		{"acl", "policy", "create", "--help"}, {"acl", "policy", "update", "--help"}, {"acl", "policy", "list", "--help"},
		{"acl", "policy", "get", "--help"}, {"acl", "policy", "delete", "--help"},
		{"acl", "token", "create", "--help"}, {"acl", "token", "list", "--help"},
		{"acl", "token", "get", "--help"}, {"acl", "token", "delete", "--help"},
	} {
		out, errOut, code := runCLI(t, args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "Examples:") {
			t.Errorf("kumoi %s: exit %d, stderr %q, no examples in:\n%s", strings.Join(args, " "), code, errOut, out)
		}
	}
	out, _, _ := runCLI(t, "acl", "policy", "create", "--help")
	for _, want := range []string{"KIND:ACCESS[:SELECTOR]", "KIND is vm, host, policy,", "cluster or acl. ACCESS", "power", "admin", "--description TEXT", "--token SECRET"} {
		if !strings.Contains(out, want) {
			t.Errorf("acl policy create --help lacks %q:\n%s", want, out)
		}
	}
	// The help shows where the token comes from, never the token itself.
	t.Setenv("KUMOI_TOKEN", "do-not-print-me")
	out, _, _ = runCLI(t, "--help")
	if !strings.Contains(out, "--token SECRET") || !strings.Contains(out, "$KUMOI_TOKEN") || strings.Contains(out, "do-not-print-me") {
		t.Errorf("kumoi --help with KUMOI_TOKEN set:\n%s", out)
	}
}

// TestTokenFromEnv: KUMOI_TOKEN is the default of --token, which wins.
func TestTokenFromEnv(t *testing.T) {
	f := newACLFake(t)
	if _, _, code := runCLI(t, "--addr", f.URL, "acl", "bootstrap"); code != 0 {
		t.Fatal("bootstrap failed")
	}
	t.Setenv("KUMOI_TOKEN", "secret-1")
	out, errOut, code := runCLI(t, "--addr", f.URL, "acl", "whoami")
	if code != 0 || !strings.Contains(out, "acc-1") {
		t.Errorf("whoami with KUMOI_TOKEN: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runCLI(t, "--addr", f.URL, "acl", "whoami", "--token", "other")
	if code != 1 || !strings.Contains(errOut, "(401)") {
		t.Errorf("--token must win over KUMOI_TOKEN: exit %d, %s", code, errOut)
	}
	auth := f.seenAuth()
	if got := auth[len(auth)-2:]; got[0] != "GET /v1/acl/token/self Bearer secret-1" || got[1] != "GET /v1/acl/token/self Bearer other" {
		t.Errorf("requests %q", got)
	}
}

// TestScriptsInheritToken: kumoi run and kumoi shell send the caller's
// token.
func TestScriptsInheritToken(t *testing.T) {
	f := newACLFake(t)
	if _, _, code := runCLI(t, "--addr", f.URL, "acl", "bootstrap"); code != 0 {
		t.Fatal("bootstrap failed")
	}
	out, errOut, code := runCLI(t, "--addr", f.URL, "--token", "secret-1", "run", "-e", "len(vms())")
	if code != 0 || out != "0\n" {
		t.Errorf("kumoi run with a token: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = runCLIStdin(t, "len(vms())\n", "--addr", f.URL, "shell", "--token=secret-1")
	if code != 0 || !strings.Contains(out, "0") {
		t.Errorf("kumoi shell with a token: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, a := range f.seenAuth()[1:] {
		if a != "GET /v1/vms Bearer secret-1" {
			t.Errorf("a script sent %q", a)
		}
	}
	_, errOut, code = runCLI(t, "--addr", f.URL, "run", "-e", "vms()")
	if code != 1 || !strings.Contains(errOut, "set --token or KUMOI_TOKEN") {
		t.Errorf("kumoi run without a token: exit %d, stderr %q", code, errOut)
	}
}

// writePEM writes PEM blocks to a new file in dir.
func writePEM(t *testing.T, dir, name string, blocks ...*pem.Block) string {
	t.Helper()
	var b strings.Builder
	for _, bl := range blocks {
		b.Write(pem.EncodeToMemory(bl))
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// selfSignedClientCert makes a client certificate and its key.
func selfSignedClientCert(t *testing.T) (*x509.Certificate, *pem.Block, *pem.Block) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "client.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert, &pem.Block{Type: "CERTIFICATE", Bytes: der}, &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}
}

// TestTLSFlags: --ca-cert trusts a controller's certificate, --client-cert
// and --client-key present one; mistakes are reported before anything is
// sent.
func TestTLSFlags(t *testing.T) {
	clientCert, certPEM, keyPEM := selfSignedClientCert(t)
	var mu sync.Mutex
	var peers []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		for _, c := range r.TLS.PeerCertificates {
			peers = append(peers, c.Subject.CommonName)
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "[]")
	}))
	pool := x509.NewCertPool()
	pool.AddCert(clientCert)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes that fail on purpose
	srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	srv.StartTLS()
	defer srv.Close()

	dir := t.TempDir()
	ca := writePEM(t, dir, "ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cert := writePEM(t, dir, "client.pem", certPEM)
	key := writePEM(t, dir, "client-key.pem", keyPEM)
	notPEM := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(notPEM, []byte("nothing here\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	runCases(t, srv.URL, []cliCase{
		{name: "untrusted", args: []string{"vm", "list"}, code: 1, stderr: "certificate signed by unknown authority (give the CA certificate of the controllers with --ca-cert or KUMOI_CACERT)"},
		{name: "ca", args: []string{"vm", "list", "--ca-cert", ca, "-o", "json"}, exact: "[]\n"},
		{name: "ca and client cert", args: []string{"vm", "list", "--ca-cert", ca, "--client-cert", cert, "--client-key", key, "-o", "json"}, exact: "[]\n"},
		{name: "cert without key", args: []string{"vm", "list", "--ca-cert", ca, "--client-cert", cert}, code: 2, stderr: "--client-cert and --client-key go together"},
		{name: "key without cert", args: []string{"vm", "list", "--client-key", key}, code: 2, stderr: "--client-cert and --client-key go together"},
		{name: "ca missing", args: []string{"vm", "list", "--ca-cert", filepath.Join(dir, "nope.pem")}, code: 1, stderr: "--ca-cert: open"},
		{name: "ca not pem", args: []string{"vm", "list", "--ca-cert", notPEM}, code: 1, stderr: "no PEM certificate in it"},
		{name: "key mismatch", args: []string{"vm", "list", "--client-cert", ca, "--client-key", key}, code: 1, stderr: "--client-cert " + ca},
	})
	mu.Lock()
	if !slices.Equal(peers, []string{"client.test"}) {
		t.Errorf("client certificates seen by the server: %q, want the one run with --client-cert", peers)
	}
	mu.Unlock()

	// The environment variables are the flags' defaults.
	t.Setenv("KUMOI_CACERT", ca)
	t.Setenv("KUMOI_CLIENT_CERT", cert)
	t.Setenv("KUMOI_CLIENT_KEY", key)
	runCases(t, srv.URL, []cliCase{{name: "env", args: []string{"vm", "list", "-o", "json"}, exact: "[]\n"}})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(peers, []string{"client.test", "client.test"}) {
		t.Errorf("client certificates seen by the server: %q, want one more from KUMOI_CLIENT_CERT", peers)
	}
}
