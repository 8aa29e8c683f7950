// Package benchresult turns the output of `go test -bench` into a result
// file (bench/out/<date>-<commit>.json, written by make bench) and compares
// two such files (make bench-check): a figure that got worse by more than
// its noise, the run-to-run spread measured on the benchmark machine
// (docs/benchmarks.md), is a regression.
package benchresult

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File is one run of the benchmarks.
type File struct {
	Time    time.Time `json:"time"`
	Commit  string    `json:"commit"`
	Go      string    `json:"go,omitempty"`
	CPU     string    `json:"cpu,omitempty"`
	LoadAvg string    `json:"loadavg_before,omitempty"`
	// Benchmarks by full name (BenchmarkCreates/clients=1), without the
	// -GOMAXPROCS suffix: unit → value. A benchmark run more than once
	// (-count) keeps the median of its values.
	Benchmarks map[string]map[string]float64 `json:"benchmarks"`
}

// lineRe matches a result line: name-procs, iterations, then value unit
// pairs.
var lineRe = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// Parse reads `go test -bench` output (other lines are skipped) into f's
// Benchmarks, with the cpu line. It fails on a result line it cannot
// read, and when there is no result at all.
func Parse(r io.Reader, f *File) error {
	samples := map[string]map[string][]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok && f.CPU == "" {
			f.CPU = cpu
			continue
		}
		m := lineRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n++
		fields := strings.Fields(m[3])
		if len(fields)%2 != 0 {
			return fmt.Errorf("line %q: values and units do not pair up", line)
		}
		if samples[m[1]] == nil {
			samples[m[1]] = map[string][]float64{}
		}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("line %q: %q is not a number", line, fields[i])
			}
			samples[m[1]][fields[i+1]] = append(samples[m[1]][fields[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("no benchmark results in the input (did the benchmarks fail?)")
	}
	f.Benchmarks = map[string]map[string]float64{}
	for name, units := range samples {
		f.Benchmarks[name] = map[string]float64{}
		for unit, vs := range units {
			slices.Sort(vs)
			f.Benchmarks[name][unit] = vs[(len(vs)-1)/2] // lower median
		}
	}
	return nil
}

// Direction says whether a unit is better higher (+1), lower (-1) or is
// not judged (0).
func Direction(unit string) int {
	switch {
	case unit == "ns/op" || unit == "B/op" || unit == "allocs/op":
		return -1
	case strings.HasSuffix(unit, "/s") || strings.HasPrefix(unit, "ratio"):
		return +1
	case strings.HasSuffix(unit, "-ms") || unit == "errors" || unit == "double-runs" || unit == "unfenced":
		return -1
	}
	return 0
}

// Noise is the allowed relative change of a figure before it counts as a
// regression, by unit suffix; Default for the others.
type Noise struct {
	Default float64            `json:"default"`
	ByUnit  map[string]float64 `json:"by_unit,omitempty"`
	// ByMetric overrides ByUnit for one "benchmark unit" pair.
	ByMetric map[string]float64 `json:"by_metric,omitempty"`
}

// For is the noise of a benchmark's unit.
func (n Noise) For(bench, unit string) float64 {
	if v, ok := n.ByMetric[bench+" "+unit]; ok {
		return v
	}
	if v, ok := n.ByUnit[unit]; ok {
		return v
	}
	return n.Default
}

// Change is one figure in both files.
type Change struct {
	Bench, Unit string
	Old, New    float64
	// Worse is the relative change in the bad direction (0.3: 30% worse;
	// negative: better).
	Worse     float64
	Noise     float64
	Regressed bool
}

// Compare lists every figure both files have, in name order, and whether
// it regressed: worse by more than its noise. A figure that was 0 and is
// no longer (errors, double runs) regresses when it is judged lower-better.
func Compare(old, cur *File, noise Noise) []Change {
	var out []Change
	for _, name := range slices.Sorted(maps.Keys(old.Benchmarks)) {
		nb, ok := cur.Benchmarks[name]
		if !ok {
			continue
		}
		for _, unit := range slices.Sorted(maps.Keys(old.Benchmarks[name])) {
			nv, ok := nb[unit]
			dir := Direction(unit)
			if !ok || dir == 0 {
				continue
			}
			ov := old.Benchmarks[name][unit]
			c := Change{Bench: name, Unit: unit, Old: ov, New: nv, Noise: noise.For(name, unit)}
			switch {
			case ov == 0 && nv == 0:
			case ov == 0:
				if dir < 0 {
					c.Worse, c.Regressed = math.Inf(1), true
				} else {
					c.Worse = math.Inf(-1)
				}
			default:
				c.Worse = float64(-dir) * (nv - ov) / math.Abs(ov)
				c.Regressed = c.Worse > c.Noise
			}
			out = append(out, c)
		}
	}
	return out
}

// Read decodes a result file.
func Read(r io.Reader) (*File, error) {
	var f File
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if len(f.Benchmarks) == 0 {
		return nil, fmt.Errorf("no benchmarks in the file")
	}
	return &f, nil
}
