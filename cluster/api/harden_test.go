package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/resource"
)

// badInputCase is one hostile request and the error it must get.
type badInputCase struct {
	name, method, path string
	body               any
	status             int
	code, field, msg   string
}

func runBadInput(t *testing.T, e *httpEnv, cases []badInputCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.digest()
			r := e.call(t, tc.method, tc.path, tc.body)
			wantStatus(t, r, tc.status)
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			eb := r.errBody(t)
			if eb.Code != tc.code || eb.Field != tc.field || !strings.Contains(eb.Message, tc.msg) {
				t.Errorf("error %+v; want code %q field %q message containing %q", eb, tc.code, tc.field, tc.msg)
			}
			if after := e.digest(); after != before {
				t.Errorf("state changed by a rejected request")
			}
		})
	}
}

// TestHTTPExactJSON: field names match exactly (no case folding, no
// Kelvin sign for k), duplicate keys are refused, unknown fields are named
// by their full path, and invalid UTF-8 is refused rather than replaced.
func TestHTTPExactJSON(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.mustCreate(t, "vms", "web")
	const bad = resource.CodeInvalidArgument
	runBadInput(t, e, []badInputCase{
		{"duplicate name", "POST", "/v1/vms", `{"name":"a","name":"b","spec":` + vmSpec + `}`, 400, bad, "name", "twice"},
		{"name and NAME", "POST", "/v1/vms", `{"name":"a","NAME":"b","spec":` + vmSpec + `}`, 400, bad, "NAME", `did you mean "name"`},
		{"upper-case spec", "POST", "/v1/vms", `{"name":"a","SPEC":{"CPUS":1,"memory_mib":1}}`, 400, bad, "SPEC", "case-sensitive"},
		{"upper-case spec field", "POST", "/v1/vms", `{"name":"a","spec":{"CPUS":1,"memory_mib":1}}`, 400, bad, "spec.CPUS", `did you mean "cpus"`},
		{"duplicate spec field", "POST", "/v1/vms", `{"name":"a","spec":{"cpus":1,"cpus":2,"memory_mib":1}}`, 400, bad, "spec.cpus", "twice"},
		{"duplicate label", "POST", "/v1/vms", `{"name":"a","labels":{"k":"1","k":"2"},"spec":` + vmSpec + `}`, 400, bad, "labels.k", "twice"},
		{"kelvin sign", "PUT", "/v1/vms/web", `{"\u212aind":"vm","spec":` + vmSpec + `}`, 400, bad, "\u212aind", `did you mean "kind"`},
		{"unknown boot field", "POST", "/v1/vms", `{"name":"a","spec":{"cpus":1,"memory_mib":1,"boot":{"zzz":1}}}`, 400, bad, "spec.boot.zzz", "unknown field"},
		{"duplicate boot field", "POST", "/v1/vms", `{"name":"a","spec":{"cpus":1,"memory_mib":1,"boot":{"kernel":"/a","kernel":"/b"}}}`, 400, bad, "spec.boot.kernel", "twice"},
		{"invalid UTF-8", "POST", "/v1/vms", "{\"name\":\"a\",\"labels\":{\"k\":\"\xff\"},\"spec\":" + vmSpec + "}", 400, bad, "body", "UTF-8"},
		{"lone surrogate", "POST", "/v1/vms", `{"name":"a","labels":{"k":"\ud800"},"spec":` + vmSpec + `}`, 400, bad, "body", "surrogate"},
		{"unknown report field", "POST", "/v1/hosts/h1/report", `{"reports":[{"vm":"web","epoch":1,"phase":"running","PHASE":"x"}]}`, 400, bad, "reports[0].PHASE", "case-sensitive"},
		{"unknown action field", "POST", "/v1/vms/web/stop", `{"FORCE":true}`, 400, bad, "FORCE", `"force"`},
	})
	// A surrogate pair is fine.
	r := e.call(t, "POST", "/v1/vms", `{"name":"emoji","labels":{"k":"\ud83d\ude00"},"spec":`+vmSpec+`}`)
	wantStatus(t, r, http.StatusCreated)
	if got := r.object(t).Labels["k"]; got != "\U0001F600" {
		t.Fatalf("label %q", got)
	}
}

