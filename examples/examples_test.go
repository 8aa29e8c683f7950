package examples_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"

	"github.com/kumoi/kumoi/cli"
	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/agent"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/script"
)

// The dev cluster the tests share: one controller and three simulated
// hosts (sim-1, sim-2, sim-3: 8 CPUs, 16GiB each) on 127.0.0.53, started
// by the first test that needs it. Tests run one after another and leave
// the hosts as they found them (ready, schedulable).
const (
	bindIP  = "127.0.0.53"
	apiPort = 17400
)

var (
	devOnce sync.Once
	dev     *agent.DevCluster
	devErr  error
	devHost = []string{"sim-1", "sim-2", "sim-3"}
)

// cliEnv makes the test binary run as the kumoi command (see kumoi).
const cliEnv = "KUMOI_EXAMPLES_TEST_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(cli.Main(append([]string{"kumoi"}, os.Args[1:]...)))
	}
	code := m.Run()
	if dev != nil {
		dev.Shutdown(context.Background())
	}
	os.Exit(code)
}

// devClient returns a client of the shared dev cluster, once its three
// hosts are ready.
func devClient(t *testing.T) *client.Client {
	t.Helper()
	devOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testcluster.Stretch(30*time.Second))
		defer cancel()
		dev, devErr = agent.StartDev(ctx, agent.DevConfig{Controllers: 1, Hosts: len(devHost), BindIP: bindIP, APIPort: apiPort})
	})
	if devErr != nil {
		t.Fatal(devErr)
	}
	c, err := client.New(client.Config{Addrs: dev.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 30*time.Second, "the dev hosts to be ready", func() (bool, error) {
		for _, name := range devHost {
			h, _, err := c.Hosts().Get(context.Background(), name, nil)
			if err != nil || h.State() != resource.HostReady {
				return false, nil
			}
		}
		return true, nil
	})
	return c
}

// syncBuffer is an io.Writer that a policy's handler may write to while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runExample runs an example the way `kumoi run FILE -- ARGS` does:
// script.Run of the file with argv, print() to the returned output.
func runExample(t *testing.T, c *client.Client, file string, argv ...string) (string, error) {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	err = script.Run(context.Background(), script.Env{Client: c, Out: out, Timeout: testcluster.Stretch(2 * time.Minute)}, file, src, argv)
	t.Logf("%s %s:\n%s", file, strings.Join(argv, " "), out)
	return out.String(), err
}

// mustRunExample is runExample that fails the test when the script fails.
func mustRunExample(t *testing.T, c *client.Client, file string, argv ...string) string {
	t.Helper()
	out, err := runExample(t, c, file, argv...)
	if err != nil {
		t.Fatalf("%s %s failed: %v", file, strings.Join(argv, " "), err)
	}
	return out
}

// kumoi runs the kumoi command line, cli.Main as cmd/kumoi does, in a
// process of its own (this test binary, see TestMain) from the
// repository's root, so that the documented command lines can be run as
// they are written: kumoi run examples/FILE -- ARGS. KUMOI_ADDR points it
// at the dev cluster.
func kumoi(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Stretch(2*time.Minute))
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), cliEnv+"=1", "KUMOI_ADDR="+strings.Join(dev.Addrs(), ","))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("kumoi %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("kumoi %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return out.String(), errOut.String(), code
}

// vm reads a VM through the API.
func vm(t *testing.T, c *client.Client, name string) *client.VM {
	t.Helper()
	v, _, err := c.VMs().Get(context.Background(), name, nil)
	if err != nil {
		t.Fatalf("vm %s: %v", name, err)
	}
	return v
}

// createVMs creates VMs (1 CPU, 256MiB, ha=none) with labels, waits until
// they run, and deletes them when the test ends.
func createVMs(t *testing.T, c *client.Client, labels map[string]string, names ...string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		if _, err := c.VMs().Create(ctx, name, resource.VMSpec{CPUs: 1, MemoryMiB: 256, HA: resource.HANone}, labels); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		t.Cleanup(func() { deleteVM(t, c, name) })
	}
	for _, name := range names {
		testcluster.WaitFor(t, 30*time.Second, name+" running", func() (bool, error) {
			return vm(t, c, name).Phase() == resource.PhaseRunning, nil
		})
	}
}

