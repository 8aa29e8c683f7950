package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/internal/testcluster"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/resource"
)

// syncBuffer is an observation log shared by several simulated hosts.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) observations(tb testing.TB) []hypervisor.Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []hypervisor.Observation
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	for sc.Scan() {
		var o hypervisor.Observation
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			tb.Fatalf("observation log: %v: %s", err, sc.Text())
		}
		out = append(out, o)
	}
	return out
}

// checkNoDoubleRun fails if a VM id was active on two hosts at once.
func checkNoDoubleRun(tb testing.TB, obs []hypervisor.Observation, end time.Time) {
	tb.Helper()
	type interval struct {
		host       string
		start, end time.Time
	}
	open := map[string]map[string]time.Time{} // vm -> host -> start
	var all = map[string][]interval{}
	sort.SliceStable(obs, func(i, j int) bool { return obs[i].Time.Before(obs[j].Time) })
	for _, o := range obs {
		if open[o.VMID] == nil {
			open[o.VMID] = map[string]time.Time{}
		}
		switch o.Event {
		case hypervisor.ObserveStart:
			open[o.VMID][o.Host] = o.Time
		case hypervisor.ObserveStop:
			if st, ok := open[o.VMID][o.Host]; ok {
				all[o.VMID] = append(all[o.VMID], interval{o.Host, st, o.Time})
				delete(open[o.VMID], o.Host)
			}
		}
	}
	for vm, hosts := range open {
		for h, st := range hosts {
			all[vm] = append(all[vm], interval{h, st, end})
		}
	}
	for vm, ivs := range all {
		for i := range ivs {
			for j := i + 1; j < len(ivs); j++ {
				a, b := ivs[i], ivs[j]
				if a.host != b.host && a.start.Before(b.end) && b.start.Before(a.end) {
					tb.Errorf("vm %s ran on %s (%s..%s) and %s (%s..%s) at once", vm,
						a.host, a.start.Format(time.StampMilli), a.end.Format(time.StampMilli),
						b.host, b.start.Format(time.StampMilli), b.end.Format(time.StampMilli))
				}
			}
		}
	}
}

func iptables(tb testing.TB, args ...string) {
	tb.Helper()
	if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
		tb.Fatalf("iptables %v: %v: %s", args, err, out)
	}
}

// partitionRules are the iptables rules that cut ip off.
func partitionRules(ip string) [][]string {
	return [][]string{{"INPUT", "-s", ip, "-j", "DROP"}, {"INPUT", "-d", ip, "-j", "DROP"}}
}

// clearStalePartitions deletes the partition rules of ips that a killed
// run of a test (^C, a cancelled job: no cleanup ran) left behind, which
// would cut the new run's cluster off from the start. The addresses are
// the test's own.
func clearStalePartitions(ips ...string) {
	if os.Geteuid() != 0 {
		return
	}
	for _, ip := range ips {
		for _, r := range partitionRules(ip) {
			for range 8 { // each left-behind copy
				if exec.Command("iptables", append([]string{"-D"}, r...)...).Run() != nil {
					break
				}
			}
		}
	}
}

// partition drops every packet to or from ip until the test ends.
func partition(tb testing.TB, ip string) (heal func()) {
	tb.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			tb.Fatal("partition tests need root (iptables); CI runs as root")
		}
		tb.Skip("partition tests need root for iptables")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		tb.Fatalf("iptables is not installed (make deps installs it): %v", err)
	}
	rules := partitionRules(ip)
	for _, r := range partitionRules(ip) {
		iptables(tb, append([]string{"-I"}, r...)...)
	}
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		for _, r := range rules {
			iptables(tb, append([]string{"-D"}, r...)...)
		}
	}
	tb.Cleanup(heal)
	return heal
}

// TestPartitionedWorkerFencesNoDoubleRun: a worker cut off (gossip and API)
// from the controllers stops its VMs itself before the controllers restart
// them elsewhere; no VM is ever active on two hosts; after healing the
// returning host runs nothing that is no longer its own.
func TestPartitionedWorkerFencesNoDoubleRun(t *testing.T) {
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: newTestWriter(t)})
	clearStalePartitions("127.0.0.26", "127.0.0.27", "127.0.0.28", "127.0.0.29")
	a := startTestAgent(t, "p1", "127.0.0.26", 1)
	c, err := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	obs := &syncBuffer{}
	ips := []string{"127.0.0.27", "127.0.0.28", "127.0.0.29"}
	var drivers []*sim.Driver
	for i, ip := range ips {
		name := "ph" + string(rune('1'+i))
		drv := sim.New(sim.Options{Host: name, CPUs: 4, MemoryMiB: 8192, ObservationLog: obs})
		drivers = append(drivers, drv)
		w, err := worker.Start(worker.Config{NodeID: name, BindIP: ip, Join: []string{"127.0.0.26:7402"}, Driver: drv, DriverName: "sim", Logger: logger.Named(name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Kill(); drv.Close() })
	}
	testcluster.WaitFor(t, 15*time.Second, "three ready hosts", func() (bool, error) {
		for _, h := range []string{"ph1", "ph2", "ph3"} {
			if hostState(t, c, h) != resource.HostReady {
				return false, nil
			}
		}
		return true, nil
	})
	for _, n := range []string{"a", "b", "c", "d"} {
		createTestVM(t, c, n, `{"cpus":1,"memory_mib":512,"ha":"restart"}`)
	}
	testcluster.WaitFor(t, 10*time.Second, "all VMs running", func() (bool, error) {
		for _, n := range []string{"a", "b", "c", "d"} {
			if _, st := vmStatus(t, c, n); st == nil || st.Phase != resource.PhaseRunning {
				return false, nil
			}
		}
		return true, nil
	})
	_, st := vmStatus(t, c, "a")
	victim := st.Host
	victimIP := ips[victim[2]-'1']
	var moved []string
	for _, n := range []string{"a", "b", "c", "d"} {
		if _, st := vmStatus(t, c, n); st.Host == victim {
			moved = append(moved, n)
		}
	}

	cut := time.Now()
	heal := partition(t, victimIP)
	testcluster.WaitFor(t, 20*time.Second, "the cut-off host's VMs running elsewhere", func() (bool, error) {
		for _, n := range moved {
			if _, st := vmStatus(t, c, n); st == nil || st.Phase != resource.PhaseRunning || st.Host == victim {
				return false, nil
			}
		}
		return true, nil
	})
	t.Logf("%d VMs of %s running elsewhere %s after the partition", len(moved), victim, time.Since(cut).Round(time.Millisecond))
	// The cut-off worker fenced itself: nothing of Kumoi's is active there.
	drv := drivers[victim[2]-'1']
	doms, err := drv.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range doms {
		if d.Kumoi && d.State.Active() {
			t.Errorf("cut-off host still runs %s", d.Name)
		}
	}
	heal()
	testcluster.WaitFor(t, 15*time.Second, "the healed host to be ready again", func() (bool, error) {
		return hostState(t, c, victim) == resource.HostReady, nil
	})
	testcluster.WaitFor(t, 10*time.Second, "the healed host to hold none of the moved domains", func() (bool, error) {
		doms, err := drv.List(context.Background())
		if err != nil {
			return false, nil
		}
		for _, d := range doms {
			for _, n := range moved {
				if d.Name == hypervisor.DomainName(n) {
					return false, nil
				}
			}
		}
		return true, nil
	})
	checkNoDoubleRun(t, obs.observations(t), time.Now())
}
