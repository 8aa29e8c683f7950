package resource

import "time"

// KindVM is the virtual machine kind.
const KindVM Kind = "vm"

// VM power states a user can ask for.
const (
	PowerRunning   = "running"
	PowerStopped   = "stopped"
	PowerSuspended = "suspended"
)

// VM HA policies.
const (
	HARestart = "restart"
	HANone    = "none"
)

// VM phases (status.phase).
const (
	PhasePending   = "pending"
	PhaseScheduled = "scheduled"
	PhaseStarting  = "starting"
	PhaseRunning   = "running"
	PhaseSuspended = "suspended"
	PhaseStopping  = "stopping"
	PhaseStopped   = "stopped"
	PhaseMigrating = "migrating"
	PhaseFailed    = "failed"
	PhaseLost      = "lost"
)

// Limits on a VM's size.
const (
	MaxVMCPUs      = 1024
	MaxVMMemoryMiB = 64 << 20 // 64 TiB
)

// VMSpec is what a user wants of a VM.
type VMSpec struct {
	CPUs      int    `json:"cpus"`
	MemoryMiB int64  `json:"memory_mib"`
	Power     string `json:"power,omitempty"`
	HA        string `json:"ha,omitempty"`
}

// Default fills in power=running and ha=none.
func (s *VMSpec) Default() {
	if s.Power == "" {
		s.Power = PowerRunning
	}
	if s.HA == "" {
		s.HA = HANone
	}
}

// Validate checks sizes and enumerations.
func (s *VMSpec) Validate() error {
	switch {
	case s.CPUs < 1:
		return Errorf("spec.cpus", "must be at least 1 (got %d)", s.CPUs)
	case s.CPUs > MaxVMCPUs:
		return Errorf("spec.cpus", "must be at most %d (got %d)", MaxVMCPUs, s.CPUs)
	case s.MemoryMiB < 1:
		return Errorf("spec.memory_mib", "must be at least 1 MiB (got %d)", s.MemoryMiB)
	case s.MemoryMiB > MaxVMMemoryMiB:
		return Errorf("spec.memory_mib", "must be at most %d MiB (got %d)", MaxVMMemoryMiB, s.MemoryMiB)
	}
	switch s.Power {
	case PowerRunning, PowerStopped, PowerSuspended:
	default:
		return Errorf("spec.power", "must be one of running, stopped, suspended (got %q)", s.Power)
	}
	switch s.HA {
	case HARestart, HANone:
	default:
		return Errorf("spec.ha", "must be restart or none (got %q)", s.HA)
	}
	return nil
}

// VMStatus is what the system observed of a VM.
type VMStatus struct {
	Phase  string    `json:"phase"`
	Host   string    `json:"host,omitempty"`
	Epoch  uint64    `json:"epoch,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitzero"`
}

func init() {
	Register(&KindInfo{
		Kind:      KindVM,
		Plural:    "vms",
		NewSpec:   func() Spec { return new(VMSpec) },
		NewStatus: func() any { return new(VMStatus) },
		InitialStatus: func(now time.Time) any {
			return &VMStatus{Phase: PhasePending, Reason: "waiting for placement", Since: now.UTC()}
		},
	})
}
