// Package scheduler decides placements: a pure function from a view of the
// state (ready hosts with their free capacity, pending VMs) to a plan that
// the leader proposes through Raft. It does no I/O and keeps no state; the
// FSM re-checks every placement at apply time, so a wrong or stale plan can
// fail but never overcommit a host.
package scheduler
