package jepsen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
)

// unsafeStaleReadsFlag is the agent's fault hook that
// Config.UnsafeStaleReads passes to every controller. Like every fault
// hook it exists only in a kumoi built with the tag
// testcluster.TestHooksTag; the release binary rejects it.
const unsafeStaleReadsFlag = "--debug-unsafe-stale-reads"

// testHooksHint says how to get a binary with the fault hooks.
const testHooksHint = "run `make jepsen-selftest`, which builds bin/kumoi-testhooks (go build -tags 'libvirt_dlopen " +
	testcluster.TestHooksTag + "' ./cmd/kumoi) and runs the harness with --bin bin/kumoi-testhooks"

// checkTestHooks returns an error unless the kumoi binary has the agent
// flag the run needs: for Config.UnsafeStaleReads, --debug-unsafe-stale-reads.
// Without it every controller would exit at once on an unknown flag; the
// run is refused instead, before any process starts. bin is Config.Bin,
// else $KUMOI_BIN (the binary testcluster would build has no hooks).
//
// The probe is `BIN agent FLAG --help`: exit 0 when the agent has FLAG,
// a usage error "unknown flag FLAG" (exit 2) when it does not; it starts
// nothing either way.
func checkTestHooks(ctx context.Context, cfg Config) error {
	if !cfg.UnsafeStaleReads {
		return nil
	}
	bin := cfg.Bin
	if bin == "" {
		bin = os.Getenv("KUMOI_BIN")
	}
	if bin == "" {
		return fmt.Errorf("unsafe stale reads (--unsafe-stale-reads) need a kumoi binary built with the tag %s, given with --bin (Config.Bin); %s",
			testcluster.TestHooksTag, testHooksHint)
	}
	return probeAgentFlag(ctx, bin, unsafeStaleReadsFlag)
}

// probeAgentFlag runs `bin agent flag --help` and says whether the agent
// of bin has flag.
func probeAgentFlag(ctx context.Context, bin, flag string) error {
	ctx, cancel := context.WithTimeout(ctx, testcluster.Stretch(30*time.Second))
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "agent", flag, "--help")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(stderr.String())
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 && strings.Contains(msg, "unknown flag "+flag) {
		return fmt.Errorf("%s has no %s: it was built without the fault hooks (a release build such as make build's), which exist only with the build tag %s; %s",
			bin, flag, testcluster.TestHooksTag, testHooksHint)
	}
	if msg != "" {
		err = fmt.Errorf("%w: %s", err, msg)
	}
	return fmt.Errorf("cannot tell whether %s has %s (%s agent %s --help: %v)", bin, flag, bin, flag, err)
}
