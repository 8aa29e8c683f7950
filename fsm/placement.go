package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// Commands of the placement life cycle (workers issue).
const (
	PlaceRequestType     MessageType = 6
	ReportRequestType    MessageType = 7
	HostStateRequestType MessageType = 8
	EvacuateRequestType  MessageType = 9
	ActionRequestType    MessageType = 10
	MigrateRequestType   MessageType = 11
)

// VM actions.
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionSuspend = "suspend"
	ActionResume  = "resume"
	ActionReboot  = "reboot"
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

// MigrateRequest moves a VM to Host (a cold migration: the proposer picks
// the host when the user did not). It is allowed when the VM is not
// running anywhere: unplaced, stopped (power stopped), failed or lost, or
// assigned to a host that has been down or left for at least Grace (the
// same rule as EvacuateRequest, so the old host has fenced itself). The
// target must be ready, schedulable and have room; the VM gets a new
// placement epoch there and keeps its desired power, and the old host's
// worker removes its domain.
type MigrateRequest struct {
	Time  time.Time     `json:"time"`
	VM    string        `json:"vm"`
	Host  string        `json:"host"`
	Grace time.Duration `json:"grace"`
}

// Errors of the placement commands (in Result.Err or Result.ItemErrors).
var (
	ErrNoCapacity   = errors.New("not enough free capacity")
	ErrHostNotReady = errors.New("host does not take placements")
	ErrStaleEpoch   = errors.New("stale placement epoch")
	ErrWrongPhase   = errors.New("operation not allowed in this phase")
	ErrHostBusy     = errors.New("host still has VMs assigned")
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

// Placement binds VM to Host.
type Placement struct {
	VM   string `json:"vm"`
	Host string `json:"host"`
}

// Unplaced says why a pending VM stays pending.
type Unplaced struct {
	VM     string `json:"vm"`
	Reason string `json:"reason"`
}

// ReportRequest carries a worker's observations of the VMs placed on its
// host. A report whose epoch is not the VM's current placement epoch, or
// whose host does not own the VM, is rejected (Result.ItemErrors[i]).
type ReportRequest struct {
	Time    time.Time  `json:"time"`
	Host    string     `json:"host"`
	Reports []VMReport `json:"reports"`
}

// VMReport is one VM's observed state (the wire type of the API).
type VMReport = resource.VMReport

// HostStateRequest records a host's membership state, creating the host
// object when it first joins. The allocation is the FSM's own and is kept.
type HostStateRequest struct {
	Time     time.Time          `json:"time"`
	Name     string             `json:"name"`
	ID       string             `json:"id"` // used when the host is created
	Labels   map[string]string  `json:"labels,omitempty"`
	State    string             `json:"state"`
	Address  string             `json:"address,omitempty"`
	Capacity resource.Resources `json:"capacity"`
	Driver   string             `json:"driver,omitempty"`
	Reason   string             `json:"reason,omitempty"`
}

// EvacuateRequest takes the VMs off a host that has been down for at least
// Grace (checked against the host's status.since and Time): VMs with
// ha=restart go back to pending (to be placed elsewhere with a new epoch),
// the others become lost.
type EvacuateRequest struct {
	Time   time.Time     `json:"time"`
	Host   string        `json:"host"`
	Grace  time.Duration `json:"grace"`
	Reason string        `json:"reason"`
}

// Phases a worker may report.
var reportablePhases = map[string]bool{
	resource.PhaseStarting: true, resource.PhaseRunning: true, resource.PhaseStopping: true,
	resource.PhaseStopped: true, resource.PhaseSuspended: true, resource.PhaseFailed: true,
}

var hostStates = map[string]bool{
	resource.HostReady: true, resource.HostDown: true, resource.HostLeft: true, resource.HostDraining: true,
}

func (w *writer) vm(name string) (*resource.Object, *resource.VMSpec, *resource.VMStatus, error) {
	o, err := getTxn(w.txn, nil, resource.KindVM, name)
	if err != nil {
		return nil, nil, nil, err
	}
	if o == nil {
		return nil, nil, nil, fmt.Errorf("vm %q: %w", name, ErrNotFound)
	}
	spec, err := resource.DecodeSpec[resource.VMSpec](o)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	st, err := resource.DecodeStatus[resource.VMStatus](o)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	return o, spec, st, nil
}

func (w *writer) host(name string) (*resource.Object, *resource.HostSpec, *resource.HostStatus, error) {
	o, err := getTxn(w.txn, nil, resource.KindHost, name)
	if err != nil {
		return nil, nil, nil, err
	}
	if o == nil {
		return nil, nil, nil, fmt.Errorf("host %q: %w", name, ErrNotFound)
	}
	spec, err := resource.DecodeSpec[resource.HostSpec](o)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	spec.Default()
	st, err := resource.DecodeStatus[resource.HostStatus](o)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	return o, spec, st, nil
}

// putVMStatus writes a VM's new status (and marks the hosts involved).
func (w *writer) putVMStatus(o *resource.Object, old, st *resource.VMStatus) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	n := o.Copy()
	n.Status = raw
	n.ModifyIndex = w.index
	w.touch(old.Host)
	w.touch(st.Host)
	return w.put(n, resource.EventUpdated)
}

