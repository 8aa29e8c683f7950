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
		return "no hosts: start a worker (kumoi agent --worker) to run VMs"
	case ready == 0:
		return fmt.Sprintf("no host is ready and schedulable (%d hosts known)", len(hosts))
	case big == 0:
		return fmt.Sprintf("larger than any host: needs %s; no ready host has that much capacity", need)
	}
	return fmt.Sprintf("no ready host has %s free right now (%d of %d ready hosts are large enough)", need, big, ready)
}

// FromState builds the scheduler's view from the state store: every host,
// and every pending VM.
func FromState(st *fsm.Store) ([]Host, []VM, error) {
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
	vms := make([]VM, 0, len(pending))
	for _, o := range pending {
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil {
			continue
		}
		vs, _ := resource.DecodeStatus[resource.VMStatus](o)
		vm := VM{Name: o.Name, CreateIndex: o.CreateIndex, Need: resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB}}
		if vs != nil {
			vm.Reason = vs.Reason
		}
		vms = append(vms, vm)
	}
	return hosts, vms, nil
}
