package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// Migrations of running VMs (the contract is in fsm/migration.go; the
// protocol in docs/scheduling.md, "Live migration"; why no guest runs on
// two hosts in docs/ha.md, "Migrations"). This host is a migration's
// source when the VM's status.host names it, its target when
// status.migration.target does.

// DefaultMigrationTimeout bounds one outgoing migration (MigrateOut, or
// the shutdown of a restart migration).
const DefaultMigrationTimeout = 10 * time.Minute

// outMig is an outgoing migration this worker carries out (source side).
// Its goroutine sets ended and queues the outcome.
type outMig struct {
	id     uint64
	cancel context.CancelFunc
	ended  bool // the goroutine finished (or none ran)
	said   bool // its outcome was queued
}

// inMig is an incoming live migration this host prepared (target side).
type inMig struct {
	id  uint64
	uri string
}

// migrator is the driver's Migrator when it can migrate live.
func (w *Worker) migrator() (hypervisor.Migrator, bool) {
	m, ok := w.drv.(hypervisor.Migrator)
	return m, ok && w.drv.Capabilities().Has(hypervisor.CapLiveMigration)
}

// migrationModes are the modes this worker takes part in (gossip
// metadata): restart always, live with a driver that can.
func (w *Worker) migrationModes() []string {
	if _, ok := w.migrator(); ok {
		return []string{resource.MigrationLive, resource.MigrationRestart}
	}
	return []string{resource.MigrationRestart}
}

// migratingFrom reports whether st is a migration out of this host.
func (w *Worker) migratingFrom(st *resource.VMStatus) bool {
	return st.Migration != nil && st.Host == w.cfg.NodeID
}

// migratingTo reports whether st is a live migration to this host (one
// whose domain this host prepares or has received).
func (w *Worker) migratingTo(st *resource.VMStatus) bool {
	m := st.Migration
	return m != nil && m.Target == w.cfg.NodeID && st.Host != w.cfg.NodeID && m.Mode == resource.MigrationLive
}

// incomingHere returns the VMs migrating live to this host.
func (w *Worker) incomingHere(vms []*resource.Object) []*resource.Object {
	var out []*resource.Object
	for _, o := range vms {
		if st, err := resource.DecodeStatus[resource.VMStatus](o); err == nil && w.migratingTo(st) {
			if _, err := resource.DecodeSpec[resource.VMSpec](o); err == nil {
				out = append(out, o)
			}
		}
	}
	return out
}

// queueMigrationEvent queues e to be sent (an equal one already queued
// is not queued again).
func (w *Worker) queueMigrationEvent(e resource.MigrationEvent) {
	e.Reason = truncate(e.Reason, maxReportReason)
	w.mmu.Lock()
	defer w.mmu.Unlock()
	if !slices.Contains(w.migEvents, e) {
		w.migEvents = append(w.migEvents, e)
	}
}

// sendMigrationEvents sends the queued events: those recorded or refused
// (a refusal: the migration is no longer current) are dropped, the rest
// sent again in the next pass.
func (w *Worker) sendMigrationEvents(ctx context.Context, c *client.Client) {
	w.mmu.Lock()
	events := slices.Clone(w.migEvents)
	w.mmu.Unlock()
	if len(events) == 0 || c == nil {
		return
	}
	res, err := c.ReportMigrations(ctx, w.cfg.NodeID, events)
	if err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) && ae.StatusCode >= 400 && ae.StatusCode < 500 && ae.StatusCode != 401 && ae.StatusCode != 403 && ae.StatusCode != 429 {
			// The whole request refused (a malformed event): dropped,
			// else it would block every later one.
			w.logger.Warn("migration events refused", "error", err)
		} else {
			w.logger.Debug("cannot send migration events; retrying", "error", err)
			return
		}
	} else {
		for i, r := range res.Results {
			if i >= len(events) {
				break
			}
			e := events[i]
			if r.Error != nil {
				w.logger.Info("migration event refused (the migration is no longer under way)", "vm", e.VM, "id", e.ID, "event", e.Event, "error", r.Error.Message)
			} else {
				w.logger.Info("migration event recorded", "vm", e.VM, "id", e.ID, "event", e.Event, "reason", e.Reason)
			}
		}
	}
	w.mmu.Lock()
	defer w.mmu.Unlock()
	w.migEvents = slices.DeleteFunc(w.migEvents, func(e resource.MigrationEvent) bool { return slices.Contains(events, e) })
}

