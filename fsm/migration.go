package fsm

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kumoi/kumoi/resource"
)

// Migrations of running VMs (log protocol 9; docs/scheduling.md, "Live
// migration"). The state machine holds the migration, the workers carry
// it out:
//
//  1. A MigrateRequest with a mode starts it: the VM, running on its host
//     (the source), gets status.migration {id, target, mode, state} and
//     phase migrating. The target's capacity is reserved from then on
//     (the vm_target index counts it there), as is the source's: no other
//     placement takes either. The rules are checked as for a placement.
//  2. live: the target's worker readies the VM's networks, volumes and
//     images and says "prepared" (with the URI its hypervisor takes
//     migrations on); the state becomes ready. restart: ready at once.
//  3. The source's worker migrates (live: the hypervisor copies memory,
//     and disks that are not shared, while the guest runs; restart: it
//     shuts the guest down) and says "done" when the hypervisor confirms.
//     The target's worker may say "done" too when it sees the guest
//     running there (the source's worker may have died meanwhile).
//  4. "done" passes the VM to the target with a new epoch (the Raft index
//     of that entry): the target's worker adopts the guest (live) or
//     starts it (restart), and the source's removes what is left.
//     "failed", from either side, ends the migration and leaves the VM on
//     the source; so does an abort (at once while the target prepares; once
//     ready, the source cancels and says "failed").
//
// An event names its migration by id: a late event of an earlier migration
// changes nothing. A worker acts only on what it reads, so no step needs a
// clock; a migration whose source host is evacuated ends with the host's
// other VMs, and one whose target host is evacuated ends and leaves the VM
// where it runs (the target's fencing stopped anything that arrived there).

// MigrationEventRequest records workers' migration events (protocol 9):
// Result.ItemErrors[i] is event i's error.
type MigrationEventRequest struct {
	Time   time.Time                 `json:"time"`
	Host   string                    `json:"host"`
	Events []resource.MigrationEvent `json:"events"`
}

// MaxMigrationURIBytes bounds a migration URI; MaxMigrationReasonBytes an
// event's reason.
const (
	MaxMigrationURIBytes    = 1024
	MaxMigrationReasonBytes = 4096
)

// runsOnHost: the VM's guest is, or is to be, up on its host (what a
// migration with a mode moves; anything else moves cold).
func runsOnHost(spec *resource.VMSpec, st *resource.VMStatus) bool {
	switch st.Phase {
	case resource.PhaseScheduled, resource.PhaseStarting, resource.PhaseRunning, resource.PhaseSuspended, resource.PhaseStopping:
		return spec.Power != resource.PowerStopped || st.Phase != resource.PhaseScheduled
	}
	return false
}

// migrateRunning starts a migration of a VM that runs on its host.
func (w *writer) migrateRunning(req *MigrateRequest, o *resource.Object, spec *resource.VMSpec, st *resource.VMStatus) error {
	if st.Phase != resource.PhaseRunning || spec.Power != resource.PowerRunning {
		return fmt.Errorf("vm %q is %s on host %q (power %s): %w: a migration moves a running VM; wait until it runs, or stop it and move it cold",
			req.VM, st.Phase, st.Host, spec.Power, ErrWrongPhase)
	}
	_, _, shst, err := w.host(st.Host)
	if err != nil {
		return err
	}
	if shst.State != resource.HostReady && shst.State != resource.HostDraining {
		return fmt.Errorf("vm %q: its host %q is %s: %w: a migration needs the source host up", req.VM, st.Host, shst.State, ErrHostNotReady)
	}
	if !shst.CanMigrate(req.Mode) {
		return fmt.Errorf("vm %q: host %q cannot migrate VMs %s (its worker offers %s): %w",
			req.VM, st.Host, modeWords(req.Mode), modesOf(shst), ErrHostNotReady)
	}
	ho, hspec, hst, err := w.host(req.Host)
	if err != nil {
		return err
	}
	if hst.State != resource.HostReady || hspec.Unschedulable {
		return fmt.Errorf("host %q (%s, unschedulable=%t): %w", req.Host, hst.State, hspec.Unschedulable, ErrHostNotReady)
	}
	if !hst.CanMigrate(req.Mode) {
		return fmt.Errorf("vm %q: host %q cannot take VMs %s (its worker offers %s): %w",
			req.VM, req.Host, modeWords(req.Mode), modesOf(hst), ErrHostNotReady)
	}
	use, err := w.fitsUse(req.Host, hspec, hst, resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB})
	if err != nil {
		return err
	}
	if err := w.checkRules(req.VM, spec, ho, hspec, hst, &use); err != nil {
		return err
	}
	if req.Mode == resource.MigrationRestart && hasDevices(spec) {
		// A restart copies no disk: a VM whose volumes are on its
		// host's storage moves live (which copies them) or not at all.
		if err := w.bindVolumes(req.VM, spec, req.Host, false); err != nil {
			return fmt.Errorf("%w (a live migration copies the volumes)", err)
		}
	}
	m := &resource.VMMigration{ID: w.index, Target: req.Host, Mode: req.Mode, State: resource.MigrationPreparing, Since: req.Time.UTC()}
	reason := "live-migrating to " + req.Host + ": the target prepares"
	if req.Mode == resource.MigrationRestart {
		m.State = resource.MigrationReady
		reason = "moving to " + req.Host + ": shutting the guest down here, to start it there"
	}
	nst := *st
	nst.Phase, nst.Reason, nst.Since, nst.Migration = resource.PhaseMigrating, reason, req.Time.UTC(), m
	return w.putVMStatus(o, st, &nst)
}

