package cli

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/resource"
)

// putVM stores a VM as the cluster would have it: spec power, phase, host.
func putVM(tb testing.TB, s *testapi.Server, name, power, phase, host, reason string) {
	tb.Helper()
	s.Put(tb, resource.KindVM, name, nil, resource.VMSpec{CPUs: 1, MemoryMiB: 256, Power: power},
		resource.VMStatus{Phase: phase, Host: host, Epoch: 7, Reason: reason, Since: testapi.Now})
}

func vmSpec(tb testing.TB, s *testapi.Server, name string) *resource.VMSpec {
	tb.Helper()
	o := s.Object(resource.KindVM, name)
	if o == nil {
		tb.Fatalf("vm %s is gone", name)
	}
	spec, _ := resource.VMStateOf(o)
	return spec
}

func countReqs(s *testapi.Server, method, path string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func TestVMCreateWait(t *testing.T) {
	s := testapi.New(t)
	s.Lifecycle = testapi.Healthy("sim-2")
	runCases(t, s.URL, []cliCase{
		{name: "running", args: []string{"vm", "create", "web", "--cpus", "1", "--memory", "256MiB", "--wait"},
			stdout: []string{"web    1      256MiB   running   running   sim-2   "},
			errExact: "web: pending (waiting for placement)\n" +
				"web: scheduled on sim-2\n" +
				"web: starting\n" +
				"web: running on sim-2\n"},
		{name: "stopped", args: []string{"vm", "create", "cold", "--cpus", "1", "--memory", "256MiB", "--power", "stopped", "--wait"},
			stdout: []string{"cold   1      256MiB   stopped   stopped   sim-2"},
			errExact: "cold: pending (waiting for placement)\n" +
				"cold: scheduled on sim-2\n" +
				"cold: stopped on sim-2\n"},
		{name: "suspended json", args: []string{"vm", "create", "nap", "--cpus", "1", "--memory", "256MiB", "--power", "suspended", "--wait", "-o", "json"},
			stdout:   []string{`"name": "nap"`, `"phase": "suspended"`, `"host": "sim-2"`},
			errExact: "nap: pending (waiting for placement)\nnap: scheduled on sim-2\nnap: starting\nnap: suspended on sim-2\n"},
		{name: "without wait", args: []string{"vm", "create", "quick", "--cpus", "1", "--memory", "256MiB"},
			stdout: []string{"quick   1      256MiB   running   pending   -      "}},
	})
	// Each blocking read saw one step: the waits used ?index.
	for _, r := range s.Requests() {
		if r.Method == http.MethodGet && r.Path == "/v1/vms/web" && (r.Query.Get("index") == "" || r.Query.Get("wait") == "") {
			t.Errorf("wait read without index/wait: %s?%s", r.Path, r.RawQuery)
		}
	}
	if n := s.PendingSteps("quick"); n != 3 {
		t.Errorf("quick: %d steps left, want 3 (nobody waited)", n)
	}
}

func TestVMCreateWaitFails(t *testing.T) {
	const big = "larger than any host: needs 64 CPUs and 512GiB; no ready host has that much capacity"
	s := testapi.New(t)
	s.Lifecycle = func(vm *resource.Object) []testapi.Step {
		switch vm.Name {
		case "broken":
			return []testapi.Step{
				{Status: resource.VMStatus{Phase: resource.PhaseScheduled, Host: "sim-1"}},
				{Status: resource.VMStatus{Phase: resource.PhaseStarting, Host: "sim-1"}},
				{Status: resource.VMStatus{Phase: resource.PhaseFailed, Host: "sim-1", Reason: "define failed: image /img/x.qcow2 does not exist"}},
			}
		case "big":
			return []testapi.Step{{Status: resource.VMStatus{Phase: resource.PhasePending, Reason: big}}}
		case "shy":
			return []testapi.Step{
				{Status: resource.VMStatus{Phase: resource.PhaseScheduled, Host: "sim-1"}},
				{Status: resource.VMStatus{Phase: resource.PhaseStarting, Host: "sim-1"}},
				{Status: resource.VMStatus{Phase: resource.PhaseStopped, Host: "sim-1", Reason: "the guest powered itself off"}, Power: resource.PowerStopped},
			}
		case "lost":
			return []testapi.Step{
				{Status: resource.VMStatus{Phase: resource.PhaseScheduled, Host: "sim-3"}},
				{Status: resource.VMStatus{Phase: resource.PhaseLost, Host: "sim-3", Reason: "host sim-3 is down"}},
			}
		}
		return nil
	}
	runCases(t, s.URL, []cliCase{
		{name: "failed", args: []string{"vm", "create", "broken", "--cpus", "1", "--memory", "256MiB", "--image", "/img/x.qcow2", "--wait"}, code: 1,
			errExact: "broken: pending (waiting for placement)\n" +
				"broken: scheduled on sim-1\n" +
				"broken: starting\n" +
				"kumoi: vm \"broken\" failed: define failed: image /img/x.qcow2 does not exist\n"},
		{name: "stays pending", args: []string{"vm", "create", "big", "--cpus", "64", "--memory", "512GiB", "--wait", "--timeout", "300ms"}, code: 1,
			errExact: "big: pending (waiting for placement)\n" +
				"big: pending (" + big + ")\n" +
				"kumoi: vm \"big\" is not running after 300ms: it is still pending (" + big + "); raise --timeout, or see 'kumoi vm get big'\n"},
		{name: "guest powers off", args: []string{"vm", "create", "shy", "--cpus", "1", "--memory", "256MiB", "--wait"}, code: 1,
			errExact: "shy: pending (waiting for placement)\nshy: scheduled on sim-1\nshy: starting\n" +
				"kumoi: vm \"shy\": its power was changed to stopped while waiting for it to be running; it is stopped (the guest powered itself off)\n"},
		{name: "lost", args: []string{"vm", "create", "lost", "--cpus", "1", "--memory", "256MiB", "--wait"}, code: 1,
			errExact: "lost: pending (waiting for placement)\nlost: scheduled on sim-3\nkumoi: vm \"lost\" is lost: host sim-3 is down\n"},
	})

	// Deleted by someone else while waiting.
	s.Lifecycle = nil
	s.Hook = func(r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Query().Has("index") {
			s.Remove(resource.KindVM, "gone")
		}
	}
	cliCase{name: "deleted", args: []string{"vm", "create", "gone", "--cpus", "1", "--memory", "256MiB", "--wait"}, code: 1,
		errExact: "gone: pending (waiting for placement)\nkumoi: vm \"gone\" was deleted while waiting for it to be running\n"}.check(t, s.URL)
}

func TestVMCreateBoot(t *testing.T) {
	s := testapi.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "image", args: []string{"vm", "create", "disk", "--cpus", "1", "--memory", "1G", "--image", "/img/debian.raw", "--image-format", "raw", "-o", "json"},
			stdout: []string{`"boot": {`, `"image": "/img/debian.raw"`, `"image_format": "raw"`}},
		{name: "kernel", args: []string{"vm", "create", "tiny", "--cpus", "1", "--memory", "256M", "--kernel", "/boot/vmlinuz", "--initrd", "/boot/initrd.img", "--cmdline", "console=ttyS0 quiet", "-o", "yaml"},
			stdout: []string{"kernel: /boot/vmlinuz\n", "initrd: /boot/initrd.img\n", "cmdline: console=ttyS0 quiet\n"}},
		{name: "no boot", args: []string{"vm", "create", "plain", "--cpus", "1", "--memory", "256M", "-o", "json"}, stdout: []string{`"ha": "none"`}},
		{name: "relative image", args: []string{"vm", "create", "rel", "--cpus", "1", "--memory", "1G", "--image", "debian.qcow2", "-o", "json"},
			stdout: []string{`"image": "debian.qcow2"`}},
		{name: "dotdot image", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--image", "../disk.qcow2"}, code: 2,
			stderr: `kumoi: invalid --image "../disk.qcow2": give a name in the hosts' image directory (--image-dir)`},
		{name: "dotdot kernel", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--kernel", "/var/lib/kumoi/images/../../../boot/vmlinuz"}, code: 2,
			stderr: `kumoi: invalid --kernel "/var/lib/kumoi/images/../../../boot/vmlinuz"`},
		{name: "format without image", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--image-format", "raw"}, code: 2,
			stderr: "kumoi: --image-format needs --image"},
		{name: "bad format", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--image", "/a", "--image-format", "vmdk"}, code: 2,
			stderr: `kumoi: invalid --image-format "vmdk": use qcow2 or raw`},
		{name: "initrd without kernel", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--initrd", "/boot/initrd.img"}, code: 2,
			stderr: "kumoi: --initrd needs --kernel"},
		{name: "cmdline without kernel", args: []string{"vm", "create", "x", "--cpus", "1", "--memory", "1G", "--image", "/a", "--cmdline", "quiet"}, code: 2,
			stderr: "kumoi: --cmdline needs --kernel"},
	})
	if o := s.Object(resource.KindVM, "plain"); strings.Contains(string(o.Spec), "boot") {
		t.Errorf("a VM without boot flags has a boot: %s", o.Spec)
	}
	if o := s.Object(resource.KindVM, "x"); o != nil {
		t.Errorf("x was created: %s", o.Spec)
	}
}

