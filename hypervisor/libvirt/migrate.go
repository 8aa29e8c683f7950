//go:build libvirt_dlopen

package libvirt

// Live migration: hypervisor.Migrator on libvirt's peer-to-peer
// migration. The source's libvirtd connects to the target's (the libvirt
// URI PrepareIncoming returns) and runs the whole protocol, prepare on the
// target included; the Kumoi driver on the target only says where to go
// and looks at what arrived.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kumoi/kumoi/hypervisor"
)

// Bounds of MigrateOut's waits after the migration call itself.
var (
	// abortWait: how long a cancelled migration may take to end after
	// virDomainAbortJob before the outcome counts as unknown.
	abortWait = 60 * time.Second
	// statsWait: how long a finished migration waits for its
	// job-completed event (the downtime).
	statsWait = 2 * time.Second
)

// needMigration fails with ErrUnsupported when the driver cannot migrate.
func (d *Driver) needMigration(what string) error {
	if d.caps.Has(hypervisor.CapLiveMigration) {
		return nil
	}
	why := "the connection's driver cannot migrate domains"
	if d.opts.MigrationURI == "" && capabilitiesFor(d.uri, "qemu+tcp://peer/system").Has(hypervisor.CapLiveMigration) {
		why = "no migration URI: set Options.MigrationURI (--migration-uri qemu+tcp://HOST/system)"
	}
	return fmt.Errorf("%s: %w: %s (%s)", what, hypervisor.ErrUnsupported, hypervisor.CapLiveMigration, why)
}

// storagePlan is what a migration copies of a domain's storage.
type storagePlan struct {
	// Copy is MigrateOptions.CopyStorage.
	Copy bool
	// Disks are the target names (vdb, vdc, ...) of the domain's volumes,
	// the disks a storage copy copies. The boot image (vda) is not among
	// them: it is an image of the host's image directory, which the target
	// has (or shared storage).
	Disks []string
	// Overlays: every one of Disks is a qcow2 overlay here (it has a
	// backing file).
	Overlays bool
	// TargetBacking: the target said its volumes are overlays whose
	// backing files exist there (the URI's backing=1).
	TargetBacking bool
}

// migrateFlags are the flags of virDomainMigrateToURI3 for a plan:
// a live peer-to-peer migration that persists the domain on the target,
// undefines it here and aborts on an I/O error; with a storage copy of
// volumes, incremental (NON_SHARED_INC: the top layer only) when the
// volumes are overlays here and their backing files exist on the target,
// else full (NON_SHARED_DISK).
func migrateFlags(p storagePlan) lv.DomainMigrateFlags {
	f := lv.MIGRATE_LIVE | lv.MIGRATE_PEER2PEER | lv.MIGRATE_PERSIST_DEST | lv.MIGRATE_UNDEFINE_SOURCE | lv.MIGRATE_ABORT_ON_ERROR
	if p.Copy && len(p.Disks) > 0 {
		if p.Overlays && p.TargetBacking {
			f |= lv.MIGRATE_NON_SHARED_INC
		} else {
			f |= lv.MIGRATE_NON_SHARED_DISK
		}
	}
	return f
}

// migrateParams are the typed parameters of the migration.
func migrateParams(t migrationTarget, opts hypervisor.MigrateOptions, p storagePlan) *lv.DomainMigrateParameters {
	params := &lv.DomainMigrateParameters{}
	if t.DataURI != "" {
		params.URISet, params.URI = true, t.DataURI
	}
	if t.Listen != "" {
		params.ListenAddressSet, params.ListenAddress = true, t.Listen
	}
	if opts.BandwidthMiBs > 0 {
		params.BandwidthSet, params.Bandwidth = true, uint64(opts.BandwidthMiBs)
	}
	if p.Copy && len(p.Disks) > 0 {
		params.MigrateDisksSet, params.MigrateDisks = true, p.Disks
	}
	return params
}

