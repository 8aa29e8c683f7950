package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/cluster/agent"
	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/libvirtd"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// ms is d in milliseconds, for ReportMetric.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// lowerMedian of sorted times.
func lowerMedian(times []time.Duration) time.Duration { return times[(len(times)-1)/2] }

// vmPhases lists the VMs through the first live controller that answers
// (a linearizable read) and returns each VM's status.
func vmPhases(hc *http.Client, c *testcluster.Cluster) (map[string]resource.VMStatus, error) {
	var last error
	for _, u := range c.LiveURLs() {
		var objs []*resource.Object
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := testcluster.GetJSON(ctx, hc, u+"/v1/vms", &objs)
		cancel()
		if err != nil {
			last = err
			continue
		}
		out := make(map[string]resource.VMStatus, len(objs))
		for _, o := range objs {
			st, err := resource.DecodeStatus[resource.VMStatus](o)
			if err != nil {
				return nil, err
			}
			out[o.Name] = *st
		}
		return out, nil
	}
	return nil, last
}

// Sizes and bounds of BenchmarkHostFailover.
const (
	failoverRounds = 10 // SIGKILLs per driver
	failoverVMs    = 6
	// fenceWait bounds, from the kill, how long a libvirtd round waits for
	// the killed host's domains to stop in its daemon; a round in which
	// they still run then counts as unfenced.
	fenceWait = 12 * time.Second
)

// BenchmarkHostFailover: three controllers and three worker hosts, each a
// real process, run six ha=restart VMs. Ten times, a worker that runs some
// of them (the one killed least often so far, then the one with most VMs)
// is killed with SIGKILL, and the benchmark measures the time from the
// kill until its host is down, and until all its VMs run on other hosts.
// The worker is restarted (and its host ready again) before the next
// round.
//
// driver=sim: the workers run the simulated hypervisor, whose domains die
// with the worker process.
//
// driver=libvirtd: each worker drives a libvirt daemon of its own
// (internal/libvirtd: libvirt's test driver on its own socket), whose
// domains outlive the worker as QEMU guests do. The benchmark also reads
// the three daemons directly (domainWatch) from the kill until the worker
// is restarted, and reports when the killed host's domains stopped
// running in its daemon ("fenced"; a round where they still ran fenceWait
// after the kill is "unfenced"), and every VM whose domain it saw active on
// two daemons at once ("double-runs"). Before each round it waits until
// every VM's domain is active on its host's daemon and on no other.
func BenchmarkHostFailover(b *testing.B) {
	b.Run("driver=sim", func(b *testing.B) {
		c := testcluster.New(b, testcluster.Options{Workers: 3, LogLevel: "info"})
		runHostFailover(b, c, nil)
	})
	b.Run("driver=libvirtd", func(b *testing.B) {
		// Registered before the cluster, so cleaned up after its
		// processes are killed: first the data directories (a worker's
		// fence guard exits when its directory goes), then the daemons.
		daemons := map[string]*libvirtd.Daemon{}
		var dirs []string
		for i := range 3 {
			name := "lv-" + strconv.Itoa(i+1)
			daemons[name] = libvirtd.StartT(b)
			// Short, as DIR/fence-guard.sock must fit a unix socket path.
			dir, err := os.MkdirTemp("", "kumoi-bw-")
			if err != nil {
				b.Fatal(err)
			}
			dirs = append(dirs, dir)
		}
		b.Cleanup(func() {
			for _, d := range dirs {
				os.RemoveAll(d)
			}
		})
		c := testcluster.New(b, testcluster.Options{LogLevel: "info"})
		for i, name := range slices.Sorted(maps.Keys(daemons)) {
			c.AddWorker(name, "--hypervisor", "libvirt", "--libvirt-uri", daemons[name].URI, "--data-dir", dirs[i])
		}
		runHostFailover(b, c, daemons)
	})
}

