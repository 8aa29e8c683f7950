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
// The package must not decide anything about the domains it manages: it
// does what the worker asks and reports what libvirt says.
package libvirt