func TestVMPowerVerbs(t *testing.T) {
	const failReason = "define failed: image /img/x.qcow2 does not exist"
	for _, tc := range []struct {
		name         string
		power, phase string
		args         []string
		code         int
		stdout       string // substring
		stderr       string // substring; "" = none
		wantPower    string // the VM's power afterwards
	}{
		{name: "start stopped", power: "stopped", phase: "stopped", args: []string{"start"}, stdout: "web    1      256MiB   running   stopped   hv-1", wantPower: "running"},
		{name: "start running", power: "running", phase: "running", args: []string{"start"}, stdout: "running   running",
			stderr: "web: power is already running; nothing to change\n", wantPower: "running"},
		{name: "start pending", power: "running", phase: "pending", args: []string{"start"}, stderr: "already running", wantPower: "running"},
		{name: "start suspended", power: "suspended", phase: "suspended", args: []string{"start"}, code: 1,
			stderr: "kumoi: cannot start vm \"web\": it is suspended (phase suspended, power suspended); continue it with 'kumoi vm resume web'\n", wantPower: "suspended"},
		{name: "start failed", power: "running", phase: "failed", args: []string{"start"}, stdout: "pending",
			stderr: "web: was failed; placing it again\n", wantPower: "running"},
		{name: "stop running", power: "running", phase: "running", args: []string{"stop", "-o", "json"}, stdout: `"power": "stopped"`, wantPower: "stopped"},
		{name: "stop stopped", power: "stopped", phase: "stopped", args: []string{"stop"}, stderr: "web: power is already stopped; nothing to change\n", wantPower: "stopped"},
		{name: "stop stopping", power: "stopped", phase: "stopping", args: []string{"stop"}, stderr: "already stopped", wantPower: "stopped"},
		{name: "stop suspended", power: "suspended", phase: "suspended", args: []string{"stop"}, wantPower: "stopped"},
		{name: "stop failed", power: "running", phase: "failed", args: []string{"stop"}, wantPower: "stopped"},
		{name: "suspend running", power: "running", phase: "running", args: []string{"suspend"}, stdout: "suspended   running", wantPower: "suspended"},
		{name: "suspend suspended", power: "suspended", phase: "suspended", args: []string{"suspend"}, stderr: "already suspended", wantPower: "suspended"},
		{name: "suspend stopped", power: "stopped", phase: "stopped", args: []string{"suspend"}, code: 1,
			stderr: "kumoi: cannot suspend vm \"web\": it is stopped (phase stopped, power stopped); only a running VM can be suspended; start it with 'kumoi vm start web'\n", wantPower: "stopped"},
		{name: "suspend failed", power: "running", phase: "failed", args: []string{"suspend"}, code: 1, stderr: "kumoi: cannot suspend vm \"web\": it is failed (", wantPower: "running"},
		{name: "resume suspended", power: "suspended", phase: "suspended", args: []string{"resume"}, stdout: "running   suspended", wantPower: "running"},
		{name: "resume running", power: "running", phase: "running", args: []string{"resume"}, code: 1,
			stderr: "kumoi: cannot resume vm \"web\": it is not suspended (phase running, power running)\n", wantPower: "running"},
		{name: "resume stopped", power: "stopped", phase: "stopped", args: []string{"resume"}, code: 1,
			stderr: "kumoi: cannot resume vm \"web\": it is not suspended (phase stopped, power stopped); start it with 'kumoi vm start web'\n", wantPower: "stopped"},
		{name: "resume being suspended", power: "suspended", phase: "running", args: []string{"resume"}, wantPower: "running"},
		{name: "missing", power: "running", phase: "running", args: []string{"start", "nope"}, code: 1, stderr: "kumoi: vm \"nope\" not found\n", wantPower: "running"},
		{name: "no name", power: "stopped", phase: "stopped", args: []string{"start"}, code: 2, stderr: "kumoi: missing VM name: kumoi vm start NAME", wantPower: "stopped"},
		{name: "two names", power: "stopped", phase: "stopped", args: []string{"stop", "web", "db"}, code: 2, stderr: "too many arguments", wantPower: "stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testapi.New(t)
			reason := ""
			if tc.phase == resource.PhaseFailed {
				reason = failReason
			}
			host := "hv-1"
			if tc.phase == resource.PhasePending {
				host = ""
			}
			putVM(t, s, "web", tc.power, tc.phase, host, reason)
			before := s.Index()
			args := append([]string{"--addr", s.URL, "vm"}, tc.args...)
			if tc.name != "no name" && tc.name != "missing" && tc.name != "two names" {
				args = append(args, "web")
			}
			stdout, stderr, code := runCLI(t, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout)
			}
			if tc.code != 0 && stdout != "" {
				t.Errorf("a refused verb printed %q", stdout)
			}
			if (tc.stderr == "") != (stderr == "") || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr = %q, want %q", stderr, tc.stderr)
			}
			if got := vmSpec(t, s, "web").Power; got != tc.wantPower {
				t.Errorf("power is %s, want %s", got, tc.wantPower)
			}
			// Starting a failed VM writes its status (back to pending).
			if wrote := s.Index() != before; wrote != (tc.power != tc.wantPower || tc.name == "start failed") {
				t.Errorf("wrote: %t (index %d → %d)", wrote, before, s.Index())
			}
		})
	}
}

