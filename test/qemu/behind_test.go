package qemu

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestQEMUChangesBehindKumoisBack is issue 11's item 4 on real QEMU with
// the real binary (one controller, one libvirt worker on qemu:///system):
//
//   - kill -9 of the QEMU process of an ha=restart VM (libvirt reports a
//     crash): the worker starts it again, with a new QEMU process;
//     status.restarts becomes 1 and the reason names the crash;
//   - `virsh destroy` of that VM and of an ha=none VM: each becomes
//     stopped, spec.power becomes stopped, the reason names the destroy,
//     restarts does not move, and Kumoi does not start the domain again.
func TestQEMUChangesBehindKumoisBack(t *testing.T) {
	Require(t)
	g := NewGuest(t)
	sfx := suffix(t)
	cr, dn := "cr-"+sfx, "dn-"+sfx
	t.Cleanup(func() { System.Remove(domain(cr)); System.Remove(domain(dn)) }) // after the cluster stops
	c := newCluster(t)
	const host = "qemu-system"
	addLibvirtWorker(t, c, host, System, g)
	ctx := context.Background()

	createVM(t, c, cr, resource.HARestart, g)
	createVM(t, c, dn, resource.HANone, g)
	for _, vm := range []string{cr, dn} {
		waitVM(t, c, vm, vmRunningWithin, "running on "+host, func(v vmView) bool {
			return v.Phase == resource.PhaseRunning && v.Host == host
		})
		waitDomState(t, System, domain(vm), "running", 10*time.Second)
	}

	// kill -9 of cr's QEMU: restarted.
	pid, err := System.QEMUPid(domain(cr))
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, c, cr, reflectWithin, "restarted after its QEMU was killed", func(v vmView) bool {
		return v.Phase == resource.PhaseRunning && v.Restarts == 1 && strings.Contains(v.Reason, "crashed")
	})
	t.Logf("kill -9 of %s's QEMU (pid %d): %s after %v", cr, pid, v, time.Since(killed).Round(time.Millisecond))
	testcluster.WaitFor(t, 10*time.Second, cr+" to run in a new QEMU process", func() (bool, error) {
		st, err := System.DomState(ctx, domain(cr))
		if err != nil {
			return false, err
		}
		npid, err := System.QEMUPid(domain(cr))
		if err != nil {
			return false, err
		}
		if st != "running" || npid == pid {
			return false, fmt.Errorf("%s is %q, QEMU pid %d (killed: %d)", domain(cr), st, npid, pid)
		}
		return true, nil
	})
	if v.Power != resource.PowerRunning {
		t.Fatalf("after the crash restart: %s; want power still running", v)
	}

	// virsh destroy of both, one after the other: honoured, whatever the
	// ha policy.
	wantRestarts := map[string]uint64{cr: 1, dn: 0}
	stopped := func(vm string, v vmView) error {
		if v.Phase != resource.PhaseStopped || v.Power != resource.PowerStopped ||
			!strings.Contains(v.Reason, "destroyed outside Kumoi") || v.Restarts != wantRestarts[vm] {
			return fmt.Errorf("vm %s: %s; want phase stopped, power stopped, a reason naming the destroy, %d restarts", vm, v, wantRestarts[vm])
		}
		return nil
	}
	for _, vm := range []string{cr, dn} {
		start := time.Now()
		if _, err := Virsh(ctx, System.URI, "destroy", domain(vm)); err != nil {
			t.Fatal(err)
		}
		returned := time.Now()
		v := waitVM(t, c, vm, reflectWithin, "stopped after virsh destroy", func(v vmView) bool { return stopped(vm, v) == nil })
		t.Logf("virsh destroy %s took %v; %s seen %v after it returned", domain(vm), returned.Sub(start).Round(time.Millisecond),
			v, time.Since(returned).Round(time.Millisecond))
	}
	// And it stays so: Kumoi does not fight the operator.
	holds(t, 5*time.Second, "after virsh destroy", func() error {
		for _, vm := range []string{cr, dn} {
			st, err := System.DomState(ctx, domain(vm))
			if err != nil {
				return err
			}
			if st != "shut off" {
				return fmt.Errorf("%s is %q after virsh destroy: Kumoi started it again", domain(vm), st)
			}
			v, err := getVM(c, vm)
			if err != nil {
				return err
			}
			if err := stopped(vm, v); err != nil {
				return err
			}
		}
		return nil
	})
}
