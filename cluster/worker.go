package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// WorkerConfig configures a worker: the agent on a hypervisor host that
// makes its domains match the VMs placed on it.
type WorkerConfig struct {
	NodeID string // the host's name
	// GossipName is the worker's memberlist name (default NodeID; a worker
	// sharing a process with a controller needs another one).
	GossipName string
	BindIP     string
	GossipPort int
	Join       []string
	Driver     hypervisor.Driver
	DriverName string // "sim" or "libvirt"
	// Labels become the host object's labels when it is first created
	// (gossip metadata is small: keep them few and short).
	Labels map[string]string
	// CPUs and MemoryMiB override the capacity the driver reports.
	CPUs      int
	MemoryMiB int64
	// FenceAfter: a worker that has not reached a controller quorum for
	// this long stops its VMs itself (default 3s; below HostDownGrace).
	FenceAfter time.Duration
	// HealthInterval is how often an unhealthy driver is retried (2s).
	HealthInterval time.Duration
	// ShutdownGrace is how long a guest may take to power off (10s).
	ShutdownGrace time.Duration
	Logger        hclog.Logger
}

// Worker is a running worker agent.
type Worker struct {
	cfg    WorkerConfig
	logger hclog.Logger
	drv    hypervisor.Driver

	mu       sync.Mutex
	gossip   *memberlist.Memberlist
	meta     []byte
	ctrls    *memberTable
	api      *client.Client
	apiAddrs string

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

	// Graceful shutdowns under way, by domain: they run in the background
	// (a guest may take ShutdownGrace) so that the loop, and fencing, are
	// never held up by one. Shared with their goroutines.
	smu       sync.Mutex
	shutdowns map[string]*pendingShutdown
	kick      chan struct{} // wakes the reconcile loop (buffered)
	leaving   bool          // guarded by mu
	ready     bool
	readyAt   time.Time
}

