package agent

import (
	"context"
	"io"
	"regexp"
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

// TestUpgradeToProtocol5: while one controller speaks protocol 4, hosts are
// recorded without their timing (no state_index, fence_after_ms,
// down_grace_ms) and a dead worker's VMs are evacuated with the older
// entry; nothing halts. Once that controller is upgraded, the leader
// writes the hosts in the new format (a down host's period gets a name)
// and evacuates with the period and its monotonic measure.
func TestUpgradeToProtocol5(t *testing.T) {
	seed := "127.0.0.86:7402"
	var logs syncBuffer
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	ips := []string{"127.0.0.86", "127.0.0.87", "127.0.0.88"}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: io.MultiWriter(newTestWriter(t), &logs)})
	start := func(i, maxProto int) *Agent {
		id := []string{"p1", "p2", "p3"}[i]
		var join []string
		if i > 0 {
			join = []string{seed}
		}
		a, err := Start(controller.Config{NodeID: id, DataDir: dirs[i], BindIP: ips[i], BootstrapExpect: 3, Join: join,
			MaxProtocol: maxProto, Logger: logger.Named(id)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
		return a
	}
	agents := []*Agent{start(0, 0), start(1, 0), start(2, 4)}
	testcluster.WaitFor(t, 15*time.Second, "3 voters and a leader", func() (bool, error) {
		s := servers(t, agents[0])
		return len(s) == 3 && s[0].Voter && s[1].Voter && s[2].Voter && status(t, agents[0]).LeaderID != "", nil
	})
	var addrs []string
	for _, a := range agents {
		addrs = append(addrs, "http://"+a.APIAddr())
	}
	c, err := client.New(client.Config{Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	startWorker := func(name, ip string) *worker.Worker {
		drv := sim.New(sim.Options{Host: name, CPUs: 8, MemoryMiB: 8192})
		w, err := worker.Start(worker.Config{NodeID: name, BindIP: ip, Join: []string{seed}, Driver: drv, DriverName: "sim", Logger: logger.Named(name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Kill(); _ = drv.Close() })
		testcluster.WaitFor(t, 15*time.Second, name+" ready", func() (bool, error) { return hostState(t, c, name) == resource.HostReady, nil })
		return w
	}
	evacuated := regexp.MustCompile(`evacuated host: node=p\d host=(\w+) vms=\d+ down_for=\S+ state_index=(\d+)`)
	evacuatedWith := func(host string) (string, bool) {
		for _, m := range evacuated.FindAllStringSubmatch(logs.String(), -1) {
			if m[1] == host {
				return m[2], true
			}
		}
		return "", false
	}

	w1 := startWorker("pw1", "127.0.0.89")
	if st := hostStatusNow(t, c, "pw1"); st.StateIndex != 0 || st.FenceAfterMS != 0 || st.DownGraceMS != 0 {
		t.Fatalf("host pw1 with a protocol 4 controller: %+v; want no timing fields", st)
	}
	createTestVM(t, c, "web", `{"cpus":1,"memory_mib":256,"ha":"restart"}`)
	testcluster.WaitFor(t, 15*time.Second, "web running on pw1", running(t, c, "web"))
	w1.Kill()
	testcluster.WaitFor(t, 20*time.Second, "web evacuated from pw1 (older format)", func() (bool, error) {
		_, st := vmStatus(t, c, "web")
		idx, ok := evacuatedWith("pw1")
		return st != nil && st.Phase == resource.PhasePending && ok && idx == "0", nil
	})
	for _, a := range agents {
		if st := status(t, a); st.Health == resource.HealthHalted {
			t.Fatalf("%s halted: %s", st.NodeID, st.HealthReason)
		}
	}

	// Upgrade p3.
	if err := agents[2].Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	agents[2] = start(2, 0)
	testcluster.WaitFor(t, 20*time.Second, "the down host pw1 written in the new format", func() (bool, error) {
		st := hostStatusNow(t, c, "pw1")
		return st != nil && st.State == resource.HostDown && st.StateIndex != 0 && st.DownGraceMS == controller.DefaultHostDownGrace.Milliseconds(), nil
	})
	w2 := startWorker("pw2", "127.0.0.90")
	if st := hostStatusNow(t, c, "pw2"); st.StateIndex == 0 || st.FenceAfterMS != worker.DefaultFenceAfter.Milliseconds() {
		t.Fatalf("host pw2 on protocol 5: %+v; want state_index and fence_after_ms", st)
	}
	testcluster.WaitFor(t, 15*time.Second, "web running on pw2", func() (bool, error) {
		_, st := vmStatus(t, c, "web")
		return st != nil && st.Phase == resource.PhaseRunning && st.Host == "pw2", nil
	})
	w2.Kill()
	testcluster.WaitFor(t, 20*time.Second, "web evacuated from pw2 with its period", func() (bool, error) {
		_, st := vmStatus(t, c, "web")
		idx, ok := evacuatedWith("pw2")
		return st != nil && st.Phase == resource.PhasePending && ok && idx != "0", nil
	})
}
