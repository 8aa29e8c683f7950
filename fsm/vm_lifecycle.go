package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// ActionRequest is a verb on a VM: start, stop, suspend and resume set the
// desired power; reboot asks the worker for a reboot. The phase is checked
// here, at apply time: an action the phase forbids fails with ErrWrongPhase.
// Force (stop only) powers the VM off at once instead of asking the guest
// to shut down; it also cuts short a graceful stop already under way.
type ActionRequest struct {
	Time   time.Time `json:"time"`
	VM     string    `json:"vm"`
	Action string    `json:"action"`
	Force  bool      `json:"force,omitempty"`
}

func (w *writer) action(req *ActionRequest) error {
	o, spec, st, err := w.vm(req.VM)
	if err != nil {
		return err
	}
	deny := func(why string) error {
		return fmt.Errorf("vm %q is %s: %w: %s", req.VM, st.Phase, ErrWrongPhase, why)
	}
	if m := st.Migration; m != nil {
		return deny(fmt.Sprintf("it is migrating to host %q; %s it once the migration has ended, or abort the migration (kumoi vm migrate %s --abort)", m.Target, req.Action, req.VM))
	}
	power := spec.Power
	nst := *st
	switch req.Action {
	case resource.ActionStart:
		power = resource.PowerRunning
		if st.Phase == resource.PhaseFailed || st.Phase == resource.PhaseLost {
			// Try again from scratch: back to pending, so the VM is
			// placed anew with a new epoch (and its host is freed).
			nst = resource.VMStatus{Phase: resource.PhasePending,
				Reason: "started again after it was " + st.Phase + "; waiting for placement", Since: req.Time.UTC()}
			w.touch(st.Host)
		}
	case resource.ActionStop:
		power = resource.PowerStopped
		if req.Force && st.Host != "" && st.Phase != resource.PhaseStopped {
			nst.StopForced = true
		}
	case resource.ActionSuspend:
		if st.Phase != resource.PhaseRunning {
			return deny("only a running VM can be suspended")
		}
		power = resource.PowerSuspended
	case resource.ActionResume:
		if st.Phase != resource.PhaseSuspended && spec.Power != resource.PowerSuspended {
			return deny("only a suspended VM can be resumed")
		}
		power = resource.PowerRunning
	case resource.ActionReboot:
		if st.Phase != resource.PhaseRunning {
			return deny("only a running VM can be rebooted")
		}
		nst.RebootRequested = w.index
	default:
		return resource.Errorf("action", "%q is not a VM action (start, stop, suspend, resume, reboot)", req.Action)
	}
	if req.Force && req.Action != resource.ActionStop {
		return resource.Errorf("force", "applies to stop only, not %s", req.Action)
	}
	if power != resource.PowerStopped {
		nst.StopForced = false
	}
	if power == spec.Power && nst == *st {
		return nil // already so: no write
	}
	n := o.Copy()
	if power != spec.Power {
		spec.Power = power
		raw, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		n.Spec = raw
	}
	if nst != *st {
		raw, err := resource.MarshalVMStatus(&nst)
		if err != nil {
			return err
		}
		n.Status = raw
	}
	n.ModifyIndex = w.index
	return w.put(n, resource.EventUpdated)
}

// MigrateRequest moves a VM to Host (a cold migration: the proposer picks
// the host when the user did not). It is allowed when the VM is not
// running anywhere: unplaced, stopped (power stopped), failed or lost, or
// assigned to a host that has been down or left for at least Grace (the
// same rule as EvacuateRequest, so the old host has fenced itself). The
// target must be ready, schedulable and have room; the VM gets a new
// placement epoch there and keeps its desired power, and the old host's
// worker removes its domain.
//
// With PhaseOnly (protocol 5) no clock decides: a VM that is to run on a
// host that still exists moves only once it is lost (the host was
// evacuated, which the leader times on its own monotonic clock and which
// waits for --fence-command), never because the proposer's clock says the
// host's status.since, stamped by whichever leader marked it down, is a
// grace old. Without it (an older proposer) the old rule applies.
//
// Protocol 9: with Mode (live or restart) a VM that runs moves too: the
// request starts a migration (status.migration, migration.go) that the
// workers carry out; a VM that runs nowhere moves cold as above. Abort
// cancels the migration under way (Host is then ignored).
type MigrateRequest struct {
	Time      time.Time     `json:"time"`
	VM        string        `json:"vm"`
	Host      string        `json:"host"`
	Grace     time.Duration `json:"grace"`
	PhaseOnly bool          `json:"phase_only,omitempty"`
	Mode      string        `json:"mode,omitempty"`
	Abort     bool          `json:"abort,omitempty"`
}

