// Command kumoi-jepsen runs Kumoi's chaos harness (package jepsen): it
// starts a cluster of real kumoi processes (3 or 5
// controllers, optionally sim workers) on loopback
// addresses, runs a workload through the Go SDK while nemeses inject
// faults, checks the history, and writes jepsen/out/<timestamp>-<name>/.
// It exits 1 when any run is invalid, 2 on a usage or harness error.
//
//	kumoi-jepsen --workload register,set --nemesis kill-leader,pause-leader --duration 30s
//	kumoi-jepsen --workload register,set --nemesis wipe-restart,kill-leader --nodes 5
//	kumoi-jepsen --workload bootstrap-race --duration 60s --runs 3
//	kumoi-jepsen --workload ipam --nemesis kill-leader,pause-random,partition-leader --duration 30s
//
// Every run checks the controllers' identity (bootstrap-race): one cluster
// id, and every Raft configuration exactly the run's controllers, at the
// start, after every heal that restarts controllers and at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/jepsen"
)

func main() {
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	testcluster.RemoveCA() // the TLS runs' CA, in the temporary directory
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kumoi-jepsen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workloads := fs.String("workload", "register", "workloads to run, comma-separated, one run each: "+strings.Join(jepsen.Workloads, ", ")+
		" (bootstrap-race: no clients nor nemeses, new clusters started with racy timing round after round for --duration, each checked for one cluster of exactly its controllers)")
	nemeses := fs.String("nemesis", "kill-leader", "nemeses to mix in each run, comma-separated ("+strings.Join(jepsen.Nemeses, ", ")+"), or none; partition-*, worker-partition and worker-restart-partitioned need root; libvirt-hang needs --worker-driver libvirtd; "+
		"worker-pause, worker-restart-partitioned and libvirt-hang last at least 8s (longer than --host-down-grace); "+
		"wipe-restart kills a controller, wipes its data directory, checks that it refuses to start as is, then runs kumoi cluster remove and starts it again until it is a voter")
	nodes := fs.Int("nodes", 3, "controllers: 3 or 5")
	workers := fs.Int("workers", 0, "workers (needed by the worker-* nemeses and libvirt-hang; 0 runs placement with 2)")
	workerDriver := fs.String("worker-driver", "sim", "the workers' hypervisor driver: sim; libvirt (libvirt's test:/// driver in each worker; needs libvirt0); or libvirtd (one libvirt daemon per worker, lv-1, lv-2, …: the domains live in the daemon and outlive the worker; the placement checker reads the daemons; needs libvirt-daemon and libvirt-clients)")
	duration := fs.Duration("duration", 30*time.Second, "how long each workload runs")
	concurrency := fs.Int("concurrency", 5, "concurrent clients")
	rate := fs.Float64("rate", 0, "operations per second of all clients together (0: no limit)")
	seed := fs.Int64("seed", 0, "seed of the fault schedule and of the workload (0: from the time; the seed used is printed)")
	runs := fs.Int("runs", 1, "run each workload this many times, with seeds seed, seed+1, …")
	bin := fs.String("bin", "bin/kumoi", "kumoi binary to run (make build)")
	out := fs.String("out", "jepsen/out", "directory that receives one <timestamp>-<name>/ per run")
	hold := fs.Duration("hold", 0, "each fault lasts a random time in [hold, 2×hold) (0: 2s, and 5s for placement)")
	opTimeout := fs.Duration("op-timeout", 2*time.Second, "timeout of every client operation; a write that times out has an unknown outcome")
	replay := fs.String("replay", "", "run the plan saved in this run directory (its plan.json: workload, nemeses, seed, fault schedule) again; other flags except --bin, --out, --keep-logs and -v are ignored")
	withTLS := fs.Bool("tls", true, "run the cluster with TLS (certificates of a test CA: HTTPS API, mutual-TLS Raft and gossip streams); ACLs are on either way; --tls=false for plain TCP")
	logStore := fs.String("raft-log-store", "", "the controllers' --raft-log-store: wal or boltdb (default: the agent's: wal, as every run's data directories are new); recorded in plan.json and results.json")
	walSegment := fs.String("raft-wal-segment-size", "", "the controllers' --raft-wal-segment-size (e.g. 1MiB: the wal Raft log rotates its segments every few thousand entries, under the faults; default: the agent's, 64MiB); recorded in plan.json and results.json")
	stream := fs.Bool("stream", false, "the workloads' clients send their writes on request streams (the Go SDK's Config.Stream: one multiplexed connection per controller, docs/api.md) instead of one HTTP request each; reads stay HTTP")
	unsafe := fs.Bool("unsafe-stale-reads", false, "SELFTEST: start the controllers with the hidden --debug-unsafe-stale-reads (reads skip the leader check), a bug the checker must catch; --bin must be built with the tag kumoi_testhooks (make jepsen-selftest builds bin/kumoi-testhooks), else the run is refused")
	wantCaught := fs.Int("want-caught", 0, "SELFTEST: exit 0 only if at least this many runs have a nonlinearizable anomaly (and 1 otherwise), instead of wanting every run valid")
	bootModes := fs.String("bootstrap-modes", "", "bootstrap-race: draw the rounds' timing only from these modes, comma-separated ("+strings.Join(jepsen.BootstrapModes, ", ")+"; empty: all)")
	maxTime := fs.Duration("max-time", 0, "start no new run once this much time has passed since the first began (0: no limit); the runs left out are counted in the last line, and the exit status is 1 if any was left out")
	keepLogs := fs.Bool("keep-logs", false, "keep the node logs and data directories of valid runs too (always kept for invalid ones)")
	verbose := fs.Bool("v", false, "log the cluster harness and every fault")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kumoi-jepsen: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var nems []string
	if *nemeses != "" && *nemeses != "none" {
		nems = strings.Split(*nemeses, ",")
	}
	nemesisSet := false
	fs.Visit(func(f *flag.Flag) { nemesisSet = nemesisSet || f.Name == "nemesis" })
	if *seed == 0 {
		*seed = time.Now().UnixNano()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(string, ...any) {}
	if *verbose {
		logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	}
	var cfgs []jepsen.Config
	if *replay != "" {
		cfg, err := jepsen.LoadPlan(*replay)
		if err != nil {
			fmt.Fprintf(stderr, "kumoi-jepsen: --replay: %v\n", err)
			return 2
		}
		cfgs = append(cfgs, cfg)
	} else {
		for r := 0; r < *runs; r++ {
			for _, w := range strings.Split(*workloads, ",") {
				wnems := nems
				if w == jepsen.BootstrapRace && !nemesisSet {
					wnems = nil // its rounds are its faults; the default kill-leader is not for it
				}
				cfgs = append(cfgs, jepsen.Config{
					Workload: w, Nemeses: wnems, Nodes: *nodes, Workers: *workers, WorkerDriver: *workerDriver, Duration: *duration,
					Concurrency: *concurrency, Rate: *rate, Seed: *seed + int64(r), OpTimeout: *opTimeout,
					UnsafeStaleReads: *unsafe, TLS: *withTLS, Stream: *stream, RaftLogStore: *logStore, WALSegmentSize: *walSegment, Fault: *hold, BootstrapModes: splitList(*bootModes),
				})
			}
		}
	}
	code, valid, caught, done := 0, 0, 0, 0
	began := time.Now()
	skipped := 0
	for i, cfg := range cfgs {
		if *maxTime > 0 && time.Since(began) >= *maxTime {
			skipped = len(cfgs) - i
			code = max(code, 1)
			break
		}
		cfg.Bin, cfg.OutDir, cfg.Logf, cfg.KeepLogs = *bin, *out, logf, *keepLogs
		res, err := jepsen.Run(ctx, cfg)
		if res == nil {
			fmt.Fprintf(stderr, "kumoi-jepsen: %s: %v\n", cfg.Workload, err)
			return 2
		}
		jepsen.Summary(stdout, res)
		done++
		if res.Valid {
			valid++
		}
		for _, a := range res.Anomalies {
			if a.Type == "nonlinearizable" {
				caught++
				break
			}
		}
		switch {
		case err != nil:
			code = max(code, 2)
		case !res.Valid:
			code = max(code, 1)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(cfgs) > 1 || *wantCaught > 0 {
		fmt.Fprintf(stdout, "== %d runs in %s: %d valid, %d invalid (%d with a nonlinearizable history)\n",
			done, time.Since(began).Round(time.Second), valid, done-valid, caught)
	}
	if skipped > 0 {
		fmt.Fprintf(stdout, "== %d of %d runs not started: --max-time %s was reached\n", skipped, len(cfgs), *maxTime)
	}
	if *wantCaught > 0 {
		if caught >= *wantCaught && done == len(cfgs) {
			fmt.Fprintf(stdout, "== SELFTEST PASSED: the checker caught the stale reads in %d of %d runs (want at least %d)\n", caught, done, *wantCaught)
			return 0
		}
		fmt.Fprintf(stdout, "== SELFTEST FAILED: the checker caught the stale reads in only %d of %d runs (want at least %d of %d)\n", caught, done, *wantCaught, len(cfgs))
		return 1
	}
	return code
}

// splitList splits a comma-separated flag value; empty is nil.
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
