package scheduler

import (
	"fmt"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// MigrationTarget picks the host a migration of vm goes to when the user
// names none: it says first why the VM cannot move at all (the checks of
// fsm.CheckMigratable, by phase only: no clock decides), then
// picks a ready host other than the VM's own with room for it. The FSM
// checks everything again when it applies the migration; this only chooses.
func MigrationTarget(st *fsm.Store, vm string, now time.Time, grace time.Duration) (string, error) {
	o, err := st.Get(nil, resource.KindVM, vm)
	if err != nil {
		return "", err
	}
	if o == nil {
		return "", fmt.Errorf("vm %q: %w", vm, fsm.ErrNotFound)
	}
	spec, err := resource.DecodeSpec[resource.VMSpec](o)
	if err != nil {
		return "", err
	}
	vs, err := resource.DecodeStatus[resource.VMStatus](o)
	if err != nil {
		return "", err
	}
	var from *resource.HostStatus
	if vs.Host != "" {
		if ho, err := st.Get(nil, resource.KindHost, vs.Host); err == nil && ho != nil {
			if from, err = resource.DecodeStatus[resource.HostStatus](ho); err != nil {
				return "", err
			}
		}
	}
	if err := fsm.CheckMigratable(vm, spec, vs, from, now, grace, true); err != nil {
		return "", err
	}
	hosts, err := HostsFromState(st)
	if err != nil {
		return "", err
	}
	need := resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB}
	host, why := PickHost(hosts, need, vs.Host)
	if host == "" {
		return "", fmt.Errorf("cannot migrate vm %q: %w: %s", vm, fsm.ErrNoCapacity, why)
	}
	return host, nil
}
