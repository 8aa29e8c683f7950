package cli

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// runFollowing starts the kumoi binary with a command that runs until
// interrupted (--watch, events); stop sends it SIGINT, as Ctrl-C does, and
// returns its exit status. (A process of its own: urfave/cli's apps share
// global flags, so two cannot run at once in one process.)
func runFollowing(t *testing.T, args ...string) (out, errOut *testcluster.SyncBuffer, stop func() int) {
	t.Helper()
	out, errOut = &testcluster.SyncBuffer{}, &testcluster.SyncBuffer{}
	cmd := exec.Command(testcluster.Binary(t, ""), args...)
	for _, kv := range os.Environ() { // the test says where and how
		if !strings.HasPrefix(kv, "KUMOI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		_ = cmd.Wait()
		done <- cmd.ProcessState.ExitCode()
	}()
	stopped := false
	stop = func() int {
		t.Helper()
		if stopped {
			return -1
		}
		stopped = true
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case code := <-done:
			return code
		case <-time.After(testcluster.Stretch(10 * time.Second)):
			_ = cmd.Process.Kill()
			t.Errorf("kumoi %s did not stop on SIGINT", strings.Join(args, " "))
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	return out, errOut, stop
}

func waitOutput(t *testing.T, out, errOut *testcluster.SyncBuffer, what string, cond func(string) bool) {
	t.Helper()
	testcluster.WaitFor(t, 10*time.Second, what, func() (bool, error) {
		return cond(out.String()), fmt.Errorf("output so far:\n%s\nstderr: %s", out.String(), errOut.String())
	})
}

// TestTemplateOutput: -t renders the data -o json shows through a Go
// template, for lists and single objects; a bad template, or -t with -o
// json, is a usage error.
func TestTemplateOutput(t *testing.T) {
	s := apitest.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "create", args: []string{"vm", "create", "web-1", "--cpus", "2", "--memory", "512MiB", "--label", "app=web"}, stdout: []string{"web-1"}},
		{name: "create 2", args: []string{"vm", "create", "db-1", "--cpus", "1", "--memory", "256MiB"}, stdout: []string{"db-1"}},
		{name: "list", args: []string{"vm", "list", "-t", `{{range .}}{{.name}}:{{.spec.cpus}}:{{with .labels.app}}{{.}}{{end}} {{end}}`}, exact: "db-1:1: web-1:2:web "},
		{name: "get", args: []string{"vm", "get", "web-1", "-t", `{{.name}} {{json .labels}} {{upper .status.phase}}`}, exact: `web-1 {"app":"web"} PENDING`},
		{name: "short flag and env free", args: []string{"vm", "get", "db-1", "-t", `{{.spec.memory_mib}}`}, exact: "256"},
		{name: "bad template", args: []string{"vm", "list", "-t", "{{.name"}, code: 2, stderr: "kumoi: invalid -t template"},
		{name: "with -o json", args: []string{"vm", "list", "-t", "{{.}}", "-o", "json"}, code: 2, stderr: "kumoi: give -t (a template) or -o json, not both"},
		{name: "failing template", args: []string{"vm", "get", "web-1", "-t", `{{index .spec 3}}`}, code: 1, stderr: "kumoi: -t template:"},
	})
}

