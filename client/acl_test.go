package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// seenRequest is what the recording server received.
type seenRequest struct {
	Method, Path, RawQuery string
	Auth, ContentType      string
	Body                   string
}

// answer is what the recording server sends back.
type answer struct {
	status int
	body   string
}

// recorder is an httptest server that records every request and answers
// from a table keyed by "METHOD PATH" (404 for anything else).
type recorder struct {
	*httptest.Server
	mu      sync.Mutex
	seen    []seenRequest
	answers map[string]answer
}

func newRecorder(t *testing.T, answers map[string]answer) *recorder {
	t.Helper()
	rec := &recorder{answers: answers}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.seen = append(rec.seen, seenRequest{
			Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
			Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"), Body: string(body),
		})
		a, ok := rec.answers[r.Method+" "+r.URL.EscapedPath()]
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			a = answer{404, `{"error":{"code":"not_found","message":"no such thing"}}`}
		}
		w.Header().Set(client.HeaderIndex, "7")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (r *recorder) requests() []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenRequest(nil), r.seen...)
}

func (r *recorder) last(t *testing.T) seenRequest {
	t.Helper()
	reqs := r.requests()
	if len(reqs) == 0 {
		t.Fatal("no request was sent")
	}
	return reqs[len(reqs)-1]
}

func tokenClient(t *testing.T, addr, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Addrs: []string{addr}, Token: token, Timeout: 5 * time.Second, RetryDeadline: -1})
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	return c
}

const (
	testSecret   = "6f1c1a4e-55d4-4c4b-9c51-3a0ad0b3e1f2"
	testAccessor = "a1b2c3d4-0000-4000-8000-000000000001"
)

var tokenJSON = `{"accessor_id":"` + testAccessor + `","secret_id":"` + testSecret + `","name":"ci","type":"client",` +
	`"policies":["web-ops"],"create_time":"2026-12-01T10:00:00Z","create_index":5,"modify_index":5}`

var policyJSON = `{"name":"web-ops","description":"web team","rules":[{"kind":"vm","access":"read"},` +
	`{"kind":"vm","access":"write","selector":"team=web"}],"create_index":3,"modify_index":4}`

func TestTokenIsSentOnEveryRequest(t *testing.T) {
	rec := newRecorder(t, map[string]answer{
		"GET /v1/vms/web":   {200, `{"kind":"vm","name":"web","spec":{"cpus":1,"memory_mib":512}}`},
		"GET /v1/status":    {200, `{}`},
		"POST /v1/vms":      {200, `{"kind":"vm","name":"db","spec":{}}`},
		"DELETE /v1/vms/db": {200, `{"kind":"vm","name":"db","spec":{}}`},
	})
	ctx := context.Background()
	c := tokenClient(t, rec.URL, "  "+testSecret+"\n")
	if _, _, err := c.Get(ctx, resource.KindVM, "web", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, resource.KindVM, resource.CreateRequest{Name: "db", Spec: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, resource.KindVM, "db", nil); err != nil {
		t.Fatal(err)
	}
	_, _ = c.ACL().Self(ctx) // 404 here: still sent with the token
	for _, r := range rec.requests() {
		if r.Auth != "Bearer "+testSecret {
			t.Errorf("%s %s: Authorization = %q, want the bearer token", r.Method, r.Path, r.Auth)
		}
	}
	if n := len(rec.requests()); n != 5 {
		t.Errorf("%d requests, want 5", n)
	}

	// Without a token there is no Authorization header at all.
	plain := tokenClient(t, rec.URL, "")
	if _, err := plain.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t); got.Auth != "" {
		t.Errorf("no token: Authorization = %q, want none", got.Auth)
	}

	// A token that cannot be a header value is refused, without echoing it.
	_, err := client.New(client.Config{Token: "abc\r\nX-Evil: 1"})
	if err == nil || strings.Contains(err.Error(), "abc") || strings.Contains(err.Error(), "Evil") {
		t.Errorf("New with a multi-line token: %v; want an error that does not repeat the token", err)
	}
}

func TestTokenOnEventStream(t *testing.T) {
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":"unauthenticated","message":"the ACL token is not known"}}`)
	}))
	defer srv.Close()
	c := tokenClient(t, srv.URL, testSecret)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, err := range c.Events(ctx, 0) {
		if !client.IsUnauthenticated(err) {
			t.Errorf("event stream error %v, want unauthenticated", err)
		}
		break
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auth) == 0 || auth[0] != "Bearer "+testSecret {
		t.Errorf("event stream Authorization = %q, want the bearer token", auth)
	}
}

