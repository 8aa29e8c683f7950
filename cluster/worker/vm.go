package worker

import (
	"context"

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
}

// convergeVM acts on one VM and returns the report to send, if it changed:
// make sure its domain is this VM's and defined for this placement, notice
// what happened behind Kumoi's back, drive the domain to the desired power,
// reboot if asked, and report the phase the domain is in.
func (w *Worker) convergeVM(ctx context.Context, o *resource.Object, spec *resource.VMSpec, st *resource.VMStatus, d hypervisor.DomainInfo, exists bool) (resource.VMReport, bool) {
	v := &vmPass{o: o, spec: spec, st: st, name: hypervisor.DomainName(o.Name), d: d,
		rep: resource.VMReport{VM: o.Name, Epoch: st.Epoch}}
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
	if !exists || d.Epoch != st.Epoch || d.VMID != o.ID || d.Cluster != w.ClusterID() {
		if err := w.define(ctx, v); err != nil {
			return w.fail(v, "define failed: "+err.Error())
		}
	}
	if v.d.State.Active() && !w.stopping[v.name] {
		w.seenUp[o.Name] = st.Epoch
	}
	if rep, changed, done := w.behindKumoisBack(v); done {
		return rep, changed
	}
	if err := w.drivePower(ctx, v); err != nil {
		return w.fail(v, err.Error())
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

// define defines the VM's domain for its current placement (epoch).
func (w *Worker) define(ctx context.Context, v *vmPass) error {
	ds := hypervisor.DomainSpec{Name: v.name, VMID: v.o.ID, Epoch: v.st.Epoch, Cluster: w.ClusterID(), CPUs: v.spec.CPUs, MemoryMiB: v.spec.MemoryMiB}
	if b := v.spec.Boot; b != nil {
		ds.Boot = hypervisor.Boot{Image: b.Image, ImageFormat: hypervisor.ImageFormat(b.ImageFormat), Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: b.Cmdline}
	}
	if err := w.drv.Define(ctx, ds); err != nil {
		return err
	}
	if got, err := w.drv.Get(ctx, v.name); err == nil {
		v.d = got
	}
	return nil
}

// behindKumoisBack notices a guest that powered itself off or crashed
// after it was seen up in this placement (and not stopped by Kumoi). A
// power-off makes the VM stopped (desired power follows); a crash of an
// ha=none VM fails it. When that decides the pass, done is true and rep
// and changed are what convergeVM returns; a crashed ha=restart VM is
// started again by the rest of the pass.
func (w *Worker) behindKumoisBack(v *vmPass) (rep resource.VMReport, changed, done bool) {
	d, o := v.d, v.o
	if d.State != hypervisor.StateShutoff && d.State != hypervisor.StateCrashed {
		return v.rep, false, false
	}
	if w.stopping[v.name] || v.spec.Power != resource.PowerRunning || w.seenUp[o.Name] != v.st.Epoch {
		return v.rep, false, false
	}
	delete(w.seenUp, o.Name)
	switch d.Reason {
	case hypervisor.StopShutdown:
		v.rep.Phase, v.rep.Reason, v.rep.SetPower = resource.PhaseStopped, "the guest powered itself off", resource.PowerStopped
		rep, changed = w.changed(v.rep)
		return rep, changed, true
	case hypervisor.StopCrashed, hypervisor.StopFailed:
		if v.spec.HA != resource.HARestart {
			rep, changed = w.fail(v, "the guest "+d.Reason+"; ha is none, so it is not restarted")
			return rep, changed, true
		}
		w.logger.Info("restarting a crashed VM (ha=restart)", "vm", o.Name)
	}
	return v.rep, false, false
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
			return w.drv.Resume(ctx, name)
		case !d.State.Active() && !w.mayStart:
			w.logger.Debug("not starting domain: the host is not ready, or a stale domain could not be removed", "domain", name)
		case !d.State.Active():
			w.logger.Debug("starting domain", "domain", name, "state", d.State, "reason", d.Reason, "stopping", w.stopping[name], "last", w.reported[v.o.Name].Phase, "power", v.spec.Power, "modify_index", v.o.ModifyIndex)
			delete(w.stopping, name)
			w.reportStarting(ctx, v.rep)
			return w.drv.Start(ctx, name)
		}
	case resource.PowerStopped:
		if d.State.Active() {
			w.stopping[name] = true
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
	return w.changed(v.rep)
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

// changed returns rep and whether it differs from the last report the
// controllers recorded for its VM.
func (w *Worker) changed(rep resource.VMReport) (resource.VMReport, bool) {
	if last, ok := w.reported[rep.VM]; ok && last == rep {
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
