package resource

import (
	"fmt"
	"net"
	"net/netip"
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

// VMPhases lists every VM phase.
var VMPhases = []string{PhasePending, PhaseScheduled, PhaseStarting, PhaseRunning, PhaseSuspended,
	PhaseStopping, PhaseStopped, PhaseMigrating, PhaseFailed, PhaseLost}

// WorkerPhase reports whether a worker reports phase (the others are the
// controllers' own: pending, scheduled, migrating, lost).
func WorkerPhase(phase string) bool {
	switch phase {
	case PhaseStarting, PhaseRunning, PhaseStopping, PhaseStopped, PhaseSuspended, PhaseFailed:
		return true
	}
	return false
}

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
	// NICs attach the VM to networks; the state machine fills in each
	// NIC's address and MAC (IPAM) unless given.
	NICs []NIC `json:"nics,omitempty"`
	// Disks attach volumes, in order (the first is the boot disk unless
	// boot.image is set): an existing volume, or an image and a size, for
	// which the state machine creates a non-persistent volume named
	// "<vm>-disk<i>" and records it in the disk's volume.
	Disks []Disk `json:"disks,omitempty"`

	// Placement (log protocol 8; docs/scheduling.md). Project names the
	// project the VM counts against (empty: "default"). Requirements is
	// a boolean expression over a host's attributes that a host must
	// satisfy; Rank a number over them, higher is better. Strategy
	// overrides the project's and the cluster's (binpack or spread).
	// Affinity puts the VM in a group with a rule.
	Project      string    `json:"project,omitempty"`
	Requirements string    `json:"requirements,omitempty"`
	Rank         string    `json:"rank,omitempty"`
	Strategy     string    `json:"strategy,omitempty"`
	Affinity     *Affinity `json:"affinity,omitempty"`
}

// Affinity is a VM's placement rule towards the other VMs of its group:
// affine (on the same host) or anti-affine (never two on one host). Hard
// rules are checked by the state machine at every placement; soft ones
// are the scheduler's best effort.
type Affinity struct {
	Group string `json:"group"`
	Rule  string `json:"rule"`
	Hard  bool   `json:"hard,omitempty"`
}

// Affinity rules and placement strategies.
const (
	AffinityAffine     = "affine"
	AffinityAntiAffine = "anti-affine"
	StrategyBinpack    = "binpack"
	StrategySpread     = "spread"
	// DefaultProject is the project of a VM or volume that names none.
	DefaultProject = "default"
	// MaxExprLen bounds requirements and rank.
	MaxExprLen = 4096
)

// ProjectOf is the project a VM or volume counts against.
func ProjectOf(p string) string {
	if p == "" {
		return DefaultProject
	}
	return p
}

// NIC is one network interface of a VM.
type NIC struct {
	// Network names a network object.
	Network string `json:"network"`
	// IP is the NIC's address: asked for (static, if free) or allocated
	// by the state machine when the VM is created or placed; empty while
	// the network is full.
	IP string `json:"ip,omitempty"`
	// MAC is the NIC's hardware address: given (a unicast address) or
	// allocated by the state machine (52:54:00:xx:xx:xx, unique in the
	// cluster).
	MAC string `json:"mac,omitempty"`
}

// Disk is one disk of a VM: Volume alone, or Image and SizeMiB (Volume
// then names the volume the state machine created for it).
type Disk struct {
	Volume  string `json:"volume,omitempty"`
	Image   string `json:"image,omitempty"`
	SizeMiB int64  `json:"size_mib,omitempty"`
}

// Limits on a VM's devices.
const (
	MaxVMNICs  = 16
	MaxVMDisks = 16
)

