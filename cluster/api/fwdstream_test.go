package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/frames"
	"github.com/kumoi/kumoi/resource"
)

// TestStreamRequestFrame: a follower's framed request carries what a
// forwarded HTTP request would (end-to-end headers, marked forwarded by
// this node, X-Forwarded-For).
func TestStreamRequestFrame(t *testing.T) {
	h := http.Header{"Authorization": {"Bearer x"}, "X-Many": {"a", "b"}}
	req := &http.Request{Method: "PUT", URL: mustParseURI(t, "/v1/vms/a%2Fb?cas=3"), RemoteAddr: "127.0.0.9:1234", Header: h}
	a := &httpAPI{b: newHTTPTestBackend("me", 16)}
	b := a.streamRequest(nil, 7, req, []byte(`{"x":1}`))
	f, err := frames.Decode(b[4:])
	if err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Authorization": {"Bearer x"}, "X-Many": {"a", "b"}, headerForwarded: {"me"}, "X-Forwarded-For": {"127.0.0.9"}}
	if f.Type != frames.Request || f.ID != 7 || f.Method != "PUT" || f.URI != "/v1/vms/a%2Fb?cas=3" || f.Remote != "127.0.0.9:1234" ||
		!reflect.DeepEqual(f.Header, want) || string(f.Body) != `{"x":1}` {
		t.Fatalf("decoded %+v", f)
	}
	// A request frame over the server's limit is refused before it is read.
	big := bufio.NewReader(bytes.NewReader([]byte{0x7f, 0, 0, 0}))
	if _, err := frames.Read(big, maxRequestFrame); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("oversized frame: %v", err)
	}
}

func mustParseURI(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.ParseRequestURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestForwardStream: a follower's writes share one stream to the leader,
// many at once; reads go over HTTP; a leader that takes no streams is sent
// HTTP requests; a stream that breaks is reopened.
func TestForwardStream(t *testing.T) {
	l := newHTTPEnv(t, "leader", httpEnvOpts{})
	f := newHTTPEnv(t, "follower", httpEnvOpts{})
	f.follow(l)

	const n = 64
	var wg sync.WaitGroup
	results := make([]httpResult, n)
	for i := range n {
		wg.Go(func() { results[i] = f.call(t, "POST", "/v1/vms", createBody(fmt.Sprintf("vm-%d", i))) })
	}
	wg.Wait()
	for i, r := range results {
		wantStatus(t, r, http.StatusCreated)
		if o := r.object(t); o.Name != fmt.Sprintf("vm-%d", i) {
			t.Fatalf("answer %d is of %s", i, o.Name)
		}
	}
	if got := l.b.f.State().Count(resource.KindVM); got != n {
		t.Fatalf("%d VMs on the leader, want %d", got, n)
	}
	if o := f.api.fwd.opened.Load(); o != 1 {
		t.Fatalf("%d streams opened for %d concurrent writes, want 1", o, n)
	}
	if to, from := counterValue(t, f.reg, "kumoi_forward_streams"), counterValue(t, l.reg, "kumoi_forward_streams"); to != 1 || from != 1 {
		t.Fatalf("kumoi_forward_streams: follower %v, leader %v; want 1 each", to, from)
	}
	// Errors come back verbatim, with their headers.
	r := f.call(t, "POST", "/v1/vms", createBody("vm-0"))
	wantStatus(t, r, http.StatusConflict)
	if r.header.Get("Content-Type") != "application/json" || r.errBody(t).Code != resource.CodeAlreadyExists {
		t.Fatalf("conflict through the stream: %v %s", r.header, r.body)
	}
	r = f.call(t, "DELETE", "/v1/vms/vm-1", nil)
	wantStatus(t, r, http.StatusOK)
	if f.api.fwd.opened.Load() != 1 {
		t.Fatal("a second stream was opened")
	}

	// The leader's side goes away: the next write opens a new stream.
	l.api.fwdServe.closeAll()
	l.api.fwdServe.mu.Lock()
	l.api.fwdServe.draining = false // closeAll is for shutdown; this leader lives on
	l.api.fwdServe.mu.Unlock()
	waitStreamBroken(t, f)
	if v := counterValue(t, f.reg, "kumoi_forward_streams"); v != 0 {
		t.Fatalf("kumoi_forward_streams = %v on the follower after its stream broke", v)
	}
	wantStatus(t, f.call(t, "POST", "/v1/vms", createBody("after")), http.StatusCreated)
	if o := f.api.fwd.opened.Load(); o != 2 {
		t.Fatalf("%d streams opened, want 2", o)
	}

	t.Run("leader without streams", func(t *testing.T) {
		old := newHTTPEnv(t, "old", httpEnvOpts{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == frames.Path {
				http.NotFound(w, r) // a build from before streams
				return
			}
			old.srv.Config.Handler.ServeHTTP(w, r)
		}))
		defer srv.Close()
		f2 := newHTTPEnv(t, "f2", httpEnvOpts{})
		f2.b.set(func(b *httpTestBackend) {
			b.leader, b.leaderID, b.leaderAddr = false, "old", srv.Listener.Addr().String()
		})
		for _, name := range []string{"a", "b"} {
			wantStatus(t, f2.call(t, "POST", "/v1/vms", createBody(name)), http.StatusCreated)
			if by := recvWithin(t, old.forwardedBy, 5*time.Second, "the forwarded write"); by != "f2" {
				t.Fatalf("forwarded by %q", by)
			}
		}
		if f2.api.fwd.opened.Load() != 0 || len(f2.api.fwd.refused) != 1 {
			t.Fatalf("streams opened %d, refused %v", f2.api.fwd.opened.Load(), f2.api.fwd.refused)
		}
	})
}