// deleteVM deletes a VM if it exists and waits until it is gone.
func deleteVM(t *testing.T, c *client.Client, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.VMs().Delete(ctx, name, nil); err != nil && !client.IsNotFound(err) {
		t.Errorf("delete %s: %v", name, err)
		return
	}
	testcluster.WaitFor(t, 30*time.Second, name+" deleted", func() (bool, error) {
		_, _, err := c.VMs().Get(ctx, name, nil)
		return client.IsNotFound(err), nil
	})
}

// stopVM stops a VM and waits until it is stopped.
func stopVM(t *testing.T, c *client.Client, name string) {
	t.Helper()
	if _, err := c.VMs().Stop(context.Background(), name, false); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 30*time.Second, name+" stopped", func() (bool, error) { return vm(t, c, name).Phase() == resource.PhaseStopped, nil })
}

// pinTo drains every dev host but keep, so that the VMs created next are
// placed on keep; the returned function (also run when the test ends)
// enables them again.
func pinTo(t *testing.T, c *client.Client, keep string) (undo func()) {
	t.Helper()
	ctx := context.Background()
	var drained []string
	for _, h := range devHost {
		if h == keep {
			continue
		}
		if _, err := c.Hosts().Drain(ctx, h); err != nil {
			t.Fatal(err)
		}
		drained = append(drained, h)
	}
	var once sync.Once
	undo = func() {
		once.Do(func() {
			for _, h := range drained {
				if _, err := c.Hosts().Enable(ctx, h); err != nil {
					t.Errorf("enable %s: %v", h, err)
				}
			}
			testcluster.WaitFor(t, 10*time.Second, "the drained hosts to be ready again", func() (bool, error) {
				for _, h := range drained {
					if host, _, err := c.Hosts().Get(ctx, h, nil); err != nil || host.State() != resource.HostReady {
						return false, nil
					}
				}
				return true, nil
			})
		})
	}
	t.Cleanup(undo)
	return undo
}

// driver returns the simulated driver of dev host name ("sim-2").
func driver(t *testing.T, name string) *sim.Driver {
	t.Helper()
	i := slices.Index(devHost, name)
	if i < 0 {
		t.Fatalf("%q is not a dev host", name)
	}
	return dev.Drivers[i]
}

// table parses the rows of a table printed with columns separated by
// spaces: the first field of each row is its key.
func table(out string) map[string][]string {
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	return rows
}

