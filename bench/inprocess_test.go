package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
)

// BenchmarkCreatesInProcess is BenchmarkCreates/clients=128 with the three
// controllers in the benchmark's own process (agent.Start), so that
// -cpuprofile, -mutexprofile and -blockprofile see the server side:
//
//	go test -tags libvirt_dlopen -run '^$' -bench CreatesInProcess -benchtime 1x \
//	    -cpuprofile cpu.prof ./bench/ && go tool pprof -top bench.test cpu.prof
//
// It runs only when a profile is asked for or KUMOI_BENCH_INPROCESS is set:
// its numbers mix the client's and the servers' CPU use in one process and
// are not the ones docs/benchmarks.md reports. KUMOI_BENCH_NOSYNC=1 turns
// fsync off, to see what durability costs.
func BenchmarkCreatesInProcess(b *testing.B) {
	if !profiling() {
		b.Skip("runs only with -cpuprofile/-memprofile/-mutexprofile/-blockprofile or KUMOI_BENCH_INPROCESS=1")
	}
	agents := inProcessCluster(b, 3)
	hc := testcluster.NewHTTPClient(256, 30*time.Second)
	b.Cleanup(hc.CloseIdleConnections)
	cfg := waitInProcessLeader(b, agents, "").Config()
	leaderURL := "http://" + cfg.APIAddr()
	warmUp(b, hc, leaderURL)
	d := runDuration(b)
	b.Run("clients=128", func(b *testing.B) {
		for run := range b.N {
			res := runCreates(hc, []string{leaderURL}, 128, d, fmt.Sprintf("inproc-%d", run))
			if run == b.N-1 {
				res.report(b)
			}
		}
	})
}
