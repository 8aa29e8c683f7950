// Package cluster runs Kumoi's agents. A controller wires the replicated
// state machine (package fsm) to hashicorp/raft with raft-boltdb/v2 log and
// stable stores (fsync on) and a file snapshot store, finds its peers through
// hashicorp/memberlist, bootstraps once --bootstrap-expect controllers are
// seen, adds later controllers as voters, runs leader-only loops for as long
// as it leads, and serves the HTTP API (forwarding writes and linearizable
// reads to the leader).
//
// The package owns every side effect of a controller: sockets, files,
// goroutines. It must not contain object semantics (those live in resource
// and fsm) and must not render anything for humans (that is the CLI's job).
package cluster
