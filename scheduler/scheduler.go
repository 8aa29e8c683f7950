package scheduler

import (
	"fmt"
	"sort"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Host is a candidate host as the scheduler sees it.
type Host struct {
	Name  string
	Ready bool // state ready and schedulable
	Free  resource.Resources
	Total resource.Resources // schedulable capacity
}

// VM is a pending VM to place.
type VM struct {
	Name        string
	CreateIndex uint64
	Need        resource.Resources
	Reason      string // its current pending reason
}

// Plan places vms (oldest first) on hosts, first fit over hosts ordered by
// free memory (most first, then by name). VMs that fit nowhere get a reason
// saying why, but only when it differs from the reason they already have.
func Plan(hosts []Host, vms []VM) fsm.PlaceRequest {
	var plan fsm.PlaceRequest
	free := make([]Host, 0, len(hosts))
	for _, h := range hosts {
		if h.Ready {
			free = append(free, h)
		}
	}
	sort.SliceStable(vms, func(i, j int) bool {
		if vms[i].CreateIndex != vms[j].CreateIndex {
			return vms[i].CreateIndex < vms[j].CreateIndex
		}
		return vms[i].Name < vms[j].Name
	})
	order := func() {
		sort.Slice(free, func(i, j int) bool {
			if free[i].Free.MemoryMiB != free[j].Free.MemoryMiB {
				return free[i].Free.MemoryMiB > free[j].Free.MemoryMiB
			}
			return free[i].Name < free[j].Name
		})
	}
	order()
	for _, vm := range vms {
		placed := false
		for i := range free {
			h := &free[i]
			if h.Free.CPUs >= vm.Need.CPUs && h.Free.MemoryMiB >= vm.Need.MemoryMiB {
				plan.Placements = append(plan.Placements, fsm.Placement{VM: vm.Name, Host: h.Name})
				h.Free.CPUs -= vm.Need.CPUs
				h.Free.MemoryMiB -= vm.Need.MemoryMiB
				placed = true
				// Keep "most free memory first" without a full sort:
				// bubble the host down to its place.
				for j := i; j+1 < len(free) && less(free[j+1], free[j]); j++ {
					free[j], free[j+1] = free[j+1], free[j]
				}
				break
			}
		}
		if !placed {
			if r := unplacedReason(hosts, vm); r != vm.Reason {
				plan.Unplaced = append(plan.Unplaced, fsm.Unplaced{VM: vm.Name, Reason: r})
			}
		}
	}
	return plan
}

func less(a, b Host) bool {
	if a.Free.MemoryMiB != b.Free.MemoryMiB {
		return a.Free.MemoryMiB > b.Free.MemoryMiB
	}
	return a.Name < b.Name
}

// unplacedReason explains why vm fits nowhere, from the hosts' state before
// this plan (so that the reason is stable across rounds).
func unplacedReason(hosts []Host, vm VM) string {
	ready, big := 0, 0
	for _, h := range hosts {
		if !h.Ready {
			continue
		}
		ready++
		if h.Total.CPUs >= vm.Need.CPUs && h.Total.MemoryMiB >= vm.Need.MemoryMiB {
			big++
		}
	}
	need := fmt.Sprintf("%d CPUs and %s", vm.Need.CPUs, resource.FormatMiB(vm.Need.MemoryMiB))
	switch {
	case len(hosts) == 0:
		return resource.ReasonNoHosts
	case ready == 0:
		return fmt.Sprintf("no host is ready and schedulable (%d hosts known)", len(hosts))
	case big == 0:
		return fmt.Sprintf("larger than any host: needs %s; no ready host has that much capacity", need)
	}
	return fmt.Sprintf("no ready host has %s free right now (%d of %d ready hosts are large enough)", need, big, ready)
}

// Cache remembers decoded pending VMs between rounds, keyed by name and
// valid for one modify_index, so that a round costs decoding only what
// changed. It is used by one goroutine at a time.
type Cache struct {
	vms map[string]cachedVM
}

type cachedVM struct {
	modify uint64
	vm     VM
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{vms: map[string]cachedVM{}} }

// FromState builds the scheduler's view from the state store: every host,
// and every pending VM. cache may be nil.
func FromState(st *fsm.Store, cache *Cache) ([]Host, []VM, error) {
	hostObjs, err := st.List(nil, resource.KindHost, nil)
	if err != nil {
		return nil, nil, err
	}
	hosts := make([]Host, 0, len(hostObjs))
	for _, o := range hostObjs {
		spec, err := resource.DecodeSpec[resource.HostSpec](o)
		if err != nil {
			continue
		}
		spec.Default()
		hs, err := resource.DecodeStatus[resource.HostStatus](o)
		if err != nil {
			continue
		}
		total := fsm.Schedulable(spec, hs)
		hosts = append(hosts, Host{
			Name:  o.Name,
			Ready: hs.State == resource.HostReady && !spec.Unschedulable,
			Total: total,
			Free:  resource.Resources{CPUs: total.CPUs - hs.Allocated.CPUs, MemoryMiB: total.MemoryMiB - hs.Allocated.MemoryMiB},
		})
	}
	pending, err := st.VMsInPhase(nil, resource.PhasePending)
	if err != nil {
		return nil, nil, err
	}
	if cache == nil {
		cache = NewCache()
	}
	seen := make(map[string]bool, len(pending))
	vms := make([]VM, 0, len(pending))
	for _, o := range pending {
		seen[o.Name] = true
		if c, ok := cache.vms[o.Name]; ok && c.modify == o.ModifyIndex {
			vms = append(vms, c.vm)
			continue
		}
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil {
			continue
		}
		vm := VM{Name: o.Name, CreateIndex: o.CreateIndex, Need: resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB}}
		if vs, err := resource.DecodeStatus[resource.VMStatus](o); err == nil {
			vm.Reason = vs.Reason
		}
		cache.vms[o.Name] = cachedVM{modify: o.ModifyIndex, vm: vm}
		vms = append(vms, vm)
	}
	for name := range cache.vms {
		if !seen[name] {
			delete(cache.vms, name)
		}
	}
	return hosts, vms, nil
}