// TestHTTPStringHygiene: boot strings and label values refuse control,
// bidi and separator characters and a BOM; boot strings have a length cap.
func TestHTTPStringHygiene(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	const bad = resource.CodeInvalidArgument
	boot := func(field, v string) string {
		return `{"name":"a","spec":{"cpus":1,"memory_mib":1,"boot":{"kernel":"/k",` + field + `:"` + v + `"}}}`
	}
	label := func(v string) string {
		return `{"name":"a","labels":{"k":"` + v + `"},"spec":` + vmSpec + `}`
	}
	runBadInput(t, e, []badInputCase{
		{"NUL in image", "POST", "/v1/vms", boot(`"image"`, `/x\u0000y`), 400, bad, "spec.boot.image", "control character U+0000"},
		{"newline in cmdline", "POST", "/v1/vms", boot(`"cmdline"`, `a\nb`), 400, bad, "spec.boot.cmdline", "control character"},
		{"ESC in initrd", "POST", "/v1/vms", boot(`"initrd"`, `/a\u001b[2J`), 400, bad, "spec.boot.initrd", "control character"},
		{"RLO in kernel", "POST", "/v1/vms", `{"name":"a","spec":{"cpus":1,"memory_mib":1,"boot":{"kernel":"/a\u202e"}}}`, 400, bad, "spec.boot.kernel", "bidirectional"},
		{"huge cmdline", "POST", "/v1/vms", boot(`"cmdline"`, strings.Repeat("x", 900<<10)), 400, bad, "spec.boot.cmdline", "limit is 4096 bytes"},
		{"huge image path", "POST", "/v1/vms", boot(`"image"`, "/"+strings.Repeat("x", 4096)), 400, bad, "spec.boot.image", "limit is 4096"},
		{"RLO in label", "POST", "/v1/vms", label(`\u202e`), 400, bad, "labels.k", "bidirectional"},
		{"LRI in label", "POST", "/v1/vms", label(`a\u2066b`), 400, bad, "labels.k", "bidirectional"},
		{"line separator in label", "POST", "/v1/vms", label(`a\u2028b`), 400, bad, "labels.k", "separator"},
		{"paragraph separator in label", "POST", "/v1/vms", label(`a\u2029b`), 400, bad, "labels.k", "separator"},
		{"BOM in label", "POST", "/v1/vms", label(`\ufeffa`), 400, bad, "labels.k", "byte order mark"},
		{"C1 control in label", "POST", "/v1/vms", label(`a\u0085`), 400, bad, "labels.k", "control character"},
		{"long label value", "POST", "/v1/vms", label(strings.Repeat("é", 128)), 400, bad, "labels.k", "256 bytes"},
	})
	// 255 bytes of UTF-8 is the limit, whatever the characters.
	r := e.call(t, "POST", "/v1/vms", label(strings.Repeat("é", 127)+"x"))
	wantStatus(t, r, http.StatusCreated)
}

// TestHTTPExplicitZero: an omitted field takes its default; an explicit 0
// where 0 means nothing is refused with the field's range.
func TestHTTPExplicitZero(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	const bad = resource.CodeInvalidArgument
	runBadInput(t, e, []badInputCase{
		{"cpu_overcommit 0", "POST", "/v1/hosts", `{"name":"h","spec":{"cpu_overcommit":0}}`, 400, bad, "spec.cpu_overcommit", "between 1 and 64 (got 0)"},
		{"memory_overcommit 0", "POST", "/v1/hosts", `{"name":"h","spec":{"memory_overcommit":0}}`, 400, bad, "spec.memory_overcommit", "between 1 and 64"},
		{"max_steps 0", "POST", "/v1/policies", `{"name":"p","spec":{"source":"x","max_steps":0}}`, 400, bad, "spec.max_steps", "between 1 and"},
		{"timeout empty", "POST", "/v1/policies", `{"name":"p","spec":{"source":"x","timeout":""}}`, 400, bad, "spec.timeout", "duration"},
		{"power empty", "POST", "/v1/vms", `{"name":"v","spec":{"cpus":1,"memory_mib":1,"power":""}}`, 400, bad, "spec.power", "running"},
		{"ha empty", "POST", "/v1/vms", `{"name":"v","spec":{"cpus":1,"memory_mib":1,"ha":""}}`, 400, bad, "spec.ha", "restart"},
	})
	r := e.call(t, "POST", "/v1/hosts", `{"name":"h","spec":{}}`)
	wantStatus(t, r, http.StatusCreated)
	hs, _ := resource.HostStateOf(r.object(t))
	if hs.CPUOvercommit != 1 || hs.MemoryOvercommit != 1 {
		t.Fatalf("defaults not applied: %+v", hs)
	}
	r = e.call(t, "POST", "/v1/vms", `{"name":"v","spec":{"cpus":1,"memory_mib":1,"boot":{}}}`)
	wantStatus(t, r, http.StatusCreated)
	if vs, _ := resource.VMStateOf(r.object(t)); vs.Boot != nil || vs.Power != resource.PowerRunning || vs.HA != resource.HANone {
		t.Fatalf("defaults not applied: %+v", vs)
	}
}

