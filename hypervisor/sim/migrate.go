package sim

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
)

// DefaultMigrationDowntime is how long a simulated live migration pauses
// the guest at the switch-over (Options.MigrationDowntime).
const DefaultMigrationDowntime = 20 * time.Millisecond

// Operations of the Migrator, for fault injection: a fault on
// OpMigrateOut with Times n makes the next n migrations fail before
// anything moves (the guest keeps running on the source); with Hang one
// hangs until it is cancelled.
const (
	OpPrepareIncoming Op = "prepare-incoming"
	OpMigrateOut      Op = "migrate-out"
	OpIncoming        Op = "incoming"
	OpFinishIncoming  Op = "finish-incoming"
	OpAbortIncoming   Op = "abort-incoming"
)

// ReasonIncoming is the reason of a domain that waits for (or has
// received, and holds paused) an incoming migration.
const ReasonIncoming = "incoming migration"

var _ hypervisor.Migrator = (*Driver)(nil)

// Simulated hosts take migrations from the others in the same process:
// a migration URI ("sim://<host>/<n>") names a driver here.
var (
	hostSeq atomic.Uint64
	hostsMu sync.Mutex
	hosts   = map[string]*Driver{}
)

func register(d *Driver) string {
	uri := "sim://" + d.opts.Host + "/" + strconv.FormatUint(hostSeq.Add(1), 10)
	if d.opts.MigrationDir != "" {
		uri += "?" + url.Values{"dir": {d.opts.MigrationDir}}.Encode()
	}
	hostsMu.Lock()
	defer hostsMu.Unlock()
	hosts[uri] = d
	return uri
}

func unregister(uri string) {
	hostsMu.Lock()
	defer hostsMu.Unlock()
	delete(hosts, uri)
}

func lookupHost(uri string) *Driver {
	hostsMu.Lock()
	defer hostsMu.Unlock()
	return hosts[uri]
}

// MigrationURI is the URI other simulated hosts migrate to this one on.
func (d *Driver) MigrationURI() string { return d.uri }

// SetMigrationLatency sets how long a migration copies the guest (which
// keeps running meanwhile) before it pauses it to switch over.
func (d *Driver) SetMigrationLatency(latency time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.opts.MigrationLatency = latency
}

func (d *Driver) migrationCap(what string) error {
	if !d.caps.Has(hypervisor.CapLiveMigration) {
		return fmt.Errorf("%s: %w: %s", what, hypervisor.ErrUnsupported, hypervisor.CapLiveMigration)
	}
	return nil
}

