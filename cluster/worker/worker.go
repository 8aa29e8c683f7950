package worker

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// Worker is a running worker agent.
type Worker struct {
	cfg    Config
	logger hclog.Logger
	drv    hypervisor.Driver

	mu       sync.Mutex
	gossip   *memberlist.Memberlist
	delegate *membership.Delegate
	ctrls    *membership.Table // the pool as gossip shows it
	api      *client.Client
	apiAddrs string
	leaving  bool

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// reconciler state (reconcile goroutine only)
	reported    map[string]resource.VMReport // last report per VM
	stopping    map[string]bool              // domains we are stopping on purpose
	failed      map[string]uint64            // VMs left failed, by epoch
	seenUp      map[string]uint64            // VMs seen active (not stopped by us), by epoch
	fenced      bool
	lastContact time.Time
	// mayStart: this pass may start domains (the host was read ready or
	// draining, and every stale domain was removed).
	mayStart bool
	ready    bool
	readyAt  time.Time

	// Graceful shutdowns under way, by domain: they run in the background
	// (a guest may take ShutdownGrace) so that the loop, and fencing, are
	// never held up by one. Shared with their goroutines.
	smu       sync.Mutex
	shutdowns map[string]*pendingShutdown
	kick      chan struct{} // wakes the reconcile loop (buffered)
}

// Start starts a worker: it waits (in the background, retrying and logging
// why) until its driver is healthy, then joins the gossip pool and
// reconciles.
func Start(cfg Config) (*Worker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w := &Worker{
		cfg:      cfg,
		logger:   cfg.Logger.Named("worker").With("host", cfg.NodeID),
		drv:      cfg.Driver,
		ctrls:    membership.NewTable(),
		reported: map[string]resource.VMReport{},
		stopping: map[string]bool{},
		failed:   map[string]uint64{},
		seenUp:   map[string]uint64{},

		shutdowns: map[string]*pendingShutdown{},
		kick:      make(chan struct{}, 1),
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(1)
	go w.run(ctx)
	return w, nil
}

// NodeID is the worker's host name.
func (w *Worker) NodeID() string { return w.cfg.NodeID }

// Shutdown leaves the gossip pool gracefully (the host becomes "left") and
// stops the worker. Domains keep running on a real hypervisor.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	g := w.gossip
	w.gossip = nil
	w.mu.Unlock()
	var errs []error
	if g != nil {
		// Say we are leaving (so the host becomes "left", not "down"),
		// then leave.
		w.mu.Lock()
		w.leaving = true
		w.mu.Unlock()
		if err := w.advertiseOn(ctx, g, w.ready); err != nil {
			w.logger.Warn("cannot announce the leave", "error", err)
		}
		errs = append(errs, g.Leave(2*time.Second), g.Shutdown())
	}
	return errors.Join(errs...)
}

// Kill stops the worker without leaving the pool (tests: a crash).
func (w *Worker) Kill() {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gossip != nil {
		_ = w.gossip.Shutdown()
		w.gossip = nil
	}
}

// run: only a healthy driver joins; then reconcile until stopped.
func (w *Worker) run(ctx context.Context) {
	defer w.wg.Done()
	for {
		err := w.drv.Health(ctx)
		if err == nil {
			break
		}
		w.logger.Warn("hypervisor driver is not healthy; not joining the pool yet", "driver", w.cfg.DriverName, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(w.cfg.HealthInterval):
		}
	}
	if err := w.joinGossip(ctx); err != nil {
		w.logger.Error("cannot join the gossip pool", "error", err)
		return
	}
	w.reconcileLoop(ctx)
}

// Domains lists the worker's domains, sorted (tests).
func (w *Worker) Domains(ctx context.Context) ([]hypervisor.DomainInfo, error) {
	ds, err := w.drv.List(ctx)
	sort.Slice(ds, func(i, j int) bool { return ds[i].Name < ds[j].Name })
	return ds, err
}