// runHostFailover runs BenchmarkHostFailover on c, whose workers drive the
// daemons named by their hosts (nil: sim workers).
func runHostFailover(b *testing.B, c *testcluster.Cluster, daemons map[string]*libvirtd.Daemon) {
	hc := testcluster.NewHTTPClient(8, 5*time.Second)
	b.Cleanup(hc.CloseIdleConnections)
	leader, _ := c.WaitLeader(30 * time.Second)
	for w := range c.Workers() {
		c.WaitHostState(c.WorkerName(w), resource.HostReady, 30*time.Second)
	}
	var names []string
	for i := range failoverVMs {
		name := fmt.Sprintf("ha-%d", i+1)
		names = append(names, name)
		body := []byte(`{"name":"` + name + `","spec":{"cpus":1,"memory_mib":256,"ha":"restart"}}`)
		testcluster.WaitFor(b, 20*time.Second, "create "+name, func() (bool, error) {
			r, err := testcluster.Do(context.Background(), hc, http.MethodPost, c.URL(leader)+"/v1/vms", body)
			if err != nil {
				return false, err
			}
			return r.Status == http.StatusCreated, fmt.Errorf("create %s: %s", name, r)
		})
	}
	// allRunning waits until every VM is running and, with daemons, its
	// domain is active on its host's daemon and on no other (a restarted
	// worker has removed its stale ones).
	allRunning := func(what string) map[string]resource.VMStatus {
		var sts map[string]resource.VMStatus
		testcluster.WaitFor(b, 30*time.Second, what, func() (bool, error) {
			var err error
			if sts, err = vmPhases(hc, c); err != nil {
				return false, err
			}
			for _, n := range names {
				if sts[n].Phase != resource.PhaseRunning {
					return false, fmt.Errorf("%s is %s on %q (%s)", n, sts[n].Phase, sts[n].Host, sts[n].Reason)
				}
			}
			if daemons == nil {
				return true, nil
			}
			active, err := readDaemons(daemons)
			if err != nil {
				return false, err
			}
			for _, n := range names {
				if on := active[domainName(n)]; !slices.Equal(on, []string{sts[n].Host}) {
					return false, fmt.Errorf("%s runs on %s; its domain is active on %v", n, sts[n].Host, on)
				}
			}
			return true, nil
		})
		return sts
	}
	for range b.N {
		var downs, moves, fenced []time.Duration
		var lines []string
		doubles, unfenced := 0, 0
		kills := map[string]int{}
		for round := range failoverRounds {
			sts := allRunning("every VM running")
			onHost := map[string][]string{}
			for _, n := range names {
				onHost[sts[n].Host] = append(onHost[sts[n].Host], n)
			}
			// The host killed least often, of those with the most VMs.
			victim := ""
			for _, h := range slices.Sorted(maps.Keys(onHost)) {
				if victim == "" || kills[h] < kills[victim] ||
					kills[h] == kills[victim] && len(onHost[h]) > len(onHost[victim]) {
					victim = h
				}
			}
			kills[victim]++
			moved := onHost[victim]
			w := c.WorkerIndex(victim)
			start := time.Now()
			c.KillWorker(w)
			var watch *domainWatch
			if daemons != nil {
				watch = watchDomains(daemons, victim, names, moved, start)
			}
			c.WaitHostState(victim, resource.HostDown, 30*time.Second)
			down := time.Since(start)
			testcluster.WaitFor(b, 60*time.Second, "the killed host's VMs running elsewhere", func() (bool, error) {
				sts, err := vmPhases(hc, c)
				if err != nil {
					return false, err
				}
				for _, n := range moved {
					if s := sts[n]; s.Phase != resource.PhaseRunning || s.Host == victim {
						return false, fmt.Errorf("%s is %s on %q (%s)", n, s.Phase, s.Host, s.Reason)
					}
				}
				return true, nil
			})
			move := time.Since(start)
			downs, moves = append(downs, down), append(moves, move)
			line := fmt.Sprintf("#%d %s(%d VMs) down %dms running-elsewhere %dms", round+1, victim, len(moved), down.Milliseconds(), move.Milliseconds())
			if watch != nil {
				r := watch.finish(start.Add(fenceWait))
				if r.fenced > 0 {
					fenced = append(fenced, r.fenced)
					line += fmt.Sprintf(" fenced %dms", r.fenced.Milliseconds())
				} else {
					unfenced++
					line += fmt.Sprintf(" UNFENCED (still active %dms after the kill)", r.lastSeen.Milliseconds())
				}
				doubles += len(r.doubles)
				if len(r.doubles) > 0 {
					line += " DOUBLE-RUN " + r.describeDoubles()
				}
				line += fmt.Sprintf(" (%d sweeps, %d read errors)", r.sweeps, r.readErrors)
			}
			lines = append(lines, line)
			c.StartWorker(w)
			c.WaitHostState(victim, resource.HostReady, 30*time.Second)
		}
		allRunning("every VM running at the end")
		slices.Sort(downs)
		slices.Sort(moves)
		b.ReportMetric(ms(lowerMedian(downs)), "down-p50-ms")
		b.ReportMetric(ms(downs[len(downs)-1]), "down-max-ms")
		b.ReportMetric(ms(lowerMedian(moves)), "running-p50-ms")
		b.ReportMetric(ms(moves[len(moves)-1]), "running-max-ms")
		b.ReportMetric(0, "ns/op")
		summary := fmt.Sprintf("host failover over %d kills: down p50 %s max %s; VMs running elsewhere p50 %s max %s",
			failoverRounds, lowerMedian(downs).Round(time.Millisecond), downs[len(downs)-1].Round(time.Millisecond),
			lowerMedian(moves).Round(time.Millisecond), moves[len(moves)-1].Round(time.Millisecond))
		if daemons != nil {
			// An unfenced round counts as +∞: a percentile is reported
			// only when it is a fenced round's time.
			slices.Sort(fenced)
			p50, worst := "none", "none"
			if i := (failoverRounds - 1) / 2; i < len(fenced) {
				b.ReportMetric(ms(fenced[i]), "fenced-p50-ms")
				p50 = fenced[i].Round(time.Millisecond).String()
			}
			if unfenced == 0 {
				b.ReportMetric(ms(fenced[len(fenced)-1]), "fenced-max-ms")
				worst = fenced[len(fenced)-1].Round(time.Millisecond).String()
			}
			b.ReportMetric(float64(unfenced), "unfenced")
			b.ReportMetric(float64(doubles), "double-runs")
			summary += fmt.Sprintf("; killed host's domains stopped in its daemon p50 %s max %s, %d of %d rounds unfenced %s after the kill; %d VMs seen running on two daemons at once",
				p50, worst, unfenced, failoverRounds, fenceWait, doubles)
		}
		b.Logf("%s; rounds: %s", summary, strings.Join(lines, ", "))
	}
}

