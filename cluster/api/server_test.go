package api

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// serveLimited serves e's API on a new loopback port through NewServer and
// NewListener with o, and returns the address.
func serveLimited(t *testing.T, e *httpEnv, o ServerOptions) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(e.api, o)
	go func() { _ = srv.Serve(NewListener(ln, o)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// rawExchange writes req on a new connection and reads the whole answer
// (the server closes the connection after it).
func rawExchange(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func wantJSONError(t *testing.T, resp *http.Response, status int, code, msg string) {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json: %s", ct, b)
	}
	var er resource.ErrorResponse
	if err := json.Unmarshal(b, &er); err != nil {
		t.Fatalf("not a JSON error: %v: %s", err, b)
	}
	if er.Error.Code != code || !strings.Contains(er.Error.Message, msg) {
		t.Errorf("error %+v; want code %q, message containing %q", er.Error, code, msg)
	}
}

// TestServerNetHTTPErrorsAreJSON: the answers net/http writes before any
// handler runs (a malformed path, headers too large) are JSON errors too.
func TestServerNetHTTPErrorsAreJSON(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	addr := serveLimited(t, e, ServerOptions{MaxHeaderBytes: 4 << 10})
	wantJSONError(t, rawExchange(t, addr, "GET /v1/vms/%ZZ HTTP/1.1\r\nHost: x\r\n\r\n"),
		http.StatusBadRequest, resource.CodeInvalidArgument, "%ZZ")
	wantJSONError(t, rawExchange(t, addr, "GET /v1/vms HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n"),
		http.StatusRequestHeaderFieldsTooLarge, resource.CodeHeadersTooLarge, "headers")
	// Ordinary answers pass untouched.
	resp := rawExchange(t, addr, "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestServerSlowBodyCut: a request whose body never arrives
// (Content-Length: 100, then nothing) is cut after ReadTimeout.
func TestServerSlowBodyCut(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	addr := serveLimited(t, e, ServerOptions{ReadTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(20 * time.Second))
	if _, err := io.WriteString(c, "POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na"); err != nil {
		t.Fatal(err)
	}
	// The server answers (a 400: the body cannot be read) and closes,
	// or just closes; either way the connection ends well before 20s.
	_, _ = io.Copy(io.Discard, c)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("connection held %s", d)
	}
	if e.b.appliedCount() != 0 {
		t.Fatal("something was written")
	}
}

// TestServerStreamsOutliveReadTimeout: a blocking query and an event
// stream last longer than ReadTimeout (net/http lifts the read deadline
// once a request's body is read; the write deadline is extended by the
// streams themselves).
func TestServerStreamsOutliveReadTimeout(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{heartbeat: 50 * time.Millisecond})
	e.mustCreate(t, "vms", "web")
	addr := serveLimited(t, e, ServerOptions{ReadTimeout: 200 * time.Millisecond})
	idx := e.call(t, "GET", "/v1/vms", nil).index(t)
	start := time.Now()
	r := httpCall(t, "http://"+addr, "GET", "/v1/vms?index="+itoa(idx)+"&wait=800ms", nil)
	wantStatus(t, r, http.StatusOK)
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Fatalf("blocking query answered after %s; cut by the read timeout?", d)
	}
	resp, err := http.Get("http://" + addr + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	start = time.Now()
	for time.Since(start) < 600*time.Millisecond {
		if !sc.Scan() {
			t.Fatalf("event stream ended after %s: %v", time.Since(start), sc.Err())
		}
	}
}

// TestServerConnsPerIP: connections over MaxConnsPerIP from one address
// are closed at once; closing one makes room.
func TestServerConnsPerIP(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	addr := serveLimited(t, e, ServerOptions{MaxConnsPerIP: 2})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		defer c.Close()
	}
	// The accepted two answer.
	for _, c := range held {
		_, _ = io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection: %v", err)
		}
	}
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	_ = c3.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c3, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(c3), nil); err == nil {
		t.Fatal("a third connection was served")
	}
	held[0].Close()
	// An exempt address (another controller) is not capped.
	exempt := serveLimited(t, e, ServerOptions{MaxConnsPerIP: 1, ExemptIP: func(ip string) bool { return ip == "127.0.0.1" }})
	for range 3 {
		c, err := net.Dial("tcp", exempt)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("exempt connection: %v", err)
		}
	}
	testcluster.WaitFor(t, 10*time.Second, "a connection after one closed", func() (bool, error) {
		r, err := http.Get("http://" + addr + "/v1/status")
		if err != nil {
			return false, err
		}
		r.Body.Close()
		return true, nil
	})
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestHTTPStreamCaps: over the cap of concurrent blocking queries or event
// streams, a request is answered 429 too_many_requests with Retry-After;
// a slot frees when a stream ends.
func TestHTTPStreamCaps(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{heartbeat: 50 * time.Millisecond})
	e.mustCreate(t, "vms", "web")
	e.api.blocking.max, e.api.streams.max = 1, 1
	idx := e.call(t, "GET", "/v1/vms", nil).index(t)

	done := make(chan httpResult, 1)
	go func() {
		done <- httpCall(t, e.srv.URL, "GET", "/v1/vms?index="+itoa(idx)+"&wait=1m", nil)
	}()
	<-e.blocked
	r := e.call(t, "GET", "/v1/vms/web?index="+itoa(idx), nil)
	wantStatus(t, r, http.StatusTooManyRequests)
	if eb := r.errBody(t); eb.Code != resource.CodeTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("error %+v, Retry-After %q", eb, r.header.Get("Retry-After"))
	}
	// Non-blocking reads are not counted.
	wantStatus(t, e.call(t, "GET", "/v1/vms", nil), http.StatusOK)
	e.mustCreate(t, "vms", "db") // wakes the blocking query
	wantStatus(t, <-done, http.StatusOK)
	testcluster.WaitFor(t, 10*time.Second, "the blocking slot to free", func() (bool, error) {
		return e.api.blocking.n.Load() == 0, nil
	})

	resp, err := http.Get(e.srv.URL + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	r = e.call(t, "GET", "/v1/events", nil)
	wantStatus(t, r, http.StatusTooManyRequests)
	resp.Body.Close()
	testcluster.WaitFor(t, 10*time.Second, "the stream slot to free", func() (bool, error) {
		return e.api.streams.n.Load() == 0, nil
	})
}

// TestServerPlainHTTPToTLSIsJSON: a plain-HTTP request to the TLS listener
// (NewListener under tls.NewListener) gets a JSON error saying to use
// https, not net/http's plain text.
func TestServerPlainHTTPToTLSIsJSON(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate
	cert.Close()
	srv := NewServer(e.api, ServerOptions{})
	go func() { _ = srv.Serve(tls.NewListener(NewListener(ln, ServerOptions{}), cert.TLS)) }()
	t.Cleanup(func() { _ = srv.Close() })
	wantJSONError(t, rawExchange(t, ln.Addr().String(), "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"),
		http.StatusBadRequest, resource.CodeInvalidArgument, "https://")
}
