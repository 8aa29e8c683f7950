package sim

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/internal/driverutil"
)

// Options configure a simulated host. The zero value is a 16-CPU, 64 GiB
// host with instant boots and every capability.
type Options struct {
	// Host names the host in the observation log (default "sim").
	Host string
	// CPUs and MemoryMiB are the host's capacity (default 16 and 65536).
	CPUs      int
	MemoryMiB int64
	// BootLatency is how long Start takes before the domain runs.
	BootLatency time.Duration
	// ShutdownLatency is how long a guest takes to power off after an ACPI
	// shutdown request.
	ShutdownLatency time.Duration
	// Capabilities the driver claims (default: all). Operations needing a
	// missing one fail with ErrUnsupported, as a real driver's would.
	Capabilities hypervisor.Capabilities
	// EventBuffer bounds the undelivered events (default
	// driverutil.DefaultQueueLimit); past it they are replaced by one
	// EventResync.
	EventBuffer int
	// ObservationLog, if set, receives one JSON line (hypervisor.Observation)
	// per domain start and stop.
	ObservationLog io.Writer
	// Logger (default: none).
	Logger hclog.Logger
	// Now is the clock for event times (default time.Now).
	Now func() time.Time
	// StorageDir is the (simulated) directory of the storage pool "kumoi":
	// volume paths are StorageDir/<name> (default
	// hypervisor.DefaultStorageDir). No file is written.
	StorageDir string
	// MigrationDowntime is how long a live migration pauses the guest at
	// the switch-over (default DefaultMigrationDowntime); MigrationLatency
	// how long it copies the guest, running, before that (default 0).
	// Migrations go between simulated hosts of one process (migrate.go),
	// and, with MigrationDir, from other processes on this machine.
	MigrationDowntime time.Duration
	MigrationLatency  time.Duration
	// MigrationDir is a directory of this host's own through which
	// simulated hosts of other processes on this machine deliver their
	// migrations (a marker file per arrival); empty: only hosts of this
	// process migrate here.
	MigrationDir string
}

// Op names a driver operation, for fault injection.
type Op string

// Operations that faults can be injected into.
const (
	OpDefine   Op = "define"
	OpStart    Op = "start"
	OpShutdown Op = "shutdown"
	OpDestroy  Op = "destroy"
	OpSuspend  Op = "suspend"
	OpResume   Op = "resume"
	OpReboot   Op = "reboot"
	OpUndefine Op = "undefine"
	OpList     Op = "list"
	OpGet      Op = "get"
	OpStats    Op = "stats"
	OpHealth   Op = "health"
)

// Fault is an injected failure of one operation. With Hang the call blocks
// until its context is done (or the fault is cleared, or the driver closed)
// and then fails; otherwise it fails at once, before doing anything.
type Fault struct {
	// Err is returned (wrapped); default: ErrUnavailable "injected fault".
	Err error
	// Times is how many calls fail; 0 means every call until ClearFaults.
	Times int
	// Hang blocks the call until its context is done.
	Hang bool
}

// Driver is the simulated host. It implements hypervisor.Driver.
type Driver struct {
	opts   Options
	caps   hypervisor.Capabilities
	log    hclog.Logger
	events *driverutil.Queue
	obs    *driverutil.Observer

	mu          sync.Mutex
	domains     map[string]*domain
	networks    map[string]*network
	volumes     map[string]*volume
	faults      map[Op]*Fault
	faultsReset chan struct{} // closed and replaced by ClearFaults
	unavailable bool
	closed      bool
	done        chan struct{}
	uri         string // where other simulated hosts migrate to this one
}

type domain struct {
	spec    hypervisor.DomainSpec // the definition (config)
	live    hypervisor.DomainSpec // what it was started with, while active
	kumoi   bool
	state   hypervisor.State
	reason  string
	cpus    int   // live, while active
	memMiB  int64 // live, while active
	ignore  bool  // the guest ignores ACPI shutdown requests
	job     chan struct{}
	timer   *time.Timer // pending guest power-off after an ACPI request
	gone    bool        // undefined; a holder of job must re-check
	stopped chan struct{}
	// incoming: prepared for an incoming migration (PrepareIncoming),
	// not finished; arrived: the migration arrived (held paused until
	// FinishIncoming).
	incoming bool
	arrived  bool
	// remote: it arrived from another process (MigrationDir); its start
	// is observed when FinishIncoming resumes it.
	remote bool
}

