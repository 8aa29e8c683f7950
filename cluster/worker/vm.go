package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// vmPass is one VM in one reconcile pass: its object, decoded spec and
// status, and its domain as last seen.
type vmPass struct {
	o    *resource.Object
	spec *resource.VMSpec
	st   *resource.VMStatus
	name string // the domain's name
	d    hypervisor.DomainInfo
	rep  resource.VMReport
	// restart: this pass starts the domain again after it went down
	// unasked (its note stays).
	restart bool
	// disks and nics: the domain's devices (from vmDevices).
	disks []hypervisor.DomainDisk
	nics  []hypervisor.DomainNIC
	// deferred: the start waits for the next pass (this pass's proof grew
	// too old); nothing is reported meanwhile (the domain is not "stopped",
	// it is about to start).
	deferred bool
}

// note explains a change made behind Kumoi's back to a VM's domain in one
// placement: its reason (and restart count, once Kumoi restarted it) go
// with every report until Kumoi next drives the domain's power as asked
// (a start, stop, suspend or resume), so that the status keeps saying what
// happened rather than losing the reason at the next pass.
type note struct {
	epoch    uint64
	reason   string
	restarts uint64 // the VM's restart count after Kumoi's restart (0: none)
	pending  bool   // the domain is to be started again, not yet done
}

// convergeVM acts on one VM and returns the report to send, if it changed:
// make sure its domain is this VM's and defined for this placement, notice
// what happened behind Kumoi's back, drive the domain to the desired power,
// reboot if asked, and report the phase the domain is in.
func (w *Worker) convergeVM(ctx context.Context, o *resource.Object, spec *resource.VMSpec, st *resource.VMStatus, d hypervisor.DomainInfo, exists bool) (resource.VMReport, bool) {
	v := &vmPass{o: o, spec: spec, st: st, name: hypervisor.DomainName(o.Name), d: d,
		rep: resource.VMReport{VM: o.Name, Epoch: st.Epoch}}
	w.seq.observe(st.ReportSeq)
	if exists && w.isForeign(d) {
		// The name is held by a domain of another cluster: never touch it.
		return w.fail(v, "domain "+v.name+" on this host belongs to another cluster ("+d.Cluster+") and is left alone; this VM cannot run here")
	}
	if exists && d.Kumoi && d.VMID != o.ID && d.State.Active() {
		// Same name, another VM (deleted and recreated): replace it.
		w.removeDomain(ctx, d)
		exists = false
	}
	if w.failed[o.Name] == st.Epoch && st.Phase == resource.PhaseFailed {
		return v.rep, false // stay failed until re-placed or changed
	}
	if n, ok := w.notes[o.Name]; ok && n.epoch != st.Epoch {
		delete(w.notes, o.Name) // another placement
	}
	// Its networks and volumes: a domain is defined only on devices
	// that are ready (one that is active already has them).
	active := exists && d.State.Active()
	var wait, failed string
	v.disks, v.nics, wait, failed = w.vmDevices(v)
	switch {
	case failed != "" && !active:
		return w.fail(v, failed)
	case wait != "" && !active:
		if w.waiting[o.Name] != wait {
			w.waiting[o.Name] = wait
			w.logger.Info("VM waits for its devices", "vm", o.Name, "why", wait)
		}
		return v.rep, false
	}
	delete(w.waiting, o.Name)
	if wait != "" || failed != "" {
		// Active, with devices not ready (an image verified again after
		// a restart): a definition for a new epoch keeps the ones it has.
		v.disks, v.nics = d.Disks, d.NICs
	}
	// A stopped domain whose devices changed (a disk or NIC attached
	// or detached, a volume's path) is defined again.
	devsChanged := exists && wait == "" && failed == "" && !active &&
		(!slices.Equal(d.Disks, v.disks) || !slices.Equal(d.NICs, v.nics))
	vanished := !exists && w.seenUp[o.Name] == st.Epoch && !w.stopping[v.name] && spec.Power != resource.PowerStopped
	if !exists || d.Epoch != st.Epoch || d.VMID != o.ID || d.Cluster != w.ClusterID() || devsChanged {
		if err := w.define(ctx, v); errors.Is(err, hypervisor.ErrBootPath) {
			w.logger.Warn("refusing a VM's boot path", "vm", o.Name, "error", err)
			return w.fail(v, err.Error())
		} else if err != nil {
			return w.fail(v, "define failed: "+err.Error())
		}
	}
	if vanished {
		// Undefined behind Kumoi's back while it ran (virsh undefine, then
		// it ended): honoured like a destroy. It is defined again (above)
		// but not started.
		delete(w.seenUp, o.Name)
		return w.stoppedBehind(v, "the domain "+v.name+" vanished: it was undefined outside Kumoi while it ran; desired power is now stopped")
	}
	if w.finishArrival(ctx, v) {
		return v.rep, false
	}
	if v.d.State.Active() && !w.stopping[v.name] {
		w.seenUp[o.Name] = st.Epoch
		delete(w.guardFenced, v.name)
	}
	if rep, changed, done := w.behindKumoisBack(v); done {
		return rep, changed
	}
	if err := w.drivePower(ctx, v); err != nil {
		return w.fail(v, err.Error())
	}
	if v.deferred {
		return v.rep, false
	}
	if st.RebootRequested > st.RebootDone && v.d.State == hypervisor.StateRunning && spec.Power == resource.PowerRunning {
		if err := w.drv.Reboot(ctx, v.name); err != nil {
			return w.fail(v, err.Error())
		}
		v.rep.RebootDone = st.RebootRequested
	}
	return w.observe(ctx, v)
}

