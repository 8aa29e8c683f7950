package agent

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// vmEvents records the VM events of the event stream, with the time each
// arrived, from the index it is started at.
type vmEvents struct {
	mu  sync.Mutex
	evs []timedEvent
}

type timedEvent struct {
	at time.Time
	vm string
	st *resource.VMStatus
}

func watchVMEvents(t *testing.T, c *client.Client) *vmEvents {
	t.Helper()
	_, meta, err := c.List(context.Background(), resource.KindVM, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &vmEvents{}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ev, err := range c.Events(ctx, meta.Index, resource.KindVM) {
			if err != nil {
				return
			}
			if ev.Object == nil {
				continue
			}
			st, _ := resource.DecodeStatus[resource.VMStatus](ev.Object)
			l.mu.Lock()
			l.evs = append(l.evs, timedEvent{at: time.Now(), vm: ev.Name, st: st})
			l.mu.Unlock()
		}
	}()
	return l
}

// first is the arrival time of the first event of vm whose status matches.
func (l *vmEvents) first(vm string, match func(*resource.VMStatus) bool) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.evs {
		if e.vm == vm && e.st != nil && match(e.st) {
			return e.at, true
		}
	}
	return time.Time{}, false
}

// waitEvent waits for vm's event whose status matches and logs how long
// after since it arrived (the deadline is only a bound for regressions).
func (l *vmEvents) waitEvent(t *testing.T, vm, what string, since time.Time, match func(*resource.VMStatus) bool) {
	t.Helper()
	var at time.Time
	testcluster.WaitFor(t, 10*time.Second, "an event: "+vm+" "+what, func() (bool, error) {
		var ok bool
		at, ok = l.first(vm, match)
		return ok, nil
	})
	t.Logf("latency: %s %s: the event arrived %v after the change behind Kumoi's back", vm, what, at.Sub(since))
}

func reasonHas(s string) func(*resource.VMStatus) bool {
	return func(st *resource.VMStatus) bool { return strings.Contains(st.Reason, s) }
}

// TestBehindKumoisBack: every change made to a domain behind Kumoi's back
// shows in its VM's status, with a reason, and as an event: a destroy
// (virsh destroy) of an ha=none and an ha=restart VM makes both stopped
// with desired power stopped and the domain left off; a crash of an
// ha=restart VM restarts it, counted (restarts 1); a crash of an ha=none
// VM fails it; a domain undefined while it ran makes its VM stopped, the
// domain defined again but not started. The reasons stay over later
// passes, until the user starts the VM again.
func TestBehindKumoisBack(t *testing.T) {
	drv := sim.New(sim.Options{Host: "bk1", CPUs: 16, MemoryMiB: 16384})
	t.Cleanup(func() { drv.Close() })
	c := oneHost(t, "127.0.0.60", "127.0.0.61", "bk1", drv, "sim")
	vms := map[string]string{"dn": "none", "dr": "restart", "cn": "none", "cr": "restart", "un": "none"}
	for n, ha := range vms {
		createTestVM(t, c, n, `{"cpus":1,"memory_mib":128,"ha":"`+ha+`"}`)
	}
	testcluster.WaitFor(t, 15*time.Second, "every VM running", func() (bool, error) {
		for n := range vms {
			if ok, _ := running(t, c, n)(); !ok {
				return false, nil
			}
		}
		return true, nil
	})
	ctx := context.Background()
	evs := watchVMEvents(t, c)
	dom := func(n string) hypervisor.DomainInfo {
		t.Helper()
		d, err := drv.Get(ctx, hypervisor.DomainName(n))
		if err != nil {
			t.Fatalf("domain of %s: %v", n, err)
		}
		return d
	}

	// virsh destroy, on ha=none and ha=restart alike: honoured.
	destroyed := reasonHas("destroyed outside Kumoi")
	for _, n := range []string{"dn", "dr"} {
		at := time.Now()
		if err := drv.Destroy(ctx, hypervisor.DomainName(n)); err != nil {
			t.Fatal(err)
		}
		evs.waitEvent(t, n, "destroyed", at, func(st *resource.VMStatus) bool { return st.Phase == resource.PhaseStopped && destroyed(st) })
		testcluster.WaitFor(t, 10*time.Second, n+" stopped, power stopped", func() (bool, error) {
			spec, st := vmStatus(t, c, n)
			return spec != nil && spec.Power == resource.PowerStopped && st.Phase == resource.PhaseStopped && destroyed(st) && st.Restarts == 0, nil
		})
	}

	// A crash of an ha=restart VM: restarted, and it shows.
	at := time.Now()
	if err := drv.Crash(hypervisor.DomainName("cr")); err != nil {
		t.Fatal(err)
	}
	restarted := reasonHas("restarted after the guest crashed")
	evs.waitEvent(t, "cr", "restarted", at, func(st *resource.VMStatus) bool { return restarted(st) && st.Restarts == 1 })
	testcluster.WaitFor(t, 10*time.Second, "cr running again, restarts 1, with the reason", func() (bool, error) {
		spec, st := vmStatus(t, c, "cr")
		return spec.Power == resource.PowerRunning && st.Phase == resource.PhaseRunning && st.Restarts == 1 && restarted(st) &&
			dom("cr").State == hypervisor.StateRunning, nil
	})

	// A crash of an ha=none VM: failed with the reason.
	at = time.Now()
	if err := drv.Crash(hypervisor.DomainName("cn")); err != nil {
		t.Fatal(err)
	}
	evs.waitEvent(t, "cn", "failed", at, func(st *resource.VMStatus) bool {
		return st.Phase == resource.PhaseFailed && strings.Contains(st.Reason, "crashed") && strings.Contains(st.Reason, "not restarted")
	})

	// Undefined while running: reflected, not redefined and restarted.
	at = time.Now()
	if err := drv.Vanish(hypervisor.DomainName("un")); err != nil {
		t.Fatal(err)
	}
	vanished := reasonHas("vanished")
	evs.waitEvent(t, "un", "vanished", at, func(st *resource.VMStatus) bool { return st.Phase == resource.PhaseStopped && vanished(st) })
	testcluster.WaitFor(t, 10*time.Second, "un stopped, power stopped, defined again but off", func() (bool, error) {
		spec, st := vmStatus(t, c, "un")
		d, err := drv.Get(ctx, hypervisor.DomainName("un"))
		return spec.Power == resource.PowerStopped && st.Phase == resource.PhaseStopped && vanished(st) &&
			err == nil && d.State == hypervisor.StateShutoff, nil
	})

	// Later passes keep it all: another VM placed and started takes a
	// few.
	createTestVM(t, c, "later", `{"cpus":1,"memory_mib":128}`)
	testcluster.WaitFor(t, 10*time.Second, "later running", running(t, c, "later"))
	for n, want := range map[string]func(*resource.VMStatus) bool{"dn": destroyed, "dr": destroyed, "cr": restarted, "un": vanished} {
		if _, st := vmStatus(t, c, n); !want(st) {
			t.Errorf("%s lost its reason: %+v", n, st)
		}
	}
	for _, n := range []string{"dn", "dr", "un"} {
		if d := dom(n); d.State != hypervisor.StateShutoff {
			t.Errorf("%s: domain %s, want it left shut off", n, d.State)
		}
	}
	if _, st := vmStatus(t, c, "cr"); st.Restarts != 1 {
		t.Errorf("cr: restarts %d, want 1", st.Restarts)
	}

	// The user starts a destroyed VM again: it runs, the reason is over.
	if _, err := c.Action(ctx, "dn", resource.ActionStart); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 10*time.Second, "dn running again without the old reason", func() (bool, error) {
		_, st := vmStatus(t, c, "dn")
		return st.Phase == resource.PhaseRunning && st.Reason == "", nil
	})
}