// planStorage reads the volumes of a domain from its live XML.
func (d *Driver) planStorage(c *lv.Connect, domXML string, copyStorage bool, targetBacking bool) (storagePlan, error) {
	p := storagePlan{Copy: copyStorage, TargetBacking: targetBacking, Overlays: true}
	var x libvirtxml.Domain
	if err := x.Unmarshal(domXML); err != nil {
		return p, fmt.Errorf("parse domain XML: %w", err)
	}
	if x.Devices == nil {
		p.Overlays = false
		return p, nil
	}
	for _, disk := range x.Devices.Disks {
		if !(disk.Device == "" || disk.Device == "disk") || disk.Source == nil || disk.Source.File == nil ||
			disk.Target == nil || diskIndex(disk.Target.Dev) <= 0 || disk.ReadOnly != nil {
			continue
		}
		p.Disks = append(p.Disks, disk.Target.Dev)
		backed := disk.BackingStore != nil && disk.BackingStore.Source != nil &&
			disk.BackingStore.Source.File != nil && disk.BackingStore.Source.File.File != ""
		if !backed {
			// The live XML may not show the chain: ask the pool.
			in, ok, err := poolVolume(c, disk.Source.File.File)
			if err != nil {
				return p, err
			}
			backed = ok && in.Backing != ""
		}
		p.Overlays = p.Overlays && backed
	}
	if len(p.Disks) == 0 {
		p.Overlays = false
	}
	return p, nil
}

// poolVolume is the storage volume at path, if a pool has one there.
func poolVolume(c *lv.Connect, path string) (hypervisor.VolumeInfo, bool, error) {
	v, err := c.LookupStorageVolByPath(path)
	if isCode(err, lv.ERR_NO_STORAGE_VOL, lv.ERR_NO_STORAGE_POOL, lv.ERR_NO_SUPPORT) {
		return hypervisor.VolumeInfo{}, false, nil
	}
	if err != nil {
		return hypervisor.VolumeInfo{}, false, err
	}
	defer v.Free()
	in, err := volumeInfo(v)
	if err != nil {
		return hypervisor.VolumeInfo{}, false, err
	}
	return in, true, nil
}

// backedHere reports whether every path is a pool volume that is a qcow2
// overlay whose backing file exists (a volume or a file on this host).
func backedHere(c *lv.Connect, paths []string) (bool, error) {
	if len(paths) == 0 {
		return false, nil
	}
	for _, path := range paths {
		in, ok, err := poolVolume(c, path)
		if err != nil || !ok || in.Backing == "" {
			return false, err
		}
		if _, ok, err := poolVolume(c, in.Backing); err != nil || ok {
			if err != nil {
				return false, err
			}
			continue
		}
		if _, err := os.Stat(in.Backing); err != nil {
			return false, nil
		}
	}
	return true, nil
}

// PrepareIncoming implements hypervisor.Migrator. In a peer-to-peer
// migration libvirt prepares the target itself (the source's libvirtd
// calls this host's): this checks that nothing here is in the way, makes
// way for the domain if an inactive definition of the same VM is left
// here from an earlier stay (libvirt would refuse a persistent domain of
// the same name with another UUID), and returns the URI (migrateuri.go)
// with the libvirt URI (Options.MigrationURI), the data address
// (Options.MigrationAddress) and whether the volumes here are overlays on
// backing files that exist (an incremental storage copy suffices). A
// domain of the same VM that is active here is one arriving or arrived:
// the URI again.
func (d *Driver) PrepareIncoming(ctx context.Context, spec hypervisor.DomainSpec) (string, error) {
	what := "prepare incoming " + spec.Name
	if err := d.needMigration(what); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if err := spec.Validate(); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	for _, cp := range spec.Boot.Needs() {
		if !d.caps.Has(cp) {
			return "", fmt.Errorf("%s: %w: %s", what, hypervisor.ErrUnsupported, cp)
		}
	}
	c, gen, release, err := d.acquire(what)
	if err != nil {
		return "", err
	}
	defer release()
	leftover, err := d.checkIncoming(c, gen, spec, what)
	if err != nil {
		return "", err
	}
	if leftover {
		d.log.Info("undefining an inactive definition of the arriving VM", "domain", spec.Name, "vm", spec.VMID)
		if err := d.Undefine(ctx, spec.Name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			return "", fmt.Errorf("%s: %w", what, err)
		}
	}
	paths := make([]string, len(spec.Disks))
	for i, dk := range spec.Disks {
		paths[i] = dk.Path
	}
	backing, err := backedHere(c, paths)
	if err != nil {
		return "", d.fail(c, gen, what+": volumes", err)
	}
	uri, err := migrationTarget{LibvirtURI: d.opts.MigrationURI, DataURI: d.opts.MigrationAddress,
		Listen: listenIP(d.opts.MigrationAddress), Backing: backing}.encode()
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return uri, nil
}

