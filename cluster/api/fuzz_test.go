package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// fuzzMethods are the methods FuzzAPIRequest picks from.
var fuzzMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodPatch}

// FuzzAPIRequest sends arbitrary requests — method, path and query, body,
// Authorization header — to an API with ACLs on (bootstrapped, one VM,
// one host, one ACL policy and a read-only token). Whatever the input, the
// API never panics or answers 500, a refused request (4xx) changes
// nothing, and every error answer is the JSON error shape.
func FuzzAPIRequest(f *testing.F) {
	seeds := []struct {
		method uint8
		path   string
		body   string
		auth   string
	}{
		{0, "/v1/status", "", ""},
		{1, "/v1/vms", `{"name":"a","spec":{"cpus":1,"memory_mib":64}}`, "mgmt"},
		{1, "/v1/vms", `{"name":"a","NAME":"b","spec":{"cpus":1,"memory_mib":64}}`, "mgmt"},
		{1, "/v1/vms", `{"name":"a","spec":{"cpus":1,"memory_mib":64,"boot":{"zzz":1}}}`, "reader"},
		{2, "/v1/vms/web", `{"labels":{"team":"web"},"spec":{"cpus":2,"memory_mib":64}}`, "mgmt"},
		{3, "/v1/vms/web", "", "reader"},
		{1, "/v1/vms/web/stop", `{}`, "Bearer x"},
		{1, "/v1/hosts/h1/report", `{"reports":[{"vm":"web","epoch":1,"phase":"running"}]}`, "mgmt"},
		{1, "/v1/acl/bootstrap", `{}`, ""},
		{1, "/v1/acl/policies", `{"name":"p","rules":[{"kind":"vm","access":"write","selector":"team=web"}]}`, "mgmt"},
		{1, "/v1/acl/tokens", `{"type":"node","node":"h1"}`, "reader"},
		{0, "/v1/acl/token/self", "", "reader"},
		{0, "/v1/vms?index=1&wait=10ms&limit=1&next=x", "", "mgmt"},
		{0, "/v1/events?index=0", "", "mgmt"},
		{3, "/v1/cluster/servers/n1", "", "mgmt"},
		{0, "/debug/pprof/cmdline", "", "reader"},
		{0, "/v1/vms/%ZZ", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, []byte(s.body), s.auth)
	}
	f.Fuzz(func(t *testing.T, method uint8, path string, body []byte, auth string) {
		u, err := url.ParseRequestURI(path)
		if err != nil || len(body) > 1<<16 {
			return
		}
		e := newACLEnv(t, "n1")
		e.policy(t, "readers", "vm:read", "host:read")
		reader := e.token(t, map[string]any{"policies": []string{"readers"}})
		e.create(t, "hosts", "h1", nil)
		e.create(t, "vms", "web", map[string]string{"team": "web"})
		switch auth {
		case "mgmt":
			auth = "Bearer " + e.mgmt.SecretID
		case "reader":
			auth = "Bearer " + reader.SecretID
		}
		before := e.digest()

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req := httptest.NewRequest(fuzzMethods[int(method)%len(fuzzMethods)], "/", bytes.NewReader(body)).WithContext(ctx)
		req.URL = u
		req.RequestURI = u.RequestURI()
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header["Authorization"] = []string{auth}
		}
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)

		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable && rec.Code != http.StatusGatewayTimeout {
			t.Fatalf("%s %s %q (auth %q): %d %s", req.Method, path, body, auth, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			if after := e.digest(); after != before {
				t.Fatalf("%s %s %q (auth %q) was refused (%d %s) but changed the state", req.Method, path, body, auth, rec.Code, rec.Body)
			}
			var er resource.ErrorResponse
			if req.Method != http.MethodHead && (json.Unmarshal(rec.Body.Bytes(), &er) != nil || er.Error.Code == "") {
				t.Fatalf("%s %s: %d answer is not a JSON error: %q", req.Method, path, rec.Code, rec.Body)
			}
		}
	})
}
