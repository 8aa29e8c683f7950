package jepsen

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// Env is what a workload runs against.
type Env struct {
	// URLs are the controllers' API base URLs.
	URLs []string
	// OpTimeout bounds every operation.
	OpTimeout time.Duration
	// RunID is unique to the run; workloads name and label their objects
	// with it.
	RunID string
	// Logf logs progress.
	Logf func(format string, args ...any)
	// Cluster is the cluster under test.
	Cluster *testcluster.Cluster
	// Dir is the run's output directory.
	Dir string
	// Daemons are the workers' libvirt daemons (--worker-driver
	// libvirtd), in worker order; empty otherwise.
	Daemons []DaemonTarget

	limit  *limiter
	hcOnce sync.Once
	hc     *http.Client

	closeMu sync.Mutex // workers' clients register from their goroutines
	closers []func()
	// Stream: the clients write on request streams (Config.Stream).
	Stream bool
}

// onClose runs f when the run ends (close), last registered first.
func (e *Env) onClose(f func()) {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	e.closers = append(e.closers, f)
}

// Client returns an SDK client that talks to one controller only and never
// retries, so that every operation of the history is exactly one request
// (a retried write could be applied twice, or be applied and then answered
// with a conflict).
func (e *Env) Client(addr string) *client.Client {
	e.hcOnce.Do(e.makeHTTPClient)
	cfg := client.Config{
		Addrs: []string{addr}, HTTPClient: e.hc, Timeout: e.OpTimeout, RetryDeadline: -1,
		UserAgent: "kumoi-jepsen", Stream: e.Stream,
	}
	if e.Stream {
		cfg.Token = testcluster.ManagementToken // the transport sends none: see makeHTTPClient
	}
	c, err := client.New(cfg)
	if err != nil {
		panic(err) // addresses come from testcluster and are well formed
	}
	if e.Stream {
		e.onClose(func() { c.Close() }) // its streams
	}
	return c
}

