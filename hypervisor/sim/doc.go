// Package sim is an in-memory hypervisor.Driver: a simulated host with a
// configurable capacity, boot and shutdown latency, injected failures per
// operation, a switch that cuts its "connection", and guest-side actions
// (power off from inside, crash, a foreign domain defined behind Kumoi's
// back) for tests. Dev mode and scale tests run workers on it.
//
// It mirrors libvirt where the two could differ: Start does no capacity
// check (Stats reports the allocation, placement is the controllers' job), a
// crash leaves the domain shut off with reason "crashed" (libvirt's default
// on_crash=destroy), Shutdown of a paused domain destroys it (a paused guest
// cannot answer ACPI), and events are emitted for the same transitions. Its
// domains live in memory only: Close ends them.
//
// Networks and volumes are in memory too. A network is a definition and
// an active flag; a volume is a name, a path (Options.StorageDir/<name>,
// no file is written), a virtual size and a backing path. As on libvirt,
// Define takes a NIC on any network and a disk at any path (libvirt checks
// neither before the domain starts); Start fails with ErrMissingResource
// when a NIC's network does not exist or is not active, or when a disk
// under StorageDir is not a volume of the pool (other paths are taken as
// they are: the simulator has no files to look at). A running domain
// keeps running when its network or volume goes away behind Kumoi's back,
// as a QEMU process keeps its tap and its open file. RemoveNetwork and
// RemoveVolume refuse (ErrInvalidState) while an active domain uses the
// network or volume (libvirt itself would let an administrator pull it
// from under a guest; the libvirt driver checks first, as this one does).
// A change of a network other than its DHCP hosts, while an active domain
// uses it, is refused with ErrInvalidState (libvirt would need a restart
// of the network). Two active nat or isolated networks cannot share a
// bridge name (ErrExists).
//
// Behind Kumoi's back: VanishNetwork, StopNetwork, DefineForeignNetwork
// and VanishVolume change the host as an administrator with virsh would.
package sim