// TestForwardStreamCancel: a client that gives up cancels its request on
// the leader; a handler that aborts breaks the client's answer.
func TestForwardStreamCancel(t *testing.T) {
	l := newHTTPEnv(t, "leader", httpEnvOpts{})
	f := newHTTPEnv(t, "follower", httpEnvOpts{})
	f.follow(l)
	started := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	l.api.frameHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/vms/slow/start":
			started <- struct{}{}
			<-r.Context().Done()
			cancelled <- struct{}{}
		case "/v1/vms/abort/start":
			w.Write([]byte("partial"))
			panic(http.ErrAbortHandler)
		default:
			l.api.ServeHTTP(w, r)
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", f.srv.URL+"/v1/vms/slow/start", nil)
	req.Header.Set("Content-Type", "application/json")
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	recvWithin(t, started, 10*time.Second, "the request on the leader")
	cancel()
	recvWithin(t, cancelled, 10*time.Second, "the leader's handler to be cancelled")
	if err := recvWithin(t, errc, 10*time.Second, "the client"); err == nil {
		t.Fatal("the cancelled request got an answer")
	}

	// An aborted answer is not relayed as a complete one.
	resp, err := http.Post(f.srv.URL+"/v1/vms/abort/start", "application/json", nil)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatalf("an aborted answer came through whole: %d", resp.StatusCode)
	}
	// The stream is still good.
	wantStatus(t, f.call(t, "POST", "/v1/vms", createBody("ok")), http.StatusCreated)
	if o := f.api.fwd.opened.Load(); o != 1 {
		t.Fatalf("%d streams opened, want 1", o)
	}
}

// TestForwardStreamDrain: a leader shutting down answers what is in
// flight on its streams, takes no new request, and refuses new streams.
func TestForwardStreamDrain(t *testing.T) {
	l := newHTTPEnv(t, "leader", httpEnvOpts{})
	f := newHTTPEnv(t, "follower", httpEnvOpts{})
	f.follow(l)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	l.api.frameHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/vms/held/start" {
			started <- struct{}{}
			<-release
			w.WriteHeader(http.StatusAccepted)
			return
		}
		l.api.ServeHTTP(w, r)
	})
	res := make(chan httpResult, 1)
	go func() { res <- f.call(t, "POST", "/v1/vms/held/start", "") }()
	recvWithin(t, started, 10*time.Second, "the held request on the leader")
	l.api.DrainStreams()
	close(release)
	r := recvWithin(t, res, 10*time.Second, "the held request's answer")
	wantStatus(t, r, http.StatusAccepted)
	waitStreamBroken(t, f)
	// A new stream is refused (the follower falls back to HTTP).
	r = f.call(t, "POST", "/v1/vms", createBody("late"))
	wantStatus(t, r, http.StatusCreated)
	if o := f.api.fwd.opened.Load(); o != 1 {
		t.Fatalf("%d streams opened, want 1", o)
	}
}

// waitStreamBroken waits until e's stream to the leader, if any, has
// broken.
func waitStreamBroken(t *testing.T, e *httpEnv) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.api.fwd.mu.Lock()
		s := e.api.fwd.cur
		e.api.fwd.mu.Unlock()
		if s == nil || s.Err() != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower did not see its stream close")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClientStream: a client's request stream (/v1/stream) carries writes,
