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

func (w *writer) report(req *ReportRequest) error {
	if len(req.Reports) > MaxBatchOps {
		return fmt.Errorf("%w: %d reports; the limit is %d", ErrBadPayload, len(req.Reports), MaxBatchOps)
	}
	if len(req.Resources) > MaxBatchOps {
		return fmt.Errorf("%w: %d resource reports; the limit is %d", ErrBadPayload, len(req.Resources), MaxBatchOps)
	}
	w.itemErrs = make([]error, len(req.Reports))
	for i, r := range req.Reports {
		w.itemErrs[i] = w.reportOne(req.Time, req.Host, r)
	}
	if len(req.Resources) > 0 {
		w.resErrs = make([]error, len(req.Resources))
		for i, r := range req.Resources {
			w.resErrs[i] = w.reportResource(req.Time, req.Host, r)
		}
	}
	return nil
}

// Host states a worker may report of a network, image or volume.
var resourceStates = map[string]bool{
	resource.HostResourceReady: true, resource.HostResourcePending: true, resource.HostResourceMissing: true,
	resource.HostResourceFailed: true, resource.HostResourceRemoved: true, resource.HostResourceRecreate: true,
}

// reportResource records a worker's observation of a network, image or
// volume on its host: a network's or image's status.hosts[host] (removed
// drops it); a volume's phase, reason and size, only while the volume is
// bound to host (and id, if given, is the volume's).
func (w *writer) reportResource(now time.Time, host string, r resource.ResourceReport) error {
	if !resourceStates[r.State] {
		return resource.Errorf("state", "%q is not a state a worker reports", r.State)
	}
	if host == "" {
		return resource.Errorf("host", "is required")
	}
	switch r.Kind {
	case resource.KindNetwork, resource.KindImage, resource.KindVolume:
	default:
		return resource.Errorf("kind", "must be network, image or volume (got %q)", r.Kind)
	}
	o, err := getTxn(w.txn, nil, r.Kind, r.Name)
	if err != nil {
		return err
	}
	if o == nil {
		return fmt.Errorf("%s %q: %w", r.Kind, r.Name, ErrNotFound)
	}
	if r.ID != "" && r.ID != o.ID {
		return fmt.Errorf("%s %q: the report is of id %s, the object's id is %s (it was deleted and made again): %w", r.Kind, r.Name, r.ID, o.ID, ErrStaleEpoch)
	}
	late := func(recorded uint64) error {
		if r.Seq == 0 || r.Seq > recorded {
			return nil
		}
		return fmt.Errorf("%s %q: report %d was sent before report %d, already recorded for host %s (a late delivery): %w",
			r.Kind, r.Name, r.Seq, recorded, host, ErrStaleEpoch)
	}
	var next any
	switch r.Kind {
	case resource.KindNetwork:
		st, err := resource.DecodeStatus[resource.NetworkStatus](o)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadPayload, err)
		}
		if err := late(max(st.Hosts[host].Seq, st.RemovedSeq[host])); err != nil {
			return err
		}
		if !setHostState(&st.Hosts, &st.RemovedSeq, host, r, now) {
			return nil
		}
		next = st
	case resource.KindImage:
		st, err := resource.DecodeStatus[resource.ImageStatus](o)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadPayload, err)
		}
		if err := late(max(st.Hosts[host].Seq, st.RemovedSeq[host])); err != nil {
			return err
		}
		if !setHostState(&st.Hosts, &st.RemovedSeq, host, r, now) {
			return nil
		}
		next = st
	case resource.KindVolume:
		st, err := resource.DecodeStatus[resource.VolumeStatus](o)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadPayload, err)
		}
		if st.Host != host {
			return fmt.Errorf("volume %q is not on host %q (it is on %q): %w", r.Name, host, st.Host, ErrStaleEpoch)
		}
		if err := late(st.ReportSeq); err != nil {
			return err
		}
		nst := *st
		if r.Seq != 0 {
			nst.ReportSeq = r.Seq // recorded even when nothing else changes
		}
		switch r.State {
		case resource.HostResourceReady, resource.HostResourceRecreate:
			nst.Phase = resource.VolumeReady
		case resource.HostResourceMissing, resource.HostResourceRemoved:
			nst.Phase = resource.VolumeMissing
		case resource.HostResourceFailed:
			nst.Phase = resource.VolumeFailed
		case resource.HostResourcePending:
			if nst == *st {
				return nil
			}
			return w.putStatus(o, &nst) // the sequence alone
		}
		nst.Reason = r.Reason
		if r.SizeMiB > 0 {
			nst.SizeMiB = r.SizeMiB
		}
		if nst.Phase != st.Phase {
			nst.Since = now.UTC()
		}
		if nst == *st {
			return nil
		}
		next = &nst
	}
	return w.putStatus(o, next)
}