func modeWords(mode string) string {
	if mode == resource.MigrationLive {
		return "live"
	}
	return "by restart"
}

func modesOf(hs *resource.HostStatus) string {
	if len(hs.MigrationModes) == 0 {
		return "none: an older worker, or a driver that cannot"
	}
	return strings.Join(hs.MigrationModes, ", ")
}

// migrationAbort cancels a VM's migration: at once while the target
// prepares (the source has not begun), else by asking the source
// (state aborting), whose worker cancels and says failed, or done if the
// hypervisor had already finished. Asked again while aborting (the source
// says nothing: its worker is stuck, or lost the outcome), it ends the
// migration at once: the VM stays on the source as far as the cluster
// knows, and the target removes whatever arrived.
func (w *writer) migrationAbort(req *MigrateRequest) error {
	o, _, st, err := w.vm(req.VM)
	if err != nil {
		return err
	}
	m := st.Migration
	if m == nil {
		return fmt.Errorf("vm %q is %s: %w: no migration is under way", req.VM, st.Phase, ErrWrongPhase)
	}
	nst := *st
	switch m.State {
	case resource.MigrationAborting:
		nst.Migration, nst.Phase = nil, resource.PhaseRunning
		nst.Reason = "the migration to " + m.Target + " was aborted again, so at once: the VM stays on " + st.Host +
			" (if the hypervisor had finished the move, its guest left " + st.Host + "; the target removes what arrived)"
	case resource.MigrationPreparing:
		nst.Migration, nst.Phase = nil, resource.PhaseRunning
		nst.Reason = "the migration to " + m.Target + " was aborted before it began"
	default:
		nm := *m
		nm.State = resource.MigrationAborting
		nst.Migration = &nm
		nst.Reason = "aborting the migration to " + m.Target + ": the source cancels it"
	}
	nst.Since = req.Time.UTC()
	return w.putVMStatus(o, st, &nst)
}

// migrationEvents applies workers' migration events.
func (w *writer) migrationEvents(req *MigrationEventRequest) error {
	if len(req.Events) > MaxBatchOps {
		return fmt.Errorf("%w: %d migration events; the limit is %d", ErrBadPayload, len(req.Events), MaxBatchOps)
	}
	w.itemErrs = make([]error, len(req.Events))
	for i, e := range req.Events {
		w.itemErrs[i] = w.migrationEvent(req.Time, req.Host, e)
	}
	return nil
}

// CheckMigrationEvent checks an event's fields (the API calls it too).
func CheckMigrationEvent(e resource.MigrationEvent) error {
	switch e.Event {
	case resource.MigrationPrepared, resource.MigrationDone, resource.MigrationFailed:
	default:
		return resource.Errorf("event", "%q is not a migration event (prepared, done, failed)", e.Event)
	}
	if e.ID == 0 {
		return resource.Errorf("id", "must name the migration (status.migration.id)")
	}
	if len(e.URI) > MaxMigrationURIBytes || !utf8.ValidString(e.URI) || strings.ContainsFunc(e.URI, unicode.IsControl) {
		return resource.Errorf("uri", "must be at most %d bytes without control characters", MaxMigrationURIBytes)
	}
	if e.Event == resource.MigrationPrepared && e.URI == "" {
		return resource.Errorf("uri", "is required with prepared: the source's hypervisor migrates to it")
	}
	if len(e.Reason) > MaxMigrationReasonBytes || !utf8.ValidString(e.Reason) {
		return resource.Errorf("reason", "must be valid UTF-8 of at most %d bytes", MaxMigrationReasonBytes)
	}
	if e.DowntimeMS < 0 || e.DowntimeMS > MaxTimingMS {
		return resource.Errorf("downtime_ms", "must be between 0 and %d", MaxTimingMS)
	}
	return nil
}

