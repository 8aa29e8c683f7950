package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/resource"
)

func TestMain(m *testing.M) {
	// The tests say where to connect and what to print.
	os.Unsetenv("KUMOI_ADDR")
	os.Unsetenv("KUMOI_OUTPUT")
	for _, v := range []string{"KUMOI_TOKEN", "KUMOI_CACERT", "KUMOI_CLIENT_CERT", "KUMOI_CLIENT_KEY"} {
		os.Unsetenv(v)
	}
	// Ages are computed against the fake's clock.
	now = func() time.Time { return testapi.Now }
	os.Exit(m.Run())
}

// runCLI runs kumoi with args and returns its output and exit code.
func runCLI(tb testing.TB, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	app := NewApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	code = run(context.Background(), app, append([]string{"kumoi"}, args...))
	return out.String(), errOut.String(), code
}

// cliCase is one command line and what it must print.
type cliCase struct {
	name   string
	args   []string
	code   int
	stdout []string // substrings of stdout
	stderr string   // substring of stderr ("" = stderr must be empty)
	exact  string   // if set, stdout must equal it
	// errExact, if set, is all of stderr (progress lines, then maybe the
	// error line); stderr is not checked then.
	errExact string
}

func (tc cliCase) check(t *testing.T, addr string) {
	t.Helper()
	args := append([]string{"--addr", addr}, tc.args...)
	stdout, stderr, code := runCLI(t, args...)
	if code != tc.code {
		t.Errorf("kumoi %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, tc.code, stdout, stderr)
	}
	for _, want := range tc.stdout {
		if !strings.Contains(stdout, want) {
			t.Errorf("kumoi %s: stdout lacks %q:\n%s", strings.Join(tc.args, " "), want, stdout)
		}
	}
	if tc.exact != "" && stdout != tc.exact {
		t.Errorf("kumoi %s: stdout =\n%s\nwant\n%s", strings.Join(tc.args, " "), stdout, tc.exact)
	}
	switch {
	case tc.errExact != "":
		if stderr != tc.errExact {
			t.Errorf("kumoi %s: stderr =\n%s\nwant\n%s", strings.Join(tc.args, " "), stderr, tc.errExact)
		}
	case tc.stderr == "" && stderr != "":
		t.Errorf("kumoi %s: unexpected stderr %q", strings.Join(tc.args, " "), stderr)
	case tc.stderr != "":
		if !strings.Contains(stderr, tc.stderr) {
			t.Errorf("kumoi %s: stderr = %q, want it to contain %q", strings.Join(tc.args, " "), stderr, tc.stderr)
		}
		if !strings.HasPrefix(stderr, "kumoi: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
			t.Errorf("kumoi %s: stderr %q is not one 'kumoi: ' line", strings.Join(tc.args, " "), stderr)
		}
	}
}

func runCases(t *testing.T, addr string, cases []cliCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, addr) })
	}
}

// checkTable verifies that every line of a table has as many fields as its
// header, so that awk can read it; with freeLast, the last column is free
// text and may have more words.
func checkTable(tb testing.TB, out string, freeLast bool) {
	tb.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	want := len(strings.Fields(lines[0]))
	for _, l := range lines[1:] {
		n := len(strings.Fields(l))
		if n != want && !(freeLast && n > want) {
			tb.Errorf("table line %q has %d fields, header has %d:\n%s", l, n, want, out)
		}
	}
}

func seedHosts(tb testing.TB, s *testapi.Server) {
	tb.Helper()
	s.Put(tb, resource.KindHost, "hv-1", map[string]string{"rack": "a"}, resource.HostSpec{}, resource.HostStatus{
		State: resource.HostReady, Address: "10.0.0.1:7500", Driver: "sim",
		Capacity:  resource.Resources{CPUs: 16, MemoryMiB: 64 << 10},
		Allocated: resource.Resources{CPUs: 2, MemoryMiB: 1024},
		Since:     testapi.Now.Add(-5 * time.Minute),
	})
	s.Put(tb, resource.KindHost, "hv-2", map[string]string{"rack": "b"}, resource.HostSpec{Unschedulable: true}, resource.HostStatus{
		State: resource.HostDown, Capacity: resource.Resources{CPUs: 8, MemoryMiB: 16 << 10},
		Reason: "the worker stopped answering gossip probes", Since: testapi.Now.Add(-50 * time.Hour),
	})
}

