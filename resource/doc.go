// Package resource owns Kumoi's object model: the uniform Object shape that
// every kind (VM, Host, and later networks, volumes, pools, policies) shares,
// the typed spec and status of each kind, and validation that names the
// offending field.
//
// It depends on the standard library only. It must not know about Raft, the
// state store, HTTP or the CLI: those import it, never the other way round.
package resource
