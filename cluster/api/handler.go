package api

import (
	"crypto/tls"
	"fmt"
	"mime"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kumoi/kumoi/cluster/api/ui"
	"github.com/kumoi/kumoi/internal/frames"
	"github.com/kumoi/kumoi/internal/logring"
	"github.com/kumoi/kumoi/internal/promutil"
	"github.com/kumoi/kumoi/resource"
)

// HTTP headers of the API (docs/api.md, "Headers").
const (
	// headerIndex carries the Raft index a read reflects or a write made.
	headerIndex = resource.HeaderIndex
	// headerKnownLeader says whether the answering node knows a leader.
	headerKnownLeader = resource.HeaderKnownLeader
	// headerLastContact is how long (ms) since a follower heard from the
	// leader; 0 on the leader and on linearizable reads.
	headerLastContact = resource.HeaderLastContact
	// headerForwarded marks a request one controller forwarded to the
	// leader; its value is the forwarding node's id.
	headerForwarded = resource.HeaderForwarded
)

// Defaults of Options.
const (
	DefaultMaxBodyBytes       = 1 << 20
	DefaultBlockingWait       = 30 * time.Second
	DefaultMaxBlockingWait    = 10 * time.Minute
	DefaultHeartbeatInterval  = 10 * time.Second
	DefaultMaxBlockingQueries = 4096
	DefaultMaxEventStreams    = 1024
)

// MetricsRegistry is where the API registers its metrics and what /metrics
// serves. *prometheus.Registry implements it.
type MetricsRegistry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Options configures NewHandler. The zero value works.
type Options struct {
	// Logger gets request logs (debug) and handler failures (error).
	Logger hclog.Logger
	// MaxBodyBytes caps request bodies (default 1 MiB); larger bodies are
	// answered 413 body_too_large.
	MaxBodyBytes int64
	// Logs and AgentConfig are served at GET /v1/agent/logs and
	// /v1/agent/self (nil: none kept / none known).
	Logs        *logring.Ring
	AgentConfig map[string]any
	// MaxSnapshotBytes caps the archive a snapshot restore sends (PUT
	// /v1/operator/snapshot) and the state it holds (default 1 GiB).
	MaxSnapshotBytes int64
	// DefaultWait is the wait of a blocking query that gives ?index but no
	// ?wait (default 30s).
	DefaultWait time.Duration
	// MaxWait caps ?wait (default 10m).
	MaxWait time.Duration
	// HeartbeatInterval is how often an idle GET /v1/events stream sends a
	// heartbeat line (default 10s).
	HeartbeatInterval time.Duration
	// Registry receives the kumoi_ metrics (see NewMetrics) and is served
	// at GET /metrics. nil: a registry private to this handler.
	Registry MetricsRegistry
	// Metrics records the API's metrics. nil: NewMetrics(Registry). Pass
	// the Metrics whose ObserveApply is wired to the FSM to share it
	// (NewMetrics on the same registry shares the series either way).
	Metrics *Metrics
	// ForwardClient forwards requests to the leader. nil: a client with a
	// 5s dial timeout, no proxy, no overall timeout (blocking queries and
	// event streams are long) and no redirect following.
	ForwardClient *http.Client
	// Version is this build's version, sent as X-Kumoi-Version.
	Version string
	// UnsafeStaleReads serves every read from local state, even without
	// ?stale: a deliberate linearizability bug for the chaos harness's
	// selftest (controller.Config.UnsafeStaleReads). Never in production.
	UnsafeStaleReads bool
	// MaxBlockingQueries caps the blocking queries (?index) this node
	// holds at once, forwarded ones included (default 4096; negative: no
	// cap). Over it: 429 too_many_requests with Retry-After.
	MaxBlockingQueries int
	// MaxEventStreams caps the GET /v1/events streams this node holds at
	// once, forwarded ones included (default 1024; negative: no cap).
	MaxEventStreams int
	// HostDownGrace is the controllers' host-down grace (default
	// resource.DefaultHostDownGrace). A VM on a host down this long may
	// be migrated while it is to run.
	HostDownGrace time.Duration
	// ACL enforces ACL tokens (docs/security.md): every endpoint but GET
	// /v1/status and POST /v1/acl/bootstrap needs a token with the
	// rules it requires (auth.go). Off: anyone may do anything.
	ACL bool
	// InternalSecret, if set, is a secret of this controller process
	// that the API accepts with an X-Kumoi-Act-As: <accessor> header, as
	// that accessor's token: the policy runner's calls (policies run with
	// the rights of the token that stored them).
	InternalSecret string
}