func TestVMLifecycle(t *testing.T) {
	s := testapi.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "empty list json", args: []string{"vm", "list", "-o", "json"}, exact: "[]\n"},
		{name: "empty list yaml", args: []string{"vm", "list", "-o", "yaml"}, exact: "[]\n"},
		{name: "empty list table", args: []string{"vm", "list"}, exact: "NAME   CPUS   MEMORY   POWER   PHASE   HOST   INDEX   REASON\n"},
		{name: "create", args: []string{"vm", "create", "web", "--cpus", "2", "--memory", "2GiB", "--label", "app=web"},
			stdout: []string{"NAME", "INDEX", "REASON", "web    2      2GiB     running   pending   -      1       waiting for placement\n"}},
		{name: "create flags first, output json", args: []string{"-o", "json", "vm", "create", "--cpus=1", "-m", "512", "db", "--label", "app=db", "--ha", "restart"},
			stdout: []string{`"name": "db"`, `"kind": "vm"`, `"ha": "restart"`, `"memory_mib": 512`, `"app": "db"`}},
		{name: "create yaml", args: []string{"vm", "create", "batch", "--cpus", "1", "--memory", "1.5GiB", "--power", "stopped", "-o", "yaml"},
			stdout: []string{"name: batch\n", "memory_mib: 1536\n", "power: stopped\n", "phase: pending\n"}},
		{name: "duplicate", args: []string{"vm", "create", "web", "--cpus", "2", "--memory", "1G"}, code: 1,
			stderr: `kumoi: vm "web" already exists`},
		{name: "cpus 0 rejected by the server", args: []string{"vm", "create", "x", "--cpus", "0", "--memory", "1G"}, code: 1,
			stderr: "kumoi: spec.cpus: must be at least 1 (got 0)\n"},
		{name: "too many cpus", args: []string{"vm", "create", "x", "--cpus", "5000", "--memory", "1G"}, code: 1,
			stderr: "kumoi: spec.cpus: must be at most 1024 (got 5000)\n"},
		{name: "get", args: []string{"vm", "get", "web"}, stdout: []string{"web    2      2GiB     running   pending   -      1       waiting for placement\n"}},
		{name: "get stale json", args: []string{"vm", "get", "--stale", "web", "-o", "json"}, stdout: []string{`"name": "web"`, `"modify_index": 1`}},
		{name: "get missing", args: []string{"vm", "get", "nope"}, code: 1, stderr: "kumoi: vm \"nope\" not found\n"},
		{name: "list", args: []string{"vm", "ls"}, stdout: []string{"batch", "db", "web"}},
		{name: "list selector", args: []string{"vm", "list", "-l", "app=web", "-o", "json"}, stdout: []string{`"name": "web"`}},
		{name: "list selector none", args: []string{"vm", "list", "--selector", "app=nothing", "-o", "json"}, exact: "[]\n"},
		{name: "update", args: []string{"vm", "update", "web", "--cpus", "4", "--memory", "8GiB", "--label", "tier=front", "--remove-label", "app"},
			stdout: []string{"web    4      8GiB     running"}},
		{name: "update power ha", args: []string{"vm", "update", "web", "--power", "stopped", "--ha", "restart", "-o", "json"},
			stdout: []string{`"power": "stopped"`, `"ha": "restart"`, `"cpus": 4`, `"tier": "front"`}},
		{name: "update wrong cas", args: []string{"vm", "update", "web", "--cpus", "1", "--cas", "1"}, code: 1,
			stderr: `vm "web" was not updated: its modify_index is 5, not 1`},
		{name: "update right cas", args: []string{"vm", "update", "web", "--cpus", "1", "--cas", "5"}, stdout: []string{"web    1 "}},
		{name: "update missing", args: []string{"vm", "update", "nope", "--cpus", "1"}, code: 1, stderr: "kumoi: vm \"nope\" not found\n"},
		{name: "update invalid memory", args: []string{"vm", "update", "web", "--memory", "0"}, code: 1,
			stderr: "kumoi: spec.memory_mib: must be at least 1 MiB (got 0)\n"},
		{name: "delete wrong cas", args: []string{"vm", "delete", "web", "--cas", "2"}, code: 1,
			stderr: `kumoi: vm "web" was not deleted: its modify_index is no longer 2`},
		{name: "delete", args: []string{"vm", "delete", "web"}, exact: "vm \"web\" deleted\n"},
		{name: "delete json", args: []string{"vm", "rm", "db", "-o", "json"}, stdout: []string{`"name": "db"`}},
		{name: "delete missing", args: []string{"vm", "delete", "web"}, code: 1, stderr: "kumoi: vm \"web\" not found\n"},
		{name: "list after", args: []string{"vm", "list", "-o", "json"}, stdout: []string{`"name": "batch"`}},
	})
	if o := s.Object(resource.KindVM, "web"); o != nil {
		t.Errorf("web still exists: %+v", o)
	}
	if o := s.Object(resource.KindVM, "batch"); o == nil || o.Labels == nil {
		t.Errorf("batch = %+v", o)
	}

	out, _, _ := runCLI(t, "--addr", s.URL, "vm", "list")
	checkTable(t, out, true)
}

