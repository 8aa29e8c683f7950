package hypervisor

import (
	"sort"
	"strings"
)

// Capability is an optional feature a driver may honour.
type Capability string

// Capabilities a driver may have. Operations that need a missing capability
// fail with ErrUnsupported (Shutdown without GracefulShutdown destroys).
const (
	CapSuspend          Capability = "suspend"           // Suspend and Resume
	CapReboot           Capability = "reboot"            // Reboot
	CapGracefulShutdown Capability = "graceful-shutdown" // Shutdown asks the guest first
	CapEvents           Capability = "events"            // Events reports lifecycle changes
	CapKernelBoot       Capability = "kernel-boot"       // Boot.Kernel/Initrd/Cmdline
	CapDiskBoot         Capability = "disk-boot"         // Boot.Image
	CapVolumeResize     Capability = "volume-resize"     // EnsureVolume grows an existing volume
	CapLiveMigration    Capability = "live-migration"    // the driver is a Migrator (migrate.go)
)

// AllCapabilities lists every capability, in a stable order.
var AllCapabilities = []Capability{
	CapSuspend, CapReboot, CapGracefulShutdown, CapEvents, CapKernelBoot, CapDiskBoot, CapVolumeResize,
	CapLiveMigration,
}

// Capabilities is a set of capabilities. The zero value is the empty set.
type Capabilities map[Capability]bool

// NewCapabilities returns the set of cs.
func NewCapabilities(cs ...Capability) Capabilities {
	s := make(Capabilities, len(cs))
	for _, c := range cs {
		s[c] = true
	}
	return s
}

// Has reports whether c is in the set.
func (s Capabilities) Has(c Capability) bool { return s[c] }

// List returns the set's members sorted by name.
func (s Capabilities) List() []Capability {
	out := make([]Capability, 0, len(s))
	for c, ok := range s {
		if ok {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// String is the sorted, comma-separated member list.
func (s Capabilities) String() string {
	l := s.List()
	parts := make([]string, len(l))
	for i, c := range l {
		parts[i] = string(c)
	}
	return strings.Join(parts, ",")
}