// fail reports the VM failed in this placement; it stays failed until it
// is re-placed or changed.
func (w *Worker) fail(v *vmPass, reason string) (resource.VMReport, bool) {
	w.failed[v.o.Name] = v.st.Epoch
	v.rep.Phase, v.rep.Reason = resource.PhaseFailed, reason
	return w.changed(v.rep)
}

// define defines the VM's domain for its current placement (epoch). Its
// boot paths are resolved in the host's image directory first: a refused
// one (hypervisor.ErrBootPath) defines nothing.
func (w *Worker) define(ctx context.Context, v *vmPass) error {
	ds, err := w.domainSpec(v)
	if err != nil {
		return err
	}
	if err := w.drv.Define(ctx, ds); err != nil {
		return err
	}
	if got, err := w.drv.Get(ctx, v.name); err == nil {
		v.d = got
	}
	return nil
}

// domainSpec is the definition of the VM's domain for its current
// placement (epoch), its boot paths resolved in the host's image
// directory (hypervisor.ErrBootPath: refused).
func (w *Worker) domainSpec(v *vmPass) (hypervisor.DomainSpec, error) {
	ds := hypervisor.DomainSpec{Name: v.name, VMID: v.o.ID, Epoch: v.st.Epoch, Cluster: w.ClusterID(), CPUs: v.spec.CPUs, MemoryMiB: v.spec.MemoryMiB,
		Disks: v.disks, NICs: v.nics}
	if b := v.spec.Boot; b != nil {
		boot, err := w.cfg.imageDir.ResolveBoot(hypervisor.Boot{Image: b.Image, ImageFormat: hypervisor.ImageFormat(b.ImageFormat), Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: b.Cmdline})
		if err != nil {
			return ds, err
		}
		ds.Boot = boot
	}
	return ds, nil
}

