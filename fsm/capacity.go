package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// allocatedTxn sums the resources of every VM assigned to host (any phase:
// an assigned VM keeps its reservation until it is deleted or evacuated).
func allocatedTxn(txn *memdb.Txn, host string) (resource.Resources, error) {
	u, err := hostUseTxn(txn, host)
	return u.alloc, err
}

// hostUse is what a host's VMs hold: their resources and their number.
type hostUse struct {
	alloc resource.Resources
	vms   int
}

// hostUseTxn is allocatedTxn with the number of VMs assigned to host. A
// VM migrating to host counts there too (a migration reserves both
// hosts until it ends). It decodes of each VM's spec only what it counts
// (cpus and memory_mib, resource.Resources has VMSpec's names and types
// for them): every spec in the state was validated as a whole VMSpec
// when it was written, so this is what a whole decode gives, at a
// fraction of the cost (it runs once per host per placement entry).
func hostUseTxn(txn *memdb.Txn, host string) (hostUse, error) {
	var u hostUse
	for _, index := range []string{indexVMHost, indexVMTarget} {
		it, err := txn.Get(tableObjects, index, host)
		if err != nil {
			return u, err
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			u.vms++
			var r resource.Resources
			if err := json.Unmarshal(raw.(*resource.Object).Spec, &r); err != nil {
				continue
			}
			u.alloc.CPUs += r.CPUs
			u.alloc.MemoryMiB += r.MemoryMiB
		}
	}
	return u, nil
}

// fits checks that adding need to host keeps it within its schedulable
// capacity. The allocation is recomputed from the VMs, never trusted.
func (w *writer) fits(host string, spec *resource.HostSpec, st *resource.HostStatus, need resource.Resources) error {
	_, err := w.fitsUse(host, spec, st, need)
	return err
}

// fitsUse is fits, and returns what the host's VMs hold (for the
// placement rules, affinity.go).
func (w *writer) fitsUse(host string, spec *resource.HostSpec, st *resource.HostStatus, need resource.Resources) (hostUse, error) {
	u, err := w.hostUse(host)
	if err != nil {
		return u, err
	}
	alloc := u.alloc
	limit := resource.Schedulable(spec, st)
	if alloc.CPUs+need.CPUs > limit.CPUs || alloc.MemoryMiB+need.MemoryMiB > limit.MemoryMiB {
		return u, fmt.Errorf("host %q: %w: %d/%d CPUs and %s/%s allocated, %d CPUs and %s needed",
			host, ErrNoCapacity, alloc.CPUs, limit.CPUs, resource.FormatMiB(alloc.MemoryMiB),
			resource.FormatMiB(limit.MemoryMiB), need.CPUs, resource.FormatMiB(need.MemoryMiB))
	}
	return u, nil
}

// recheckPlacedVM refuses a spec change that would overcommit the host a
// VM is placed on.
func (w *writer) recheckPlacedVM(cur *resource.Object, spec json.RawMessage) error {
	if cur.Kind != resource.KindVM {
		return nil
	}
	st, err := resource.DecodeStatus[resource.VMStatus](cur)
	if err != nil || st.Host == "" {
		return nil
	}
	var ns resource.VMSpec
	if err := json.Unmarshal(spec, &ns); err != nil {
		return fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if st.Migration != nil && !bytes.Equal(spec, cur.Spec) {
		return fmt.Errorf("vm %q is migrating to host %q: %w: change its spec once the migration has ended (or abort it: kumoi vm migrate %s --abort)",
			cur.Name, st.Migration.Target, ErrWrongPhase, cur.Name)
	}
	w.touch(st.Host)
	_, hspec, hst, err := w.host(st.Host)
	if errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	old, err := resource.DecodeSpec[resource.VMSpec](cur)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	alloc, err := allocatedTxn(w.txn, st.Host)
	if err != nil {
		return err
	}
	alloc.CPUs -= old.CPUs
	alloc.MemoryMiB -= old.MemoryMiB
	limit := resource.Schedulable(hspec, hst)
	if (ns.CPUs > old.CPUs && alloc.CPUs+ns.CPUs > limit.CPUs) || (ns.MemoryMiB > old.MemoryMiB && alloc.MemoryMiB+ns.MemoryMiB > limit.MemoryMiB) {
		return fmt.Errorf("cannot resize vm %q on its host %q: %w", cur.Name, st.Host, ErrNoCapacity)
	}
	return nil
}

// ownAllocation sets a host status's allocated to the sum of its VMs.
func (w *writer) ownAllocation(kind resource.Kind, name string, status json.RawMessage) (json.RawMessage, error) {
	if kind != resource.KindHost {
		return status, nil
	}
	var hs resource.HostStatus
	if err := json.Unmarshal(status, &hs); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	alloc, err := allocatedTxn(w.txn, name)
	if err != nil {
		return nil, err
	}
	hs.Allocated = alloc
	return json.Marshal(&hs)
}

// mark adds name (unless empty) to the set *m, made on first use.
func mark(m *map[string]bool, name string) {
	if name == "" {
		return
	}
	if *m == nil {
		*m = map[string]bool{}
	}
	(*m)[name] = true
}

// touch marks a host whose allocation must be recomputed before commit.
func (w *writer) touch(host string) {
	mark(&w.touched, host)
}

// touchVMHost marks the host a VM object is assigned to (and the target
// of its migration under way).
func (w *writer) touchVMHost(o *resource.Object) {
	if o.Kind != resource.KindVM {
		return
	}
	if st, err := resource.DecodeStatus[resource.VMStatus](o); err == nil {
		w.touch(st.Host)
		if st.Migration != nil {
			w.touch(st.Migration.Target)
		}
	}
}

// recomputeHosts writes the allocation of every touched host, in name
// order (determinism).
func (w *writer) recomputeHosts() error {
	for _, h := range sortedKeys(w.touched) {
		o, _, st, err := w.host(h)
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		u, err := w.hostUse(h)
		if err != nil {
			return err
		}
		alloc := u.alloc
		if alloc == st.Allocated {
			continue
		}
		st.Allocated = alloc
		if err := w.putStatus(o, st); err != nil {
			return err
		}
	}
	w.touched = nil
	return nil
}