// DiskVolumeName is the name of the volume the state machine creates for
// a VM's disk i given as an image and a size.
func DiskVolumeName(vm string, i int) string { return vm + "-disk" + itoa(i) }

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
// component in a path; and compiles the requirements and rank
// expressions (hostexpr.go): a bad one is an error that says where.
func (s *VMSpec) ValidateRequest() error {
	if err := s.validateExprs(); err != nil {
		return err
	}
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
	if err := s.validateDevices(); err != nil {
		return err
	}
	if err := s.validatePlacement(); err != nil {
		return err
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

// validateDevices checks the NICs and disks.
func (s *VMSpec) validateDevices() error {
	if len(s.NICs) > MaxVMNICs {
		return Errorf("spec.nics", "has %d NICs; the limit is %d", len(s.NICs), MaxVMNICs)
	}
	if len(s.Disks) > MaxVMDisks {
		return Errorf("spec.disks", "has %d disks; the limit is %d", len(s.Disks), MaxVMDisks)
	}
	for i, n := range s.NICs {
		f := "spec.nics[" + itoa(i) + "]"
		if err := ValidateName(n.Network); err != nil {
			return Errorf(f+".network", "%s", err.(*FieldError).Msg)
		}
		if n.IP != "" {
			a, err := netip.ParseAddr(n.IP)
			if err != nil || a.Zone() != "" || a.Is4In6() {
				return Errorf(f+".ip", "must be an IPv4 or IPv6 address (got %q)", n.IP)
			}
		}
		if n.MAC != "" {
			if err := ValidateMAC(n.MAC); err != nil {
				return Errorf(f+".mac", "%v", err)
			}
		}
	}
	for i, d := range s.Disks {
		f := "spec.disks[" + itoa(i) + "]"
		switch {
		case d.Image == "" && d.Volume == "":
			return Errorf(f, "give a volume (volume=NAME) or an image and a size (image=NAME,size=2GiB)")
		case d.Image == "" && d.SizeMiB != 0:
			return Errorf(f+".size_mib", "is for a disk made from an image; resize the volume instead")
		case d.Image != "" && d.SizeMiB < 1:
			return Errorf(f+".size_mib", "is required with an image and must be at least 1 MiB (got %d)", d.SizeMiB)
		case d.SizeMiB > MaxVolumeSizeMiB:
			return Errorf(f+".size_mib", "must be at most %d MiB (got %d)", int64(MaxVolumeSizeMiB), d.SizeMiB)
		}
		if d.Volume != "" {
			if err := ValidateName(d.Volume); err != nil {
				return Errorf(f+".volume", "%s", err.(*FieldError).Msg)
			}
		}
		if d.Image != "" {
			if err := ValidateName(d.Image); err != nil {
				return Errorf(f+".image", "%s", err.(*FieldError).Msg)
			}
		}
		for j := range i {
			if d.Volume != "" && s.Disks[j].Volume == d.Volume {
				return Errorf(f+".volume", "volume %q is already disk %d of this VM", d.Volume, j)
			}
		}
	}
	return nil
}

// validatePlacement checks the project name, the strategy, the
// affinity and the expressions' lengths (their syntax and types are
// checked by ValidateRequest, hostexpr.go).
func (s *VMSpec) validatePlacement() error {
	if s.Project != "" {
		if err := ValidateName(s.Project); err != nil {
			return Errorf("spec.project", "%s", err.(*FieldError).Msg)
		}
	}
	switch s.Strategy {
	case "", StrategyBinpack, StrategySpread:
	default:
		return Errorf("spec.strategy", "must be binpack or spread (got %q)", s.Strategy)
	}
	if len(s.Requirements) > MaxExprLen {
		return Errorf("spec.requirements", "is %d bytes long; the limit is %d", len(s.Requirements), MaxExprLen)
	}
	if len(s.Rank) > MaxExprLen {
		return Errorf("spec.rank", "is %d bytes long; the limit is %d", len(s.Rank), MaxExprLen)
	}
	if a := s.Affinity; a != nil {
		if err := ValidateName(a.Group); err != nil {
			return Errorf("spec.affinity.group", "%s", err.(*FieldError).Msg)
		}
		switch a.Rule {
		case AffinityAffine, AffinityAntiAffine:
		default:
			return Errorf("spec.affinity.rule", "must be affine or anti-affine (got %q)", a.Rule)
		}
	}
	return nil
}

// ValidateMAC checks a unicast hardware address written aa:bb:cc:dd:ee:ff
// in lower case.
func ValidateMAC(m string) error {
	hw, err := net.ParseMAC(m)
	if err != nil || len(hw) != 6 || hw.String() != m {
		return fmt.Errorf("must be a MAC address written aa:bb:cc:dd:ee:ff in lower case (got %q)", m)
	}
	if hw[0]&1 != 0 {
		return fmt.Errorf("%s is a multicast address; give a unicast one", m)
	}
	if m == "00:00:00:00:00:00" {
		return fmt.Errorf("must not be all zeros")
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
	// ReportSeq is the sequence (VMReport.Seq) of the last report of
	// this placement the state machine recorded (log protocol 11; 0
	// until a worker sends one). A report whose sequence is not above
	// it is refused: it was sent before one already recorded and
	// delivered late (docs/jepsen.md, found so far 8). A new placement
	// starts again from 0.
	ReportSeq uint64 `json:"report_seq,omitempty"`
	// Migration is the migration under way (log protocol 9; phase
	// migrating): the VM still runs on Host, and Migration.Target holds
	// its reservation too, until the hypervisor confirms the move (the
	// epoch then passes to the target) or the migration ends without it
	// (the VM stays on Host). docs/scheduling.md, "Live migration".
	Migration *VMMigration `json:"migration,omitempty"`
}

// VMMigration is a migration under way (status.migration).
type VMMigration struct {
	// ID is the Raft index that started it: every event names it, so an
	// event of an older migration changes nothing.
	ID uint64 `json:"id"`
	// Target is the host the VM moves to.
	Target string `json:"target"`
	// Mode is live (the guest keeps running; memory, and disks that are
	// not shared, are copied while it runs) or restart (the guest is shut
	// down on the source and started on the target).
	Mode string `json:"mode"`
	// State: preparing (the target readies its networks, volumes and
	// images), ready (the source migrates), aborting (the user asked to
	// abort; the source cancels and the VM stays).
	State string `json:"state"`
	// URI is how the source's hypervisor reaches the target's (live; the
	// target says it when prepared).
	URI   string    `json:"uri,omitempty"`
	Since time.Time `json:"since,omitzero"`
}

// Migration modes and states.
const (
	MigrationLive    = "live"
	MigrationRestart = "restart"

	MigrationPreparing = "preparing"
	MigrationReady     = "ready"
	MigrationAborting  = "aborting"
)

// Migration events a worker reports (POST /v1/hosts/{name}/migrations).
const (
	// MigrationPrepared: the target is ready to receive the VM (from the
	// target; carries the URI).
	MigrationPrepared = "prepared"
	// MigrationDone: the hypervisor confirmed the VM runs on the target
	// (live; from the source when its migrate call returned, or from the
	// target when it sees the guest running there), or the source shut
	// the guest down (restart). The epoch passes to the target.
	MigrationDone = "done"
	// MigrationFailed: the migration ended without moving the VM (from
	// either side); the VM stays on the source.
	MigrationFailed = "failed"
)

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
