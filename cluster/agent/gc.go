package agent

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector's target an agent runs with unless
// GOGC is set. A controller's heap is small and its allocation rate high
// (JSON on every request and log entry): trading memory for fewer
// collections gave +20% writes/s (docs/benchmarks.md). Set GOMEMLIMIT on a
// controller with a large state (docs/benchmarks.md, Scale).
const GCPercent = 400

// TuneGC sets the collector's target to GCPercent unless the GOGC
// environment variable says otherwise, and returns a function that puts
// back the previous target. kumoi agent calls it at start; benchmarks that
// run controllers in their own process call it so that they measure what
// an agent runs.
func TuneGC() (restore func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	prev := debug.SetGCPercent(GCPercent)
	return func() { debug.SetGCPercent(prev) }
}