func TestVMUpdateRacesAreDetected(t *testing.T) {
	s := testapi.New(t)
	if _, _, code := runCLI(t, "--addr", s.URL, "vm", "create", "web", "--cpus", "1", "--memory", "1G"); code != 0 {
		t.Fatal("create failed")
	}
	// Someone else changes the VM between the CLI's read and its write.
	s.Hook = func(r *http.Request) {
		if r.Method == http.MethodPut {
			s.Put(t, resource.KindVM, "web", map[string]string{"by": "other"}, resource.VMSpec{CPUs: 8, MemoryMiB: 1024}, nil)
		}
	}
	cliCase{name: "race", args: []string{"vm", "update", "web", "--cpus", "2"}, code: 1,
		stderr: `kumoi: vm "web" changed while it was being updated (its modify_index is no longer 1), so nothing was written; run the command again`,
	}.check(t, s.URL)
	s.Hook = nil
	if o := s.Object(resource.KindVM, "web"); !strings.Contains(string(o.Spec), `"cpus":8`) {
		t.Errorf("the concurrent change was overwritten: %s", o.Spec)
	}

	cliCase{name: "again", args: []string{"vm", "update", "web", "--cpus", "2", "-o", "json"},
		stdout: []string{`"cpus": 2`, `"by": "other"`}}.check(t, s.URL)
}

func TestHosts(t *testing.T) {
	s := testapi.New(t)
	seedHosts(t, s)
	runCases(t, s.URL, []cliCase{
		{name: "list", args: []string{"host", "list"}, exact: "" +
			"NAME   STATE   SCHEDULABLE   CPUS   MEMORY       DRIVER   ADDRESS         SINCE\n" +
			"hv-1   ready   yes           2/16   1GiB/64GiB   sim      10.0.0.1:7500   5m\n" +
			"hv-2   down    no            0/8    0MiB/16GiB   -        -               2d\n"},
		{name: "get table", args: []string{"host", "get", "hv-1"}, stdout: []string{"hv-1   ready   yes           2/16   1GiB/64GiB   sim      10.0.0.1:7500   5m\n"}},
		{name: "list selector", args: []string{"host", "list", "-l", "rack=b", "-o", "json"}, stdout: []string{`"name": "hv-2"`, `"unschedulable": true`}},
		{name: "get", args: []string{"host", "get", "hv-1", "-o", "yaml"}, stdout: []string{"name: hv-1\n", "state: ready\n", "cpus: 16\n"}},
		{name: "get missing", args: []string{"host", "get", "hv-9"}, code: 1, stderr: "kumoi: host \"hv-9\" not found\n"},
		{name: "bad selector", args: []string{"host", "list", "-l", "a b"}, code: 2, stderr: "kumoi: invalid --selector: label selector term \"a b\""},
	})
	out, _, _ := runCLI(t, "--addr", s.URL, "host", "list")
	checkTable(t, out, false)
}

