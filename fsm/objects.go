package fsm

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// CreateRequest creates an object. ID and Time are decided by the proposer.
type CreateRequest struct {
	Time   time.Time         `json:"time"`
	Kind   resource.Kind     `json:"kind"`
	Name   string            `json:"name"`
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
	Spec   json.RawMessage   `json:"spec"`
}

// UpdateRequest replaces an object's labels and spec (the user-owned part).
// CAS, when non-zero, must equal the object's modify_index.
type UpdateRequest struct {
	Time   time.Time         `json:"time"`
	Kind   resource.Kind     `json:"kind"`
	Name   string            `json:"name"`
	CAS    uint64            `json:"cas,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Spec   json.RawMessage   `json:"spec"`
}

// StatusRequest replaces an object's status (the system-owned part).
type StatusRequest struct {
	Time   time.Time       `json:"time"`
	Kind   resource.Kind   `json:"kind"`
	Name   string          `json:"name"`
	CAS    uint64          `json:"cas,omitempty"`
	Status json.RawMessage `json:"status"`
}

// DeleteRequest deletes an object. CAS, when non-zero, must equal the
// object's modify_index.
type DeleteRequest struct {
	Time time.Time     `json:"time"`
	Kind resource.Kind `json:"kind"`
	Name string        `json:"name"`
	CAS  uint64        `json:"cas,omitempty"`
}

func (w *writer) create(req *CreateRequest) error {
	if _, ok := resource.Lookup(req.Kind); !ok {
		return resource.Errorf("kind", "unknown kind %q", req.Kind)
	}
	if err := resource.ValidateMeta(req.Name, req.Labels); err != nil {
		return err
	}
	if req.ID == "" {
		return resource.Errorf("id", "must be set by the proposer")
	}
	spec, err := resource.NormalizeSpec(req.Kind, req.Spec)
	if err != nil {
		return err
	}
	if spec, err = resource.ReviseSpec(req.Kind, nil, spec); err != nil {
		return err
	}
	if err := w.checkProjectRef(req.Kind, spec); err != nil {
		return err
	}
	var tbuf [48]byte
	if _, err := req.Time.UTC().AppendText(tbuf[:0]); err != nil {
		return resource.Errorf("time", "is out of range: %v", strings.Replace(err.Error(), "Time.AppendText", "Time.MarshalJSON", 1))
	}
	noHosts := false
	if req.Kind == resource.KindVM {
		noHosts = w.txn.FirstPrefix(tableObjects, indexID, hostsPrefix) == nil
	}
	var status json.RawMessage
	if noHosts {
		// With no host at all, say so from the start, as the scheduler
		// would (so that it has nothing to rewrite).
		st := resource.VMStatus{Phase: resource.PhasePending, Reason: resource.ReasonNoHosts, Since: req.Time.UTC()}
		if status, err = resource.MarshalVMStatus(&st); err != nil {
			return err
		}
		primeStatusFields(w.caches, status, &st)
	} else {
		if status, err = resource.InitialStatus(req.Kind, req.Time); err != nil {
			return err
		}
		if status, err = w.ownAllocation(req.Kind, req.Name, status); err != nil {
			return err
		}
	}
	if cur, err := getTxn(w.txn, nil, req.Kind, req.Name); err != nil {
		return err
	} else if cur != nil {
		return fmt.Errorf("%s %q: %w (pick another name, or update the existing one)", req.Kind, req.Name, ErrExists)
	}
	spec, status, post, err := w.createHook(req, spec, status)
	if err != nil {
		return err
	}
	if err := w.checkObjectCap(req.Kind); err != nil {
		return err
	}
	// The name is free (above); an id already taken is found by the
	// insert itself (putCreated), which saves a lookup per create.
	if err := w.putCreated(&resource.Object{
		Kind:        req.Kind,
		Name:        req.Name,
		ID:          req.ID,
		Labels:      entryLabels(req.Labels),
		CreateIndex: w.index,
		ModifyIndex: w.index,
		Spec:        spec,
		Status:      status,
	}); err != nil {
		return err
	}
	switch req.Kind {
	case resource.KindProject:
		// Its usage: what already names it ("default" only).
		w.recountProject(req.Name)
	case resource.KindNetwork:
		w.recountNet(req.Name)
	}
	if post != nil {
		return post()
	}
	return nil
}

func (w *writer) update(req *UpdateRequest) error {
	if err := resource.ValidateLabels(req.Labels); err != nil {
		return err
	}
	cur, err := w.lookup(req.Kind, req.Name, req.CAS)
	if err != nil {
		return err
	}
	spec, err := resource.NormalizeSpec(req.Kind, req.Spec)
	if err != nil {
		return err
	}
	if spec, err = resource.ReviseSpec(req.Kind, cur.Spec, spec); err != nil {
		return err
	}
	if err := w.checkProjectRef(req.Kind, spec); err != nil {
		return err
	}
	if err := w.recheckPlacedVM(cur, spec); err != nil {
		return err
	}
	spec, status, post, err := w.updateHook(cur, spec, req.Time)
	if err != nil {
		return err
	}
	o := cur.Copy()
	o.Labels = entryLabels(req.Labels)
	o.Spec = spec
	o.Status = status
	o.ModifyIndex = w.index
	if err := w.put(o, resource.EventUpdated); err != nil {
		return err
	}
	if post != nil {
		return post()
	}
	return nil
}

func (w *writer) status(req *StatusRequest) error {
	cur, err := w.lookup(req.Kind, req.Name, req.CAS)
	if err != nil {
		return err
	}
	status, err := resource.NormalizeStatus(req.Kind, req.Status)
	if err != nil {
		return err
	}
	if status, err = w.ownAllocation(cur.Kind, cur.Name, status); err != nil {
		return err
	}
	if err := w.validVMHost(cur.Kind, status); err != nil {
		return err
	}
	w.touchVMHost(cur)
	// The state machine's own fields of a network's or volume's status
	// are recomputed from the VMs.
	switch cur.Kind {
	case resource.KindNetwork:
		w.touchNetwork(cur.Name)
		w.recountNet(cur.Name)
	case resource.KindVolume:
		w.touchVolume(cur.Name)
	case resource.KindProject:
		w.recountProject(cur.Name)
	}
	o := cur.Copy()
	o.Status = status
	o.ModifyIndex = w.index
	w.touchVMHost(o)
	return w.put(o, resource.EventUpdated)
}

func (w *writer) delete(req *DeleteRequest) error {
	cur, err := w.lookup(req.Kind, req.Name, req.CAS)
	if err != nil {
		return err
	}
	if cur.Kind == resource.KindHost {
		if alloc, err := allocatedTxn(w.txn, cur.Name); err != nil {
			return err
		} else if alloc != (resource.Resources{}) {
			return fmt.Errorf("host %q: %w (%d CPUs, %s); delete or move them first", cur.Name, ErrHostBusy, alloc.CPUs, resource.FormatMiB(alloc.MemoryMiB))
		}
	}
	if err := w.deleteHook(cur); err != nil {
		return err
	}
	if err := w.checkProjectDelete(cur); err != nil {
		return err
	}
	w.touchVMHost(cur)
	if cur.Kind == resource.KindVM {
		w.vmWritten()
	}
	w.wrote = true
	if err := w.txn.Delete(tableObjects, cur); err != nil {
		return fmt.Errorf("fsm: delete %s: %w", cur, err)
	}
	w.projectDeleted(cur)
	if cur.Kind == resource.KindVM {
		w.moveHeld(cur, -1)
	}
	w.objects = append(w.objects, cur)
	w.events = append(w.events, resource.Event{Index: w.index, Type: resource.EventDeleted, Kind: cur.Kind, Name: cur.Name, Object: cur, Accessor: w.accessor})
	n := len(w.events)
	if err := w.afterVMDelete(cur); err != nil {
		return err
	}
	// The VM's volumes deleted with it leave their project.
	for _, ev := range w.events[n:] {
		if ev.Type == resource.EventDeleted && ev.Object != nil {
			w.projectDeleted(ev.Object)
		}
	}
	return nil
}

// validVMHost: status.host names a host or is empty; a migration under
// way (status.migration) names another host as its target.
func (w *writer) validVMHost(kind resource.Kind, status json.RawMessage) error {
	if kind != resource.KindVM {
		return nil
	}
	var st resource.VMStatus
	if err := json.Unmarshal(status, &st); err != nil {
		return fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if m := st.Migration; m != nil {
		// The vm_target index and the allocations count the VM on the
		// target too: it must name another host, as status.host does.
		if err := resource.ValidateName(m.Target); err != nil {
			return resource.Errorf("status.migration.target", "%v", err)
		}
		if st.Host == "" || m.Target == st.Host {
			return resource.Errorf("status.migration.target", "a migration moves a VM from its host to another (host %q, target %q)", st.Host, m.Target)
		}
	}
	if st.Host == "" {
		return nil
	}
	if err := resource.ValidateName(st.Host); err != nil {
		return resource.Errorf("status.host", "%v", err)
	}
	return nil
}
