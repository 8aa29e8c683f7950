package fsm

import (
	"fmt"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// PlaceRequest is a scheduler plan: each placement binds a pending VM to a
// ready host; the placement's epoch is the log index. Placements are
// checked one by one (capacity is re-checked here, at apply time) and fail
// independently: Result.ItemErrors[i] is placement i's error. Unplaced
// records why a pending VM could not be placed.
type PlaceRequest struct {
	Time       time.Time   `json:"time"`
	Placements []Placement `json:"placements,omitempty"`
	Unplaced   []Unplaced  `json:"unplaced,omitempty"`
}

// Placement binds VM to Host. Reason, if set, becomes the VM's status
// reason (e.g. the soft affinity rule the placement breaks).
type Placement struct {
	VM     string `json:"vm"`
	Host   string `json:"host"`
	Reason string `json:"reason,omitempty"`
}

// Unplaced says why a pending VM stays pending.
type Unplaced struct {
	VM     string `json:"vm"`
	Reason string `json:"reason"`
}

func (w *writer) place(req *PlaceRequest) error {
	if len(req.Placements)+len(req.Unplaced) > MaxBatchOps {
		return fmt.Errorf("%w: plan has %d entries; the limit is %d", ErrBadPayload, len(req.Placements)+len(req.Unplaced), MaxBatchOps)
	}
	w.itemErrs = make([]error, len(req.Placements))
	for i, p := range req.Placements {
		w.itemErrs[i] = w.placeOne(req.Time, p)
	}
	for _, u := range req.Unplaced {
		o, _, st, err := w.vm(u.VM)
		if err != nil || st.Phase != resource.PhasePending || st.Reason == u.Reason {
			continue
		}
		nst := *st
		nst.Reason = u.Reason
		if err := w.putVMStatus(o, st, &nst); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) placeOne(now time.Time, p Placement) error {
	o, spec, st, err := w.vm(p.VM)
	if err != nil {
		return err
	}
	if st.Phase != resource.PhasePending {
		return fmt.Errorf("vm %q is %s, not pending: %w", p.VM, st.Phase, ErrWrongPhase)
	}
	primeSpecFields(w.caches, o.Spec, spec)
	ho, hspec, hst, err := w.hostRead(p.Host) // read only
	if err != nil {
		return err
	}
	if hst.State != resource.HostReady || hspec.Unschedulable {
		return fmt.Errorf("host %q (%s, unschedulable=%t): %w", p.Host, hst.State, hspec.Unschedulable, ErrHostNotReady)
	}
	use, err := w.fitsUse(p.Host, hspec, hst, resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB})
	if err != nil {
		return err
	}
	// Requirements and hard affinity (affinity.go): no plan breaks them.
	if err := w.checkRules(p.VM, spec, ho, hspec, hst, &use); err != nil {
		return err
	}
	nst := resource.VMStatus{Phase: resource.PhaseScheduled, Host: p.Host, Epoch: w.index, Reason: p.Reason, Since: now.UTC()}
	if hasDevices(spec) {
		// Addresses the VM lacks (its network was full), and the host
		// its volumes are on.
		if o, err = w.placeDevices(o, spec, p.Host, now); err != nil {
			return err
		}
		return w.putVMStatus(o, st, &nst)
	}
	// The host's use, counted once per entry, grows by this VM.
	return w.putPlaced(o, spec, st, &nst, use)
}
