// Package fsm is Kumoi's replicated state machine: the typed Raft commands,
// the deterministic Apply that turns them into state, the go-memdb state
// store with its indexes, snapshot and restore, and the watch/event
// machinery behind blocking queries and the event stream.
//
// Apply is deterministic: no clock, no randomness, no I/O, no dependence on
// map order. Everything non-deterministic (ids, time) travels inside the
// command. Apply never panics on any log entry. A well-formed command that
// is not allowed (validation, CAS, capacity, wrong phase) yields a Result
// with an error and leaves the state unchanged. An entry this build cannot
// understand (empty, an unknown type without IgnoreUnknownTypeFlag, a
// payload that does not decode) or whose applier panics is never skipped:
// the FSM halts there and applies nothing more (halt.go), because skipping
// would let the replicas diverge.
//
// The package must not import cluster, client or cli, and must not talk to
// the network.
package fsm
