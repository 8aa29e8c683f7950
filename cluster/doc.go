// Package cluster is the family of packages that run a Kumoi cluster, one
// per role. This package holds no code of its own: only this map and the
// test that keeps the import rules below true (imports_test.go).
//
//	cluster/agent       wiring: starts the roles a command line asks for
//	                    (controller + API, dev mode), telemetry
//	cluster/controller  Raft, leadership, the leader loops (hosts,
//	                    evacuation, scheduling, policies, voters, bootstrap),
//	                    write application, read barriers
//	cluster/api         the HTTP API over a small Backend interface: routing,
//	                    objects, VM actions, worker reports, events,
//	                    forwarding, errors, body decoding, metrics
//	cluster/worker      the agent on a hypervisor host: reconcile, domain
//	                    convergence, reports, fencing
//	cluster/membership  memberlist configuration, the gossip metadata
//	                    schema, the shared delegate, the member table
//	cluster/fenceguard  the fence guard: a process beside a libvirt worker
//	                    that stops the host's domains when nobody can prove
//	                    the host is still ready (the worker renews it)
//
// Imports go one way: agent → controller, api, worker → membership → lower
// layers (fsm, scheduler, script, client, hypervisor, resource). The three
// middle roles do not import each other; the API never imports Raft (the
// controller maps Raft's errors onto resource's once); the worker imports
// neither fsm nor Raft; the fence guard imports only the client and the
// hypervisor drivers (the worker imports it for the renewal protocol);
// nothing below cluster/ imports it.
package cluster