func TestACLErrors(t *testing.T) {
	rec := newRecorder(t, map[string]answer{
		"GET /v1/vms/a": {401, `{"error":{"code":"unauthenticated","message":"this request needs an ACL token"}}`},
		"GET /v1/vms/b": {403, `{"error":{"code":"permission_denied","message":"token ci may not write vm \"b\" (needs vm:write)"}}`},
		"GET /v1/vms/c": {401, `not json`},
		"GET /v1/vms/d": {403, ``},
		"GET /v1/vms/e": {409, `{"error":{"code":"conflict","message":"no"}}`},
	})
	c := tokenClient(t, rec.URL, testSecret)
	ctx := context.Background()
	for _, tc := range []struct {
		name           string
		unauth, denied bool
		msg            string
	}{
		{name: "a", unauth: true, msg: "this request needs an ACL token"},
		{name: "b", denied: true, msg: `token ci may not write vm "b" (needs vm:write)`},
		{name: "c", unauth: true, msg: "HTTP 401: not json"},
		{name: "d", denied: true, msg: "forbidden"},
		{name: "e"},
	} {
		_, _, err := c.Get(ctx, resource.KindVM, tc.name, nil)
		if err == nil {
			t.Fatalf("%s: no error", tc.name)
		}
		if got := client.IsUnauthenticated(err); got != tc.unauth {
			t.Errorf("%s: IsUnauthenticated(%v) = %v", tc.name, err, got)
		}
		if got := client.IsPermissionDenied(err); got != tc.denied {
			t.Errorf("%s: IsPermissionDenied(%v) = %v", tc.name, err, got)
		}
		if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %q lacks %q", tc.name, err, tc.msg)
		}
		if strings.Contains(err.Error(), testSecret) {
			t.Errorf("%s: error %q repeats the secret", tc.name, err)
		}
		if (tc.unauth || tc.denied) && !client.NotApplied(err) {
			t.Errorf("%s: NotApplied(%v) = false; a refused request did nothing", tc.name, err)
		}
	}
	// A 401 is not retried elsewhere: one request per call.
	if n := len(rec.requests()); n != 5 {
		t.Errorf("%d requests, want 5", n)
	}
}

