package fenceguard

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/internal/datadir"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// Defaults of a guard.
const (
	DefaultFenceAfter = 2500 * time.Millisecond
	// Tick is how often the guard checks its proof.
	Tick = 100 * time.Millisecond
	// callTimeout bounds each libvirt call of the guard: a hung libvirtd
	// holds up one call, never the guard's timer.
	callTimeout = 2 * time.Second
	// sweepEvery: how often a fenced guard lists the domains again.
	sweepEvery = 500 * time.Millisecond
	// listEvery: how often the guard lists the domains when all is well.
	listEvery = 2 * time.Second
)

// Config configures a guard.
type Config struct {
	// Dir holds the guard's socket, pid, lock and record (the worker's
	// data directory). The guard exits when it is removed.
	Dir string
	// NodeID is the host's name, as the worker's --node-id.
	NodeID string
	// BindIP is the address the guard's API requests leave from (the
	// worker's --bind): a partition of the host cuts them as it cuts the
	// worker.
	BindIP string
	// Driver is the guard's own connection to the hypervisor.
	Driver hypervisor.Driver
	// FenceAfter: fence when the latest proof is this old (the worker's
	// --fence-after; below the controllers' --host-down-grace).
	FenceAfter time.Duration
	// ExitWhenIdle, if set: exit once no worker has renewed for this long
	// and no domain of the cluster is active on the host (a guard the
	// worker spawned). 0: run until stopped (a guard of its own unit).
	ExitWhenIdle time.Duration
	// Kill, if set, stops a domain's process directly (QEMUKiller for
	// qemu:///system): faster than libvirt's destroy, and it works when
	// libvirtd hangs or is gone.
	Kill func(domain string) error
	// Controllers are API addresses to start from (http://host:port),
	// before a worker has said where the controllers are.
	Controllers []string
	// TLS, if set, is the configuration of the guard's API calls (the
	// worker's certificate, requiring the controllers' server
	// certificates: tlsutil.Files.ClientConfigFor); the worker names
	// the controllers by https URLs then.
	TLS *tls.Config
	// Token is the ACL token of the guard's API calls (default: the
	// environment's KUMOI_TOKEN, which a spawning worker sets).
	Token  string
	Logger hclog.Logger
}

// Guard is a running fence guard.
type Guard struct {
	cfg    Config
	logger hclog.Logger
	drv    hypervisor.Driver
	start  time.Duration

	// sweep is held while fenceActive lists and stops domains, and by
	// whoever records a proof (before mu): a proof, and with it a worker's
	// leave to start its domains, never lands in the middle of a sweep
	// that decided to stop domains before it (a domain the worker started
	// would be stopped by a sweep that no longer had a reason to).
	sweep       sync.Mutex
	mu          sync.Mutex
	proof       time.Duration // latest proof (Now clock); start counts as none
	cluster     string
	controllers []string
	api         *client.Client
	apiKey      string
	lastRenewal time.Duration // 0: never
	// listedAt is when libvirt last answered a listing (Now clock; start
	// before the first), listedActive whether the cluster had an active
	// domain here then (true before the first): idle's view while libvirt
	// does not answer.
	listedAt     time.Duration
	listedActive bool
	fenced       bool          // fenced, and no proof taken since
	fencedAt     time.Duration // when (Now clock)
	record       *FenceRecord
	reading      bool
	listed       []hypervisor.DomainInfo // the cluster's domains, last listing
	lastSweep    time.Duration           // loop goroutine only
	now          func() time.Duration    // the clock (tests may replace it)
}

