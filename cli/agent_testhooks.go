//go:build kumoi_testhooks

package cli

import (
	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"
)

// This file is compiled only with the build tag kumoi_testhooks (`make
// jepsen-selftest` builds bin/kumoi-testhooks so): it adds the agent's
// fault hooks, hidden flags that break the controller on purpose for the
// chaos harness's selftest. The release binary has none of them
// (agent_release.go).

// testHooks reports whether this binary has the fault hooks.
const testHooks = true

// testHookFlags are the agent's hidden fault-hook flags.
func testHookFlags() []cli.Flag {
	return []cli.Flag{
		// Exists only to be caught by `make jepsen-selftest`.
		&cli.BoolFlag{Name: "debug-unsafe-stale-reads", Hidden: true, Usage: "DEBUG ONLY: serve reads from local state without the leader check (a linearizability bug)"},
	}
}

// unsafeStaleReads is --debug-unsafe-stale-reads, for
// controller.Config.UnsafeStaleReads; it warns when set.
func unsafeStaleReads(c *cli.Context, logger hclog.Logger) bool {
	if !c.Bool("debug-unsafe-stale-reads") {
		return false
	}
	logger.Warn("--debug-unsafe-stale-reads: reads are served from local state without the leader check; this node may return stale data")
	return true
}