// touch marks a host whose allocation must be recomputed before commit.
func (w *writer) touch(host string) {
	if host == "" {
		return
	}
	if w.touched == nil {
		w.touched = map[string]bool{}
	}
	w.touched[host] = true
}

// allocated sums the resources of every VM assigned to host (any phase:
// an assigned VM keeps its reservation until it is deleted or evacuated).
func allocatedTxn(txn *memdb.Txn, host string) (resource.Resources, error) {
	var r resource.Resources
	it, err := txn.Get(tableObjects, indexVMHost, host)
	if err != nil {
		return r, err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		spec, err := resource.DecodeSpec[resource.VMSpec](raw.(*resource.Object))
		if err != nil {
			continue
		}
		r.CPUs += spec.CPUs
		r.MemoryMiB += spec.MemoryMiB
	}
	return r, nil
}

// Schedulable returns the capacity placements may use: capacity scaled by
// the host's overcommit ratios.
func Schedulable(spec *resource.HostSpec, st *resource.HostStatus) resource.Resources {
	cpu, mem := spec.CPUOvercommit, spec.MemoryOvercommit
	if cpu < 1 {
		cpu = 1
	}
	if mem < 1 {
		mem = 1
	}
	cpu, mem = min(cpu, resource.MaxOvercommit), min(mem, resource.MaxOvercommit)
	// The explicit float64 conversions round each product before the
	// addition, so no platform fuses them (FMA) into a different result:
	// every controller computes the same limit from the same log.
	return resource.Resources{
		CPUs:      int(math.Floor(float64(float64(min(st.Capacity.CPUs, MaxHostCPUs))*cpu) + 1e-9)),
		MemoryMiB: int64(math.Floor(float64(float64(min(st.Capacity.MemoryMiB, MaxHostMemoryMiB))*mem) + 1e-9)),
	}
}

// Bounds of a host's capacity (so that capacity × overcommit stays exact
// in a float64 and fits an int on every platform).
const (
	MaxHostCPUs      = 1 << 20
	MaxHostMemoryMiB = 1 << 40
)

// fits checks that adding need to host keeps it within its schedulable
// capacity. The allocation is recomputed from the VMs, never trusted.
func (w *writer) fits(host string, spec *resource.HostSpec, st *resource.HostStatus, need resource.Resources, exclude string) error {
	alloc, err := allocatedTxn(w.txn, host)
	if err != nil {
		return err
	}
	if exclude != "" {
		if o, _ := getTxn(w.txn, nil, resource.KindVM, exclude); o != nil {
			if s, err := resource.DecodeSpec[resource.VMSpec](o); err == nil {
				if vst, err := resource.DecodeStatus[resource.VMStatus](o); err == nil && vst.Host == host {
					alloc.CPUs -= s.CPUs
					alloc.MemoryMiB -= s.MemoryMiB
				}
			}
		}
	}
	limit := Schedulable(spec, st)
	if alloc.CPUs+need.CPUs > limit.CPUs || alloc.MemoryMiB+need.MemoryMiB > limit.MemoryMiB {
		return fmt.Errorf("host %q: %w: %d/%d CPUs and %s/%s allocated, %d CPUs and %s needed",
			host, ErrNoCapacity, alloc.CPUs, limit.CPUs, resource.FormatMiB(alloc.MemoryMiB),
			resource.FormatMiB(limit.MemoryMiB), need.CPUs, resource.FormatMiB(need.MemoryMiB))
	}
	return nil
}