var _ hypervisor.Driver = (*Driver)(nil)

// New returns a simulated host.
func New(opts Options) *Driver {
	if opts.Host == "" {
		opts.Host = "sim"
	}
	if opts.CPUs <= 0 {
		opts.CPUs = 16
	}
	if opts.MemoryMiB <= 0 {
		opts.MemoryMiB = 65536
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StorageDir == "" {
		opts.StorageDir = hypervisor.DefaultStorageDir
	}
	if opts.MigrationDowntime <= 0 {
		opts.MigrationDowntime = DefaultMigrationDowntime
	}
	caps := opts.Capabilities
	if caps == nil {
		caps = hypervisor.NewCapabilities(hypervisor.AllCapabilities...)
	}
	lg := opts.Logger
	if lg == nil {
		lg = hclog.NewNullLogger()
	}
	d := &Driver{
		opts:        opts,
		caps:        caps,
		log:         lg.Named("sim"),
		events:      driverutil.NewQueue(opts.EventBuffer),
		obs:         driverutil.NewObserver(opts.ObservationLog, opts.Host),
		domains:     map[string]*domain{},
		networks:    map[string]*network{},
		volumes:     map[string]*volume{},
		faults:      map[Op]*Fault{},
		faultsReset: make(chan struct{}),
		done:        make(chan struct{}),
	}
	d.uri = register(d)
	return d
}

// ---- knobs ----------------------------------------------------------------

// InjectFault makes op fail as f says, replacing any earlier fault for op.
func (d *Driver) InjectFault(op Op, f Fault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults[op] = &f
}

// ClearFaults removes every injected fault and releases hanging calls.
func (d *Driver) ClearFaults() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = map[Op]*Fault{}
	close(d.faultsReset)
	d.faultsReset = make(chan struct{})
}

// SetUnavailable cuts (true) or restores (false) the simulated connection to
// the hypervisor. While cut, every call fails with ErrUnavailable and no
// events are delivered; guest actions still happen. Restoring it queues an
// EventResync, as a reconnecting libvirt driver does.
func (d *Driver) SetUnavailable(cut bool) {
	d.mu.Lock()
	was := d.unavailable
	d.unavailable = cut
	d.mu.Unlock()
	if was && !cut {
		d.emit(hypervisor.Event{Kind: hypervisor.EventResync, Reason: "reconnected"})
	}
}

// PowerOffFromGuest powers a running domain off from inside, as a guest
// running "poweroff" does: it stops with reason shutdown.
func (d *Driver) PowerOffFromGuest(name string) error {
	return d.guest(name, "power off from guest", func(dom *domain) error {
		if !dom.state.Active() {
			return fmt.Errorf("%w: domain %s is %s", hypervisor.ErrInvalidState, name, dom.state)
		}
		d.stopLocked(name, dom, hypervisor.StopShutdown)
		return nil
	})
}

// Crash makes a running domain crash: it ends shut off with reason crashed.
func (d *Driver) Crash(name string) error {
	return d.guest(name, "crash", func(dom *domain) error {
		if !dom.state.Active() {
			return fmt.Errorf("%w: domain %s is %s", hypervisor.ErrInvalidState, name, dom.state)
		}
		d.stopLocked(name, dom, hypervisor.StopCrashed)
		return nil
	})
}

// Vanish removes a domain behind its driver's back, as an administrator's
// `virsh undefine` of a running domain followed by its end (it becomes
// transient, then is gone): a running domain stops (reason destroyed) and
// its definition is removed, at once.
func (d *Driver) Vanish(name string) error {
	return d.guest(name, "vanish", func(dom *domain) error {
		if dom.state.Active() {
			d.stopLocked(name, dom, hypervisor.StopDestroyed)
		}
		dom.gone = true
		delete(d.domains, name)
		d.emitLocked(name, dom, hypervisor.EventUndefined, "removed")
		return nil
	})
}

