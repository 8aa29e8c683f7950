package worker

import (
	"context"
	"errors"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/fenceguard"
	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// Worker is a running worker agent.
type Worker struct {
	cfg    Config
	logger hclog.Logger
	drv    hypervisor.Driver
	// authErr is the last refusal of the worker's token that was logged.
	authErr string

	mu       sync.Mutex
	gossip   *memberlist.Memberlist
	delegate *membership.Delegate
	ctrls    *membership.Table // the pool as gossip shows it
	api      *client.Client
	apiAddrs string
	leaving  bool
	cluster  string   // the cluster's identity, once known
	foreign  []string // Kumoi domains of another cluster, last pass

	done chan struct{} // closed when the worker has stopped by itself
	err  error         // why (set before done is closed)

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// reconciler state (reconcile goroutine only)
	reported map[string]resource.VMReport // last report per VM
	seq      reportSeq                    // the sequence of the reports sent (report.go)
	// unsure: the VMs and resources (resKey) of a report request whose
	// outcome is unknown; each is reported again, even unchanged, until
	// a request records it (report.go).
	unsure   map[string]bool
	stopping map[string]bool   // domains we are stopping on purpose
	failed   map[string]uint64 // VMs left failed, by epoch
	seenUp   map[string]uint64 // VMs seen active (not stopped by us), by epoch
	notes    map[string]note   // changes behind Kumoi's back, explained (vm.go)
	fenced   bool
	// Networks, images and volumes (netstore.go): this pass's, the
	// states last recorded by the controllers (by kind/name), the
	// networks ensured (and their definitions) or removed, the volumes
	// made or seen here.
	res         *resPass
	resReported map[string]resource.ResourceReport
	netUp       map[string]bool
	netDefs     map[string]hypervisor.NetworkDef
	netRemoved  map[string]bool
	// netRemoving: networks removed here whose removal the controllers
	// have not recorded yet (removeNetworks reports it until then).
	netRemoving map[string]bool
	volMade     map[string]bool
	images      *imageCache
	waiting     map[string]string // VMs waiting for their devices, and why (logged once)
	readErr     string            // the last failed read of what VMs use, logged
	// The fence guard (nil: none), its latest fence seen, and the
	// domains it stopped that the worker has not seen since.
	guard         *guardLink
	guardFenceSeq uint64
	guardFenced   map[string]fenceguard.FenceRecord
	foreignLogged map[string]bool // foreign domains already logged
	lastContact   time.Time
	passProof     time.Duration // the start of this pass's reads (fenceguard.Now)
	// mayStart: this pass may start domains (the host was read ready or
	// draining, and every stale domain was removed).
	mayStart bool
	ready    bool
	// readyIndex is the host object's modify index in the latest read
	// that showed it ready (or draining); 0: none yet.
	readyIndex uint64

	// Graceful shutdowns under way, by domain: they run in the background
	// (a guest may take ShutdownGrace) so that the loop, and fencing, are
	// never held up by one. Shared with their goroutines.
	smu       sync.Mutex
	shutdowns map[string]*pendingShutdown
	kick      chan struct{} // wakes the reconcile loop (buffered)

	// Migrations (migrate.go): outgoing ones and the events to send,
	// shared with their goroutines (mmu); incoming ones this host
	// prepared, and arrivals to finish (by VM, at the epoch that passed
	// here), the reconcile goroutine's.
	mmu       sync.Mutex
	out       map[string]*outMig
	migEvents []resource.MigrationEvent
	in        map[string]*inMig
	arrivals  map[string]uint64
}

// Start starts a worker: it waits (in the background, retrying and logging
// why) until its driver is healthy, then joins the gossip pool and
// reconciles.
func Start(cfg Config) (*Worker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cluster, err := readClusterID(cfg.DataDir)
	if err != nil {
		cfg.removeTempStorage()
		return nil, err
	}
	w := &Worker{
		cluster:  cluster,
		done:     make(chan struct{}),
		cfg:      cfg,
		logger:   cfg.Logger.Named("worker").With("host", cfg.NodeID),
		drv:      cfg.Driver,
		ctrls:    membership.NewTable(),
		reported: map[string]resource.VMReport{},
		unsure:   map[string]bool{},
		stopping: map[string]bool{},
		failed:   map[string]uint64{},
		seenUp:   map[string]uint64{},
		notes:    map[string]note{},

		resReported: map[string]resource.ResourceReport{},
		netUp:       map[string]bool{},
		netDefs:     map[string]hypervisor.NetworkDef{},
		netRemoved:  map[string]bool{},
		netRemoving: map[string]bool{},
		volMade:     map[string]bool{},
		waiting:     map[string]string{},

		guardFenced: map[string]fenceguard.FenceRecord{},
		// Fencing counts from the start: a worker that never reaches a
		// quorum (restarted while cut off) fences fence-after later.
		lastContact: time.Now(),

		shutdowns: map[string]*pendingShutdown{},
		kick:      make(chan struct{}, 1),

		out:      map[string]*outMig{},
		in:       map[string]*inMig{},
		arrivals: map[string]uint64{},
	}
	w.images = newImageCache(&cfg, w.logger, w.wake)
	switch {
	case cfg.DataDir == "":
		w.logger.Info("no --data-dir: this worker keeps no cluster identity across restarts; it learns it from its controllers at every start")
	case cluster == "":
		w.logger.Info("no cluster identity recorded yet; learning it from the controllers", "data_dir", cfg.DataDir)
	default:
		w.logger.Info("worker of cluster", "cluster", cluster, "data_dir", cfg.DataDir)
	}
	if w.guard, err = newGuardLink(&cfg, w.logger); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(1)
	go w.run(ctx)
	return w, nil
}

// Done is closed when the worker stops by itself, before Shutdown or
// Kill: it refused to start (Err says why). A caller runs until Done or
// its own reason to stop, then calls Shutdown.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Err is why the worker stopped by itself (nil while it runs).
func (w *Worker) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// stop records why the worker stops by itself and closes Done.
func (w *Worker) stop(err error) {
	w.logger.Error("worker stopping", "error", err)
	w.err = err
	close(w.done)
}

// NodeID is the worker's host name.
func (w *Worker) NodeID() string { return w.cfg.NodeID }

// Shutdown leaves the gossip pool gracefully (the host becomes "left") and
// stops the worker. Domains keep running on a real hypervisor.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.cancel()
	w.wg.Wait()
	defer w.cfg.removeTempStorage()
	if w.guard != nil {
		w.guard.close()
	}
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
	w.cfg.removeTempStorage()
	if w.guard != nil {
		w.guard.close()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gossip != nil {
		_ = w.gossip.Shutdown()
		w.gossip = nil
	}
}

// removeTempStorage removes the storage directory validate made (a
// worker given neither --storage-dir nor --data-dir: embedded in tests),
// once nothing of the worker runs any more; nothing else uses it.
func (cfg *Config) removeTempStorage() {
	if cfg.tempStorage {
		_ = os.RemoveAll(cfg.StorageDir)
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
	// Make sure a fence guard runs before anything else: a worker started
	// again while its host is cut off may wait for gossip forever, and the
	// guard (one that survived, or a new one, which fences fence-after
	// after its start unless it can prove the host ready) must watch its
	// domains meanwhile.
	w.renewGuard(0)
	if err := w.joinGossip(ctx); err != nil {
		if ctx.Err() == nil {
			w.stop(err)
		}
		return
	}
	// Nothing is defined, stopped or removed before the worker knows its
	// cluster: that decides which domains here are its own.
	if err := w.learnCluster(ctx); err != nil {
		if ctx.Err() == nil {
			w.stop(err)
		}
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