// behindKumoisBack notices a domain that went down after it was seen up
// in this placement (and not stopped by Kumoi), or that a worker just
// started finds shut off while the VM was running (a host reboot). A
// power-off or a destroy (virsh destroy) makes the VM stopped (desired
// power follows: Kumoi does not fight the operator); a crash (the QEMU
// process killed shows as one) fails an ha=none VM and restarts an
// ha=restart one, counted. When that decides the pass, done is true and
// rep and changed are what convergeVM returns; a VM to restart is started
// by the rest of the pass (v.restart).
func (w *Worker) behindKumoisBack(v *vmPass) (rep resource.VMReport, changed, done bool) {
	d, o := v.d, v.o
	if d.State != hypervisor.StateShutoff && d.State != hypervisor.StateCrashed {
		return v.rep, false, false
	}
	if n, ok := w.notes[o.Name]; ok && n.pending && v.spec.Power != resource.PowerRunning {
		delete(w.notes, o.Name) // asked to stop before the start again
	}
	if w.stopping[v.name] || v.spec.Power != resource.PowerRunning {
		return v.rep, false, false
	}
	if n, ok := w.notes[o.Name]; ok && n.pending && n.epoch == v.st.Epoch {
		v.restart = true // a start again that could not be made yet
		return v.rep, false, false
	}
	if rec, ok := w.guardFenced[v.name]; ok {
		// Stopped by this host's fence guard: Kumoi's own stop, not a
		// change behind its back. Still placed here and meant to run, it
		// is started again once the host is ready, and says why.
		delete(w.guardFenced, v.name)
		delete(w.seenUp, o.Name)
		w.logger.Info("the fence guard stopped this VM's domain; starting it again when the host is ready", "vm", o.Name, "fenced_at", rec.At, "why", rec.Why)
		w.notes[o.Name] = note{epoch: v.st.Epoch, pending: true,
			reason: "started again after the fence guard stopped it at " + rec.At.Format(time.RFC3339) + ": " + rec.Why}
		v.restart = true
		return v.rep, false, false
	}
	crashed := d.State == hypervisor.StateCrashed || d.Reason == hypervisor.StopCrashed || d.Reason == hypervisor.StopFailed
	at := time.Now().UTC().Format(time.RFC3339)
	if w.seenUp[o.Name] != v.st.Epoch {
		// Not seen go down. A worker that has reported nothing on this VM
		// since it started, finding its domain off while the status says
		// it ran: the host (or libvirt) went down meanwhile.
		if _, ok := w.reported[o.Name]; ok || v.st.Phase != resource.PhaseRunning && v.st.Phase != resource.PhaseSuspended {
			return v.rep, false, false
		}
		why := fmt.Sprintf("the domain was found shut off (%s) when the worker started (host reboot?)", cmp.Or(d.Reason, "unknown"))
		switch {
		case crashed && v.spec.HA != resource.HARestart:
			rep, changed = w.fail(v, why+"; the guest "+d.Reason+" and ha is none, so it is not restarted")
			return rep, changed, true
		case v.spec.HA == resource.HARestart:
			w.restartBehind(v, "restarted at "+at+": "+why)
		default:
			// ha=none, not a crash: desired power is running, so it is
			// started again, but not counted as an ha restart.
			w.notes[o.Name] = note{epoch: v.st.Epoch, reason: "started again at " + at + ": " + why, pending: true}
			v.restart = true
		}
		return v.rep, false, false
	}
	delete(w.seenUp, o.Name)
	switch {
	case crashed:
		if v.spec.HA != resource.HARestart {
			rep, changed = w.fail(v, "the guest "+cmp.Or(d.Reason, hypervisor.StopCrashed)+" at "+at+"; ha is none, so it is not restarted")
			return rep, changed, true
		}
		w.logger.Info("restarting a crashed VM (ha=restart)", "vm", o.Name, "reason", d.Reason)
		w.restartBehind(v, "restarted after the guest "+cmp.Or(d.Reason, hypervisor.StopCrashed)+" at "+at+" (ha=restart)")
		return v.rep, false, false
	case d.Reason == hypervisor.StopShutdown:
		rep, changed = w.stoppedBehind(v, "the guest powered itself off at "+at+"; desired power is now stopped")
		return rep, changed, true
	case d.Reason == hypervisor.StopDestroyed:
		rep, changed = w.stoppedBehind(v, "the domain was destroyed outside Kumoi at "+at+" (virsh destroy?); desired power is now stopped")
		return rep, changed, true
	}
	// Saved, migrated, restored by hand: started again, and said so.
	w.notes[o.Name] = note{epoch: v.st.Epoch, reason: fmt.Sprintf("started again at %s: the domain was shut off outside Kumoi (%s)", at, cmp.Or(d.Reason, "unknown")), pending: true}
	v.restart = true
	return v.rep, false, false
}

