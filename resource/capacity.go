package resource

import "math"

// Schedulable returns the capacity placements may use: capacity scaled by
// the host's overcommit ratios. It is the state machine's rule (fsm checks
// every placement against it) and the one the CLI and scheduler show.
func Schedulable(spec *HostSpec, st *HostStatus) Resources {
	cpu, mem := spec.CPUOvercommit, spec.MemoryOvercommit
	if cpu < 1 {
		cpu = 1
	}
	if mem < 1 {
		mem = 1
	}
	cpu, mem = min(cpu, MaxOvercommit), min(mem, MaxOvercommit)
	// The explicit float64 conversions round each product before the
	// addition, so no platform fuses them (FMA) into a different result:
	// every controller computes the same limit from the same log.
	return Resources{
		CPUs:      int(math.Floor(float64(float64(min(st.Capacity.CPUs, MaxHostCPUs))*cpu) + 1e-9)),
		MemoryMiB: int64(math.Floor(float64(float64(min(st.Capacity.MemoryMiB, MaxHostMemoryMiB))*mem) + 1e-9)),
	}
}

// Bounds of a host's capacity (so that capacity × overcommit stays exact
// in a float64 and fits an int on every platform).
const (
	MaxHostCPUs      = 1 << 20
	MaxHostMemoryMiB = 1 << 40
)