// TestHTTPRemoveOnlyVoter: DELETE /v1/cluster/servers/<the only
// controller> is a 409 conflict, not a 500.
func TestHTTPRemoveOnlyVoter(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	runBadInput(t, e, []badInputCase{
		{"only voter", "DELETE", "/v1/cluster/servers/n1", nil, 409, resource.CodeConflict, "", "only voting controller"},
	})
	// With a second voter it goes.
	e.b.set(func(b *httpTestBackend) {
		b.servers = append(b.servers, resource.Server{ID: "n2", Address: "n2:7401", Voter: true})
	})
	wantStatus(t, e.call(t, "DELETE", "/v1/cluster/servers/n2", nil), http.StatusOK)
}

// TestHTTPBlockingFutureIndex: a blocking query with an index ahead of the
// state waits, then answers with the state's current index (lower than
// the one sent), as docs/api.md says, so that a watcher can start again
// from 0 instead of waiting on an index the server will not reach soon.
func TestHTTPBlockingFutureIndex(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.mustCreate(t, "vms", "web")
	cur := e.call(t, "GET", "/v1/vms", nil).index(t)
	for _, path := range []string{"/v1/vms", "/v1/vms/web"} {
		r := e.call(t, "GET", fmt.Sprintf("%s?index=%d&wait=50ms", path, cur+1000), nil)
		wantStatus(t, r, http.StatusOK)
		if got := r.index(t); got != cur {
			t.Errorf("%s: X-Kumoi-Index %d after a future index; want the current %d", path, got, cur)
		}
	}
}