// New checks cfg and makes a guard (Run runs it).
func New(cfg Config) (*Guard, error) {
	if cfg.Dir == "" {
		return nil, errors.New("fence guard: a directory is required (the worker's --data-dir)")
	}
	if err := CheckDir(cfg.Dir); err != nil {
		return nil, err
	}
	if err := resource.ValidateName(cfg.NodeID); err != nil {
		return nil, fmt.Errorf("fence guard: --node-id: %w", err)
	}
	if cfg.Driver == nil {
		return nil, errors.New("fence guard: no hypervisor driver")
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv("KUMOI_TOKEN") // set by the spawning worker
	}
	if cfg.FenceAfter <= 0 {
		cfg.FenceAfter = DefaultFenceAfter
	}
	if cfg.BindIP == "" {
		cfg.BindIP = "127.0.0.1"
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	g := &Guard{cfg: cfg, drv: cfg.Driver, logger: cfg.Logger.Named("fence-guard").With("host", cfg.NodeID), now: Now}
	g.start = g.now()
	g.listedActive = true // until libvirt has answered once: may run
	g.controllers = slices.Clone(cfg.Controllers)
	if b, err := os.ReadFile(filepath.Join(cfg.Dir, "cluster_id")); err == nil {
		g.cluster = string(trimSpace(b))
	}
	if len(g.controllers) == 0 {
		if b, err := os.ReadFile(filepath.Join(cfg.Dir, ControllersFile)); err == nil {
			_ = json.Unmarshal(b, &g.controllers)
		}
	}
	if b, err := os.ReadFile(filepath.Join(cfg.Dir, RecordFile)); err == nil {
		var r FenceRecord
		if json.Unmarshal(b, &r) == nil {
			g.record = &r
		}
	}
	return g, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// ErrRunning: another guard holds the directory.
var ErrRunning = errors.New("a fence guard is already running for this directory")

// Run takes the directory's lock, serves renewals and guards until ctx
// ends, the directory is removed, or (with ExitWhenIdle) nothing is left
// to guard. It returns ErrRunning (wrapped, naming the pid) when another
// guard holds the directory.
func (g *Guard) Run(ctx context.Context) error {
	unlock, err := g.lock()
	if err != nil {
		return err
	}
	defer unlock()
	sock := SocketPath(g.cfg.Dir)
	_ = os.Remove(sock) // a dead guard's; we hold the lock
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("fence guard: %w", err)
	}
	defer os.Remove(sock)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.serve(ctx, ln) }()
	g.logger.Info("guarding this host's domains", "dir", g.cfg.Dir, "fence_after", g.cfg.FenceAfter, "cluster", g.clusterID())
	err = g.loop(ctx)
	cancel()
	wg.Wait()
	return err
}

// lock takes the directory's lock file and writes the pid file.
func (g *Guard) lock() (func(), error) {
	path := filepath.Join(g.cfg.Dir, LockFile)
	f, err := datadir.Lock(path)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		pid, _ := os.ReadFile(filepath.Join(g.cfg.Dir, PIDFile))
		return nil, fmt.Errorf("%w (pid %s, lock %s)", ErrRunning, trimSpace(pid), path)
	}
	if err != nil {
		return nil, fmt.Errorf("fence guard: %w", err)
	}
	pidPath := filepath.Join(g.cfg.Dir, PIDFile)
	if err := os.WriteFile(pidPath, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		f.Close()
		return nil, fmt.Errorf("fence guard: %w", err)
	}
	return func() {
		os.Remove(pidPath)
		f.Close()
	}, nil
}

// loop is the guard's timer: it never waits on anything but its tick and
// the driver's events, and its libvirt calls are bounded.
func (g *Guard) loop(ctx context.Context) error {
	tick := time.NewTicker(Tick)
	defer tick.Stop()
	events := g.drv.Events()
	lastDirCheck, lastList := time.Now(), time.Time{}
	var listing atomic.Bool
	for {
		select {
		case <-ctx.Done():
			g.logger.Info("fence guard stopping; this host's domains are no longer guarded")
			return nil
		case _, ok := <-events:
			if !ok {
				events = nil
			}
			g.lastSweep = 0 // a domain may have started: look now
		case <-tick.C:
		}
		if time.Since(lastDirCheck) >= time.Second {
			lastDirCheck = time.Now()
			if _, err := os.Stat(g.cfg.Dir); errors.Is(err, os.ErrNotExist) {
				g.logger.Warn("the guard's directory was removed; exiting", "dir", g.cfg.Dir)
				return nil
			}
			if time.Since(lastList) >= listEvery && !listing.Load() {
				// Keep the list of the cluster's domains fresh, for a
				// fence while libvirt does not answer: in the
				// background, so that a hung libvirtd (a call bounded
				// to callTimeout, 2 s) never holds up the timer, whose
				// reads keep the proof fresh. Holding it up cost a
				// needless fence once --fence-after became 2.5 s
				// (TestFenceGuardLibvirtHang).
				lastList = time.Now()
				listing.Store(true)
				go func() {
					defer listing.Store(false)
					_, _ = g.list(ctx)
				}()
			}
			if g.idle(ctx) {
				g.logger.Info("no worker has renewed for a while and no domain of the cluster runs here; exiting", "after", g.cfg.ExitWhenIdle)
				return nil
			}
		}
		g.check(ctx)
	}
}

