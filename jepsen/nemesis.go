package jepsen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kumoi/kumoi/internal/libvirtd"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// Nemesis injects one kind of fault and heals it.
type Nemesis interface {
	// Name is the nemesis' flag name, e.g. "kill-leader".
	Name() string
	// Inject starts the fault and says what it did ("killed c2").
	Inject(ctx context.Context) (string, error)
	// Heal ends the fault Inject started; it does nothing if there is none.
	Heal(ctx context.Context) error
}

// Nemeses lists the nemesis names.
var Nemeses = []string{
	"kill-leader", "kill-random", "kill-majority",
	"pause-leader", "pause-random",
	"partition-leader", "partition-majority", "partition-ring", "partition-bridge", "partition-oneway",
	"transfer-leader", "member-change", "wipe-restart",
	"worker-kill", "worker-partition", "worker-pause", "worker-restart-partitioned",
	"libvirt-hang",
}

// PartitionNemesis reports whether the nemesis called name adds iptables
// rules (and so needs root).
func PartitionNemesis(name string) bool {
	return strings.HasPrefix(name, "partition-") || name == "worker-partition" || name == "worker-restart-partitioned"
}

// WorkerNemesis reports whether the nemesis called name acts on workers
// (or their hosts' libvirt daemons).
func WorkerNemesis(name string) bool {
	return strings.HasPrefix(name, "worker-") || name == "libvirt-hang"
}

// HostFaultMinHold is the least time worker-pause,
// worker-restart-partitioned and libvirt-hang last, whatever the drawn
// hold: longer than the controllers take to see a host down (≈ 1–1.5 s)
// plus --host-down-grace (3.5 s, the default the harness's controllers
// run with), so that the host's VMs are restarted elsewhere while the
// fault lasts.
var HostFaultMinHold = 8 * time.Second

// Target is what nemeses act on: the cluster, a source of randomness
// (seeded from the run's seed, so that the victims are part of the plan)
// and the partition rules of the run.
type Target struct {
	C   *testcluster.Cluster
	Rng *rand.Rand
	// Env reaches the controllers' API (member-change removes a server).
	Env *Env
	FW  *Firewall
	// Daemons are the workers' libvirt daemons, by worker index
	// (--worker-driver libvirtd; libvirt-hang pauses one).
	Daemons []*libvirtd.Daemon
	// Findings receives the nemeses' notes and anomalies (wipe-restart's
	// refusal check) and which controllers were wiped; nil: made on
	// first use.
	Findings     *Findings
	findingsOnce sync.Once
}

// NewNemesis returns the nemesis called name acting on t.
func NewNemesis(name string, t *Target) (Nemesis, error) {
	if PartitionNemesis(name) {
		if err := CanPartition(); err != nil {
			return nil, err
		}
	}
	if WorkerNemesis(name) && t.C.Workers() == 0 {
		return nil, fmt.Errorf("nemesis %s needs workers (--workers N)", name)
	}
	inject, err := t.injector(name)
	if err != nil {
		return nil, err
	}
	return &nemesis{name: name, inject: inject}, nil
}

// healFunc ends a fault.
type healFunc func(context.Context) error

// injectFunc starts a fault; it says what it did and returns the heal
// (which may be set even with an error: the part of the fault that
// happened).
type injectFunc func(ctx context.Context) (what string, heal healFunc, err error)