// UsesMigration reports whether the request needs protocol 9.
func (r *MigrateRequest) UsesMigration() bool { return r.Mode != "" || r.Abort }

// UsesPhaseOnly reports whether the request needs protocol 5.
func (r *MigrateRequest) UsesPhaseOnly() bool { return r.PhaseOnly }

// CheckMigratable says whether a VM may be moved (MigrateRequest's rule):
// it is not running anywhere (unplaced, stopped, failed or lost), or its
// host (from) no longer exists; without phaseOnly also when its host has
// been down or left for at least grace at now (an older rule that
// compares two machines' clocks).
func CheckMigratable(name string, spec *resource.VMSpec, st *resource.VMStatus, from *resource.HostStatus, now time.Time, grace time.Duration, phaseOnly bool) error {
	if st.Host == "" {
		return nil
	}
	down := from != nil && (from.State == resource.HostDown || from.State == resource.HostLeft)
	gone := from == nil || (!phaseOnly && down && now.Sub(from.Since) >= grace)
	stopped := st.Phase == resource.PhaseStopped && spec.Power == resource.PowerStopped
	if gone || stopped || st.Phase == resource.PhaseFailed || st.Phase == resource.PhaseLost {
		return nil
	}
	if phaseOnly && down {
		return fmt.Errorf("vm %q is %s on host %q, which is %s: %w: it moves once the controllers have evacuated the host (after the host-down grace, and a successful --fence-command if one is set); then it is lost or placed again by itself (ha: restart)",
			name, st.Phase, st.Host, from.State, ErrWrongPhase)
	}
	return fmt.Errorf("vm %q is %s on host %q: %w: stop it first (a VM is moved cold; a VM that is to run moves only when its host has been evacuated)",
		name, st.Phase, st.Host, ErrWrongPhase)
}

func (w *writer) migrate(req *MigrateRequest) error {
	if req.Abort {
		return w.migrationAbort(req)
	}
	if req.Host == "" {
		return resource.Errorf("host", "is required: the proposer picks the target host")
	}
	if req.Mode != "" && req.Mode != resource.MigrationLive && req.Mode != resource.MigrationRestart {
		return resource.Errorf("mode", "%q is not a migration mode (live, restart)", req.Mode)
	}
	o, spec, st, err := w.vm(req.VM)
	if err != nil {
		return err
	}
	if st.Migration != nil {
		return fmt.Errorf("vm %q is already migrating to host %q (migration %d, %s): %w: wait for it to end, or abort it",
			req.VM, st.Migration.Target, st.Migration.ID, st.Migration.State, ErrWrongPhase)
	}
	if req.Mode != "" && st.Host != "" && st.Host != req.Host && runsOnHost(spec, st) {
		return w.migrateRunning(req, o, spec, st)
	}
	if st.Host == req.Host {
		return fmt.Errorf("vm %q is already on host %q: %w", req.VM, req.Host, ErrWrongPhase)
	}
	if st.Host != "" {
		_, _, ohst, err := w.host(st.Host)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := CheckMigratable(req.VM, spec, st, ohst, req.Time, req.Grace, req.PhaseOnly); err != nil {
			return err
		}
	}
	ho, hspec, hst, err := w.host(req.Host)
	if err != nil {
		return err
	}
	if hst.State != resource.HostReady || hspec.Unschedulable {
		return fmt.Errorf("host %q (%s, unschedulable=%t): %w", req.Host, hst.State, hspec.Unschedulable, ErrHostNotReady)
	}
	if err := w.fits(req.Host, hspec, hst, resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB}); err != nil {
		return err
	}
	if err := w.checkRules(req.VM, spec, ho, hspec, hst, nil); err != nil {
		return err
	}
	if hasDevices(spec) {
		// Its volumes are on one host's storage: it moves only there.
		if err := w.bindVolumes(req.VM, spec, req.Host, false); err != nil {
			return err
		}
		if err := w.bindVolumes(req.VM, spec, req.Host, true); err != nil {
			return err
		}
	}
	reason := "migrated"
	if st.Host != "" {
		reason = "migrated from " + st.Host
	}
	nst := resource.VMStatus{Phase: resource.PhaseScheduled, Host: req.Host, Epoch: w.index, Reason: reason, Since: req.Time.UTC()}
	return w.putVMStatus(o, st, &nst)
}
