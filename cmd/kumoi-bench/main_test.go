package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecordCheck records two runs and checks them both ways: the slower
// one regresses against the faster, not the reverse.
func TestRecordCheck(t *testing.T) {
	dir := t.TempDir()
	rec := func(commit, out string) string {
		var stdout bytes.Buffer
		if err := run([]string{"record", "--commit", commit, "--out", dir, "--loadavg", "0.1"}, strings.NewReader(out), &stdout); err != nil {
			t.Fatal(err)
		}
		p := strings.TrimSpace(stdout.String())
		if !strings.HasPrefix(filepath.Base(p), "20") || !strings.HasSuffix(p, "-"+commit+".json") {
			t.Fatalf("recorded as %q", p)
		}
		return p
	}
	fast := rec("aaaaaaa", "BenchmarkCreates-2 1 1000 creates/s 5 p50-ms\n")
	slow := rec("bbbbbbb", "BenchmarkCreates-2 1 600 creates/s 5 p50-ms\n")
	noise := filepath.Join(dir, "noise.json")
	if err := os.WriteFile(noise, []byte(`{"default":0.25}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run([]string{"check", "--noise", noise, fast, slow}, nil, &out)
	if !errors.Is(err, errRegressed) || !strings.Contains(out.String(), "REGRESSED") {
		t.Fatalf("fast → slow: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run([]string{"check", "--noise", noise, slow, fast}, nil, &out); err != nil {
		t.Fatalf("slow → fast: %v\n%s", err, out.String())
	}
	// Bad input is refused with a message, not a panic.
	for _, args := range [][]string{{}, {"check", fast}, {"record"}, {"nope"}, {"check", "--noise", fast, fast, slow}} {
		if err := run(args, strings.NewReader(""), &out); err == nil || errors.Is(err, errRegressed) {
			t.Errorf("%q: %v", args, err)
		}
	}
}