// PrepareIncoming implements hypervisor.Migrator: it defines the domain
// from spec and holds it paused (reason ReasonIncoming), its capacity
// taken, until a migration arrives and FinishIncoming resumes it.
func (d *Driver) PrepareIncoming(ctx context.Context, spec hypervisor.DomainSpec) (string, error) {
	what := "prepare incoming " + spec.Name
	if err := d.migrationCap(what); err != nil {
		return "", err
	}
	if err := d.enter(ctx, OpPrepareIncoming, what); err != nil {
		return "", err
	}
	if err := spec.Validate(); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	for _, c := range spec.Boot.Needs() {
		if !d.caps.Has(c) {
			return "", fmt.Errorf("%s: %w: %s", what, hypervisor.ErrUnsupported, c)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.missingLocked(spec); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	dom, ok := d.domains[spec.Name]
	switch {
	case !ok:
		dom = newDomain(spec, true)
		d.domains[spec.Name] = dom
		d.emitLocked(spec.Name, dom, hypervisor.EventDefined, "added")
	case !dom.kumoi || dom.spec.VMID != spec.VMID:
		owner := "a foreign domain"
		if dom.kumoi {
			owner = "VM " + dom.spec.VMID
		}
		return "", fmt.Errorf("%s: %w: the name belongs to %s", what, hypervisor.ErrExists, owner)
	case dom.incoming:
		if !dom.arrived {
			dom.spec, dom.live = spec, spec
		}
		return d.uri, nil
	case dom.state.Active():
		return "", fmt.Errorf("%s: %w: the domain already runs here", what, hypervisor.ErrInvalidState)
	default:
		dom.spec = spec
	}
	dom.incoming, dom.arrived, dom.remote = true, false, false
	if d.opts.MigrationDir != "" {
		d.clearMarkersLocked(spec.Name, spec.VMID)
		if err := os.MkdirAll(d.opts.MigrationDir, 0o755); err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		if err := os.WriteFile(markerPath(d.opts.MigrationDir, spec.Name, spec.VMID, "prepared"), []byte(spec.VMID+"\n"), 0o644); err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
	}
	dom.state, dom.reason = hypervisor.StatePaused, ReasonIncoming
	dom.cpus, dom.memMiB = spec.CPUs, spec.MemoryMiB
	dom.live = spec
	dom.stopped = make(chan struct{})
	d.emitLocked(spec.Name, dom, hypervisor.EventSuspended, ReasonIncoming)
	return d.uri, nil
}

// MigrateOut implements hypervisor.Migrator: the guest keeps running
// while it is copied (MigrationLatency), is paused for MigrationDowntime,
// arrives (paused) on the target, and is stopped and undefined here.
// Cancelled before it arrives, it runs here again.
func (d *Driver) MigrateOut(ctx context.Context, name, uri string, _ hypervisor.MigrateOptions) (hypervisor.MigrateResult, error) {
	var res hypervisor.MigrateResult
	what := "migrate " + name + " to " + uri
	if err := d.migrationCap(what); err != nil {
		return res, err
	}
	dom, release, err := d.job(ctx, OpMigrateOut, "migrate", name)
	if err != nil {
		return res, err
	}
	defer release()
	d.mu.Lock()
	state, vmid, latency, downtime := dom.state, dom.spec.VMID, d.opts.MigrationLatency, d.opts.MigrationDowntime
	d.mu.Unlock()
	if state != hypervisor.StateRunning {
		return res, fmt.Errorf("%s: %w: domain is %s", what, hypervisor.ErrInvalidState, state)
	}
	target := lookupHost(uri)
	switch {
	case target == nil && migrationDirOf(uri) != "":
		return d.migrateToDir(ctx, dom, name, vmid, migrationDirOf(uri), latency, downtime)
	case target == nil:
		return res, fmt.Errorf("%s: %w: no simulated host in this process takes migrations there", what, hypervisor.ErrUnavailable)
	case target == d:
		return res, fmt.Errorf("%s: %w: that is this host", what, hypervisor.ErrInvalidState)
	}
	if err := target.expectIncoming(name, vmid); err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	// The copy, while the guest runs.
	if err := d.wait(ctx, latency); err != nil {
		return res, fmt.Errorf("%s: stopped while copying; the guest runs here: %w", what, err)
	}
	// The switch-over, paused.
	d.mu.Lock()
	if dom.state != hypervisor.StateRunning {
		d.mu.Unlock()
		return res, fmt.Errorf("%s: %w: the domain became %s while it was copied", what, hypervisor.ErrInvalidState, dom.state)
	}
	dom.state, dom.reason = hypervisor.StatePaused, "migrating"
	d.emitLocked(name, dom, hypervisor.EventSuspended, "migrating")
	d.mu.Unlock()
	start := time.Now()
	rollback := func(cause error) (hypervisor.MigrateResult, error) {
		d.mu.Lock()
		if dom.state == hypervisor.StatePaused {
			dom.state, dom.reason = hypervisor.StateRunning, "migration cancelled"
			d.emitLocked(name, dom, hypervisor.EventResumed, "migration cancelled")
		}
		d.mu.Unlock()
		return res, fmt.Errorf("%s: the guest runs here again: %w", what, cause)
	}
	if err := d.wait(ctx, downtime); err != nil {
		return rollback(err)
	}
	if err := target.arrive(name, vmid); err != nil {
		return rollback(err)
	}
	// Gone from here: stopped and undefined. Only then does the arrival
	// count as started on the target (it stays paused until
	// FinishIncoming): the guest never runs on both.
	d.mu.Lock()
	if dom.state.Active() {
		d.stopLocked(name, dom, hypervisor.StopOther)
	}
	dom.gone = true
	delete(d.domains, name)
	d.emitLocked(name, dom, hypervisor.EventUndefined, "migrated")
	d.mu.Unlock()
	target.logArrival(name)
	res.Downtime = time.Since(start)
	return res, nil
}

// migrationDirOf is the directory a migration URI delivers to ("": none).
func migrationDirOf(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "sim" {
		return ""
	}
	return u.Query().Get("dir")
}

// markerPath is the file through which a migration of name (VM vmid)
// is prepared (kind "prepared") or delivered ("arrived") in dir.
func markerPath(dir, name, vmid, kind string) string {
	return filepath.Join(dir, name+"."+vmid+"."+kind)
}

// migrateToDir is MigrateOut to a simulated host of another process: the
// target prepared (its marker says so); the guest is copied while it runs,
// paused, delivered (the arrival marker, written atomically), then stopped
// and undefined here. The target observes the arrival's start only when
// FinishIncoming resumes it, after the VM passed to it, which is after
// this returned: the guest never runs on both.
func (d *Driver) migrateToDir(ctx context.Context, dom *domain, name, vmid, dir string, latency, downtime time.Duration) (hypervisor.MigrateResult, error) {
	var res hypervisor.MigrateResult
	what := "migrate " + name + " to " + dir
	if _, err := os.Stat(markerPath(dir, name, vmid, "prepared")); err != nil {
		return res, fmt.Errorf("%s: %w: the target has not prepared %s (%v)", what, hypervisor.ErrInvalidState, name, err)
	}
	if err := d.wait(ctx, latency); err != nil {
		return res, fmt.Errorf("%s: stopped while copying; the guest runs here: %w", what, err)
	}
	d.mu.Lock()
	if dom.state != hypervisor.StateRunning {
		d.mu.Unlock()
		return res, fmt.Errorf("%s: %w: the domain became %s while it was copied", what, hypervisor.ErrInvalidState, dom.state)
	}
	dom.state, dom.reason = hypervisor.StatePaused, "migrating"
	d.emitLocked(name, dom, hypervisor.EventSuspended, "migrating")
	d.mu.Unlock()
	start := time.Now()
	rollback := func(cause error) (hypervisor.MigrateResult, error) {
		d.mu.Lock()
		if dom.state == hypervisor.StatePaused {
			dom.state, dom.reason = hypervisor.StateRunning, "migration cancelled"
			d.emitLocked(name, dom, hypervisor.EventResumed, "migration cancelled")
		}
		d.mu.Unlock()
		return res, fmt.Errorf("%s: the guest runs here again: %w", what, cause)
	}
	if err := d.wait(ctx, downtime); err != nil {
		return rollback(err)
	}
	tmp := markerPath(dir, name, vmid, "arriving")
	if err := os.WriteFile(tmp, []byte(vmid+"\n"), 0o644); err != nil {
		return rollback(err)
	}
	if err := os.Rename(tmp, markerPath(dir, name, vmid, "arrived")); err != nil {
		_ = os.Remove(tmp)
		return rollback(err)
	}
	d.mu.Lock()
	if dom.state.Active() {
		d.stopLocked(name, dom, hypervisor.StopOther)
	}
	dom.gone = true
	delete(d.domains, name)
	d.emitLocked(name, dom, hypervisor.EventUndefined, "migrated")
	d.mu.Unlock()
	res.Downtime = time.Since(start)
	return res, nil
}

// arrivedLocked notes a delivery from another process (MigrationDir) of
// the prepared domain name.
func (d *Driver) arrivedLocked(name string, dom *domain) {
	if dom.arrived || !dom.incoming || d.opts.MigrationDir == "" {
		return
	}
	p := markerPath(d.opts.MigrationDir, name, dom.spec.VMID, "arrived")
	if _, err := os.Stat(p); err == nil {
		dom.arrived, dom.remote = true, true
		_ = os.Remove(p)
		_ = os.Remove(markerPath(d.opts.MigrationDir, name, dom.spec.VMID, "prepared"))
	}
}

// clearMarkersLocked removes name's markers (a new preparation, an abort).
func (d *Driver) clearMarkersLocked(name, vmid string) {
	if d.opts.MigrationDir == "" {
		return
	}
	for _, k := range []string{"prepared", "arrived", "arriving"} {
		_ = os.Remove(markerPath(d.opts.MigrationDir, name, vmid, k))
	}
}

// expectIncoming checks that name is prepared here for VM vmid.
func (d *Driver) expectIncoming(name, vmid string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("%w: the target host is closed", hypervisor.ErrUnavailable)
	}
	dom, ok := d.domains[name]
	if !ok || !dom.incoming || dom.spec.VMID != vmid || !dom.state.Active() {
		return fmt.Errorf("%w: the target %s has not prepared %s", hypervisor.ErrInvalidState, d.opts.Host, name)
	}
	return nil
}

// arrive marks the prepared domain name as arrived (still paused).
func (d *Driver) arrive(name, vmid string) error {
	if err := d.expectIncoming(name, vmid); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.domains[name].arrived = true
	return nil
}

func (d *Driver) logArrival(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dom, ok := d.domains[name]; ok && dom.arrived && dom.state.Active() {
		d.obs.Start(name, dom.spec.VMID, dom.spec.Epoch, "migrated in")
	}
}

// Incoming implements hypervisor.Migrator. The simulator holds an arrival
// paused until FinishIncoming, so it reports true only for one that was
// resumed since.
func (d *Driver) Incoming(ctx context.Context, name string) (bool, error) {
	what := "incoming " + name
	if err := d.migrationCap(what); err != nil {
		return false, err
	}
	if err := d.enter(ctx, OpIncoming, what); err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, ok := d.domains[name]
	if ok {
		d.arrivedLocked(name, dom)
	}
	return ok && dom.arrived && dom.state == hypervisor.StateRunning, nil
}

// Arrived reports whether a migration of name has arrived here (paused
// or resumed): tests.
func (d *Driver) Arrived(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, ok := d.domains[name]
	return ok && dom.arrived
}

// FinishIncoming implements hypervisor.Migrator: it resumes an arrival.
func (d *Driver) FinishIncoming(ctx context.Context, name string) error {
	what := "finish incoming " + name
	if err := d.migrationCap(what); err != nil {
		return err
	}
	dom, release, err := d.job(ctx, OpFinishIncoming, "finish incoming", name)
	if err != nil {
		return err
	}
	defer release()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.arrivedLocked(name, dom)
	switch {
	case dom.state == hypervisor.StateRunning:
		dom.incoming = false
		return nil
	case dom.incoming && !dom.arrived:
		return fmt.Errorf("%s: %w: nothing has arrived yet", what, hypervisor.ErrInvalidState)
	case dom.state == hypervisor.StatePaused && dom.arrived:
		dom.incoming = false
		if dom.remote {
			// Delivered by another process: it starts here now (its
			// source stopped before this host had the VM).
			d.obs.Start(name, dom.spec.VMID, dom.spec.Epoch, "migrated in")
			dom.remote = false
		}
		dom.state, dom.reason = hypervisor.StateRunning, "migrated"
		d.emitLocked(name, dom, hypervisor.EventResumed, "migrated")
		return nil
	}
	return fmt.Errorf("%s: %w: domain is %s", what, hypervisor.ErrInvalidState, dom.state)
}

// AbortIncoming implements hypervisor.Migrator: it destroys and undefines
// a prepared domain, or one that arrived and was not finished. A domain
// that is not an arrival is left alone.
func (d *Driver) AbortIncoming(ctx context.Context, name string) error {
	what := "abort incoming " + name
	if err := d.migrationCap(what); err != nil {
		return err
	}
	dom, release, err := d.job(ctx, OpAbortIncoming, "abort incoming", name)
	if errors.Is(err, hypervisor.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer release()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !dom.incoming {
		return nil
	}
	d.clearMarkersLocked(name, dom.spec.VMID)
	if dom.state.Active() {
		d.stopLocked(name, dom, hypervisor.StopDestroyed)
	}
	dom.gone = true
	delete(d.domains, name)
	d.emitLocked(name, dom, hypervisor.EventUndefined, "removed")
	return nil
}
