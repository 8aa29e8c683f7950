//go:build !kumoi_testhooks

package cli

import (
	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"
)

// The release build: the agent has no fault hooks, so a command line that
// names one (--debug-unsafe-stale-reads) is rejected as an unknown flag.
// Build with the tag kumoi_testhooks for them (agent_testhooks.go).

// testHooks reports whether this binary has the fault hooks.
const testHooks = false

// testHookFlags are the agent's fault-hook flags: none.
func testHookFlags() []cli.Flag { return nil }

// unsafeStaleReads is always false: only a kumoi_testhooks build can set
// controller.Config.UnsafeStaleReads.
func unsafeStaleReads(*cli.Context, hclog.Logger) bool { return false }
