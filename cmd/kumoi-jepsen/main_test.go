package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// TestUnsafeStaleReadsNeedsTestHooks: --unsafe-stale-reads with a release
// binary is refused with exit 2 and a message that names the make target
// that builds and passes a binary with the hook; nothing is run.
func TestUnsafeStaleReadsNeedsTestHooks(t *testing.T) {
	bin := testcluster.Binary(t, "")
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"--unsafe-stale-reads", "--workload", "register", "--nemesis", "none", "--duration", "1s",
		"--runs", "3", "--want-caught", "2", "--bin", bin, "--out", out}, &stdout, &stderr)
	want := "kumoi-jepsen: register: refusing to run: " + bin + " has no --debug-unsafe-stale-reads"
	if code != 2 || !strings.HasPrefix(stderr.String(), want) || !strings.Contains(stderr.String(), "make jepsen-selftest") ||
		strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("exit %d, stderr %q; want exit 2 and one line starting %q naming make jepsen-selftest", code, stderr.String(), want)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q; want nothing (no run, no summary)", stdout.String())
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("the refused run left %d entries in --out", len(ents))
	}
	t.Logf("%s", stderr.String())
}

// TestBootstrapRaceRefusesNemeses: the bootstrap-race workload's rounds
// are its faults; an explicit --nemesis is refused (exit 2) before
// anything starts.
func TestBootstrapRaceRefusesNemeses(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"--workload", "bootstrap-race", "--nemesis", "wipe-restart", "--duration", "1s", "--bin", "/nonexistent", "--out", out}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "bootstrap-race takes no nemeses") {
		t.Errorf("exit %d, stderr %q; want exit 2 and the refusal", code, stderr.String())
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("the refused run left %d entries in --out", len(ents))
	}
}