// inProcessCluster starts n controllers in this process (agent.Start)
// on reserved loopback addresses, with fsync on, and returns them once one
// leads.
func inProcessCluster(b *testing.B, n int) []*agent.Agent {
	b.Helper()
	ips := testcluster.ReserveIPs(b, n)
	b.Cleanup(agent.TuneGC()) // as kumoi agent runs
	gossip := func(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(controller.DefaultGossipPort)) }
	agents := make([]*agent.Agent, len(ips))
	for i, ip := range ips {
		var join []string
		for j, other := range ips {
			if j != i {
				join = append(join, gossip(other))
			}
		}
		a, err := agent.Start(controller.Config{
			NodeID:          "c" + strconv.Itoa(i+1),
			DataDir:         filepath.Join(b.TempDir(), "data"),
			BindIP:          ip,
			BootstrapExpect: len(ips),
			Join:            join,
			// KUMOI_BENCH_NOSYNC=1 measures what fsync costs.
			NoSync: os.Getenv("KUMOI_BENCH_NOSYNC") != "",
		})
		if err != nil {
			b.Fatalf("start controller %d: %v", i+1, err)
		}
		agents[i] = a
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_ = a.Shutdown(ctx)
		})
	}
	waitInProcessLeader(b, agents, "")
	return agents
}

// waitInProcessLeader waits until an agent other than not leads and takes
// writes (its barrier is done), and returns it.
func waitInProcessLeader(b *testing.B, agents []*agent.Agent, not string) *controller.Controller {
	b.Helper()
	var leader *controller.Controller
	testcluster.WaitFor(b, 30*time.Second, "a leader that takes writes", func() (bool, error) {
		for _, a := range agents {
			ctrl := a.Controller()
			if !ctrl.IsLeader() || ctrl.NodeID() == not {
				continue
			}
			if err := ctrl.Raft().Barrier(5 * time.Second).Error(); err != nil {
				return false, err
			}
			leader = ctrl
			return true, nil
		}
		return false, nil
	})
	return leader
}

