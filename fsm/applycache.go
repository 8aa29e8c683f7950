package fsm

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// Caches of one writer, i.e. of one log entry's apply (a PlaceRequest
// checks up to MaxBatchOps placements in one entry). They change what an
// apply costs, never what it decides: each holds what a function of the
// transaction (or of an immutable object) returned, lives and dies with
// its writer, and is dropped when the transaction changes under it.

// checkApplyCaches makes every cache hit recompute its value and panic
// (a halt, in an apply) if they differ. The fsm tests set it.
var checkApplyCaches = false

// hostUse is hostUseTxn(w.txn, host), remembered until the writer writes
// or deletes a VM (putObject, delete) other than by placeOne, which adds
// the VM it places to the host's entry itself (placed).
func (w *writer) hostUse(host string) (hostUse, error) {
	if u, ok := w.uses[host]; ok {
		if checkApplyCaches {
			if v, err := hostUseTxn(w.txn, host); err != nil || v != u {
				panic(fmt.Sprintf("fsm: cached use of host %q is %+v, not %+v (%v)", host, u, v, err))
			}
		}
		return u, nil
	}
	u, err := hostUseTxn(w.txn, host)
	if err != nil {
		return u, err
	}
	if w.uses == nil {
		w.uses = map[string]hostUse{}
	}
	w.uses[host] = u
	return u, nil
}

// vmWritten forgets what the writer remembered of the VMs: a VM object is
// being written or deleted, which may change any host's use.
func (w *writer) vmWritten() {
	w.uses = nil
	w.groups = nil
}

// holdsNothing reports whether a VM with status st is counted on no host
// by hostUseTxn: st names no host, nor anything else but the fields
// below, which place a VM nowhere. (A field added to VMStatus that is set
// makes this false: it may count the VM somewhere.)
func holdsNothing(st *resource.VMStatus) bool {
	rest := *st
	rest.Phase, rest.Epoch, rest.Reason = "", 0, ""
	rest.RebootRequested, rest.RebootDone, rest.StopForced, rest.Restarts = 0, 0, false, 0
	rest.Since = time.Time{}
	return rest == resource.VMStatus{}
}

// putPlaced writes the status st of VM o (spec, status old), placed on
// st.Host, whose use was use just before. When old held nothing, the VM
// now counts on st.Host alone, for one VM and its spec's resources (as
// hostUseTxn counts it: spec is o's spec, decoded as it does): the
// host's entry is updated, the others stay right.
func (w *writer) putPlaced(o *resource.Object, spec *resource.VMSpec, old, st *resource.VMStatus, use hostUse) error {
	if !holdsNothing(old) || st.Host == "" {
		return w.putVMStatus(o, old, st)
	}
	w.placing = true
	err := w.putVMStatus(o, old, st)
	w.placing = false
	if err != nil {
		w.vmWritten()
		return err
	}
	use.vms++
	use.alloc.CPUs += spec.CPUs
	use.alloc.MemoryMiB += spec.MemoryMiB
	if w.uses == nil {
		w.uses = map[string]hostUse{}
	}
	w.uses[st.Host] = use
	// The VM is its group's member on st.Host now (its spec is
	// unchanged, its new status decodes).
	if a := spec.Affinity; a != nil {
		w.memberPlaced(a.Group, o.Name, st.Host, a)
	}
	return nil
}

// placedMembers is the members of group on a host, as the package's
// placedMember reads them from w.txn (in name order), remembered until the
// writer writes or deletes a VM other than by placeOne (putPlaced, which
// adds the member it places). What it returns is shared: the caller must
// not change it.
func (w *writer) placedMembers(group string) ([]GroupMember, error) {
	if ms, ok := w.groups[group]; ok {
		if checkApplyCaches {
			if v, err := groupMembersBy(w.txn, group, placedMember); err != nil || !slices.Equal(v, ms) {
				panic(fmt.Sprintf("fsm: cached members of group %q are %+v, not %+v (%v)", group, ms, v, err))
			}
		}
		return ms, nil
	}
	ms, err := groupMembersBy(w.txn, group, placedMember)
	if err != nil {
		return nil, err
	}
	if w.groups == nil {
		w.groups = map[string][]GroupMember{}
	}
	w.groups[group] = ms
	return ms, nil
}

// memberPlaced adds to group's remembered members vm, which was on no
// host and is on host now, under its affinity a (its spec, which decoded
// with a, is unchanged; its new status decodes). Were vm there already,
// they are forgotten.
func (w *writer) memberPlaced(group, vm, host string, a *resource.Affinity) {
	ms, ok := w.groups[group]
	if !ok {
		return
	}
	i, found := slices.BinarySearchFunc(ms, vm, func(m GroupMember, vm string) int { return strings.Compare(m.VM, vm) })
	if found {
		delete(w.groups, group)
		return
	}
	w.groups[group] = slices.Insert(ms, i, GroupMember{VM: vm, Host: host, Hard: a.Hard, Rule: a.Rule})
}

// hostDecode is a host object as writer.host decodes it.
type hostDecode struct {
	spec *resource.HostSpec
	st   *resource.HostStatus
}

// hostRead is writer.host, remembering what it decoded of each host
// object (the object is never changed in place, and the map holds it, so
// no other object can take its address). What it returns is shared: the
// caller must not change it (placeOne only reads it).
func (w *writer) hostRead(name string) (*resource.Object, *resource.HostSpec, *resource.HostStatus, error) {
	o, err := getTxn(w.txn, nil, resource.KindHost, name)
	if err != nil {
		return nil, nil, nil, err
	}
	if d, ok := w.hostDecs[o]; ok && o != nil {
		if checkApplyCaches {
			if _, spec, st, err := w.host(name); err != nil || !reflect.DeepEqual(spec, d.spec) || !reflect.DeepEqual(st, d.st) {
				panic(fmt.Sprintf("fsm: cached host %q is %+v %+v, not %+v %+v (%v)", name, d.spec, d.st, spec, st, err))
			}
		}
		return o, d.spec, d.st, nil
	}
	o, spec, st, err := w.host(name)
	if err != nil {
		return nil, nil, nil, err
	}
	if w.hostDecs == nil {
		w.hostDecs = map[*resource.Object]hostDecode{}
	}
	w.hostDecs[o] = hostDecode{spec, st}
	return o, spec, st, nil
}

// sortedKeys is m's keys in order: what an apply walks to write derived
// state deterministically. Most entries touch nothing of a kind, so an
// empty m costs nothing (slices.Sorted(maps.Keys(m)) allocates even then).
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	if len(m) == 0 {
		return nil
	}
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
