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
// picks a ready host other than the VM's own with room for it, as the
// planner would (requirements, rank, strategy, affinity). The FSM checks
// everything again when it applies the migration; this only chooses.
func MigrationTarget(st *fsm.Store, vm string, now time.Time, grace time.Duration) (string, error) {
	return MigrationTargetFor(st, vm, "", now, grace)
}

// MigrationTargetFor is MigrationTarget for a migration of mode (live or
// restart; "" for cold): a VM that runs on a host that is up moves with
// that mode (the state machine checks the rest), to a host whose worker
// takes part in such migrations; any other VM moves cold.
func MigrationTargetFor(st *fsm.Store, vm, mode string, now time.Time, grace time.Duration) (string, error) {
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
	running := mode != "" && vs.Host != "" && vs.Migration == nil && vs.Phase == resource.PhaseRunning &&
		from != nil && (from.State == resource.HostReady || from.State == resource.HostDraining)
	if vs.Migration != nil {
		return "", fmt.Errorf("vm %q is already migrating to host %q: %w", vm, vs.Migration.Target, fsm.ErrWrongPhase)
	}
	if !running {
		if err := fsm.CheckMigratable(vm, spec, vs, from, now, grace, true); err != nil {
			return "", err
		}
	}
	hosts, err := HostsFromState(st)
	if err != nil {
		return "", err
	}
	if running {
		if !from.CanMigrate(mode) {
			return "", fmt.Errorf("vm %q: host %q cannot migrate VMs %s (its worker offers %v): %w", vm, vs.Host, mode, from.MigrationModes, fsm.ErrHostNotReady)
		}
		// Only hosts whose workers take such a migration.
		able := hosts[:0:0]
		for _, h := range hosts {
			if ho, err := st.Get(nil, resource.KindHost, h.Name); err == nil && ho != nil {
				if hs, err := resource.DecodeStatus[resource.HostStatus](ho); err == nil && hs.CanMigrate(mode) {
					able = append(able, h)
				}
			}
		}
		hosts = able
	}
	host, why, err := migrationHost(st, vm, spec, hosts, vs.Host)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", fmt.Errorf("cannot migrate vm %q: %w: %s", vm, fsm.ErrNoCapacity, why)
	}
	return host, nil
}

// migrationHost is where the planner would put vm among the hosts other
// than from, with its requirements, rank, strategy (the VM's, then its
// project's; else spread) and affinity group (its other members), or
// why no host takes it.
func migrationHost(st *fsm.Store, name string, spec *resource.VMSpec, hosts []Host, from string) (string, string, error) {
	others := make([]Host, 0, len(hosts))
	ready := 0
	for _, h := range hosts {
		if h.Name != from {
			others = append(others, h)
			if h.Ready {
				ready++
			}
		}
	}
	if ready == 0 {
		return "", "no other host is ready and schedulable", nil
	}
	vm := VM{Name: name, Need: resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB},
		Project: spec.Project, Requirements: spec.Requirements, Rank: spec.Rank, Strategy: spec.Strategy, Affinity: spec.Affinity}
	opt := Options{Groups: map[string]*Group{}}
	if a := spec.Affinity; a != nil {
		// The group's members but the VM itself, which moves.
		members, err := st.GroupMembers(a.Group)
		if err != nil {
			return "", "", err
		}
		g := &Group{}
		for _, m := range members {
			if m.VM == name {
				continue
			}
			for _, h := range []string{m.Host, m.Target} {
				if h != "" {
					g.add(h, m.Hard && m.Rule == resource.AffinityAntiAffine)
				}
			}
		}
		opt.Groups[a.Group] = g
	}
	var err error
	if opt.ProjectStrategy, err = ProjectStrategies(st, []VM{vm}); err != nil {
		return "", "", err
	}
	plan := PlanWith(others, []VM{vm}, opt)
	if len(plan.Placements) == 1 {
		return plan.Placements[0].Host, "", nil
	}
	why := fmt.Sprintf("no other ready host has %d CPUs and %s free (%d ready hosts besides %q)",
		spec.CPUs, resource.FormatMiB(spec.MemoryMiB), ready, from)
	if len(plan.Unplaced) == 1 && (spec.Requirements != "" || spec.Affinity != nil) {
		why = plan.Unplaced[0].Reason
	}
	return "", why, nil
}
