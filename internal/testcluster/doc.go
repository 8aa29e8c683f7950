// Package testcluster starts real `kumoi agent --controller` processes for
// multi-process tests, benchmarks and the chaos harness: one process per node,
// each on its own loopback address (127.0.x.11, .12, …) with the default
// ports, its own data directory and its own log file. It kills, stops,
// pauses and restarts them, and polls their HTTP API until they agree on a
// leader.
//
// A cluster may also run workers (`kumoi agent --worker`, by default with
// the simulated hypervisor): Options.Workers or AddWorker start them on the
// next addresses of the cluster's block, joining the controllers' gossip,
// and the Worker… methods start, kill and stop them like
// controllers. Host and WaitHostState read the host objects the
// controllers make of them. Every worker writes an observation log
// (--observation-log, WorkerObservationLog: one JSON line per domain start
// and stop), and the cluster records every start and exit of every
// process (History, WorkerHistory), so that a checker can close the
// domains a killed sim worker took with it at the time it exited.
//
// Everything waits by polling with a deadline (stretched ×3 when CI is set),
// never by sleeping. Processes are always killed when the test ends, and
// when a test fails the tail of every node's log is printed.
//
// The binary comes from Options.Bin, else $KUMOI_BIN, else it is built once
// per test process from the module root (go build -tags libvirt_dlopen
// ./cmd/kumoi). When it cannot be found or built the test is skipped, except
// under CI, where that is a failure. TestHooksBinary builds one with the
// agent's fault hooks (build tag TestHooksTag, kumoi_testhooks), which the
// release binary lacks.
//
// The package is for tests and for the chaos harness (jepsen/,
// cmd/kumoi-jepsen, which pass a Standalone TB); never for the agent or the
// CLI. It talks to nodes with plain net/http and the
// wire types of package resource, so that it does not depend on the SDK it
// is used to test.
package testcluster