// outgoing returns whether vm has an outgoing migration goroutine that
// has not ended.
func (w *Worker) outgoing(vm string) bool {
	w.mmu.Lock()
	defer w.mmu.Unlock()
	m := w.out[vm]
	return m != nil && !m.ended
}

// forgetMigrations drops what this host knew of migrations that are no
// longer under way as it knew them: outgoing ones are cancelled (their
// outcome, when it comes, is refused as stale), incoming ones aborted
// (what was prepared or arrived is destroyed). Called with the pass's
// listing, before stale domains are removed.
func (w *Worker) forgetMigrations(ctx context.Context, vms []*resource.Object) {
	cur := map[string]*resource.VMStatus{}
	for _, o := range vms {
		if st, err := resource.DecodeStatus[resource.VMStatus](o); err == nil {
			cur[o.Name] = st
		}
	}
	w.mmu.Lock()
	for vm, m := range w.out {
		st := cur[vm]
		if st != nil && w.migratingFrom(st) && st.Migration.ID == m.id {
			continue
		}
		if !m.ended {
			m.cancel() // it ends (and is forgotten) in a later pass
			continue
		}
		delete(w.out, vm)
	}
	w.mmu.Unlock()
	for vm, m := range w.in {
		st := cur[vm]
		switch {
		case st != nil && w.migratingTo(st) && st.Migration.ID == m.id:
			continue
		case st != nil && st.Host == w.cfg.NodeID && st.Migration == nil && st.Epoch > m.id && st.Phase != resource.PhaseScheduled:
			// Done: the VM is this host's now (its epoch is the index
			// of the done event, after the migration's id; a VM placed
			// here afresh, after its source was evacuated, is
			// scheduled). Its arrival is finished by the VM's
			// convergence.
			w.arrivals[vm] = st.Epoch
			delete(w.in, vm)
			continue
		}
		w.logger.Info("an incoming migration ended without moving the VM here; removing what arrived", "vm", vm, "id", m.id)
		if mg, ok := w.migrator(); ok {
			if err := mg.AbortIncoming(ctx, hypervisor.DomainName(vm)); err != nil {
				w.logger.Warn("abort incoming failed; the domain is removed as stale", "vm", vm, "error", err)
			}
		}
		delete(w.in, vm)
	}
	for vm, epoch := range w.arrivals {
		if st := cur[vm]; st == nil || st.Host != w.cfg.NodeID || st.Epoch != epoch {
			delete(w.arrivals, vm)
		}
	}
}

// cancelMigrations cancels every outgoing migration (fencing: the guest
// runs here again, then is destroyed).
func (w *Worker) cancelMigrations() {
	w.mmu.Lock()
	defer w.mmu.Unlock()
	for _, m := range w.out {
		if !m.ended {
			m.cancel()
		}
	}
}

// sourceMigration carries out the source's part of a VM's migration: on
// state ready it migrates (live) or shuts the guest down (restart), in
// the background; on aborting it cancels that, or says failed at once if
// nothing began. The VM is not converged meanwhile, and no VM report is
// sent for it.
func (w *Worker) sourceMigration(ctx context.Context, o *resource.Object, st *resource.VMStatus) {
	m := st.Migration
	name := hypervisor.DomainName(o.Name)
	w.mmu.Lock()
	cur := w.out[o.Name]
	if cur != nil && cur.id != m.ID {
		if !cur.ended {
			cur.cancel()
			w.mmu.Unlock()
			return // the earlier one ends first
		}
		cur = nil
	}
	switch m.State {
	case resource.MigrationPreparing:
		w.mmu.Unlock()
		return
	case resource.MigrationAborting:
		switch {
		case cur == nil:
			w.out[o.Name] = &outMig{id: m.ID, ended: true, said: true, cancel: func() {}}
			w.mmu.Unlock()
			w.queueMigrationEvent(resource.MigrationEvent{VM: o.Name, ID: m.ID, Event: resource.MigrationFailed,
				Reason: "aborted before the source began"})
			return
		case !cur.ended:
			cur.cancel()
		case !cur.said:
			// Ended with its outcome unknown: aborted, it failed once
			// the guest runs here again.
			w.mmu.Unlock()
			if d, err := w.drv.Get(ctx, name); err == nil && d.State == hypervisor.StateRunning {
				w.queueMigrationEvent(resource.MigrationEvent{VM: o.Name, ID: m.ID, Event: resource.MigrationFailed,
					Reason: "aborted; the guest runs on the source"})
			}
			return
		}
		w.mmu.Unlock()
		return
	}
	if cur != nil {
		w.mmu.Unlock()
		return // under way, or ended (its outcome is queued or unknown)
	}
	mctx, cancel := context.WithTimeout(ctx, w.cfg.MigrationTimeout)
	om := &outMig{id: m.ID, cancel: cancel}
	w.out[o.Name] = om
	w.mmu.Unlock()
	// Its domain leaves this host (or stops): that is no change behind
	// Kumoi's back, and if the VM stays here after all it is started
	// again without counting a restart.
	delete(w.seenUp, o.Name)
	w.cancelShutdown(name)
	uri, mode, id, vm := m.URI, m.Mode, m.ID, o.Name
	w.logger.Info("migrating a VM out", "vm", vm, "id", id, "mode", mode, "target", m.Target, "uri", uri)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer cancel()
		ev := w.migrateOut(ctx, mctx, name, uri, mode)
		if ev != nil {
			ev.VM, ev.ID = vm, id
			w.queueMigrationEvent(*ev)
		}
		w.mmu.Lock()
		om.ended, om.said = true, ev != nil
		w.mmu.Unlock()
		w.wake()
	}()
}