// httpAPI is the handler returned by NewHandler.
type httpAPI struct {
	b       Backend
	log     hclog.Logger
	m       *Metrics
	metrics http.Handler
	client  *http.Client
	maxBody int64
	// maxSnapshot caps a restore's archive (Options.MaxSnapshotBytes).
	maxSnapshot   int64
	logs          *logring.Ring
	agentConfig   map[string]any
	ui            http.Handler // the web console's files
	defWait       time.Duration
	maxWait       time.Duration
	heartbeat     time.Duration
	version       string
	collRoutes    sync.Map // plural -> *collectionRoute
	versionHeader []string // {version}, shared by every answer's header
	unsafe        bool     // Config.UnsafeStaleReads

	acl            bool   // Options.ACL
	internalSecret string // Options.InternalSecret

	hostDownGrace time.Duration

	blocking streamCap // Options.MaxBlockingQueries
	streams  streamCap // Options.MaxEventStreams

	// Forwarding streams (fwdstream.go): this node's to the leader, and
	// the leader's from followers.
	fwd      *fwdStreams
	fwdServe srvStreams
	// frameHandler, if set (tests), serves the requests of forwarding
	// streams instead of the handler itself.
	frameHandler http.Handler

	// onBlock, if set (tests), is called when a blocking query is about to
	// wait for a change.
	onBlock func()
}

// NewHandler returns the controller's HTTP API (docs/api.md) over b:
// /v1/status, /v1/cluster, /v1/events, /v1/{plural}[/{name}] for every
// registered kind, and /metrics.
func NewHandler(b Backend, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxSnapshotBytes <= 0 {
		opts.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if opts.DefaultWait <= 0 {
		opts.DefaultWait = DefaultBlockingWait
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxBlockingWait
	}
	opts.DefaultWait = min(opts.DefaultWait, opts.MaxWait)
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.HostDownGrace <= 0 {
		opts.HostDownGrace = resource.DefaultHostDownGrace
	}
	if opts.MaxBlockingQueries == 0 {
		opts.MaxBlockingQueries = DefaultMaxBlockingQueries
	}
	if opts.MaxEventStreams == 0 {
		opts.MaxEventStreams = DefaultMaxEventStreams
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(opts.Registry)
	}
	// The state gauges: of the first controller registered with this
	// registry (one per process, but for dev mode's, which converge).
	promutil.RegisterOrReuse(opts.Registry, newStateCollector(b))
	log := opts.Logger
	if !strings.HasSuffix(log.Name(), "http") {
		log = log.Named("http")
	}
	if opts.ForwardClient == nil {
		opts.ForwardClient = NewForwardClient("", nil)
	}
	a := &httpAPI{
		b:   b,
		log: log,
		m:   opts.Metrics,
		metrics: promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{
			ErrorHandling: promhttp.ContinueOnError,
		}),
		client:      opts.ForwardClient,
		maxBody:     opts.MaxBodyBytes,
		maxSnapshot: opts.MaxSnapshotBytes,
		logs:        opts.Logs,
		agentConfig: opts.AgentConfig,
		ui:          ui.Handler(),
		unsafe:      opts.UnsafeStaleReads,

		acl:            opts.ACL,
		internalSecret: opts.InternalSecret,

		hostDownGrace: opts.HostDownGrace,
		blocking:      streamCap{max: int64(opts.MaxBlockingQueries), what: "blocking queries"},
		streams:       streamCap{max: int64(opts.MaxEventStreams), what: "event streams"},
		defWait:       opts.DefaultWait,
		maxWait:       opts.MaxWait,
		heartbeat:     opts.HeartbeatInterval,
		version:       opts.Version,
		versionHeader: []string{opts.Version},
	}
	a.fwd = &fwdStreams{a: a}
	return a
}

// NewForwardClient returns the client a follower uses to forward requests
// to the leader, dialing from localIP when it is set (so that a partition of
// a node's address also cuts its forwarding).
//
// With tlsCfg (the controller's PeerTLSConfig: it presents the node's
// server certificate and requires the leader's) requests go over https.
func NewForwardClient(localIP string, tlsCfg *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if ip := net.ParseIP(localIP); ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil, // controllers talk to each other directly
			DialContext:         d.DialContext,
			TLSClientConfig:     tlsCfg,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     90 * time.Second,
			// No ResponseHeaderTimeout: a blocking query sends its
			// headers only when it answers.
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// forwardScheme is the scheme requests are forwarded with: https when the
// forward client has a TLS configuration.
func forwardScheme(c *http.Client) string {
	if t, ok := c.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
		return "https"
	}
	return "http"
}