// TestWatch: list --watch shows the list, then again after each change,
// driven by blocking queries; get --watch follows one object; Ctrl-C ends
// them with exit status 0.
func TestWatch(t *testing.T) {
	s := apitest.New(t)
	runCases(t, s.URL, []cliCase{{name: "create", args: []string{"vm", "create", "web-1", "--cpus", "1", "--memory", "256MiB"}, stdout: []string{"web-1"}}})
	out, outErr, stop := runFollowing(t, "--addr", s.URL, "vm", "list", "--watch")
	waitOutput(t, out, outErr, "the first list", func(o string) bool { return strings.Contains(o, "web-1") })
	get, getErr, stopGet := runFollowing(t, "--addr", s.URL, "vm", "get", "web-1", "-w", "-o", "json")
	waitOutput(t, get, getErr, "the first get", func(o string) bool { return strings.Contains(o, `"pending"`) })

	s.AddHost(t, "hv-1")
	s.Place(t, map[string]string{"web-1": "hv-1"})
	runCases(t, s.URL, []cliCase{{name: "create 2", args: []string{"vm", "create", "web-2", "--cpus", "1", "--memory", "256MiB"}, stdout: []string{"web-2"}}})
	waitOutput(t, out, outErr, "the list redrawn with web-2", func(o string) bool {
		return strings.Contains(o, "\n--- ") && strings.Contains(o, "web-2") && strings.Contains(o, "scheduled")
	})
	waitOutput(t, get, getErr, "web-1 shown scheduled", func(o string) bool { return strings.Contains(o, `"scheduled"`) && strings.Contains(o, "\n--- ") })
	if strings.Contains(get.String(), "web-2") {
		t.Errorf("get --watch of web-1 showed web-2:\n%s", get.String())
	}
	if code := stop(); code != exitOK {
		t.Errorf("list --watch interrupted: exit %d", code)
	}
	if code := stopGet(); code != exitOK {
		t.Errorf("get --watch interrupted: exit %d", code)
	}
}

// TestEvents: kumoi events follows the change stream from an index, with
// the filters, as lines or JSON lines.
func TestEvents(t *testing.T) {
	s := apitest.New(t)
	since := fmt.Sprint(s.FSM.AppliedIndex())
	lines, linesErr, stopLines := runFollowing(t, "--addr", s.URL, "events", "--since", since, "--kind", "vm")
	web, webErr, stopWeb := runFollowing(t, "--addr", s.URL, "events", "--since", since, "-l", "app=web", "-o", "json")
	deleted, deletedErr, stopDeleted := runFollowing(t, "--addr", s.URL, "events", "--since", since, "--type", "deleted", "-t", "{{.type}} {{.name}}\n")
	runCases(t, s.URL, []cliCase{
		{name: "create", args: []string{"vm", "create", "web-1", "--cpus", "1", "--memory", "256MiB", "--label", "app=web"}, stdout: []string{"web-1"}},
		{name: "create db", args: []string{"vm", "create", "db-1", "--cpus", "1", "--memory", "256MiB"}, stdout: []string{"db-1"}},
		{name: "network", args: []string{"network", "create", "net1", "--cidr", "10.10.0.0/24"}, stdout: []string{"net1"}},
		{name: "delete", args: []string{"vm", "delete", "db-1"}, stdout: []string{"deleted"}},
	})
	waitOutput(t, lines, linesErr, "the VM events", func(o string) bool { return strings.Contains(o, " deleted vm db-1") })
	waitOutput(t, deleted, deletedErr, "the deletion", func(o string) bool { return strings.Contains(o, "deleted db-1\n") })
	waitOutput(t, web, webErr, "web-1's creation", func(o string) bool { return strings.Contains(o, `"name":"web-1"`) })
	for _, want := range []string{" created vm web-1 phase=pending", " created vm db-1 phase=pending"} {
		if !strings.Contains(lines.String(), want) {
			t.Errorf("events --kind vm lacks %q:\n%s", want, lines.String())
		}
	}
	if strings.Contains(lines.String(), "net1") {
		t.Errorf("events --kind vm showed the network:\n%s", lines.String())
	}
	if strings.Contains(web.String(), "db-1") {
		t.Errorf("events -l app=web showed db-1:\n%s", web.String())
	}
	if d := deleted.String(); d != "deleted db-1\n" {
		t.Errorf("events --type deleted: %q", d)
	}
	for _, stop := range []func() int{stopLines, stopWeb, stopDeleted} {
		if code := stop(); code != exitOK {
			t.Errorf("events interrupted: exit %d", code)
		}
	}
	runCases(t, s.URL, []cliCase{
		{name: "bad kind", args: []string{"events", "--kind", "vms"}, code: 2, stderr: `kumoi: invalid --kind "vms": use one of`},
		{name: "bad type", args: []string{"events", "--type", "changed"}, code: 2, stderr: "kumoi: invalid --type"},
		{name: "yaml", args: []string{"events", "-o", "yaml"}, code: 2, stderr: "not YAML"},
	})
}