// IgnoreShutdown makes a domain's guest ignore (true) or answer (false)
// ACPI shutdown requests, so Shutdown has to destroy it after its grace.
func (d *Driver) IgnoreShutdown(name string, ignore bool) error {
	return d.guest(name, "ignore shutdown", func(dom *domain) error {
		dom.ignore = ignore
		return nil
	})
}

// DefineForeign defines an untagged domain behind Kumoi's back (as someone
// running virsh would), running if running is true.
func (d *Driver) DefineForeign(name string, cpus int, memoryMiB int64, running bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.domains[name]; ok {
		return fmt.Errorf("%w: %s", hypervisor.ErrExists, name)
	}
	dom := newDomain(hypervisor.DomainSpec{Name: name, CPUs: cpus, MemoryMiB: memoryMiB}, false)
	d.domains[name] = dom
	d.emitLocked(name, dom, hypervisor.EventDefined, "added")
	if running {
		d.obs.Start(name, "", 0, "foreign")
		d.runLocked(name, dom)
	}
	return nil
}

func (d *Driver) guest(name, what string, f func(*domain) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, ok := d.domains[name]
	if !ok {
		return fmt.Errorf("%s %s: %w", what, name, hypervisor.ErrNotFound)
	}
	return f(dom)
}

// ---- hypervisor.Driver ------------------------------------------------------

// Capabilities implements hypervisor.Driver.
func (d *Driver) Capabilities() hypervisor.Capabilities { return d.caps }

// Events implements hypervisor.Driver.
func (d *Driver) Events() <-chan hypervisor.Event { return d.events.C() }

// Health implements hypervisor.Driver.
func (d *Driver) Health(ctx context.Context) error {
	return d.enter(ctx, OpHealth, "health")
}

// Close implements hypervisor.Driver. A simulated host's domains end with
// it: each active one is logged as stopped.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.done)
	unregister(d.uri)
	for name, dom := range d.domains {
		if dom.timer != nil {
			dom.timer.Stop()
		}
		if dom.state.Active() {
			d.obs.Stop(name, dom.spec.VMID, dom.spec.Epoch, "driver closed")
		}
	}
	d.mu.Unlock()
	d.events.Close()
	return d.obs.Err()
}

// Define implements hypervisor.Driver.
func (d *Driver) Define(ctx context.Context, spec hypervisor.DomainSpec) error {
	if err := d.enter(ctx, OpDefine, "define "+spec.Name); err != nil {
		return err
	}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("define %s: %w", spec.Name, err)
	}
	for _, c := range spec.Boot.Needs() {
		if !d.caps.Has(c) {
			return fmt.Errorf("define %s: %w: %s", spec.Name, hypervisor.ErrUnsupported, c)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
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
		return fmt.Errorf("define %s: %w: the name belongs to %s", spec.Name, hypervisor.ErrExists, owner)
	case dom.spec.Equal(spec):
	default:
		dom.spec = spec
		d.emitLocked(spec.Name, dom, hypervisor.EventDefined, "updated")
	}
	return nil
}

// Start implements hypervisor.Driver.
func (d *Driver) Start(ctx context.Context, name string) error {
	dom, release, err := d.job(ctx, OpStart, "start", name)
	if err != nil {
		return err
	}
	defer release()
	d.mu.Lock()
	switch dom.state {
	case hypervisor.StateRunning, hypervisor.StateShuttingDown:
		d.mu.Unlock()
		return nil
	case hypervisor.StatePaused, hypervisor.StatePMSuspended:
		d.mu.Unlock()
		return fmt.Errorf("start %s: %w: domain is paused: resume it", name, hypervisor.ErrInvalidState)
	}
	spec := dom.spec
	if err := d.missingLocked(spec); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("start %s: %w", name, err)
	}
	d.mu.Unlock()
	d.obs.Start(name, spec.VMID, spec.Epoch, "start")
	if err := d.wait(ctx, d.opts.BootLatency); err != nil {
		d.obs.Stop(name, spec.VMID, spec.Epoch, "start abandoned")
		return fmt.Errorf("start %s: %w", name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("start %s: %w: %w", name, hypervisor.ErrUnavailable, hypervisor.ErrClosed)
	}
	if err := d.missingLocked(dom.spec); err != nil { // removed during the boot
		d.obs.Stop(name, spec.VMID, spec.Epoch, "start failed")
		return fmt.Errorf("start %s: %w", name, err)
	}
	d.runLocked(name, dom)
	return nil
}