// checkIncoming looks at what has the arriving domain's name here: nothing
// or the same VM (leftover: an inactive definition to remove), or a
// refusal (ErrExists).
func (d *Driver) checkIncoming(c *lv.Connect, gen uint64, spec hypervisor.DomainSpec, what string) (leftover bool, err error) {
	dom, err := c.LookupDomainByName(spec.Name)
	if isCode(err, lv.ERR_NO_DOMAIN) {
		return false, nil
	}
	if err != nil {
		return false, d.fail(c, gen, what, err)
	}
	defer dom.Free()
	x, err := dom.GetXMLDesc(0)
	if err != nil {
		return false, d.fail(c, gen, what, err)
	}
	p, err := parseDomainXML(x)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case !p.tag.ok():
		return false, fmt.Errorf("%s: %w: the name belongs to a foreign domain", what, hypervisor.ErrExists)
	case p.tag.VMID != spec.VMID:
		return false, fmt.Errorf("%s: %w: the name belongs to VM %s", what, hypervisor.ErrExists, p.tag.VMID)
	}
	active, err := dom.IsActive()
	if err != nil {
		return false, d.fail(c, gen, what, err)
	}
	return !active, nil
}

// MigrateOut implements hypervisor.Migrator: virDomainMigrateToURI3 to the
// libvirt URI in uri, peer to peer, live, persisting the domain on the
// target and undefining it here (migrateFlags), with the data URI, the
// bandwidth and (virDomainMigrateSetMaxDowntime) the downtime bound. ctx
// cancelled aborts it (virDomainAbortJob). The downtime is the one of the
// job-completed event, when libvirt sends it. An error with the guest
// running here is a failed migration (libvirt rolled back); an error with
// the connection gone, or with the domain gone or not running here, is
// hypervisor.ErrMigrationUnknown.
func (d *Driver) MigrateOut(ctx context.Context, name, uri string, opts hypervisor.MigrateOptions) (hypervisor.MigrateResult, error) {
	what := "migrate " + name
	var res hypervisor.MigrateResult
	if err := d.needMigration(what); err != nil {
		return res, err
	}
	t, err := decodeMigrationTarget(uri)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	c, gen, release, err := d.acquireCtx(ctx, what)
	if err != nil {
		return res, err
	}
	defer release()
	dom, err := c.LookupDomainByName(name)
	if err != nil {
		return res, d.fail(c, gen, what, err)
	}
	defer dom.Free()
	st, _, err := d.stateOf(dom)
	if err != nil {
		return res, d.fail(c, gen, what, err)
	}
	if st != hypervisor.StateRunning && st != hypervisor.StatePaused {
		return res, fmt.Errorf("%s: %w: domain is %s", what, hypervisor.ErrInvalidState, st)
	}
	x, err := dom.GetXMLDesc(0)
	if err != nil {
		return res, d.fail(c, gen, what, err)
	}
	plan, err := d.planStorage(c, x, opts.CopyStorage, t.Backing)
	if err != nil {
		return res, d.fail(c, gen, what, err)
	}
	flags := migrateFlags(plan)
	params := migrateParams(t, opts, plan)
	if opts.MaxDowntime > 0 {
		if err := dom.MigrateSetMaxDowntime(uint64(opts.MaxDowntime.Milliseconds()), 0); err != nil {
			d.log.Warn("cannot bound the migration's downtime", "domain", name, "max_downtime", opts.MaxDowntime, "error", message(err))
		}
	}
	stats := make(chan lv.DomainJobInfo, 1)
	if cb, err := c.DomainEventJobCompletedRegister(dom, func(_ *lv.Connect, _ *lv.Domain, ev *lv.DomainEventJobCompleted) {
		select {
		case stats <- ev.Info:
		default:
		}
	}); err == nil {
		defer func() { _ = c.DomainEventDeregister(cb) }()
	} else {
		d.log.Debug("no job-completed events: the downtime will not be known", "error", message(err))
	}

	// The call blocks until the migration ends; it gets its own reference
	// to the domain, as it may outlive this function (abortWait).
	if err := dom.Ref(); err != nil {
		return res, d.fail(c, gen, what, err)
	}
	start := time.Now()
	d.log.Info("migrating", "domain", name, "to", t.LibvirtURI, "data", t.DataURI, "copy_disks", plan.Disks, "flags", uint64(flags))
	done := make(chan error, 1)
	go func() {
		defer dom.Free()
		done <- dom.MigrateToURI3(t.LibvirtURI, params, flags)
	}()
	var merr error
	select {
	case merr = <-done:
	case <-ctx.Done():
		d.log.Info("aborting migration", "domain", name, "cause", ctx.Err())
		if err := dom.AbortJob(); err != nil {
			d.log.Warn("abort migration", "domain", name, "error", message(err))
		}
		// An abort that came before libvirt could take it (between the
		// migration's phases) is repeated until the migration ends.
		wait := time.NewTimer(abortWait)
		defer wait.Stop()
		again := time.NewTicker(time.Second)
		defer again.Stop()
	aborting:
		for {
			select {
			case merr = <-done:
				break aborting
			case <-again.C:
				if err := dom.AbortJob(); err != nil {
					d.log.Debug("abort migration again", "domain", name, "error", message(err))
				}
			case <-wait.C:
				return res, fmt.Errorf("%s: %w: aborted (%v), and the migration did not end within %v", what, hypervisor.ErrMigrationUnknown, ctx.Err(), abortWait)
			}
		}
		if merr != nil {
			return res, d.migrationFailed(c, gen, name, what, merr, ctx.Err())
		}
		// It finished before the abort took: it succeeded.
	}
	if merr != nil {
		return res, d.migrationFailed(c, gen, name, what, merr, nil)
	}
	wait := time.NewTimer(statsWait)
	defer wait.Stop()
	select {
	case info := <-stats:
		if info.DowntimeSet {
			res.Downtime = time.Duration(info.Downtime) * time.Millisecond
		}
	case <-wait.C:
	case <-ctx.Done():
	}
	d.log.Info("migrated", "domain", name, "to", t.LibvirtURI, "took", time.Since(start).Round(time.Millisecond), "downtime", res.Downtime)
	return res, nil
}

