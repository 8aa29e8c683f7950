package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// newClient returns a client for addrs with short timeouts.
func newClient(tb testing.TB, addrs ...string) *client.Client {
	tb.Helper()
	c, err := client.New(client.Config{Addrs: addrs, Timeout: 5 * time.Second, RetryDeadline: 2 * time.Second})
	if err != nil {
		tb.Fatalf("client.New: %v", err)
	}
	return c
}

func vmCreate(name string, cpus int, mem int64, labels map[string]string) resource.CreateRequest {
	spec, _ := json.Marshal(resource.VMSpec{CPUs: cpus, MemoryMiB: mem})
	return resource.CreateRequest{Name: name, Labels: labels, Spec: spec}
}

func mustCreate(tb testing.TB, c *client.Client, name string, labels map[string]string) *resource.Object {
	tb.Helper()
	o, err := c.Create(context.Background(), resource.KindVM, vmCreate(name, 1, 512, labels))
	if err != nil {
		tb.Fatalf("create %s: %v", name, err)
	}
	return o
}

// countRequests counts the fake's requests with that method and path.
func countRequests(s *testapi.Server, method, path string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func TestNormalizeAddr(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "http://127.0.0.1:7400", want: "http://127.0.0.1:7400"},
		{in: "127.0.0.1:7400", want: "http://127.0.0.1:7400"},
		{in: " https://ctl.example:7400/ ", want: "https://ctl.example:7400"},
		{in: "http://ctl:7400/prefix/", want: "http://ctl:7400/prefix"},
		{in: "", err: "empty"},
		{in: "ftp://x:1", err: "scheme must be http or https"},
		{in: "http://", err: "not a URL"},
		{in: "http://x:1/?a=b", err: "plain base URL"},
	} {
		got, err := client.NormalizeAddr(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("NormalizeAddr(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := client.New(client.Config{Addrs: []string{"ok:1", "ftp://bad"}}); err == nil {
		t.Error("New accepted a bad address")
	}
	c, err := client.New(client.Config{})
	if err != nil || len(c.Addrs()) != 1 || c.Addrs()[0] != client.DefaultAddr {
		t.Errorf("New(zero config) addrs = %v, %v; want [%s]", c.Addrs(), err, client.DefaultAddr)
	}
}

func TestCRUD(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	ctx := context.Background()

	list, meta, err := c.List(ctx, resource.KindVM, nil)
	if err != nil || list == nil || len(list) != 0 {
		t.Fatalf("List(empty) = %v, %v; want empty non-nil slice", list, err)
	}
	if !meta.KnownLeader {
		t.Errorf("meta.KnownLeader = false, want true")
	}

	web := mustCreate(t, c, "web", map[string]string{"app": "web"})
	if web.Kind != resource.KindVM || web.Name != "web" || web.ID == "" || web.ModifyIndex == 0 {
		t.Fatalf("Create returned %+v", web)
	}
	spec, err := resource.DecodeSpec[resource.VMSpec](web)
	if err != nil || spec.Power != resource.PowerRunning {
		t.Errorf("created spec = %+v, %v; want defaults filled", spec, err)
	}
	mustCreate(t, c, "db", map[string]string{"app": "db"})

	_, err = c.Create(ctx, resource.KindVM, vmCreate("web", 1, 512, nil))
	if !errors.Is(err, client.ErrAlreadyExists) || !client.IsConflict(err) {
		t.Errorf("duplicate Create: err = %v; want already exists conflict", err)
	}

	got, meta, err := c.Get(ctx, resource.KindVM, "web", nil)
	if err != nil || !got.Equal(web) {
		t.Fatalf("Get = %+v, %v; want %+v", got, err, web)
	}
	if meta.Index != s.Index() {
		t.Errorf("meta.Index = %d, want %d", meta.Index, s.Index())
	}

	list, _, err = c.List(ctx, resource.KindVM, nil)
	if err != nil || len(list) != 2 || list[0].Name != "db" || list[1].Name != "web" {
		t.Fatalf("List = %v, %v; want [db web]", list, err)
	}

	// Read-modify-write with CAS.
	mod := got.Copy()
	mod.Labels["tier"] = "front"
	mod.Spec = json.RawMessage(`{"cpus":4,"memory_mib":1024}`)
	upd, err := c.Update(ctx, resource.KindVM, "web", mod, &client.WriteOptions{CAS: got.ModifyIndex})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if upd.ModifyIndex <= got.ModifyIndex || upd.Labels["tier"] != "front" || upd.ID != web.ID {
		t.Errorf("Update returned %+v", upd)
	}
	_, err = c.Update(ctx, resource.KindVM, "web", mod, &client.WriteOptions{CAS: got.ModifyIndex})
	if !errors.Is(err, client.ErrCASMismatch) || !client.IsConflict(err) || client.IsNotFound(err) {
		t.Errorf("stale CAS Update: err = %v; want cas mismatch", err)
	}
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusConflict || apiErr.Code != resource.CodeCASMismatch {
		t.Errorf("stale CAS Update: err = %#v", err)
	}

	_, err = c.Delete(ctx, resource.KindVM, "web", &client.WriteOptions{CAS: got.ModifyIndex})
	if !errors.Is(err, client.ErrCASMismatch) {
		t.Errorf("stale CAS Delete: err = %v", err)
	}
	del, err := c.Delete(ctx, resource.KindVM, "web", &client.WriteOptions{CAS: upd.ModifyIndex})
	if err != nil || del.Name != "web" {
		t.Fatalf("Delete = %v, %v", del, err)
	}
	_, _, err = c.Get(ctx, resource.KindVM, "web", nil)
	if !client.IsNotFound(err) || err.Error() != `vm "web" not found` {
		t.Errorf("Get after delete: err = %v; want not found", err)
	}
	_, err = c.Delete(ctx, resource.KindVM, "web", nil)
	if !client.IsNotFound(err) {
		t.Errorf("Delete twice: err = %v; want not found", err)
	}
}

func TestErrorDecoding(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	ctx := context.Background()

	for _, tc := range []struct {
		name      string
		req       resource.CreateRequest
		code      string
		field     string
		msg       string
		isInvalid bool
	}{
		{"cpus", vmCreate("a", 0, 512, nil), resource.CodeInvalidArgument, "spec.cpus", "spec.cpus: must be at least 1 (got 0)", true},
		{"memory", vmCreate("a", 1, 0, nil), resource.CodeInvalidArgument, "spec.memory_mib", "spec.memory_mib: must be at least 1 MiB (got 0)", true},
		{"name", vmCreate("Bad_Name", 1, 1, nil), resource.CodeInvalidArgument, "name", `name: "Bad_Name" is not a DNS label`, true},
		{"unknown field", resource.CreateRequest{Name: "a", Spec: json.RawMessage(`{"cpus":1,"memory_mib":1,"gpus":2}`)},
			resource.CodeInvalidArgument, "spec.gpus", "spec.gpus: unknown field", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Create(ctx, resource.KindVM, tc.req)
			var apiErr *client.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v (%T); want *APIError", err, err)
			}
			if apiErr.StatusCode != 400 || apiErr.Code != tc.code || apiErr.Field != tc.field {
				t.Errorf("APIError = %+v; want 400 %s field %s", apiErr, tc.code, tc.field)
			}
			if !strings.HasPrefix(err.Error(), tc.msg) {
				t.Errorf("Error() = %q; want prefix %q", err.Error(), tc.msg)
			}
			if errors.Is(err, resource.ErrInvalid) != tc.isInvalid {
				t.Errorf("errors.Is(err, resource.ErrInvalid) = %v", !tc.isInvalid)
			}
		})
	}

	// Field and message as separate parts, and answers that are not ours.
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"field apart", 400, `{"error":{"code":"invalid_argument","message":"must be at least 1","field":"spec.cpus"}}`, "spec.cpus: must be at least 1"},
		{"no message", 404, `{"error":{"code":"not_found"}}`, "not found (not_found)"},
		{"proxy text", 502, "<html>bad gateway</html>", "GET /v1/vms/x: HTTP 502: <html>bad gateway</html>"},
		{"empty", 500, "", "internal server error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			_, _, err := newClient(t, srv.URL).Get(ctx, resource.KindVM, "x", nil)
			var apiErr *client.APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tc.status || err.Error() != tc.want {
				t.Errorf("err = %q (%#v); want %q", err, err, tc.want)
			}
		})
	}
}

