package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/cluster/api"
	"github.com/kumoi/kumoi/cluster/controller"
)

// Agent is a running `kumoi agent --controller`: a controller and the HTTP
// API in front of it.
type Agent struct {
	ctrl   *controller.Controller
	srv    *http.Server
	ln     net.Listener
	tls    bool // the API serves HTTPS
	logger hclog.Logger
	served chan error

	failed  chan struct{} // closed when the agent is out of service (Failed)
	failErr error         // why; set before failed is closed
	done    chan struct{} // closed by Shutdown

	stopOnce sync.Once
	stopErr  error
}

// The controller serves the API.
var _ api.Backend = (*controller.Controller)(nil)

// Start binds the API port, starts the controller and serves the API. The
// API listener is bound first so that peers deciding whether to bootstrap
// can ask this node about its state straight away.
func Start(cfg controller.Config) (*Agent, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Registry == nil {
		cfg.Registry = Registry()
	}
	var srvTLS *tls.Config
	if cfg.TLS.Enabled() {
		// HTTPS only: Go's server answers a plain HTTP request on a TLS
		// listener with 400 "Client sent an HTTP request to an HTTPS
		// server" and closes the connection.
		var err error
		if srvTLS, err = cfg.TLS.ServerConfig(); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.APIAddr())
	if err != nil {
		return nil, fmt.Errorf("listen for the API on %s: %w (is another agent running? pick another --api-port or --bind)", cfg.APIAddr(), err)
	}
	metrics := api.NewMetrics(cfg.Registry)
	if cfg.OnApply == nil {
		cfg.OnApply = metrics.ObserveApply
	}
	ctrl, err := controller.New(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	handler := api.NewHandler(ctrl, api.Options{
		Logger:   cfg.Logger.Named("http"),
		Registry: cfg.Registry,
		Metrics:  metrics,
		Version:  cfg.Version,
		// A deliberate bug for the chaos harness's selftest.
		UnsafeStaleReads: cfg.UnsafeStaleReads,
		HostDownGrace:    cfg.HostDownGrace,
		// Dial the leader from our own address.
		ForwardClient: api.NewForwardClient(cfg.BindIP, ctrl.PeerTLSConfig()),
		// ACL tokens (docs/security.md); the policy runner's own calls.
		ACL:            cfg.ACL,
		InternalSecret: ctrl.InternalSecret(),
		// kumoi operator debug.
		Logs:        cfg.Logs,
		AgentConfig: cfg.AgentConfig,
	})
	// Other controllers forward many long requests from one address:
	// their connections are not capped per client IP.
	srvOpts := api.ServerOptions{Logger: cfg.Logger.Named("http"), ExemptIP: ctrl.IsServerIP}
	a := &Agent{
		ctrl:   ctrl,
		ln:     ln,
		tls:    srvTLS != nil,
		logger: cfg.Logger.Named("agent"),
		served: make(chan error, 1),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
		// Timeouts, header cap (docs/api.md, "Limits").
		srv: api.NewServer(handler, srvOpts),
	}
	// The per-client connection cap and JSON for net/http's own errors:
	// this wraps the raw TCP listener, under TLS.
	served := api.NewListener(ln, srvOpts)
	if srvTLS != nil {
		served = tls.NewListener(served, srvTLS)
	}
	go func() {
		a.served <- a.srv.Serve(served)
	}()
	go a.watchFailure()
	a.logger.Info("API listening", "addr", ln.Addr().String(), "tls", srvTLS != nil)
	return a, nil
}

// HaltExitGrace is how long an agent whose controller halted keeps
// answering GET /v1/status (health "halted", and why) and /metrics before
// Failed fires and `kumoi agent` exits non-zero.
var HaltExitGrace = 10 * time.Second

// Failed is closed when the agent is out of service and the process should
// stop with a non-zero exit (Err says why): at once when the controller
// failed in a way that needs the operator (a new node whose id is still a
// voter), HaltExitGrace after its state machine halted on a committed log
// entry this build cannot apply.
func (a *Agent) Failed() <-chan struct{} { return a.failed }

// Err is why the agent is out of service, once Failed is closed.
func (a *Agent) Err() error {
	select {
	case <-a.failed:
		return a.failErr
	default:
		return nil
	}
}

func (a *Agent) watchFailure() {
	select {
	case <-a.done:
		return
	case <-a.ctrl.Failed():
		a.failErr = a.ctrl.FailErr()
		close(a.failed)
		return
	case <-a.ctrl.HaltedCh():
	}
	a.logger.Error("the controller halted: this node is out of service; GET /v1/status answers for a while, then the agent exits",
		"exit_in", HaltExitGrace, "error", a.ctrl.Halted())
	select {
	case <-a.done:
	case <-time.After(HaltExitGrace):
		a.failErr = fmt.Errorf("controller %s halted: %w", a.ctrl.NodeID(), a.ctrl.Halted())
		close(a.failed)
	}
}

// Controller returns the agent's controller.
func (a *Agent) Controller() *controller.Controller { return a.ctrl }

// APIAddr is the host:port the API listens on.
func (a *Agent) APIAddr() string { return a.ln.Addr().String() }

// APIURL is the API's base URL: https://host:port with TLS.
func (a *Agent) APIURL() string {
	if a.tls {
		return "https://" + a.APIAddr()
	}
	return "http://" + a.APIAddr()
}

// Served is sent the HTTP server's exit error.
func (a *Agent) Served() <-chan error { return a.served }

// Shutdown hands off leadership, drains the API and stops the controller.
// It is safe to call more than once.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.stopOnce.Do(func() { a.stopErr = a.shutdown(ctx) })
	return a.stopErr
}

func (a *Agent) shutdown(ctx context.Context) error {
	close(a.done)
	a.ctrl.HandOffLeadership()
	drain, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(drain); err != nil {
		// Event streams never finish on their own: cut them.
		_ = a.srv.Close()
	}
	// The forwarding streams, both ways (hijacked: the server does not
	// close them).
	if c, ok := a.srv.Handler.(io.Closer); ok {
		_ = c.Close()
	}
	err := a.ctrl.Shutdown(ctx)
	if serr := <-a.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// WaitServing returns once the agent's API answers GET /v1/status over
// its own listener (with TLS, verified as a peer controller would), or
// ctx ends: what a service manager should wait for before it calls the
// agent started (kumoi agent's systemd readiness).
func (a *Agent) WaitServing(ctx context.Context) error {
	tr := &http.Transport{TLSClientConfig: a.ctrl.PeerTLSConfig(), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.APIURL()+"/v1/status", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API at %s did not answer: %w", a.APIURL(), ctx.Err())
		case <-tick.C:
		}
	}
}