// stoppedBehind: the domain was stopped behind Kumoi's back and that is
// honoured: the VM is stopped, desired power follows, the reason stays.
func (w *Worker) stoppedBehind(v *vmPass, reason string) (resource.VMReport, bool) {
	w.logger.Info("a domain stopped outside Kumoi; the VM follows", "vm", v.o.Name, "reason", reason)
	w.notes[v.o.Name] = note{epoch: v.st.Epoch, reason: reason}
	v.rep.Phase, v.rep.SetPower = resource.PhaseStopped, resource.PowerStopped
	w.withNote(&v.rep)
	return w.changed(v.rep)
}

// restartBehind notes a restart Kumoi makes: the reason and the VM's
// restart count (one more than the status, or than the last one this
// worker reported, whichever is higher: a status read before the last
// report was recorded does not hide a restart).
func (w *Worker) restartBehind(v *vmPass, reason string) {
	n := max(v.st.Restarts, w.reported[v.o.Name].Restarts, w.notes[v.o.Name].restarts) + 1
	w.notes[v.o.Name] = note{epoch: v.st.Epoch, reason: reason, restarts: n, pending: true}
	v.restart = true
}

// withNote puts the VM's note (reason, restart count) on a report of its
// placement.
func (w *Worker) withNote(rep *resource.VMReport) {
	if n, ok := w.notes[rep.VM]; ok && n.epoch == rep.Epoch {
		rep.Reason, rep.Restarts = n.reason, n.restarts
	}
}

// acting: Kumoi drives the domain's power as asked, so the note on what
// happened behind its back is over (a restart keeps it, no longer
// pending).
func (w *Worker) acting(v *vmPass) {
	if !v.restart {
		delete(w.notes, v.o.Name)
		return
	}
	if n, ok := w.notes[v.o.Name]; ok {
		n.pending = false
		w.notes[v.o.Name] = n
	}
}

// drivePower starts, stops, suspends or resumes the domain as the VM's
// desired power says. Starting needs mayStart (the host was read ready and
// no stale domain is left); a graceful stop runs in the background.
func (w *Worker) drivePower(ctx context.Context, v *vmPass) error {
	d, name := v.d, v.name
	if v.spec.Power != resource.PowerStopped {
		w.cancelShutdown(name) // asked to run again
	}
	switch v.spec.Power {
	case resource.PowerRunning:
		switch {
		case d.State == hypervisor.StatePaused:
			w.acting(v)
			return w.drv.Resume(ctx, name)
		case !d.State.Active() && !w.mayStart:
			w.logger.Debug("not starting domain: the host is not ready, or a stale domain could not be removed", "domain", name)
		case !d.State.Active() && !w.proofFresh():
			// A slow pass (many starting reports, each a Raft write) or a
			// paused worker: start it in the next pass, on fresh reads.
			w.logger.Info("not starting domain in this pass: its proof that the host is ready is older than fence-after; the next pass will", "domain", name)
			v.deferred = true
		case !d.State.Active():
			w.logger.Debug("starting domain", "domain", name, "state", d.State, "reason", d.Reason, "stopping", w.stopping[name], "last", w.reported[v.o.Name].Phase, "power", v.spec.Power, "modify_index", v.o.ModifyIndex)
			delete(w.stopping, name)
			w.acting(v)
			w.reportStarting(ctx, v.rep)
			// Once more, right before the start: the report is a network
			// round trip in which the worker may have been paused (the
			// chaos harness saw a worker resumed after 8 s start a VM
			// that had moved meanwhile).
			if !w.proofFresh() {
				w.logger.Info("not starting domain in this pass: its proof that the host is ready grew older than fence-after during the starting report; the next pass will", "domain", name)
				v.deferred = true
				return nil
			}
			return w.drv.Start(ctx, name)
		}
	case resource.PowerStopped:
		if d.State.Active() {
			w.stopping[name] = true
			w.acting(v)
			delete(w.seenUp, v.o.Name)
			if v.st.StopForced {
				w.cancelShutdown(name)
				return w.drv.Destroy(ctx, name)
			}
			w.startShutdown(ctx, name)
		}
	case resource.PowerSuspended:
		if !d.State.Active() && !w.mayStart {
			return nil
		}
		if !d.State.Active() && !w.proofFresh() {
			v.deferred = true // the next pass starts it, on fresh reads
			return nil
		}
		if d.State != hypervisor.StatePaused {
			w.acting(v)
		}
		if !d.State.Active() {
			delete(w.stopping, name)
			if err := w.drv.Start(ctx, name); err != nil {
				return err
			}
		}
		if d.State != hypervisor.StatePaused {
			return w.drv.Suspend(ctx, name)
		}
	}
	return nil
}