// TestHostCapacity checks the CPUS and MEMORY columns against the state
// machine's rule (resource.Schedulable, which fsm uses to admit
// placements): capacity times the overcommit ratios, rounded down, with the
// capacity capped at resource.MaxHostCPUs and resource.MaxHostMemoryMiB.
func TestHostCapacity(t *testing.T) {
	s := testapi.New(t)
	s.Put(t, resource.KindHost, "hv-1", nil, resource.HostSpec{CPUOvercommit: 4, MemoryOvercommit: 1.5}, resource.HostStatus{
		State:     resource.HostReady,
		Capacity:  resource.Resources{CPUs: 16, MemoryMiB: 64 << 10},
		Allocated: resource.Resources{CPUs: 40, MemoryMiB: 80 << 10},
		Since:     testapi.Now.Add(-5 * time.Minute),
	})
	s.Put(t, resource.KindHost, "hv-2", nil, resource.HostSpec{CPUOvercommit: 1.4, MemoryOvercommit: 2.3}, resource.HostStatus{
		State: resource.HostReady, Capacity: resource.Resources{CPUs: 45, MemoryMiB: 50}, Since: testapi.Now.Add(-5 * time.Minute),
	})
	// A capacity beyond the bounds counts as the bound: 2×(1<<20) CPUs,
	// not 2×(3<<20); 1<<40 MiB (1048576TiB), not 2<<40.
	s.Put(t, resource.KindHost, "hv-3", nil, resource.HostSpec{CPUOvercommit: 2}, resource.HostStatus{
		State:    resource.HostReady,
		Capacity: resource.Resources{CPUs: 3 * resource.MaxHostCPUs, MemoryMiB: 2 * resource.MaxHostMemoryMiB},
		Since:    testapi.Now.Add(-5 * time.Minute),
	})
	runCases(t, s.URL, []cliCase{
		{name: "list", args: []string{"host", "list"}, exact: "" +
			"NAME   STATE   SCHEDULABLE   CPUS        MEMORY            DRIVER   ADDRESS   SINCE\n" +
			"hv-1   ready   yes           40/64       80GiB/96GiB       -        -         5m\n" +
			"hv-2   ready   yes           0/63        0MiB/115MiB       -        -         5m\n" +
			"hv-3   ready   yes           0/2097152   0MiB/1048576TiB   -        -         5m\n"},
	})
}