func (w *writer) migrationEvent(now time.Time, host string, e resource.MigrationEvent) error {
	if err := CheckMigrationEvent(e); err != nil {
		return err
	}
	o, spec, st, err := w.vm(e.VM)
	if err != nil {
		return err
	}
	m := st.Migration
	if m == nil || m.ID != e.ID {
		return fmt.Errorf("vm %q: migration %d is not under way: %w", e.VM, e.ID, ErrStaleEpoch)
	}
	source, target := st.Host, m.Target
	if host != source && host != target {
		return fmt.Errorf("vm %q: host %q takes no part in migration %d (%s to %s): %w", e.VM, host, m.ID, source, target, ErrStaleEpoch)
	}
	nst := *st
	nst.Since = now.UTC()
	switch e.Event {
	case resource.MigrationPrepared:
		if host != target || m.Mode != resource.MigrationLive {
			return fmt.Errorf("vm %q: prepared comes from the target of a live migration (%s): %w", e.VM, target, ErrWrongPhase)
		}
		if m.State != resource.MigrationPreparing {
			return nil // said again, or aborting: nothing to do
		}
		nm := *m
		nm.State, nm.URI = resource.MigrationReady, e.URI
		nst.Migration = &nm
		nst.Reason = "live-migrating to " + target + ": the target is ready; the source copies the guest"
	case resource.MigrationDone:
		if m.State == resource.MigrationPreparing {
			return fmt.Errorf("vm %q: migration %d has not begun (the target prepares): %w", e.VM, m.ID, ErrWrongPhase)
		}
		if host == target && m.Mode != resource.MigrationLive {
			return fmt.Errorf("vm %q: a restart migration is done when the source says so: %w", e.VM, ErrWrongPhase)
		}
		nst = resource.VMStatus{Phase: resource.PhaseRunning, Host: target, Epoch: w.index, Since: now.UTC(),
			RebootRequested: st.RebootRequested, RebootDone: st.RebootDone, Restarts: st.Restarts}
		if m.Mode == resource.MigrationLive {
			nst.Reason = "live-migrated from " + source
			if e.DowntimeMS > 0 {
				nst.Reason += fmt.Sprintf(" (paused %d ms)", e.DowntimeMS)
			}
			// Its volumes were copied with it.
			if err := w.moveVolumes(spec, source, target); err != nil {
				return err
			}
		} else {
			nst.Phase = resource.PhaseScheduled
			nst.Reason = "moved from " + source + " (shut down there; starts here)"
		}
	case resource.MigrationFailed:
		nst.Migration, nst.Phase = nil, resource.PhaseRunning
		why := e.Reason
		if why == "" {
			why = "no reason given"
		}
		nst.Reason = fmt.Sprintf("the migration to %s failed (%s says: %s); the VM stays on %s", target, host, why, source)
		if m.State == resource.MigrationAborting {
			nst.Reason = fmt.Sprintf("the migration to %s was aborted (%s); the VM stays on %s", target, why, source)
		}
	}
	return w.putVMStatus(o, st, &nst)
}

// moveVolumes binds a VM's volumes that were on from to to (a live
// migration copied them).
func (w *writer) moveVolumes(spec *resource.VMSpec, from, to string) error {
	for _, d := range spec.Disks {
		vo, _, vst, err := w.volume(d.Volume)
		if err != nil {
			return err
		}
		if vo == nil || vst.Host != from {
			continue
		}
		nst := *vst
		// report_seq stays: the target's worker reads it before it
		// reports the volume, and numbers above it, so a report the
		// source's worker sent before the move stays refused even if the
		// volume comes back.
		nst.Host = to
		if err := w.putStatus(vo, &nst); err != nil {
			return err
		}
		w.touchVolume(d.Volume)
	}
	return nil
}

// endMigrationsTo ends the migrations whose target host is evacuated: the
// VMs stay where they run (their source; what reached the target was
// stopped by its fencing).
func (w *writer) endMigrationsTo(host, why string, now time.Time) error {
	it, err := w.txn.Get(tableObjects, indexVMTarget, host)
	if err != nil {
		return err
	}
	var vms []*resource.Object
	for raw := it.Next(); raw != nil; raw = it.Next() {
		vms = append(vms, raw.(*resource.Object))
	}
	for _, o := range vms {
		st, err := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil || st.Migration == nil {
			continue
		}
		nst := *st
		nst.Migration, nst.Phase, nst.Since = nil, resource.PhaseRunning, now.UTC()
		nst.Reason = "the migration to " + host + " ended: " + why + "; the VM stays on " + st.Host
		if err := w.putVMStatus(o, st, &nst); err != nil {
			return err
		}
	}
	return nil
}
