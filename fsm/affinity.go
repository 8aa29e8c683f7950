package fsm

import (
	"encoding/json"
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
	// Target is the host the VM is migrating to ("" if none): the rules
	// count the VM on both hosts until the migration ends.
	Target string
	Hard   bool
	Rule   string
}

// groupMembersTxn lists the VMs of an affinity group, in name order.
func groupMembersTxn(txn *memdb.Txn, group string) ([]GroupMember, error) {
	return groupMembersBy(txn, group, groupMember)
}

// groupMembersBy is groupMembersTxn, reading each VM with member.
func groupMembersBy(txn *memdb.Txn, group string, member func(*resource.Object, string) (GroupMember, bool)) ([]GroupMember, error) {
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
		if m, ok := member(o, group); ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// memberSpec is what the rules read of a member's spec.
type memberSpec struct {
	Affinity *resource.Affinity `json:"affinity"`
}

// memberStatus is what the rules read of a member's status: its host
// and the target of its migration under way.
type memberStatus struct {
	Host      string `json:"host"`
	Migration *struct {
		Target string `json:"target"`
	} `json:"migration"`
}

func (st *memberStatus) target() string {
	if st.Migration == nil {
		return ""
	}
	return st.Migration.Target
}

// groupMember is VM o as a member of group (false: o is not one, or its
// spec or status does not decode).
func groupMember(o *resource.Object, group string) (GroupMember, bool) {
	// Only the fields the rules read: members are read at every
	// placement of the group.
	var spec memberSpec
	if json.Unmarshal(o.Spec, &spec) != nil {
		return GroupMember{}, false
	}
	return memberOf(o, group, spec.Affinity, func() (memberStatus, bool) {
		var st memberStatus
		if len(o.Status) > 0 && json.Unmarshal(o.Status, &st) != nil {
			return st, false
		}
		return st, true
	})
}

// memberOf is groupMember from o's decoded affinity a, and status, which
// decodes its status.
func memberOf(o *resource.Object, group string, a *resource.Affinity, status func() (memberStatus, bool)) (GroupMember, bool) {
	if a == nil || a.Group != group {
		return GroupMember{}, false
	}
	st, ok := status()
	if !ok {
		return GroupMember{}, false
	}
	return GroupMember{VM: o.Name, Host: st.Host, Target: st.target(), Hard: a.Hard, Rule: a.Rule}, true
}

// GroupMembers lists the VMs of an affinity group with their hosts, in
// name order.
func (s *Store) GroupMembers(group string) ([]GroupMember, error) {
	return groupMembersTxn(s.ReadTxn(), group)
}

// PlacedGroupMembers is GroupMembers without the members on no host: a
// VM's spec is read only when its status names a host (the pending
// members of a group cost a status decode each).
func (s *Store) PlacedGroupMembers(group string) ([]GroupMember, error) {
	return groupMembersBy(s.ReadTxn(), group, placedMember)
}

// placedMember is groupMember, false for a member on no host.
func placedMember(o *resource.Object, group string) (GroupMember, bool) {
	var st memberStatus
	if len(o.Status) == 0 || json.Unmarshal(o.Status, &st) != nil || st.Host == "" {
		return GroupMember{}, false
	}
	var spec memberSpec
	if json.Unmarshal(o.Spec, &spec) != nil {
		return GroupMember{}, false
	}
	return memberOf(o, group, spec.Affinity, func() (memberStatus, bool) { return st, true })
}

// hostAttrs is a host's attributes for the expressions, from what its
// VMs hold (u; nil: recomputed from the VMs, never trusted).
func (w *writer) hostAttrs(ho *resource.Object, spec *resource.HostSpec, st *resource.HostStatus, u *hostUse) (*resource.HostAttrs, error) {
	if u == nil {
		hu, err := hostUseTxn(w.txn, ho.Name)
		if err != nil {
			return nil, err
		}
		u = &hu
	}
	hs := *st
	hs.Allocated = u.alloc
	a := resource.NewHostAttrs(ho.Name, ho.Labels, &hs, resource.Schedulable(spec, st), u.vms)
	return &a, nil
}

// checkRules refuses to put vm on host when the host fails the VM's
// requirements, or when a hard affinity rule forbids it: the VM's own
// (anti-affine: no other member of its group on the host; affine: on
// a host of the group's placed members, if any), and a hard anti-affine
// member's (no other member joins it). Called with the host ready and
// the capacity checked: ho, hspec and hst are the host's object, spec
// and status; use is what its VMs hold (nil: counted here).
func (w *writer) checkRules(vm string, spec *resource.VMSpec, ho *resource.Object, hspec *resource.HostSpec, hst *resource.HostStatus, use *hostUse) error {
	host := ho.Name
	if spec.Requirements == "" && spec.Affinity == nil {
		return nil
	}
	if spec.Requirements != "" {
		e, err := fsmExprs.Compile(spec.Requirements, true)
		if err != nil {
			return ruleError("vm %q: requirements do not compile: %v", vm, err)
		}
		attrs, err := w.hostAttrs(ho, hspec, hst, use)
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
	// Only the members on a host count (in name order, as
	// groupMembersTxn lists them).
	members, err := w.placedMembers(a.Group)
	if err != nil {
		return err
	}
	var here, elsewhere []string
	for _, m := range members {
		if m.VM == vm || m.Host == "" {
			continue
		}
		if m.Host == host || m.Target == host {
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