// TestCapacityReport checks every number of the report against the hosts
// and VMs the API returns, and the selector.
func TestCapacityReport(t *testing.T) {
	c := devClient(t)
	ctx := context.Background()
	createVMs(t, c, map[string]string{"tier": "cap"}, "cap-1", "cap-2", "cap-3")
	// A VM of another size, and a draining host.
	if _, err := c.VMs().Create(ctx, "cap-big", resource.VMSpec{CPUs: 3, MemoryMiB: 1536}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteVM(t, c, "cap-big") })
	testcluster.WaitFor(t, 30*time.Second, "cap-big running", func() (bool, error) { return vm(t, c, "cap-big").Phase() == resource.PhaseRunning, nil })
	if _, err := c.Hosts().Drain(ctx, "sim-3"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Hosts().Enable(ctx, "sim-3") })
	testcluster.WaitFor(t, 10*time.Second, "sim-3 draining", func() (bool, error) {
		h, _, err := c.Hosts().Get(ctx, "sim-3", nil)
		return err == nil && h.State() == resource.HostDraining, nil
	})

	out := mustRunExample(t, c, "capacity-report.star")
	rows := table(out)
	if got := strings.Join(rows["HOST"], " "); got != "HOST STATE VMS CPUS ALLOC FREE MEMORY ALLOC FREE" {
		t.Errorf("header %q", got)
	}
	hosts, _, err := c.Hosts().List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		ready, vms, cpus, cpusUsed, cpusFree int
		mem, memUsed, memFree                int64
	)
	for _, h := range hosts {
		placed, _, err := c.Hosts().VMs(ctx, h.Name(), nil)
		if err != nil {
			t.Fatal(err)
		}
		capa, used := h.Status.Capacity, h.Status.Allocated
		freeCPUs, freeMem := capa.CPUs-used.CPUs, capa.MemoryMiB-used.MemoryMiB // overcommit 1
		want := []string{h.Name(), h.State(), strconv.Itoa(len(placed)),
			strconv.Itoa(capa.CPUs), strconv.Itoa(used.CPUs), strconv.Itoa(freeCPUs),
			resource.FormatMiB(capa.MemoryMiB), resource.FormatMiB(used.MemoryMiB), resource.FormatMiB(freeMem)}
		if got := rows[h.Name()]; !slices.Equal(got, want) {
			t.Errorf("row of %s: %q, want %q", h.Name(), got, want)
		}
		vms += len(placed)
		cpus, cpusUsed, mem, memUsed = cpus+capa.CPUs, cpusUsed+used.CPUs, mem+capa.MemoryMiB, memUsed+used.MemoryMiB
		if h.State() == resource.HostReady {
			ready++
			cpusFree, memFree = cpusFree+freeCPUs, memFree+freeMem
		}
	}
	want := []string{"TOTAL", fmt.Sprintf("%d/%d", ready, len(hosts)), "ready", strconv.Itoa(vms),
		strconv.Itoa(cpus), strconv.Itoa(cpusUsed), strconv.Itoa(cpusFree),
		resource.FormatMiB(mem), resource.FormatMiB(memUsed), resource.FormatMiB(memFree)}
	if got := rows["TOTAL"]; !slices.Equal(got, want) {
		t.Errorf("totals: %q, want %q", got, want)
	}
	if vms < 4 || cpusUsed < 6 || rows["sim-3"][1] != resource.HostDraining {
		t.Errorf("the report misses the test's VMs or the draining host:\n%s", out)
	}

	// A selector picks hosts by label.
	if _, err := c.Hosts().Modify(ctx, "sim-2", func(h *client.Host) error {
		h.Object.Labels = map[string]string{"rack": "r2"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Hosts().Modify(ctx, "sim-2", func(h *client.Host) error { h.Object.Labels = nil; return nil })
	})
	out = mustRunExample(t, c, "capacity-report.star", "rack=r2")
	rows = table(out)
	if len(rows) != 3 || rows["sim-2"] == nil || rows["TOTAL"][1] != "1/1" {
		t.Errorf("with rack=r2, want the header, sim-2 and the totals:\n%s", out)
	}
	if _, err := runExample(t, c, "capacity-report.star", "rack=nowhere"); err == nil || !strings.Contains(err.Error(), `no host matches "rack=nowhere"`) {
		t.Errorf("no matching host: %v", err)
	}
}

// rebootIndexes follows the event stream after since until every VM in
// names has rebooted (status.reboot_done reached its reboot_requested),
// and returns for each the index at which the reboot was asked and the one
// at which it was done.
func rebootIndexes(t *testing.T, c *client.Client, since uint64, names []string) (asked, done map[string]uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Stretch(30*time.Second))
	defer cancel()
	asked, done = map[string]uint64{}, map[string]uint64{}
	for ev, err := range c.Events(ctx, since, resource.KindVM) {
		if err != nil {
			t.Fatalf("events: %v (asked %v, done %v)", err, asked, done)
		}
		if !slices.Contains(names, ev.Name) || ev.Object == nil {
			continue
		}
		st, err := resource.DecodeStatus[resource.VMStatus](ev.Object)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := asked[ev.Name]; !ok && st.RebootRequested > since {
			asked[ev.Name] = ev.Index
		}
		if _, ok := done[ev.Name]; !ok && st.RebootRequested > since && st.RebootDone >= st.RebootRequested {
			done[ev.Name] = ev.Index
		}
		if len(done) == len(names) {
			return asked, done
		}
	}
	t.Fatalf("event stream ended (asked %v, done %v)", asked, done)
	return nil, nil
}

