package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// DefaultAddr is the controller address used when Config.Addrs is empty.
const DefaultAddr = "http://127.0.0.1:7400"

// Defaults for Config.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultRetryDeadline    = 10 * time.Second
	DefaultEventIdleTimeout = 35 * time.Second
)

// Response headers of read endpoints.
const (
	HeaderIndex       = "X-Kumoi-Index"
	HeaderKnownLeader = "X-Kumoi-Known-Leader"
	HeaderLastContact = "X-Kumoi-Last-Contact"
)

// Backoff between rounds of retries when every controller answered 503.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 1 << 20

// Config configures a Client. The zero value talks to DefaultAddr.
type Config struct {
	// Addrs are controller base URLs ("http://10.0.0.1:7400"). A missing
	// scheme means http, or https when TLS is set. Requests try them in
	// turn, starting with the one that answered last.
	Addrs []string
	// TLS, if set, is used for https:// addresses (TLSConfigFromFiles
	// makes one from a CA and an optional client certificate). nil: the
	// system's roots, no client certificate.
	TLS *tls.Config
	// HTTPClient sends the requests. It must not set Client.Timeout, which
	// would cut blocking queries and event streams short; use Timeout.
	// Nil means a client with a 5s dial timeout and keep-alives.
	HTTPClient *http.Client
	// Timeout bounds one attempt of one request against one controller
	// (default DefaultTimeout). A blocking query gets its wait time on top;
	// an event stream uses it only for the connection and the headers.
	Timeout time.Duration
	// RetryDeadline bounds how long a request that every controller
	// answered with 503 is retried, with backoff (default
	// DefaultRetryDeadline; negative disables retrying).
	RetryDeadline time.Duration
	// UserAgent is sent with every request (default "kumoi-go-client").
	UserAgent string
	// Token is the secret of an ACL token, sent with every request as
	// "Authorization: Bearer <Token>" (empty: no header, which a cluster
	// with ACLs answers with 401 except for GET /v1/status and the ACL
	// bootstrap). ConfigFromEnv reads it from KUMOI_TOKEN.
	Token string
	// Stream sends writes (POST, PUT and DELETE of up to 1 MiB) to each
	// controller over one persistent connection, many in flight at once,
	// instead of an HTTP request each (docs/api.md "Request streams"): for
	// programs that write a lot from many goroutines. Reads, blocking
	// queries, event streams and snapshots still go over HTTP. A
	// controller that does not take streams (an older build) is sent HTTP
	// requests. Errors, retries and failover are the same as over HTTP.
	// It needs HTTPClient's Transport, if set, to be an *http.Transport.
	// Call Close when done with the client.
	Stream bool
	// EventIdleTimeout is how long an event stream may stay silent before
	// it is taken for dead and reconnected (default
	// DefaultEventIdleTimeout; controllers send a heartbeat every 10s).
	EventIdleTimeout time.Duration
}

// Client talks to a Kumoi cluster. It is safe for concurrent use.
type Client struct {
	addrs         []string
	hc            *http.Client
	timeout       time.Duration
	retryDeadline time.Duration
	userAgent     string
	authorization string // "Bearer <token>", or "" without a token
	idleTimeout   time.Duration
	preferred     atomic.Int64     // index into addrs of the last controller that answered
	streams       *streamTransport // Config.Stream: nil without
}