// TestHostRebootReason: a worker that starts and finds the domains of its
// running VMs shut off (the host rebooted while it was down) says so in
// their status; an ha=restart VM's restart counts, an ha=none VM is
// started again (its desired power is running) without counting.
func TestHostRebootReason(t *testing.T) {
	drv := sim.New(sim.Options{Host: "hb1", CPUs: 8, MemoryMiB: 8192})
	t.Cleanup(func() { drv.Close() })
	a := startTestAgent(t, "hb-c", "127.0.0.62", 1)
	cfg := worker.Config{NodeID: "hb1", BindIP: "127.0.0.63", Join: []string{"127.0.0.62:7402"}, Driver: drv, DriverName: "sim",
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: newTestWriter(t)}).Named("hb1")}
	w, err := worker.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "hb1 ready", func() (bool, error) { return hostState(t, c, "hb1") == resource.HostReady, nil })
	createTestVM(t, c, "hr", `{"cpus":1,"memory_mib":128,"ha":"restart"}`)
	createTestVM(t, c, "hn", `{"cpus":1,"memory_mib":128}`)
	testcluster.WaitFor(t, 10*time.Second, "both running", func() (bool, error) {
		r, _ := running(t, c, "hr")()
		n, _ := running(t, c, "hn")()
		return r && n, nil
	})
	// The host goes down with its worker: the domains end unseen.
	w.Kill()
	ctx := context.Background()
	for _, n := range []string{"hr", "hn"} {
		if err := drv.Destroy(ctx, hypervisor.DomainName(n)); err != nil {
			t.Fatal(err)
		}
	}
	w, err = worker.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Kill)
	reboot := reasonHas("host reboot")
	testcluster.WaitFor(t, 20*time.Second, "hr restarted (counted) and hn started again, both saying why", func() (bool, error) {
		_, hr := vmStatus(t, c, "hr")
		_, hn := vmStatus(t, c, "hn")
		return hr != nil && hn != nil && hr.Phase == resource.PhaseRunning && reboot(hr) && hr.Restarts == 1 &&
			hn.Phase == resource.PhaseRunning && reboot(hn) && hn.Restarts == 0, nil
	})
}