// workerGossipMeta is a worker's gossip metadata.
type workerGossipMeta struct {
	ID        string `json:"id"`
	Role      string `json:"role"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int64  `json:"memory_mib"`
	Driver    string `json:"driver,omitempty"`
	// Ready is false until the worker's first reconciliation after joining
	// has removed every domain that is no longer its own.
	Ready   bool              `json:"ready"`
	Labels  map[string]string `json:"labels,omitempty"`
	Leaving bool              `json:"leaving,omitempty"`
}

// StartWorker starts a worker: it waits (in the background, retrying and
// logging why) until its driver is healthy, then joins the gossip pool and
// reconciles.
func StartWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("--node-id is required (the host's name)")
	}
	if err := resource.ValidateName(cfg.NodeID); err != nil {
		return nil, fmt.Errorf("--node-id: a worker's id is its host's name: %w", err)
	}
	if cfg.Driver == nil {
		return nil, errors.New("worker: no hypervisor driver")
	}
	if err := resource.ValidateLabels(cfg.Labels); err != nil {
		return nil, fmt.Errorf("--label: %w", err)
	}
	if m, _ := json.Marshal(cfg.Labels); len(m) > 300 {
		return nil, fmt.Errorf("--label: %d bytes of labels; gossip metadata allows about 300", len(m))
	}
	if cfg.GossipName == "" {
		cfg.GossipName = cfg.NodeID
	}
	if cfg.BindIP == "" {
		cfg.BindIP = "127.0.0.1"
	}
	if cfg.GossipPort == 0 {
		cfg.GossipPort = DefaultGossipPort
	}
	if cfg.FenceAfter == 0 {
		cfg.FenceAfter = 3 * time.Second
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 2 * time.Second
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	w := &Worker{
		cfg:      cfg,
		logger:   cfg.Logger.Named("worker").With("host", cfg.NodeID),
		drv:      cfg.Driver,
		ctrls:    newMemberTable(),
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
		if err := w.setMetaOn(ctx, g, w.ready); err != nil {
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

func (w *Worker) run(ctx context.Context) {
	defer w.wg.Done()
	// 1. Only a healthy driver joins.
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

func (w *Worker) capacity(ctx context.Context) (int, int64) {
	cpus, mem := w.cfg.CPUs, w.cfg.MemoryMiB
	if cpus == 0 || mem == 0 {
		if st, err := w.drv.Stats(ctx); err == nil {
			if cpus == 0 {
				cpus = st.CPUs
			}
			if mem == 0 {
				mem = st.MemoryMiB
			}
		}
	}
	return cpus, mem
}

func (w *Worker) setMeta(ctx context.Context, ready bool) error {
	w.mu.Lock()
	g := w.gossip
	w.mu.Unlock()
	return w.setMetaOn(ctx, g, ready)
}

func (w *Worker) setMetaOn(ctx context.Context, g *memberlist.Memberlist, ready bool) error {
	cpus, mem := w.capacity(ctx)
	w.mu.Lock()
	leaving := w.leaving
	w.mu.Unlock()
	meta, err := json.Marshal(workerGossipMeta{ID: w.cfg.NodeID, Role: RoleWorker, CPUs: cpus, MemoryMiB: mem,
		Driver: w.cfg.DriverName, Ready: ready, Labels: w.cfg.Labels, Leaving: leaving})
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.meta = meta
	w.mu.Unlock()
	if g != nil {
		return g.UpdateNode(2 * time.Second)
	}
	return nil
}

type workerDelegate struct{ w *Worker }

func (d workerDelegate) NodeMeta(int) []byte {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	return d.w.meta
}
func (workerDelegate) NotifyMsg([]byte)                  {}
func (workerDelegate) GetBroadcasts(int, int) [][]byte   { return nil }
func (workerDelegate) LocalState(bool) []byte            { return nil }
func (workerDelegate) MergeRemoteState([]byte, bool)     {}
func (d workerDelegate) NotifyJoin(n *memberlist.Node)   { d.w.ctrls.set(n, "alive") }
func (d workerDelegate) NotifyUpdate(n *memberlist.Node) { d.w.ctrls.set(n, "alive") }
func (d workerDelegate) NotifyLeave(n *memberlist.Node)  { d.w.ctrls.set(n, leaveStatus(n)) }

func (w *Worker) joinGossip(ctx context.Context) error {
	if err := w.setMeta(ctx, false); err != nil {
		return err
	}
	mc := gossipConfig(w.cfg.GossipName, w.cfg.BindIP, w.cfg.GossipPort, DefaultGossipProbeInterval, DefaultGossipProbeTimeout, DefaultGossipSuspicionMult, w.cfg.Logger.Named("gossip"))
	d := workerDelegate{w}
	mc.Delegate, mc.Events = d, d
	if err := useBoundTransport(mc); err != nil {
		return err
	}
	g, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start gossip on %s:%d: %w", w.cfg.BindIP, w.cfg.GossipPort, err)
	}
	w.mu.Lock()
	w.gossip = g
	w.mu.Unlock()
	backoff := 200 * time.Millisecond
	for len(w.cfg.Join) > 0 {
		if n, err := g.Join(w.cfg.Join); n > 0 {
			break
		} else {
			w.logger.Warn("could not join the gossip pool yet; retrying", "join", w.cfg.Join, "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	w.logger.Info("joined the gossip pool; reconciling before reporting ready")
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		reconnectLoop(g, w.ctrls, w.cfg.GossipName, w.cfg.Join, 2*time.Second, ctx.Done())
	}()
	return nil
}

// client returns an API client over the controllers seen in gossip.
func (w *Worker) client() *client.Client {
	w.mu.Lock()
	defer w.mu.Unlock()
	var addrs []string
	for _, m := range w.ctrls.aliveControllers() {
		if m.meta.API != "" {
			addrs = append(addrs, "http://"+m.meta.API)
		}
	}
	key := strings.Join(addrs, ",")
	if key == "" {
		return nil
	}
	if key != w.apiAddrs || w.api == nil {
		// Dial from the worker's own address, so that a partition of that
		// address cuts the API as it cuts gossip.
		dialer := &net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(w.cfg.BindIP)}}
		hc := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}
		c, err := client.New(client.Config{Addrs: addrs, HTTPClient: hc, Timeout: 5 * time.Second, RetryDeadline: time.Second})
		if err != nil {
			return nil
		}
		w.api, w.apiAddrs = c, key
	}
	return w.api
}

// reconcileLoop: wait for a change (assignments, a driver event, a tick),
// then converge.
func (w *Worker) reconcileLoop(ctx context.Context) {
	var index uint64
	events := w.drv.Events()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	changes := make(chan uint64, 1)
	// The watcher keeps a blocking query open on this host's VMs; a short
	// wait keeps quorum contact fresh for fencing.
	go w.watchAssignments(ctx, changes)
	for {
		select {
		case <-ctx.Done():
			return
		case idx := <-changes:
			index = idx
		case _, ok := <-events:
			if !ok {
				events = nil
			}
		case <-tick.C:
		case <-w.kick:
		}
		_ = index
		w.converge(ctx)
	}
}

func (w *Worker) watchAssignments(ctx context.Context, changes chan<- uint64) {
	var index uint64
	for ctx.Err() == nil {
		c := w.client()
		if c == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		_, meta, err := c.List(ctx, resource.KindVM, &client.QueryOptions{Host: w.cfg.NodeID, WaitIndex: index, WaitTime: w.cfg.FenceAfter / 3})
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if meta.Index != index {
			index = meta.Index
			select {
			case changes <- index:
			default:
			}
		}
	}
}

// converge makes the domains match the VMs placed here and reports what is.
func (w *Worker) converge(ctx context.Context) {
	c := w.client()
	start := time.Now()
	var (
		vms  []*resource.Object
		host *resource.Object
		herr error
		err  error
	)
	if c != nil {
		// The host first, then its VMs (both linearizable): a VM is
		// started only if the host was ready before the assignments were
		// read, and a host that is ready cannot be evacuated (the FSM
		// checks), so no VM handed to another host is started here.
		rctx, cancel := context.WithTimeout(ctx, w.cfg.FenceAfter/2)
		host, _, herr = c.Get(rctx, resource.KindHost, w.cfg.NodeID, nil)
		if herr == nil || client.IsNotFound(herr) {
			vms, _, err = c.List(rctx, resource.KindVM, &client.QueryOptions{Host: w.cfg.NodeID})
		} else {
			err = herr
		}
		cancel()
	}
	if c == nil || err != nil {
		// No linearizable read: no quorum contact.
		if !w.lastContact.IsZero() && time.Since(w.lastContact) > w.cfg.FenceAfter && !w.fenced {
			w.logger.Warn("no controller quorum for longer than fence-after: stopping every Kumoi VM on this host", "fence_after", w.cfg.FenceAfter, "error", err)
			w.fence(ctx)
		}
		return
	}
	w.lastContact = start
	if w.fenced {
		w.logger.Info("controller quorum reachable again; resuming reconciliation")
		w.fenced = false
	}
	var hs *resource.HostStatus
	if herr == nil {
		if hs, err = resource.DecodeStatus[resource.HostStatus](host); err != nil {
			hs = nil
		}
	}
	// Starting a domain needs the host ready (or draining) in this pass.
	w.mayStart = hs != nil && (hs.State == resource.HostReady || hs.State == resource.HostDraining)
	if hs != nil && w.ready {
		if (hs.State == resource.HostDown || hs.State == resource.HostLeft) && hs.Since.After(w.readyAt) {
			// The controllers marked this host gone after it was ready:
			// its VMs may be restarted elsewhere once the grace ends.
			// Stop them here first, and start nothing until it is
			// ready again.
			if !w.fenced {
				w.logger.Warn("the controllers marked this host "+hs.State+": stopping every Kumoi VM on it", "reason", hs.Reason)
				w.fence(ctx)
			}
			return
		}
	}
	doms, err := w.drv.List(ctx)
	if err != nil {
		w.logger.Warn("cannot list domains", "error", err)
		return
	}
	byName := map[string]hypervisor.DomainInfo{}
	for _, d := range doms {
		byName[d.Name] = d
	}
	want := map[string]bool{}
	for _, o := range vms {
		if st, err := resource.DecodeStatus[resource.VMStatus](o); err == nil && st.Host == w.cfg.NodeID {
			want[hypervisor.DomainName(o.Name)] = true
		}
	}
	// Kumoi domains that are no longer ours: destroy and undefine them
	// before starting anything. The controllers freed their reservation
	// when they were deleted or moved and may have placed other VMs in it
	// (the chaos harness caught a host over capacity when starts came
	// first). If one cannot be removed, nothing is started this pass.
	for _, d := range doms {
		if !d.Kumoi || want[d.Name] {
			continue
		}
		w.logger.Info("destroying a domain that is no longer assigned to this host", "domain", d.Name, "epoch", d.Epoch)
		if !w.removeDomain(ctx, d) {
			w.mayStart = false
		}
	}
	var reports []resource.VMReport
	for _, o := range vms {
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		st, err2 := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil || err2 != nil || st.Host != w.cfg.NodeID {
			continue
		}
		name := hypervisor.DomainName(o.Name)
		if r, ok := w.convergeVM(ctx, o, spec, st, byName[name], byName[name].Name != ""); ok {
			reports = append(reports, r)
		}
	}
	if !w.ready {
		w.ready, w.readyAt = true, time.Now()
		if err := w.setMeta(ctx, true); err != nil {
			w.logger.Warn("cannot advertise readiness", "error", err)
		} else {
			w.logger.Info("reconciled; host is ready")
		}
	}
	if len(reports) > 0 {
		res, err := c.Report(ctx, w.cfg.NodeID, reports)
		if err != nil {
			w.logger.Debug("report failed", "error", err)
			return
		}
		for i, r := range res.Results {
			if i >= len(reports) {
				break
			}
			if r.Error != nil {
				w.logger.Debug("report refused", "vm", reports[i].VM, "phase", reports[i].Phase, "error", r.Error.Message)
				continue
			}
			w.logger.Debug("reported", "vm", reports[i].VM, "phase", reports[i].Phase, "reason", reports[i].Reason, "set_power", reports[i].SetPower, "epoch", reports[i].Epoch)
			w.reported[reports[i].VM] = reports[i]
		}
	}
}

// pendingShutdown is a graceful shutdown running in the background.
type pendingShutdown struct{ cancel context.CancelFunc }

// startShutdown asks name's guest to shut down (destroying it after
// ShutdownGrace), in the background; the loop is woken when it ends. A
// shutdown already under way is left alone.
func (w *Worker) startShutdown(ctx context.Context, name string) {
	w.smu.Lock()
	defer w.smu.Unlock()
	if w.shutdowns[name] != nil {
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	p := &pendingShutdown{cancel: cancel}
	w.shutdowns[name] = p
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer cancel()
		err := w.drv.Shutdown(sctx, name, w.cfg.ShutdownGrace)
		w.smu.Lock()
		if w.shutdowns[name] == p {
			delete(w.shutdowns, name)
		}
		w.smu.Unlock()
		if err != nil && sctx.Err() == nil {
			w.logger.Warn("shutdown failed", "domain", name, "error", err)
		}
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}()
}

// cancelShutdown stops waiting for name's graceful shutdown, if one is
// under way (the guest may still power off by itself), so that a destroy
// or a start can go ahead.
func (w *Worker) cancelShutdown(name string) {
	w.smu.Lock()
	defer w.smu.Unlock()
	if p := w.shutdowns[name]; p != nil {
		p.cancel()
		delete(w.shutdowns, name)
	}
}

// shuttingDown reports whether a graceful shutdown of name is under way.
func (w *Worker) shuttingDown(name string) bool {
	w.smu.Lock()
	defer w.smu.Unlock()
	return w.shutdowns[name] != nil
}

// removeDomain destroys and undefines a domain; it reports whether the
// domain is no longer running (an undefine failure leaves it defined but
// off, which holds no capacity).
func (w *Worker) removeDomain(ctx context.Context, d hypervisor.DomainInfo) bool {
	w.cancelShutdown(d.Name)
	w.stopping[d.Name] = true
	if d.State.Active() {
		if err := w.drv.Destroy(ctx, d.Name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			w.logger.Warn("destroy failed", "domain", d.Name, "error", err)
			return false
		}
	}
	if err := w.drv.Undefine(ctx, d.Name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		w.logger.Warn("undefine failed", "domain", d.Name, "error", err)
	}
	return true
}

// fence destroys every Kumoi domain on this host.
func (w *Worker) fence(ctx context.Context) {
	w.fenced = true
	doms, err := w.drv.List(ctx)
	if err != nil {
		return
	}
	for _, d := range doms {
		if d.Kumoi && d.State.Active() {
			w.cancelShutdown(d.Name)
			w.stopping[d.Name] = true
			if err := w.drv.Destroy(ctx, d.Name); err != nil {
				w.logger.Warn("fencing: destroy failed", "domain", d.Name, "error", err)
			}
		}
	}
	w.reported = map[string]resource.VMReport{}
}

// convergeVM acts on one VM and returns the report to send, if it changed.
func (w *Worker) convergeVM(ctx context.Context, o *resource.Object, spec *resource.VMSpec, st *resource.VMStatus, d hypervisor.DomainInfo, exists bool) (resource.VMReport, bool) {
	name := hypervisor.DomainName(o.Name)
	rep := resource.VMReport{VM: o.Name, Epoch: st.Epoch}
	fail := func(reason string) (resource.VMReport, bool) {
		w.failed[o.Name] = st.Epoch
		rep.Phase, rep.Reason = resource.PhaseFailed, reason
		return w.changed(rep)
	}
	if exists && d.Kumoi && (d.VMID != o.ID || d.Epoch != st.Epoch) && d.State.Active() && d.VMID != o.ID {
		// Same name, another VM (deleted and recreated): replace it.
		w.removeDomain(ctx, d)
		exists = false
	}
	if w.failed[o.Name] == st.Epoch && st.Phase == resource.PhaseFailed {
		return rep, false // stay failed until re-placed or changed
	}
	ds := hypervisor.DomainSpec{Name: name, VMID: o.ID, Epoch: st.Epoch, CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB}
	if b := spec.Boot; b != nil {
		ds.Boot = hypervisor.Boot{Image: b.Image, ImageFormat: hypervisor.ImageFormat(b.ImageFormat), Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: b.Cmdline}
	}
	if !exists || d.Epoch != st.Epoch || d.VMID != o.ID {
		if err := w.drv.Define(ctx, ds); err != nil {
			return fail("define failed: " + err.Error())
		}
		if got, err := w.drv.Get(ctx, name); err == nil {
			d = got
		}
	}
	if d.State.Active() && !w.stopping[name] {
		w.seenUp[o.Name] = st.Epoch
	}
	// Behind Kumoi's back: the guest powered off or crashed.
	if d.State == hypervisor.StateShutoff || d.State == hypervisor.StateCrashed {
		// It was seen up in this placement and we did not stop it.
		if !w.stopping[name] && spec.Power == resource.PowerRunning && w.seenUp[o.Name] == st.Epoch {
			delete(w.seenUp, o.Name)
			switch d.Reason {
			case hypervisor.StopShutdown:
				rep.Phase, rep.Reason, rep.SetPower = resource.PhaseStopped, "the guest powered itself off", resource.PowerStopped
				return w.changed(rep)
			case hypervisor.StopCrashed, hypervisor.StopFailed:
				if spec.HA != resource.HARestart {
					return fail("the guest " + d.Reason + "; ha is none, so it is not restarted")
				}
				w.logger.Info("restarting a crashed VM (ha=restart)", "vm", o.Name)
			}
		}
	}
	var err error
	if spec.Power != resource.PowerStopped {
		w.cancelShutdown(name) // asked to run again
	}
	switch spec.Power {
	case resource.PowerRunning:
		switch {
		case d.State == hypervisor.StatePaused:
			err = w.drv.Resume(ctx, name)
		case !d.State.Active() && !w.mayStart:
			w.logger.Debug("not starting domain: the host is not ready, or a stale domain could not be removed", "domain", name)
		case !d.State.Active():
			w.logger.Debug("starting domain", "domain", name, "state", d.State, "reason", d.Reason, "stopping", w.stopping[name], "last", w.reported[o.Name].Phase, "power", spec.Power, "modify_index", o.ModifyIndex)
			delete(w.stopping, name)
			w.reportStarting(ctx, rep)
			err = w.drv.Start(ctx, name)
		}
	case resource.PowerStopped:
		if d.State.Active() {
			w.stopping[name] = true
			delete(w.seenUp, o.Name)
			if st.StopForced {
				w.cancelShutdown(name)
				err = w.drv.Destroy(ctx, name)
			} else {
				w.startShutdown(ctx, name)
			}
		}
	case resource.PowerSuspended:
		if !d.State.Active() && !w.mayStart {
			break
		}
		if !d.State.Active() {
			delete(w.stopping, name)
			err = w.drv.Start(ctx, name)
		}
		if err == nil && d.State != hypervisor.StatePaused {
			err = w.drv.Suspend(ctx, name)
		}
	}
	if err != nil {
		return fail(err.Error())
	}
	if err == nil && st.RebootRequested > st.RebootDone && d.State == hypervisor.StateRunning && spec.Power == resource.PowerRunning {
		if err = w.drv.Reboot(ctx, name); err == nil {
			rep.RebootDone = st.RebootRequested
		}
	}
	if err != nil {
		return fail(err.Error())
	}
	if got, err := w.drv.Get(ctx, name); err == nil {
		d = got
	}
	if d.State.Active() && !w.stopping[name] {
		w.seenUp[o.Name] = st.Epoch
	}
	rep.Phase = phaseOf(d.State)
	if d.State.Active() && spec.Power == resource.PowerStopped && w.shuttingDown(name) {
		rep.Phase = resource.PhaseStopping
	}
	if rep.Phase == resource.PhaseStopped && (d.Reason == hypervisor.StopCrashed || d.Reason == hypervisor.StopFailed) {
		rep.Reason = "stopped: the guest " + d.Reason
	}
	return w.changed(rep)
}

// reportStarting tells the controllers a VM is booting, before a start
// that may take a while.
func (w *Worker) reportStarting(ctx context.Context, rep resource.VMReport) {
	rep.Phase, rep.Reason, rep.SetPower = resource.PhaseStarting, "", ""
	api := w.client()
	if _, changed := w.changed(rep); !changed || api == nil {
		return
	}
	if res, err := api.Report(ctx, w.cfg.NodeID, []resource.VMReport{rep}); err == nil && len(res.Results) == 1 && res.Results[0].Error == nil {
		w.reported[rep.VM] = rep
	}
}

func (w *Worker) changed(rep resource.VMReport) (resource.VMReport, bool) {
	if last, ok := w.reported[rep.VM]; ok && last == rep {
		return rep, false
	}
	return rep, true
}

func phaseOf(s hypervisor.State) string {
	switch s {
	case hypervisor.StateRunning:
		return resource.PhaseRunning
	case hypervisor.StatePaused, hypervisor.StatePMSuspended:
		return resource.PhaseSuspended
	case hypervisor.StateShuttingDown:
		return resource.PhaseStopping
	case hypervisor.StateCrashed:
		return resource.PhaseFailed
	}
	return resource.PhaseStopped
}

// Domains lists the worker's domains, sorted (tests).
func (w *Worker) Domains(ctx context.Context) ([]hypervisor.DomainInfo, error) {
	ds, err := w.drv.List(ctx)
	sort.Slice(ds, func(i, j int) bool { return ds[i].Name < ds[j].Name })
	return ds, err
}
