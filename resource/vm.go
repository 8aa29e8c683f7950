package resource

import (
	"time"
)

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

// PowerPhase is the phase in which a VM has the power it asks for:
// stopped, suspended or running.
func PowerPhase(power string) string {
	switch power {
	case PowerStopped:
		return PhaseStopped
	case PowerSuspended:
		return PhaseSuspended
	}
	return PhaseRunning
}

// Reasons of a pending VM.
const (
	ReasonWaitingForPlacement = "waiting for placement"
	ReasonNoHosts             = "no hosts: start a worker (kumoi agent --worker) to run VMs"
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
	Boot      *Boot  `json:"boot,omitempty"`
}

// Boot says what a VM boots: a disk image, or a kernel (with an optional
// initrd and command line), or both. Paths are on the hypervisor host.
type Boot struct {
	Image       string `json:"image,omitempty"`
	ImageFormat string `json:"image_format,omitempty"` // qcow2 (default) or raw
	Kernel      string `json:"kernel,omitempty"`
	Initrd      string `json:"initrd,omitempty"`
	Cmdline     string `json:"cmdline,omitempty"`
}

// Default fills in power=running and ha=none and drops an empty boot.
func (s *VMSpec) Default() {
	if s.Power == "" {
		s.Power = PowerRunning
	}
	if s.HA == "" {
		s.HA = HANone
	}
	if s.Boot != nil && *s.Boot == (Boot{}) {
		s.Boot = nil
	}
}

// Canonicalize drops an empty boot (NormalizeRequestSpec).
func (s *VMSpec) Canonicalize() {
	if s.Boot != nil && *s.Boot == (Boot{}) {
		s.Boot = nil
	}
}

// Limits on the boot strings (bytes of UTF-8).
const (
	MaxBootPathLen    = 4096
	MaxBootCmdlineLen = 4096
)

// ValidateRequest checks the boot strings a client sent: valid UTF-8, no
// control, bidi or line-separator characters, at most MaxBootPathLen
// (paths, image_format) or MaxBootCmdlineLen (cmdline) bytes, and no ".."
// component in a path.
func (s *VMSpec) ValidateRequest() error {
	b := s.Boot
	if b == nil {
		return nil
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"image", b.Image, MaxBootPathLen},
		{"image_format", b.ImageFormat, MaxBootPathLen},
		{"kernel", b.Kernel, MaxBootPathLen},
		{"initrd", b.Initrd, MaxBootPathLen},
		{"cmdline", b.Cmdline, MaxBootCmdlineLen},
	} {
		if len(f.v) > f.max {
			return Errorf("spec.boot."+f.name, "is %d bytes long; the limit is %d bytes", len(f.v), f.max)
		}
		if err := checkText(f.v); err != "" {
			return Errorf("spec.boot."+f.name, "%s", err)
		}
		if f.name != "cmdline" && f.name != "image_format" && hasDotDot(f.v) {
			return Errorf("spec.boot."+f.name, `must not hold a ".." component (got %q): give a name in the hosts' image directory (--image-dir), e.g. "debian.qcow2"`, f.v)
		}
	}
	return nil
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
	if b := s.Boot; b != nil {
		// Boot path text: ValidateRequest (see bootpath.go).
		switch b.ImageFormat {
		case "", "qcow2", "raw":
		default:
			return Errorf("spec.boot.image_format", "must be qcow2 or raw (got %q)", b.ImageFormat)
		}
		if b.ImageFormat != "" && b.Image == "" {
			return Errorf("spec.boot.image_format", "is set without spec.boot.image")
		}
		if b.Kernel == "" && (b.Initrd != "" || b.Cmdline != "") {
			return Errorf("spec.boot.kernel", "is required with an initrd or a cmdline")
		}
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
	// RebootRequested is the index of the last reboot asked for; the
	// worker reboots while RebootDone is below it.
	RebootRequested uint64 `json:"reboot_requested,omitempty"`
	RebootDone      uint64 `json:"reboot_done,omitempty"`
	// StopForced: the user asked for a forced stop (power off at once,
	// no guest shutdown). Cleared when the VM is asked to run again.
	StopForced bool `json:"stop_forced,omitempty"`
	// Restarts counts the restarts Kumoi made after the guest crashed or
	// its domain went down unasked (ha=restart: a crash, a host reboot),
	// over the VM's life.
	Restarts uint64 `json:"restarts,omitempty"`
}

func init() {
	Register(&KindInfo{
		Kind:      KindVM,
		Plural:    "vms",
		NewSpec:   func() Spec { return new(VMSpec) },
		NewStatus: func() any { return new(VMStatus) },
		InitialStatus: func(now time.Time) any {
			return &VMStatus{Phase: PhasePending, Reason: ReasonWaitingForPlacement, Since: now.UTC()}
		},
	})
}

// VM actions: POST /v1/vms/{name}/{action}. Start, stop, suspend and
// resume set the desired power; reboot asks the worker for a reboot;
// migrate moves the VM to another host (cold).
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionSuspend = "suspend"
	ActionResume  = "resume"
	ActionReboot  = "reboot"
	ActionMigrate = "migrate"
)
