// Command kumoi-jepsen runs Kumoi's chaos harness (package jepsen): it
// starts a 3-controller cluster of real kumoi processes on loopback
// addresses, runs a workload through the Go SDK while nemeses inject
// faults, checks the history, and writes jepsen/out/<timestamp>-<name>/.
// It exits 1 when any run is invalid, 2 on a usage or harness error.
//
//	kumoi-jepsen --workload register,set --nemesis kill-leader,pause-leader --duration 30s
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

	"github.com/kumoi/kumoi/jepsen"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kumoi-jepsen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workloads := fs.String("workload", "register", "workloads to run, comma-separated, one run each: "+strings.Join(jepsen.Workloads, ", "))
	nemeses := fs.String("nemesis", "kill-leader", "nemeses to mix in each run, comma-separated ("+strings.Join(jepsen.Nemeses, ", ")+"), or none; partition-leader needs root")
	duration := fs.Duration("duration", 30*time.Second, "how long each workload runs")
	concurrency := fs.Int("concurrency", 5, "concurrent clients")
	seed := fs.Int64("seed", 0, "seed of the fault schedule and of the workload (0: from the time; the seed used is printed)")
	bin := fs.String("bin", "bin/kumoi", "kumoi binary to run (make build)")
	out := fs.String("out", "jepsen/out", "directory that receives one <timestamp>-<name>/ per run")
	opTimeout := fs.Duration("op-timeout", 2*time.Second, "timeout of every client operation; a write that times out has an unknown outcome")
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
	if *seed == 0 {
		*seed = time.Now().UnixNano()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(string, ...any) {}
	if *verbose {
		logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	}
	code := 0
	for _, w := range strings.Split(*workloads, ",") {
		res, err := jepsen.Run(ctx, jepsen.Config{
			Workload: w, Nemeses: nems, Duration: *duration, Concurrency: *concurrency,
			Seed: *seed, Bin: *bin, OutDir: *out, OpTimeout: *opTimeout, Logf: logf,
		})
		if res == nil {
			fmt.Fprintf(stderr, "kumoi-jepsen: %s: %v\n", w, err)
			return 2
		}
		jepsen.Summary(stdout, res)
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
	return code
}