// applyBatches proposes ops through c in batches of at most
// fsm.MaxBatchOps, failing the benchmark on any error.
func applyBatches(b *testing.B, c *controller.Controller, ops []fsm.BatchOp) {
	b.Helper()
	for len(ops) > 0 {
		n := min(len(ops), fsm.MaxBatchOps)
		req := fsm.BatchRequest{Time: time.Now().UTC(), Ops: ops[:n]}
		ops = ops[n:]
		if _, err := c.Propose(context.Background(), fsm.BatchRequestType, &req); err != nil {
			b.Fatalf("apply a batch of %d: %v", n, err)
		}
	}
}

func batchOp(b *testing.B, t fsm.MessageType, req any) fsm.BatchOp {
	payload, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	return fsm.BatchOp{Type: t, Payload: payload}
}

// Sizes of BenchmarkPlacement.
const (
	placementHosts   = 1000
	placementVMs     = 10_000
	placementHostCPU = 16
	placementHostMiB = 64 << 10
)

// placementVMSize is VM i's size: 1 or 2 CPUs and 512 MiB to 4 GiB, on
// average 1.25 CPUs and 1,920 MiB (78 % and 29 % of the hosts' total).
func placementVMSize(i int) (int, int64) {
	cpus := 1
	if i%4 == 0 {
		cpus = 2
	}
	return cpus, int64(512) << (i % 4)
}

// BenchmarkPlacement measures the scheduler through Raft: 10,000 pending
// VMs onto 1,000 hosts (16 CPUs, 64 GiB each) on three controllers in this
// process (agent.Start, fsync on). The hosts are registered without
// workers, by proposing fsm.HostStateRequest commands (state ready) through
// the leader. The VMs are created first, while there is no host, in
// batches of fsm.CreateRequest; then leadership is handed to another node
// (see below), and the clock runs from the commit of the hosts until the
// leader's scheduler loop has placed every VM (no VM pending in the
// leader's state). It reports placements/s, then checks that every VM is
// scheduled and that no host is overcommitted.
//
// The new leader's scheduler has finished its first round (which read the
// pending VMs and found no host) before the hosts are registered.
//
// Hosts registered through Raft have no worker in the gossip pool, so a
// leader marks them down once it has led for 5 s (cluster/hosts.go). The
// handover restarts that clock just before the hosts are registered; the
// benchmark fails if a host was marked down before the VMs were placed.
//
// The wait for the last placement watches the pending VMs' index (a
// poll that listed them every 10 ms cost the controllers a twentieth of
// the CPU they share with the benchmark).
//
// With -cpuprofile the profile covers the whole benchmark (creates
// included), all three controllers being in this process;
// KUMOI_BENCH_PROFILE=DIR saves one of the placement phase alone
// (DIR/placement.pprof, DIR/placement-rules.pprof).
func BenchmarkPlacement(b *testing.B) {
	for range b.N {
		runPlacement(b, "")
	}
}

// placementRules are the scheduling rules of BenchmarkPlacementRules, as
// in the scheduler's in-process BenchmarkPlacement/rules: a requirement
// on a host label and on free memory, a rank, and hard anti-affinity in
// groups of three (the arguments: the VM's memory, its group).
const placementRules = `"requirements":"host.labels.zone != \"z\" && host.free_memory_mib >= %d","rank":"-host.allocated_cpus","affinity":{"group":"g%d","rule":"anti-affine","hard":true}`

// BenchmarkPlacementRules is BenchmarkPlacement with scheduling rules on
// every VM (placementRules; the hosts carry a zone label) and checks, on
// top, that no two VMs of a group share a host.
func BenchmarkPlacementRules(b *testing.B) {
	for range b.N {
		runPlacement(b, placementRules)
	}
}

