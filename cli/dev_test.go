package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/cluster"
)

// TestAgainstDevCluster runs the CLI against a real dev cluster (one
// controller, two simulated hosts): what README's quick start promises.
func TestAgainstDevCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := cluster.StartDev(ctx, cluster.DevConfig{Controllers: 1, Hosts: 2, BindIP: "127.0.0.31", APIPort: 17400})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	addr := "--addr=" + strings.Join(d.Addrs(), ",")
	step := func(wantCode int, want string, args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, append([]string{addr}, args...)...)
		if code != wantCode || !strings.Contains(out+errOut, want) {
			t.Fatalf("kumoi %s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", strings.Join(args, " "), code, wantCode, out, errOut, want)
		}
		return out
	}
	// Hosts join within a few seconds; --wait covers the rest.
	step(0, "running", "vm", "create", "web", "--cpus", "1", "--memory", "256MiB", "--wait", "--timeout", "60s")
	step(0, "sim-", "vm", "list")
	step(0, "ready", "host", "list")
	step(0, "/16 ", "host", "update", "sim-1", "--cpu-overcommit", "2")
	step(2, "between 1 and 64", "host", "update", "sim-1", "--cpu-overcommit", "0.5")
	step(1, "running", "vm", "resume", "web")
	step(0, "web", "vm", "reboot", "web")
	step(0, "stopped", "vm", "stop", "web", "--wait", "--timeout", "30s")
	step(0, "running", "vm", "start", "web", "--wait", "--timeout", "30s")
	step(1, "stop it first", "vm", "migrate", "web")
	step(0, "stopped", "vm", "stop", "web", "--force", "--wait", "--timeout", "30s")
	out := step(0, "", "vm", "get", "web", "-o", "json")
	from, to := "sim-1", "sim-2"
	if strings.Contains(out, `"host": "sim-2"`) {
		from, to = to, from
	}
	step(1, "already on host", "vm", "migrate", "web", "--host", from)
	step(0, "stopped on "+to, "vm", "migrate", "web", "--wait", "--timeout", "30s")
	step(0, "running on "+to, "vm", "start", "web", "--wait", "--timeout", "30s")
	step(0, "deleted", "vm", "delete", "web")
	step(1, "not found", "vm", "get", "web")
}
