package jepsen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Summary writes a one-screen account of res.
func Summary(w io.Writer, res *Result) {
	verdict := "VALID"
	if !res.Valid {
		verdict = "INVALID"
	}
	workers := fmt.Sprint(res.Workers)
	if res.Workers > 0 && res.WorkerDriver != "" {
		workers += " (" + res.WorkerDriver + ")"
	}
	fmt.Fprintf(w, "== %s  workload=%s nemesis=%s seed=%d nodes=%d workers=%s duration=%s clients=%d (%s in all)\n",
		verdict, res.Workload, res.Nemesis, res.Seed, res.Nodes, workers, res.Duration, res.Concurrency, res.Elapsed)
	if res.Unsafe {
		fmt.Fprintf(w, "   SELFTEST: controllers ran with --debug-unsafe-stale-reads; the checker must find an anomaly\n")
	}
	if res.Error != "" {
		fmt.Fprintf(w, "   harness error: %s\n", res.Error)
	}
	fmt.Fprintf(w, "   ops: %d ok, %d fail, %d unknown\n", res.Counts.OK, res.Counts.Fail, res.Counts.Unknown)
	for _, k := range slices.Sorted(maps.Keys(res.ByKind)) {
		c := res.ByKind[k]
		fmt.Fprintf(w, "     %-7s %6d ok %6d fail %6d unknown\n", k, c.OK, c.Fail, c.Unknown)
	}
	fmt.Fprintf(w, "   faults: %d (ops during the fault ok/fail/unknown; first acknowledged write after the inject; first acknowledged write, and all nodes healthy, after the heal)\n", len(res.Faults))
	for i, f := range res.Faults {
		if i == 8 {
			fmt.Fprintf(w, "     … %d more in results.json\n", len(res.Faults)-i)
			break
		}
		rec := "none"
		if f.RecoveryNs >= 0 {
			rec = time.Duration(f.RecoveryNs).Round(time.Millisecond).String()
		}
		fo := "none"
		if f.FailoverNs >= 0 {
			fo = time.Duration(f.FailoverNs).Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "     %7s–%-7s %-40s ops %d/%d/%d first write %s recovery %s healthy %s", round(f.Start), round(f.End), f.What,
			f.Ops.OK, f.Ops.Fail, f.Ops.Unknown, fo, rec, time.Duration(f.HealthyNs).Round(time.Millisecond))
		if f.Error != "" {
			fmt.Fprintf(w, " (%s)", f.Error)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "   controllers converged: %v\n", res.Converged)
	for i, a := range res.Anomalies {
		if i == 5 {
			fmt.Fprintf(w, "   … %d more anomalies in results.json\n", len(res.Anomalies)-i)
			break
		}
		fmt.Fprintf(w, "   ANOMALY %s %s: %s (%d ops)\n", a.Type, a.Key, a.Detail, len(a.Ops))
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "   note: %s\n", n)
	}
	fmt.Fprintf(w, "   report: %s/results.json\n", res.Dir)
}

func round(ns int64) string { return time.Duration(ns).Round(100 * time.Millisecond).String() }
