package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/kumoi/kumoi/internal/frames"
)

// Request streams (Config.Stream; docs/api.md "Request streams"): the
// client sends its writes to each controller over one persistent
// connection, many in flight at once, each answered as the controller's
// handler finishes, the way etcd's clients hold one gRPC connection per
// member. What a write does and answers is the same as over HTTP (a
// follower forwards it to the leader); what a stream saves is an HTTP
// exchange per write on both sides.

// streamRefusedFor is how long a controller that did not accept a stream
// (an older build, a proxy in between) is sent plain HTTP requests before
// it is asked again.
var streamRefusedFor = 30 * time.Second

// streamTransport sends writes (frames.Carries) over one stream per
// controller, and every other request (reads, blocking queries, event
// streams, snapshot restores) through base.
type streamTransport struct {
	base      *http.Transport
	userAgent string

	mu      sync.Mutex
	conns   map[string]*streamSlot // "scheme://host" → its stream
	refused map[string]time.Time   // "scheme://host" → until when not to ask
	closed  bool
}

// streamSlot is one controller's stream, or the dial that opens it:
// callers that find ready open wait for it.
type streamSlot struct {
	ready chan struct{}
	conn  *frames.Conn // set when ready closes, unless err
	err   error
}

// notSentError: the request did not leave this process (the stream broke
// before it was written), so it may be sent again anywhere.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

func (t *streamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !frames.Carries(req.Method, req.URL.Path, req.ContentLength) || t.proxied(req) {
		return t.base.RoundTrip(req)
	}
	conn, err := t.conn(req.Context(), req.URL)
	if errors.Is(err, frames.ErrRefused) {
		return t.base.RoundTrip(req)
	}
	if err != nil {
		return nil, err
	}
	var body []byte
	if req.Body != nil {
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, &notSentError{err: err}
		}
	}
	f, sent, err := conn.Do(req.Context(), func(b []byte, id uint64) []byte {
		return frames.AppendRequest(b, id, req.Method, req.URL.RequestURI(), "", req.Header, body)
	})
	if err != nil {
		if req.Context().Err() != nil {
			var te *attemptTimeoutError
			if errors.As(context.Cause(req.Context()), &te) {
				// The controller did not answer in the attempt's time:
				// it may be cut off with the connection still up. The
				// next request dials again (and fails over if that
				// fails), as it would over HTTP, instead of queueing
				// behind this one on a stream nobody answers.
				conn.Fail(fmt.Errorf("%s did not answer within %s", req.URL.Host, te.limit))
			}
			return nil, req.Context().Err()
		}
		if !sent {
			return nil, &notSentError{err: err}
		}
		return nil, err
	}
	if f.Status == frames.StatusAborted {
		return nil, fmt.Errorf("%s broke its answer off (its handler aborted)", req.URL.Host)
	}
	return &http.Response{
		Status:        strconv.Itoa(f.Status) + " " + http.StatusText(f.Status),
		StatusCode:    f.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        f.Header,
		Body:          io.NopCloser(bytes.NewReader(f.Body)),
		ContentLength: int64(len(f.Body)),
		Request:       req,
	}, nil
}

// proxied says whether base sends req through an HTTP proxy
// (HTTP_PROXY, HTTPS_PROXY; loopback is never proxied): a stream does not
// go through one, so such requests stay HTTP requests.
func (t *streamTransport) proxied(req *http.Request) bool {
	if t.base.Proxy == nil {
		return false
	}
	u, err := t.base.Proxy(req)
	return err != nil || u != nil
}

// conn returns the open stream to host, opening one if needed;
// frames.ErrRefused: send HTTP requests.
func (t *streamTransport) conn(ctx context.Context, u *url.URL) (*frames.Conn, error) {
	key := u.Scheme + "://" + u.Host
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, frames.ErrRefused
	}
	if until, ok := t.refused[key]; ok {
		if time.Now().Before(until) {
			t.mu.Unlock()
			return nil, frames.ErrRefused
		}
		delete(t.refused, key)
	}
	s := t.conns[key]
	if s != nil {
		select {
		case <-s.ready:
			if s.err == nil && s.conn.Err() == nil {
				t.mu.Unlock()
				return s.conn, nil
			}
			s = nil // broken, or its dial failed: dial again
		default:
		}
	}
	if s == nil {
		s = &streamSlot{ready: make(chan struct{})}
		t.conns[key] = s
		go t.dial(s, u.Scheme, u.Hostname(), u.Port(), key)
	}
	t.mu.Unlock()
	select {
	case <-s.ready:
		if s.err != nil {
			return nil, s.err
		}
		return s.conn, nil
	case <-ctx.Done():
		return nil, &notSentError{err: ctx.Err()}
	}
}

// dial opens s, a stream to host, for every caller waiting on it (so it
// does not end with the first caller's context).
func (t *streamTransport) dial(s *streamSlot, scheme, host, port, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := frames.DialConfig{Dial: t.base.DialContext, Path: frames.ClientPath, From: t.userAgent}
	if scheme == "https" {
		cfg.TLS = t.base.TLSClientConfig
		if cfg.TLS == nil {
			cfg.TLS = &tls.Config{}
		}
	}
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	conn, err := frames.Dial(ctx, net.JoinHostPort(host, port), cfg)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case errors.Is(err, frames.ErrRefused):
		if t.refused == nil {
			t.refused = map[string]time.Time{}
		}
		t.refused[key] = time.Now().Add(streamRefusedFor)
		delete(t.conns, key)
	case err != nil:
		delete(t.conns, key)
	case t.closed:
		conn.Fail(errors.New("the client is closed"))
		err = frames.ErrRefused
	}
	s.conn, s.err = conn, err
	close(s.ready)
}

// close closes every stream; later requests go over HTTP.
func (t *streamTransport) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for key, s := range t.conns {
		select {
		case <-s.ready:
			if s.conn != nil {
				s.conn.Fail(errors.New("the client is closed"))
			}
		default: // its dial closes it
		}
		delete(t.conns, key)
	}
}
