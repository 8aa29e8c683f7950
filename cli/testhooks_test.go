package cli

import (
	"bytes"
	"cmp"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// The agent's fault hooks (--debug-unsafe-stale-reads) exist only in a
// binary built with the tag kumoi_testhooks. `make test` runs this package
// with the release tags, and the tagged package tests with
// -tags 'libvirt_dlopen kumoi_testhooks' -run TestAgentTestHooks.

// agentConfig runs `kumoi agent args...` with an Action that only loads
// the -config file, if any, and builds the controller configuration from
// the flags (node ID c1 unless given), and returns it with the exit code
// and stderr.
func agentConfig(t *testing.T, args ...string) (cfg controller.Config, stderr string, code int) {
	t.Helper()
	app := NewApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	for _, cmd := range app.Commands {
		if cmd.Name == "agent" {
			cmd.Action = func(c *cli.Context) error {
				if path := c.String("config"); path != "" {
					if err := loadAgentConfig(c, path); err != nil {
						return err
					}
				}
				cfg, _ = controllerConfig(c, cmp.Or(c.String("node-id"), "c1"), hclog.NewNullLogger())
				return nil
			}
		}
	}
	code = run(context.Background(), app, append([]string{"kumoi", "agent"}, args...))
	return cfg, errOut.String(), code
}

// TestAgentTestHooks: built without kumoi_testhooks, the agent rejects
// --debug-unsafe-stale-reads as an unknown flag (exit 2) and nothing sets
// controller.Config.UnsafeStaleReads; built with it, the flag sets it.
func TestAgentTestHooks(t *testing.T) {
	cfg, stderr, code := agentConfig(t, "--controller")
	if code != exitOK || cfg.UnsafeStaleReads {
		t.Errorf("agent --controller: exit %d, UnsafeStaleReads %v, stderr %q; want exit 0 and false", code, cfg.UnsafeStaleReads, stderr)
	}
	for _, name := range []string{"--debug-unsafe-stale-reads", "--debug-unsafe-stale-reads=true"} {
		cfg, stderr, code = agentConfig(t, "--controller", name)
		if testHooks {
			if code != exitOK || !cfg.UnsafeStaleReads {
				t.Errorf("kumoi_testhooks build: agent --controller %s: exit %d, UnsafeStaleReads %v, stderr %q; want exit 0 and true", name, code, cfg.UnsafeStaleReads, stderr)
			}
			continue
		}
		want := "kumoi: unknown flag --debug-unsafe-stale-reads; see 'kumoi agent --help'\n"
		if code != exitUsage || stderr != want || cfg.UnsafeStaleReads {
			t.Errorf("release build: agent --controller %s: exit %d, stderr %q, UnsafeStaleReads %v; want exit %d, stderr %q",
				name, code, stderr, cfg.UnsafeStaleReads, exitUsage, want)
		}
	}
	// Hidden either way: the help does not mention it.
	stdout, _, _ := runCLI(t, "agent", "--help")
	if !strings.Contains(stdout, "--log-json") || strings.Contains(stdout, "unsafe") {
		t.Errorf("agent --help lists a fault hook, or lacks --log-json:\n%s", stdout)
	}
}

// runBin runs bin with args, bounded in time, and returns its stderr and
// exit code.
func runBin(t *testing.T, bin string, args ...string) (stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Stretch(30*time.Second))
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return errOut.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s %s: %v", bin, strings.Join(args, " "), err)
	}
	return errOut.String(), 0
}

// TestReleaseBinaryHasNoTestHooks: the binary `make test` tests
// ($KUMOI_BIN, bin/kumoi from make build) refuses the hook. Neither command
// line starts a node, whatever the binary.
func TestReleaseBinaryHasNoTestHooks(t *testing.T) {
	bin := testcluster.Binary(t, "")
	for _, args := range [][]string{
		{"agent", "--debug-unsafe-stale-reads", "--help"},
		{"agent", "--debug-unsafe-stale-reads"}, // without --controller: a usage error in any build
	} {
		stderr, code := runBin(t, bin, args...)
		if code != exitUsage || !strings.Contains(stderr, "unknown flag --debug-unsafe-stale-reads") {
			t.Errorf("%s %s: exit %d, stderr %q; want exit %d and unknown flag --debug-unsafe-stale-reads",
				bin, strings.Join(args, " "), code, stderr, exitUsage)
		}
	}
}

// TestTestHooksBinaryHasTestHooks: a binary built with kumoi_testhooks
// accepts the hook (the probe kumoi-jepsen --unsafe-stale-reads makes).
func TestTestHooksBinaryHasTestHooks(t *testing.T) {
	bin := testcluster.TestHooksBinary(t)
	if stderr, code := runBin(t, bin, "agent", "--debug-unsafe-stale-reads", "--help"); code != 0 {
		t.Errorf("%s agent --debug-unsafe-stale-reads --help: exit %d, stderr %q; want exit 0", bin, code, stderr)
	}
}