func TestACLBootstrapAndSelf(t *testing.T) {
	rec := newRecorder(t, map[string]answer{
		"POST /v1/acl/bootstrap": {200, strings.Replace(tokenJSON, `"client"`, `"management"`, 1)},
		"GET /v1/acl/token/self": {200, strings.Replace(tokenJSON, `"secret_id":"`+testSecret+`",`, "", 1)},
	})
	ctx := context.Background()
	tok, err := tokenClient(t, rec.URL, "").ACL().Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := client.ACLToken{
		AccessorID: testAccessor, SecretID: testSecret, Name: "ci", Type: client.ACLTokenManagement,
		Policies: []string{"web-ops"}, CreateTime: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		CreateIndex: 5, ModifyIndex: 5,
	}
	if !reflect.DeepEqual(*tok, want) {
		t.Errorf("Bootstrap = %+v, want %+v", *tok, want)
	}
	r := rec.last(t)
	if r.Method != "POST" || r.Path != "/v1/acl/bootstrap" || r.Auth != "" || r.ContentType != "application/json" || r.Body != "{}" {
		t.Errorf("bootstrap request = %+v", r)
	}

	self, err := tokenClient(t, rec.URL, testSecret).ACL().Self(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if self.AccessorID != testAccessor || self.SecretID != "" || self.Type != "client" {
		t.Errorf("Self = %+v", self)
	}
	r = rec.last(t)
	if r.Method != "GET" || r.Path != "/v1/acl/token/self" || r.Auth != "Bearer "+testSecret || r.Body != "" {
		t.Errorf("self request = %+v", r)
	}

	// The second bootstrap: 409.
	rec.answers["POST /v1/acl/bootstrap"] = answer{409, `{"error":{"code":"conflict","message":"ACLs are already bootstrapped"}}`}
	if _, err := tokenClient(t, rec.URL, "").ACL().Bootstrap(ctx); !client.IsConflict(err) {
		t.Errorf("second Bootstrap: %v, want a conflict", err)
	}
	if n := len(rec.requests()); n != 3 {
		t.Errorf("%d requests, want 3 (a bootstrap is never resent)", n)
	}
}

func TestACLPolicies(t *testing.T) {
	rec := newRecorder(t, map[string]answer{
		"POST /v1/acl/policies":           {200, policyJSON},
		"PUT /v1/acl/policies/web-ops":    {200, policyJSON},
		"GET /v1/acl/policies/web-ops":    {200, policyJSON},
		"DELETE /v1/acl/policies/web-ops": {200, policyJSON},
		"GET /v1/acl/policies":            {200, `[` + policyJSON + `]`},
		"GET /v1/acl/policies/a%2Fb":      {200, policyJSON},
	})
	ctx := context.Background()
	pols := tokenClient(t, rec.URL, testSecret).ACL().Policies()
	want := client.ACLPolicy{Name: "web-ops", Description: "web team", Rules: []client.ACLRule{
		{Kind: "vm", Access: "read"}, {Kind: "vm", Access: "write", Selector: "team=web"},
	}, CreateIndex: 3, ModifyIndex: 4}
	in := want
	in.CreateIndex, in.ModifyIndex = 9, 9 // ignored
	const wantBody = `{"name":"web-ops","description":"web team","rules":[{"kind":"vm","access":"read"},` +
		`{"kind":"vm","access":"write","selector":"team=web"}],"create_index":0,"modify_index":0}`

	check := func(what string, got *client.ACLPolicy, err error, method, path, body string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != nil && !reflect.DeepEqual(*got, want) {
			t.Errorf("%s = %+v, want %+v", what, *got, want)
		}
		r := rec.last(t)
		if r.Method != method || r.Path != path || r.Auth != "Bearer "+testSecret || r.Body != body {
			t.Errorf("%s request = %+v, want %s %s body %s", what, r, method, path, body)
		}
		if body != "" && r.ContentType != "application/json" {
			t.Errorf("%s: Content-Type %q", what, r.ContentType)
		}
	}
	got, err := pols.Create(ctx, &in)
	check("Create", got, err, "POST", "/v1/acl/policies", wantBody)
	got, err = pols.Update(ctx, &in)
	check("Update", got, err, "PUT", "/v1/acl/policies/web-ops", wantBody)
	got, _, err = pols.Get(ctx, "web-ops", nil)
	check("Get", got, err, "GET", "/v1/acl/policies/web-ops", "")
	_, _, err = pols.Get(ctx, "a/b", &client.QueryOptions{Stale: true})
	check("Get escaped", nil, err, "GET", "/v1/acl/policies/a%2Fb", "")
	if q := rec.last(t).RawQuery; q != "stale=true" {
		t.Errorf("Get stale: query %q", q)
	}
	err = pols.Delete(ctx, "web-ops")
	check("Delete", nil, err, "DELETE", "/v1/acl/policies/web-ops", "")
	list, meta, err := pols.List(ctx, nil)
	check("List", nil, err, "GET", "/v1/acl/policies", "")
	if len(list) != 1 || !reflect.DeepEqual(*list[0], want) || meta.Index != 7 {
		t.Errorf("List = %+v, %+v", list, meta)
	}

	// No rules: an empty list, not null.
	if _, err := pols.Create(ctx, &client.ACLPolicy{Name: "web-ops"}); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t).Body; b != `{"name":"web-ops","rules":[],"create_index":0,"modify_index":0}` {
		t.Errorf("empty policy body %s", b)
	}

	// The paged list shape and an empty list.
	rec.answers["GET /v1/acl/policies"] = answer{200, `{"items":[` + policyJSON + `],"index":12}`}
	if list, _, err = pols.List(ctx, nil); err != nil || len(list) != 1 || list[0].Name != "web-ops" {
		t.Errorf("paged List = %+v, %v", list, err)
	}
	rec.answers["GET /v1/acl/policies"] = answer{200, `{"items":null,"index":12}`}
	if list, _, err = pols.List(ctx, nil); err != nil || list == nil || len(list) != 0 {
		t.Errorf("empty List = %#v, %v; want an empty slice", list, err)
	}

	// Nothing is sent for an empty name.
	n := len(rec.requests())
	if _, err := pols.Create(ctx, &client.ACLPolicy{}); err == nil {
		t.Error("Create without a name succeeded")
	}
	if _, _, err := pols.Get(ctx, "", nil); err == nil {
		t.Error("Get without a name succeeded")
	}
	if err := pols.Delete(ctx, ""); err == nil {
		t.Error("Delete without a name succeeded")
	}
	if len(rec.requests()) != n {
		t.Error("a request was sent for an empty name")
	}
}

