package resource

import (
	"slices"
	"time"
)

// KindHost is the hypervisor host kind.
const KindHost Kind = "host"

// Host states (status.state).
const (
	HostReady    = "ready"
	HostDown     = "down"
	HostLeft     = "left"
	HostDraining = "draining"
)

// HostStates lists every host state.
var HostStates = []string{HostReady, HostDown, HostLeft, HostDraining}

// MaxOvercommit bounds the overcommit ratios.
const MaxOvercommit = 64

// HostSpec is what an operator wants of a host.
type HostSpec struct {
	// Unschedulable hosts take no new placements (drain).
	Unschedulable bool `json:"unschedulable,omitempty"`
	// CPUOvercommit and MemoryOvercommit scale capacity for placement;
	// 1.0 (the default) means no overcommit.
	CPUOvercommit    float64 `json:"cpu_overcommit,omitempty"`
	MemoryOvercommit float64 `json:"memory_overcommit,omitempty"`
	// Drain (log protocol 9), with Unschedulable, asks the leader to move
	// the host's VMs off (kumoi host drain --migrate): running VMs live
	// where both hosts can, by restart otherwise, the others cold.
	Drain *HostDrain `json:"drain,omitempty"`
}

// HostDrain is how a drained host is emptied.
type HostDrain struct {
	// Migrate moves every VM off the host.
	Migrate bool `json:"migrate"`
}

// Default sets both overcommit ratios to 1.0 when omitted.
func (s *HostSpec) Default() {
	if s.CPUOvercommit == 0 {
		s.CPUOvercommit = 1
	}
	if s.MemoryOvercommit == 0 {
		s.MemoryOvercommit = 1
	}
}

// Validate checks the overcommit ratios.
func (s *HostSpec) Validate() error {
	if s.CPUOvercommit < 1 || s.CPUOvercommit > MaxOvercommit {
		return Errorf("spec.cpu_overcommit", "must be between 1 and %d (got %g); omit it for the default 1", MaxOvercommit, s.CPUOvercommit)
	}
	if s.MemoryOvercommit < 1 || s.MemoryOvercommit > MaxOvercommit {
		return Errorf("spec.memory_overcommit", "must be between 1 and %d (got %g); omit it for the default 1", MaxOvercommit, s.MemoryOvercommit)
	}
	return nil
}

// Resources is an amount of CPU and memory.
type Resources struct {
	CPUs      int   `json:"cpus"`
	MemoryMiB int64 `json:"memory_mib"`
}