// migrateOut runs one outgoing migration (bounded by ctx, under the
// worker's life, parent) and returns the event to send (nil: the outcome
// is not known; the target confirms, or an abort ends it).
func (w *Worker) migrateOut(parent, ctx context.Context, name, uri, mode string) *resource.MigrationEvent {
	if mode == resource.MigrationRestart {
		err := w.drv.Shutdown(ctx, name, w.cfg.ShutdownGrace)
		if err == nil {
			d, gerr := w.drv.Get(ctx, name)
			switch {
			case errors.Is(gerr, hypervisor.ErrNotFound):
			case gerr != nil:
				err = gerr
			case d.State.Active():
				err = fmt.Errorf("the domain is still %s", d.State)
			}
		}
		if err != nil {
			return &resource.MigrationEvent{Event: resource.MigrationFailed, Reason: "shutting the guest down: " + err.Error()}
		}
		return &resource.MigrationEvent{Event: resource.MigrationDone}
	}
	mg, ok := w.migrator()
	if !ok {
		return &resource.MigrationEvent{Event: resource.MigrationFailed, Reason: "host " + w.cfg.NodeID + "'s driver cannot migrate live"}
	}
	start := time.Now()
	res, err := mg.MigrateOut(ctx, name, uri, hypervisor.MigrateOptions{CopyStorage: true})
	switch {
	case err == nil:
		w.logger.Info("migrated a VM out", "domain", name, "took", time.Since(start).Round(time.Millisecond), "downtime", res.Downtime)
		return &resource.MigrationEvent{Event: resource.MigrationDone, DowntimeMS: res.Downtime.Milliseconds()}
	case errors.Is(err, hypervisor.ErrMigrationUnknown):
		// The guest may run on either host: nothing is said until it
		// is known (the target sees it run, or it runs here again).
		w.logger.Warn("a migration's outcome is unknown; waiting for the target to confirm it, or for the guest to run here again", "domain", name, "error", err)
		return w.unknownOutcome(parent, ctx, name, false)
	case errors.Is(err, hypervisor.ErrNotFound):
		// No domain here to migrate: an earlier run of this worker may
		// have migrated it (the target confirms if the guest runs
		// there). Once aborted, or past the timeout, the migration
		// failed: nothing runs here, and a guest the target did not
		// see run is not its.
		w.logger.Warn("no domain to migrate; waiting for the target to confirm an earlier migration, or an abort", "domain", name)
		return w.unknownOutcome(parent, ctx, name, true)
	}
	w.logger.Warn("migration failed; the VM stays here", "domain", name, "error", err)
	return &resource.MigrationEvent{Event: resource.MigrationFailed, Reason: err.Error()}
}

