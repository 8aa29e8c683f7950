package benchresult

import (
	"math"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/kumoi/kumoi/bench
cpu: AMD EPYC
BenchmarkCreates/clients=1-2         	       1	         0 ns/op	       410.0 creates/s	         2.100 p50-ms	         4.000 p99-ms	         0 errors
--- BENCH: BenchmarkCreates/clients=1-2
    bench_test.go:71: 4100 creates in 10s (410/s), 0 failed
BenchmarkPlacement-2   	       1	      7095 placements/s	      1409 total-ms
BenchmarkPlacement-2   	       1	      6000 placements/s	      1600 total-ms
BenchmarkPlacement-2   	       1	      8000 placements/s	      1300 total-ms
PASS
ok  	github.com/kumoi/kumoi/bench	35.2s
`

func TestParse(t *testing.T) {
	var f File
	if err := Parse(strings.NewReader(sample), &f); err != nil {
		t.Fatal(err)
	}
	if f.CPU != "AMD EPYC" {
		t.Errorf("cpu %q", f.CPU)
	}
	c := f.Benchmarks["BenchmarkCreates/clients=1"]
	if c["creates/s"] != 410 || c["p50-ms"] != 2.1 || c["errors"] != 0 || len(c) != 5 {
		t.Errorf("creates: %v", c)
	}
	// Three runs: the median of each unit.
	if p := f.Benchmarks["BenchmarkPlacement"]; p["placements/s"] != 7095 || p["total-ms"] != 1409 {
		t.Errorf("placement: %v", p)
	}
	if len(f.Benchmarks) != 2 {
		t.Errorf("benchmarks: %v", f.Benchmarks)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, in := range []string{
		"PASS\nok x 1s\n",                   // no result
		"BenchmarkX-2 1 12 creates/s 3\n",   // unpaired
		"BenchmarkX-2 1 twelve creates/s\n", // not a number
		"BenchmarkX-2 1 NaN creates/s\n",    // not a figure
	} {
		var f File
		if err := Parse(strings.NewReader(in), &f); err == nil {
			t.Errorf("%q: parsed as %v", in, f.Benchmarks)
		}
	}
}

func TestCompare(t *testing.T) {
	old := &File{Benchmarks: map[string]map[string]float64{
		"BenchmarkCreates":  {"creates/s": 1000, "p99-ms": 10, "errors": 0, "ns/op": 0},
		"BenchmarkFailover": {"p50-ms": 500, "max-ms": 800, "rounds": 10},
		"BenchmarkGone":     {"creates/s": 1},
	}}
	cur := &File{Benchmarks: map[string]map[string]float64{
		"BenchmarkCreates":  {"creates/s": 700, "p99-ms": 11, "errors": 3, "ns/op": 0},
		"BenchmarkFailover": {"p50-ms": 400, "max-ms": 1100, "rounds": 10},
		"BenchmarkNew":      {"creates/s": 1},
	}}
	noise := Noise{Default: 0.2, ByMetric: map[string]float64{"BenchmarkFailover max-ms": 0.5}}
	got := map[string]Change{}
	for _, c := range Compare(old, cur, noise) {
		got[c.Bench+" "+c.Unit] = c
	}
	want := map[string]bool{ // regressed?
		"BenchmarkCreates creates/s": true,  // 30% fewer, noise 20%
		"BenchmarkCreates p99-ms":    false, // 10% slower
		"BenchmarkCreates errors":    true,  // from 0 to 3
		"BenchmarkCreates ns/op":     false, // 0 and 0
		"BenchmarkFailover p50-ms":   false, // better
		"BenchmarkFailover max-ms":   false, // 37.5% worse, its noise 50%
	}
	if len(got) != len(want) {
		t.Fatalf("compared %v, want %v (rounds is not judged; Gone and New are in one file only)", got, want)
	}
	for k, reg := range want {
		if got[k].Regressed != reg {
			t.Errorf("%s: regressed %t, want %t (%+v)", k, got[k].Regressed, reg, got[k])
		}
	}
	if w := got["BenchmarkCreates creates/s"].Worse; math.Abs(w-0.3) > 1e-9 {
		t.Errorf("creates/s worse by %v, want 0.3", w)
	}
	if w := got["BenchmarkFailover p50-ms"].Worse; math.Abs(w+0.2) > 1e-9 {
		t.Errorf("p50-ms worse by %v, want -0.2 (better)", w)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("BenchmarkX-2 1 1 a/s 2 b-ms\n")
	f.Fuzz(func(t *testing.T, in string) {
		var fl File
		if err := Parse(strings.NewReader(in), &fl); err != nil {
			return
		}
		for name, units := range fl.Benchmarks {
			for unit, v := range units {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("%s %s = %v", name, unit, v)
				}
			}
		}
	})
}