func TestVMPowerWait(t *testing.T) {
	s := testapi.New(t)
	s.Lifecycle = testapi.Healthy("hv-1")
	putVM(t, s, "web", "stopped", "stopped", "hv-1", "")
	runCases(t, s.URL, []cliCase{
		{name: "start", args: []string{"vm", "start", "web", "--wait"}, stdout: []string{"web    1      256MiB   running   running   hv-1"},
			errExact: "web: stopped on hv-1\nweb: starting\nweb: running on hv-1\n"},
		{name: "start again", args: []string{"vm", "start", "web", "--wait"}, stdout: []string{"running   running"},
			errExact: "web: power is already running; nothing to change\nweb: running on hv-1\n"},
		{name: "suspend", args: []string{"vm", "suspend", "web", "--wait"}, stdout: []string{"suspended   suspended   hv-1"},
			errExact: "web: running on hv-1\nweb: suspended on hv-1\n"},
		{name: "resume", args: []string{"vm", "resume", "web", "--wait", "-o", "json"}, stdout: []string{`"power": "running"`, `"phase": "running"`},
			errExact: "web: suspended on hv-1\nweb: running on hv-1\n"},
		{name: "stop", args: []string{"vm", "stop", "web", "--wait"}, stdout: []string{"stopped   stopped   hv-1"},
			errExact: "web: running on hv-1\nweb: stopping\nweb: stopped on hv-1\n"},
	})

	// A start that the worker cannot carry out.
	s.Lifecycle = func(*resource.Object) []testapi.Step {
		return []testapi.Step{
			{Status: resource.VMStatus{Phase: resource.PhaseStarting, Host: "hv-1"}},
			{Status: resource.VMStatus{Phase: resource.PhaseFailed, Host: "hv-1", Reason: "start failed: out of memory on hv-1"}},
		}
	}
	cliCase{name: "start fails", args: []string{"vm", "start", "web", "--wait"}, code: 1,
		errExact: "web: stopped on hv-1\nweb: starting\nkumoi: vm \"web\" failed: start failed: out of memory on hv-1\n"}.check(t, s.URL)

	// A stop that never completes: --timeout bounds it.
	putVM(t, s, "slow", "running", "running", "hv-1", "")
	s.Lifecycle = func(*resource.Object) []testapi.Step {
		return []testapi.Step{{Status: resource.VMStatus{Phase: resource.PhaseStopping, Host: "hv-1", Reason: "waiting for the guest to shut down"}}}
	}
	cliCase{name: "stop times out", args: []string{"vm", "stop", "slow", "--wait", "--timeout", "200ms"}, code: 1,
		errExact: "slow: running on hv-1\nslow: stopping (waiting for the guest to shut down)\n" +
			"kumoi: vm \"slow\" is not stopped after 200ms: it is still stopping (waiting for the guest to shut down); raise --timeout, or see 'kumoi vm get slow'\n"}.check(t, s.URL)
}

