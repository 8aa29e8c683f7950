package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/resource"
)

// Defaults of ServerOptions.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxConnsPerIP     = 256
	DefaultMaxHeaderBytes    = 1 << 20
)

// ServerOptions configures NewServer and NewListener. The zero value takes
// the defaults above.
type ServerOptions struct {
	// ReadHeaderTimeout bounds reading a request's headers (default 10s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included (default
	// 30s): a body that arrives slowly, or never, does not hold its
	// connection longer. (net/http lifts the deadline once the body is
	// read, so streams are not cut by it.)
	ReadTimeout time.Duration
	// WriteTimeout bounds writing an ordinary answer (default 2m; longer
	// than a write's Raft apply plus forwarding). Blocking queries and
	// event streams extend their own deadline.
	WriteTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections (default 2m).
	IdleTimeout time.Duration
	// MaxHeaderBytes caps request headers (default 1 MiB); larger are
	// answered 431.
	MaxHeaderBytes int
	// MaxConnsPerIP caps the open connections from one client address
	// (default 256; negative: no cap). A connection over the cap is
	// closed at once.
	MaxConnsPerIP int
	// ExemptIP, if set, names client IPs the cap does not apply to (other
	// controllers, which forward many long requests from one address). It
	// is asked only about an IP at the cap.
	ExemptIP func(ip string) bool
	// Logger gets a warning when connections are refused.
	Logger hclog.Logger
}

func (o *ServerOptions) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&o.ReadTimeout, DefaultReadTimeout)
	def(&o.WriteTimeout, DefaultWriteTimeout)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxConnsPerIP == 0 {
		o.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
}

// NewServer returns the http.Server for the API handler h, with the
// timeouts of o. Serve it on NewListener.
func NewServer(h http.Handler, o ServerOptions) *http.Server {
	o.setDefaults()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          o.Logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	// Forwarding streams (fwdstream.go) are hijacked connections, which
	// Shutdown does not wait for: they stop taking requests with it.
	if d, ok := h.(interface{ DrainStreams() }); ok {
		srv.RegisterOnShutdown(d.DrainStreams)
	}
	return srv
}

// NewListener wraps the API's TCP listener: it caps the connections per
// client IP (o.MaxConnsPerIP), and turns the few answers Go's net/http
// writes itself before any handler runs (400 for a malformed request line
// such as a path with "%ZZ", 431 for headers over MaxHeaderBytes) into the
// API's JSON error shape. It must wrap the raw TCP listener, under any
// TLS listener: there it sees only ciphertext, so those answers stay
// net/http's plain text, but it still caps connections and turns the
// answer to a plain-HTTP request ("Client sent an HTTP request to an HTTPS
// server") into JSON.
func NewListener(ln net.Listener, o ServerOptions) net.Listener {
	o.setDefaults()
	return &apiListener{Listener: ln, max: o.MaxConnsPerIP, exempt: o.ExemptIP, log: o.Logger, conns: map[string]int{}}
}

type apiListener struct {
	net.Listener
	max    int
	exempt func(ip string) bool
	log    hclog.Logger

	mu      sync.Mutex
	conns   map[string]int
	lastLog time.Time
}

func (l *apiListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := c.RemoteAddr().String()
		if h, _, err := net.SplitHostPort(ip); err == nil {
			ip = h
		}
		l.mu.Lock()
		over := l.max > 0 && l.conns[ip] >= l.max
		l.mu.Unlock()
		if over && (l.exempt == nil || !l.exempt(ip)) {
			l.mu.Lock()
			logIt := time.Since(l.lastLog) > 10*time.Second
			if logIt {
				l.lastLog = time.Now()
			}
			l.mu.Unlock()
			if logIt {
				l.log.Warn("refusing a connection: the client has too many open", "client", ip, "limit", l.max)
			}
			c.Close()
			continue
		}
		l.mu.Lock()
		l.conns[ip]++
		l.mu.Unlock()
		return &apiConn{Conn: c, l: l, ip: ip}, nil
	}
}

