package fsm

import (
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// The placement rules the state machine enforces whatever the leader
// planned (issue 14): a VM's requirements expression and the hard
// affinity rules of its group. placeOne and migrate apply them.

// ErrPlacementRule is a placement that breaks a VM's requirements or a
// hard affinity rule. Such errors also match ErrHostNotReady (the host
// does not take this VM), which the API maps to 409.
var ErrPlacementRule = errors.New("placement rule not met")

// maxCachedExprs bounds the state machine's cache of compiled
// expressions (by source). Compiling is pure: the cache changes cost,
// never a result.
const maxCachedExprs = 1024

var fsmExprs = resource.NewExprCache(maxCachedExprs)

func ruleError(format string, args ...any) error {
	return fmt.Errorf("%w (%w): %s", ErrPlacementRule, ErrHostNotReady, fmt.Sprintf(format, args...))
}

// GroupMember is a VM of an affinity group and the host it is assigned
// to ("" if none).
type GroupMember struct {
	VM, Host string
	Hard     bool
	Rule     string
}

// groupMembersTxn lists the VMs of an affinity group, in name order.
func groupMembersTxn(txn *memdb.Txn, group string) ([]GroupMember, error) {
	names, err := vmsByDevice(txn, indexVMGroup, group)
	if err != nil {
		return nil, err
	}
	out := make([]GroupMember, 0, len(names))
	for _, n := range names {
		o, err := getTxn(txn, nil, resource.KindVM, n)
		if err != nil {
			return nil, err
		}
		if o == nil {
			continue
		}
		spec, st, err := decodeState[resource.VMSpec, resource.VMStatus](o)
		if err != nil || spec.Affinity == nil || spec.Affinity.Group != group {
			continue
		}
		out = append(out, GroupMember{VM: n, Host: st.Host, Hard: spec.Affinity.Hard, Rule: spec.Affinity.Rule})
	}
	return out, nil
}

// GroupMembers lists the VMs of an affinity group with their hosts, in
// name order.
func (s *Store) GroupMembers(group string) ([]GroupMember, error) {
	return groupMembersTxn(s.ReadTxn(), group)
}

// hostAttrsTxn is a host's attributes for the expressions, its
// allocation and VM count recomputed from the VMs (never trusted).
func hostAttrsTxn(txn *memdb.Txn, o *resource.Object, spec *resource.HostSpec, st *resource.HostStatus) (*resource.HostAttrs, error) {
	var alloc resource.Resources
	n := 0
	it, err := txn.Get(tableObjects, indexVMHost, o.Name)
	if err != nil {
		return nil, err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n++
		vs, err := resource.DecodeSpec[resource.VMSpec](raw.(*resource.Object))
		if err != nil {
			continue
		}
		alloc.CPUs += vs.CPUs
		alloc.MemoryMiB += vs.MemoryMiB
	}
	hs := *st
	hs.Allocated = alloc
	a := resource.NewHostAttrs(o.Name, o.Labels, &hs, resource.Schedulable(spec, st), n)
	return &a, nil
}

// checkRules refuses to put vm on host when the host fails the VM's
// requirements, or when a hard affinity rule forbids it: the VM's own
// (anti-affine: no other member of its group on the host; affine: on
// a host of the group's placed members, if any), and a hard anti-affine
// member's (no other member joins it). Called with the host ready and
// the capacity checked.
func (w *writer) checkRules(vm string, spec *resource.VMSpec, host string) error {
	if spec.Requirements == "" && spec.Affinity == nil {
		return nil
	}
	if spec.Requirements != "" {
		ho, hspec, hst, err := w.host(host)
		if err != nil {
			return err
		}
		e, err := fsmExprs.Compile(spec.Requirements, true)
		if err != nil {
			return ruleError("vm %q: requirements do not compile: %v", vm, err)
		}
		attrs, err := hostAttrsTxn(w.txn, ho, hspec, hst)
		if err != nil {
			return err
		}
		if !e.Match(attrs) {
			return ruleError("host %q does not satisfy the requirements of vm %q: %s", host, vm, spec.Requirements)
		}
	}
	a := spec.Affinity
	if a == nil {
		return nil
	}
	members, err := groupMembersTxn(w.txn, a.Group)
	if err != nil {
		return err
	}
	var here, elsewhere []string
	for _, m := range members {
		if m.VM == vm || m.Host == "" {
			continue
		}
		if m.Host == host {
			here = append(here, m.VM)
			if m.Hard && m.Rule == resource.AffinityAntiAffine {
				return ruleError("hard anti-affinity of group %s: vm %q is on host %q", a.Group, m.VM, host)
			}
		} else {
			elsewhere = append(elsewhere, m.Host)
		}
	}
	if !a.Hard {
		return nil
	}
	switch a.Rule {
	case resource.AffinityAntiAffine:
		if len(here) > 0 {
			return ruleError("hard anti-affinity of group %s: vm %q is on host %q", a.Group, here[0], host)
		}
	case resource.AffinityAffine:
		if len(here) == 0 && len(elsewhere) > 0 {
			slices.Sort(elsewhere)
			return ruleError("hard affinity of group %s: its members are on %s, not %q", a.Group, slices.Compact(elsewhere)[0], host)
		}
	}
	return nil
}