// observe reads the domain again and reports the phase it is in.
func (w *Worker) observe(ctx context.Context, v *vmPass) (resource.VMReport, bool) {
	if got, err := w.drv.Get(ctx, v.name); err == nil {
		v.d = got
	}
	d := v.d
	if d.State.Active() && !w.stopping[v.name] {
		w.seenUp[v.o.Name] = v.st.Epoch
	}
	v.rep.Phase = phaseOf(d.State)
	if d.State.Active() && v.spec.Power == resource.PowerStopped && w.shuttingDown(v.name) {
		v.rep.Phase = resource.PhaseStopping
	}
	if v.rep.Phase == resource.PhaseStopped && (d.Reason == hypervisor.StopCrashed || d.Reason == hypervisor.StopFailed) {
		v.rep.Reason = "stopped: the guest " + d.Reason
	}
	w.withNote(&v.rep)
	rep, changed := w.changed(v.rep)
	if !changed && v.st.Epoch == rep.Epoch && v.st.Phase != rep.Phase && resource.WorkerPhase(v.st.Phase) {
		// The controllers hold another phase for this placement than the
		// one this worker last reported and still sees: an older report
		// of its own was applied after the newer one (a request delivered
		// late, after a partition healed; docs/jepsen.md, found so far
		// 8). Say it again, or the VM would stay in that phase. Only
		// over a phase a worker reports: the controllers' own (lost,
		// after they evacuated a host they hold down) is theirs to end.
		w.logger.Warn("the controllers record another phase than this host reported and sees; reporting it again",
			"vm", v.o.Name, "epoch", rep.Epoch, "recorded", v.st.Phase, "seen", rep.Phase)
		return rep, true
	}
	return rep, changed
}

// reportStarting tells the controllers a VM is booting, before a start
// that may take a while.
func (w *Worker) reportStarting(ctx context.Context, rep resource.VMReport) {
	rep.Phase, rep.Reason, rep.SetPower = resource.PhaseStarting, "", ""
	w.withNote(&rep)
	api := w.client()
	if _, changed := w.changed(rep); !changed || api == nil {
		return
	}
	rctx, cancel := w.fenceBudget(ctx)
	defer cancel()
	if res, _, err := w.report(rctx, api, resource.ReportRequest{Reports: []resource.VMReport{rep}}); err == nil && len(res.Results) == 1 && res.Results[0].Error == nil {
		w.reported[rep.VM] = rep
	}
}

// changed returns rep and whether it differs from the last report the
// controllers recorded for its VM (or was in a request of unknown outcome
// since: report.go).
func (w *Worker) changed(rep resource.VMReport) (resource.VMReport, bool) {
	if last, ok := w.reported[rep.VM]; ok && last == rep && !w.unsure[resKey(resource.KindVM, rep.VM)] {
		return rep, false
	}
	return rep, true
}

// phaseOf is the VM phase a domain state shows.
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
