// Package bench holds Kumoi's benchmarks, run by `make bench`:
//
//	go test -tags libvirt_dlopen -run '^$' -bench . -benchtime 1x -timeout 30m ./bench/...
//
// They start real `kumoi agent --controller` processes, and for
// BenchmarkHostFailover `kumoi agent --worker` processes with the simulated
// hypervisor or with libvirt, each on a libvirt daemon of its own
// (internal/testcluster, internal/libvirtd), on loopback addresses with
// fsync on;
// BenchmarkPlacement and BenchmarkCreatesInProcess run the controllers in
// the benchmark's process (agent.Start). They report throughput,
// latency percentiles, failover and HA times with b.ReportMetric.
// docs/benchmarks.md keeps the numbers measured and how.
//
// The benchmarks measure; they do not assert targets. Each runs for a fixed
// wall-clock budget whatever b.N is, so -benchtime 1x is the way to run them.
package bench