// New returns a Client. It fails only on malformed addresses (and on a
// Token that cannot be sent as a header).
func New(cfg Config) (*Client, error) {
	c := &Client{
		hc:            cfg.HTTPClient,
		timeout:       cfg.Timeout,
		retryDeadline: cfg.RetryDeadline,
		userAgent:     cfg.UserAgent,
		idleTimeout:   cfg.EventIdleTimeout,
	}
	if tok := strings.TrimSpace(cfg.Token); tok != "" {
		if strings.ContainsFunc(tok, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, errors.New("the ACL token contains a line break or another control character; give its secret alone")
		}
		c.authorization = "Bearer " + tok
	}
	raw := cfg.Addrs
	if len(raw) == 0 {
		raw = []string{DefaultAddr}
		if cfg.TLS != nil {
			raw = []string{"https://" + strings.TrimPrefix(DefaultAddr, "http://")}
		}
	}
	for _, a := range raw {
		if a = strings.TrimSpace(a); cfg.TLS != nil && a != "" && !strings.Contains(a, "://") {
			a = "https://" + a
		}
		norm, err := NormalizeAddr(a)
		if err != nil {
			return nil, err
		}
		c.addrs = append(c.addrs, norm)
	}
	if c.hc == nil {
		c.hc = defaultHTTPClient()
		c.hc.Transport.(*http.Transport).TLSClientConfig = cfg.TLS
	} else if cfg.TLS != nil {
		c.hc = withTLS(c.hc, cfg.TLS)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.retryDeadline == 0 {
		c.retryDeadline = DefaultRetryDeadline
	}
	if c.idleTimeout <= 0 {
		c.idleTimeout = DefaultEventIdleTimeout
	}
	if c.userAgent == "" {
		c.userAgent = "kumoi-go-client"
	}
	if cfg.Stream {
		base, ok := c.hc.Transport.(*http.Transport)
		if c.hc.Transport == nil {
			base, ok = http.DefaultTransport.(*http.Transport)
		}
		if !ok {
			return nil, errors.New("Config.Stream needs HTTPClient.Transport to be an *http.Transport (or nil)")
		}
		c.streams = &streamTransport{base: base, userAgent: c.userAgent, conns: map[string]*streamSlot{}}
		hc := *c.hc
		hc.Transport = c.streams
		c.hc = &hc
	}
	return c, nil
}

// Close closes the client's request streams (Config.Stream) and its idle
// connections. Requests made after Close still work, over HTTP.
func (c *Client) Close() error {
	if c.streams != nil {
		c.streams.close()
		c.streams.base.CloseIdleConnections()
		return nil
	}
	c.hc.CloseIdleConnections()
	return nil
}

// NormalizeAddr turns "127.0.0.1:7400" or "http://host:7400/" into a base
// URL "http://127.0.0.1:7400" / "http://host:7400".
func NormalizeAddr(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	if a == "" {
		return "", fmt.Errorf("controller address is empty; write e.g. %s", DefaultAddr)
	}
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	u, err := url.Parse(a)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("controller address %q is not a URL; write e.g. %s", addr, DefaultAddr)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("controller address %q: scheme must be http or https", addr)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("controller address %q must be a plain base URL such as %s", addr, DefaultAddr)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"), nil
}

// Addrs returns the normalized controller addresses.
func (c *Client) Addrs() []string { return append([]string(nil), c.addrs...) }

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: t}
}

// request describes one API call, independent of the controller it is sent to.
type request struct {
	method string
	path   string // "/v1/vms/web"
	query  url.Values
	body   []byte // nil: no body
	// idempotent requests are retried elsewhere after any transport error
	// and, on 503 everywhere, with backoff.
	idempotent bool
	wait       time.Duration // blocking-query wait, added to the attempt timeout
	stream     bool          // the body is a long-lived stream: time out the headers only
	// contentType is the body's type ("": application/json).
	contentType string
}

func (r *request) String() string { return r.method + " " + r.path }

