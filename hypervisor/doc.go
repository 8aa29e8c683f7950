// Package hypervisor owns the seam between a Kumoi worker and the virtual
// machines on its host: the Driver interface, the value types that cross it
// (DomainSpec, DomainInfo, Event, HostStats, Capabilities) and its sentinel
// errors.
//
// Two drivers implement it: hypervisor/libvirt (real domains through
// libvirt.org/go/libvirt, build tag libvirt_dlopen) and hypervisor/sim (an
// in-memory host with knobs for capacity, latency and injected failures).
// hypervisor/conformance is the one test suite both must pass.
//
// A driver only does what it is told and reports what it sees. It must not
// decide anything: it never talks to controllers, never restarts a domain on
// its own, never refuses a start for lack of capacity (libvirt does not
// either; placement is the controllers' business) and never touches domains
// other than the one named in a call. The worker's reconciler, in cluster/,
// owns every decision.
package hypervisor
