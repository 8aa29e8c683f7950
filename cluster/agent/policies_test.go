package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

func policyState(t *testing.T, c *client.Client, name string) *client.Policy {
	t.Helper()
	p, _, err := c.Policies().Get(context.Background(), name, nil)
	if err != nil {
		return nil
	}
	return p
}

func applyPolicy(t *testing.T, c *client.Client, name, src string, tweak ...func(*resource.PolicySpec)) *client.Policy {
	t.Helper()
	spec := resource.PolicySpec{Source: src}
	for _, f := range tweak {
		f(&spec)
	}
	p, _, err := c.Policies().Apply(context.Background(), name, spec)
	if err != nil {
		t.Fatalf("apply %s: %v", name, err)
	}
	return p
}

// TestPolicies runs policies on a three-controller dev cluster: a policy
// reacts to its events; one that raises, one that runs away and one that
// does not load have their errors recorded while the others go on; a new
// version replaces the old; disabled stops it; and after a leadership
// change the new leader resumes every policy where the old one stopped,
// so no event is lost.
func TestPolicies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := StartDev(ctx, DevConfig{Controllers: 3, Hosts: 2, BindIP: "127.0.0.43", APIPort: 17400})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	c, err := client.New(client.Config{Addrs: d.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 30*time.Second, "two ready hosts", func() (bool, error) {
		return hostState(t, c, "sim-1") == resource.HostReady && hostState(t, c, "sim-2") == resource.HostReady, nil
	})

	applyPolicy(t, c, "tagger", `
events = ["vm.running"]
def on_event(ev):
    v = vm(ev.name)
    if v.labels.get("seen") != "yes":
        v.set_labels({"seen": "yes", "drop": None})
        print("tagged", ev.name)
`)
	applyPolicy(t, c, "raiser", `
events = ["vm.created"]
def on_event(ev):
    fail("boom " + ev.name)
`)
	applyPolicy(t, c, "spinner", `
events = ["vm.created"]
def on_event(ev):
    for i in range(100000000):
        pass
`, func(s *resource.PolicySpec) { s.MaxSteps = 5000 })
	// Stored through the API without the CLI's check: the leader reports
	// why it does not load.
	applyPolicy(t, c, "broken", "events = [\"vm.created\"]\ndef on_event(ev)\n    pass\n")

	loaded := func(name string) func() (bool, error) {
		return func() (bool, error) { p := policyState(t, c, name); return p != nil && p.Loaded(), nil }
	}
	for _, n := range []string{"tagger", "raiser", "spinner", "broken"} {
		testcluster.WaitFor(t, 15*time.Second, n+" loaded", loaded(n))
	}
	if p := policyState(t, c, "broken"); p.Status.State != resource.PolicyBroken || !strings.Contains(p.Status.Error, "broken.star:2:") {
		t.Fatalf("broken: %+v, want state error naming broken.star:2", p.Status)
	}
	if p := policyState(t, c, "tagger"); p.Status.State != resource.PolicyActive || !slices.Equal(p.Status.Events, []string{"vm.running"}) || p.Spec.Version != 1 {
		t.Fatalf("tagger: spec %+v status %+v", p.Spec, p.Status)
	}

	createTestVM(t, c, "pol-a", `{"cpus":1,"memory_mib":128}`)
	tagged := func(name string) func() (bool, error) {
		return func() (bool, error) {
			o, _, err := c.Get(context.Background(), resource.KindVM, name, nil)
			return err == nil && o.Labels["seen"] == "yes", err
		}
	}
	testcluster.WaitFor(t, 20*time.Second, "pol-a tagged by the policy", tagged("pol-a"))
	testcluster.WaitFor(t, 10*time.Second, "the errors recorded", func() (bool, error) {
		r, s := policyState(t, c, "raiser"), policyState(t, c, "spinner")
		return r != nil && s != nil && r.Status.Failed >= 1 && s.Status.Failed >= 1, nil
	})
	r := policyState(t, c, "raiser")
	if e := r.Status.RecentErrors[len(r.Status.RecentErrors)-1]; !strings.Contains(e.Message, "boom pol-a") || !strings.Contains(e.Message, "raiser.star:4:") || e.Event != "vm.created vm/pol-a" {
		t.Errorf("raiser's error: %+v, want the message, the backtrace line and the event", e)
	}
	if s := policyState(t, c, "spinner"); !strings.Contains(s.Status.RecentErrors[0].Message, "step limit of 5000") {
		t.Errorf("spinner's error: %+v, want the step limit", s.Status.RecentErrors[0])
	}
	testcluster.WaitFor(t, 10*time.Second, "tagger's output recorded", func() (bool, error) {
		p := policyState(t, c, "tagger")
		return p != nil && slices.Contains(p.Status.RecentOutput, "tagged pol-a") && p.Status.Handled >= 1, nil
	})

	// A new version replaces the old one.
	applyPolicy(t, c, "tagger", `
events = ["vm.running"]
def on_event(ev):
    v = vm(ev.name)
    if v.labels.get("seen") != "v2":
        v.set_labels({"seen": "v2"})
`)
	testcluster.WaitFor(t, 15*time.Second, "tagger v2 loaded", func() (bool, error) {
		p := policyState(t, c, "tagger")
		return p != nil && p.Spec.Version == 2 && p.Loaded(), nil
	})
	createTestVM(t, c, "pol-b", `{"cpus":1,"memory_mib":128}`)
	testcluster.WaitFor(t, 20*time.Second, "pol-b tagged by version 2", func() (bool, error) {
		o, _, err := c.Get(context.Background(), resource.KindVM, "pol-b", nil)
		return err == nil && o.Labels["seen"] == "v2", nil
	})
	if _, res, err := c.Policies().Apply(ctx, "raiser", resource.PolicySpec{Source: r.Spec.Source}); err != nil || res != client.PolicyUnchanged {
		t.Fatalf("re-applying the same source: %v %v, want unchanged", res, err)
	}

	// Leadership moves: the new leader resumes every policy after its
	// checkpoint. VMs created meanwhile are all tagged (none is lost).
	var old *Agent
	for _, a := range d.Agents {
		if a.Controller().IsLeader() {
			old = a
		}
	}
	if old == nil {
		t.Fatal("no leader")
	}
	for i := range 3 {
		createTestVM(t, c, fmt.Sprintf("pol-c%d", i), `{"cpus":1,"memory_mib":64}`)
	}
	if err := old.Controller().Raft().LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 6; i++ {
		createTestVM(t, c, fmt.Sprintf("pol-c%d", i), `{"cpus":1,"memory_mib":64}`)
	}
	for i := range 6 {
		testcluster.WaitFor(t, 30*time.Second, fmt.Sprintf("pol-c%d tagged across the leader change", i), func() (bool, error) {
			o, _, err := c.Get(context.Background(), resource.KindVM, fmt.Sprintf("pol-c%d", i), nil)
			return err == nil && o.Labels["seen"] == "v2", nil
		})
	}
	testcluster.WaitFor(t, 15*time.Second, "tagger running on the new leader", func() (bool, error) {
		p := policyState(t, c, "tagger")
		return p != nil && p.Status.Node != "" && p.Status.Node != old.Controller().NodeID(), nil
	})

	// Disabled: nothing runs.
	applyPolicy(t, c, "tagger", policyState(t, c, "tagger").Spec.Source, func(s *resource.PolicySpec) { s.Disabled = true })
	testcluster.WaitFor(t, 15*time.Second, "tagger disabled", func() (bool, error) {
		p := policyState(t, c, "tagger")
		return p != nil && p.Loaded() && p.Status.State == resource.PolicyDisabled, nil
	})
	createTestVM(t, c, "pol-d", `{"cpus":1,"memory_mib":64}`)
	testcluster.WaitFor(t, 20*time.Second, "pol-d running", running(t, c, "pol-d"))
	// raiser handles pol-d's creation after it: once it has, the disabled
	// tagger had its chance too.
	testcluster.WaitFor(t, 20*time.Second, "raiser saw pol-d", func() (bool, error) {
		p := policyState(t, c, "raiser")
		return p != nil && len(p.Status.RecentErrors) > 0 && strings.Contains(p.Status.RecentErrors[len(p.Status.RecentErrors)-1].Message, "boom pol-d"), nil
	})
	if o, _, err := c.Get(ctx, resource.KindVM, "pol-d", nil); err != nil || o.Labels["seen"] != "" {
		t.Fatalf("pol-d: %v %v, want no label from a disabled policy", o, err)
	}
	if err := c.Policies().Delete(ctx, "raiser"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Policies().Get(ctx, "raiser", nil); !client.IsNotFound(err) {
		t.Fatalf("deleted policy: %v", err)
	}
}