// Shutdown implements hypervisor.Driver.
func (d *Driver) Shutdown(ctx context.Context, name string, grace time.Duration) error {
	dom, release, err := d.job(ctx, OpShutdown, "shutdown", name)
	if err != nil {
		return err
	}
	defer release()
	d.mu.Lock()
	if !dom.state.Active() {
		d.mu.Unlock()
		return nil
	}
	if grace <= 0 || !d.caps.Has(hypervisor.CapGracefulShutdown) ||
		dom.state == hypervisor.StatePaused || dom.state == hypervisor.StatePMSuspended {
		d.stopLocked(name, dom, hypervisor.StopDestroyed)
		d.mu.Unlock()
		return nil
	}
	stopped := dom.stopped
	if !dom.ignore && dom.timer == nil {
		dom.timer = time.AfterFunc(d.opts.ShutdownLatency, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			dom.timer = nil
			if !d.closed && dom.state.Active() && dom.stopped == stopped {
				d.stopLocked(name, dom, hypervisor.StopShutdown)
			}
		})
	}
	d.mu.Unlock()

	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown %s: %w", name, ctx.Err())
	case <-d.done:
		return fmt.Errorf("shutdown %s: %w: %w", name, hypervisor.ErrUnavailable, hypervisor.ErrClosed)
	case <-t.C:
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dom.state.Active() {
		d.log.Debug("shutdown grace expired, destroying", "domain", name, "grace", grace)
		d.stopLocked(name, dom, hypervisor.StopDestroyed)
	}
	return nil
}

// Destroy implements hypervisor.Driver.
func (d *Driver) Destroy(ctx context.Context, name string) error {
	dom, release, err := d.job(ctx, OpDestroy, "destroy", name)
	if err != nil {
		return err
	}
	defer release()
	d.mu.Lock()
	defer d.mu.Unlock()
	if dom.state.Active() {
		d.stopLocked(name, dom, hypervisor.StopDestroyed)
	}
	return nil
}

// Suspend implements hypervisor.Driver.
func (d *Driver) Suspend(ctx context.Context, name string) error {
	if !d.caps.Has(hypervisor.CapSuspend) {
		return fmt.Errorf("suspend %s: %w: %s", name, hypervisor.ErrUnsupported, hypervisor.CapSuspend)
	}
	dom, release, err := d.job(ctx, OpSuspend, "suspend", name)
	if err != nil {
		return err
	}
	defer release()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch dom.state {
	case hypervisor.StatePaused:
		return nil
	case hypervisor.StateRunning:
		dom.state, dom.reason = hypervisor.StatePaused, "user"
		d.emitLocked(name, dom, hypervisor.EventSuspended, "paused")
		return nil
	}
	return fmt.Errorf("suspend %s: %w: domain is %s", name, hypervisor.ErrInvalidState, dom.state)
}

// Resume implements hypervisor.Driver.
func (d *Driver) Resume(ctx context.Context, name string) error {
	if !d.caps.Has(hypervisor.CapSuspend) {
		return fmt.Errorf("resume %s: %w: %s", name, hypervisor.ErrUnsupported, hypervisor.CapSuspend)
	}
	dom, release, err := d.job(ctx, OpResume, "resume", name)
	if err != nil {
		return err
	}
	defer release()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch dom.state {
	case hypervisor.StateRunning:
		return nil
	case hypervisor.StatePaused:
		if dom.incoming && !dom.arrived {
			return fmt.Errorf("resume %s: %w: it waits for an incoming migration", name, hypervisor.ErrInvalidState)
		}
		dom.incoming = false // an arrival resumed: finished
		dom.state, dom.reason = hypervisor.StateRunning, "unpaused"
		d.emitLocked(name, dom, hypervisor.EventResumed, "unpaused")
		return nil
	}
	return fmt.Errorf("resume %s: %w: domain is %s", name, hypervisor.ErrInvalidState, dom.state)
}