// TestRollingReboot: every running VM of the selector reboots, two at a
// time, a batch only once the one before is done; the others do not.
func TestRollingReboot(t *testing.T) {
	c := devClient(t)
	ctx := context.Background()
	batch1, batch2 := []string{"rr-1", "rr-2"}, []string{"rr-3", "rr-4"}
	createVMs(t, c, map[string]string{"tier": "rr"}, append(batch1, batch2...)...)
	createVMs(t, c, map[string]string{"tier": "rr"}, "rr-stopped")
	stopVM(t, c, "rr-stopped")
	createVMs(t, c, map[string]string{"tier": "other"}, "rr-other")
	_, meta, err := c.VMs().List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := meta.Index

	out := mustRunExample(t, c, "rolling-reboot.star", "tier=rr", "2")
	for _, want := range []string{
		"rolling reboot of 4 VMs matching tier=rr, 2 at a time (1 not running, skipped)\n",
		"rebooted rr-1, rr-2\nrebooted rr-3, rr-4\n",
		"4 of 4 VMs rebooted\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, name := range append(batch1, batch2...) {
		v := vm(t, c, name)
		if v.Status.RebootRequested <= before || v.Status.RebootDone < v.Status.RebootRequested || v.Phase() != resource.PhaseRunning {
			t.Errorf("%s: reboot requested at %d, done %d, phase %s; want a reboot after index %d, done, running",
				name, v.Status.RebootRequested, v.Status.RebootDone, v.Phase(), before)
		}
	}
	for _, name := range []string{"rr-stopped", "rr-other"} {
		if v := vm(t, c, name); v.Status.RebootRequested != 0 {
			t.Errorf("%s was rebooted (reboot_requested %d)", name, v.Status.RebootRequested)
		}
	}
	// Batches: the second was asked for only once the first had rebooted.
	asked, done := rebootIndexes(t, c, before, append(batch1, batch2...))
	for _, second := range batch2 {
		for _, first := range batch1 {
			if asked[second] <= done[first] {
				t.Errorf("%s was asked to reboot at index %d, before %s had rebooted (index %d)", second, asked[second], first, done[first])
			}
		}
	}
}

// TestRollingRebootStopsAtFirstFailure: a VM whose reboot fails stops the
// run with an error; the VMs after it are not rebooted.
func TestRollingRebootStopsAtFirstFailure(t *testing.T) {
	c := devClient(t)
	createVMs(t, c, map[string]string{"tier": "rf"}, "rf-1", "rf-2", "rf-3")
	drv := driver(t, vm(t, c, "rf-1").Status.Host)
	drv.InjectFault(sim.OpReboot, sim.Fault{Err: errors.New("the guest hangs in its BIOS")})
	t.Cleanup(drv.ClearFaults)

	out, err := runExample(t, c, "rolling-reboot.star", "tier=rf")
	if err == nil || !strings.Contains(err.Error(), "stopped after 0 of 3 VMs: rf-1 did not reboot (2 not attempted)") {
		t.Errorf("error %v, want it to stop at rf-1", err)
	}
	if !strings.Contains(out, "FAILED rf-1: ") || !strings.Contains(out, "the guest hangs in its BIOS") || strings.Contains(out, "rebooted") {
		t.Errorf("output:\n%s", out)
	}
	if v := vm(t, c, "rf-1"); v.Status.RebootRequested == 0 || v.Phase() != resource.PhaseFailed {
		t.Errorf("rf-1: reboot requested %d, phase %s; want requested and failed", v.Status.RebootRequested, v.Phase())
	}
	for _, name := range []string{"rf-2", "rf-3"} {
		if v := vm(t, c, name); v.Status.RebootRequested != 0 {
			t.Errorf("%s was rebooted after the failure (reboot_requested %d)", name, v.Status.RebootRequested)
		}
	}
	// Usage errors.
	for _, argv := range [][]string{nil, {"tier=rf", "0"}, {"tier=rf", "two"}} {
		if _, err := runExample(t, c, "rolling-reboot.star", argv...); err == nil {
			t.Errorf("rolling-reboot %q succeeded", argv)
		}
	}
}

