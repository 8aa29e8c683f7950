//go:build libvirt_dlopen

package libvirt

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	lv "libvirt.org/go/libvirt"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/internal/driverutil"
)

// Driver manages the domains behind one libvirt connection. It implements
// hypervisor.Driver.
type Driver struct {
	opts   Options
	uri    string
	log    hclog.Logger
	caps   hypervisor.Capabilities
	events *driverutil.Queue
	obs    *driverutil.Observer
	dial   func(uri string) (*lv.Connect, error)

	mu      sync.Mutex
	conn    *lv.Connect // nil while disconnected
	cbID    int         // lifecycle callback on conn
	gen     uint64      // bumped per connection
	lastErr error       // why there is no connection
	stale   []staleConn // lost connections for the reconnect loop to release
	tags    map[string]tag
	domType string
	closed  bool

	rawMu     sync.Mutex
	raw       []rawEvent
	rawClosed bool
	rawWake   chan struct{}

	wake chan struct{} // reconnect now
	done chan struct{}
	wg   sync.WaitGroup

	// netMu and poolMu serialise Kumoi's changes to networks and to the
	// storage pool (a check-then-act on one network or volume).
	netMu, poolMu sync.Mutex

	// obsLocks serialise, per domain, a power change with its record in
	// the observation log, and an event's state check with its record, so
	// that a late event cannot slip its record in after a newer change.
	obsLocks [64]sync.Mutex
}

// obsLock locks the observation shard of a domain and returns its unlock.
func (d *Driver) obsLock(name string) func() {
	h := fnv.New32a()
	h.Write([]byte(name))
	m := &d.obsLocks[h.Sum32()%uint32(len(d.obsLocks))]
	m.Lock()
	return m.Unlock
}

var (
	_ hypervisor.Driver   = (*Driver)(nil)
	_ hypervisor.Migrator = (*Driver)(nil)
)