// HostStatus is what the system observed of a host.
type HostStatus struct {
	State     string    `json:"state"`
	Address   string    `json:"address,omitempty"`
	Capacity  Resources `json:"capacity"`
	Allocated Resources `json:"allocated"`
	Driver    string    `json:"driver,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	// ForeignDomains names Kumoi domains on the host that belong to
	// another cluster: the worker leaves them alone (never stops, starts
	// or removes them). The list is capped to what fits in gossip
	// metadata; ForeignDomainCount is how many the worker saw in all.
	ForeignDomains     []string `json:"foreign_domains,omitempty"`
	ForeignDomainCount int      `json:"foreign_domain_count,omitempty"`
	// StateIndex is the Raft index at which State last changed (set by
	// the state machine; 0 on hosts recorded before protocol 5 until the
	// leader first writes them in the new format). A down or left period
	// is named by it: evacuation and fencing refer to it, and a worker
	// compares it rather than Since (a wall-clock time of another machine).
	StateIndex uint64 `json:"state_index,omitempty"`
	// FenceAfterMS is the worker's --fence-after as it publishes it in
	// gossip (0: not published); DownGraceMS the controllers'
	// --host-down-grace. A host is evacuated only when it has been seen
	// down for DownGraceMS and FenceAfterMS is below it (docs/ha.md).
	FenceAfterMS int64 `json:"fence_after_ms,omitempty"`
	DownGraceMS  int64 `json:"down_grace_ms,omitempty"`
	// Fence is the last external fencing (--fence-command) of the host,
	// for the down period named by its StateIndex.
	Fence *HostFence `json:"fence,omitempty"`
	// ImageDir is the worker's --image-dir: the directory its VMs' boot
	// files must lie in (empty: not published, e.g. by an older worker).
	ImageDir string `json:"image_dir,omitempty"`
	// MigrationModes are the migration modes the host's worker can take
	// part in, as source or target (live, restart; log protocol 9). A
	// host without a mode is not migrated to or from while its VMs run.
	MigrationModes []string `json:"migration_modes,omitempty"`
}

// CanMigrate says whether the host's worker takes part in migrations of
// mode (resource.MigrationLive or MigrationRestart).
func (s *HostStatus) CanMigrate(mode string) bool {
	return slices.Contains(s.MigrationModes, mode)
}

// Fence states (status.fence.state).
const (
	FenceRunning   = "running"
	FenceSucceeded = "succeeded"
	FenceFailed    = "failed"
)

// MaxFenceOutput bounds HostFence.Output (bytes).
const MaxFenceOutput = 4096

// HostFence is the result of running the controllers' --fence-command for
// one down (or left) period of a host.
type HostFence struct {
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	// ExitCode is the command's exit status (-1: killed, timed out or not
	// started); meaningless while running.
	ExitCode int    `json:"exit_code"`
	Output   string `json:"output,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// StartedAt and FinishedAt are the leader's wall clock (information
	// only: no decision depends on them).
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// StateIndex names the down period fenced (HostStatus.StateIndex).
	StateIndex uint64 `json:"state_index"`
}

// Succeeded reports whether f is a successful fencing of the down period
// that began at stateIndex.
func (f *HostFence) Succeeded(stateIndex uint64) bool {
	return f != nil && f.State == FenceSucceeded && f.StateIndex == stateIndex && stateIndex != 0
}

// MaxForeignDomains bounds HostStatus.ForeignDomains.
const MaxForeignDomains = 32

// SameObservation reports whether two host statuses say the same thing
// (Since included).
func (s *HostStatus) SameObservation(o *HostStatus) bool {
	if len(s.ForeignDomains) != len(o.ForeignDomains) {
		return false
	}
	for i := range s.ForeignDomains {
		if s.ForeignDomains[i] != o.ForeignDomains[i] {
			return false
		}
	}
	a, b := s, o
	return a.State == b.State && a.Address == b.Address && a.Capacity == b.Capacity && a.Allocated == b.Allocated &&
		a.Driver == b.Driver && a.Reason == b.Reason && a.Since.Equal(b.Since) && a.ForeignDomainCount == b.ForeignDomainCount &&
		a.StateIndex == b.StateIndex && a.FenceAfterMS == b.FenceAfterMS && a.DownGraceMS == b.DownGraceMS && a.Fence.equal(b.Fence) &&
		a.ImageDir == b.ImageDir && slices.Equal(a.MigrationModes, b.MigrationModes)
}

func (f *HostFence) equal(o *HostFence) bool {
	if f == nil || o == nil {
		return f == o
	}
	return f.State == o.State && f.Attempts == o.Attempts && f.ExitCode == o.ExitCode && f.Output == o.Output &&
		f.Reason == o.Reason && f.StartedAt.Equal(o.StartedAt) && f.FinishedAt.Equal(o.FinishedAt) && f.StateIndex == o.StateIndex
}

func init() {
	Register(&KindInfo{
		Kind:      KindHost,
		Plural:    "hosts",
		NewSpec:   func() Spec { return new(HostSpec) },
		NewStatus: func() any { return new(HostStatus) },
		InitialStatus: func(now time.Time) any {
			return &HostStatus{State: HostDown, Reason: "no worker has joined for this host yet", Since: now.UTC()}
		},
	})
}