func runPlacement(b *testing.B, rules string) {
	agents := inProcessCluster(b, 3)
	leader := waitInProcessLeader(b, agents, "")

	// 10,000 VMs, pending: there is no host yet.
	now := time.Now().UTC()
	var ops []fsm.BatchOp
	need := resource.Resources{}
	for i := range placementVMs {
		cpus, mem := placementVMSize(i)
		need.CPUs += cpus
		need.MemoryMiB += mem
		js := fmt.Sprintf(`{"cpus":%d,"memory_mib":%d}`, cpus, mem)
		if rules != "" {
			js = fmt.Sprintf(`{"cpus":%d,"memory_mib":%d,`+rules+`}`, cpus, mem, mem, i/3)
		}
		spec, err := resource.NormalizeRequestSpec(resource.KindVM, json.RawMessage(js))
		if err != nil {
			b.Fatal(err)
		}
		ops = append(ops, batchOp(b, fsm.CreateRequestType, &fsm.CreateRequest{
			Time: now, Kind: resource.KindVM, Name: fmt.Sprintf("vm-%05d", i), ID: uuid.NewString(), Spec: spec,
		}))
	}
	t0 := time.Now()
	applyBatches(b, leader, ops)
	b.Logf("created %d pending VMs in %s", placementVMs, time.Since(t0).Round(time.Millisecond))

	// A fresh leader: its hosts loop leaves hosts it has not seen in
	// gossip alone for its first 5 s.
	if err := leader.Raft().LeadershipTransfer().Error(); err != nil {
		b.Fatalf("leadership transfer: %v", err)
	}
	leader = waitInProcessLeader(b, agents, leader.NodeID())
	st := leader.FSM().State()
	// Its scheduler's first round reads the 10,000 pending VMs (0.2 s):
	// let it end first, or a varying part of it falls in the measurement.
	if err := testcluster.Poll(context.Background(), 30*time.Second, func() (bool, error) {
		return leader.SchedulerRounds() > 0, nil
	}); err != nil {
		b.Fatalf("the new leader's scheduler: %v", err)
	}
	if pending, err := st.VMsInPhase(nil, resource.PhasePending); err != nil || len(pending) != placementVMs {
		b.Fatalf("%d VMs pending before the hosts come (err %v), want %d", len(pending), err, placementVMs)
	}

	// 1,000 ready hosts, in one entry.
	ops = ops[:0]
	hostNow := time.Now().UTC()
	for i := range placementHosts {
		ops = append(ops, batchOp(b, fsm.HostStateRequestType, &fsm.HostStateRequest{
			Time: hostNow, Name: fmt.Sprintf("host-%04d", i), ID: uuid.NewString(), State: resource.HostReady,
			Address:  fmt.Sprintf("10.0.%d.%d:7402", i/250, i%250+1),
			Capacity: resource.Resources{CPUs: placementHostCPU, MemoryMiB: placementHostMiB}, Driver: "sim",
		}))
		if rules != "" {
			// In the same entry: the hosts come with their label.
			ops = append(ops, batchOp(b, fsm.UpdateRequestType, &fsm.UpdateRequest{
				Time: hostNow, Kind: resource.KindHost, Name: fmt.Sprintf("host-%04d", i),
				Labels: map[string]string{"zone": string(rune('a' + i%4))}, Spec: json.RawMessage(`{}`),
			}))
		}
	}
	stopProfile := profilePhase(b, "placement", rules != "")
	start := time.Now()
	applyBatches(b, leader, ops)
	registered := time.Since(start)
	err := waitNonePending(st, 120*time.Second)
	elapsed := time.Since(start)
	stopProfile()
	if err != nil {
		b.Fatalf("placing %d VMs on %d hosts: %v", placementVMs, placementHosts, err)
	}
	rate := float64(placementVMs) / elapsed.Seconds()
	b.ReportMetric(rate, "placements/s")
	b.ReportMetric(ms(elapsed), "total-ms")
	b.ReportMetric(0, "ns/op")

	// Check: every VM scheduled on a host, no host overcommitted, and the
	// hosts' allocations add up to what the VMs need; every host stayed
	// ready.
	vms, err := st.List(nil, resource.KindVM, nil)
	if err != nil {
		b.Fatal(err)
	}
	perHost := map[string]resource.Resources{}
	scheduled := 0
	groupOn := map[string]string{} // group/host -> a member there
	for _, o := range vms {
		vs, err := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil {
			b.Fatal(err)
		}
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil {
			b.Fatal(err)
		}
		if vs.Phase != resource.PhaseScheduled || vs.Host == "" {
			b.Errorf("vm %s is %s on %q (%s), want scheduled", o.Name, vs.Phase, vs.Host, vs.Reason)
			continue
		}
		scheduled++
		if a := spec.Affinity; a != nil {
			k := a.Group + "/" + vs.Host
			if other, ok := groupOn[k]; ok {
				b.Errorf("vms %s and %s of anti-affine group %s are both on %s", other, o.Name, a.Group, vs.Host)
			}
			groupOn[k] = o.Name
		}
		r := perHost[vs.Host]
		r.CPUs += spec.CPUs
		r.MemoryMiB += spec.MemoryMiB
		perHost[vs.Host] = r
	}
	hosts, err := st.List(nil, resource.KindHost, nil)
	if err != nil {
		b.Fatal(err)
	}
	var total resource.Resources
	minVMs, maxVMs, over, down := placementVMs, 0, 0, 0
	counts := map[string]int{}
	for _, o := range vms {
		if vs, _ := resource.DecodeStatus[resource.VMStatus](o); vs != nil {
			counts[vs.Host]++
		}
	}
	for _, o := range hosts {
		hs, err := resource.DecodeStatus[resource.HostStatus](o)
		if err != nil {
			b.Fatal(err)
		}
		if hs.State != resource.HostReady {
			down++
			if down <= 3 {
				b.Errorf("host %s is %s (%s) at %s: the measurement is not valid", o.Name, hs.State, hs.Reason, hs.Since.Sub(start).Round(time.Millisecond))
			}
		}
		a, cp := hs.Allocated, hs.Capacity
		if a.CPUs > cp.CPUs || a.MemoryMiB > cp.MemoryMiB {
			over++
			b.Errorf("host %s is overcommitted: allocated %+v, capacity %+v", o.Name, a, cp)
		}
		if a != perHost[o.Name] {
			b.Errorf("host %s: allocated %+v, but its VMs need %+v", o.Name, a, perHost[o.Name])
		}
		total.CPUs += a.CPUs
		total.MemoryMiB += a.MemoryMiB
		minVMs, maxVMs = min(minVMs, counts[o.Name]), max(maxVMs, counts[o.Name])
	}
	if len(hosts) != placementHosts || scheduled != placementVMs || total != need {
		b.Errorf("%d hosts, %d of %d VMs scheduled, allocated %+v in all, the VMs need %+v", len(hosts), scheduled, placementVMs, total, need)
	}
	b.Logf("placed %d VMs on %d hosts in %s (%.0f placements/s; hosts committed after %s); %d to %d VMs per host, %d CPUs and %d GiB allocated of %d and %d; %d hosts overcommitted, %d not ready",
		scheduled, len(hosts), elapsed.Round(time.Millisecond), rate, registered.Round(time.Millisecond), minVMs, maxVMs,
		total.CPUs, total.MemoryMiB>>10, placementHosts*placementHostCPU, placementHosts*placementHostMiB>>10, over, down)
}

// profilePhase starts a CPU profile of this process in
// $KUMOI_BENCH_PROFILE/<name>[-rules].pprof when that is set, and returns
// what stops it.
func profilePhase(b *testing.B, name string, rules bool) func() {
	dir := os.Getenv("KUMOI_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	if rules {
		name += "-rules"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, name+".pprof"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatalf("%s profile (is -cpuprofile set too?): %v", name, err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

// waitNonePending waits until no VM is pending in st: it reads the pending
// VMs each time their index changes (a commit that placed some), not on a
// timer.
func waitNonePending(st *fsm.Store, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Stretch(timeout))
	defer cancel()
	for {
		ws := memdb.NewWatchSet()
		ws.Add(st.AbandonCh())
		pending, err := st.VMsInPhase(ws, resource.PhasePending)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		if ws.WatchCtx(ctx) != nil {
			return fmt.Errorf("%d VMs still pending after %s", len(pending), timeout)
		}
	}
}
