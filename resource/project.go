package resource

import "time"

// KindProject is the project kind: a share of the cloud with quotas. Every
// VM and volume belongs to one (spec.project; empty is DefaultProject,
// which needs no object: without one it has no quotas). Log protocol 8.
const KindProject Kind = "project"

// CodeQuotaExceeded is the API error code (409) of a create or update
// that would take a project over a quota; the message names the project,
// the limit and the numbers.
const CodeQuotaExceeded = "quota_exceeded"

// ProjectSpec is a project's quotas (0: no limit) and its default
// placement strategy.
type ProjectSpec struct {
	MaxVMs       int64  `json:"max_vms,omitempty"`
	MaxCPUs      int64  `json:"max_cpus,omitempty"`
	MaxMemoryMiB int64  `json:"max_memory_mib,omitempty"`
	MaxVolumeMiB int64  `json:"max_volume_mib,omitempty"`
	Strategy     string `json:"strategy,omitempty"` // binpack or spread; empty: the cluster's
}

// ProjectUsage is what a project's VMs and volumes hold.
type ProjectUsage struct {
	VMs       int64 `json:"vms"`
	CPUs      int64 `json:"cpus"`
	MemoryMiB int64 `json:"memory_mib"`
	VolumeMiB int64 `json:"volume_mib"`
}

// ProjectStatus is the project's usage, kept by the state machine.
type ProjectStatus struct {
	Usage ProjectUsage `json:"usage"`
}

// Default fills in nothing.
func (s *ProjectSpec) Default() {}

// Validate checks that quotas are not negative and the strategy is known.
func (s *ProjectSpec) Validate() error {
	for _, q := range []struct {
		f string
		v int64
	}{{"max_vms", s.MaxVMs}, {"max_cpus", s.MaxCPUs}, {"max_memory_mib", s.MaxMemoryMiB}, {"max_volume_mib", s.MaxVolumeMiB}} {
		if q.v < 0 {
			return Errorf("spec."+q.f, "must not be negative (0 means no limit; got %d)", q.v)
		}
	}
	switch s.Strategy {
	case "", StrategyBinpack, StrategySpread:
	default:
		return Errorf("spec.strategy", "must be binpack or spread (got %q)", s.Strategy)
	}
	return nil
}

func init() {
	Register(&KindInfo{
		Kind:          KindProject,
		Plural:        "projects",
		NewSpec:       func() Spec { return new(ProjectSpec) },
		NewStatus:     func() any { return new(ProjectStatus) },
		InitialStatus: func(time.Time) any { return &ProjectStatus{} },
	})
}
