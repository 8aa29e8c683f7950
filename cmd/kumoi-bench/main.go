// Command kumoi-bench keeps and compares benchmark result files
// (internal/benchresult; docs/benchmarks.md):
//
//	go test -bench … | tee out.txt
//	kumoi-bench record --commit $(git rev-parse --short HEAD) --out bench/out < out.txt
//	kumoi-bench check [--noise bench/noise.json] OLD.json NEW.json
//
// record writes <out>/<UTC date>-<commit>.json and prints its path; check
// prints every figure both files have and exits 1 if one got worse by
// more than its noise.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kumoi/kumoi/internal/benchresult"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kumoi-bench:", err)
		if errors.Is(err, errRegressed) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

var errRegressed = errors.New("figures regressed beyond their noise")

const usage = `usage:
  kumoi-bench record --commit C [--out DIR] [--loadavg "…"] < go-test-bench-output
  kumoi-bench check [--noise FILE] OLD.json NEW.json`

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "record":
		return record(args[1:], stdin, stdout)
	case "check":
		return check(args[1:], stdout)
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func record(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	commit := fs.String("commit", "", "the commit the benchmarks ran at (required)")
	out := fs.String("out", "bench/out", "directory of the result files")
	load := fs.String("loadavg", "", "the load average before the run (default: /proc/loadavg now)")
	goVersion := fs.String("go", "", "the Go version (go version)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *commit == "" || fs.NArg() != 0 {
		return errors.New("record needs --commit and reads the benchmark output from stdin\n" + usage)
	}
	f := benchresult.File{Time: time.Now().UTC(), Commit: *commit, Go: *goVersion, LoadAvg: *load}
	if f.LoadAvg == "" {
		if b, err := os.ReadFile("/proc/loadavg"); err == nil {
			f.LoadAvg = strings.TrimSpace(string(b))
		}
	}
	if err := benchresult.Parse(stdin, &f); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	p := filepath.Join(*out, f.Time.Format("20060102T150405Z")+"-"+*commit+".json")
	data, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, append(data, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout, p)
	return nil
}

func check(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	noisePath := fs.String("noise", "", "noise file (default: bench/noise.json when it exists, else 25% for every figure)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("check takes two result files, the old and the new\n" + usage)
	}
	noise := benchresult.Noise{Default: 0.25}
	if *noisePath == "" {
		if _, err := os.Stat("bench/noise.json"); err == nil {
			*noisePath = "bench/noise.json"
		}
	}
	if *noisePath != "" {
		b, err := os.ReadFile(*noisePath)
		if err != nil {
			return err
		}
		noise = benchresult.Noise{}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&noise); err != nil {
			return fmt.Errorf("%s: %w", *noisePath, err)
		}
		if noise.Default <= 0 {
			return fmt.Errorf("%s: default must be a positive fraction (0.25 is 25%%)", *noisePath)
		}
	}
	var files [2]*benchresult.File
	for i, p := range fs.Args() {
		fh, err := os.Open(p)
		if err != nil {
			return err
		}
		files[i], err = benchresult.Read(fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	changes := benchresult.Compare(files[0], files[1], noise)
	if len(changes) == 0 {
		return errors.New("the two files have no figure in common")
	}
	fmt.Fprintf(stdout, "old: %s at %s (load %s)\nnew: %s at %s (load %s)\n\n",
		files[0].Commit, files[0].Time.Format(time.RFC3339), files[0].LoadAvg,
		files[1].Commit, files[1].Time.Format(time.RFC3339), files[1].LoadAvg)
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "benchmark\tunit\told\tnew\tworse by\tnoise\t")
	bad := 0
	for _, c := range changes {
		mark := ""
		if c.Regressed {
			mark, bad = "REGRESSED", bad+1
		}
		worse := fmt.Sprintf("%+.1f%%", 100*c.Worse)
		if math.IsInf(c.Worse, 0) {
			worse = "was 0"
		}
		fmt.Fprintf(w, "%s\t%s\t%.6g\t%.6g\t%s\t%.0f%%\t%s\n", c.Bench, c.Unit, c.Old, c.New, worse, 100*c.Noise, mark)
	}
	w.Flush()
	if bad > 0 {
		return fmt.Errorf("%d of %d %w", bad, len(changes), errRegressed)
	}
	fmt.Fprintf(stdout, "\nno figure got worse by more than its noise (%d compared)\n", len(changes))
	return nil
}