// apiHandler serves one route. It either writes the whole response and
// returns nil, or writes nothing and returns the error to answer with.
type apiHandler func(w http.ResponseWriter, r *http.Request) error

func (a *httpAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == frames.Path || r.URL.Path == frames.ClientPath {
		// Not a request of the API: a connection that carries them
		// (each checked as any other).
		a.serveStream(w, r)
		return
	}
	start := time.Now()
	rec := &apiRecorder{ResponseWriter: w}
	route, h := a.route(r)
	need := needOf(route, r)
	r = withAuth(r, need)
	if !servedWhenHalted[route] && a.b.FSM().Halted() != nil {
		h = a.halted // out of service (halt.go)
	} else if a.acl && !need.none && bearer(r) == "" {
		// No token at all: refused on any node, before the body is read
		// (a token is checked where the request is served: auth.go).
		h = func(w http.ResponseWriter, r *http.Request) error {
			_, err := a.identify(r)
			return err
		}
	}
	a.m.requestStarted()
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			a.log.Error("BUG: panic serving request", "method", r.Method, "path", r.URL.Path,
				"panic", p, "stack", string(debug.Stack()))
			if !rec.wroteHeader {
				a.writeError(rec, r, &apiError{
					status: http.StatusInternalServerError, code: resource.CodeInternal,
					msg: fmt.Sprintf("internal error while serving %s %s (a bug; the controller log has details)", r.Method, r.URL.Path),
				})
			}
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		d := time.Since(start)
		a.m.requestDone()
		a.m.observeRequest(r.Method, route, status, d)
		if a.log.IsDebug() { // its arguments cost every request an allocation each
			a.log.Debug("request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery,
				"status", status, "duration", d, "remote", r.RemoteAddr, "forwarded_by", r.Header.Get(headerForwarded))
		}
		if p == http.ErrAbortHandler {
			panic(p)
		}
	}()
	if a.version != "" {
		w.Header()["X-Kumoi-Version"] = a.versionHeader // shared: Set would allocate it per request
	}
	if err := h(rec, r); err != nil {
		if rec.wroteHeader {
			// The response is under way (a stream); all we can do is log.
			a.log.Warn("error after the response started", "method", r.Method, "path", r.URL.Path, "error", err)
			return
		}
		a.writeError(rec, r, err)
	}
}