// injector returns the inject function of the nemesis called name.
func (t *Target) injector(name string) (injectFunc, error) {
	c := t.C
	switch name {
	case "kill-leader":
		return t.atLeader(func(_ context.Context, idx int) (string, healFunc, error) {
			return kill(c, []int{idx}, "leader ")
		}), nil
	case "kill-random":
		return func(context.Context) (string, healFunc, error) {
			return kill(c, pick(t.Rng, c.N(), 1), "")
		}, nil
	case "kill-majority":
		return func(context.Context) (string, healFunc, error) {
			return kill(c, pick(t.Rng, c.N(), c.N()/2+1), "majority ")
		}, nil
	case "pause-leader":
		return t.atLeader(func(_ context.Context, idx int) (string, healFunc, error) {
			return pause(c, idx, "leader ")
		}), nil
	case "pause-random":
		return func(context.Context) (string, healFunc, error) {
			return pause(c, pick(t.Rng, c.N(), 1)[0], "")
		}, nil
	case "partition-leader":
		return t.atLeader(t.isolate("isolate leader", false)), nil
	case "partition-majority":
		return t.minorityMajority, nil
	case "partition-ring", "partition-bridge":
		if c.N() != 5 {
			return nil, fmt.Errorf("nemesis %s needs 5 controllers (--nodes 5)", name)
		}
		return func(ctx context.Context) (string, healFunc, error) {
			perm := t.Rng.Perm(c.N())
			if name == "partition-ring" {
				return t.ring(ctx, perm)
			}
			// Two pairs that cannot see each other, and a node in the
			// middle that sees all four.
			return t.bridge(ctx, perm)
		}, nil
	case "partition-oneway":
		return t.atLeader(t.isolate("one-way: the leader's packets to the others are dropped, theirs reach it;", true)), nil
	case "transfer-leader":
		return t.atLeader(func(ctx context.Context, idx int) (string, healFunc, error) {
			return transferLeader(ctx, c, idx)
		}), nil
	case "member-change":
		return t.memberChange, nil
	case "wipe-restart":
		return t.wipeRestart, nil
	case "worker-kill":
		return t.killWorker, nil
	case "worker-partition":
		return t.isolateWorker, nil
	case "worker-pause":
		return t.pauseWorker, nil
	case "worker-restart-partitioned":
		return t.restartWorkerPartitioned, nil
	case "libvirt-hang":
		if len(t.Daemons) == 0 {
			return nil, errors.New("nemesis libvirt-hang needs libvirt daemons (--worker-driver libvirtd)")
		}
		return t.hangLibvirtd, nil
	}
	return nil, fmt.Errorf("unknown nemesis %q (%s)", name, strings.Join(Nemeses, ", "))
}

// atLeader returns an inject function that finds the leader (see leader)
// and hands its index to f.
func (t *Target) atLeader(f func(ctx context.Context, idx int) (string, healFunc, error)) injectFunc {
	return func(ctx context.Context) (string, healFunc, error) {
		idx, err := leader(ctx, t.C)
		if err != nil {
			return "", nil, err
		}
		return f(ctx, idx)
	}
}

// isolate returns the inject that cuts node idx off from the others
// (oneway: only its packets to them are dropped); what starts its report.
func (t *Target) isolate(what string, oneway bool) func(ctx context.Context, idx int) (string, healFunc, error) {
	return func(ctx context.Context, idx int) (string, healFunc, error) {
		return t.partition(ctx, what, [][]int{{idx}, others(t.C.N(), idx)}, oneway)
	}
}

// minorityMajority cuts the controllers into a random minority and the
// majority.
func (t *Target) minorityMajority(ctx context.Context) (string, healFunc, error) {
	c := t.C
	perm := t.Rng.Perm(c.N())
	minority := perm[:c.N()/2]
	slices.Sort(minority)
	majority := append([]int(nil), perm[c.N()/2:]...)
	slices.Sort(majority)
	return t.partition(ctx, "minority/majority", [][]int{minority, majority}, false)
}

// killWorker kills a random worker with SIGKILL; the heal starts it again.
func (t *Target) killWorker(context.Context) (string, healFunc, error) {
	c := t.C
	w := t.Rng.Intn(c.Workers())
	if err := fatal(func() { c.KillWorker(w) }); err != nil {
		return "", nil, err
	}
	return "SIGKILL worker " + c.WorkerName(w), func(context.Context) error {
		return fatal(func() { c.StartWorker(w) })
	}, nil
}

// isolateWorker drops every packet between a random worker and every
// other node, both ways.
func (t *Target) isolateWorker(ctx context.Context) (string, healFunc, error) {
	c := t.C
	w := t.Rng.Intn(c.Workers())
	return t.cut(ctx, fmt.Sprintf("isolate worker %s (%s) from every other node", c.WorkerName(w), c.WorkerIP(w)), workerPairs(c, w))
}

// workerPairs are the address pairs, both ways, between worker w and
// every other node.
func workerPairs(c *testcluster.Cluster, w int) [][2]string {
	wip := c.WorkerIP(w)
	var pairs [][2]string
	for j := 0; j < c.N(); j++ {
		pairs = append(pairs, [2]string{wip, c.IP(j)}, [2]string{c.IP(j), wip})
	}
	for v := 0; v < c.Workers(); v++ {
		if v != w {
			pairs = append(pairs, [2]string{wip, c.WorkerIP(v)}, [2]string{c.WorkerIP(v), wip})
		}
	}
	return pairs
}