func TestCluster(t *testing.T) {
	s := testapi.New(t)
	cl := resource.Cluster{
		ClusterID: "5b4c006b-1a36-48ab-bc2c-eaa015938bb8",
		Leader:    "ctl-1",
		Servers: []resource.Server{
			{ID: "ctl-1", Address: "127.0.0.1:7401", Voter: true, Leader: true, Role: "voter", LastIndex: 1042, Health: "ok", Version: "0.2.0", Protocol: 3},
			{ID: "ctl-2", Address: "127.0.0.2:7401", Voter: true, Role: "voter", LastIndex: 1040, Health: "ok", Version: "0.2.0", Protocol: 3},
			{ID: "ctl-3", Address: "127.0.0.3:7401", Role: "nonvoter", LastIndex: 17, Health: "catching-up", Version: "0.1.0", Protocol: 2},
		},
		Members: []resource.Member{
			{Name: "ctl-1", Address: "127.0.0.1:7402", Status: "alive", Role: "controller", Tags: map[string]string{"dc": "x"}},
			{Name: "hv-1", Address: "127.0.0.9:7402", Status: "suspect", Role: "worker"},
		},
	}
	s.SetCluster(cl)

	stdout, stderr, code := runCLI(t, "--addr", s.URL, "cluster", "status", "-o", "json")
	if code != 0 || stderr != "" {
		t.Fatalf("cluster status -o json: exit %d, stderr %q", code, stderr)
	}
	want, _ := json.MarshalIndent(cl, "", "  ")
	if stdout != string(want)+"\n" {
		t.Errorf("cluster status -o json =\n%s\nwant exactly the /v1/cluster object\n%s", stdout, want)
	}
	var back resource.Cluster
	if err := json.Unmarshal([]byte(stdout), &back); err != nil || !reflect.DeepEqual(back, cl) {
		t.Errorf("round trip: %+v, %v", back, err)
	}

	runCases(t, s.URL, []cliCase{
		{name: "status", args: []string{"cluster", "status"}, exact: "" +
			"Cluster: 5b4c006b-1a36-48ab-bc2c-eaa015938bb8\n" +
			"Leader: ctl-1\n" +
			"ACLs: off (anyone who reaches the API may do anything)\n\n" +
			"SERVER   ADDRESS          VOTER   LEADER   ROLE       LAST-INDEX   HEALTH        VERSION   PROTOCOL\n" +
			"ctl-1    127.0.0.1:7401   yes     yes      voter      1042         ok            0.2.0     3\n" +
			"ctl-2    127.0.0.2:7401   yes     no       voter      1040         ok            0.2.0     3\n" +
			"ctl-3    127.0.0.3:7401   no      no       nonvoter   17           catching-up   0.1.0     2\n\n" +
			"MEMBER   ADDRESS          STATUS    ROLE\n" +
			"ctl-1    127.0.0.1:7402   alive     controller\n" +
			"hv-1     127.0.0.9:7402   suspect   worker\n"},
		{name: "members", args: []string{"cluster", "members"}, stdout: []string{"MEMBER", "hv-1     127.0.0.9:7402   suspect   worker"}},
		{name: "members yaml", args: []string{"cluster", "members", "-o", "yaml"}, stdout: []string{"- address: 127.0.0.1:7402\n", "  role: worker\n"}},
		{name: "remove", args: []string{"cluster", "remove", "ctl-3"}, stdout: []string{"removed server ctl-3 (raft index "}},
		{name: "remove json", args: []string{"cluster", "remove", "ctl-2", "-o", "json"}, stdout: []string{`"removed": "ctl-2"`, `"index": `}},
		{name: "remove missing", args: []string{"cluster", "remove", "ctl-3"}, code: 1,
			stderr: "kumoi: server \"ctl-3\" is not in the Raft configuration; see 'kumoi cluster status'\n"},
		{name: "remove no id", args: []string{"cluster", "remove"}, code: 2, stderr: "kumoi: missing node ID name"},
		{name: "status extra arg", args: []string{"cluster", "status", "now"}, code: 2, stderr: `unexpected argument "now"`},
	})
}