func TestACLTokens(t *testing.T) {
	rec := newRecorder(t, map[string]answer{
		"POST /v1/acl/tokens":                   {200, tokenJSON},
		"GET /v1/acl/tokens/" + testAccessor:    {200, strings.Replace(tokenJSON, `"secret_id":"`+testSecret+`",`, "", 1)},
		"DELETE /v1/acl/tokens/" + testAccessor: {200, `{}`},
		"GET /v1/acl/tokens":                    {200, `[` + strings.Replace(tokenJSON, `"secret_id":"`+testSecret+`",`, "", 1) + `]`},
	})
	ctx := context.Background()
	toks := tokenClient(t, rec.URL, testSecret).ACL().Tokens()

	tok, err := toks.Create(ctx, client.ACLTokenRequest{Name: "ci", Policies: []string{"web-ops"}})
	if err != nil {
		t.Fatal(err)
	}
	if tok.SecretID != testSecret || tok.AccessorID != testAccessor {
		t.Errorf("Create = %+v", tok)
	}
	r := rec.last(t)
	if r.Method != "POST" || r.Path != "/v1/acl/tokens" || r.Auth != "Bearer "+testSecret ||
		r.Body != `{"name":"ci","policies":["web-ops"]}` || r.ContentType != "application/json" {
		t.Errorf("create request = %+v", r)
	}
	if _, err := toks.Create(ctx, client.ACLTokenRequest{Type: client.ACLTokenNode, Node: "hv-1"}); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t).Body; b != `{"type":"node","node":"hv-1"}` {
		t.Errorf("node token body %s", b)
	}

	got, meta, err := toks.Get(ctx, testAccessor, nil)
	if err != nil || got.SecretID != "" || got.Name != "ci" || meta.Index != 7 {
		t.Errorf("Get = %+v, %+v, %v", got, meta, err)
	}
	if r := rec.last(t); r.Method != "GET" || r.Path != "/v1/acl/tokens/"+testAccessor {
		t.Errorf("get request = %+v", r)
	}
	list, _, err := toks.List(ctx, nil)
	if err != nil || len(list) != 1 || list[0].AccessorID != testAccessor {
		t.Errorf("List = %+v, %v", list, err)
	}
	if err := toks.Delete(ctx, testAccessor); err != nil {
		t.Fatal(err)
	}
	if r := rec.last(t); r.Method != "DELETE" || r.Path != "/v1/acl/tokens/"+testAccessor || r.Body != "" {
		t.Errorf("delete request = %+v", r)
	}
	if err := toks.Delete(ctx, "nope"); !client.IsNotFound(err) {
		t.Errorf("Delete of a missing token: %v, want not found", err)
	}

	// A failed create is not resent (it would make a second token).
	rec.answers["POST /v1/acl/tokens"] = answer{403, `{"error":{"code":"permission_denied","message":"needs acl:write"}}`}
	n := len(rec.requests())
	if _, err := toks.Create(ctx, client.ACLTokenRequest{Policies: []string{"x"}}); !client.IsPermissionDenied(err) || !errors.Is(err, client.ErrPermissionDenied) {
		t.Errorf("Create refused: %v", err)
	}
	if len(rec.requests()) != n+1 {
		t.Errorf("%d requests for one refused create", len(rec.requests())-n)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv(client.EnvAddr, "10.0.0.1:7400, https://ctl.example:7400/")
	t.Setenv(client.EnvToken, " "+testSecret+"\n")
	cfg, err := client.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"http://10.0.0.1:7400", "https://ctl.example:7400"}; !reflect.DeepEqual(cfg.Addrs, want) {
		t.Errorf("Addrs = %q, want %q", cfg.Addrs, want)
	}
	if cfg.Token != testSecret {
		t.Errorf("Token not read from %s", client.EnvToken)
	}

	t.Setenv(client.EnvAddr, "")
	t.Setenv(client.EnvToken, "")
	if cfg, err = client.ConfigFromEnv(); err != nil || cfg.Addrs != nil || cfg.Token != "" {
		t.Errorf("empty variables: %+v, %v", cfg, err)
	}

	t.Setenv(client.EnvAddr, "ftp://x")
	if _, err := client.ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "$KUMOI_ADDR") {
		t.Errorf("bad KUMOI_ADDR: %v, want an error naming it", err)
	}
}

// Connect with the address and token of the environment (KUMOI_ADDR,
// KUMOI_TOKEN) and ask who the token is.
func ExampleConfigFromEnv() {
	cfg, err := client.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	cfg.UserAgent = "my-tool/1.0"
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	me, err := c.ACL().Self(context.Background())
	switch {
	case client.IsUnauthenticated(err):
		log.Fatal("set KUMOI_TOKEN to the secret of an ACL token")
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println(me.AccessorID, me.Type, me.Policies)
}
