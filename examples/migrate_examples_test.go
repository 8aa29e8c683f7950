package examples_test

// The examples that move VMs between hosts: they need vm.migrate().

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// placement is where a VM runs and in which placement (epoch).
type placement struct {
	host  string
	epoch uint64
}

func placements(t *testing.T, c *client.Client, names ...string) map[string]placement {
	t.Helper()
	out := map[string]placement{}
	for _, name := range names {
		v := vm(t, c, name)
		out[name] = placement{v.Status.Host, v.Status.Epoch}
	}
	return out
}

// enableAtEnd makes host schedulable again when the test ends.
func enableAtEnd(t *testing.T, c *client.Client, host string) {
	t.Cleanup(func() {
		if _, err := c.Hosts().Enable(context.Background(), host); err != nil {
			t.Errorf("enable %s: %v", host, err)
		}
	})
}

// TestEvacuateHost: the script drains the host and moves its VMs, running
// or stopped, to the other hosts; with nowhere to go it fails.
func TestEvacuateHost(t *testing.T) {
	c := devClient(t)
	ctx := context.Background()
	undo := pinTo(t, c, "sim-1")
	createVMs(t, c, map[string]string{"tier": "ev"}, "ev-1", "ev-2", "ev-3", "ev-off")
	stopVM(t, c, "ev-off")
	undo()
	enableAtEnd(t, c, "sim-1")
	before := placements(t, c, "ev-1", "ev-2", "ev-3", "ev-off")

	out := mustRunExample(t, c, "evacuate-host.star", "sim-1", "2")
	for _, want := range []string{
		"sim-1 drained; moving its 4 VMs, 2 at a time\n",
		"moved ev-1 (running) -> sim-",
		"moved ev-off (stopped) -> sim-",
		"sim-1 is empty and drained; `kumoi host enable sim-1` takes it back\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	testcluster.WaitFor(t, 10*time.Second, "sim-1 draining", func() (bool, error) {
		h, _, err := c.Hosts().Get(ctx, "sim-1", nil)
		return err == nil && !h.Schedulable() && h.State() == resource.HostDraining, nil
	})
	if left, _, err := c.Hosts().VMs(ctx, "sim-1", nil); err != nil || len(left) != 0 {
		t.Errorf("sim-1 still holds %d VMs (%v)", len(left), err)
	}
	for name, was := range before {
		want := resource.PhaseRunning
		if name == "ev-off" {
			want = resource.PhaseStopped
		}
		testcluster.WaitFor(t, 30*time.Second, name+" "+want+" on another host", func() (bool, error) {
			v := vm(t, c, name)
			return v.Phase() == want && v.Status.Host != "sim-1" && v.Status.Host != "" && v.Status.Epoch > was.epoch, nil
		})
	}
	if v := vm(t, c, "ev-off"); v.Spec.Power != resource.PowerStopped {
		t.Errorf("ev-off was started by its move: power %s", v.Spec.Power)
	}

	// Nowhere to go: the other hosts are draining too.
	stuck := vm(t, c, "ev-1").Status.Host
	for _, h := range devHost {
		if h != stuck {
			if _, err := c.Hosts().Drain(ctx, h); err != nil {
				t.Fatal(err)
			}
			enableAtEnd(t, c, h)
		}
	}
	enableAtEnd(t, c, stuck)
	out, err := runExample(t, c, "evacuate-host.star", stuck)
	if err == nil || !strings.Contains(err.Error(), "could not be moved; "+stuck+" is drained and still holds ev-") {
		t.Errorf("evacuation with no room: %v", err)
	}
	if !strings.Contains(out, "FAILED ev-") {
		t.Errorf("output lacks the failures:\n%s", out)
	}
	if v := vm(t, c, "ev-1"); v.Status.Host != stuck {
		t.Errorf("ev-1 left %s for %q with nowhere to go", stuck, v.Status.Host)
	}
}

// TestAntiAffinity: the VMs of a group that share a host are spread over
// hosts holding none of the group; the others do not move; a second run
// has nothing to do.
func TestAntiAffinity(t *testing.T) {
	c := devClient(t)
	undo := pinTo(t, c, "sim-1")
	createVMs(t, c, map[string]string{"app": "aa"}, "aa-1", "aa-2", "aa-3")
	createVMs(t, c, map[string]string{"app": "bb"}, "bb-1")
	createVMs(t, c, map[string]string{"tier": "aa"}, "zz-1")
	undo()
	undo = pinTo(t, c, "sim-2")
	createVMs(t, c, map[string]string{"app": "cc"}, "cc-1")
	undo()
	undo = pinTo(t, c, "sim-3")
	createVMs(t, c, map[string]string{"app": "cc"}, "cc-2")
	undo()
	before := placements(t, c, "aa-1", "bb-1", "zz-1", "cc-1", "cc-2")

	out := mustRunExample(t, c, "anti-affinity.star", "app")
	for _, want := range []string{
		"app=aa: moving aa-2 from sim-1 to sim-2\n",
		"app=aa: moving aa-3 from sim-1 to sim-3\n",
		"2 moved, 0 failed, 0 without room\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	seen := map[string]string{}
	for _, name := range []string{"aa-1", "aa-2", "aa-3"} {
		testcluster.WaitFor(t, 30*time.Second, name+" running", func() (bool, error) { return vm(t, c, name).Phase() == resource.PhaseRunning, nil })
		h := vm(t, c, name).Status.Host
		if other, dup := seen[h]; dup {
			t.Errorf("%s and %s both on %s", other, name, h)
		}
		seen[h] = name
	}
	if after := placements(t, c, "aa-1", "bb-1", "zz-1", "cc-1", "cc-2"); len(after) != len(before) {
		t.Fatal(after)
	} else {
		for name, was := range before {
			if after[name] != was {
				t.Errorf("%s moved from %+v to %+v", name, was, after[name])
			}
		}
	}

	out = mustRunExample(t, c, "anti-affinity.star", "app")
	if !strings.Contains(out, "every group of app is spread already (3 groups)\n") || !strings.Contains(out, "0 moved, 0 failed") {
		t.Errorf("second run:\n%s", out)
	}
}

// TestMigrateCommandLines runs evacuate-host and anti-affinity through the
// kumoi command line, as examples/README.md writes them.
func TestMigrateCommandLines(t *testing.T) {
	c := devClient(t)
	undo := pinTo(t, c, "sim-3")
	createVMs(t, c, map[string]string{"app": "cl"}, "cl-1", "cl-2")
	undo()

	out, errOut, code := kumoi(t, "run", "examples/anti-affinity.star", "--", "app")
	if code != 0 || errOut != "" || !strings.Contains(out, "app=cl: moving cl-2 from sim-3 to ") {
		t.Errorf("anti-affinity -- app: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	if a, b := vm(t, c, "cl-1").Status.Host, vm(t, c, "cl-2").Status.Host; a == b {
		t.Errorf("cl-1 and cl-2 both on %s", a)
	}

	enableAtEnd(t, c, "sim-3")
	out, errOut, code = kumoi(t, "run", "examples/evacuate-host.star", "--", "sim-3", "8")
	if code != 0 || errOut != "" || !strings.Contains(out, "moved cl-1 (running) -> ") {
		t.Errorf("evacuate-host -- sim-3 8: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	if v := vm(t, c, "cl-1"); v.Status.Host == "sim-3" {
		t.Errorf("cl-1 is still on sim-3")
	}
}