// route picks the handler for r and names its route for metrics.
func (a *httpAPI) route(r *http.Request) (string, apiHandler) {
	p := r.URL.Path
	if p == "/metrics" {
		return "/metrics", a.methods(methodHandler{http.MethodGet, a.serveMetrics})
	}
	if p == "/debug/pprof" || strings.HasPrefix(p, "/debug/pprof/") {
		return "/debug/pprof", a.methods(methodHandler{http.MethodGet, a.debugPprof})
	}
	if p == "/ui" || strings.HasPrefix(p, ui.Prefix) {
		return "/ui", a.methods(methodHandler{http.MethodGet, a.serveUI}, methodHandler{http.MethodHead, a.serveUI})
	}
	if p == "/" && r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
		return "/ui", a.serveUI // a browser at the root: the console
	}
	rest, ok := strings.CutPrefix(p, "/v1/")
	if !ok {
		return "other", a.notFound
	}
	blocking := ""
	if r.URL.RawQuery != "" && r.URL.Query().Has("index") {
		blocking = "?index"
	}
	var partsBuf [4]string
	parts := splitPath(rest, partsBuf[:0])
	switch {
	case rest == "status":
		return "/v1/status", a.methods(methodHandler{http.MethodGet, a.status})
	case rest == "cluster":
		return "/v1/cluster", a.methods(methodHandler{http.MethodGet, a.cluster})
	case len(parts) == 3 && parts[0] == "cluster" && parts[1] == "servers" && parts[2] != "":
		return "/v1/cluster/servers/{id}", a.methods(methodHandler{http.MethodDelete, a.removeServer(parts[2])})
	case rest == "events":
		return "/v1/events", a.methods(methodHandler{http.MethodGet, a.events})
	case rest == "rebalance":
		return "/v1/rebalance", a.methods(methodHandler{http.MethodPost, a.rebalance})
	case rest == "operator/snapshot":
		return "/v1/operator/snapshot", a.snapshotRoute()
	case rest == "agent/self":
		return "/v1/agent/self", a.methods(methodHandler{http.MethodGet, a.agentSelf})
	case rest == "agent/logs":
		return "/v1/agent/logs", a.methods(methodHandler{http.MethodGet, a.agentLogs})
	case rest == "operator/raft/transfer-leader":
		return "/v1/operator/raft/transfer-leader", a.methods(methodHandler{http.MethodPost, a.transferLeader})
	case parts[0] == "acl":
		return a.aclRoute(parts[1:])
	}
	info, ok := resource.LookupPlural(parts[0])
	if !ok {
		return "other", a.notFound
	}
	cr := a.collRoute(info)
	coll := cr.name
	switch {
	case len(parts) == 1:
		if blocking != "" {
			return cr.blocking, cr.h
		}
		return cr.name, cr.h
	case len(parts) == 3 && info.Kind == resource.KindVM && parts[1] != "" && parts[2] != "":
		return coll + "/{name}/{action}", a.methods(methodHandler{http.MethodPost, a.vmAction(parts[1], parts[2])})
	case len(parts) == 3 && info.Kind == resource.KindHost && parts[1] != "" && parts[2] == "report":
		return coll + "/{name}/report", a.methods(methodHandler{http.MethodPost, a.report(parts[1])})
	case len(parts) == 3 && info.Kind == resource.KindHost && parts[1] != "" && parts[2] == "migrations":
		return coll + "/{name}/migrations", a.methods(methodHandler{http.MethodPost, a.migrationEvents(parts[1])})
	case len(parts) == 3 && info.Kind == resource.KindHost && parts[1] != "" && parts[2] == "drain":
		return coll + "/{name}/drain", a.methods(methodHandler{http.MethodGet, a.drainStatus(parts[1])})
	case len(parts) == 2 && parts[1] != "":
		name := parts[1]
		return coll + "/{name}" + blocking, a.methods(
			methodHandler{http.MethodGet, a.get(info, name)},
			methodHandler{http.MethodPut, a.update(info, name)},
			methodHandler{http.MethodDelete, a.delete(info, name)},
		)
	}
	return "other", a.notFound
}

// splitPath is strings.Split(p, "/") into buf when p has at most
// cap(buf) parts (every route but the ACLs' longer ones): no allocation.
func splitPath(p string, buf []string) []string {
	if strings.Count(p, "/") >= cap(buf) {
		return strings.Split(p, "/")
	}
	for {
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return append(buf, p)
		}
		buf = append(buf, p[:i])
		p = p[i+1:]
	}
}

// collectionRoute is a kind's collection route (/v1/{plural}): its names
// for metrics and its handler, which depend on the kind only.
type collectionRoute struct {
	name, blocking string
	h              apiHandler
}

// collRoute returns info's collection route, made once per kind.
func (a *httpAPI) collRoute(info *resource.KindInfo) *collectionRoute {
	if cr, ok := a.collRoutes.Load(info.Plural); ok {
		return cr.(*collectionRoute)
	}
	name := "/v1/" + info.Plural
	cr, _ := a.collRoutes.LoadOrStore(info.Plural, &collectionRoute{name: name, blocking: name + "?index", h: a.methods(
		methodHandler{http.MethodGet, a.list(info)},
		methodHandler{http.MethodPost, a.create(info)},
	)})
	return cr.(*collectionRoute)
}

type methodHandler struct {
	method string
	h      apiHandler
}

// methods dispatches on the request method; others get 405 with Allow.
func (a *httpAPI) methods(hs ...methodHandler) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		for _, mh := range hs {
			if r.Method == mh.method {
				if err := checkContentType(r); err != nil {
					return err
				}
				return mh.h(w, r)
			}
		}
		allow := make([]string, len(hs))
		for i, mh := range hs {
			allow[i] = mh.method
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return &apiError{
			status: http.StatusMethodNotAllowed, code: resource.CodeMethodNotAllowed,
			msg: fmt.Sprintf("%s does not support %s; use %s", r.URL.Path, r.Method, joinOr(allow)),
		}
	}
}

// checkContentType refuses a POST or PUT whose Content-Type is not
// application/json (415), body or not: an HTML form or a no-cors fetch
// from a web page cannot send that type without a CORS preflight, which
// the API never grants, so a page open in an operator's browser cannot
// write through it.
func checkContentType(r *http.Request) error {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		return nil
	}
	return checkMediaType(r, "application/json", "with curl, add -H 'Content-Type: application/json' (curl -d alone sends a form type)")
}