// makeHTTPClient makes the clients' HTTP client: testcluster's, whose
// transport adds the management token; with Stream a bare *http.Transport
// (the SDK's streams are dialled from it), the SDK then sending the token.
func (e *Env) makeHTTPClient() {
	if !e.Stream {
		e.hc = testcluster.NewHTTPClient(64, 0)
		return
	}
	e.hc = &http.Client{Transport: testcluster.NewTransport(64),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// AnyClient returns an SDK client over every controller, with the SDK's
// retries: for setup and final reads, which are not part of the history.
func (e *Env) AnyClient() *client.Client {
	e.hcOnce.Do(e.makeHTTPClient)
	cfg := client.Config{Addrs: e.URLs, HTTPClient: e.hc, Timeout: e.OpTimeout, UserAgent: "kumoi-jepsen"}
	if e.Stream {
		cfg.Token = testcluster.ManagementToken
	}
	c, err := client.New(cfg)
	if err != nil {
		panic(err)
	}
	return c
}

// Workload generates operations and checks the history they make.
type Workload interface {
	Name() string
	// Setup creates the objects the workload needs, before the history
	// starts.
	Setup(ctx context.Context, env *Env) error
	// Run issues operations as one logical process until ctx ends;
	// worker numbers the concurrent runners from 0, and process returns a
	// fresh process id (a process whose operation ended unknown must not
	// be reused).
	Run(ctx context.Context, env *Env, worker int, process func() int, rng *rand.Rand, h *History)
	// Final makes the final reads after the faults are healed, recording
	// them in h.
	Final(ctx context.Context, env *Env, h *History) error
	// Check checks the history; it may write files (history.html) to the
	// directory out ("" for none), annotated with the fault windows.
	Check(ops []Op, faults []FaultWindow, out string) Check
}

// Check is a checker's verdict.
type Check struct {
	Valid     bool      `json:"valid"`
	Anomalies []Anomaly `json:"anomalies,omitempty"`
	// Notes are facts about the check that are not anomalies.
	Notes []string `json:"notes,omitempty"`
}

// Anomaly is one thing the checker found wrong, with the operations that
// show it.
type Anomaly struct {
	Type   string `json:"type"`
	Key    string `json:"key,omitempty"`
	Detail string `json:"detail"`
	Ops    []Op   `json:"ops,omitempty"`
}

// limiter spaces operations 1/rate apart, over all clients together.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

// newLimiter returns a limiter of rate operations per second; nil (no
// limit) for rate <= 0.
func newLimiter(rate float64) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{interval: time.Duration(float64(time.Second) / rate)}
}

// Wait blocks until the client may start its next operation (at once
// without --rate); false if ctx ended first.
func (e *Env) Wait(ctx context.Context) bool {
	l := e.limit
	if l == nil {
		return ctx.Err() == nil
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(l.interval)
	l.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	return sleepCtx(ctx, d)
}

// NewWorkload returns the workload called name.
func NewWorkload(name string) (Workload, error) {
	switch name {
	case "register":
		return &Register{Keys: 3}, nil
	case "set":
		return &Set{}, nil
	case "placement":
		return &Placement{}, nil
	case "ipam":
		return &IPAM{}, nil
	case BootstrapRace:
		return nil, fmt.Errorf("%s is not a client workload: Run runs its rounds itself (bootstrap.go)", name)
	}
	return nil, fmt.Errorf("unknown workload %q (%s)", name, strings.Join(Workloads, ", "))
}

// Workloads lists the workload names.
var Workloads = []string{"register", "set", "placement", "ipam", BootstrapRace}

// workerArgser is a workload that needs its workers started with these
// arguments (e.g. their capacity).
type workerArgser interface{ WorkerArgs() []string }

// workloadNeedsWorkers says how many workers a workload runs with when
// --workers is 0.
func workloadNeedsWorkers(name string) int {
	if name == "placement" {
		return 2
	}
	return 0
}

// vmSpec is the spec of every VM the workloads create: nothing runs it
// (the cluster has no workers), it is only a replicated object.
var vmSpec = []byte(`{"cpus":1,"memory_mib":64}`)

// sleepCtx waits d unless ctx ends first (false then).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retry calls f until it succeeds or timeout passes.
func retry(ctx context.Context, timeout time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = f(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not done within %s: %w", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// createVM creates a VM with labels.
func createVM(ctx context.Context, c *client.Client, name string, labels map[string]string) (*resource.Object, error) {
	return c.Create(ctx, resource.KindVM, resource.CreateRequest{Name: name, Labels: labels, Spec: vmSpec})
}

// FailBackoff is how long a client waits after an operation that did not
// succeed, so that a client whose controller is down does not flood the
// history with refused connections.
var FailBackoff = 50 * time.Millisecond

// afterOp returns the process id to use next (a fresh one after an unknown
// outcome: that process may still be running its operation) and waits
// FailBackoff after a failure.
func afterOp(ctx context.Context, st Status, p int, process func() int) int {
	if st == StatusUnknown {
		p = process()
	}
	if st != StatusOK {
		sleepCtx(ctx, FailBackoff)
	}
	return p
}

// close drops the idle connections of the clients.
func (e *Env) close() {
	e.closeMu.Lock()
	closers := e.closers
	e.closers = nil
	e.closeMu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	e.hcOnce.Do(func() {})
	if e.hc != nil {
		e.hc.CloseIdleConnections()
	}
}

// waitHost waits until the host of worker name is ready.
func waitHost(ctx context.Context, env *Env, name string, timeout time.Duration) error {
	err := testcluster.Poll(ctx, timeout, func() (bool, error) {
		_, hs, err := env.Cluster.Host(name)
		if err != nil {
			return false, err
		}
		if hs.State != "ready" {
			return false, fmt.Errorf("host %s is %s (%s)", name, hs.State, hs.Reason)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("worker %s never became a ready host: %w", name, err)
	}
	return nil
}