func TestQueryEncoding(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	ctx := context.Background()
	mustCreate(t, c, "a", map[string]string{"app": "web", "tier": "front"})
	mustCreate(t, c, "b", map[string]string{"app": "web", "tier": "db"})
	mustCreate(t, c, "c", map[string]string{"app": "batch"})

	for _, tc := range []struct {
		name  string
		opts  *client.QueryOptions
		query map[string]string
		names string
	}{
		{"none", nil, map[string]string{}, "a,b,c"},
		{"selector", &client.QueryOptions{Selector: "app=web,tier!=db"},
			map[string]string{"selector": "app=web,tier!=db"}, "a"},
		{"exists", &client.QueryOptions{Selector: "!tier"}, map[string]string{"selector": "!tier"}, "c"},
		{"stale", &client.QueryOptions{Stale: true}, map[string]string{"stale": "true"}, "a,b,c"},
		{"blocking", &client.QueryOptions{WaitIndex: 1, WaitTime: 90 * time.Second},
			map[string]string{"index": "1", "wait": "1m30s"}, "a,b,c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.Requests())
			list, _, err := c.List(ctx, resource.KindVM, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, o := range list {
				names = append(names, o.Name)
			}
			if got := strings.Join(names, ","); got != tc.names {
				t.Errorf("names = %s, want %s", got, tc.names)
			}
			reqs := s.Requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			q := reqs[0].Query
			if len(q) != len(tc.query) {
				t.Errorf("query = %v, want %v", q, tc.query)
			}
			for k, v := range tc.query {
				if len(q[k]) != 1 || q[k][0] != v {
					t.Errorf("query[%s] = %v, want %q", k, q[k], v)
				}
			}
		})
	}

	_, _, err := c.List(ctx, resource.KindVM, &client.QueryOptions{Selector: "a b=c"})
	if !errors.Is(err, resource.ErrInvalid) || !strings.Contains(err.Error(), "label selector") {
		t.Errorf("bad selector: err = %v", err)
	}

	// Names are path-escaped.
	_, _, err = c.Get(ctx, resource.KindVM, "a/../b", nil)
	if !client.IsNotFound(err) {
		t.Errorf("Get(a/../b): err = %v; want not found", err)
	}
	if r := s.Requests(); r[len(r)-1].Path != "/v1/vms/a/../b" {
		t.Errorf("path = %q", r[len(r)-1].Path)
	}
}

