package jepsen

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPlanRoundTrip: what a run saves in plan.json is what --replay runs.
func TestPlanRoundTrip(t *testing.T) {
	dir := t.TempDir()
	steps := []Step{{Quiet: 1500 * time.Millisecond, Nemesis: "pause-leader", Hold: 2 * time.Second},
		{Quiet: time.Second, Nemesis: "kill-random", Hold: 3 * time.Second}}
	p := Plan{Workload: "register", Nemeses: []string{"pause-leader", "kill-random"}, Nodes: 5, Workers: 2,
		Duration: "20s", Concurrency: 4, Rate: 50, Seed: 42, OpTimeout: "2s", UnsafeStaleReads: true, RaftLogStore: "wal", WALSegmentSize: "1MiB", Steps: steps}
	if err := writeJSON(filepath.Join(dir, "plan.json"), p); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadPlan(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Workload: "register", Nemeses: []string{"pause-leader", "kill-random"}, Nodes: 5, Workers: 2,
		Duration: 20 * time.Second, Concurrency: 4, Rate: 50, Seed: 42, OpTimeout: 2 * time.Second,
		UnsafeStaleReads: true, RaftLogStore: "wal", WALSegmentSize: "1MiB", Steps: steps}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("LoadPlan = %+v\nwant %+v", cfg, want)
	}
	if _, err := LoadPlan(t.TempDir()); err == nil {
		t.Errorf("LoadPlan of a directory without plan.json: no error")
	}
}

// TestRateLimit: --rate spaces the operations of all clients together.
func TestRateLimit(t *testing.T) {
	env := &Env{limit: newLimiter(100)}
	start := time.Now()
	for i := 0; i < 6; i++ {
		if !env.Wait(context.Background()) {
			t.Fatal("Wait returned false")
		}
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("6 operations at 100/s took %s, want ≥ 50ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if (&Env{}).Wait(ctx) {
		t.Errorf("Wait without a limit on a cancelled context: true")
	}
}

// TestPlots: latency.png and rate.png are drawn from a history with
// fault windows.
func TestPlots(t *testing.T) {
	dir := t.TempDir()
	ops := []Op{
		{Process: 0, Kind: "write", Status: StatusOK, Invoke: 1e8, Return: 2e8, Ended: 2e8},
		{Process: 1, Kind: "read", Status: StatusFail, Invoke: 15e8, Return: 17e8, Ended: 17e8},
		{Process: 2, Kind: "cas", Status: StatusUnknown, Invoke: 2e9, Return: 1<<63 - 1, Ended: 4e9},
	}
	faults := []FaultWindow{{Nemesis: "kill-leader", Start: 1e9, End: 3e9}}
	if err := plots(dir, ops, faults, 5e9); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"latency.png", "rate.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestNemesisNames: every listed nemesis is known to the helpers.
func TestNemesisNames(t *testing.T) {
	for _, n := range Nemeses {
		if PartitionNemesis(n) && WorkerNemesis(n) && n != "worker-partition" && n != "worker-restart-partitioned" {
			t.Errorf("%s: both a partition and a worker nemesis", n)
		}
	}
	if !PartitionNemesis("partition-ring") || !PartitionNemesis("worker-partition") || PartitionNemesis("kill-leader") ||
		!PartitionNemesis("worker-restart-partitioned") || PartitionNemesis("worker-pause") || PartitionNemesis("libvirt-hang") {
		t.Errorf("PartitionNemesis misclassifies")
	}
	for _, n := range []string{"worker-kill", "worker-pause", "worker-restart-partitioned", "libvirt-hang"} {
		if !WorkerNemesis(n) {
			t.Errorf("%s is not a worker nemesis", n)
		}
	}
}

func TestWorkerCapacityForLibvirt(t *testing.T) {
	c, m, ok := workerCapacity([]string{"--hypervisor", "sim", "--cpus", "10", "--memory", "5GiB", "--cpus", "12"})
	if !ok || c != 12 || m != 5120 {
		t.Fatalf("workerCapacity = %d, %d, %v; want 12, 5120, true (the last --cpus wins, as for the agent)", c, m, ok)
	}
	if _, _, ok := workerCapacity([]string{"--cpus", "4"}); ok {
		t.Fatal("workerCapacity without --memory: ok")
	}
	x := libvirtHostXML(10, 5120)
	for _, want := range []string{"<active>10</active>", "<memory>5242880</memory>"} {
		if !strings.Contains(x, want) {
			t.Errorf("host XML lacks %s: %s", want, x)
		}
	}
}