func TestUsageErrors(t *testing.T) {
	s := testapi.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "unknown command", args: []string{"frob"}, code: 2, stderr: `kumoi: unknown command "frob" for 'kumoi'; see 'kumoi --help'`},
		{name: "unknown verb", args: []string{"vm", "frob"}, code: 2, stderr: `unknown command "frob" for 'kumoi vm'`},
		{name: "missing name", args: []string{"vm", "get"}, code: 2, stderr: "kumoi: missing VM name: kumoi vm get NAME"},
		{name: "too many names", args: []string{"vm", "delete", "a", "b"}, code: 2, stderr: `too many arguments ["b"]`},
		{name: "missing sizes", args: []string{"vm", "create", "web"}, code: 2, stderr: "kumoi: missing --cpus and --memory: say how big the VM is"},
		{name: "missing memory", args: []string{"vm", "create", "web", "--cpus", "1"}, code: 2, stderr: "kumoi: missing --memory:"},
		{name: "bad cpus", args: []string{"vm", "create", "web", "--cpus", "two", "--memory", "1G"}, code: 2, stderr: `kumoi: invalid --cpus "two": give a whole number`},
		{name: "bad memory", args: []string{"vm", "create", "web", "--cpus", "1", "--memory", "lots"}, code: 2, stderr: `kumoi: invalid --memory: memory size "lots" is not understood`},
		{name: "bad power", args: []string{"vm", "create", "web", "--cpus", "1", "--memory", "1G", "--power", "on"}, code: 2, stderr: `kumoi: invalid --power "on": use running, stopped or suspended`},
		{name: "bad ha", args: []string{"vm", "update", "web", "--ha", "yes"}, code: 2, stderr: `invalid --ha "yes": use restart or none`},
		{name: "bad name", args: []string{"vm", "create", "Web", "--cpus", "1", "--memory", "1G"}, code: 2, stderr: `kumoi: invalid VM name: "Web" is not a DNS label`},
		{name: "bad label", args: []string{"vm", "create", "web", "--cpus", "1", "--memory", "1G", "--label", "novalue"}, code: 2, stderr: `invalid --label "novalue": write KEY=VALUE`},
		{name: "bad label key", args: []string{"vm", "create", "web", "--cpus", "1", "--memory", "1G", "--label", "a b=c"}, code: 2, stderr: `invalid --label: key "a b" is invalid`},
		{name: "label set and removed", args: []string{"vm", "update", "web", "--label", "a=b", "--remove-label", "a"}, code: 2, stderr: `label "a" is both set`},
		{name: "nothing to update", args: []string{"vm", "update", "web"}, code: 2, stderr: "kumoi: nothing to change"},
		{name: "bad cas", args: []string{"vm", "delete", "web", "--cas", "x"}, code: 2, stderr: `invalid --cas "x"`},
		{name: "unknown flag", args: []string{"vm", "list", "--bogus"}, code: 2, stderr: "kumoi: unknown flag --bogus; see 'kumoi vm list --help'"},
		{name: "unknown short flag", args: []string{"vm", "list", "-x"}, code: 2, stderr: "kumoi: unknown flag -x;"},
		{name: "flag without value", args: []string{"vm", "list", "-l"}, code: 2, stderr: "kumoi: flag needs an argument: -l"},
		{name: "bad output", args: []string{"vm", "list", "-o", "xml"}, code: 2, stderr: `kumoi: invalid --output "xml": use table, json or yaml`},
		{name: "bad timeout", args: []string{"--timeout", "0s", "vm", "list"}, code: 2, stderr: "kumoi: invalid --timeout 0s"},
		{name: "bad timeout syntax", args: []string{"vm", "list", "--timeout", "soon"}, code: 2, stderr: `kumoi: invalid value "soon" for --timeout`},
		{name: "bad addr", args: []string{"vm", "list", "--addr", "ftp://x"}, code: 2, stderr: "kumoi: invalid --addr: controller address \"ftp://x\": scheme must be http or https"},
		{name: "dash name after --", args: []string{"vm", "get", "--", "-x"}, code: 1, stderr: `kumoi: vm "-x" not found`},
	})
	// Nothing was written by any of them.
	if n := s.Index(); n != 0 {
		t.Errorf("state index %d after usage errors, want 0", n)
	}
}

func TestHelpAndVersion(t *testing.T) {
	s := testapi.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "app help", args: []string{"--help"}, stdout: []string{"USAGE:", "COMMANDS:", "vm ", "host ", "cluster ", "agent ", "Examples:", "kumoi vm create web-1", "KUMOI_ADDR"}},
		{name: "no args", args: []string{}, stdout: []string{"COMMANDS:"}},
		{name: "noun help", args: []string{"vm", "--help"}, stdout: []string{"kumoi vm - ", "create ", "update ", "Examples:"}},
		{name: "noun alone", args: []string{"host"}, stdout: []string{"kumoi host - ", "list, ls"}},
		{name: "verb help", args: []string{"vm", "create", "--help"}, stdout: []string{
			"kumoi vm create NAME --cpus N --memory SIZE", "--cpus N", "--memory SIZE, -m SIZE", "--label KEY=VALUE",
			"Examples:", "GLOBAL OPTIONS", "KUMOI_ADDR"}},
		{name: "verb help after arg", args: []string{"vm", "update", "web", "-h"}, stdout: []string{"--remove-label KEY", "--cas INDEX"}},
		{name: "version", args: []string{"version"}, stdout: []string{"kumoi " + Version + " (go"}},
		{name: "version json", args: []string{"version", "-o", "json"}, stdout: []string{`"version": "` + Version + `"`}},
		{name: "version flag", args: []string{"--version"}, stdout: []string{Version}},
	})
}

