package script_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/agent"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/script"
)

// The dev cluster the tests share: one controller and two simulated hosts
// on 127.0.0.51, started by the first test that needs it.
var (
	devOnce sync.Once
	dev     *agent.DevCluster
	devErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if dev != nil {
		dev.Shutdown(context.Background())
	}
	os.Exit(code)
}

// devClient returns a client of the shared dev cluster, once both of its
// hosts are ready.
func devClient(t *testing.T) *client.Client {
	t.Helper()
	devOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dev, devErr = agent.StartDev(ctx, agent.DevConfig{Controllers: 1, Hosts: 2, BindIP: "127.0.0.51", APIPort: 17400})
	})
	if devErr != nil {
		t.Fatal(devErr)
	}
	c, err := client.New(client.Config{Addrs: dev.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 30*time.Second, "two ready hosts", func() (bool, error) {
		hosts, _, err := c.List(context.Background(), resource.KindHost, nil)
		if err != nil || len(hosts) != 2 {
			return false, nil
		}
		for _, h := range hosts {
			if _, st := script.HostState(h); st.State != resource.HostReady {
				return false, nil
			}
		}
		return true, nil
	})
	return c
}

// runDev runs src against the dev cluster and fails the test on error.
func runDev(t *testing.T, c *client.Client, src string) string {
	t.Helper()
	out := &script.SyncBuffer{}
	if err := script.Run(context.Background(), script.Env{Client: c, Out: out, Timeout: time.Minute}, "dev.star", []byte(src), nil); err != nil {
		t.Fatalf("script failed: %v\noutput:\n%s", err, out)
	}
	return out.String()
}

func TestObjectsAgainstDevCluster(t *testing.T) {
	c := devClient(t)
	out := runDev(t, c, `
def check(cond, msg):
    if not cond:
        fail(msg)

hs = hosts()
check([h.name for h in hs] == ["sim-1", "sim-2"], "hosts: %s" % hs)
h = host("sim-1")
check(str(h) == 'host("sim-1", state=ready)', str(h))
check(h.state == "ready" and h.capacity.cpus == 8 and h.capacity.memory == "16GiB", "capacity %s" % h.capacity)
check(h.allocated.cpus >= 0 and h.schedulable and h.spec.cpu_overcommit == 1.0, "host attrs")
check(type(h.labels) == "dict" and h.status.driver == "sim" and h.index > 0, "host status %s" % h.status)
check("drain" in dir(h) and "capacity" in dir(h), "dir(host) = %s" % dir(h))
check(hosts("nosuchlabel") == [], "selector")

check(not h.drain().schedulable, "drain")
check(not host("sim-1").schedulable, "drain did not stick")
check(h.enable().schedulable and h.refresh().schedulable, "enable")

v = create_vm("obj-1", cpus=2, memory="512MiB", labels={"tier": "obj", "team": "a"}, wait=True)
check(v.phase == "running", "phase %s" % v.phase)
check(v.name == "obj-1" and v.labels == {"team": "a", "tier": "obj"}, "labels %s" % v.labels)
check(v.spec.cpus == 2 and v.spec.memory_mib == 512 and v.spec.memory == "512MiB" and v.spec.ha == "none", "spec %s" % v.spec)
check(v.status.phase == "running" and v.status.host == v.host.name and v.status.since != None, "status %s" % v.status)
check(type(v.host) == "host" and v.host.name in ["sim-1", "sim-2"], "host %s" % v.host)
check(v in v.host.vms(), "host.vms() lacks the VM: %s" % v.host.vms())
check(vm("obj-1") == v and [x.name for x in vms("tier=obj")] == ["obj-1"], "vm()/vms()")
check(vms("tier=obj,team!=a") == [], "selector with !=")

v.suspend()
check(v.wait("suspended", timeout="30s").phase == "suspended", "suspend")
check(v.resume().wait("running").phase == "running", "resume")
v.reboot()
check(v.wait("running", timeout=30).phase == "running", "reboot")
v.stop(force=True)
check(v.wait("stopped").phase == "stopped", "stop")
check(v.start().wait("running").phase == "running", "start")
check(wait_until(lambda: vm("obj-1").phase == "running", timeout="10s"), "wait_until")
sleep("10ms")
sleep(0.01)
check(v.refresh().phase == "running", "refresh")
v.delete()
check(v.wait("deleted") == None, "wait deleted")
print("ok", str(v))
`)
	if !strings.HasPrefix(out, "ok vm(\"obj-1\"") {
		t.Errorf("output %q", out)
	}
}

