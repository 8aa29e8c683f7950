package cli

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestHelpListsEveryVariable: every environment variable a flag of any
// command reads is listed in kumoi --help's ENVIRONMENT section.
func TestHelpListsEveryVariable(t *testing.T) {
	out, _, code := runCLI(t, "--help")
	if code != exitOK {
		t.Fatalf("kumoi --help: exit %d", code)
	}
	_, env, ok := strings.Cut(out, "ENVIRONMENT")
	if !ok {
		t.Fatalf("kumoi --help has no ENVIRONMENT section:\n%s", out)
	}
	seen := map[string]bool{}
	var walk func(flags []cli.Flag, cmds []*cli.Command)
	walk = func(flags []cli.Flag, cmds []*cli.Command) {
		for _, f := range flags {
			ev, ok := f.(interface{ GetEnvVars() []string })
			if !ok {
				continue
			}
			for _, v := range ev.GetEnvVars() {
				if !seen[v] && !strings.Contains(env, v+" ") {
					t.Errorf("%s (flag --%s) is not in kumoi --help's ENVIRONMENT", v, f.Names()[0])
				}
				seen[v] = true
			}
		}
		for _, c := range cmds {
			walk(c.Flags, c.Subcommands)
		}
	}
	app := NewApp()
	walk(app.Flags, app.Commands)
	if len(seen) < 10 {
		t.Errorf("only %d variables found: %v", len(seen), seen)
	}
}
