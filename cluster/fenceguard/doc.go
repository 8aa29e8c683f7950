// Package fenceguard is the fence guard: a small process beside a libvirt
// worker that stops this cluster's domains on the host when nobody can
// prove that the controllers still count the host as ready.
//
// Under libvirt a VM's domain lives in libvirtd (or its QEMU process), not
// in the worker, so fencing that lives in the worker dies with it: a
// killed or paused worker leaves domains running that the controllers
// restart elsewhere once the host has been down for --host-down-grace. The
// guard is its own process (spawned detached by the worker, or run by its
// own service unit) with its own libvirt connection and its own timer; no
// reconcile work or hung libvirt call of the worker holds it up.
//
// The rule (docs/ha.md has the timing argument): the guard holds the
// latest *proof*, the start time, on the host's boot-time clock, of a
// linearizable read that showed this host ready or draining. The worker
// renews it after every such read (over a unix socket in its data
// directory, Renewal/Ack) and, before it starts any domain, waits until
// the guard has acknowledged a fresh proof. When renewals stop the guard
// reads the host object itself, from the worker's address. When the
// proof is --fence-after old it destroys every active Kumoi domain of its
// cluster on the host, records that (FenceRecord) for the worker, and
// keeps destroying any that becomes active until a proof taken after the
// fence arrives. (A read that shows the host down is no proof, but no
// reason to fence at once: a restarted worker's host is down while it
// reconciles.)
//
// It imports the hypervisor drivers and the API client only: no Raft, no
// gossip, no controller or worker code.
package fenceguard
