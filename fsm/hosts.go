package fsm

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kumoi/kumoi/resource"
)

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
	// ForeignDomains and ForeignDomainCount are the host's Kumoi domains
	// of another cluster, as its worker last advertised them (optional:
	// sent only when there are some).
	ForeignDomains     []string `json:"foreign_domains,omitempty"`
	ForeignDomainCount int      `json:"foreign_domain_count,omitempty"`
}

// cloneStrings copies s (nil for an empty one, as JSON reads it back).
func cloneStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

var hostStates = map[string]bool{
	resource.HostReady: true, resource.HostDown: true, resource.HostLeft: true, resource.HostDraining: true,
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
	if req.Capacity.CPUs < 0 || req.Capacity.MemoryMiB < 0 || req.Capacity.CPUs > resource.MaxHostCPUs || req.Capacity.MemoryMiB > resource.MaxHostMemoryMiB {
		return resource.Errorf("capacity", "must be between 0 and %d CPUs and %d MiB", resource.MaxHostCPUs, resource.MaxHostMemoryMiB)
	}
	if len(req.ForeignDomains) > resource.MaxForeignDomains {
		return resource.Errorf("foreign_domains", "names %d domains; at most %d", len(req.ForeignDomains), resource.MaxForeignDomains)
	}
	for _, n := range req.ForeignDomains {
		if n == "" || len(n) > 253 {
			return resource.Errorf("foreign_domains", "%q is not a domain name", n)
		}
	}
	if req.ForeignDomainCount < len(req.ForeignDomains) {
		return resource.Errorf("foreign_domain_count", "is %d, fewer than the %d domains named", req.ForeignDomainCount, len(req.ForeignDomains))
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
			ForeignDomains: cloneStrings(req.ForeignDomains), ForeignDomainCount: req.ForeignDomainCount,
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
	nst.ForeignDomains, nst.ForeignDomainCount = cloneStrings(req.ForeignDomains), req.ForeignDomainCount
	if nst.SameObservation(st) {
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