// atLeast returns a heal that waits until HostFaultMinHold has passed
// since injected (or ctx ends), then runs heal.
func atLeast(injected time.Time, heal healFunc) healFunc {
	return func(ctx context.Context) error {
		if d := time.Until(injected.Add(HostFaultMinHold)); d > 0 {
			sleepCtx(ctx, d)
		}
		return heal(ctx)
	}
}

// pauseWorker stops a random worker with SIGSTOP for at least
// HostFaultMinHold (longer than the grace: its host is declared down and
// its VMs restarted elsewhere meanwhile); the heal continues it
// (SIGCONT). With the sim driver a paused worker's domains keep running
// in the paused process; with libvirt they keep running in the daemon.
func (t *Target) pauseWorker(context.Context) (string, healFunc, error) {
	c := t.C
	w := t.Rng.Intn(c.Workers())
	injected := time.Now()
	if err := fatal(func() { c.PauseWorker(w) }); err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("SIGSTOP worker %s (at least %s)", c.WorkerName(w), HostFaultMinHold), atLeast(injected, func(context.Context) error {
		return fatal(func() { c.ResumeWorker(w) })
	}), nil
}

// restartWorkerPartitioned kills a random worker (SIGKILL), cuts its
// address off from every other node, starts it again while cut off, and
// keeps it cut off for at least HostFaultMinHold; the heal removes the
// rules. The restarted worker never reaches the controllers before the
// heal: it must not run its VMs while they are restarted elsewhere.
func (t *Target) restartWorkerPartitioned(ctx context.Context) (string, healFunc, error) {
	c := t.C
	w := t.Rng.Intn(c.Workers())
	injected := time.Now()
	if err := fatal(func() { c.KillWorker(w) }); err != nil {
		return "", nil, err
	}
	start := func(context.Context) error {
		if c.WorkerAlive(w) {
			return nil
		}
		return fatal(func() { c.StartWorker(w) })
	}
	what := fmt.Sprintf("SIGKILL worker %s, cut %s off from every other node, start it again while cut off (at least %s)",
		c.WorkerName(w), c.WorkerIP(w), HostFaultMinHold)
	unCut, err := t.FW.drop(ctx, workerPairs(c, w))
	if err != nil {
		return "", start, err // drop removed the rules it had added
	}
	heal := atLeast(injected, func(ctx context.Context) error { return errors.Join(unCut(ctx), start(ctx)) })
	if err := start(ctx); err != nil {
		return what, heal, err
	}
	return what, heal, nil
}

// hangLibvirtd stops a random worker's libvirt daemon with SIGSTOP for at
// least HostFaultMinHold: every libvirt call of that worker hangs (its
// domains, frozen with the test driver, stay active); the heal continues
// it (SIGCONT).
func (t *Target) hangLibvirtd(context.Context) (string, healFunc, error) {
	c := t.C
	w := t.Rng.Intn(len(t.Daemons))
	d := t.Daemons[w]
	injected := time.Now()
	if err := d.Pause(); err != nil {
		return "", nil, fmt.Errorf("SIGSTOP libvirtd of %s: %w", c.WorkerName(w), err)
	}
	return fmt.Sprintf("SIGSTOP libvirtd of worker %s (pid %d, at least %s)", c.WorkerName(w), d.Pid(), HostFaultMinHold),
		atLeast(injected, func(context.Context) error { return d.Resume() }), nil
}

// cut drops every packet from pair[0] to pair[1] of pairs (see
// Firewall.drop) and says what it did.
func (t *Target) cut(ctx context.Context, what string, pairs [][2]string) (string, healFunc, error) {
	heal, err := t.FW.drop(ctx, pairs)
	if err != nil {
		return "", nil, err
	}
	return what, heal, nil
}

// nemesis is a Nemesis made of an inject function that returns its heal.
type nemesis struct {
	name   string
	inject injectFunc

	mu   sync.Mutex
	heal healFunc
}

func (n *nemesis) Name() string { return n.name }

func (n *nemesis) Inject(ctx context.Context) (string, error) {
	what, heal, err := n.inject(ctx)
	n.mu.Lock()
	n.heal = heal
	n.mu.Unlock()
	return what, err
}