func TestConnectionErrors(t *testing.T) {
	dead := testapi.DeadAddr(t)
	cliCase{name: "unreachable", args: []string{"vm", "list"}, code: 1,
		stderr: "kumoi: cannot reach any controller at " + dead + ": connection refused (is the agent running? set --addr or KUMOI_ADDR)\n",
	}.check(t, dead)

	// The second address answers.
	s := testapi.New(t)
	cliCase{name: "failover", args: []string{"vm", "list", "-o", "json"}, exact: "[]\n"}.check(t, dead+","+s.URL)

	// KUMOI_ADDR without a scheme, and KUMOI_OUTPUT.
	t.Setenv("KUMOI_ADDR", strings.TrimPrefix(s.URL, "http://"))
	t.Setenv("KUMOI_OUTPUT", "json")
	stdout, stderr, code := runCLI(t, "vm", "list")
	if code != 0 || stdout != "[]\n" || stderr != "" {
		t.Errorf("with KUMOI_ADDR/KUMOI_OUTPUT: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// A controller without a leader, for longer than the timeout.
	s.AlwaysUnavailable.Store(true)
	_, stderr, code = runCLI(t, "--addr", s.URL, "--timeout", "300ms", "vm", "list")
	if code != 1 || !strings.Contains(stderr, "no answer within 300ms (raise --timeout") {
		t.Errorf("no leader: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runCLI(t, "--addr", s.URL, "--timeout", "300ms", "vm", "create", "x", "--cpus", "1", "--memory", "1G")
	if code != 1 || !strings.Contains(stderr, "no answer within 300ms (raise --timeout") || !strings.Contains(stderr, "no cluster leader; retry later") {
		t.Errorf("create without leader: exit %d, stderr %q", code, stderr)
	}

	// A write that may have been applied says so.
	s.AlwaysUnavailable.Store(false)
	s.UnavailableUnknown.Store(1)
	_, stderr, code = runCLI(t, "--addr", s.URL, "vm", "create", "x", "--cpus", "1", "--memory", "1G")
	if code != 1 || stderr != "kumoi: leadership lost while the request was in flight; it may or may not have been applied\n" {
		t.Errorf("create with unknown outcome: exit %d, stderr %q", code, stderr)
	}
}

func TestPermuteArgs(t *testing.T) {
	app := NewApp()
	for _, tc := range []struct {
		in, want string
	}{
		{"kumoi", "kumoi"},
		{"kumoi --help", "kumoi --help"},
		{"kumoi vm list", "kumoi vm list"},
		{"kumoi vm get web -o json", "kumoi -o json vm get web"},
		{"kumoi vm get web --output=yaml --stale", "kumoi --output=yaml vm get --stale web"},
		{"kumoi vm -o json list", "kumoi -o json vm list"},
		{"kumoi -o json vm list", "kumoi -o json vm list"},
		{"kumoi --addr a:1 vm list --addr b:2", "kumoi --addr a:1 --addr b:2 vm list"},
		{"kumoi vm create web --cpus 2 --memory 1G --label a=b --label c=d", "kumoi vm create --cpus 2 --memory 1G --label a=b --label c=d web"},
		{"kumoi vm create --cpus 2 web -m 1G", "kumoi vm create --cpus 2 -m 1G web"},
		{"kumoi vm list --addr x:1 --timeout 5s -l a=b", "kumoi --addr x:1 --timeout 5s vm list -l a=b"},
		{"kumoi vm get --bogus web", "kumoi vm get --bogus web"},
		{"kumoi vm get -- -x", "kumoi vm get -- -x"},
		{"kumoi vm get web --", "kumoi vm get web"},
		{"kumoi vm update web --stale", "kumoi vm update --stale web"},
		{"kumoi vm get web -h", "kumoi vm get -h"},
		{"kumoi vm list -l", "kumoi vm list -l"},
		{"kumoi frob -o json x", "kumoi -o json frob x"},
		{"kumoi vm update web -h --cpus 2", "kumoi vm update -h --cpus 2"},
	} {
		got := strings.Join(permuteArgs(app, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("permuteArgs(%s) = %s\nwant %s", tc.in, got, tc.want)
		}
	}
}
