package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/cluster/agent"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// TestAgainstDevCluster runs the CLI against a real dev cluster (one
// controller, two simulated hosts): what README's quick start promises.
func TestAgainstDevCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := agent.StartDev(ctx, agent.DevConfig{Controllers: 1, Hosts: 2, BindIP: "127.0.0.31", APIPort: 17400})
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

// TestPolicyCLI: kumoi policy apply refuses a script that does not load
// (file:line:col, nothing stored), stores and runs one that does, and
// list/get/disable/enable/delete show and change it.
func TestPolicyCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := agent.StartDev(ctx, agent.DevConfig{Controllers: 1, Hosts: 1, BindIP: "127.0.0.44", APIPort: 17400})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	addr := "--addr=" + strings.Join(d.Addrs(), ",")
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	step := func(wantCode int, want string, args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, append([]string{addr}, args...)...)
		if code != wantCode || !strings.Contains(out+errOut, want) {
			t.Fatalf("kumoi %s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", strings.Join(args, " "), code, wantCode, out, errOut, want)
		}
		return out + errOut
	}
	bad := write("bad.star", "events = [\"vm.created\"]\ndef on_event(ev)\n    pass\n")
	out := step(1, "bad.star:2:17", "policy", "apply", "hello", bad)
	if !strings.Contains(out, "def on_event(ev)") || !strings.Contains(out, "was not stored") {
		t.Fatalf("a syntax error should show the offending line and say nothing was stored:\n%s", out)
	}
	step(1, "events", "policy", "apply", "hello", write("noevents.star", "def on_event(ev):\n    pass\n"))
	step(0, "NAME", "policy", "list")
	step(1, "not found", "policy", "get", "hello")

	good := write("hello.star", "events = [\"vm.created\"]\ndef on_event(ev):\n    print(\"hello\", ev.name)\n")
	step(0, `policy "hello" created (version 1)`, "policy", "apply", "hello", good, "--wait", "--timeout", "20s")
	step(0, "unchanged (version 1)", "policy", "apply", "hello", good)
	step(0, "running", "vm", "create", "pv", "--cpus", "1", "--memory", "64MiB", "--wait", "--timeout", "30s")
	testcluster.WaitFor(t, 20*time.Second, "the policy's output in policy get", func() (bool, error) {
		out := step(0, "hello", "policy", "get", "hello")
		if strings.Contains(out, "hello pv") {
			return true, nil
		}
		return false, fmt.Errorf("policy get shows:\n%s", out)
	})
	get := step(0, "State:       active", "policy", "get", "hello")
	if !strings.Contains(get, "Events:      vm.created") {
		t.Fatalf("policy get:\n%s", get)
	}
	step(0, "vm.created", "policy", "list")
	step(0, "print(\"hello\", ev.name)", "policy", "get", "hello", "--source")
	step(0, `"version": 2`, "policy", "disable", "hello", "-o", "json")
	step(0, `"disabled": true`, "policy", "get", "hello", "-o", "json")
	step(0, `"version": 3`, "policy", "enable", "hello", "-o", "json")
	step(2, "apply takes NAME and FILE.star", "policy", "apply", "hello")
	step(0, "deleted", "policy", "delete", "hello")
}