func (n *nemesis) Heal(ctx context.Context) error {
	n.mu.Lock()
	heal := n.heal
	n.heal = nil
	n.mu.Unlock()
	if heal == nil {
		return nil
	}
	return heal(ctx)
}

// CanPartition says why partition nemeses cannot run here, or nil.
func CanPartition() error {
	if os.Geteuid() != 0 {
		return errors.New("partition nemeses need root (they add iptables rules); run as root, or leave partition-* and worker-partition out of --nemesis")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return errors.New("partition nemeses need iptables, which is not installed")
	}
	return nil
}

// leader waits up to 10s for a live node that says it leads.
func leader(ctx context.Context, c *testcluster.Cluster) (int, error) {
	idx := -1
	err := testcluster.Poll(ctx, 10*time.Second, func() (bool, error) {
		idx, _ = c.Leader()
		return idx >= 0, nil
	})
	if err != nil {
		return -1, fmt.Errorf("no leader to target: %w", err)
	}
	return idx, nil
}

// pick returns k distinct indexes of [0, n), sorted.
func pick(rng *rand.Rand, n, k int) []int {
	out := append([]int(nil), rng.Perm(n)[:k]...)
	slices.Sort(out)
	return out
}

// others is [0, n) without i.
func others(n, i int) []int {
	var out []int
	for j := 0; j < n; j++ {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

func ids(c *testcluster.Cluster, idx []int) string {
	var s []string
	for _, i := range idx {
		s = append(s, c.ID(i))
	}
	return strings.Join(s, ",")
}

// fatal runs f, turning a testcluster failure (a panic of Standalone's
// Fatalf) into an error.
func fatal(f func()) (err error) {
	defer testcluster.Recover(&err)
	f()
	return nil
}

func kill(c *testcluster.Cluster, idx []int, what string) (string, healFunc, error) {
	for k, i := range idx {
		if err := fatal(func() { c.Kill(i) }); err != nil {
			return "", restart(c, idx[:k]), err
		}
	}
	return "SIGKILL " + what + ids(c, idx), restart(c, idx), nil
}

// restart starts the controllers idx again on their data directories.
func restart(c *testcluster.Cluster, idx []int) healFunc {
	return func(context.Context) error {
		var errs []error
		for _, i := range idx {
			if !c.Alive(i) {
				errs = append(errs, fatal(func() { c.Start(i) }))
			}
		}
		return errors.Join(errs...)
	}
}

func pause(c *testcluster.Cluster, i int, what string) (string, healFunc, error) {
	if err := fatal(func() { c.Pause(i) }); err != nil {
		return "", nil, err
	}
	return "SIGSTOP " + what + c.ID(i), func(context.Context) error {
		return fatal(func() { c.Resume(i) })
	}, nil
}

// transferLeader stops the leader gracefully: on SIGTERM it hands
// leadership to another voter (raft's leadership transfer) before it
// exits. Kumoi has no API that transfers leadership without stopping the
// leader. The heal starts it again.
func transferLeader(ctx context.Context, c *testcluster.Cluster, idx int) (string, healFunc, error) {
	start := time.Now()
	if err := fatal(func() { c.Terminate(idx) }); err != nil {
		return "", nil, err
	}
	heal := restart(c, []int{idx})
	if err := c.Wait(idx, 15*time.Second); err != nil {
		// Not a clean exit after a hand-off: kill it, and say so.
		kerr := fatal(func() { c.Kill(idx) })
		return "", heal, errors.Join(fmt.Errorf("graceful stop of leader %s: %w", c.ID(idx), err), kerr)
	}
	return fmt.Sprintf("SIGTERM leader %s (hands off leadership; exited after %s)", c.ID(idx), time.Since(start).Round(time.Millisecond)), heal, nil
}

// memberChange removes a random voter — a follower, or the leader itself
// (which then steps down once its removal commits) — from the raft
// configuration (DELETE /v1/cluster/servers/{id}, what `kumoi cluster
// remove` does), kills it, and as the heal wipes its data directory and
// starts it again without --bootstrap-expect: it joins as a new server and
// the leader makes it a voter again (not before 30 s after the removal if
// the same leader is still in charge: cluster.Controller.recentlyRemoved).
func (t *Target) memberChange(ctx context.Context) (string, healFunc, error) {
	c := t.C
	li, err := leader(ctx, c)
	if err != nil {
		return "", nil, err
	}
	victim := t.Rng.Intn(c.N())
	id := c.ID(victim)
	// Not cut short by the end of the run: a removal that happened must
	// be followed by its kill and heal, or the removed server would stay
	// alive outside the cluster and never converge.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := t.Env.AnyClient().RemoveServer(rctx, id); err != nil {
		// The answer can be lost although the removal committed (a
		// leader that removes itself steps down before it answers): it
		// happened if the configuration no longer has the server.
		if !removedFromConfig(rctx, t.Env, id) {
			return "", nil, fmt.Errorf("remove %s: %w", id, err)
		}
	}
	role := "follower"
	if victim == li {
		role = "leader"
	}
	heal := func(ctx context.Context) error {
		t.findings().Identity.Wiped(id)
		if err := fatal(func() { c.Rejoin(victim) }); err != nil {
			return err
		}
		return waitVoters(ctx, t.Env, c, 60*time.Second)
	}
	if err := fatal(func() { c.Kill(victim) }); err != nil {
		return "", heal, err
	}
	return fmt.Sprintf("remove voter %s (the %s) from the raft configuration and kill it (heal: wipe, rejoin)", id, role), heal, nil
}

// removedFromConfig reports whether the raft configuration, as a leader
// answers within 10 s, no longer lists id.
func removedFromConfig(ctx context.Context, env *Env, id string) bool {
	err := testcluster.Poll(ctx, 10*time.Second, func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		cl, err := env.AnyClient().Cluster(cctx)
		if err != nil {
			return false, err
		}
		for _, s := range cl.Servers {
			if s.ID == id {
				return false, fmt.Errorf("%s is still in the configuration", id)
			}
		}
		return true, nil
	})
	return err == nil
}