// do sends r to the controllers in turn, as described in the package
// comment. On success the caller must close the response body.
func (c *Client) do(ctx context.Context, r *request) (*http.Response, error) {
	deadline := time.Now().Add(c.retryDeadline)
	backoff := minBackoff
	n := len(c.addrs)
	for {
		var (
			lastErr    error
			retryAfter time.Duration
			got503     bool
		)
		first := int(c.preferred.Load())
		for i := range n {
			idx := (first + i) % n
			addr := c.addrs[idx]
			resp, err := c.attempt(ctx, addr, r)
			if err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("%s: %w", r, ctx.Err())
				}
				if !r.idempotent && !neverSent(err) {
					return nil, &unknownOutcomeError{method: r.String(), addr: addr, err: err}
				}
				lastErr = err
				continue
			}
			if resp.StatusCode == http.StatusServiceUnavailable {
				apiErr := decodeError(resp, r)
				if !r.idempotent && !apiErr.notDone() {
					return nil, apiErr // it may have been applied
				}
				retryAfter = max(retryAfter, apiErr.RetryAfter)
				lastErr, got503 = apiErr, true
				continue
			}
			c.preferred.Store(int64(idx))
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return nil, decodeError(resp, r)
			}
			return resp, nil
		}
		if !got503 {
			return nil, &UnreachableError{Addrs: c.Addrs(), Err: lastErr}
		}
		wait := max(backoff, retryAfter)
		if c.retryDeadline < 0 || time.Now().Add(wait).After(deadline) {
			return nil, lastErr
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("%s: %w (last error: %v)", r, err, lastErr)
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// attempt sends r to one controller.
func (c *Client) attempt(ctx context.Context, addr string, r *request) (*http.Response, error) {
	u := addr + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	limit := c.timeout
	if !r.stream {
		limit += r.wait + r.wait/8
	}
	actx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(limit, func() { cancel(&attemptTimeoutError{addr: addr, limit: limit}) })
	release := func() { timer.Stop(); cancel(nil) }
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, u, body)
	if err != nil {
		release()
		return nil, err
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if c.authorization != "" {
		req.Header.Set("Authorization", c.authorization)
	}
	if r.body != nil || r.method == http.MethodPost || r.method == http.MethodPut {
		// Writes need it even without a body (docs/api.md, "Conventions").
		req.Header.Set("Content-Type", cmp.Or(r.contentType, "application/json"))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		err = attemptErr(actx, err)
		release()
		return nil, err
	}
	if r.stream {
		timer.Stop()
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, ctx: actx, release: release}
	return resp, nil
}

// attemptTimeoutError says that one controller did not answer in time.
type attemptTimeoutError struct {
	addr  string
	limit time.Duration
}

func (e *attemptTimeoutError) Error() string {
	return fmt.Sprintf("%s did not answer within %s", e.addr, e.limit)
}

func (e *attemptTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// attemptErr replaces the "context canceled" an attempt's timer causes with
// the timeout that caused it.
func attemptErr(actx context.Context, err error) error {
	var te *attemptTimeoutError
	if cause := context.Cause(actx); errors.As(cause, &te) {
		return te
	}
	return err
}

// cancelBody releases the attempt's context when the body is closed.
type cancelBody struct {
	io.ReadCloser
	ctx     context.Context
	release func()
}

func (b *cancelBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = attemptErr(b.ctx, err)
	}
	return n, err
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

// decodeError reads a non-2xx answer into an *APIError and closes the body.
func decodeError(resp *http.Response, r *request) *APIError {
	defer resp.Body.Close()
	e := &APIError{StatusCode: resp.StatusCode, Method: r.method, Path: r.path, header: resp.Header}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		e.hasRetryAfter = true
		e.RetryAfter = parseRetryAfter(ra)
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var er resource.ErrorResponse
	if err := json.Unmarshal(data, &er); err == nil && (er.Error.Code != "" || er.Error.Message != "") {
		e.Code, e.Message, e.Field = er.Error.Code, er.Error.Message, er.Error.Field
		return e
	}
	// Not a Kumoi answer (a proxy, a load balancer): keep a short excerpt.
	text := strings.TrimSpace(string(data))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	if text != "" {
		e.Message = fmt.Sprintf("%s %s: HTTP %d: %s", r.method, r.path, resp.StatusCode, text)
	}
	return e
}

// call runs r and decodes a JSON answer into out (if not nil).
func (c *Client) call(ctx context.Context, r *request, out any) (*QueryMeta, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.header.Get(HeaderIndex) != "" {
			// A 404 of a (blocking) get still says which index it saw.
			return parseMeta(apiErr.header), err
		}
		return nil, err
	}
	defer resp.Body.Close()
	meta := parseMeta(resp.Header)
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return meta, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", r, ctx.Err())
		}
		return nil, fmt.Errorf("%s: decode answer: %w", r, err)
	}
	return meta, nil
}

func parseMeta(h http.Header) *QueryMeta {
	m := &QueryMeta{}
	if v := h.Get(HeaderIndex); v != "" {
		m.Index, _ = strconv.ParseUint(v, 10, 64)
	}
	m.KnownLeader = h.Get(HeaderKnownLeader) == "true"
	m.NextToken = h.Get(HeaderNext)
	if v := h.Get(HeaderLastContact); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms >= 0 {
			m.LastContact = time.Duration(ms) * time.Millisecond
		}
	}
	return m
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return min(time.Duration(s)*time.Second, maxBackoff)
	}
	return 0
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errStopped tells a stream reader that its consumer stopped.
var errStopped = errors.New("stopped")
