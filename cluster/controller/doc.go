// Package controller is one member of the replicated control plane: the
// state machine (package fsm) under hashicorp/raft (patched: third_party/raft),
// with its log and stable store in raft-wal or raft-boltdb/v2 (fsync on;
// logstore.go) and a file snapshot store.
//
// Where things are:
//   - controller.go  New, Apply/Propose (write application), ConsistentRead
//     (read barriers), Status, Cluster, RemoveServer, Shutdown
//   - config.go      Config, defaults and validation
//   - errors.go      the controller's errors; Raft's are mapped onto them here
//   - raft.go        the log, stable and snapshot stores, the TCP transport
//   - logstore.go    the Raft log store (wal or boltdb), its conversion
//   - gossip.go      joining the gossip pool (cluster/membership)
//   - bootstrap.go   bootstrapping once --bootstrap-expect controllers are seen
//   - leader.go      the leadership lifecycle: barrier, then the leader loops
//   - voters.go      leader loop: alive controllers become Raft voters
//   - hosts.go       leader loop: gossip membership → host objects
//   - evacuate.go    leader loop: VMs off hosts down for the grace
//   - schedule.go    leader loop: pending VMs placed (package scheduler)
//   - policies.go    leader loop: the stored Starlark policies (package script)
//
// The controller owns every side effect of a controller node except the
// HTTP server (cluster/agent serves cluster/api over it). Gossip only feeds
// the leader; every decision is written through Raft. It must not import
// cluster/api, cluster/worker or cluster/agent, nor hold object semantics
// (resource and fsm do) or render anything for humans (the CLI does).
package controller