// unknownOutcome waits until the domain runs here again (failed) or ctx
// ends: nil (say nothing), or failed if failAtEnd and the worker is not
// stopping (parent, its life, goes on).
func (w *Worker) unknownOutcome(parent, ctx context.Context, name string, failAtEnd bool) *resource.MigrationEvent {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if d, err := w.drv.Get(ctx, name); err == nil && d.State == hypervisor.StateRunning {
			return &resource.MigrationEvent{Event: resource.MigrationFailed, Reason: "the migration's outcome was unknown; the guest runs on the source again"}
		}
		select {
		case <-ctx.Done():
			if failAtEnd && parent.Err() == nil {
				return &resource.MigrationEvent{Event: resource.MigrationFailed, Reason: "the source has no domain to migrate (" + ctx.Err().Error() + ")"}
			}
			return nil
		case <-t.C:
		}
	}
}

// targetMigration carries out the target's part of a live migration:
// while the target prepares, it readies the VM's devices (convergeResources
// did) and prepares the hypervisor (only in a pass that may start
// domains: the arrival is guarded as any domain is), and says prepared;
// once the source migrates, it says done when the hypervisor shows the
// guest running here.
func (w *Worker) targetMigration(ctx context.Context, o *resource.Object, spec *resource.VMSpec, st *resource.VMStatus) {
	m := st.Migration
	mg, ok := w.migrator()
	if !ok {
		w.queueMigrationEvent(resource.MigrationEvent{VM: o.Name, ID: m.ID, Event: resource.MigrationFailed,
			Reason: "host " + w.cfg.NodeID + "'s driver cannot take live migrations"})
		return
	}
	name := hypervisor.DomainName(o.Name)
	in := w.in[o.Name]
	if in != nil && in.id != m.ID {
		// An earlier migration's leftovers (forgetMigrations aborts
		// those whose VM moved on; this one came back at once).
		if err := mg.AbortIncoming(ctx, name); err != nil {
			w.logger.Warn("abort incoming failed", "vm", o.Name, "error", err)
			return
		}
		delete(w.in, o.Name)
		in = nil
	}
	switch m.State {
	case resource.MigrationPreparing:
		if in == nil {
			uri, ok := w.prepareIncoming(ctx, mg, o, spec, st)
			if !ok {
				return
			}
			in = &inMig{id: m.ID, uri: uri}
			w.in[o.Name] = in
		}
		w.queueMigrationEvent(resource.MigrationEvent{VM: o.Name, ID: m.ID, Event: resource.MigrationPrepared, URI: in.uri})
	default:
		if in == nil {
			// Prepared by an earlier run of this worker (or never):
			// it is this migration's (the id is in the domain's name
			// space only once).
			w.in[o.Name] = &inMig{id: m.ID}
		}
		running, err := mg.Incoming(ctx, name)
		if err != nil {
			w.logger.Debug("incoming check failed", "vm", o.Name, "error", err)
			return
		}
		if running {
			w.queueMigrationEvent(resource.MigrationEvent{VM: o.Name, ID: m.ID, Event: resource.MigrationDone,
				Reason: "the guest runs on the target"})
		}
	}
}

// prepareIncoming defines the incoming domain on the VM's devices here;
// false: not in this pass (the devices wait, the pass may not start
// domains) or it failed (said with a failed event).
func (w *Worker) prepareIncoming(ctx context.Context, mg hypervisor.Migrator, o *resource.Object, spec *resource.VMSpec, st *resource.VMStatus) (string, bool) {
	m := st.Migration
	failed := func(why string) (string, bool) {
		w.logger.Warn("cannot prepare an incoming migration", "vm", o.Name, "id", m.ID, "why", why)
		w.queueMigrationEvent(resource.MigrationEvent{VM: o.Name, ID: m.ID, Event: resource.MigrationFailed,
			Reason: "the target " + w.cfg.NodeID + " cannot prepare: " + why})
		return "", false
	}
	v := &vmPass{o: o, spec: spec, st: st, name: hypervisor.DomainName(o.Name)}
	var wait, fail string
	v.disks, v.nics, wait, fail = w.vmDevices(v)
	switch {
	case fail != "":
		return failed(fail)
	case wait != "":
		if w.waiting[o.Name] != wait {
			w.waiting[o.Name] = wait
			w.logger.Info("incoming VM waits for its devices", "vm", o.Name, "why", wait)
		}
		return "", false
	}
	delete(w.waiting, o.Name)
	if !w.mayStart || !w.proofFresh() {
		w.logger.Debug("not preparing an incoming migration in this pass: the host is not ready, or its proof is old", "vm", o.Name)
		return "", false
	}
	ds, err := w.domainSpec(v)
	if err != nil {
		return failed(err.Error())
	}
	uri, err := mg.PrepareIncoming(ctx, ds)
	if err != nil {
		if errors.Is(err, hypervisor.ErrUnavailable) || ctx.Err() != nil {
			w.logger.Warn("cannot prepare an incoming migration yet", "vm", o.Name, "error", err)
			return "", false
		}
		return failed(err.Error())
	}
	w.logger.Info("prepared an incoming migration", "vm", o.Name, "id", m.ID, "uri", uri, "source", st.Host)
	return uri, true
}