// migrationFailed makes the error of a migration that ended with cause
// (aborted for ctxErr, if set): the guest runs here (libvirt rolled back),
// or the outcome is unknown.
func (d *Driver) migrationFailed(c *lv.Connect, gen uint64, name, what string, cause, ctxErr error) error {
	op := what
	if ctxErr != nil {
		what = fmt.Sprintf("%s: aborted (%v)", what, ctxErr)
	}
	if alive, aerr := c.IsAlive(); aerr != nil || !alive {
		d.lost(gen, fmt.Errorf("%s: %s", what, message(cause)))
		return fmt.Errorf("%s: %w: %w: %s", what, hypervisor.ErrMigrationUnknown, hypervisor.ErrUnavailable, message(cause))
	}
	dom, err := c.LookupDomainByName(name)
	if err != nil {
		return fmt.Errorf("%s: %w: the domain is gone from this host: %s", what, hypervisor.ErrMigrationUnknown, message(cause))
	}
	defer dom.Free()
	st, reason, err := d.stateOf(dom)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w: %s (and its state: %s)", what, hypervisor.ErrMigrationUnknown, message(cause), message(err))
	case st == hypervisor.StateRunning, st == hypervisor.StatePaused && reason == "user":
		if ctxErr != nil {
			return fmt.Errorf("%s: aborted: %w: %s", op, ctxErr, message(cause))
		}
		return d.fail(c, gen, what, cause)
	}
	return fmt.Errorf("%s: %w: the domain is %s (%s) here: %s", what, hypervisor.ErrMigrationUnknown, st, reason, message(cause))
}

