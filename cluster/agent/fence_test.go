package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// fenceScript fails its first run and succeeds afterwards; every run
// appends its arguments and environment to log.
const fenceScript = `#!/bin/sh
log="$1"; shift
echo "run host=$1 env_host=$KUMOI_FENCE_HOST labels=$KUMOI_FENCE_LABELS rack=$KUMOI_FENCE_LABEL_RACK_ID cluster=$KUMOI_CLUSTER_ID" >>"$log"
n=$(grep -c '^run ' "$log")
if [ "$n" -lt 2 ]; then
	echo "Failed: Unable to obtain correct plug status or plug is not available"
	exit 3
fi
echo "Success: Powered OFF"
`

func hostStatusNow(t *testing.T, c *client.Client, name string) *resource.HostStatus {
	t.Helper()
	o, _, err := c.Get(context.Background(), resource.KindHost, name, nil)
	if err != nil {
		return nil
	}
	st, _ := resource.DecodeStatus[resource.HostStatus](o)
	return st
}

// TestFenceCommandGatesEvacuation: a controller with --fence-command, two
// simulated hosts. The host running the VMs loses its worker (kill -9: its
// domains keep running). After the grace the leader runs the fence
// command with the host's name as $1 and its labels and the cluster's
// identity in the environment; the first run fails: the host keeps its
// VMs, status.fence says failed after 1 attempt, and a host event says
// so. The retry succeeds, and only then the VMs are evacuated: the
// ha=restart VM runs on the other host, the other is lost.
func TestFenceCommandGatesEvacuation(t *testing.T) {
	dir := t.TempDir()
	script, log := filepath.Join(dir, "fence.sh"), filepath.Join(dir, "fence.log")
	if err := os.WriteFile(script, []byte(fenceScript), 0o755); err != nil {
		t.Fatal(err)
	}
	const ip = "127.0.0.81"
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: newTestWriter(t)})
	a, err := Start(controller.Config{
		NodeID: "f1", DataDir: t.TempDir(), BindIP: ip, BootstrapExpect: 1, Logger: logger.Named("f1"),
		FenceCommand:  script + ` "` + log + `" "$1"`,
		FenceRetryMin: time.Second, FenceTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	c, err := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	startWorker := func(name, wip string, labels map[string]string) (*worker.Worker, *sim.Driver) {
		drv := sim.New(sim.Options{Host: name, CPUs: 8, MemoryMiB: 8192})
		w, err := worker.Start(worker.Config{NodeID: name, BindIP: wip, Join: []string{ip + ":7402"}, Driver: drv, DriverName: "sim",
			Labels: labels, Logger: logger.Named(name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Kill() })
		testcluster.WaitFor(t, 15*time.Second, name+" ready", func() (bool, error) { return hostState(t, c, name) == resource.HostReady, nil })
		return w, drv
	}
	wa, drvA := startWorker("fa", "127.0.0.82", map[string]string{"rack-id": "r1", "zone": "z1"})
	createTestVM(t, c, "web", `{"cpus":1,"memory_mib":256,"ha":"restart"}`)
	createTestVM(t, c, "db", `{"cpus":1,"memory_mib":256}`)
	testcluster.WaitFor(t, 15*time.Second, "web and db running on fa", func() (bool, error) {
		for _, n := range []string{"web", "db"} {
			if _, st := vmStatus(t, c, n); st == nil || st.Phase != resource.PhaseRunning || st.Host != "fa" {
				return false, nil
			}
		}
		return true, nil
	})
	startWorker("fb", "127.0.0.83", nil)
	hs := hostStatusNow(t, c, "fa")
	if hs == nil || hs.FenceAfterMS != worker.DefaultFenceAfter.Milliseconds() || hs.DownGraceMS != controller.DefaultHostDownGrace.Milliseconds() || hs.StateIndex == 0 {
		t.Fatalf("host fa = %+v; want the published fence_after_ms, down_grace_ms and a state_index", hs)
	}

	// Every host event from here on.
	_, meta, err := c.List(context.Background(), resource.KindHost, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hostEvents []resource.Event
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ev, err := range c.Events(ctx, meta.Index, resource.KindHost, resource.KindVM) {
			if err != nil {
				return
			}
			mu.Lock()
			hostEvents = append(hostEvents, ev)
			mu.Unlock()
		}
	}()

	killed := time.Now()
	wa.Kill() // its domains keep running in drvA, as libvirt's would
	var failed *resource.HostStatus
	testcluster.WaitFor(t, 20*time.Second, "the first fence run to fail", func() (bool, error) {
		st := hostStatusNow(t, c, "fa")
		if st != nil && st.Fence != nil && st.Fence.State == resource.FenceFailed {
			failed = st
			return true, nil
		}
		return false, nil
	})
	t.Logf("fence failed %s after the kill: %+v", time.Since(killed).Round(time.Millisecond), failed.Fence)
	if f := failed.Fence; f.Attempts != 1 || f.ExitCode != 3 || !strings.Contains(f.Output, "Unable to obtain") ||
		f.StateIndex != failed.StateIndex || failed.State != resource.HostDown || !strings.Contains(f.Reason, "keeps its VMs") {
		t.Errorf("failed fence record %+v on host %+v", f, failed)
	}
	for _, n := range []string{"web", "db"} {
		if _, st := vmStatus(t, c, n); st == nil || st.Host != "fa" || st.Phase != resource.PhaseRunning {
			t.Errorf("vm %s = %+v after a failed fencing; want it still on fa", n, st)
		}
	}
	testcluster.WaitFor(t, 20*time.Second, "the retry to succeed and web to run on fb, db lost", func() (bool, error) {
		st := hostStatusNow(t, c, "fa")
		_, web := vmStatus(t, c, "web")
		_, db := vmStatus(t, c, "db")
		return st != nil && st.Fence != nil && st.Fence.State == resource.FenceSucceeded && web != nil && web.Host == "fb" &&
			web.Phase == resource.PhaseRunning && db != nil && db.Phase == resource.PhaseLost, nil
	})
	final := hostStatusNow(t, c, "fa")
	t.Logf("fenced and evacuated %s after the kill: %+v; reason %q", time.Since(killed).Round(time.Millisecond), final.Fence, final.Reason)
	if final.Fence.Attempts != 2 || final.Fence.ExitCode != 0 || final.Fence.StateIndex != failed.StateIndex {
		t.Errorf("fence record %+v; want attempt 2, exit 0, the same down period %d", final.Fence, failed.StateIndex)
	}
	_ = drvA.Close()

	// The command ran with the host's name and environment.
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := "run host=fa env_host=fa labels=rack-id=r1,zone=z1 rack=r1 cluster=" + a.Controller().ClusterID()
	if len(lines) != 2 || lines[0] != want || lines[1] != want {
		t.Errorf("fence log:\n%s\nwant two lines %q", b, want)
	}

	// The events: a host update saying the fencing failed (the VMs stay),
	// then one saying it succeeded, and only after it web's evacuation.
	testcluster.WaitFor(t, 5*time.Second, "the events", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		var failedAt, okAt, evacAt uint64
		for _, ev := range hostEvents {
			if ev.Object == nil {
				continue
			}
			switch ev.Kind {
			case resource.KindHost:
				st, _ := resource.DecodeStatus[resource.HostStatus](ev.Object)
				if st == nil || st.Fence == nil || ev.Type != resource.EventUpdated {
					continue
				}
				if st.Fence.State == resource.FenceFailed && failedAt == 0 && strings.Contains(st.Fence.Reason, "fencing failed") {
					failedAt = ev.Index
				}
				if st.Fence.State == resource.FenceSucceeded && okAt == 0 {
					okAt = ev.Index
				}
			case resource.KindVM:
				st, _ := resource.DecodeStatus[resource.VMStatus](ev.Object)
				if ev.Name == "web" && st != nil && st.Phase == resource.PhasePending && evacAt == 0 {
					evacAt = ev.Index
				}
			}
		}
		if failedAt == 0 || okAt == 0 || evacAt == 0 {
			return false, nil
		}
		if !(failedAt < okAt && okAt < evacAt) {
			t.Fatalf("events: fence failed at %d, succeeded at %d, web evacuated at %d; want them in that order", failedAt, okAt, evacAt)
		}
		return true, nil
	})
}

// TestFenceAfterNotBelowGrace: a worker whose --fence-after is not below
// the controllers' --host-down-grace publishes it; the host's reason says
// that its VMs would never be moved and why, and when its worker dies the
// leader says so in its log and keeps the VMs where they are (they may
// still run there).
func TestFenceAfterNotBelowGrace(t *testing.T) {
	const ip = "127.0.0.84"
	var logs syncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: io.MultiWriter(newTestWriter(t), &logs)})
	a, err := Start(controller.Config{NodeID: "g1", DataDir: t.TempDir(), BindIP: ip, BootstrapExpect: 1, Logger: logger.Named("g1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	c, err := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	drv := sim.New(sim.Options{Host: "ga", CPUs: 8, MemoryMiB: 8192})
	w, err := worker.Start(worker.Config{NodeID: "ga", BindIP: "127.0.0.85", Join: []string{ip + ":7402"}, Driver: drv, DriverName: "sim",
		FenceAfter: 5 * time.Second, Logger: logger.Named("ga")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Kill(); _ = drv.Close() })
	note := fmt.Sprintf("its VMs are never moved elsewhere: the worker's --fence-after (5s) is not below the controllers' --host-down-grace (%s)", resource.DefaultHostDownGrace)
	testcluster.WaitFor(t, 15*time.Second, "ga ready, with the fence-after and the note", func() (bool, error) {
		st := hostStatusNow(t, c, "ga")
		return st != nil && st.State == resource.HostReady && st.FenceAfterMS == 5000 && strings.Contains(st.Reason, note), nil
	})
	createTestVM(t, c, "web", `{"cpus":1,"memory_mib":256,"ha":"restart"}`)
	testcluster.WaitFor(t, 15*time.Second, "web running on ga", running(t, c, "web"))
	w.Kill()
	testcluster.WaitFor(t, 20*time.Second, "the leader to refuse the evacuation", func() (bool, error) {
		return strings.Contains(logs.String(), "not evacuating a down host: "+note), nil
	})
	st := hostStatusNow(t, c, "ga")
	if _, web := vmStatus(t, c, "web"); web == nil || web.Host != "ga" || web.Phase != resource.PhaseRunning || st.State != resource.HostDown || !strings.Contains(st.Reason, note) {
		t.Fatalf("web = %+v on host %+v; want it kept on the down host ga, whose reason says why", web, st)
	}
}
