// Package jepsen is Kumoi's chaos harness, after Jepsen and etcd's
// robustness tests: it runs a cluster of real kumoi processes, drives a
// workload through the Go SDK while nemeses inject faults, records every
// operation in a history and checks that the history is one the API
// promises. cmd/kumoi-jepsen is its command line; docs/jepsen.md says what
// each workload, nemesis and anomaly means.
//
// # What it owns
//
//   - Process control, through internal/testcluster: the controllers and
//     workers of a run, started on loopback addresses from a Standalone
//     (a testing.TB outside tests) whose failures Run turns into errors
//     (testcluster.Recover), and their health (healthy, leader).
//   - Nemeses (nemesis.go): Nemesis, built by NewNemesis from the names in
//     Nemeses; each inject returns its heal. Partitions are iptables rules
//     on loopback addresses only, tagged with the process id, that
//     Firewall removes even after a failed heal.
//   - Workloads (workload.go, register.go, set.go, placement.go, ipam.go): Workload
//     runs one logical client (Run), makes its final reads (Final) and
//     checks the history (Check). Env hands them SDK clients: Env.Client
//     talks to one controller and never retries, so that each operation of
//     the history is one request; Env.AnyClient retries, for what is not
//     part of the history.
//   - Histories (history.go) and their classification: an operation is ok,
//     fail (it certainly did nothing) or unknown (it may take effect at
//     any later time, or never). A write's status comes from the SDK's own
//     rule, client.NotApplied (writeOutcome).
//   - The identity check (identity.go, anomaly types bootstrap-race and
//     identity): one cluster id on every controller, all run long, and
//     every controller's own Raft configuration exactly the run's
//     controllers; at the start, after every heal that restarts
//     controllers, and at the end. The bootstrap-race workload
//     (bootstrap.go) starts new clusters with racy timing round after
//     round and checks each. The wipe-restart nemesis (wipe.go) replaces
//     a controller that lost its disk the documented way (the refused
//     start, kumoi cluster remove, the same command line again) and
//     records the refusal in Findings.
//   - Checkers: porcupine's linearizability check of the register, the
//     set's lost and unexpected elements, and the placement checker (no VM
//     on two hosts at once, no host over capacity, a final state that
//     matches the acknowledged writes and the hosts' observation logs).
//     In the libvirtd mode (libvirtd.go: one libvirt daemon per worker,
//     whose domains outlive the worker) a poller also reads every
//     daemon's active domains (daemons.go), and a double run is checked
//     from those reads alone, soundly: only what the reads prove. The
//     ipam checker (ipam.go): no address or MAC held by two VMs at once
//     (at the end, and during the run from what the acknowledged creates
//     returned), no acknowledged create without an address unless the
//     network can have been full, no leaked allocation (the network's
//     status, and a fill probe that allocates every free address again).
//   - Reports (runner.go, plots.go, summary.go): each run writes a
//     directory with plan.json (what --replay runs again), results.json
//     (Result), history.json, the checker's files (history.html,
//     intervals.json, domains.json, ipam-final.json), latency.png and rate.png; Summary
//     prints a result.
//
// # How a run flows
//
// Run validates the Config (a selftest's Config.UnsafeStaleReads needs a
// kumoi built with the fault hooks, tag kumoi_testhooks: testhooks.go
// asks the binary before anything starts), creates the run's directory,
// starts the
// cluster and waits for a leader and for every worker's host to be ready,
// and sets the workload up. Then Config.Concurrency clients run the
// workload for Config.Duration while schedule injects and heals faults:
// each fault waits for a healthy cluster, lasts a drawn (or replayed)
// time, and is healed and followed by a health check, and is recorded as a
// FaultWindow. After the clients stop, every nemesis is healed and every
// partition rule removed; the workload makes its final reads, the history
// is written and checked, the fault windows get their availability, and
// the controllers must converge on the same state. Whatever happened,
// the cluster is stopped and plan.json and results.json are written; the
// node logs and data directories are kept for invalid runs only.
//
// # Dependencies
//
// The harness sees Kumoi from the outside. Of Kumoi's packages it imports
// only (go list -deps ./jepsen):
//
//   - client, the SDK, for every request to the cluster (and through it
//     internal/frames, the SDK's request streams; the harness does not
//     turn them on);
//   - internal/testcluster, to start, stop and signal the processes;
//   - internal/tlsutil (through internal/testcluster), which makes the
//     certificates of a TLS run (--tls, the default) from a test CA, as an
//     operator does with `kumoi tls`;
//   - internal/libvirtd, to start, pause and stop the libvirt daemons of
//     the libvirtd mode (it imports no Kumoi package); the daemons are read
//     with virsh, as an administrator would;
//   - resource, the wire types that the SDK speaks too;
//   - hypervisor, for the format of the workers' observation logs
//     (Observation, ObserveStart, ObserveStop, DomainPrefix) only; that
//     package imports no other Kumoi package.
//
// It must not import the server side (cluster, fsm, scheduler), the
// drivers (hypervisor/sim, hypervisor/libvirt) or the CLI: what it checks
// is what a client and the hosts' logs can see. Its tests also use
// internal/testapi, the fake API server.
package jepsen