// Reboot implements hypervisor.Driver.
func (d *Driver) Reboot(ctx context.Context, name string) error {
	if !d.caps.Has(hypervisor.CapReboot) {
		return fmt.Errorf("reboot %s: %w: %s", name, hypervisor.ErrUnsupported, hypervisor.CapReboot)
	}
	dom, release, err := d.job(ctx, OpReboot, "reboot", name)
	if err != nil {
		return err
	}
	defer release()
	d.mu.Lock()
	defer d.mu.Unlock()
	if dom.state != hypervisor.StateRunning {
		return fmt.Errorf("reboot %s: %w: domain is %s", name, hypervisor.ErrInvalidState, dom.state)
	}
	dom.reason = "booted"
	return nil
}

// Undefine implements hypervisor.Driver.
func (d *Driver) Undefine(ctx context.Context, name string) error {
	dom, release, err := d.job(ctx, OpUndefine, "undefine", name)
	if err != nil {
		return err
	}
	defer release()
	d.mu.Lock()
	defer d.mu.Unlock()
	if dom.state.Active() {
		return fmt.Errorf("undefine %s: %w: domain is %s: destroy it first", name, hypervisor.ErrInvalidState, dom.state)
	}
	dom.gone = true
	delete(d.domains, name)
	d.emitLocked(name, dom, hypervisor.EventUndefined, "removed")
	return nil
}