// served as over HTTP; a read on it is refused (its answer may never end),
// and the gauge counts the stream on the client side.
func TestClientStream(t *testing.T) {
	l := newHTTPEnv(t, "leader", httpEnvOpts{})
	c, err := frames.Dial(context.Background(), l.addr(), frames.DialConfig{Path: frames.ClientPath, From: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Fail(errors.New("done"))
	call := func(method, uri string, body []byte) *frames.Frame {
		t.Helper()
		h := http.Header{"Content-Type": {"application/json"}}
		f, _, err := c.Do(context.Background(), func(b []byte, id uint64) []byte {
			return frames.AppendRequest(b, id, method, uri, "", h, body)
		})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := call("POST", "/v1/vms", []byte(createBody("s1"))); f.Status != http.StatusCreated {
		t.Fatalf("create on a client stream: %d %s", f.Status, f.Body)
	}
	if got := l.b.f.State().Count(resource.KindVM); got != 1 {
		t.Fatalf("%d VMs after the create", got)
	}
	if f := call("GET", "/v1/vms", nil); f.Status != http.StatusMethodNotAllowed || !strings.Contains(string(f.Body), "plain HTTP") {
		t.Fatalf("a read on a client stream: %d %s", f.Status, f.Body)
	}
	if v := counterValue(t, l.reg, `kumoi_forward_streams`); v != 1 {
		t.Fatalf("kumoi_forward_streams = %v with one client stream open", v)
	}
}

// TestWriteOwned: a framed request's answer keeps the buffer a handler
// gives up (writeJSONBytes) instead of copying it, through the recorder
// ServeHTTP wraps it in; a second write is appended; a writer that cannot
// keep it gets the same bytes by Write.
func TestWriteOwned(t *testing.T) {
	sr := &streamResponse{header: http.Header{}}
	rec := &apiRecorder{ResponseWriter: sr}
	b := make([]byte, 0, 64)
	b = append(b, `{"a":1}`...)
	if err := writeJSONBytes(rec, http.StatusCreated, b); err != nil {
		t.Fatal(err)
	}
	if string(sr.body) != "{\"a\":1}\n" || &sr.body[0] != &b[:1][0] || sr.status != http.StatusCreated || rec.status != http.StatusCreated {
		t.Fatalf("body %q (kept: %v), status %d/%d; want the buffer kept, 201", sr.body, &sr.body[0] == &b[:1][0], sr.status, rec.status)
	}
	writeOwned(rec, []byte("more"))
	if string(sr.body) != "{\"a\":1}\nmore" {
		t.Fatalf("after a second write: %q", sr.body)
	}
	hr := httptest.NewRecorder()
	if err := writeJSONBytes(&apiRecorder{ResponseWriter: hr}, http.StatusOK, []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	if hr.Body.String() != "[]\n" || hr.Code != http.StatusOK {
		t.Fatalf("plain writer: %d %q", hr.Code, hr.Body.String())
	}
}

// TestTakeFrameBody: a framed request's body is taken as it is, once,
// when no more than the limit and unread; else it is read.
func TestTakeFrameBody(t *testing.T) {
	b := []byte(`{"name":"a"}`)
	fb := newFrameBody(b)
	if got, ok := takeFrameBody(fb, 100); !ok || &got[0] != &b[0] {
		t.Fatalf("take: %q %v, want the frame's bytes", got, ok)
	}
	if rest, _ := io.ReadAll(fb); len(rest) != 0 {
		t.Fatalf("after the take the reader still gives %q", rest)
	}
	if _, ok := takeFrameBody(fb, 100); ok {
		t.Fatal("taken twice")
	}
	if _, ok := takeFrameBody(newFrameBody(b), 5); ok {
		t.Fatal("taken over the limit (it must be read, and refused as too large)")
	}
	part := newFrameBody(b)
	_, _ = part.Read(make([]byte, 2))
	if _, ok := takeFrameBody(part, 100); ok {
		t.Fatal("taken after a partial read")
	}
	if _, ok := takeFrameBody(strings.NewReader("x"), 100); ok {
		t.Fatal("taken from a plain reader")
	}
}

// TestSplitPath: splitPath is strings.Split on "/", with or without room.
func TestSplitPath(t *testing.T) {
	for _, p := range []string{"", "vms", "vms/", "vms/a", "vms/a/start", "/", "//", "a/b/c/d", "a/b/c/d/e", "acl/tokens/x/y/z", "a//b"} {
		var buf [4]string
		if got, want := splitPath(p, buf[:0]), strings.Split(p, "/"); !reflect.DeepEqual(got, want) {
			t.Errorf("splitPath(%q) = %q, want %q", p, got, want)
		}
	}
}