func TestBlockingQuery(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	ctx := context.Background()
	mustCreate(t, c, "web", nil)
	_, meta, err := c.Get(ctx, resource.KindVM, "web", nil)
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		o    *resource.Object
		meta *client.QueryMeta
		err  error
	}
	done := make(chan result, 1)
	go func() {
		o, m, err := c.Get(ctx, resource.KindVM, "web", &client.QueryOptions{WaitIndex: meta.Index, WaitTime: time.Minute})
		done <- result{o, m, err}
	}()
	testcluster.WaitFor(t, 10*time.Second, "the blocking request", func() (bool, error) {
		for _, r := range s.Requests() {
			if r.Query.Get("index") != "" {
				return true, nil
			}
		}
		return false, nil
	})
	select {
	case r := <-done:
		t.Fatalf("blocking Get returned before any change: %+v", r)
	default:
	}
	s.Put(t, resource.KindVM, "web", map[string]string{"x": "y"}, resource.VMSpec{CPUs: 2, MemoryMiB: 512}, nil)
	r := <-done
	if r.err != nil || r.meta.Index <= meta.Index || r.o.Labels["x"] != "y" {
		t.Fatalf("blocking Get = %+v, %+v, %v; want the new object", r.o, r.meta, r.err)
	}

	// A missing object still reports the index, to wait for it to appear.
	_, meta, err = c.Get(ctx, resource.KindVM, "later", nil)
	if !client.IsNotFound(err) || meta == nil || meta.Index != s.Index() {
		t.Fatalf("Get(missing) = %+v, %v; want not found with index %d", meta, err, s.Index())
	}
}

func TestFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("dead first address", func(t *testing.T) {
		t.Parallel()
		s := testapi.New(t)
		c := newClient(t, testapi.DeadAddr(t), s.URL)
		// A create is safe to send elsewhere when it never reached a server.
		mustCreate(t, c, "web", nil)
		if _, _, err := c.Get(ctx, resource.KindVM, "web", nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("remembers the controller that answered", func(t *testing.T) {
		t.Parallel()
		follower, leader := testapi.New(t), testapi.New(t)
		follower.AlwaysUnavailable.Store(true)
		c := newClient(t, follower.URL, leader.URL)
		for range 3 {
			if _, _, err := c.List(ctx, resource.KindVM, nil); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(follower.Requests()); n != 1 {
			t.Errorf("follower got %d requests, want 1 (later ones go to the leader first)", n)
		}
		if n := len(leader.Requests()); n != 3 {
			t.Errorf("leader got %d requests, want 3", n)
		}
	})

	t.Run("all unreachable", func(t *testing.T) {
		t.Parallel()
		a, b := testapi.DeadAddr(t), testapi.DeadAddr(t)
		c := newClient(t, a, b)
		_, _, err := c.Get(ctx, resource.KindVM, "web", nil)
		var ue *client.UnreachableError
		if !errors.Is(err, client.ErrUnreachable) || !errors.As(err, &ue) || len(ue.Addrs) != 2 {
			t.Fatalf("err = %v; want UnreachableError", err)
		}
		want := "cannot reach any controller at " + a + ", " + b + ": connection refused"
		if err.Error() != want {
			t.Errorf("err = %q\nwant  %q", err, want)
		}
		_, err = c.Create(ctx, resource.KindVM, vmCreate("web", 1, 1, nil))
		if !errors.Is(err, client.ErrUnreachable) {
			t.Errorf("Create: err = %v; want ErrUnreachable", err)
		}
	})
}

func TestRetryOn503(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("idempotent requests retry until the leader is back", func(t *testing.T) {
		t.Parallel()
		s := testapi.New(t)
		c := newClient(t, s.URL)
		mustCreate(t, c, "web", nil)
		s.Unavailable.Store(3)
		if _, _, err := c.Get(ctx, resource.KindVM, "web", nil); err != nil {
			t.Fatalf("Get: %v", err)
		}
		if n := countRequests(s, "GET", "/v1/vms/web"); n != 4 {
			t.Errorf("%d GETs, want 4", n)
		}
		s.Unavailable.Store(2)
		if _, err := c.Delete(ctx, resource.KindVM, "web", nil); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	})

	t.Run("reads retry when a write may have been applied", func(t *testing.T) {
		t.Parallel()
		s := testapi.New(t)
		c := newClient(t, s.URL)
		s.UnavailableUnknown.Store(2)
		if _, _, err := c.List(ctx, resource.KindVM, nil); err != nil {
			t.Fatalf("List: %v", err)
		}
	})

	t.Run("creates retry when nothing was done", func(t *testing.T) {
		t.Parallel()
		s := testapi.New(t)
		c := newClient(t, s.URL)
		s.Unavailable.Store(2) // no_leader, Retry-After
		mustCreate(t, c, "web", nil)
		if n := countRequests(s, "POST", "/v1/vms"); n != 3 {
			t.Errorf("%d POSTs, want 3", n)
		}
	})

	t.Run("creates are not retried when they may have been applied", func(t *testing.T) {
		t.Parallel()
		s := testapi.New(t)
		c := newClient(t, s.URL)
		s.UnavailableUnknown.Store(1)
		_, err := c.Create(ctx, resource.KindVM, vmCreate("web", 1, 1, nil))
		if !errors.Is(err, client.ErrUnknownOutcome) || !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("Create: err = %v; want unknown outcome", err)
		}
		if n := countRequests(s, "POST", "/v1/vms"); n != 1 {
			t.Errorf("%d POSTs, want 1", n)
		}
	})

	t.Run("PUT is not retried blindly, with or without CAS", func(t *testing.T) {
		t.Parallel()
		s := testapi.New(t)
		c := newClient(t, s.URL)
		o := mustCreate(t, c, "web", nil)
		s.UnavailableUnknown.Store(1)
		if _, err := c.Update(ctx, resource.KindVM, "web", o, nil); !errors.Is(err, client.ErrUnknownOutcome) {
			t.Fatalf("Update without CAS: err = %v; want unknown outcome", err)
		}
		// A CAS write that was applied and then resent would fail with
		// cas_mismatch: the caller must read to find out instead.
		s.UnavailableUnknown.Store(1)
		if _, err := c.Update(ctx, resource.KindVM, "web", o, &client.WriteOptions{CAS: o.ModifyIndex}); !errors.Is(err, client.ErrUnknownOutcome) {
			t.Fatalf("Update with CAS: err = %v; want unknown outcome", err)
		}
		s.Unavailable.Store(1)
		if _, err := c.Update(ctx, resource.KindVM, "web", o, nil); err != nil {
			t.Fatalf("Update without CAS after no_leader: %v", err)
		}
	})

	t.Run("bounded by the retry deadline", func(t *testing.T) {
		t.Parallel()
		s := testapi.New(t)
		s.AlwaysUnavailable.Store(true)
		c, err := client.New(client.Config{Addrs: []string{s.URL}, RetryDeadline: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _, err = c.Get(ctx, resource.KindVM, "web", nil)
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != resource.CodeNoLeader || !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("err = %v; want 503 no_leader", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("gave up after %s; want about 300ms", d)
		}
		if n := len(s.Requests()); n < 2 {
			t.Errorf("%d requests; want retries", n)
		}
	})

	t.Run("context cancel stops retrying", func(t *testing.T) {
		t.Parallel()
		s := testapi.New(t)
		s.AlwaysUnavailable.Store(true)
		c, err := client.New(client.Config{Addrs: []string{s.URL}, RetryDeadline: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		s.Hook = func(*http.Request) {
			if len(s.Requests()) >= 3 {
				cancel()
			}
		}
		_, _, err = c.Get(cctx, resource.KindVM, "web", nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v; want context.Canceled", err)
		}
	})
}

func TestAttemptTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); hung.Close() })
	s := testapi.New(t)

	c, err := client.New(client.Config{Addrs: []string{hung.URL, s.URL}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// A read moves on to the next controller.
	if _, _, err := c.List(ctx, resource.KindVM, nil); err != nil {
		t.Fatalf("List: %v", err)
	}

	// A create that may have arrived is not sent again.
	c, err = client.New(client.Config{Addrs: []string{hung.URL, s.URL}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Create(ctx, resource.KindVM, vmCreate("web", 1, 1, nil))
	if !errors.Is(err, client.ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "did not answer within 100ms") {
		t.Fatalf("Create: err = %v; want unknown outcome after a timeout", err)
	}
	if n := countRequests(s, "POST", "/v1/vms"); n != 0 {
		t.Errorf("create was sent to the second controller too")
	}
}

func TestClusterEndpoints(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	ctx := context.Background()
	s.SetCluster(resource.Cluster{
		Leader: "a",
		Servers: []resource.Server{
			{ID: "a", Address: "10.0.0.1:7401", Voter: true, Leader: true},
			{ID: "b", Address: "10.0.0.2:7401", Voter: true},
		},
	})

	st, err := c.Status(ctx)
	if err != nil || st.NodeID != "ctl-1" || st.RaftState != "Leader" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	cl, err := c.Cluster(ctx)
	if err != nil || cl.Leader != "a" || len(cl.Servers) != 2 || cl.Members == nil {
		t.Fatalf("Cluster = %+v, %v", cl, err)
	}
	res, err := c.RemoveServer(ctx, "b")
	if err != nil || res.Removed != "b" || res.Index == 0 {
		t.Fatalf("RemoveServer = %+v, %v", res, err)
	}
	if _, err := c.RemoveServer(ctx, "b"); !client.IsNotFound(err) {
		t.Errorf("RemoveServer twice: err = %v; want not found", err)
	}
	if _, err := c.RemoveServer(ctx, ""); err == nil {
		t.Errorf("RemoveServer(\"\") succeeded")
	}
}

// TestStreamFallsBackToHTTP: with Config.Stream, a controller that does
// not take request streams (the fake, like an older build) is sent HTTP
// requests; it is asked once, not per write.
func TestStreamFallsBackToHTTP(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c, err := client.New(client.Config{Addrs: []string{s.URL}, Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, name := range []string{"a", "b", "c"} {
		mustCreate(t, c, name, nil)
	}
	if _, err := c.Delete(context.Background(), resource.KindVM, "a", nil); err != nil {
		t.Fatal(err)
	}
	if n := countRequests(s, http.MethodPost, "/v1/stream"); n != 1 {
		t.Fatalf("%d stream upgrades asked for, want 1", n)
	}
	if n := countRequests(s, http.MethodPost, "/v1/vms"); n != 3 {
		t.Fatalf("%d creates over HTTP, want 3", n)
	}
	// Requests sent through an HTTP proxy stay HTTP requests (a stream
	// would not go through it). The fake serves absolute-URI requests, so
	// it is its own proxy here.
	proxy, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(proxy)
	pc, err := client.New(client.Config{Addrs: []string{s.URL}, Stream: true, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	mustCreate(t, pc, "proxied", nil)
	if n := countRequests(s, http.MethodPost, "/v1/stream"); n != 1 {
		t.Fatalf("a proxied client asked for a stream (%d upgrades in all)", n)
	}
	// A custom transport that is not an *http.Transport cannot carry streams.
	if _, err := client.New(client.Config{Stream: true, HTTPClient: &http.Client{Transport: roundTripFunc(nil)}}); err == nil {
		t.Fatal("Stream with a foreign transport accepted")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestStreamUnansweredFailsOver: a controller that takes a stream and then
// answers nothing (cut off, the connection still up) costs the write in
// flight its outcome, as over HTTP; the next write does not queue behind
// it on that stream but dials again, and goes to the next address when
// that dial fails.
func TestStreamUnansweredFailsOver(t *testing.T) {
	t.Parallel()
	fake := testapi.New(t)
	var once sync.Once
	upgraded := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/stream" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: kumoi-forward/1\r\n\r\n")
		brw.Flush()
		once.Do(func() { close(upgraded) })
		io.Copy(io.Discard, conn) // reads every frame, answers none
	}))
	defer hung.Close()
	c, err := client.New(client.Config{Addrs: []string{hung.URL, fake.URL}, Stream: true, Timeout: 300 * time.Millisecond, RetryDeadline: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	_, err = c.Create(ctx, resource.KindVM, resource.CreateRequest{Name: "lost", Spec: []byte(`{"cpus":1,"memory_mib":64}`)})
	if !errors.Is(err, client.ErrUnknownOutcome) {
		t.Fatalf("a write nobody answered: %v, want an unknown outcome", err)
	}
	<-upgraded
	hung.Listener.Close() // the controller is now unreachable: dials fail
	if _, err := c.Create(ctx, resource.KindVM, resource.CreateRequest{Name: "next", Spec: []byte(`{"cpus":1,"memory_mib":64}`)}); err != nil {
		t.Fatalf("the next write: %v, want it on the next controller", err)
	}
	if fake.Object(resource.KindVM, "next") == nil {
		t.Fatal("the next write did not reach the next controller")
	}
}