func TestVMPowerRetriesCAS(t *testing.T) {
	s := testapi.New(t)
	putVM(t, s, "web", "stopped", "stopped", "hv-1", "")

	// A worker reports twice between the CLI's read and its write.
	var bumps atomic.Int32
	s.Hook = func(r *http.Request) {
		if r.Method == http.MethodPut && bumps.Add(1) <= 2 {
			s.SetStatus(t, resource.KindVM, "web", resource.VMStatus{Phase: resource.PhaseStopped, Host: "hv-1", Epoch: 7, Reason: "report " + r.URL.RawQuery})
		}
	}
	cliCase{name: "retried", args: []string{"vm", "start", "web"}, stdout: []string{"running   stopped"}}.check(t, s.URL)
	if got := vmSpec(t, s, "web").Power; got != "running" {
		t.Errorf("power %s after retries", got)
	}
	if n := countReqs(s, http.MethodPut, "/v1/vms/web"); n != 3 {
		t.Errorf("%d PUTs, want 3", n)
	}
	for _, r := range s.Requests() {
		if r.Method == http.MethodPut && r.Query.Get("cas") == "" {
			t.Errorf("PUT without cas: %s", r.RawQuery)
		}
	}

	// It keeps losing: it gives up and says so.
	bumps.Store(-100)
	before := countReqs(s, http.MethodPut, "/v1/vms/web")
	cliCase{name: "gives up", args: []string{"vm", "stop", "web"}, code: 1,
		stderr: "kumoi: vm \"web\" kept changing while it was being updated (5 attempts), so nothing was written; run the command again\n"}.check(t, s.URL)
	if n := countReqs(s, http.MethodPut, "/v1/vms/web") - before; n != client.ModifyAttempts {
		t.Errorf("%d PUTs, want %d", n, client.ModifyAttempts)
	}
	if got := vmSpec(t, s, "web").Power; got != "running" {
		t.Errorf("power %s after giving up", got)
	}

	// Someone stops the VM between the read and the write of a suspend:
	// the re-read finds that suspend no longer makes sense.
	s.Hook = func(r *http.Request) {
		if r.Method == http.MethodPut {
			s.Hook = nil
			putVM(t, s, "web", "stopped", "stopped", "hv-1", "")
		}
	}
	cliCase{name: "re-checked", args: []string{"vm", "suspend", "web"}, code: 1,
		stderr: "kumoi: cannot suspend vm \"web\": it is stopped (phase stopped, power stopped)"}.check(t, s.URL)
}