func (l *apiListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[ip]--; l.conns[ip] <= 0 {
		delete(l.conns, ip)
	}
}

type apiConn struct {
	net.Conn
	l    *apiListener
	ip   string
	once sync.Once
}

func (c *apiConn) Close() error {
	c.once.Do(func() { c.l.release(c.ip) })
	return c.Conn.Close()
}

// The exact shape of the answers net/http writes itself on a connection
// it is about to close (server.go: "HTTP/1.1 " + status + errorHeaders +
// body, in one write; never a Date header, which every handler answer has).
var (
	netHTTPErrorPrefix  = []byte("HTTP/1.1 ")
	netHTTPErrorHeaders = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")
)

func (c *apiConn) Write(b []byte) (int, error) {
	if out, ok := jsonNetHTTPError(b); ok {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// plainHTTPToTLS is what net/http writes, on the raw connection, to a
// client that speaks plain HTTP to its TLS listener.
var plainHTTPToTLS = []byte("HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")

// jsonNetHTTPError rewrites one of net/http's own plain-text error answers
// into the API's JSON error shape.
func jsonNetHTTPError(b []byte) ([]byte, bool) {
	if bytes.Equal(b, plainHTTPToTLS) {
		return jsonErrorResponse("400 Bad Request", resource.CodeInvalidArgument,
			"this controller serves HTTPS only: use an https:// address (and KUMOI_CACERT, or --ca-cert, for its CA); see docs/security.md"), true
	}
	rest, ok := bytes.CutPrefix(b, netHTTPErrorPrefix)
	if !ok || len(rest) < 4 || rest[3] != ' ' {
		return nil, false
	}
	statusLine, text, ok := bytes.Cut(rest, netHTTPErrorHeaders)
	if !ok || bytes.ContainsAny(statusLine, "\r\n") {
		return nil, false
	}
	status, err := strconv.Atoi(string(statusLine[:3]))
	if err != nil || status < 400 || status > 599 {
		return nil, false
	}
	code, msg := resource.CodeInvalidArgument, ""
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		code = resource.CodeHeadersTooLarge
		msg = "the request headers are larger than the server's limit; send smaller headers (docs/api.md, \"Limits\")"
	case http.StatusBadRequest:
		msg = fmt.Sprintf("malformed HTTP request (%s); check the request line and headers: a path must be URL-escaped (\"%%ZZ\" is not an escape)", text)
	default:
		if status >= 500 {
			code = resource.CodeInternal
		}
		msg = fmt.Sprintf("the HTTP server refused the request: %s", text)
	}
	return jsonErrorResponse(string(statusLine), code, msg), true
}

// jsonErrorResponse is a whole HTTP/1.1 answer, closing the connection,
// with the JSON error body.
func jsonErrorResponse(statusLine, code, msg string) []byte {
	body, _ := json.Marshal(resource.ErrorResponse{Error: resource.ErrorBody{Code: code, Message: msg}})
	body = append(body, '\n')
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %s\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", statusLine, len(body))
	out.Write(body)
	return out.Bytes()
}

// streamCap counts the long requests of one sort a node holds at once.
type streamCap struct {
	max  int64 // <= 0: no cap
	what string
	n    atomic.Int64
}

// acquire takes a slot, or answers 429 too_many_requests (Retry-After).
// The caller releases a slot it got.
func (c *streamCap) acquire() (release func(), err error) {
	if n := c.n.Add(1); c.max > 0 && n > c.max {
		c.n.Add(-1)
		return nil, &apiError{
			status: http.StatusTooManyRequests, code: resource.CodeTooManyRequests, retryAfter: true,
			msg: fmt.Sprintf("this controller already holds %d %s, its limit; retry later, or ask another controller with ?stale", c.max, c.what),
		}
	}
	return func() { c.n.Add(-1) }, nil
}