// TestHTTPWritesNeedJSONContentType: a POST or PUT without Content-Type:
// application/json is 415, body or not (an HTML form or a no-cors fetch
// cannot send that type); DELETE and reads need none.
func TestHTTPWritesNeedJSONContentType(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	web := e.mustCreate(t, "vms", "web")
	const ums = resource.CodeUnsupportedMediaType
	for _, tc := range []struct {
		name, method, path, ct string
		body                   any
	}{
		{"form create", "POST", "/v1/vms", "application/x-www-form-urlencoded", createBody("x")},
		{"text/plain create", "POST", "/v1/vms", "text/plain", createBody("x")},
		{"multipart create", "POST", "/v1/vms", "multipart/form-data; boundary=x", createBody("x")},
		{"no type create", "POST", "/v1/vms", "", createBody("x")},
		{"form update", "PUT", "/v1/vms/web", "application/x-www-form-urlencoded", `{"spec":` + vmSpec + `}`},
		{"bodiless action", "POST", "/v1/vms/web/stop", "", nil},
		{"form action", "POST", "/v1/vms/web/stop", "application/x-www-form-urlencoded", ""},
		{"report", "POST", "/v1/hosts/h1/report", "text/plain", `{"reports":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.digest()
			r := e.call(t, tc.method, tc.path, tc.body, "Content-Type", tc.ct)
			wantStatus(t, r, http.StatusUnsupportedMediaType)
			if eb := r.errBody(t); eb.Code != ums || !strings.Contains(eb.Message, "application/json") {
				t.Errorf("error %+v", eb)
			}
			if e.digest() != before {
				t.Error("state changed")
			}
		})
	}
	// With the type, and with parameters, writes go through.
	wantStatus(t, e.call(t, "POST", "/v1/vms/web/stop", nil, "Content-Type", "application/json; charset=utf-8"), http.StatusOK)
	wantStatus(t, e.call(t, "DELETE", "/v1/vms/"+web.Name, nil, "Content-Type", ""), http.StatusOK)
}

// TestHTTPPprofNeedsAdmin: /debug/pprof/ answers only tokens with
// cluster:admin (401 without a token, 403 with cluster:read); with ACLs
// off it answers (a dev cluster's operator).
func TestHTTPPprofNeedsAdmin(t *testing.T) {
	e := newACLEnv(t, "n1")
	e.policy(t, "readers", "cluster:read")
	e.policy(t, "admins", "cluster:admin")
	reader := e.token(t, map[string]any{"policies": []string{"readers"}})
	admin := e.token(t, map[string]any{"policies": []string{"admins"}})
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
		r := e.call(t, "GET", p, nil)
		wantStatus(t, r, http.StatusUnauthorized)
		r = e.as(t, reader.SecretID, "GET", p, nil)
		wantStatus(t, r, http.StatusForbidden)
		if eb := r.errBody(t); eb.Code != resource.CodePermissionDenied || !strings.Contains(eb.Message, "cluster:admin") {
			t.Errorf("%s with cluster:read: %+v", p, eb)
		}
		wantStatus(t, e.as(t, admin.SecretID, "GET", p, nil), http.StatusOK)
		wantStatus(t, e.as(t, e.mgmt.SecretID, "GET", p, nil), http.StatusOK)
	}
	open := newHTTPEnv(t, "n2", httpEnvOpts{})
	wantStatus(t, open.call(t, "GET", "/debug/pprof/", nil), http.StatusOK)
}

// TestHTTPListPagination: ?limit=N&next=TOKEN pages a list in name order;
// X-Kumoi-Next carries the next page's token and is absent on the last.
func TestHTTPListPagination(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	for _, n := range []string{"e", "a", "d", "c", "b"} {
		e.mustCreate(t, "vms", n)
	}
	list := func(path string) ([]string, string) {
		t.Helper()
		r := e.call(t, "GET", path, nil)
		wantStatus(t, r, http.StatusOK)
		var objs []*resource.Object
		if err := json.Unmarshal(r.body, &objs); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, o := range objs {
			names = append(names, o.Name)
		}
		return names, r.header.Get(resource.HeaderNext)
	}
	var got []string
	path := "/v1/vms?limit=2"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("too many pages")
		}
		names, next := list(path)
		if len(names) > 2 {
			t.Fatalf("page of %d", len(names))
		}
		got = append(got, names...)
		if next == "" {
			break
		}
		path = "/v1/vms?limit=2&next=" + next
	}
	if strings.Join(got, ",") != "a,b,c,d,e" {
		t.Fatalf("pages gave %v", got)
	}
	// Without limit: everything, no token.
	if names, next := list("/v1/vms"); len(names) != 5 || next != "" {
		t.Fatalf("unpaged list: %v, next %q", names, next)
	}
	// With a selector.
	if names, next := list("/v1/vms?selector=app%3Dnone&limit=1"); len(names) != 0 || next != "" {
		t.Fatalf("selector list: %v, next %q", names, next)
	}
	runBadInput(t, e, []badInputCase{
		{"limit 0", "GET", "/v1/vms?limit=0", nil, 400, resource.CodeInvalidArgument, "limit", "between 1 and"},
		{"limit huge", "GET", "/v1/vms?limit=100000000", nil, 400, resource.CodeInvalidArgument, "limit", "between 1 and"},
		{"limit word", "GET", "/v1/vms?limit=ten", nil, 400, resource.CodeInvalidArgument, "limit", "between 1 and"},
		{"bad token", "GET", "/v1/vms?next=%21%21", nil, 400, resource.CodeInvalidArgument, "next", "X-Kumoi-Next"},
	})
}

// TestLimitErrorsMapped: the state machine's refusals of limits map to
// their documented answers.
func TestLimitErrorsMapped(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("%w: 1000000 vm objects", resource.ErrLimitExceeded), 409, resource.CodeLimitExceeded},
		{fmt.Errorf("x: %w", resource.ErrLastVoter), 409, resource.CodeConflict},
		{fmt.Errorf("%w on 2 hosts (h1, h2)", resource.ErrWorkersRunning), 409, resource.CodeConflict},
	} {
		if e := toAPIError(tc.err); e.status != tc.status || e.code != tc.code {
			t.Errorf("%v: %d %s, want %d %s", tc.err, e.status, e.code, tc.status, tc.code)
		}
	}
}