// setHostState sets (or, for removed, drops) host's entry of a hosts map,
// with the report's sequence (kept when it has none); a removal's
// sequence goes to removedSeq, so that what was sent before it is still
// refused once the entry is gone. false when nothing changed.
func setHostState(hosts *map[string]resource.HostResourceState, removedSeq *map[string]uint64, host string, r resource.ResourceReport, now time.Time) bool {
	cur, had := (*hosts)[host]
	if r.State == resource.HostResourceRemoved {
		changed := had
		delete(*hosts, host)
		if r.Seq != 0 && (*removedSeq)[host] != r.Seq {
			if *removedSeq == nil {
				*removedSeq = map[string]uint64{}
			}
			(*removedSeq)[host] = r.Seq // the sequence alone, if nothing else
			changed = true
		}
		return changed
	}
	seq := cur.Seq
	if r.Seq != 0 {
		seq = r.Seq
	}
	_, wasRemoved := (*removedSeq)[host]
	if r.Seq != 0 && wasRemoved {
		// The entry carries the sequence again (a newer one).
		delete(*removedSeq, host)
		if len(*removedSeq) == 0 {
			*removedSeq = nil
		}
	}
	if had && cur.State == r.State && cur.Reason == r.Reason && cur.Seq == seq && !(r.Seq != 0 && wasRemoved) {
		return false
	}
	since := now.UTC()
	if had && cur.State == r.State {
		since = cur.Since
	}
	if *hosts == nil {
		*hosts = map[string]resource.HostResourceState{}
	}
	(*hosts)[host] = resource.HostResourceState{State: r.State, Reason: r.Reason, Since: since, Seq: seq}
	return true
}

func (w *writer) reportOne(now time.Time, host string, r VMReport) error {
	if !resource.WorkerPhase(r.Phase) {
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
	if r.Seq != 0 && r.Seq <= st.ReportSeq {
		// Sent before a report already recorded for this placement, and
		// delivered late (a request a partition held back): recording it
		// would put back an older state (docs/jepsen.md, found so far 8).
		return fmt.Errorf("vm %q: report %d was sent before report %d, already recorded for this placement (a late delivery): %w",
			r.VM, r.Seq, st.ReportSeq, ErrStaleEpoch)
	}
	nst := *st
	if r.Seq != 0 {
		// Recorded even when nothing else changes: an older report that
		// differs must not pass after it.
		nst.ReportSeq = r.Seq
	}
	if m := st.Migration; m != nil {
		switch {
		case r.Phase == resource.PhaseRunning || r.Phase == resource.PhaseStarting || m.State != resource.MigrationPreparing:
			// The guest runs on the source while it migrates; once the
			// source has begun, only its migration events end it (a
			// report then is a late one, or the guest paused for the
			// switch-over).
			r.Phase, r.Reason = st.Phase, st.Reason
		default:
			// It stopped (or failed, or was paused) on the source before
			// the source began: the migration ends with it.
			nst.Migration = nil
			r.Reason += " (the migration to " + m.Target + " ended)"
		}
	}
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