// New loads libvirt, starts its event loop (once per process) and connects
// to opts.URI. It fails only when libvirt itself cannot be loaded. A
// connection that cannot be opened is retried in the background: until it
// succeeds, Health and every call return ErrUnavailable with the cause.
func New(opts Options) (*Driver, error) {
	if opts.URI == "" {
		opts.URI = "qemu:///system"
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	if opts.ReconnectMin <= 0 {
		opts.ReconnectMin = 100 * time.Millisecond
	}
	if opts.ReconnectMax < opts.ReconnectMin {
		opts.ReconnectMax = 5 * time.Second
	}
	if opts.KeepAliveInterval <= 0 {
		opts.KeepAliveInterval = 5
	}
	if opts.StorageDir == "" {
		opts.StorageDir = hypervisor.DefaultStorageDir
	}
	if opts.KeepAliveCount == 0 {
		opts.KeepAliveCount = 3
	}
	if opts.MigrationURI == "" {
		opts.MigrationURI = defaultMigrationURI(opts.URI)
	} else if err := checkMigrationURI(opts.MigrationURI); err != nil {
		return nil, fmt.Errorf("libvirt: %w", err)
	}
	if opts.MigrationAddress != "" {
		a, err := normalMigrationAddress(opts.MigrationAddress)
		if err != nil {
			return nil, fmt.Errorf("libvirt: %w", err)
		}
		opts.MigrationAddress = a
	}
	lg := opts.Logger
	if lg == nil {
		lg = hclog.NewNullLogger()
	}
	if err := startEventLoop(); err != nil {
		return nil, fmt.Errorf("libvirt: %w: cannot load libvirt.so.0 or start its event loop: %s",
			hypervisor.ErrUnavailable, message(err))
	}
	d := &Driver{
		opts:    opts,
		uri:     opts.URI,
		log:     lg.Named("libvirt"),
		caps:    capabilitiesFor(opts.URI, opts.MigrationURI),
		events:  driverutil.NewQueue(opts.EventBuffer),
		obs:     driverutil.NewObserver(opts.ObservationLog, opts.Host),
		dial:    lv.NewConnect,
		tags:    map[string]tag{},
		domType: opts.DomainType,
		rawWake: make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	d.start()
	return d, nil
}

func (d *Driver) start() {
	if err := d.connect(); err != nil {
		d.mu.Lock()
		d.lastErr = err
		d.mu.Unlock()
		d.log.Warn("cannot connect, will retry", "uri", d.uri, "error", err)
		d.wake <- struct{}{}
	}
	d.wg.Add(2)
	go d.reconnectLoop()
	go d.processEvents()
}

// capabilitiesFor is what the driver behind a URI honours. QEMU does
// everything Kumoi asks (live migration only with a migration URI peers can
// use: migrationURI); the test driver all but resizing volumes and live
// migration; for others only the basics are claimed.
func capabilitiesFor(uri, migrationURI string) hypervisor.Capabilities {
	scheme, _, _ := strings.Cut(uri, ":")
	scheme, _, _ = strings.Cut(scheme, "+")
	without := func(drop ...hypervisor.Capability) hypervisor.Capabilities {
		var cs []hypervisor.Capability
		for _, c := range hypervisor.AllCapabilities {
			if !slices.Contains(drop, c) {
				cs = append(cs, c)
			}
		}
		return hypervisor.NewCapabilities(cs...)
	}
	switch scheme {
	case "qemu":
		if migrationURI == "" {
			return without(hypervisor.CapLiveMigration)
		}
		return hypervisor.NewCapabilities(hypervisor.AllCapabilities...)
	case "test":
		// The test driver cannot resize a volume (virStorageVolResize is
		// not implemented there) nor migrate a domain (no
		// virDomainMigrate*).
		return without(hypervisor.CapVolumeResize, hypervisor.CapLiveMigration)
	}
	return hypervisor.NewCapabilities(hypervisor.CapEvents, hypervisor.CapDiskBoot)
}

// URI is the connection URI.
func (d *Driver) URI() string { return d.uri }

// Capabilities implements hypervisor.Driver.
func (d *Driver) Capabilities() hypervisor.Capabilities { return d.caps }

// Events implements hypervisor.Driver.
func (d *Driver) Events() <-chan hypervisor.Event { return d.events.C() }

// Health implements hypervisor.Driver: the connection is alive and answers
// virConnectGetVersion and virNodeGetInfo.
func (d *Driver) Health(ctx context.Context) error {
	c, gen, release, err := d.acquireCtx(ctx, "health")
	if err != nil {
		return err
	}
	defer release()
	alive, err := c.IsAlive()
	if err == nil && !alive {
		err = fmt.Errorf("connection is not alive")
	}
	if err == nil {
		_, err = c.GetVersion()
	}
	if err == nil {
		_, err = c.GetNodeInfo()
	}
	if err != nil {
		d.lost(gen, fmt.Errorf("health check: %s", message(err)))
		return fmt.Errorf("health: %w: %s", hypervisor.ErrUnavailable, message(err))
	}
	return nil
}

// Close implements hypervisor.Driver. Domains keep running.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	conn, cbID := d.conn, d.cbID
	d.conn = nil
	stale := d.stale
	d.stale = nil
	d.mu.Unlock()
	close(d.done)
	d.wg.Wait()
	d.rawMu.Lock()
	d.rawClosed, d.raw = true, nil
	d.rawMu.Unlock()
	for _, s := range stale {
		s.release()
	}
	if conn != nil {
		staleConn{conn, cbID}.release()
	}
	d.events.Close()
	return d.obs.Err()
}

// Define implements hypervisor.Driver.
func (d *Driver) Define(ctx context.Context, spec hypervisor.DomainSpec) error {
	what := "define " + spec.Name
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, c := range spec.Boot.Needs() {
		if !d.caps.Has(c) {
			return fmt.Errorf("%s: %w: %s", what, hypervisor.ErrUnsupported, c)
		}
	}
	c, gen, release, err := d.acquire(what)
	if err != nil {
		return err
	}
	defer release()
	d.mu.Lock()
	domType := d.domType
	d.mu.Unlock()

	uuid := ""
	dom, err := c.LookupDomainByName(spec.Name)
	switch {
	case err == nil:
		defer dom.Free()
		cfg, err := dom.GetXMLDesc(lv.DOMAIN_XML_INACTIVE)
		if err != nil {
			return d.fail(c, gen, what, err)
		}
		cur, err := parseDomainXML(cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !cur.tag.ok() {
			return fmt.Errorf("%s: %w: the name belongs to a foreign domain", what, hypervisor.ErrExists)
		}
		if cur.tag.VMID != spec.VMID {
			return fmt.Errorf("%s: %w: the name belongs to VM %s", what, hypervisor.ErrExists, cur.tag.VMID)
		}
		if !cur.spec().Equal(spec) {
			x, err := domainXML(spec, domType, cur.uuid, d.opts.ConsoleLogDir)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			nd, err := c.DomainDefineXML(x)
			if err != nil {
				return d.fail(c, gen, what, err)
			}
			nd.Free()
		}
		// The definition applies at the next start; the tag applies now.
		if active, err := dom.IsActive(); err == nil && active {
			live, err := dom.GetMetadata(lv.DOMAIN_METADATA_ELEMENT, Namespace, lv.DOMAIN_AFFECT_LIVE)
			if err != nil && !isCode(err, lv.ERR_NO_DOMAIN_METADATA) {
				return d.fail(c, gen, what, err)
			}
			want := tagOf(spec)
			if lt := parseTag(live); lt != want {
				m, err := want.marshal()
				if err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				if err := dom.SetMetadata(lv.DOMAIN_METADATA_ELEMENT, m, MetadataKey, Namespace, lv.DOMAIN_AFFECT_LIVE); err != nil {
					return d.fail(c, gen, what+": retag running domain", err)
				}
			}
		}
	case isCode(err, lv.ERR_NO_DOMAIN):
		x, err := domainXML(spec, domType, uuid, d.opts.ConsoleLogDir)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		nd, err := c.DomainDefineXML(x)
		if err != nil {
			return d.fail(c, gen, what, err)
		}
		nd.Free()
	default:
		return d.fail(c, gen, what, err)
	}
	d.rememberTag(spec.Name, tagOf(spec))
	return nil
}

// withDomain runs f on the named domain with its current state.
func (d *Driver) withDomain(ctx context.Context, op, name string,
	f func(c *lv.Connect, gen uint64, dom *lv.Domain, st hypervisor.State, what string) error) error {
	what := op + " " + name
	c, gen, release, err := d.acquireCtx(ctx, what)
	if err != nil {
		return err
	}
	defer release()
	dom, err := c.LookupDomainByName(name)
	if err != nil {
		return d.fail(c, gen, what, err)
	}
	defer dom.Free()
	s, r, err := dom.GetState()
	if err != nil {
		return d.fail(c, gen, what, err)
	}
	st, _ := state(s, r)
	return f(c, gen, dom, st, what)
}

func (d *Driver) stateOf(dom *lv.Domain) (hypervisor.State, string, error) {
	s, r, err := dom.GetState()
	if err != nil {
		return hypervisor.StateUnknown, "", err
	}
	st, reason := state(s, r)
	return st, reason, nil
}

// Start implements hypervisor.Driver.
func (d *Driver) Start(ctx context.Context, name string) error {
	return d.withDomain(ctx, "start", name, func(c *lv.Connect, gen uint64, dom *lv.Domain, st hypervisor.State, what string) error {
		switch st {
		case hypervisor.StateRunning, hypervisor.StateShuttingDown:
			return nil
		case hypervisor.StatePaused, hypervisor.StatePMSuspended:
			return fmt.Errorf("%s: %w: domain is %s: resume it", what, hypervisor.ErrInvalidState, st)
		}
		t := d.lookupTag(name)
		defer d.obsLock(name)()
		d.obs.Start(name, t.VMID, t.Epoch, "start")
		if err := dom.Create(); err != nil {
			if now, _, serr := d.stateOf(dom); serr == nil && now == hypervisor.StateRunning {
				return nil // started meanwhile
			}
			d.obs.Stop(name, t.VMID, t.Epoch, "start failed")
			return d.fail(c, gen, what, err)
		}
		return nil
	})
}

// Destroy implements hypervisor.Driver.
func (d *Driver) Destroy(ctx context.Context, name string) error {
	return d.withDomain(ctx, "destroy", name, func(c *lv.Connect, gen uint64, dom *lv.Domain, st hypervisor.State, what string) error {
		return d.destroy(c, gen, dom, name, st, what)
	})
}

func (d *Driver) destroy(c *lv.Connect, gen uint64, dom *lv.Domain, name string, st hypervisor.State, what string) error {
	if !st.Active() {
		return nil
	}
	t := d.lookupTag(name)
	defer d.obsLock(name)()
	if err := dom.Destroy(); err != nil {
		if now, _, serr := d.stateOf(dom); serr == nil && !now.Active() {
			return nil // stopped meanwhile
		}
		return d.fail(c, gen, what, err)
	}
	d.obs.Stop(name, t.VMID, t.Epoch, "destroyed")
	return nil
}

// Shutdown implements hypervisor.Driver.
func (d *Driver) Shutdown(ctx context.Context, name string, grace time.Duration) error {
	return d.withDomain(ctx, "shutdown", name, func(c *lv.Connect, gen uint64, dom *lv.Domain, st hypervisor.State, what string) error {
		if !st.Active() {
			return nil
		}
		if grace <= 0 || !d.caps.Has(hypervisor.CapGracefulShutdown) ||
			st == hypervisor.StatePaused || st == hypervisor.StatePMSuspended {
			return d.destroy(c, gen, dom, name, st, what)
		}
		if err := dom.Shutdown(); err != nil {
			if now, _, serr := d.stateOf(dom); serr == nil && !now.Active() {
				return nil
			}
			return d.fail(c, gen, what, err)
		}
		deadline := time.NewTimer(grace)
		defer deadline.Stop()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			now, _, err := d.stateOf(dom)
			if err != nil {
				return d.fail(c, gen, what, err)
			}
			if !now.Active() {
				t := d.lookupTag(name)
				unlock := d.obsLock(name)
				if now, _, err := d.stateOf(dom); err == nil && !now.Active() {
					d.obs.Stop(name, t.VMID, t.Epoch, "shut down")
				}
				unlock()
				return nil
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return fmt.Errorf("%s: %w", what, ctx.Err())
			case <-deadline.C:
				d.log.Debug("shutdown grace expired, destroying", "domain", name, "grace", grace)
				return d.destroy(c, gen, dom, name, now, what)
			}
		}
	})
}

// Suspend implements hypervisor.Driver.
func (d *Driver) Suspend(ctx context.Context, name string) error {
	if !d.caps.Has(hypervisor.CapSuspend) {
		return fmt.Errorf("suspend %s: %w: %s", name, hypervisor.ErrUnsupported, hypervisor.CapSuspend)
	}
	return d.withDomain(ctx, "suspend", name, func(c *lv.Connect, gen uint64, dom *lv.Domain, st hypervisor.State, what string) error {
		switch st {
		case hypervisor.StatePaused:
			return nil
		case hypervisor.StateRunning:
			if err := dom.Suspend(); err != nil {
				return d.fail(c, gen, what, err)
			}
			return nil
		}
		return fmt.Errorf("%s: %w: domain is %s", what, hypervisor.ErrInvalidState, st)
	})
}

// Resume implements hypervisor.Driver.
func (d *Driver) Resume(ctx context.Context, name string) error {
	if !d.caps.Has(hypervisor.CapSuspend) {
		return fmt.Errorf("resume %s: %w: %s", name, hypervisor.ErrUnsupported, hypervisor.CapSuspend)
	}
	return d.withDomain(ctx, "resume", name, func(c *lv.Connect, gen uint64, dom *lv.Domain, st hypervisor.State, what string) error {
		switch st {
		case hypervisor.StateRunning:
			return nil
		case hypervisor.StatePaused:
			if err := dom.Resume(); err != nil {
				return d.fail(c, gen, what, err)
			}
			return nil
		}
		return fmt.Errorf("%s: %w: domain is %s", what, hypervisor.ErrInvalidState, st)
	})
}

// Reboot implements hypervisor.Driver.
func (d *Driver) Reboot(ctx context.Context, name string) error {
	if !d.caps.Has(hypervisor.CapReboot) {
		return fmt.Errorf("reboot %s: %w: %s", name, hypervisor.ErrUnsupported, hypervisor.CapReboot)
	}
	return d.withDomain(ctx, "reboot", name, func(c *lv.Connect, gen uint64, dom *lv.Domain, st hypervisor.State, what string) error {
		if st != hypervisor.StateRunning {
			return fmt.Errorf("%s: %w: domain is %s", what, hypervisor.ErrInvalidState, st)
		}
		if err := dom.Reboot(0); err != nil {
			return d.fail(c, gen, what, err)
		}
		return nil
	})
}

// Undefine implements hypervisor.Driver.
func (d *Driver) Undefine(ctx context.Context, name string) error {
	return d.withDomain(ctx, "undefine", name, func(c *lv.Connect, gen uint64, dom *lv.Domain, st hypervisor.State, what string) error {
		if st.Active() {
			return fmt.Errorf("%s: %w: domain is %s: destroy it first", what, hypervisor.ErrInvalidState, st)
		}
		t := d.lookupTag(name)
		err := dom.UndefineFlags(lv.DOMAIN_UNDEFINE_MANAGED_SAVE | lv.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
		if isCode(err, lv.ERR_INVALID_ARG, lv.ERR_NO_SUPPORT) {
			err = dom.Undefine()
		}
		if err != nil {
			return d.fail(c, gen, what, err)
		}
		if t.ok() {
			d.rememberTag(name, t) // for the undefined event, which drops it
		}
		return nil
	})
}

// List implements hypervisor.Driver.
func (d *Driver) List(ctx context.Context) ([]hypervisor.DomainInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	return d.list("list")
}

func (d *Driver) list(what string) ([]hypervisor.DomainInfo, error) {
	c, gen, release, err := d.acquire(what)
	if err != nil {
		return nil, err
	}
	defer release()
	doms, err := c.ListAllDomains(0)
	if err != nil {
		return nil, d.fail(c, gen, what, err)
	}
	out := make([]hypervisor.DomainInfo, 0, len(doms))
	var firstErr error
	for i := range doms {
		in, err := d.inspect(&doms[i])
		doms[i].Free()
		switch {
		case err == nil:
			out = append(out, in)
		case isCode(err, lv.ERR_NO_DOMAIN): // vanished meanwhile
		case firstErr == nil:
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, d.fail(c, gen, what, firstErr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// inspect reads one domain: state, and from its XML (live if active) the
// size and the Kumoi tag.
func (d *Driver) inspect(dom *lv.Domain) (hypervisor.DomainInfo, error) {
	st, reason, err := d.stateOf(dom)
	if err != nil {
		return hypervisor.DomainInfo{}, err
	}
	x, err := dom.GetXMLDesc(0)
	if err != nil {
		return hypervisor.DomainInfo{}, err
	}
	p, err := parseDomainXML(x)
	if err != nil {
		return hypervisor.DomainInfo{}, err
	}
	if p.tag.ok() {
		d.rememberTag(p.name, p.tag)
	}
	return hypervisor.DomainInfo{
		Name: p.name, VMID: p.tag.VMID, Epoch: p.tag.Epoch, Kumoi: p.tag.ok(), Cluster: p.tag.Cluster,
		State: st, Reason: reason, CPUs: p.cpus, MemoryMiB: p.memoryMiB, Disks: p.disks, NICs: p.nics,
	}, nil
}

// Get implements hypervisor.Driver.
func (d *Driver) Get(ctx context.Context, name string) (hypervisor.DomainInfo, error) {
	var in hypervisor.DomainInfo
	err := d.withDomain(ctx, "get", name, func(c *lv.Connect, gen uint64, dom *lv.Domain, _ hypervisor.State, what string) error {
		var err error
		if in, err = d.inspect(dom); err != nil {
			return d.fail(c, gen, what, err)
		}
		return nil
	})
	return in, err
}

// Stats implements hypervisor.Driver: capacity from virNodeGetInfo (or the
// Options override), allocation from every active domain's live size.
func (d *Driver) Stats(ctx context.Context) (hypervisor.HostStats, error) {
	if err := ctx.Err(); err != nil {
		return hypervisor.HostStats{}, fmt.Errorf("stats: %w", err)
	}
	var s hypervisor.HostStats
	if d.opts.CPUs > 0 && d.opts.MemoryMiB > 0 {
		s.CPUs, s.MemoryMiB = d.opts.CPUs, d.opts.MemoryMiB
	} else {
		c, gen, release, err := d.acquire("stats")
		if err != nil {
			return s, err
		}
		ni, err := c.GetNodeInfo()
		if err != nil {
			err = d.fail(c, gen, "stats", err)
		}
		release()
		if err != nil {
			return s, err
		}
		s.CPUs, s.MemoryMiB = int(ni.Cpus), int64(ni.Memory/1024)
		if d.opts.CPUs > 0 {
			s.CPUs = d.opts.CPUs
		}
		if d.opts.MemoryMiB > 0 {
			s.MemoryMiB = d.opts.MemoryMiB
		}
	}
	list, err := d.list("stats")
	if err != nil {
		return hypervisor.HostStats{}, err
	}
	s.Domains = len(list)
	for _, in := range list {
		if in.State.Active() {
			s.ActiveDomains++
			s.AllocatedCPUs += in.CPUs
			s.AllocatedMemoryMiB += in.MemoryMiB
		}
	}
	return s, nil
}