// waitVoters waits until the raft configuration has every controller as a
// voter.
func waitVoters(ctx context.Context, env *Env, c *testcluster.Cluster, timeout time.Duration) error {
	return testcluster.Poll(ctx, timeout, func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		cl, err := env.AnyClient().Cluster(cctx)
		if err != nil {
			return false, err
		}
		voters := 0
		for _, s := range cl.Servers {
			if s.Voter && c.Index(s.ID) >= 0 {
				voters++
			}
		}
		if voters != c.N() {
			return false, fmt.Errorf("%d of %d controllers are voters (%+v)", voters, c.N(), cl.Servers)
		}
		return true, nil
	})
}

// partition cuts the controllers into groups that cannot reach each
// other (every packet between two groups is dropped), or, oneway, drops
// only the packets from the first group to the others.
func (t *Target) partition(ctx context.Context, what string, groups [][]int, oneway bool) (string, healFunc, error) {
	c := t.C
	var pairs [][2]string
	for gi, g := range groups {
		for hi, h := range groups {
			if gi == hi || (oneway && gi != 0) {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					pairs = append(pairs, [2]string{c.IP(a), c.IP(b)})
				}
			}
		}
	}
	var gs []string
	for _, g := range groups {
		gs = append(gs, ids(c, g))
	}
	return t.cut(ctx, what+" "+strings.Join(gs, " | "), pairs)
}

// ring: the nodes in ring order perm each see their two neighbours only,
// so each sees a majority (itself and its neighbours), and no two see the
// same one.
func (t *Target) ring(ctx context.Context, perm []int) (string, healFunc, error) {
	c := t.C
	n := len(perm)
	var pairs [][2]string
	for k, a := range perm {
		for d := 2; d <= n-2; d++ {
			b := perm[(k+d)%n]
			pairs = append(pairs, [2]string{c.IP(a), c.IP(b)})
		}
	}
	return t.cut(ctx, "ring "+ids(c, perm)+" (each node sees its two neighbours only)", pairs)
}

// bridge: {perm[0], perm[1]} and {perm[3], perm[4]} cannot reach each
// other; perm[2] reaches everyone.
func (t *Target) bridge(ctx context.Context, perm []int) (string, healFunc, error) {
	c := t.C
	left, right := perm[:2], perm[3:]
	var pairs [][2]string
	for _, a := range left {
		for _, b := range right {
			pairs = append(pairs, [2]string{c.IP(a), c.IP(b)}, [2]string{c.IP(b), c.IP(a)})
		}
	}
	return t.cut(ctx, fmt.Sprintf("bridge %s | %s | %s (%s sees both sides)", ids(c, left), c.ID(perm[2]), ids(c, right), c.ID(perm[2])), pairs)
}

