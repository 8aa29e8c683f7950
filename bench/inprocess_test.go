package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kumoi/kumoi/cluster"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// BenchmarkCreatesInProcess is BenchmarkCreates/clients=128 with the three
// controllers in the benchmark's own process (cluster.StartAgent), so that
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
	ips := testcluster.ReserveIPs(b, 3)
	gossip := func(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(cluster.DefaultGossipPort)) }
	agents := make([]*cluster.Agent, len(ips))
	for i, ip := range ips {
		var join []string
		for j, other := range ips {
			if j != i {
				join = append(join, gossip(other))
			}
		}
		a, err := cluster.StartAgent(cluster.Config{
			NodeID:          "c" + strconv.Itoa(i+1),
			DataDir:         filepath.Join(b.TempDir(), "data"),
			BindIP:          ip,
			BootstrapExpect: len(ips),
			Join:            join,
			// KUMOI_BENCH_NOSYNC=1 measures what fsync costs.
			NoSync: os.Getenv("KUMOI_BENCH_NOSYNC") != "",
		})
		if err != nil {
			b.Fatalf("start controller %d: %v", i+1, err)
		}
		agents[i] = a
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_ = a.Shutdown(ctx)
		})
	}
	hc := testcluster.NewHTTPClient(256, 30*time.Second)
	b.Cleanup(hc.CloseIdleConnections)
	var leaderURL string
	testcluster.WaitFor(b, 30*time.Second, "a leader", func() (bool, error) {
		for _, a := range agents {
			if a.Controller().IsLeader() {
				leaderURL = "http://" + a.APIAddr()
				return true, nil
			}
		}
		return false, nil
	})
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
