// Package libvirt is the hypervisor.Driver for real hosts, on
// libvirt.org/go/libvirt. It needs the build tag libvirt_dlopen (as every
// Kumoi build uses): then it needs no libvirt headers to build and loads
// libvirt.so.0 when New is first called. Without the tag the package still
// builds, but New fails with hypervisor.ErrUnsupported.
//
// Domains are named "kumoi-<vm name>" and carry a metadata element in the
// Kumoi namespace (Namespace) with the VM id, the placement epoch and the
// identity of the cluster that defined it (none for domains defined by
// older builds). Domain XML
// is built and read with libvirt.org/go/libvirtxml. Lifecycle events come
// from libvirt's default event loop, which the package starts once per
// process. A lost connection is noticed (close callback, keepalive, failed
// calls) and re-opened with backoff; calls in between fail with
// hypervisor.ErrUnavailable, and the first event after the reconnect is an
// EventResync.
//
// Networks (netstore.go) are libvirt networks "kumoi-<name>" built with
// libvirtxml: nat is <forward mode='nat'>, isolated has no <forward>,
// bridge is <forward mode='bridge'> onto an existing host bridge (no
// address, no DHCP, no MTU: the host bridge's). The gateway with the
// CIDR's prefix is the bridge's <ip>; DHCP serves only <host mac ip name>
// entries (no <range>: libvirt then has dnsmasq answer those hosts only).
// An empty <dhcp> does not survive libvirt's formatting, so a DHCP network
// without hosts reads back without it. Kumoi marks its networks with an
// element in the NetworkNamespace inside <metadata> (libvirt before 9.7
// keeps a network's <metadata> though it has no API for it); a network of a
// Kumoi name without the marker is foreign: EnsureNetwork and
// RemoveNetwork refuse it (ErrExists). DHCP host entries change live with
// virNetworkUpdate (running network and definition); any other change
// redefines the network (same UUID) and restarts it, refused with
// ErrInvalidState while an active domain has an interface on it.
// RemoveNetwork is refused likewise. Networks are set to autostart.
//
// Volumes live in the directory pool "kumoi" at Options.StorageDir, which
// is defined, built and started (autostart) on first use; a pool of that
// name that exists is used where it is. A volume is a qcow2 file made by
// virStorageVolCreateXML, an overlay when the definition names a backing
// image (<backingStore> with path and format); it grows with
// virStorageVolResize (the test driver has no resize: it lacks the
// volume-resize capability and growing fails with ErrUnsupported).
// ListVolumes refreshes the pool first, so a file removed behind libvirt's
// back is not listed. RemoveVolume refuses (ErrInvalidState) a volume an
// active domain has as a disk.
//
// A domain's extra disks (DomainSpec.Disks) are virtio disks vdb, vdc, ...
// in order: vda is kept for the boot image, so that the two read back
// apart; with no boot image and no kernel the first extra disk has boot
// order 1. NICs are <interface type='network'> on their network with the
// MAC, a virtio model and the MTU. Starting a domain whose network or
// volume is gone fails with ErrMissingResource (on QEMU; the test driver
// does not look).
//
// Live migration (migrate.go, migrateuri.go) is libvirt's peer-to-peer
// migration (virDomainMigrateToURI3, live, persisting the domain on the
// target and undefining it on the source; volumes copied on request): the
// source's libvirtd drives it against the target's libvirtd, whose URI
// (Options.MigrationURI) and data address (Options.MigrationAddress) the
// target's PrepareIncoming returns in one string. Only QEMU connections
// with a migration URI have CapLiveMigration; the test driver cannot
// migrate.
//
// The package must not decide anything about the domains it manages: it
// does what the worker asks and reports what libvirt says.
package libvirt