// iptablesComment prefixes the comment of every rule the harness adds, so
// that leftovers can be found: iptables -S INPUT | grep kumoi-jepsen.
const iptablesComment = "kumoi-jepsen"

// Firewall adds and removes the iptables rules of one harness process;
// every rule carries the comment kumoi-jepsen-<pid>.
type Firewall struct {
	mu    sync.Mutex
	rules [][]string // rule specs added to INPUT and not yet removed
}

// tag is the comment of this process' rules.
func tag() string { return iptablesComment + "-" + strconv.Itoa(os.Getpid()) }

// drop adds a rule dropping every packet from pair[0] to pair[1] (loopback
// addresses) and returns the function that removes them.
func (f *Firewall) drop(ctx context.Context, pairs [][2]string) (healFunc, error) {
	var added [][]string
	heal := func(ctx context.Context) error {
		var errs []error
		for _, spec := range added {
			errs = append(errs, f.del(context.WithoutCancel(ctx), spec))
		}
		added = nil
		return errors.Join(errs...)
	}
	for _, p := range pairs {
		if !strings.HasPrefix(p[0], "127.") || !strings.HasPrefix(p[1], "127.") {
			return heal, fmt.Errorf("refusing an iptables rule on a non-loopback address: %s -> %s", p[0], p[1])
		}
		spec := []string{"INPUT", "-s", p[0] + "/32", "-d", p[1] + "/32", "-m", "comment", "--comment", tag(), "-j", "DROP"}
		if err := iptables(ctx, "-I", spec); err != nil {
			return nil, errors.Join(err, heal(ctx))
		}
		f.mu.Lock()
		f.rules = append(f.rules, spec)
		f.mu.Unlock()
		added = append(added, spec)
	}
	return heal, nil
}

func (f *Firewall) del(ctx context.Context, spec []string) error {
	f.mu.Lock()
	f.rules = slices.DeleteFunc(f.rules, func(r []string) bool { return slices.Equal(r, spec) })
	f.mu.Unlock()
	return iptables(ctx, "-D", spec)
}

// Clear removes every INPUT rule this process added, including any that
// a failed heal left behind (found by their comment).
func (f *Firewall) Clear(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	out, err := exec.CommandContext(ctx, "iptables", "-w", "-S", "INPUT").Output()
	if err != nil {
		return fmt.Errorf("iptables -S INPUT: %w", err)
	}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "-A INPUT ") || !strings.Contains(line, tag()) {
			continue
		}
		spec := strings.Fields(strings.TrimPrefix(line, "-A "))
		errs = append(errs, iptables(ctx, "-D", spec))
	}
	f.mu.Lock()
	f.rules = nil
	f.mu.Unlock()
	return errors.Join(errs...)
}

func iptables(ctx context.Context, action string, spec []string) error {
	args := append([]string{"-w", action}, spec...)
	out, err := exec.CommandContext(ctx, "iptables", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// HealthTimeout bounds the health checks around each fault.
var HealthTimeout = 15 * time.Second

// healthy waits until every node runs, is not paused, answers its status
// and names the same leader. It returns how long that took.
func healthy(ctx context.Context, c *testcluster.Cluster) (time.Duration, error) {
	start := time.Now()
	err := testcluster.Poll(ctx, HealthTimeout, func() (bool, error) {
		live := c.Live()
		if len(live) != c.N() {
			return false, fmt.Errorf("%d of %d nodes are live", len(live), c.N())
		}
		sts, errs := c.Statuses()
		for i, err := range errs {
			return false, fmt.Errorf("%s: %w", c.ID(i), err)
		}
		lead := ""
		for _, i := range live {
			st := sts[i]
			if st.LeaderID == "" || (lead != "" && st.LeaderID != lead) {
				return false, fmt.Errorf("no agreed leader (%s names %q)", c.ID(i), st.LeaderID)
			}
			lead = st.LeaderID
		}
		return true, nil
	})
	if err != nil {
		return time.Since(start), fmt.Errorf("cluster not healthy: %w", err)
	}
	return time.Since(start), nil
}