// finishArrival makes a domain that arrived by a live migration this
// host's once the epoch passed here (FinishIncoming: the sim resumes the
// paused arrival; libvirt's already runs), after the retag. It is the
// VM's only copy: one that cannot be finished is left as it is and tried
// again in the next pass (wait true: nothing else is done, nothing
// reported), never removed.
func (w *Worker) finishArrival(ctx context.Context, v *vmPass) (wait bool) {
	if epoch, ok := w.arrivals[v.o.Name]; !ok || epoch != v.st.Epoch {
		return false
	}
	mg, ok := w.migrator()
	if !ok || !v.d.State.Active() {
		// Nothing arrived alive (fenced meanwhile): the VM starts as
		// any other.
		delete(w.arrivals, v.o.Name)
		return false
	}
	err := mg.FinishIncoming(ctx, v.name)
	switch {
	case err == nil:
	case errors.Is(err, hypervisor.ErrNotFound):
		delete(w.arrivals, v.o.Name)
		return false
	default:
		w.logger.Warn("cannot finish an arrived migration yet; trying again", "vm", v.o.Name, "error", err)
		return true
	}
	delete(w.arrivals, v.o.Name)
	if got, err := w.drv.Get(ctx, v.name); err == nil {
		v.d = got
	}
	w.logger.Info("a live-migrated VM runs here", "vm", v.o.Name, "epoch", v.st.Epoch)
	if v.st.Reason != "" {
		// The reports keep saying where it came from (until Kumoi next
		// drives its power).
		w.notes[v.o.Name] = note{epoch: v.st.Epoch, reason: v.st.Reason}
	}
	return false
}

// ensureIncomingVolumes makes the volumes of the VMs migrating here that
// are still bound to their source: empty, of the same size (the source's
// hypervisor copies them), and returns their ids (not to be removed).
func (w *Worker) ensureIncomingVolumes(ctx context.Context, rp *resPass, in []*resource.Object, listed []hypervisor.VolumeInfo) map[string]bool {
	need := map[string]bool{}
	byName := map[string]hypervisor.VolumeInfo{}
	for _, v := range listed {
		byName[v.Name] = v
	}
	for _, o := range in {
		spec, _ := resource.DecodeSpec[resource.VMSpec](o)
		vst, _ := resource.DecodeStatus[resource.VMStatus](o)
		for _, d := range spec.Disks {
			if d.Volume == "" {
				continue
			}
			if _, done := rp.vols[d.Volume]; done {
				continue
			}
			vo, ok := rp.volumes[d.Volume]
			if !ok {
				rp.vols[d.Volume] = w.ensureVolume(ctx, rp, d.Volume, byName) // says why
				continue
			}
			need[vo.ID] = true
			vs, err := resource.DecodeSpec[resource.VolumeSpec](vo)
			volst, err2 := resource.DecodeStatus[resource.VolumeStatus](vo)
			if err != nil || err2 != nil || volst.Host != vst.Host {
				rp.vols[d.Volume] = w.ensureVolume(ctx, rp, d.Volume, byName)
				continue
			}
			file := VolumeFileName(w.ClusterID(), vo.ID)
			info, present := byName[file]
			if !present || info.SizeMiB < vs.SizeMiB {
				got, err := w.drv.EnsureVolume(ctx, hypervisor.VolumeDef{Name: file, SizeMiB: vs.SizeMiB})
				if err != nil {
					why := fmt.Sprintf("volume %s on host %s (for an incoming migration): %v", d.Volume, w.cfg.NodeID, err)
					if errors.Is(err, hypervisor.ErrUnavailable) || ctx.Err() != nil {
						rp.vols[d.Volume] = volResult{devResult: devResult{wait: why}}
					} else {
						rp.vols[d.Volume] = volResult{devResult: devResult{fail: why}}
					}
					continue
				}
				info = got
			}
			w.volMade[vo.ID] = true
			rp.vols[d.Volume] = volResult{info: info}
		}
	}
	return need
}