func TestVMListByHost(t *testing.T) {
	s := testapi.New(t)
	putVM(t, s, "a", "running", "running", "hv-1", "")
	putVM(t, s, "b", "running", "running", "hv-2", "")
	putVM(t, s, "c", "stopped", "stopped", "hv-1", "stopped: the guest crashed")
	putVM(t, s, "d", "running", "pending", "", "no ready host has 64 CPUs and 512GiB free right now (1 of 3 ready hosts are large enough)")
	s.Put(t, resource.KindVM, "e", nil, resource.VMSpec{CPUs: 1, MemoryMiB: 256, Power: "running"},
		resource.VMStatus{Phase: "running", Host: "hv-2", Epoch: 7, Reason: "restarted after the guest crashed", Since: testapi.Now, Restarts: 2})
	runCases(t, s.URL, []cliCase{
		{name: "get shows restarts when there were some", args: []string{"vm", "get", "e"}, exact: "" +
			"NAME   CPUS   MEMORY   POWER     PHASE     HOST   INDEX   RESTARTS   REASON\n" +
			"e      1      256MiB   running   running   hv-2   5       2          restarted after the guest crashed\n"},
		{name: "get without restarts: no column", args: []string{"vm", "get", "a"}, exact: "" +
			"NAME   CPUS   MEMORY   POWER     PHASE     HOST   INDEX   REASON\n" +
			"a      1      256MiB   running   running   hv-1   1       -\n"},
		{name: "all", args: []string{"vm", "list"}, exact: "" +
			"NAME   CPUS   MEMORY   POWER     PHASE     HOST   INDEX   REASON\n" +
			"a      1      256MiB   running   running   hv-1   1       -\n" +
			"b      1      256MiB   running   running   hv-2   2       -\n" +
			"c      1      256MiB   stopped   stopped   hv-1   3       stopped: the guest crashed\n" +
			"d      1      256MiB   running   pending   -      4       no ready host has 64 CPUs and 512GiB free right…\n" +
			"e      1      256MiB   running   running   hv-2   5       restarted after the guest crashed\n"},
		{name: "get shows the whole reason", args: []string{"vm", "get", "d"},
			stdout: []string{"free right now (1 of 3 ready hosts are large enough)\n"}},
		{name: "host", args: []string{"vm", "list", "--host", "hv-1"}, exact: "" +
			"NAME   CPUS   MEMORY   POWER     PHASE     HOST   INDEX   REASON\n" +
			"a      1      256MiB   running   running   hv-1   1       -\n" +
			"c      1      256MiB   stopped   stopped   hv-1   3       stopped: the guest crashed\n"},
		{name: "host json", args: []string{"vm", "list", "--host", "hv-2", "-o", "json"}, stdout: []string{`"name": "b"`, `"host": "hv-2"`}},
		{name: "host and selector", args: []string{"vm", "ls", "--host", "hv-1", "-l", "x=y", "-o", "json"}, exact: "[]\n"},
		{name: "host none", args: []string{"vm", "list", "--host", "hv-9", "-o", "json"}, exact: "[]\n"},
		{name: "host vms", args: []string{"host", "vms", "hv-1"}, stdout: []string{"a      1 ", "c      1 "}},
		{name: "host vms yaml", args: []string{"host", "vms", "hv-2", "-o", "yaml"}, stdout: []string{"name: b\n", "restarts: 2\n"}},
		{name: "bad host", args: []string{"vm", "list", "--host", "HV_1"}, code: 2, stderr: `kumoi: invalid --host: "HV_1" is not a DNS label`},
		{name: "host vms no name", args: []string{"host", "vms"}, code: 2, stderr: "kumoi: missing host name"},
	})
	var sawHost bool
	for _, r := range s.Requests() {
		if r.Path == "/v1/vms" && r.Query.Get("host") == "hv-1" {
			sawHost = true
		}
	}
	if !sawHost {
		t.Error("vm list --host did not send ?host=")
	}
	out, _, _ := runCLI(t, "--addr", s.URL, "vm", "list")
	checkTable(t, out, true)
}

