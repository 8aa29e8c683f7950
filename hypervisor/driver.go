package hypervisor

import (
	"context"
	"time"
)

// Driver manages the domains (virtual machines) of one hypervisor host.
//
// Every method is safe for concurrent use. Methods that talk to the
// hypervisor take a context first and return early, with the context's
// error, when it is done.
//
// Operations are idempotent towards their target state: starting a running
// domain, destroying or shutting down a stopped one, suspending a paused one
// and resuming a running one succeed and do nothing. An operation that
// cannot reach its target from the current state fails with
// ErrInvalidState (suspend, resume or reboot a stopped domain; start a
// paused one; undefine an active one). Unknown names fail with ErrNotFound.
// A driver that has lost its hypervisor fails every call with
// ErrUnavailable until it has reconnected.
type Driver interface {
	// Define creates a persistent, stopped domain from spec, tagged with
	// spec.VMID, spec.Epoch and spec.Cluster. Defining the same spec again is a no-op.
	// Defining a domain that exists with the same VMID updates it: the new
	// epoch tag applies at once, other changes (size, boot) apply from the
	// next start. A name held by another VM id or by an untagged (foreign)
	// domain fails with ErrExists; a bad spec with ErrInvalidSpec.
	Define(ctx context.Context, spec DomainSpec) error
	// Start boots a defined domain. No-op if it is running; ErrInvalidState
	// if it is paused. No capacity check: the host may be overcommitted.
	Start(ctx context.Context, name string) error
	// Shutdown asks the guest to power off (ACPI) and waits until it has;
	// when grace has passed it destroys the domain. A grace <= 0 destroys
	// at once. It returns nil once the domain is off (a no-op if it was).
	// A driver without GracefulShutdown destroys at once.
	Shutdown(ctx context.Context, name string, grace time.Duration) error
	// Destroy powers the domain off at once (pulls the plug). No-op if it
	// is stopped.
	Destroy(ctx context.Context, name string) error
	// Suspend pauses a running domain (no-op if paused).
	Suspend(ctx context.Context, name string) error
	// Resume unpauses a paused domain (no-op if running).
	Resume(ctx context.Context, name string) error
	// Reboot asks a running domain to reboot; it stays active.
	Reboot(ctx context.Context, name string) error
	// Undefine removes a stopped domain's definition. ErrInvalidState if it
	// is active: destroy or shut it down first.
	Undefine(ctx context.Context, name string) error

	// List returns every domain on the host, Kumoi's and foreign ones,
	// sorted by name.
	List(ctx context.Context) ([]DomainInfo, error)
	// Get returns one domain.
	Get(ctx context.Context, name string) (DomainInfo, error)
	// Stats returns the host's capacity and what active domains hold.
	Stats(ctx context.Context) (HostStats, error)

	// Events returns the driver's lifecycle event stream. There is one
	// stream per driver (every call returns the same channel); it is closed
	// by Close. Sending never blocks the driver: events queue inside it.
	// Events are hints, delivered at least once in order per domain; a
	// consumer that sees EventResync must List to catch up.
	Events() <-chan Event
	// Health returns nil when the hypervisor answers, ErrUnavailable (with
	// the cause) when it does not.
	Health(ctx context.Context) error
	// Capabilities says which optional operations the driver honours.
	Capabilities() Capabilities
	// Networks and volumes (netstore.go).
	NetworkDriver
	StorageDriver

	// Close stops event delivery, closes Events and releases the
	// connection. Domains keep running on a real hypervisor; a simulated
	// host's domains end with it. Calls after Close fail with ErrUnavailable
	// (and ErrClosed).
	Close() error
}

// DomainPrefix starts the name of every domain Kumoi creates.
const DomainPrefix = "kumoi-"

// DomainName is the domain name for a VM: "kumoi-<vm name>".
func DomainName(vmName string) string { return DomainPrefix + vmName }

// ImageFormat is a disk image's format.
type ImageFormat string

// Disk image formats.
const (
	ImageQCOW2 ImageFormat = "qcow2"
	ImageRaw   ImageFormat = "raw"
)

// Boot says what a domain boots. Either Image (a disk), or Kernel with an
// optional Initrd and Cmdline (direct kernel boot), or both (the kernel
// boots with the image attached as its first disk), or neither (an empty
// machine that idles in firmware: enough for the simulator and for tests).
type Boot struct {
	Image       string      `json:"image,omitempty"`
	ImageFormat ImageFormat `json:"image_format,omitempty"` // qcow2 (default) or raw
	Kernel      string      `json:"kernel,omitempty"`
	Initrd      string      `json:"initrd,omitempty"`
	Cmdline     string      `json:"cmdline,omitempty"`
}