func TestErrorsAgainstDevCluster(t *testing.T) {
	c := devClient(t)
	env := script.Env{Client: c, Timeout: time.Minute}
	run := func(src string) error {
		return script.Run(context.Background(), env, "err.star", []byte(src), nil)
	}
	script.WantError(t, run(`vm("nope")`), `Error: vm: vm "nope" not found`, "err.star:1:3: in <expr>")
	script.WantError(t, run(`host("nope")`), `host "nope" not found`)
	script.WantError(t, run("create_vm(\"err-1\")\ncreate_vm(\"err-1\")\n"), `err.star:2:10: in <toplevel>`, `vm "err-1" already exists`)
	script.WantError(t, run(`vm("err-1").migrate(host=3)`), `vm.migrate: for parameter "host": got int, want a host, a host name or None`)
	script.WantError(t, run(`vm("err-1").migrate(host="nope", timeout="20s")`), `vm.migrate: host: there is no host "nope"`)
	script.WantError(t, run(`vm("err-1").wait("sleeping")`), `vm.wait: for parameter "phase": "sleeping" is not a VM phase`)
	script.WantError(t, run(`vm("err-1").wait("stopped", timeout="300ms")`), `vm.wait: vm "err-1" is not stopped after 300ms: `) // "it is still running", or on a slow machine no answer in time
	script.WantError(t, run(`wait_until(lambda: False, timeout="200ms")`), "wait_until: the condition is still false after 200ms")
	script.WantError(t, run(`vm("err-1").delete()`+"\n"+`vm("err-1")`), `vm "err-1" not found`)
}

func TestSkeletonsAgainstDevCluster(t *testing.T) {
	c := devClient(t)
	out := runDev(t, c, `
names = ["sk-%d" % i for i in range(6)]
web = pmap(lambda n: create_vm(n, labels={"tier": "sk"}, wait=True), names, workers=6)
if failures(web):
    fail("create: %s" % failures(web))
# Stop two of them: a reboot of a stopped VM fails.
pforeach(lambda v: v.stop().wait("stopped"), web[:2])
results = pmap(lambda v: v.reboot(), vms("tier=sk"), workers=4)
bad = failures(results)
print(len(results), len(successes(results)), [f.item.name for f in bad])
print(bad[0].error)
print(pfilter(lambda v: v.phase == "stopped", vms("tier=sk")))
print(preduce(lambda acc, v: acc + v.spec.memory_mib, vms("tier=sk"), 0))
print(pforeach(lambda v: v.delete(), vms("tier=sk")))
`)
	want := `6 4 ["sk-0", "sk-1"]
vm.reboot: vm "sk-0" is stopped: `
	if !strings.HasPrefix(out, want) || !strings.Contains(out, "only a running VM can be rebooted") {
		t.Errorf("output:\n%s\nwant it to start with\n%s", out, want)
	}
	if !strings.Contains(out, `[vm("sk-0", phase=stopped`) || !strings.Contains(out, "\n1536\n[]\n") {
		t.Errorf("output:\n%s", out)
	}
}

func TestEventsAgainstDevCluster(t *testing.T) {
	c := devClient(t)
	out := runDev(t, c, `
v = create_vm("ev-1")
seen = []
for ev in events(kinds=["vm"], since=0):
    if ev.name != "ev-1":
        continue
    seen.append(ev.type)
    if ev.type == "vm.running":
        print(ev.kind, ev.object.phase, ev.index > 0)
        break
print(seen[0], "vm.pending" in seen, "vm.running" in seen)
v.delete()
`)
	if out != "vm running True\nvm.created True True\n" {
		t.Errorf("output %q", out)
	}
}

// TestPolicyAgainstDevCluster runs an HA policy the way the leader's loop
// will: events from the stream, mapped, filtered by Wants, handled.
func TestPolicyAgainstDevCluster(t *testing.T) {
	c := devClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &script.SyncBuffer{}
	p, err := script.LoadPolicy(ctx, "restart", `
events = ["vm.failed"]

def on_event(ev):
    if ev.object.labels.get("restart") == "yes":
        print("restarting", ev.name, "after", ev.object.reason)
        ev.object.start()
    elif ev.name == "pol-raise":
        fail("will not restart " + ev.name)
`, script.Env{Client: c, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	_, meta, err := c.List(ctx, resource.KindVM, nil)
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan error, 16)
	go func() {
		m := script.NewEventMapper()
		for rev, err := range c.Events(ctx, meta.Index, p.ResourceKinds()...) {
			if err != nil {
				return
			}
			for _, ev := range m.Events(rev) {
				if p.Wants(ev.Type) {
					handled <- p.Handle(ctx, ev)
				}
			}
		}
	}()
	src := `
a = create_vm("pol-keep", labels={"restart": "yes"}, wait=True)
b = create_vm("pol-raise", wait=True)
print(a.host.name, b.host.name)
`
	placed := runDev(t, c, src)
	hostsOf := strings.Fields(placed)
	for i, name := range []string{"pol-keep", "pol-raise"} {
		drv := dev.Drivers[0]
		if hostsOf[i] == "sim-2" {
			drv = dev.Drivers[1]
		}
		if err := drv.Crash(hypervisor.DomainName(name)); err != nil {
			t.Fatal(err)
		}
	}
	var errs []error
	for len(errs) < 2 {
		select {
		case err := <-handled:
			errs = append(errs, err)
		case <-ctx.Done():
			t.Fatalf("handled %d failures: %v; output %s", len(errs), errs, out)
		}
	}
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			script.WantError(t, err, "restart.star:9:13: in on_event", "Error: fail: will not restart pol-raise")
		}
	}
	if failed != 1 {
		t.Errorf("errors %v, want one", errs)
	}
	testcluster.WaitFor(t, 30*time.Second, "pol-keep running again", func() (bool, error) {
		o, _, err := c.Get(ctx, resource.KindVM, "pol-keep", nil)
		if err != nil {
			return false, nil
		}
		_, st := script.VMState(o)
		return st.Phase == resource.PhaseRunning, nil
	})
	if !strings.HasPrefix(out.String(), "restarting pol-keep after ") {
		t.Errorf("policy printed %q", out)
	}
	runDev(t, c, `pforeach(lambda v: v.delete(), [vm("pol-keep"), vm("pol-raise")])`)
}