func TestHostDrainEnable(t *testing.T) {
	s := testapi.New(t)
	seedHosts(t, s)
	putVM(t, s, "a", "running", "running", "hv-1", "")
	runCases(t, s.URL, []cliCase{
		{name: "drain", args: []string{"host", "drain", "hv-1"},
			exact: "host \"hv-1\" drained: no new VMs will be placed on it; the 1 VM on it stays and keeps running ('kumoi host drain --migrate' moves them off)\n"},
		{name: "list", args: []string{"host", "list", "-l", "rack=a"}, stdout: []string{"hv-1   ready   no "}},
		{name: "drain again", args: []string{"host", "drain", "hv-1"}, stdout: []string{`host "hv-1" is already drained: no new VMs`}},
		{name: "enable", args: []string{"host", "enable", "hv-1"}, exact: "host \"hv-1\" is schedulable again: new VMs may be placed on it\n"},
		{name: "enable again", args: []string{"host", "enable", "hv-1"}, exact: "host \"hv-1\" is already schedulable; nothing to change\n"},
		{name: "drain empty json", args: []string{"host", "drain", "hv-2", "-o", "json"}, stdout: []string{`"name": "hv-2"`, `"unschedulable": true`}},
		{name: "enable json", args: []string{"host", "enable", "hv-2", "-o", "json"}, stdout: []string{`"name": "hv-2"`, `"cpu_overcommit": 1`}},
		{name: "drain missing", args: []string{"host", "drain", "hv-9"}, code: 1, stderr: "kumoi: host \"hv-9\" not found\n"},
		{name: "drain no name", args: []string{"host", "drain"}, code: 2, stderr: "kumoi: missing host name"},
	})
	if strings.Contains(string(s.Object(resource.KindHost, "hv-2").Spec), "unschedulable") {
		t.Errorf("hv-2 still unschedulable: %s", s.Object(resource.KindHost, "hv-2").Spec)
	}

	// The host's status changes between the read and the write.
	var bumps atomic.Int32
	s.Hook = func(r *http.Request) {
		if r.Method == http.MethodPut && bumps.Add(1) == 1 {
			s.SetStatus(t, resource.KindHost, "hv-1", resource.HostStatus{State: resource.HostReady, Capacity: resource.Resources{CPUs: 16, MemoryMiB: 1 << 16}})
		}
	}
	cliCase{name: "drain retried", args: []string{"host", "drain", "hv-1", "-o", "json"}, stdout: []string{`"unschedulable": true`}}.check(t, s.URL)
	// drain, enable, and the retried drain twice; "again" wrote nothing.
	if n := countReqs(s, http.MethodPut, "/v1/hosts/hv-1"); n != 4 {
		t.Errorf("%d PUTs of hv-1, want 4", n)
	}
}