// check is one tick: read the host if the proof is getting old, and fence
// when it is too old.
func (g *Guard) check(ctx context.Context) {
	now := g.now()
	g.mu.Lock()
	last := max(g.proof, g.start)
	age := now - last
	fenced := g.fenced
	startRead := !g.reading && now-g.proof >= g.cfg.FenceAfter/3
	if startRead {
		g.reading = true
	}
	g.mu.Unlock()
	if startRead {
		go g.read(ctx)
	}
	switch {
	case age >= g.cfg.FenceAfter && !fenced:
		g.fence(ctx, fmt.Sprintf("no proof for %s (--fence-after) that the controllers count this host as ready", g.cfg.FenceAfter.Round(time.Millisecond)))
	case fenced && now-g.lastSweep >= sweepEvery:
		// Fenced: any domain of the cluster that runs again is stopped
		// until a fresh proof arrives (and at once on a driver event).
		g.lastSweep = now
		g.fenceActive(ctx, nil)
	}
}

// read reads the host object itself (linearizable, from the worker's
// address): ready or draining is a proof. Down or left is none, but not a
// reason to fence at once either: a restarted worker's host is down until
// it has reconciled, and a quick restart must not cost the host its VMs.
// The deadline (the latest proof + fence-after) comes before the end of
// the controllers' grace all the same.
func (g *Guard) read(ctx context.Context) {
	defer func() { g.mu.Lock(); g.reading = false; g.mu.Unlock() }()
	c := g.client()
	if c == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, g.cfg.FenceAfter/2)
	defer cancel()
	start := g.now()
	o, _, err := c.Get(rctx, resource.KindHost, g.cfg.NodeID, nil)
	if err != nil {
		g.logger.Debug("cannot read the host object", "error", err)
		return
	}
	hs, err := resource.DecodeStatus[resource.HostStatus](o)
	if err != nil {
		return
	}
	if hs.State == resource.HostReady || hs.State == resource.HostDraining {
		g.prove(start, "the guard's read")
	} else {
		g.logger.Debug("the host is not ready", "state", hs.State, "reason", hs.Reason)
	}
}

// prove records a proof taken at start (Now clock) if it is fresher
// (from the guard's own read, or the worker's). A proof taken after the
// fence ends it.
func (g *Guard) prove(start time.Duration, from string) {
	g.sweep.Lock()
	defer g.sweep.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.proveLocked(start, from)
}

func (g *Guard) proveLocked(start time.Duration, from string) {
	if start > g.proof {
		g.proof = start
	}
	if g.fenced && g.proof > g.fencedAt {
		g.fenced = false
		g.logger.Info("a proof taken after the fence says the host is ready again: no longer fenced", "from", from)
	}
}

// client is an API client for the controllers the worker named, dialing
// from the host's address.
func (g *Guard) client() *client.Client {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.controllers) == 0 {
		return nil
	}
	key := fmt.Sprint(g.controllers)
	if g.api == nil || key != g.apiKey {
		dialer := &net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(g.cfg.BindIP)}}
		hc := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second,
			TLSClientConfig: g.cfg.TLS}}
		c, err := client.New(client.Config{Addrs: g.controllers, HTTPClient: hc, Timeout: g.cfg.FenceAfter / 2, RetryDeadline: g.cfg.FenceAfter / 3, TLS: g.cfg.TLS, Token: g.cfg.Token})
		if err != nil {
			return nil
		}
		g.api, g.apiKey = c, key
	}
	return g.api
}