// TestRollingReboot runs the rolling reboot of docs/scripting.md.
func TestRollingReboot(t *testing.T) {
	c := devClient(t)
	runDev(t, c, `pforeach(lambda n: create_vm(n, labels={"tier": "rr"}, wait=True), ["rr-1", "rr-2", "rr-3"])`)
	out := &script.SyncBuffer{}
	err := script.Run(context.Background(), script.Env{Client: c, Out: out, Timeout: time.Minute}, "rolling-reboot.star", []byte(`
selector = argv[0] if argv else "tier=web"
batch = int(argv[1]) if len(argv) > 1 else 4

def reboot(v):
    asked = v.reboot().status.reboot_requested
    wait_until(lambda: v.refresh().status.reboot_done >= asked, timeout="5m")
    return v

results = pmap(reboot, vms(selector), workers=batch)
for f in failures(results):
    print("FAILED", f.item.name, f.error)
print("%d rebooted, %d failed" % (len(successes(results)), len(failures(results))))
`), []string{"tier=rr", "2"})
	if err != nil || out.String() != "3 rebooted, 0 failed\n" {
		t.Errorf("rolling reboot: %v, output %q", err, out)
	}
	runDev(t, c, `pforeach(lambda v: v.delete(), vms("tier=rr"))`)
}

// TestMigrateAgainstDevCluster: vm.migrate() moves a running VM to the
// other host (stop, move, start) and a stopped one stays stopped.
func TestMigrateAgainstDevCluster(t *testing.T) {
	c := devClient(t)
	var out strings.Builder
	env := script.Env{Client: c, Out: &out, Timeout: 2 * time.Minute}
	src := `
v = create_vm("mig-1", memory="128MiB", wait=True)
before = v.host.name
v.migrate()
print(before, v.host.name, v.phase)
v.stop().wait("stopped")
v.migrate(host=host(before))
print(v.host.name, v.phase)
v.delete()
`
	if err := script.Run(context.Background(), env, "mig.star", []byte(src), nil); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q", out.String())
	}
	first := strings.Fields(lines[0])
	if len(first) != 3 || first[0] == first[1] || first[2] != resource.PhaseRunning {
		t.Fatalf("first move: %q, want <from> <to> running with to != from", lines[0])
	}
	if want := first[0] + " " + resource.PhaseStopped; lines[1] != want {
		t.Fatalf("second move: %q, want %q", lines[1], want)
	}
}

// TestSetLabels: set_labels merges, None removes, a bad value names the
// parameter and writes nothing.
func TestSetLabels(t *testing.T) {
	c := devClient(t)
	out := runDev(t, c, `
v = create_vm("lab-1", memory="64MiB", labels={"a": "1", "b": "2"})
v.set_labels({"b": None, "c": "3"})
print(sorted(v.labels.items()))
h = hosts()[0]
h.set_labels({"zone": "z1"})
print(host(h.name).labels["zone"])
h.set_labels({"zone": None})
v.delete()
`)
	if want := "[(\"a\", \"1\"), (\"c\", \"3\")]\nz1\n"; out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
	err := script.Run(context.Background(), script.Env{Client: c, Timeout: time.Minute}, "lab.star",
		[]byte(`create_vm("lab-2", memory="64MiB").set_labels({"a": 1})`), nil)
	script.WantError(t, err, `vm.set_labels: for parameter "labels": the value of "a" is a int; want a string, or None to remove the label`)
	if o, _, err := c.Get(context.Background(), resource.KindVM, "lab-2", nil); err != nil || len(o.Labels) != 0 {
		t.Fatalf("lab-2 after a refused set_labels: %v %v", o, err)
	}
	if _, err := c.Delete(context.Background(), resource.KindVM, "lab-2", nil); err != nil {
		t.Fatal(err)
	}
}