func TestVMDeleteWaitForce(t *testing.T) {
	s := testapi.New(t)
	putVM(t, s, "web", "running", "running", "hv-1", "")
	putVM(t, s, "db", "running", "running", "hv-1", "")
	runCases(t, s.URL, []cliCase{
		{name: "force wait", args: []string{"vm", "delete", "web", "--force", "--wait"}, exact: "vm \"web\" deleted\n"},
		{name: "short force json", args: []string{"vm", "rm", "-f", "db", "-o", "json"}, stdout: []string{`"name": "db"`}},
		{name: "missing", args: []string{"vm", "delete", "web", "--wait"}, code: 1, stderr: "kumoi: vm \"web\" not found\n"},
	})
	if n := s.Index(); n != 4 {
		t.Errorf("index %d, want 4", n)
	}
}

func TestWaitTimeoutDefault(t *testing.T) {
	s := testapi.New(t)
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{"probe"}, 30 * time.Second},
		{[]string{"probe", "--wait"}, defaultWaitTimeout},
		{[]string{"probe", "--wait", "--timeout", "10s"}, 10 * time.Second},
		{[]string{"--timeout", "20m", "probe", "--wait"}, 20 * time.Minute},
		{[]string{"probe", "--timeout", "10s"}, 10 * time.Second},
	} {
		app := NewApp()
		var got time.Duration
		app.Commands = append(app.Commands, &cli.Command{
			Name:  "probe",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "wait"}},
			Action: func(c *cli.Context) error {
				sess, err := connectWait(c)
				if err != nil {
					return err
				}
				defer sess.close()
				got = sess.timeout
				return nil
			},
		})
		if code := run(context.Background(), app, append([]string{"kumoi", "--addr", s.URL}, tc.args...)); code != 0 {
			t.Fatalf("%v: exit %d", tc.args, code)
		}
		if got != tc.want {
			t.Errorf("%v: timeout %s, want %s", tc.args, got, tc.want)
		}
	}
}