// Incoming implements hypervisor.Migrator: the domain is here and runs
// (not paused waiting for the migration's end). A guest that was paused by
// the user on the source arrives paused (reason user): with no job left
// here, it has arrived too.
func (d *Driver) Incoming(ctx context.Context, name string) (bool, error) {
	what := "incoming " + name
	if err := d.needMigration(what); err != nil {
		return false, err
	}
	running := false
	err := d.withDomain(ctx, "incoming", name, func(c *lv.Connect, gen uint64, dom *lv.Domain, st hypervisor.State, what string) error {
		switch st {
		case hypervisor.StateRunning:
			running = true
		case hypervisor.StatePaused:
			_, reason, err := d.stateOf(dom)
			if err != nil {
				return d.fail(c, gen, what, err)
			}
			if reason != "user" {
				return nil
			}
			job, err := dom.GetJobInfo()
			if err != nil {
				return d.fail(c, gen, what, err)
			}
			running = job.Type == lv.DOMAIN_JOB_NONE
		}
		return nil
	})
	if errors.Is(err, hypervisor.ErrNotFound) {
		return false, nil
	}
	return running, err
}

// FinishIncoming implements hypervisor.Migrator. libvirt resumes the guest
// on the target when the migration ends: this checks that it runs, and
// resumes one left paused by the migration (reason migration, no job
// running). A guest the user paused stays paused.
func (d *Driver) FinishIncoming(ctx context.Context, name string) error {
	what := "finish incoming " + name
	if err := d.needMigration(what); err != nil {
		return err
	}
	return d.withDomain(ctx, "finish incoming", name, func(c *lv.Connect, gen uint64, dom *lv.Domain, st hypervisor.State, what string) error {
		switch st {
		case hypervisor.StateRunning, hypervisor.StateShuttingDown:
			return nil
		case hypervisor.StatePaused:
			_, reason, err := d.stateOf(dom)
			if err != nil {
				return d.fail(c, gen, what, err)
			}
			if reason != "migration" && reason != "postcopy" {
				return nil
			}
			job, err := dom.GetJobInfo()
			if err != nil {
				return d.fail(c, gen, what, err)
			}
			if job.Type != lv.DOMAIN_JOB_NONE {
				return fmt.Errorf("%s: %w: the migration has not ended here", what, hypervisor.ErrInvalidState)
			}
			if err := dom.Resume(); err != nil {
				return d.fail(c, gen, what, err)
			}
			return nil
		}
		return fmt.Errorf("%s: %w: domain is %s", what, hypervisor.ErrInvalidState, st)
	})
}

// AbortIncoming implements hypervisor.Migrator: the domain that arrived
// (or is arriving) for a migration that ended is destroyed and undefined.
// libvirt removes an arrival it aborts itself: then this finds nothing.
func (d *Driver) AbortIncoming(ctx context.Context, name string) error {
	what := "abort incoming " + name
	if err := d.needMigration(what); err != nil {
		return err
	}
	if err := d.Destroy(ctx, name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := d.Undefine(ctx, name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