// List implements hypervisor.Driver.
func (d *Driver) List(ctx context.Context) ([]hypervisor.DomainInfo, error) {
	if err := d.enter(ctx, OpList, "list"); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]hypervisor.DomainInfo, 0, len(d.domains))
	for name, dom := range d.domains {
		out = append(out, dom.info(name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get implements hypervisor.Driver.
func (d *Driver) Get(ctx context.Context, name string) (hypervisor.DomainInfo, error) {
	if err := d.enter(ctx, OpGet, "get "+name); err != nil {
		return hypervisor.DomainInfo{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, ok := d.domains[name]
	if !ok {
		return hypervisor.DomainInfo{}, fmt.Errorf("get %s: %w", name, hypervisor.ErrNotFound)
	}
	return dom.info(name), nil
}

// Stats implements hypervisor.Driver.
func (d *Driver) Stats(ctx context.Context) (hypervisor.HostStats, error) {
	if err := d.enter(ctx, OpStats, "stats"); err != nil {
		return hypervisor.HostStats{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := hypervisor.HostStats{CPUs: d.opts.CPUs, MemoryMiB: d.opts.MemoryMiB, Domains: len(d.domains)}
	for _, dom := range d.domains {
		if dom.state.Active() {
			s.ActiveDomains++
			s.AllocatedCPUs += dom.cpus
			s.AllocatedMemoryMiB += dom.memMiB
		}
	}
	return s, nil
}

// ---- internals ----------------------------------------------------------------

func newDomain(spec hypervisor.DomainSpec, kumoi bool) *domain {
	return &domain{
		spec: spec, kumoi: kumoi,
		state: hypervisor.StateShutoff, reason: "unknown",
		job: make(chan struct{}, 1), stopped: make(chan struct{}),
	}
}

func (dom *domain) info(name string) hypervisor.DomainInfo {
	in := hypervisor.DomainInfo{
		Name: name, State: dom.state, Reason: dom.reason, Kumoi: dom.kumoi,
		CPUs: dom.spec.CPUs, MemoryMiB: dom.spec.MemoryMiB,
		Disks: slices.Clone(dom.spec.Disks), NICs: slices.Clone(dom.spec.NICs),
	}
	if dom.kumoi {
		in.VMID, in.Epoch, in.Cluster = dom.spec.VMID, dom.spec.Epoch, dom.spec.Cluster
	}
	if dom.state.Active() {
		in.CPUs, in.MemoryMiB = dom.cpus, dom.memMiB
		in.Disks, in.NICs = slices.Clone(dom.live.Disks), slices.Clone(dom.live.NICs)
	}
	return in
}

// enter runs the checks every call starts with: closed, cut off, faults.
func (d *Driver) enter(ctx context.Context, op Op, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return fmt.Errorf("%s: %w: %w", what, hypervisor.ErrUnavailable, hypervisor.ErrClosed)
	}
	if d.unavailable {
		d.mu.Unlock()
		return fmt.Errorf("%s: %w: simulated connection cut", what, hypervisor.ErrUnavailable)
	}
	f := d.faults[op]
	if f == nil {
		d.mu.Unlock()
		return nil
	}
	fe := f.Err
	if fe == nil {
		fe = fmt.Errorf("%w: injected fault", hypervisor.ErrUnavailable)
	}
	hang, reset := f.Hang, d.faultsReset
	if f.Times > 0 {
		if f.Times--; f.Times == 0 {
			delete(d.faults, op)
		}
	}
	d.mu.Unlock()
	if hang {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-reset:
		case <-d.done:
		}
	}
	return fmt.Errorf("%s: %w", what, fe)
}

// job enters op and takes the named domain's job lock, as libvirt
// serializes state changes of one domain.
func (d *Driver) job(ctx context.Context, op Op, what, name string) (*domain, func(), error) {
	what = what + " " + name
	if err := d.enter(ctx, op, what); err != nil {
		return nil, nil, err
	}
	for {
		d.mu.Lock()
		dom, ok := d.domains[name]
		d.mu.Unlock()
		if !ok {
			return nil, nil, fmt.Errorf("%s: %w", what, hypervisor.ErrNotFound)
		}
		select {
		case dom.job <- struct{}{}:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%s: waiting for another operation: %w", what, ctx.Err())
		case <-d.done:
			return nil, nil, fmt.Errorf("%s: %w: %w", what, hypervisor.ErrUnavailable, hypervisor.ErrClosed)
		}
		d.mu.Lock()
		gone := dom.gone
		d.mu.Unlock()
		if gone { // undefined (and maybe redefined) while we waited
			<-dom.job
			continue
		}
		return dom, func() { <-dom.job }, nil
	}
}

func (d *Driver) wait(ctx context.Context, dur time.Duration) error {
	if dur <= 0 {
		return nil
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-d.done:
		return fmt.Errorf("%w: %w", hypervisor.ErrUnavailable, hypervisor.ErrClosed)
	}
}

func (d *Driver) runLocked(name string, dom *domain) {
	dom.state, dom.reason = hypervisor.StateRunning, "booted"
	dom.cpus, dom.memMiB = dom.spec.CPUs, dom.spec.MemoryMiB
	dom.live = dom.spec
	dom.stopped = make(chan struct{})
	d.emitLocked(name, dom, hypervisor.EventStarted, "booted")
}

func (d *Driver) stopLocked(name string, dom *domain, reason string) {
	if dom.timer != nil {
		dom.timer.Stop()
		dom.timer = nil
	}
	dom.state, dom.reason = hypervisor.StateShutoff, reason
	dom.cpus, dom.memMiB = 0, 0
	dom.live = hypervisor.DomainSpec{}
	close(dom.stopped)
	d.obs.Stop(name, dom.spec.VMID, dom.spec.Epoch, reason)
	d.emitLocked(name, dom, hypervisor.EventStopped, reason)
}

func (d *Driver) emitLocked(name string, dom *domain, kind hypervisor.EventKind, reason string) {
	if d.unavailable {
		return
	}
	e := hypervisor.Event{Time: d.opts.Now(), Kind: kind, Domain: name, Reason: reason}
	if dom.kumoi {
		e.VMID, e.Epoch = dom.spec.VMID, dom.spec.Epoch
	}
	d.events.Push(e)
}

func (d *Driver) emit(e hypervisor.Event) {
	e.Time = d.opts.Now()
	d.events.Push(e)
}