// recomputeHosts writes the allocation of every touched host, in name
// order (determinism).
func (w *writer) recomputeHosts() error {
	names := make([]string, 0, len(w.touched))
	for h := range w.touched {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		o, _, st, err := w.host(h)
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		alloc, err := allocatedTxn(w.txn, h)
		if err != nil {
			return err
		}
		if alloc == st.Allocated {
			continue
		}
		st.Allocated = alloc
		raw, err := json.Marshal(st)
		if err != nil {
			return err
		}
		n := o.Copy()
		n.Status = raw
		n.ModifyIndex = w.index
		if err := w.put(n, resource.EventUpdated); err != nil {
			return err
		}
	}
	w.touched = nil
	return nil
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
	_, hspec, hst, err := w.host(p.Host)
	if err != nil {
		return err
	}
	if hst.State != resource.HostReady || hspec.Unschedulable {
		return fmt.Errorf("host %q (%s, unschedulable=%t): %w", p.Host, hst.State, hspec.Unschedulable, ErrHostNotReady)
	}
	if err := w.fits(p.Host, hspec, hst, resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB}, ""); err != nil {
		return err
	}
	nst := resource.VMStatus{Phase: resource.PhaseScheduled, Host: p.Host, Epoch: w.index, Since: now.UTC()}
	return w.putVMStatus(o, st, &nst)
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

func (w *writer) hostState(req *HostStateRequest) error {
	if err := resource.ValidateName(req.Name); err != nil {
		return err
	}
	if _, err := req.Time.UTC().MarshalJSON(); err != nil {
		return resource.Errorf("time", "is out of range: %v", err)
	}
	if !hostStates[req.State] {
		return resource.Errorf("state", "%q is not a host state (ready, down, left, draining)", req.State)
	}
	if req.Capacity.CPUs < 0 || req.Capacity.MemoryMiB < 0 || req.Capacity.CPUs > MaxHostCPUs || req.Capacity.MemoryMiB > MaxHostMemoryMiB {
		return resource.Errorf("capacity", "must be between 0 and %d CPUs and %d MiB", MaxHostCPUs, MaxHostMemoryMiB)
	}
	cur, err := getTxn(w.txn, nil, resource.KindHost, req.Name)
	if err != nil {
		return err
	}
	if cur == nil {
		if err := resource.ValidateLabels(req.Labels); err != nil {
			return err
		}
		spec, err := resource.NormalizeSpec(resource.KindHost, json.RawMessage(`{}`))
		if err != nil {
			return err
		}
		if req.ID == "" {
			return resource.Errorf("id", "must be set by the proposer")
		}
		if raw, err := w.txn.First(tableObjects, indexUID, req.ID); err != nil {
			return fmt.Errorf("fsm: lookup id: %w", err)
		} else if raw != nil {
			return fmt.Errorf("object id %q: %w", req.ID, ErrExists)
		}
		alloc, err := allocatedTxn(w.txn, req.Name)
		if err != nil {
			return err
		}
		st, err := json.Marshal(&resource.HostStatus{
			State: req.State, Address: req.Address, Capacity: req.Capacity, Allocated: alloc,
			Driver: req.Driver, Reason: req.Reason, Since: req.Time.UTC(),
		})
		if err != nil {
			return err
		}
		return w.put(&resource.Object{
			Kind: resource.KindHost, Name: req.Name, ID: req.ID, Labels: cloneLabels(req.Labels),
			CreateIndex: w.index, ModifyIndex: w.index, Spec: spec, Status: st,
		}, resource.EventCreated)
	}
	_, _, st, err := w.host(req.Name)
	if err != nil {
		return err
	}
	nst := *st
	if nst.State != req.State {
		nst.Since = req.Time.UTC()
	}
	nst.State, nst.Address, nst.Capacity, nst.Driver, nst.Reason = req.State, req.Address, req.Capacity, req.Driver, req.Reason
	if nst == *st {
		return nil
	}
	raw, err := json.Marshal(&nst)
	if err != nil {
		return err
	}
	n := cur.Copy()
	n.Status = raw
	n.ModifyIndex = w.index
	return w.put(n, resource.EventUpdated)
}