// TestHALostPolicy stores ha-lost.star as a policy (kumoi policy apply):
// the leader runs it on the cluster's vm.lost events. A labelled and an unlabelled ha=none VM run on a host that dies: the
// controllers mark both lost after the host-down grace; the policy starts
// the labelled one, which runs again elsewhere; the other stays lost.
func TestHALostPolicy(t *testing.T) {
	c := devClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Stretch(2*time.Minute))
	defer cancel()
	src, err := os.ReadFile("ha-lost.star")
	if err != nil {
		t.Fatal(err)
	}
	// The example is checked as kumoi policy apply checks it, then stored
	// in the cluster: the leader runs it.
	p, err := script.LoadPolicy(ctx, "ha-lost", string(src), script.Env{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Kinds(), []string{"vm.lost"}) {
		t.Fatalf("policy kinds %v", p.Kinds())
	}
	if _, _, err := c.Policies().Apply(ctx, "ha-lost", resource.PolicySpec{Source: string(src)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Policies().Delete(context.Background(), "ha-lost") })
	testcluster.WaitFor(t, 15*time.Second, "the leader to run the policy", func() (bool, error) {
		pol, _, err := c.Policies().Get(ctx, "ha-lost", nil)
		return err == nil && pol.Loaded() && pol.Status.State == resource.PolicyActive, nil
	})

	// A host of its own to kill, so that the shared hosts survive.
	const doomed = "sim-ha"
	drv := sim.New(sim.Options{Host: doomed, CPUs: 4, MemoryMiB: 4096, BootLatency: 100 * time.Millisecond})
	w, err := worker.Start(worker.Config{
		NodeID: doomed, BindIP: bindIP, GossipPort: apiPort + 150, Driver: drv, DriverName: "sim",
		Join: []string{fmt.Sprintf("%s:%d", bindIP, apiPort+2)},
	})
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			w.Kill()
		}
		drv.Close()
	})
	testcluster.WaitFor(t, 30*time.Second, doomed+" ready", func() (bool, error) {
		h, _, err := c.Hosts().Get(ctx, doomed, nil)
		return err == nil && h.State() == resource.HostReady, nil
	})
	undo := pinTo(t, c, doomed)
	createVMs(t, c, map[string]string{"ha": "script"}, "ha-keep")
	createVMs(t, c, map[string]string{"tier": "ha"}, "ha-leave")
	undo()
	keep := vm(t, c, "ha-keep")
	for _, name := range []string{"ha-keep", "ha-leave"} {
		if v := vm(t, c, name); v.Status.Host != doomed || v.Spec.HA != resource.HANone {
			t.Fatalf("%s on %q with ha=%s, want it on %s with ha=none", name, v.Status.Host, v.Spec.HA, doomed)
		}
	}

	// The host dies: its worker stops without leaving the gossip pool.
	killedAt := time.Now()
	w.Kill()
	killed = true
	drv.Close()

	testcluster.WaitFor(t, 60*time.Second, "ha-keep running on another host", func() (bool, error) {
		v := vm(t, c, "ha-keep")
		return v.Phase() == resource.PhaseRunning && v.Status.Host != doomed && v.Status.Host != "", nil
	})
	t.Logf("ha-keep running on %s %s after the kill", vm(t, c, "ha-keep").Status.Host, time.Since(killedAt).Round(time.Millisecond))
	var pol *client.Policy
	testcluster.WaitFor(t, 10*time.Second, "the policy to handle both lost VMs", func() (bool, error) {
		pol, _, err = c.Policies().Get(ctx, "ha-lost", nil)
		return err == nil && pol.Status.Handled >= 2, nil
	})
	if pol.Status.Failed != 0 {
		t.Errorf("the policy failed: %+v", pol.Status.RecentErrors)
	}
	out := strings.Join(pol.Status.RecentOutput, "\n") + "\n"
	t.Logf("the policy printed:\n%s", out)
	if v := vm(t, c, "ha-keep"); v.Status.Epoch <= keep.Status.Epoch || v.Spec.Power != resource.PowerRunning {
		t.Errorf("ha-keep: epoch %d (was %d), power %s; want a new placement, running", v.Status.Epoch, keep.Status.Epoch, v.Spec.Power)
	}
	if v := vm(t, c, "ha-leave"); v.Phase() != resource.PhaseLost || v.Status.Host != doomed {
		t.Errorf("ha-leave: %s on %q, want it lost on %s", v.Phase(), v.Status.Host, doomed)
	}
	for _, want := range []string{
		"ha-lost: ha-keep was lost on sim-ha (host sim-ha is down); starting it on another host\n",
		"ha-lost: ha-leave is lost; it is not labelled ha=script, leaving it\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the policy's output lacks %q:\n%s", want, out)
		}
	}

	// Forget the dead host once its VMs are gone (best effort: the
	// controllers may record it again while gossip remembers it).
	deleteVM(t, c, "ha-leave")
	if _, err := c.Delete(ctx, resource.KindHost, doomed, nil); err != nil && !client.IsNotFound(err) {
		t.Logf("delete host %s: %v", doomed, err)
	}
}