func TestVMHelp(t *testing.T) {
	s := testapi.New(t)
	runCases(t, s.URL, []cliCase{
		{name: "vm", args: []string{"vm", "--help"}, stdout: []string{"start ", "stop ", "suspend ", "resume ", "delete, rm", "--wait"}},
		{name: "create", args: []string{"vm", "create", "-h"}, stdout: []string{"--image PATH", "--image-format FORMAT", "--kernel PATH", "--initrd PATH", "--cmdline STR", "--wait", "5m with --wait"}},
		{name: "start", args: []string{"vm", "start", "--help"}, stdout: []string{"kumoi vm start NAME [--wait]", "compare-and-set", "kumoi vm resume"}},
		{name: "resume", args: []string{"vm", "resume", "--help"}, stdout: []string{"until the VM's phase is", "A VM that is not suspended is refused"}},
		{name: "delete", args: []string{"vm", "delete", "--help"}, stdout: []string{"--force, -f", "delete even if the VM is running", "--wait"}},
		{name: "list", args: []string{"vm", "list", "--help"}, stdout: []string{"--host HOST", "REASON"}},
		{name: "host", args: []string{"host", "--help"}, stdout: []string{"drain ", "enable ", "vms "}},
		{name: "drain", args: []string{"host", "drain", "--help"}, stdout: []string{"unschedulable", "stay where they are"}},
		{name: "reboot needs a name", args: []string{"vm", "reboot"}, code: 2, stderr: "NAME"},
	})
}

// TestVMListPagesTransparently: when the API pages a list (X-Kumoi-Next),
// vm list follows the pages and shows every VM once.
func TestVMListPagesTransparently(t *testing.T) {
	s := testapi.New(t)
	s.PageSize.Store(2)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		putVM(t, s, n, "running", "running", "hv-1", "")
	}
	runCases(t, s.URL, []cliCase{
		{name: "all pages", args: []string{"vm", "list"}, exact: "" +
			"NAME   CPUS   MEMORY   POWER     PHASE     HOST   INDEX   REASON\n" +
			"a      1      256MiB   running   running   hv-1   1       -\n" +
			"b      1      256MiB   running   running   hv-1   2       -\n" +
			"c      1      256MiB   running   running   hv-1   3       -\n" +
			"d      1      256MiB   running   running   hv-1   4       -\n" +
			"e      1      256MiB   running   running   hv-1   5       -\n"},
	})
	pages := 0
	for _, r := range s.Requests() {
		if r.Path == "/v1/vms" {
			pages++
		}
	}
	if pages != 3 {
		t.Errorf("vm list sent %d list requests, want 3 pages", pages)
	}
}