func (w *writer) evacuate(req *EvacuateRequest) error {
	_, _, hst, err := w.host(req.Host)
	if err != nil {
		return err
	}
	if hst.State != resource.HostDown && hst.State != resource.HostLeft {
		return fmt.Errorf("host %q is %s: %w (only a down or left host is evacuated)", req.Host, hst.State, ErrWrongPhase)
	}
	if req.Time.Sub(hst.Since) < req.Grace {
		return fmt.Errorf("host %q has been %s for %s, less than the grace of %s: %w",
			req.Host, hst.State, req.Time.Sub(hst.Since), req.Grace, ErrWrongPhase)
	}
	it, err := w.txn.Get(tableObjects, indexVMHost, req.Host)
	if err != nil {
		return err
	}
	var vms []*resource.Object
	for raw := it.Next(); raw != nil; raw = it.Next() {
		vms = append(vms, raw.(*resource.Object))
	}
	for _, o := range vms {
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil {
			continue
		}
		st, err := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil {
			continue
		}
		var nst resource.VMStatus
		if spec.HA == resource.HARestart {
			nst = resource.VMStatus{Phase: resource.PhasePending, Reason: req.Reason + "; waiting to be placed elsewhere", Since: req.Time.UTC()}
		} else {
			if st.Phase == resource.PhaseLost {
				continue
			}
			nst = *st
			nst.Phase, nst.Reason, nst.Since = resource.PhaseLost, req.Reason, req.Time.UTC()
		}
		if err := w.putVMStatus(o, st, &nst); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) action(req *ActionRequest) error {
	o, spec, st, err := w.vm(req.VM)
	if err != nil {
		return err
	}
	deny := func(why string) error {
		return fmt.Errorf("vm %q is %s: %w: %s", req.VM, st.Phase, ErrWrongPhase, why)
	}
	power := spec.Power
	nst := *st
	switch req.Action {
	case ActionStart:
		power = resource.PowerRunning
		if st.Phase == resource.PhaseFailed || st.Phase == resource.PhaseLost {
			// Try again from scratch: back to pending, so the VM is
			// placed anew with a new epoch (and its host is freed).
			nst = resource.VMStatus{Phase: resource.PhasePending,
				Reason: "started again after it was " + st.Phase + "; waiting for placement", Since: req.Time.UTC()}
			w.touch(st.Host)
		}
	case ActionStop:
		power = resource.PowerStopped
		if req.Force && st.Host != "" && st.Phase != resource.PhaseStopped {
			nst.StopForced = true
		}
	case ActionSuspend:
		if st.Phase != resource.PhaseRunning {
			return deny("only a running VM can be suspended")
		}
		power = resource.PowerSuspended
	case ActionResume:
		if st.Phase != resource.PhaseSuspended && spec.Power != resource.PowerSuspended {
			return deny("only a suspended VM can be resumed")
		}
		power = resource.PowerRunning
	case ActionReboot:
		if st.Phase != resource.PhaseRunning {
			return deny("only a running VM can be rebooted")
		}
		nst.RebootRequested = w.index
	default:
		return resource.Errorf("action", "%q is not a VM action (start, stop, suspend, resume, reboot)", req.Action)
	}
	if req.Force && req.Action != ActionStop {
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
		raw, err := json.Marshal(&nst)
		if err != nil {
			return err
		}
		n.Status = raw
	}
	n.ModifyIndex = w.index
	return w.put(n, resource.EventUpdated)
}

// CheckMigratable says whether a VM may be moved (MigrateRequest's rule):
// it is not running anywhere, or its host (from, nil when that host no
// longer exists) has been down or left for at least grace at now.
func CheckMigratable(name string, spec *resource.VMSpec, st *resource.VMStatus, from *resource.HostStatus, now time.Time, grace time.Duration) error {
	if st.Host == "" {
		return nil
	}
	gone := from == nil || ((from.State == resource.HostDown || from.State == resource.HostLeft) && now.Sub(from.Since) >= grace)
	stopped := st.Phase == resource.PhaseStopped && spec.Power == resource.PowerStopped
	if gone || stopped || st.Phase == resource.PhaseFailed || st.Phase == resource.PhaseLost {
		return nil
	}
	return fmt.Errorf("vm %q is %s on host %q: %w: stop it first (a VM is moved cold; a VM that is to run moves only when its host has been down or left for the host-down grace)",
		name, st.Phase, st.Host, ErrWrongPhase)
}

func (w *writer) migrate(req *MigrateRequest) error {
	if req.Host == "" {
		return resource.Errorf("host", "is required: the proposer picks the target host")
	}
	o, spec, st, err := w.vm(req.VM)
	if err != nil {
		return err
	}
	if st.Host == req.Host {
		return fmt.Errorf("vm %q is already on host %q: %w", req.VM, req.Host, ErrWrongPhase)
	}
	if st.Host != "" {
		_, _, ohst, err := w.host(st.Host)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := CheckMigratable(req.VM, spec, st, ohst, req.Time, req.Grace); err != nil {
			return err
		}
	}
	_, hspec, hst, err := w.host(req.Host)
	if err != nil {
		return err
	}
	if hst.State != resource.HostReady || hspec.Unschedulable {
		return fmt.Errorf("host %q (%s, unschedulable=%t): %w", req.Host, hst.State, hspec.Unschedulable, ErrHostNotReady)
	}
	if err := w.fits(req.Host, hspec, hst, resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB}, ""); err != nil {
		return err
	}
	reason := "migrated"
	if st.Host != "" {
		reason = "migrated from " + st.Host
	}
	nst := resource.VMStatus{Phase: resource.PhaseScheduled, Host: req.Host, Epoch: w.index, Reason: reason, Since: req.Time.UTC()}
	return w.putVMStatus(o, st, &nst)
}