// checkMediaType refuses a request whose Content-Type is not want (415;
// hint says how to send it). Any type but a form's or text/plain keeps
// browsers from sending it across origins without a preflight.
func checkMediaType(r *http.Request, want, hint string) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == want {
		return nil
	}
	got := "none"
	if ct != "" {
		got = strconv.Quote(ct)
	}
	return &apiError{
		status: http.StatusUnsupportedMediaType, code: resource.CodeUnsupportedMediaType,
		msg: fmt.Sprintf("%s %s needs Content-Type: %s (got %s), even without a body; %s", r.Method, r.URL.Path, want, got, hint),
	}
}

// joinOr renders a list as "a", "a or b", "a, b or c".
func joinOr(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

func (a *httpAPI) notFound(w http.ResponseWriter, r *http.Request) error {
	var colls []string
	for _, k := range resource.Kinds() {
		colls = append(colls, "/v1/"+k.Plural)
	}
	msg := fmt.Sprintf("no such endpoint %s %s", r.Method, r.URL.Path)
	if rest, ok := strings.CutPrefix(r.URL.Path, "/v1/"); ok {
		parts := strings.Split(rest, "/")
		info, known := resource.LookupPlural(parts[0])
		switch {
		case known && len(parts) > 2:
			msg = fmt.Sprintf("%s objects have no action or sub-resource %q", info.Kind, strings.Join(parts[2:], "/"))
		case !known && parts[0] != "" && !slices.Contains([]string{"status", "cluster", "events", "acl"}, parts[0]):
			msg = fmt.Sprintf("no collection %q", parts[0])
		}
	}
	return &apiError{
		status: http.StatusNotFound, code: resource.CodeNotFound,
		msg: fmt.Sprintf("%s; the collections are %s, and the other endpoints /v1/status, /v1/cluster, /v1/events and /metrics (see docs/api.md)",
			msg, strings.Join(colls, ", ")),
	}
}

func (a *httpAPI) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	if err := a.authorize(r); err != nil {
		return err
	}
	a.metrics.ServeHTTP(w, r)
	return nil
}

func (a *httpAPI) status(w http.ResponseWriter, r *http.Request) error {
	// Status is this node's own view; ?stale is accepted and changes
	// nothing.
	if _, err := apiQuery(r, "stale"); err != nil {
		return err
	}
	st := a.b.Status()
	st.ACL = resource.ACLStatus{Enabled: a.acl, Bootstrapped: a.b.FSM().State().ACLBootstrapped(nil)}
	return writeJSON(w, http.StatusOK, st)
}

// apiRecorder remembers the status code for metrics and logs.
type apiRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *apiRecorder) WriteHeader(code int) {
	if !r.wroteHeader && code >= 200 {
		r.status = code
		r.wroteHeader = true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *apiRecorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

// writeOwned is Write of a buffer the caller gives up (ownedWriter).
func (r *apiRecorder) writeOwned(b []byte) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	writeOwned(r.ResponseWriter, b)
}

// ownedWriter is a response writer that can keep the buffer it is given
// instead of copying it (a framed request's answer, fwdstream.go).
type ownedWriter interface{ writeOwned(b []byte) }

// writeOwned writes b, which the caller no longer uses, to w: kept as it
// is where w can, else copied by Write.
func writeOwned(w http.ResponseWriter, b []byte) {
	if ow, ok := w.(ownedWriter); ok {
		ow.writeOwned(b)
		return
	}
	_, _ = w.Write(b)
}

// Flush implements http.Flusher.
func (r *apiRecorder) Flush() {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *apiRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// servedWhenHalted are the routes a controller whose state machine halted
// still serves: its own status and metrics, the console's files, and what
// kumoi operator debug collects from it.
var servedWhenHalted = map[string]bool{
	"/v1/status": true, "/metrics": true, "/ui": true,
	"/v1/agent/self": true, "/v1/agent/logs": true, "/debug/pprof": true,
}

// serveUI serves the web console's static files (package ui): public, as
// its data comes from the API with the user's token.
func (a *httpAPI) serveUI(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path == "/" || r.URL.Path == "/ui" {
		http.Redirect(w, r, ui.Prefix, http.StatusFound)
		return nil
	}
	a.ui.ServeHTTP(w, r)
	return nil
}