// DomainSpec is what Define creates.
type DomainSpec struct {
	Name      string `json:"name"`  // DomainName(vm name)
	VMID      string `json:"vm_id"` // the VM object's id
	Epoch     uint64 `json:"epoch"` // the placement epoch that put it here
	CPUs      int    `json:"cpus"`
	MemoryMiB int64  `json:"memory_mib"`
	Boot      Boot   `json:"boot"`
	// Disks are attached after the boot image (if any), in order; NICs
	// in order.
	Disks []DomainDisk `json:"disks,omitempty"`
	NICs  []DomainNIC  `json:"nics,omitempty"`
	// Cluster is the identity (UUID) of the Kumoi cluster the domain
	// belongs to, recorded with the tag; empty for none (a domain defined
	// by a build older than cluster identity).
	Cluster string `json:"cluster,omitempty"`
}

// State is a domain's power state.
type State string

// Domain states. Active states (the domain holds CPU and memory on the
// host) are running, paused, shutting-down and pmsuspended.
const (
	StateRunning      State = "running"
	StatePaused       State = "paused"
	StateShuttingDown State = "shutting-down" // a shutdown is in progress
	StateShutoff      State = "shutoff"
	StateCrashed      State = "crashed"     // stopped by a crash and kept for inspection
	StatePMSuspended  State = "pmsuspended" // guest power management (S3)
	StateUnknown      State = "unknown"
)

// Active reports whether a domain in this state holds resources on the
// host and counts as running somewhere for the "no VM runs twice" rule.
func (s State) Active() bool {
	switch s {
	case StateRunning, StatePaused, StateShuttingDown, StatePMSuspended:
		return true
	}
	return false
}

// DomainInfo is what a driver observes of one domain.
type DomainInfo struct {
	Name string `json:"name"`
	// VMID and Epoch are the Kumoi tag; Kumoi is true when it is present.
	// A foreign domain (not created by Kumoi) has Kumoi false.
	VMID  string `json:"vm_id,omitempty"`
	Epoch uint64 `json:"epoch,omitempty"`
	Kumoi bool   `json:"kumoi"`
	// Cluster is the Kumoi cluster the domain belongs to, from its tag;
	// empty for a foreign domain and for one defined by a build older
	// than cluster identity (which counts as the local cluster's).
	Cluster string `json:"cluster,omitempty"`
	State   State  `json:"state"`
	// Reason is why the domain is in its state, in the hypervisor's words
	// (for shutoff: shutdown, destroyed, crashed, failed, ...).
	Reason string `json:"reason,omitempty"`
	// CPUs and MemoryMiB are the live values of an active domain and the
	// defined values of a stopped one.
	CPUs      int   `json:"cpus"`
	MemoryMiB int64 `json:"memory_mib"`
	// Disks and NICs are the domain's defined extra disks and network
	// interfaces (as DomainSpec: the boot image is not among the disks).
	Disks []DomainDisk `json:"disks,omitempty"`
	NICs  []DomainNIC  `json:"nics,omitempty"`
}

// HostStats is a host's capacity and what its active domains hold.
// Allocation counts every active domain, foreign ones included: they use
// the host as much as Kumoi's do.
type HostStats struct {
	CPUs               int   `json:"cpus"`
	MemoryMiB          int64 `json:"memory_mib"`
	AllocatedCPUs      int   `json:"allocated_cpus"`
	AllocatedMemoryMiB int64 `json:"allocated_memory_mib"`
	Domains            int   `json:"domains"`        // defined domains
	ActiveDomains      int   `json:"active_domains"` // of which active
}

// EventKind is the kind of a lifecycle event.
type EventKind string

// Event kinds.
const (
	EventDefined   EventKind = "defined"
	EventUndefined EventKind = "undefined"
	EventStarted   EventKind = "started"
	EventStopped   EventKind = "stopped" // Reason: one of the Stop* reasons
	EventSuspended EventKind = "suspended"
	EventResumed   EventKind = "resumed"
	// EventResync says events may have been lost (the driver reconnected
	// to its hypervisor, or the queue overflowed): List to catch up. Domain
	// is empty.
	EventResync EventKind = "resync"
)

// Reasons carried by EventStopped.
const (
	StopShutdown  = "shutdown"  // the guest powered off (by itself, or asked by ACPI)
	StopDestroyed = "destroyed" // pulled: Destroy, or Shutdown's grace ran out
	StopCrashed   = "crashed"   // the guest crashed
	StopFailed    = "failed"    // the hypervisor process died or failed to run it
	StopOther     = "other"     // saved, migrated, restored from a snapshot
)

// Event is one lifecycle change of one domain.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   EventKind `json:"kind"`
	Domain string    `json:"domain,omitempty"`
	// VMID and Epoch are the domain's Kumoi tag, if it has one.
	VMID   string `json:"vm_id,omitempty"`
	Epoch  uint64 `json:"epoch,omitempty"`
	Reason string `json:"reason,omitempty"`
}
