package fsm

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// ReportRequest carries a worker's observations of the VMs placed on its
// host. A report whose epoch is not the VM's current placement epoch, or
// whose host does not own the VM, is rejected (Result.ItemErrors[i]).
type ReportRequest struct {
	Time    time.Time  `json:"time"`
	Host    string     `json:"host"`
	Reports []VMReport `json:"reports"`
	// Resources: the host's networks, images and volumes (protocol 7;
	// Result.ResourceErrors[i] is resource report i's error).
	Resources []resource.ResourceReport `json:"resources,omitempty"`
}

// VMReport is one VM's observed state (the wire type of the API).
type VMReport = resource.VMReport

// Phases a worker may report.
var reportablePhases = map[string]bool{
	resource.PhaseStarting: true, resource.PhaseRunning: true, resource.PhaseStopping: true,
	resource.PhaseStopped: true, resource.PhaseSuspended: true, resource.PhaseFailed: true,
}

func (w *writer) report(req *ReportRequest) error {
	if len(req.Reports) > MaxBatchOps {
		return fmt.Errorf("%w: %d reports; the limit is %d", ErrBadPayload, len(req.Reports), MaxBatchOps)
	}
	w.itemErrs = make([]error, len(req.Reports))
	for i, r := range req.Reports {
		w.itemErrs[i] = w.reportOne(req.Time, req.Host, r)
	}
	return nil
}

func (w *writer) reportOne(now time.Time, host string, r VMReport) error {
	if !reportablePhases[r.Phase] {
		return resource.Errorf("phase", "%q cannot be reported by a worker", r.Phase)
	}
	o, spec, st, err := w.vm(r.VM)
	if err != nil {
		return err
	}
	if st.Host == "" || st.Host != host {
		return fmt.Errorf("vm %q is not assigned to host %q (it is on %q): %w", r.VM, host, st.Host, ErrStaleEpoch)
	}
	if st.Epoch != r.Epoch {
		return fmt.Errorf("vm %q: report for epoch %d, current epoch is %d: %w", r.VM, r.Epoch, st.Epoch, ErrStaleEpoch)
	}
	nst := *st
	if nst.Phase != r.Phase {
		nst.Since = now.UTC()
	}
	nst.Phase, nst.Reason = r.Phase, r.Reason
	if r.RebootDone > nst.RebootDone && r.RebootDone <= nst.RebootRequested {
		nst.RebootDone = r.RebootDone
	}
	if r.Restarts == st.Restarts+1 {
		nst.Restarts = r.Restarts // a re-sent report (equal) counts once
	}
	powerChanged := r.SetPower != "" && r.SetPower != spec.Power
	if powerChanged {
		switch r.SetPower {
		case resource.PowerRunning, resource.PowerStopped, resource.PowerSuspended:
		default:
			return resource.Errorf("set_power", "%q is not a power state", r.SetPower)
		}
		spec.Power = r.SetPower
		raw, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		o = o.Copy()
		o.Spec = raw
	}
	if nst == *st && !powerChanged {
		return nil // nothing changed: no write
	}
	return w.putVMStatus(o, st, &nst)
}