// TestCommandLines runs the examples through the kumoi command line, as
// examples/README.md writes them, from the repository's root.
func TestCommandLines(t *testing.T) {
	c := devClient(t)
	createVMs(t, c, map[string]string{"tier": "cli"}, "cli-1", "cli-2")

	out, errOut, code := kumoi(t, "run", "examples/capacity-report.star")
	if code != 0 || errOut != "" || !strings.Contains(out, "\nTOTAL ") || !strings.Contains(out, "\nsim-1 ") {
		t.Errorf("capacity-report: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	_, errOut, code = kumoi(t, "run", "examples/capacity-report.star", "--", "rack=nowhere")
	if code != 1 || !strings.Contains(errOut, `no host matches "rack=nowhere"`) {
		t.Errorf("capacity-report -- rack=nowhere: exit %d, stderr %q", code, errOut)
	}

	out, errOut, code = kumoi(t, "run", "examples/rolling-reboot.star", "--", "tier=cli", "2")
	if code != 0 || errOut != "" || !strings.HasSuffix(out, "2 of 2 VMs rebooted\n") {
		t.Errorf("rolling-reboot -- tier=cli 2: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	for _, name := range []string{"cli-1", "cli-2"} {
		if v := vm(t, c, name); v.Status.RebootRequested == 0 || v.Status.RebootDone < v.Status.RebootRequested {
			t.Errorf("%s did not reboot: %+v", name, v.Status)
		}
	}

	// A policy run as a script only defines its events and handler.
	out, errOut, code = kumoi(t, "run", "examples/ha-lost.star")
	if code != 0 || out != "" || errOut != "" {
		t.Errorf("ha-lost: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Usage errors exit with status 1 and say how to call the script.
	for _, file := range []string{"rolling-reboot.star", "evacuate-host.star", "anti-affinity.star"} {
		_, errOut, code = kumoi(t, "run", filepath.Join("examples", file))
		if code != 1 || !strings.Contains(errOut, "usage: kumoi run "+file+" -- ") {
			t.Errorf("%s without arguments: exit %d, stderr %q", file, code, errOut)
		}
	}
}
