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
package sim