func (g *Guard) clusterID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cluster
}

// fence destroys every active Kumoi domain of the cluster on the host and
// records it.
func (g *Guard) fence(ctx context.Context, why string) {
	g.mu.Lock()
	g.fenced, g.fencedAt = true, g.now()
	g.mu.Unlock()
	g.logger.Warn("fencing: stopping every Kumoi domain of this cluster on this host", "why", why)
	rec := &FenceRecord{At: time.Now().UTC(), Why: why}
	g.fenceActive(ctx, rec)
}

// fenceActive destroys the active Kumoi domains of the cluster; with rec,
// it records them as one fence (written before the first destroy, so that
// a worker never mistakes one of them for a stop behind Kumoi's back).
func (g *Guard) fenceActive(ctx context.Context, rec *FenceRecord) {
	g.sweep.Lock()
	defer g.sweep.Unlock()
	doms, err := g.list(ctx)
	if err != nil && g.cfg.Kill != nil && rec != nil {
		// libvirt does not answer (libvirtd hangs): the domains it last
		// listed as the cluster's, by their processes.
		doms = g.lastListed()
		g.logger.Warn("fencing: cannot list domains; stopping those last listed by their processes", "error", err, "domains", len(doms))
	} else if err != nil {
		g.logger.Warn("fencing: cannot list domains", "error", err)
		if rec != nil { // (a sweep while fenced tries again later)
			g.saveRecord(rec)
		}
		return
	}
	var victims []hypervisor.DomainInfo
	for _, d := range doms {
		if d.Kumoi && d.State.Active() && !g.foreign(d) {
			victims = append(victims, d)
		}
	}
	g.mu.Lock()
	fenced := g.fenced
	g.mu.Unlock()
	if !fenced {
		// A proof taken after the fence arrived before this sweep held
		// g.sweep: the host is ready again, and the domains now active
		// may be ones its worker started since.
		return
	}
	if rec == nil && len(victims) > 0 {
		rec = &FenceRecord{At: time.Now().UTC(), Why: "a domain became active while the host was fenced"}
	}
	if rec == nil {
		return
	}
	for _, d := range victims {
		rec.Domains = append(rec.Domains, d.Name)
	}
	g.saveRecord(rec)
	for _, d := range victims {
		g.stop(ctx, d)
	}
}

// stop pulls the plug on one domain. With Kill (QEMU on qemu:///system) it
// kills the guest's process first, which takes milliseconds, where
// libvirt's destroy sends SIGTERM and may wait seconds (about 2 s under
// TCG, up to 10 s before its SIGKILL); then libvirt's destroy cleans up.
// Without Kill, libvirt's destroy alone.
func (g *Guard) stop(ctx context.Context, d hypervisor.DomainInfo) {
	killed := false
	if g.cfg.Kill != nil {
		if err := g.cfg.Kill(d.Name); err != nil {
			g.logger.Warn("fencing: cannot kill the guest's process; destroying it through libvirt", "domain", d.Name, "error", err)
		} else {
			killed = true
			g.logger.Warn("fencing: killed the guest's process", "domain", d.Name, "vm_id", d.VMID, "epoch", d.Epoch)
		}
	}
	_, err := bounded(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, g.drv.Destroy(ctx, d.Name) })
	switch {
	case err == nil || errors.Is(err, hypervisor.ErrNotFound):
		if !killed {
			g.logger.Warn("fencing: destroyed", "domain", d.Name, "vm_id", d.VMID, "epoch", d.Epoch)
		}
	case killed:
		g.logger.Debug("fencing: libvirt's destroy after the kill", "domain", d.Name, "error", err)
	default:
		g.logger.Error("fencing: destroy failed", "domain", d.Name, "error", err)
	}
}

