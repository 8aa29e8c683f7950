package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/resource"
)

// answerWith is a server that answers every request with status, the JSON
// error code (none if empty) and the Retry-After header (none if empty).
func answerWith(t *testing.T, status int, code, retryAfter string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		if code == "" {
			w.WriteHeader(status)
			fmt.Fprint(w, "<html>proxy error</html>")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"from the test"}}`, code)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// oneShot is a client of one address that never retries, as the chaos
// harness uses it: each call is one request.
func oneShot(t *testing.T, addr string, timeout time.Duration) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Addrs: []string{addr}, Timeout: timeout, RetryDeadline: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNotAppliedAnswers(t *testing.T) {
	for _, tc := range []struct {
		status     int
		code       string
		retryAfter string
		want       bool
	}{
		{http.StatusBadRequest, resource.CodeInvalidArgument, "", true},
		{http.StatusNotFound, resource.CodeNotFound, "", true},
		{http.StatusConflict, resource.CodeAlreadyExists, "", true},
		{http.StatusConflict, resource.CodeCASMismatch, "", true},
		{http.StatusRequestEntityTooLarge, resource.CodeBodyTooLarge, "", true},
		{http.StatusTooManyRequests, "", "", true}, // a 4xx of a proxy: refused too
		{http.StatusServiceUnavailable, resource.CodeNoLeader, "", true},
		{http.StatusServiceUnavailable, resource.CodeNoLeader, "1", true},
		{http.StatusServiceUnavailable, resource.CodeUnavailable, "1", true},
		{http.StatusServiceUnavailable, resource.CodeUnavailable, "0", true}, // the header is the promise
		{http.StatusServiceUnavailable, resource.CodeUnavailable, "", false},
		{http.StatusServiceUnavailable, "", "", false},
		{http.StatusGatewayTimeout, resource.CodeTimeout, "", false},
		{http.StatusInternalServerError, resource.CodeInternal, "", false},
		{http.StatusBadGateway, "", "", false},
	} {
		name := fmt.Sprintf("%d %s retry-after=%q", tc.status, tc.code, tc.retryAfter)
		t.Run(name, func(t *testing.T) {
			c := oneShot(t, answerWith(t, tc.status, tc.code, tc.retryAfter), 5*time.Second)
			// A non-idempotent write, an idempotent action and a read:
			// the answer decides, whatever the request.
			_, errCreate := c.Create(context.Background(), resource.KindVM, vmCreate("web", 1, 64, nil))
			_, errAction := c.Action(context.Background(), "web", client.ActionStop)
			_, _, errGet := c.Get(context.Background(), resource.KindVM, "web", nil)
			for _, err := range []error{errCreate, errAction, errGet} {
				var ae *client.APIError
				if !errors.As(err, &ae) || ae.StatusCode != tc.status {
					t.Fatalf("error %v, want an *APIError with status %d", err, tc.status)
				}
				if got := client.NotApplied(err); got != tc.want {
					t.Errorf("NotApplied(%v) = %t, want %t", err, got, tc.want)
				}
				if got := client.NotApplied(fmt.Errorf("wrapped: %w", err)); got != tc.want {
					t.Errorf("NotApplied(wrapped %v) = %t, want %t", err, got, tc.want)
				}
			}
		})
	}
}

func TestNotAppliedTransport(t *testing.T) {
	ctx := context.Background()
	t.Run("nil", func(t *testing.T) {
		if client.NotApplied(nil) {
			t.Error("NotApplied(nil) = true")
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		c := oneShot(t, testapi.DeadAddr(t), 5*time.Second)
		_, err := c.Create(ctx, resource.KindVM, vmCreate("web", 1, 64, nil))
		if !errors.Is(err, client.ErrUnreachable) || !client.NotApplied(err) {
			t.Errorf("create on a dead address: %v (NotApplied %t), want ErrUnreachable, not applied", err, client.NotApplied(err))
		}
		_, err = c.Action(ctx, "web", client.ActionStart)
		if !client.NotApplied(err) {
			t.Errorf("action on a dead address: %v, want not applied", err)
		}
	})
	t.Run("connection broken after the request was sent", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}))
		t.Cleanup(srv.Close)
		c := oneShot(t, srv.URL, 5*time.Second)
		_, err := c.Create(ctx, resource.KindVM, vmCreate("web", 1, 64, nil))
		if !errors.Is(err, client.ErrUnknownOutcome) || client.NotApplied(err) {
			t.Errorf("create: %v (NotApplied %t), want ErrUnknownOutcome, may have applied", err, client.NotApplied(err))
		}
		// An action is idempotent: the client reports the broken
		// connection as the last error of an UnreachableError.
		_, err = c.Action(ctx, "web", client.ActionStop)
		if !errors.Is(err, client.ErrUnreachable) || client.NotApplied(err) {
			t.Errorf("action: %v (NotApplied %t), want ErrUnreachable, may have applied", err, client.NotApplied(err))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		c := oneShot(t, srv.URL, 50*time.Millisecond)
		_, err := c.Create(ctx, resource.KindVM, vmCreate("web", 1, 64, nil))
		if err == nil || client.NotApplied(err) {
			t.Errorf("attempt timeout: %v (NotApplied %t), want may have applied", err, client.NotApplied(err))
		}
		c = oneShot(t, srv.URL, 5*time.Second)
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err = c.Create(cctx, resource.KindVM, vmCreate("web", 1, 64, nil))
		if !errors.Is(err, context.DeadlineExceeded) || client.NotApplied(err) {
			t.Errorf("context deadline: %v (NotApplied %t), want may have applied", err, client.NotApplied(err))
		}
	})
	t.Run("raised before sending", func(t *testing.T) {
		c := oneShot(t, testapi.DeadAddr(t), 5*time.Second)
		_, err := c.Update(ctx, resource.KindVM, "web", nil, nil)
		if err == nil || client.NotApplied(err) {
			t.Errorf("update of a nil object: %v (NotApplied %t), want an error it does not speak about", err, client.NotApplied(err))
		}
	})
	t.Run("transport errors", func(t *testing.T) {
		dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		for _, tc := range []struct {
			err  error
			want bool
		}{
			{&url.Error{Op: "Post", URL: "http://ctl:7400/v1/vms", Err: dial}, true},
			{&url.Error{Op: "Post", URL: "http://ctl:7400/v1/vms", Err: &net.DNSError{Err: "no such host", Name: "ctl", IsNotFound: true}}, true},
			{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("i/o timeout")}, true},
			{syscall.EHOSTUNREACH, true},
			{syscall.ENETUNREACH, true},
			{&client.UnreachableError{Addrs: []string{"http://ctl:7400"}, Err: dial}, true},
			{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false},
			{&client.UnreachableError{Addrs: []string{"http://ctl:7400"}, Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}, false},
			{client.ErrUnknownOutcome, false},
			{context.Canceled, false},
			{errors.New("something else"), false},
		} {
			if got := client.NotApplied(tc.err); got != tc.want {
				t.Errorf("NotApplied(%v) = %t, want %t", tc.err, got, tc.want)
			}
		}
	})
}