// list lists the domains (bounded) and remembers this cluster's Kumoi
// ones, for a fence while libvirt does not answer.
func (g *Guard) list(ctx context.Context) ([]hypervisor.DomainInfo, error) {
	doms, err := bounded(ctx, func(ctx context.Context) ([]hypervisor.DomainInfo, error) { return g.drv.List(ctx) })
	if err != nil {
		return nil, err
	}
	var mine []hypervisor.DomainInfo
	active := false
	for _, d := range doms {
		if d.Kumoi && !g.foreign(d) {
			active = active || d.State.Active()
			d.State = hypervisor.StateRunning // as far as a fence goes: try it
			mine = append(mine, d)
		}
	}
	g.mu.Lock()
	g.listed = mine
	g.listedAt, g.listedActive = g.now(), active
	g.mu.Unlock()
	return doms, nil
}

// lastListed is the cluster's Kumoi domains of the last listing.
func (g *Guard) lastListed() []hypervisor.DomainInfo {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.listed)
}

// foreign: a Kumoi domain of another cluster (never the guard's to stop).
func (g *Guard) foreign(d hypervisor.DomainInfo) bool {
	mine := g.clusterID()
	return d.Cluster != "" && mine != "" && d.Cluster != mine
}

// saveRecord numbers rec, keeps it for the worker and writes it to the
// directory (so a restarted worker learns of it too).
func (g *Guard) saveRecord(rec *FenceRecord) {
	g.mu.Lock()
	if g.record != nil {
		rec.Seq = g.record.Seq + 1
	} else {
		rec.Seq = 1
	}
	g.record = rec
	g.mu.Unlock()
	g.writeFile(RecordFile, rec)
}

// writeFile writes v as JSON to name in the directory, atomically.
func (g *Guard) writeFile(name string, v any) {
	b, _ := json.Marshal(v)
	tmp := filepath.Join(g.cfg.Dir, name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		_ = os.Rename(tmp, filepath.Join(g.cfg.Dir, name))
	}
}

// idle: ExitWhenIdle is set, no worker renewed for that long, and no
// domain of the cluster is active here (or libvirt cannot say, and has
// not for that long: it is gone).
func (g *Guard) idle(ctx context.Context) bool {
	if g.cfg.ExitWhenIdle <= 0 {
		return false
	}
	now := g.now()
	g.mu.Lock()
	since := max(g.lastRenewal, g.start)
	g.mu.Unlock()
	if now-since < g.cfg.ExitWhenIdle {
		return false
	}
	doms, err := g.list(ctx)
	if err != nil {
		// libvirt does not answer: idle once it has not for as long,
		// if nothing of the cluster was active when it last did (a
		// libvirtd gone with its host's domains, as a test's; never
		// while a domain may still run).
		g.mu.Lock()
		defer g.mu.Unlock()
		return !g.listedActive && now-max(g.listedAt, g.start) >= g.cfg.ExitWhenIdle
	}
	for _, d := range doms {
		if d.Kumoi && d.State.Active() && !g.foreign(d) {
			return false
		}
	}
	return true
}

// hung counts libvirt calls of the guard that timed out and have not
// returned yet (libvirtd stopped): while one is out, no new one starts, so
// a long hang costs one goroutine, not ten a second.
var hung atomic.Int32

// errHung: an earlier call has not returned.
var errHung = errors.New("an earlier libvirt call has not returned (libvirtd hangs?)")

// bounded runs f with a timeout in its own goroutine: a libvirt call that
// hangs (libvirtd stopped) costs the guard callTimeout, not its timer.
func bounded[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	var zero T
	if hung.Load() > 0 {
		return zero, errHung
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	const (
		running = iota
		returned
		abandoned
	)
	var mu sync.Mutex
	state := running
	ch := make(chan result, 1)
	go func() {
		v, err := f(ctx)
		mu.Lock()
		if state == abandoned {
			hung.Add(-1)
		}
		state = returned
		mu.Unlock()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		mu.Lock()
		if state == running {
			state = abandoned
			hung.Add(1)
			mu.Unlock()
			return zero, fmt.Errorf("libvirt call timed out after %s: %w", callTimeout, ctx.Err())
		}
		mu.Unlock()
		r := <-ch // it returned just now
		return r.v, r.err
	}
}
