package jepsen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// PlacementLabel labels the VMs of a placement run with the run id.
const PlacementLabel = "jepsen-placement"

// The placement workload's workers are small, so that the VMs the clients
// keep (1–2 CPUs and 256–1024 MiB each; each client aims at a number of
// VMs that swings between 1 and PlacementMaxPerClient every
// PlacementPeriod) sometimes fill them: with 5 clients and 2 workers the
// demand goes from about a third of the capacity (room for the VMs of a
// dead worker elsewhere) to more than all of it (hosts full, VMs pending
// for room).
const (
	PlacementWorkerCPUs      = 10
	PlacementWorkerMemoryMiB = 5120
	// PlacementMaxPerClient is how many VMs a client aims at, at most.
	PlacementMaxPerClient = 4
	// PlacementPeriod is the period of the clients' aim.
	PlacementPeriod = 20 * time.Second
	// PlacementMaxVMs is the max_vms quota of the run's project: below
	// the demand's peak (5 clients × PlacementMaxPerClient), so that the
	// quota binds and creates are refused with 409 quota_exceeded.
	PlacementMaxVMs = 14
	// PlacementGroupShare is the share of creates that join a hard
	// anti-affine group of their client; a group has at most
	// PlacementGroupSize members (2: the two workers can hold them).
	PlacementGroupShare = 0.4
	PlacementGroupSize  = 2
	// PlacementMigrateShare is the share of the start/stop draws that
	// live-migrate one of the client's running VMs instead.
	PlacementMigrateShare = 0.35
)

// placementTarget is how many VMs a client aims at, elapsed into the run:
// from 1 up to PlacementMaxPerClient and back every PlacementPeriod.
func placementTarget(elapsed time.Duration) int {
	x := (1 - math.Cos(2*math.Pi*float64(elapsed)/float64(PlacementPeriod))) / 2
	return 1 + int(math.Round(x*float64(PlacementMaxPerClient-1)))
}

// PlacementSettleTimeout bounds the wait, after the final heal, for every
// VM to be in its final phase (see settled).
var PlacementSettleTimeout = 60 * time.Second

// placementThink is the pause between two operations of a client, drawn
// from [min, min+span): it paces the workload (VMs live several seconds,
// long enough to be caught by a worker fault), it is not a wait for a
// condition.
const (
	placementThinkMin  = 300 * time.Millisecond
	placementThinkSpan = 600 * time.Millisecond
)

// Placement is the placement workload: clients create small VMs with
// ha=restart (unique names, labelled with the run id), delete some and
// stop and start others, while the nemeses kill and partition workers and
// controllers. The workers log every domain start and stop
// (--observation-log); after the heal the workload waits until the
// cluster settles and the checker asserts, from those logs and a final
// linearizable list:
//
//   - double-run: no VM (by id) was active on two hosts at once;
//   - overcapacity: at no instant did the VMs active on a host need more
//     CPUs or memory than the host has;
//   - lost, unexpected, not-running: every acknowledged create that was
//     not deleted is present and in the phase its power asks for
//     (running, or stopped after a stop), or has a non-empty
//     status.reason; nothing deleted or never created is present;
//   - observed-mismatch: once settled, what the API says runs on a host is
//     what the host's log says is active there.
//
// A sim worker's domains die with its process, without a logged stop: an
// interval still open when the harness saw the worker exit is closed at
// that time (testcluster.Cluster.WorkerHistory), which over-covers the
// real one as the logs' own intervals do.
type Placement struct {
	// capacity is each worker host's capacity (Setup).
	capacity map[string]resource.Resources
	// project is the run's project (Setup), every VM's spec.project, and
	// maxVMs its max_vms quota.
	project string
	maxVMs  int64
	// quota reads the project's VMs and usage from Setup to Final
	// (placement_rules.go); quotaReads is what it read.
	quota      *quotaPoller
	quotaReads quotaReads
	// migrateMode is how the clients migrate (Setup, placementMigrateMode).
	migrateMode string
	// finalUsage is the project's status.usage, read with the final list;
	// settledOK says the cluster settled before it.
	finalUsage *resource.ProjectUsage
	settledOK  bool

	// Filled in by Final.
	start   time.Time // the history's time 0
	final   []placedVM
	obs     map[string][]hypervisor.Observation // host -> its log, in file order
	lives   map[string][]testcluster.ProcEvent  // host -> its worker's starts and exits
	end     time.Time                           // when the logs were read
	badLogs []string                            // unreadable observation log lines
	notes   []string

	// The libvirtd mode (Env.Daemons): the daemons, the poller that
	// reads them from Setup to the end of Final, and its reads.
	daemons       []DaemonTarget
	poller        *domainPoller
	daemonSamples []DomainSample
}

// placedVM is a VM of the final list.
type placedVM struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	Power  string `json:"power"`
	Phase  string `json:"phase"`
	Host   string `json:"host,omitempty"`
	Epoch  uint64 `json:"epoch,omitempty"`
	Reason string `json:"reason,omitempty"`
	// From the spec: the size, project and affinity (the usage check and
	// settled read them); Migrating is status.migration's target.
	CPUs       int64  `json:"cpus,omitempty"`
	MemoryMiB  int64  `json:"memory_mib,omitempty"`
	Project    string `json:"project,omitempty"`
	Group      string `json:"group,omitempty"`
	AntiAffine bool   `json:"anti_affine,omitempty"` // the group's rule is hard anti-affinity
	Migrating  string `json:"migrating,omitempty"`
}

// Name is "placement".
func (p *Placement) Name() string { return "placement" }

// WorkerArgs are the arguments of the workers the workload needs: their
// capacity.
func (p *Placement) WorkerArgs() []string {
	return []string{"--cpus", strconv.Itoa(PlacementWorkerCPUs), "--memory", strconv.Itoa(PlacementWorkerMemoryMiB) + "MiB"}
}

// Setup checks that every worker's host has the capacity the workload
// sized its VMs for, and remembers it for the checker.
func (p *Placement) Setup(ctx context.Context, env *Env) error {
	cl := env.Cluster
	if cl == nil || cl.Workers() == 0 {
		return errors.New("the placement workload needs workers (--workers N)")
	}
	p.capacity = map[string]resource.Resources{}
	for w := 0; w < cl.Workers(); w++ {
		name := cl.WorkerName(w)
		_, hs, err := cl.Host(name)
		if err != nil {
			return err
		}
		want := resource.Resources{CPUs: PlacementWorkerCPUs, MemoryMiB: PlacementWorkerMemoryMiB}
		if hs.Capacity != want {
			return fmt.Errorf("host %s has capacity %+v, want %+v (the worker's --cpus/--memory)", name, hs.Capacity, want)
		}
		p.capacity[name] = hs.Capacity
	}
	modes, err := p.workerMigrationModes(ctx, env)
	if err != nil {
		return err
	}
	p.migrateMode = placementMigrateMode(modes)
	p.notes = append(p.notes, fmt.Sprintf("migrations are %s: the workers' hosts offer %s", p.migrateMode, modesString(modes)))
	p.project, p.maxVMs = "jepsen-"+env.RunID, PlacementMaxVMs
	ac := env.AnyClient()
	err = retry(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := ac.Projects().Create(ctx, p.project, resource.ProjectSpec{MaxVMs: p.maxVMs}, map[string]string{PlacementLabel: env.RunID})
		if errors.Is(err, client.ErrAlreadyExists) {
			return nil // a retry of a create that was applied
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create the run's project %s: %w", p.project, err)
	}
	p.quota = startQuotaPoller(ac, p.project, env.RunID)
	env.onClose(func() { p.quota.Stop() })
	if len(env.Daemons) > 0 {
		p.daemons = env.Daemons
		p.poller = startDomainPoller(env.Daemons)
		env.onClose(func() { p.poller.Stop() })
	}
	return nil
}

// PlacementMigrateMode, if set (live or restart), is how the clients
// migrate; empty: placementMigrateMode of what the workers offer.
var PlacementMigrateMode = ""

// workerMigrationModes waits (up to 10 s: the leader copies them from the
// workers' gossip) until every worker's host says which migration modes
// it takes, and returns them by host.
func (p *Placement) workerMigrationModes(ctx context.Context, env *Env) (map[string][]string, error) {
	cl := env.Cluster
	modes := map[string][]string{}
	err := pollEvery(ctx, 10*time.Second, 100*time.Millisecond, func() bool {
		for w := 0; w < cl.Workers(); w++ {
			name := cl.WorkerName(w)
			if _, hs, err := cl.Host(name); err == nil {
				modes[name] = hs.MigrationModes
			}
		}
		for w := 0; w < cl.Workers(); w++ {
			if len(modes[cl.WorkerName(w)]) == 0 {
				return false
			}
		}
		return true
	})
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return modes, nil // a host without modes refuses migrations: the clients try anyway
}

// placementMigrateMode is live when every worker's host takes live
// migrations, else restart when every one takes those (the sim workers of
// the harness: each is its own process, and the sim driver migrates live
// only between hosts of one process), else live (and refused).
func placementMigrateMode(modes map[string][]string) string {
	if PlacementMigrateMode != "" {
		return PlacementMigrateMode
	}
	every := func(mode string) bool {
		for _, m := range modes {
			if !slices.Contains(m, mode) {
				return false
			}
		}
		return len(modes) > 0
	}
	if !every(resource.MigrationLive) && every(resource.MigrationRestart) {
		return resource.MigrationRestart
	}
	return resource.MigrationLive
}

func modesString(modes map[string][]string) string {
	var parts []string
	for _, h := range slices.Sorted(maps.Keys(modes)) {
		parts = append(parts, fmt.Sprintf("%s %v", h, modes[h]))
	}
	return strings.Join(parts, ", ")
}

// vmSize is a VM's size, recorded in its create's input.
type vmSize struct{ CPUs, MemoryMiB int64 }

func (s vmSize) String() string { return fmt.Sprintf("cpus=%d memory_mib=%d", s.CPUs, s.MemoryMiB) }

func parseSize(v string) (vmSize, bool) {
	var s vmSize
	if _, err := fmt.Sscanf(v, "cpus=%d memory_mib=%d", &s.CPUs, &s.MemoryMiB); err != nil {
		return vmSize{}, false
	}
	return s, true
}

// createInput is a create's input: the size, then project=P and, for a
// member of a hard anti-affine group, group=G (the checker reads them).
func createInput(size vmSize, project, group string) string {
	v := size.String()
	if project != "" {
		v += " project=" + project
	}
	if group != "" {
		v += " group=" + group
	}
	return v
}

// inputField is the value of key=value in a create's input ("" if none).
func inputField(input, key string) string {
	for _, f := range strings.Fields(input) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// clientVM is a VM a client may have: its create was acknowledged or had
// an unknown outcome, and no delete of it was acknowledged.
type clientVM struct {
	name    string
	stopped bool // the last power action the client issued was a stop
}

// Run creates, deletes, stops and starts VMs, pacing itself.
func (p *Placement) Run(ctx context.Context, env *Env, worker int, process func() int, rng *rand.Rand, h *History) {
	c := env.Client(env.URLs[worker%len(env.URLs)])
	proc := process()
	var mine []*clientVM
	group, members := 0, 0 // the client's current anti-affine group, and its members so far
	began := time.Now()
	for n := 0; ; n++ {
		if !sleepCtx(ctx, placementThinkMin+time.Duration(rng.Int63n(int64(placementThinkSpan)))) || !env.Wait(ctx) {
			return
		}
		target := placementTarget(time.Since(began))
		r := rng.Float64()
		var st Status
		switch {
		case len(mine) == 0 || (len(mine) < target && r < 0.6):
			size := vmSize{CPUs: 1, MemoryMiB: []int64{256, 512, 1024}[rng.Intn(3)]}
			if rng.Intn(10) < 3 {
				size.CPUs = 2
			}
			name := fmt.Sprintf("pl-%d-%d-c%dm%d", worker, n, size.CPUs, size.MemoryMiB)
			g := ""
			if rng.Float64() < PlacementGroupShare {
				g = fmt.Sprintf("g%d-%d", worker, group)
			}
			if st = p.create(ctx, env, c, proc, name, size, g, h); st != StatusFail {
				mine = append(mine, &clientVM{name: name})
				if g != "" {
					if members++; members >= PlacementGroupSize {
						group, members = group+1, 0
					}
				}
			}
		case (len(mine) > target && r < 0.6) || r < 0.1:
			k := rng.Intn(len(mine))
			var gone bool
			st, gone = deleteVM(ctx, env, c, proc, mine[k].name, h)
			if gone {
				mine = append(mine[:k], mine[k+1:]...)
			}
		case rng.Float64() < PlacementMigrateShare && slices.ContainsFunc(mine, func(v *clientVM) bool { return !v.stopped }):
			// Live-migrate one of the VMs the client did not stop.
			var up []int
			for i, v := range mine {
				if !v.stopped {
					up = append(up, i)
				}
			}
			k := up[rng.Intn(len(up))]
			var gone bool
			if st, gone = p.migrate(ctx, env, c, proc, mine[k].name, h); gone {
				mine = append(mine[:k], mine[k+1:]...)
			}
		default:
			// Start a stopped VM if there is one, else stop one: few
			// VMs are stopped at a time (a stopped VM keeps its
			// reservation but runs nothing).
			k := rng.Intn(len(mine))
			for i, v := range mine {
				if v.stopped {
					k = i
					break
				}
			}
			v := mine[k]
			action := client.ActionStop
			if v.stopped {
				action = client.ActionStart
			}
			var gone bool
			st, gone = p.power(ctx, env, c, proc, v.name, action, h)
			switch {
			case gone:
				mine = append(mine[:k], mine[k+1:]...)
			case st != StatusFail:
				v.stopped = action == client.ActionStop
			}
		}
		proc = afterOp(ctx, st, proc, process)
	}
}

// create creates name in the run's project, in the hard anti-affine
// group if one is given. A create the quota refuses has the output
// "refused: quota".
func (p *Placement) create(ctx context.Context, env *Env, c *client.Client, proc int, name string, size vmSize, group string, h *History) Status {
	vs := resource.VMSpec{CPUs: int(size.CPUs), MemoryMiB: size.MemoryMiB, HA: resource.HARestart, Power: resource.PowerRunning,
		Project: p.project}
	if group != "" {
		vs.Affinity = &resource.Affinity{Group: group, Rule: resource.AffinityAntiAffine, Hard: true}
	}
	spec, err := json.Marshal(vs)
	if err != nil {
		panic(err)
	}
	op := Op{Process: proc, Kind: "create", Key: name, Input: Value{Value: createInput(size, p.project, group)}, Invoke: h.Now()}
	octx, cancel := context.WithTimeout(ctx, env.OpTimeout)
	defer cancel()
	obj, err := c.Create(octx, resource.KindVM, resource.CreateRequest{Name: name,
		Labels: map[string]string{PlacementLabel: env.RunID}, Spec: spec})
	st := writeOutcome(err)
	switch {
	case err == nil:
		op.Output = Value{Value: obj.ID}
	case st == StatusFail && errors.Is(err, client.ErrQuotaExceeded):
		op.Output = Value{Value: refusedQuota}
	}
	h.Add(op, st, err)
	return st
}

// Outputs of refused creates and migrations, for the notes.
const (
	refusedQuota    = "refused: quota"
	refusedAffinity = "refused: affinity"
)

// migrate migrates name live (or by restart: migrateMode) to the host the
// scheduler picks (ok: the migration began, its output says from where to
// where and its id, or "cold" when the VM ran nowhere and moved at once;
// fail: refused, e.g. a 409 because no host may take it, the output says
// "refused: affinity" when the hard anti-affinity rule is why); gone says
// it does not exist.
func (p *Placement) migrate(ctx context.Context, env *Env, c *client.Client, proc int, name string, h *History) (Status, bool) {
	mode := p.migrateMode
	if mode == "" {
		mode = resource.MigrationLive
	}
	op := Op{Process: proc, Kind: "migrate", Key: name, Input: Value{Value: mode}, Invoke: h.Now()}
	octx, cancel := context.WithTimeout(ctx, env.OpTimeout)
	defer cancel()
	vm, err := c.VMs().MigrateWith(octx, name, client.MigrateOptions{Live: mode == resource.MigrationLive, Restart: mode == resource.MigrationRestart})
	st := writeOutcome(err)
	switch {
	case err == nil && vm.Status.Migration != nil:
		m := vm.Status.Migration
		op.Output = Value{Value: fmt.Sprintf("from=%s to=%s id=%d mode=%s", vm.Status.Host, m.Target, m.ID, m.Mode)}
	case err == nil:
		op.Output = Value{Value: "cold to=" + vm.Status.Host}
	case st == StatusFail && strings.Contains(err.Error(), "affinity"):
		op.Output = Value{Value: refusedAffinity}
	}
	h.Add(op, st, err)
	return st, errors.Is(err, client.ErrNotFound)
}

// deleteVM deletes the VM name (the delete op of the ipam and placement
// workloads); gone says the client should forget it (deleted, maybe
// deleted, or not there).
func deleteVM(ctx context.Context, env *Env, c *client.Client, proc int, name string, h *History) (Status, bool) {
	op := Op{Process: proc, Kind: "delete", Key: name, Invoke: h.Now()}
	octx, cancel := context.WithTimeout(ctx, env.OpTimeout)
	defer cancel()
	_, err := c.Delete(octx, resource.KindVM, name, nil)
	st := writeOutcome(err)
	h.Add(op, st, err)
	return st, st != StatusFail || errors.Is(err, client.ErrNotFound)
}

// power stops or starts name; gone says it does not exist.
func (p *Placement) power(ctx context.Context, env *Env, c *client.Client, proc int, name, action string, h *History) (Status, bool) {
	op := Op{Process: proc, Kind: action, Key: name, Invoke: h.Now()}
	octx, cancel := context.WithTimeout(ctx, env.OpTimeout)
	defer cancel()
	_, err := c.Action(octx, name, action)
	st := writeOutcome(err)
	h.Add(op, st, err)
	return st, errors.Is(err, client.ErrNotFound)
}

// Final waits, after the heal, until every worker's host is ready and the
// cluster has settled (settled: each VM in the phase its power asks for,
// or pending with a reason and room nowhere, or failed or lost with a
// reason, and what each host's observation log says is active there is
// what the API says runs there), up to PlacementSettleTimeout; then it
// keeps the last linearizable list of the run's VMs and the observation
// logs for the checker. Not settling is not an error: the checker reports
// what is wrong.
func (p *Placement) Final(ctx context.Context, env *Env, h *History) error {
	p.start = h.start
	cl := env.Cluster
	c := env.AnyClient()
	began := time.Now()
	var why string
	var listed int64
	err := pollEvery(ctx, PlacementSettleTimeout, 250*time.Millisecond, func() bool {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		invoke := h.Now()
		objs, _, err := c.List(lctx, resource.KindVM, &client.QueryOptions{Selector: PlacementLabel + "=" + env.RunID})
		if err != nil {
			why = "list VMs: " + err.Error()
			return false
		}
		final, err := finalVMs(objs)
		if err != nil {
			why = err.Error()
			return false
		}
		hosts, _, err := c.List(lctx, resource.KindHost, nil)
		if err != nil {
			why = "list hosts: " + err.Error()
			return false
		}
		proj, _, err := c.Projects().Get(lctx, p.project, nil)
		if err != nil {
			why = "get project " + p.project + ": " + err.Error()
			return false
		}
		usage := proj.Status.Usage
		p.final, listed, p.finalUsage = final, invoke, &usage
		p.readLogs(cl)
		var ok bool
		ok, why = p.settled(hosts)
		return ok
	})
	// The daemons' and the quota poller's last reads follow the final list.
	p.daemonSamples = p.poller.Stop()
	p.quotaReads = p.quota.Stop()
	if p.final == nil {
		return fmt.Errorf("final list: %v: %s", err, why)
	}
	h.Add(Op{Process: -1, Kind: "list", Invoke: listed, Output: Value{Value: fmt.Sprintf("%d objects", len(p.final))}}, StatusOK, nil)
	if err != nil {
		p.notes = append(p.notes, fmt.Sprintf("the cluster did not settle within %s of the final heal: %s (checked as it was)", PlacementSettleTimeout, why))
	} else {
		p.settledOK = true
		p.notes = append(p.notes, fmt.Sprintf("settled %s after the leader was agreed", time.Since(began).Round(time.Millisecond)))
	}
	return nil
}

func finalVMs(objs []*resource.Object) ([]placedVM, error) {
	out := make([]placedVM, 0, len(objs))
	for _, o := range objs {
		vm, err := client.NewVM(o)
		if err != nil {
			return nil, err
		}
		v := placedVM{Name: o.Name, ID: o.ID, Power: vm.Spec.Power, Phase: vm.Status.Phase,
			Host: vm.Status.Host, Epoch: vm.Status.Epoch, Reason: vm.Status.Reason,
			CPUs: int64(vm.Spec.CPUs), MemoryMiB: vm.Spec.MemoryMiB, Project: resource.ProjectOf(vm.Spec.Project)}
		if a := vm.Spec.Affinity; a != nil {
			v.Group, v.AntiAffine = a.Group, a.Rule == resource.AffinityAntiAffine && a.Hard
		}
		if m := vm.Status.Migration; m != nil {
			v.Migrating = m.Target
		}
		out = append(out, v)
	}
	return out, nil
}

// pollEvery calls cond every interval until it returns true (nil), or
// timeout passes or ctx ends (an error).
func pollEvery(ctx context.Context, timeout, interval time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %s", timeout)
		}
		if !sleepCtx(ctx, interval) {
			return ctx.Err()
		}
	}
	return nil
}

// readLogs reads every worker's observation log and process history; the
// time it is done is the end of the open intervals.
func (p *Placement) readLogs(cl *testcluster.Cluster) {
	p.obs = map[string][]hypervisor.Observation{}
	p.lives = map[string][]testcluster.ProcEvent{}
	p.badLogs = nil
	for w := 0; w < cl.Workers(); w++ {
		host := cl.WorkerName(w)
		p.lives[host] = cl.WorkerHistory(w)
		obs, bad, err := ReadObservations(cl.WorkerObservationLog(w))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			bad = append(bad, err.Error())
		}
		p.obs[host] = obs
		p.badLogs = append(p.badLogs, bad...)
	}
	p.end = time.Now()
}

// ReadObservations reads an observation log (one hypervisor.Observation
// JSON line per domain start and stop). bad describes lines that are not
// observations; a last line without its newline (being written) is
// skipped silently.
func ReadObservations(path string) (obs []hypervisor.Observation, bad []string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if i := bytes.LastIndexByte(b, '\n'); i < len(b)-1 {
		b = b[:i+1]
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var o hypervisor.Observation
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil || o.Time.IsZero() || (o.Event != hypervisor.ObserveStart && o.Event != hypervisor.ObserveStop) {
			bad = append(bad, fmt.Sprintf("%s:%d: not an observation: %q", path, n, truncateString(sc.Text(), 200)))
			continue
		}
		obs = append(obs, o)
	}
	return obs, bad, sc.Err()
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// settled reports whether the final state is stable, and why not.
func (p *Placement) settled(hostObjs []*resource.Object) (bool, string) {
	free := map[string]resource.Resources{}
	for _, h := range hostObjs {
		if _, ours := p.capacity[h.Name]; !ours {
			continue
		}
		hs, err := resource.DecodeStatus[resource.HostStatus](h)
		if err != nil {
			return false, err.Error()
		}
		if hs.State != resource.HostReady {
			return false, fmt.Sprintf("host %s is %s (%s)", h.Name, hs.State, hs.Reason)
		}
		free[h.Name] = resource.Resources{CPUs: hs.Capacity.CPUs - hs.Allocated.CPUs, MemoryMiB: hs.Capacity.MemoryMiB - hs.Allocated.MemoryMiB}
	}
	for host := range p.capacity {
		if _, ok := free[host]; !ok {
			return false, "no host object for " + host
		}
	}
	sizes := map[string]vmSize{}
	for _, v := range p.final {
		if s, ok := sizeFromName(v.Name); ok {
			sizes[v.Name] = s
		}
	}
	for _, v := range p.final {
		if v.Phase == resource.PowerPhase(v.Power) {
			continue
		}
		switch {
		case v.Reason == "":
			return false, fmt.Sprintf("vm %s is %s (power %s) without a reason", v.Name, v.Phase, v.Power)
		case v.Phase == resource.PhasePending:
			s := sizes[v.Name]
			taken := groupHosts(p.final, v)
			for host, f := range free {
				if taken[host] != "" {
					continue // a member of its hard anti-affine group is there
				}
				if int64(f.CPUs) >= s.CPUs && f.MemoryMiB >= s.MemoryMiB {
					return false, fmt.Sprintf("vm %s (%s) is pending (%s) but fits on %s (%d CPUs, %d MiB free)", v.Name, s, v.Reason, host, f.CPUs, f.MemoryMiB)
				}
			}
		case v.Phase != resource.PhaseFailed && v.Phase != resource.PhaseLost:
			return false, fmt.Sprintf("vm %s is %s (power %s): %s", v.Name, v.Phase, v.Power, v.Reason)
		}
	}
	if d := p.mismatches(p.intervals()); len(d) > 0 {
		return false, d[0]
	}
	return true, ""
}

// groupHosts maps the hosts that hold the other members of v's hard
// anti-affine group (placed there, or migrating to them) to one of those
// members; nil if v is in no such group.
func groupHosts(final []placedVM, v placedVM) map[string]string {
	if !v.AntiAffine || v.Group == "" {
		return nil
	}
	out := map[string]string{}
	for _, o := range final {
		if o.Name == v.Name || o.Group != v.Group || !o.AntiAffine {
			continue
		}
		for _, h := range []string{o.Host, o.Migrating} {
			if h != "" {
				out[h] = o.Name
			}
		}
	}
	return out
}

// sizeFromName reads the size a client put in a VM's name
// (pl-<client>-<n>-c<cpus>m<memory>); the checker uses the creates' input.
func sizeFromName(name string) (vmSize, bool) {
	i := strings.LastIndexByte(name, '-')
	var s vmSize
	if i < 0 {
		return s, false
	}
	if _, err := fmt.Sscanf(name[i+1:], "c%dm%d", &s.CPUs, &s.MemoryMiB); err != nil {
		return vmSize{}, false
	}
	return s, true
}

// Interval is a domain's active time on a host, from its worker's
// observation log: from the start line to the stop line, or to the exit
// of the worker's process (ClosedBy "exit": its sim domains died with it),
// or to the end of the run (ClosedBy "end": still active).
type Interval struct {
	Host     string    `json:"host"`
	Domain   string    `json:"domain"`
	VM       string    `json:"vm"`
	VMID     string    `json:"vm_id"`
	Epoch    uint64    `json:"epoch"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	ClosedBy string    `json:"closed_by"` // "stop", "exit", "pause" (libvirtd mode) or "end"
	Reason   string    `json:"reason,omitempty"`
}

// key identifies the VM instance of an interval: its id, else its domain.
func (iv Interval) key() string {
	if iv.VMID != "" {
		return iv.VMID
	}
	return "domain:" + iv.Domain
}

// intervals turns the observation logs and the workers' exits into
// intervals, sorted by start.
func (p *Placement) intervals() []Interval {
	hosts := map[string]bool{}
	for h := range p.obs {
		hosts[h] = true
	}
	for h := range p.lives {
		hosts[h] = true
	}
	var out []Interval
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		out = append(out, hostIntervals(h, p.obs[h], p.lives[h], p.end, len(p.daemons) > 0)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// hostIntervals pairs one host's start and stop lines (in time order,
// file order for equal times) and closes what is open at each exit of its
// worker, and at end. With atPause (the libvirtd mode) it also closes
// them when the harness paused the worker: the domains live on in the
// daemon, but the worker no longer observes them, and what happens to them
// meanwhile (a fence guard destroying them) it logs only when it runs
// again, late; the daemon reads cover that time. Closing early
// under-covers, so a log double run is still one that happened.
func hostIntervals(host string, obs []hypervisor.Observation, lives []testcluster.ProcEvent, end time.Time, atPause bool) []Interval {
	type ev struct {
		t    time.Time
		o    *hypervisor.Observation // nil: an exit (or pause) of the worker
		seq  int
		exit bool
		by   string // what closes the open intervals: "exit" or "pause"
	}
	var evs []ev
	for i := range obs {
		evs = append(evs, ev{t: obs[i].Time, o: &obs[i], seq: i})
	}
	for _, l := range lives {
		if l.Kind == testcluster.ProcExit || (atPause && l.Kind == testcluster.ProcPause) {
			evs = append(evs, ev{t: l.Time, exit: true, seq: len(obs) + len(evs), by: l.Kind})
		}
	}
	sort.SliceStable(evs, func(i, j int) bool {
		if !evs[i].t.Equal(evs[j].t) {
			return evs[i].t.Before(evs[j].t)
		}
		return evs[i].seq < evs[j].seq
	})
	var out []Interval
	open := map[string]*Interval{}
	var order []string
	closeAll := func(t time.Time, by string) {
		for _, d := range order {
			if iv := open[d]; iv != nil {
				iv.End, iv.ClosedBy = t, by
				out = append(out, *iv)
				delete(open, d)
			}
		}
		order = order[:0]
	}
	for _, e := range evs {
		if e.exit {
			closeAll(e.t, e.by)
			continue
		}
		o := e.o
		switch o.Event {
		case hypervisor.ObserveStart:
			if open[o.Domain] != nil {
				continue // the observer writes one start per activation
			}
			open[o.Domain] = &Interval{Host: host, Domain: o.Domain, VM: strings.TrimPrefix(o.Domain, hypervisor.DomainPrefix),
				VMID: o.VMID, Epoch: o.Epoch, Start: o.Time, Reason: o.Reason}
			order = append(order, o.Domain)
		case hypervisor.ObserveStop:
			if iv := open[o.Domain]; iv != nil {
				iv.End, iv.ClosedBy = o.Time, "stop"
				if o.Reason != "" {
					iv.Reason = strings.TrimPrefix(iv.Reason+"; stop: "+o.Reason, "; ")
				}
				out = append(out, *iv)
				delete(open, o.Domain)
			}
		}
	}
	if end.IsZero() {
		end = time.Now()
	}
	closeAll(end, "end")
	return out
}

// mismatches compares what the final list says runs where with what the
// observation logs say is active at the end; in the libvirtd mode, with
// what each daemon's last successful read lists (daemonMismatches).
func (p *Placement) mismatches(ivs []Interval) []string {
	if len(p.daemons) > 0 {
		return p.daemonMismatches()
	}
	active := map[string]map[string]Interval{} // host -> vm name -> interval
	for _, iv := range ivs {
		if iv.ClosedBy != "end" {
			continue
		}
		if active[iv.Host] == nil {
			active[iv.Host] = map[string]Interval{}
		}
		active[iv.Host][iv.VM] = iv
	}
	var out []string
	running := map[string]map[string]bool{}
	for _, v := range p.final {
		if v.Phase != resource.PhaseRunning {
			continue
		}
		if running[v.Host] == nil {
			running[v.Host] = map[string]bool{}
		}
		running[v.Host][v.Name] = true
		iv, ok := active[v.Host][v.Name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("vm %s is running on %s (epoch %d) for the API, but no domain of it is active in %s's observation log", v.Name, v.Host, v.Epoch, v.Host))
		case iv.VMID != "" && iv.VMID != v.ID:
			out = append(out, fmt.Sprintf("vm %s (id %s) is running on %s for the API, but the active domain there is of VM id %s", v.Name, v.ID, v.Host, iv.VMID))
		}
	}
	for _, h := range slices.Sorted(maps.Keys(active)) {
		for _, n := range slices.Sorted(maps.Keys(active[h])) {
			if !running[h][n] {
				iv := active[h][n]
				out = append(out, fmt.Sprintf("domain %s (VM id %s, epoch %d) is active on %s since %s, but the API does not say it runs there", iv.Domain, iv.VMID, iv.Epoch, h, p.at(iv.Start)))
			}
		}
	}
	return out
}

// daemonMismatches compares what the final list says runs where with the
// Kumoi domains of each daemon's last successful read (taken after the
// final list once Final is done).
func (p *Placement) daemonMismatches() []string {
	samples := p.daemonSamples
	if samples == nil && p.poller != nil {
		p.poller.mu.Lock()
		samples = append([]DomainSample(nil), p.poller.samples...)
		p.poller.mu.Unlock()
	}
	last := map[string]DomainSample{}
	for _, s := range samples {
		if s.Err == "" && s.End.After(last[s.Host].End) {
			last[s.Host] = s
		}
	}
	var out []string
	running := map[string]map[string]bool{} // host -> domain
	for _, v := range p.final {
		if v.Phase != resource.PhaseRunning {
			continue
		}
		dom := hypervisor.DomainPrefix + v.Name
		if running[v.Host] == nil {
			running[v.Host] = map[string]bool{}
		}
		running[v.Host][dom] = true
		s, ok := last[v.Host]
		if !ok {
			out = append(out, fmt.Sprintf("vm %s is running on %s (epoch %d) for the API, but %s's daemon has not been read successfully", v.Name, v.Host, v.Epoch, v.Host))
			continue
		}
		if !slices.ContainsFunc(s.Domains, func(d ActiveDomain) bool { return d.Name == dom }) {
			out = append(out, fmt.Sprintf("vm %s is running on %s (epoch %d) for the API, but %s's daemon did not list %s as active (read at %s)", v.Name, v.Host, v.Epoch, v.Host, dom, p.at(s.Start)))
		}
	}
	for _, d := range p.daemons {
		s := last[d.Host]
		for _, dom := range s.Domains {
			if kumoiDomain(dom.Name) && !running[d.Host][dom.Name] {
				out = append(out, fmt.Sprintf("domain %s (id %d) is active in %s's daemon (read at %s), but the API does not say it runs there", dom.Name, dom.ID, d.Host, p.at(s.Start)))
			}
		}
	}
	return out
}

// at formats t as the time since the start of the history, and the clock.
func (p *Placement) at(t time.Time) string {
	rel := "?"
	if !p.start.IsZero() {
		rel = t.Sub(p.start).Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%s (%s)", rel, t.UTC().Format("15:04:05.000000"))
}

// maxPerType bounds the anomalies of one type a check reports in full;
// the rest are counted in a last one.
const maxPerType = 20

// Check checks the observation logs and the final list against the
// history (see Placement), and writes intervals.json to out. Its steps
// add their anomalies in this order: unreadable log lines, double runs,
// overcapacity, anti-affinity, the final list, quota, the API against the
// hosts' logs.
func (p *Placement) Check(ops []Op, _ []FaultWindow, out string) Check {
	var chk Check
	h := indexPlacementOps(ops)
	for _, b := range p.badLogs {
		chk.add(Anomaly{Type: "bad-observation-log", Detail: b})
	}
	ivs := p.intervals()
	if out != "" {
		if err := writeJSON(filepath.Join(out, "intervals.json"), map[string]any{"intervals": ivs, "workers": p.lives}); err != nil {
			chk.Notes = append(chk.Notes, "intervals.json: "+err.Error())
		}
		if p.project != "" {
			if err := writeJSON(filepath.Join(out, "quota.json"), map[string]any{"project": p.project, "max_vms": p.maxVMs,
				"reads": p.quotaReads, "final_usage": p.finalUsage}); err != nil {
				chk.Notes = append(chk.Notes, "quota.json: "+err.Error())
			}
		}
	}
	moved, replaced := p.checkDoubleRuns(&chk, ivs, h)
	if len(p.daemons) > 0 {
		p.checkDaemons(&chk, h, out)
	}
	peaks := p.checkCapacity(&chk, ivs, h)
	p.checkAntiAffinity(&chk, ivs, h)
	fin := p.checkFinal(&chk, h)
	p.checkQuota(&chk, h)
	p.checkObserved(&chk, ivs)
	chk.Notes = append(chk.Notes, p.notes...)
	chk.Notes = append(chk.Notes, p.checkNotes(ivs, moved, replaced, peaks, fin)...)
	chk.Notes = append(chk.Notes, p.rulesNotes(h)...)
	chk.Notes = append(chk.Notes, h.createsNote(fin.present))
	chk.Valid = len(chk.Anomalies) == 0
	return chk
}

// add records an anomaly.
func (c *Check) add(a Anomaly) { c.Anomalies = append(c.Anomalies, a) }

// placementOps is a placement history indexed by VM name.
type placementOps struct {
	sizes   map[string]vmSize // from the creates' input
	byVM    map[string][]Op
	creates map[string]Op
	deleted map[string]Status // strongest delete outcome: ok > unknown
}

func indexPlacementOps(ops []Op) placementOps {
	h := placementOps{sizes: map[string]vmSize{}, byVM: map[string][]Op{}, creates: map[string]Op{}, deleted: map[string]Status{}}
	for _, op := range ops {
		if op.Key == "" {
			continue
		}
		h.byVM[op.Key] = append(h.byVM[op.Key], op)
		switch op.Kind {
		case "create":
			h.creates[op.Key] = op
			if s, ok := parseSize(op.Input.Value); ok {
				h.sizes[op.Key] = s
			}
		case "delete":
			if op.Status == StatusOK || (op.Status == StatusUnknown && h.deleted[op.Key] != StatusOK) {
				h.deleted[op.Key] = op.Status
			}
		}
	}
	return h
}

// of returns the operations on the VMs names, in history order.
func (h placementOps) of(names ...string) []Op {
	var o []Op
	for _, n := range names {
		o = append(o, h.byVM[n]...)
	}
	sortOps(o)
	return o
}

// checkDoubleRuns (a): no VM active on two hosts at once. It also counts
// the VMs that ran on more than one host (in turn) and under more than one
// placement epoch.
func (p *Placement) checkDoubleRuns(chk *Check, ivs []Interval, h placementOps) (moved, replaced int) {
	byKey := map[string][]Interval{}
	var keys []string
	for _, iv := range ivs {
		if byKey[iv.key()] == nil {
			keys = append(keys, iv.key())
		}
		byKey[iv.key()] = append(byKey[iv.key()], iv)
	}
	sort.Strings(keys)
	doubles := 0
	for _, k := range keys {
		list := byKey[k]
		hosts := map[string]bool{}
		epochs := map[uint64]bool{}
		for _, iv := range list {
			hosts[iv.Host], epochs[iv.Epoch] = true, true
		}
		if len(hosts) > 1 {
			moved++
		}
		if len(epochs) > 1 {
			replaced++
		}
		for i := range list {
			for j := i + 1; j < len(list); j++ {
				a, b := list[i], list[j]
				if a.Host == b.Host || !a.Start.Before(b.End) || !b.Start.Before(a.End) {
					continue
				}
				doubles++
				if doubles > maxPerType {
					continue
				}
				chk.add(Anomaly{Type: "double-run", Key: a.VM, Detail: fmt.Sprintf(
					"VM %s (id %s) was active on two hosts at once for %s: on %s epoch %d from %s to %s (%s), and on %s epoch %d from %s to %s (%s)%s",
					a.VM, a.VMID, overlap(a, b), a.Host, a.Epoch, p.at(a.Start), p.at(a.End), a.ClosedBy,
					b.Host, b.Epoch, p.at(b.Start), p.at(b.End), b.ClosedBy, h.aroundMigration(a.VM)), Ops: h.of(a.VM)})
			}
		}
	}
	if doubles > maxPerType {
		chk.add(Anomaly{Type: "double-run", Detail: fmt.Sprintf("%d more overlapping pairs of intervals (intervals.json)", doubles-maxPerType)})
	}
	return moved, replaced
}

// checkDaemons (a, from the daemons themselves): no VM's domain certainly
// active on two libvirt daemons at once (daemons.go); it writes every
// activation the reads saw to domains.json in out.
func (p *Placement) checkDaemons(chk *Check, h placementOps, out string) {
	var kumoi []DomainSample
	for _, s := range p.daemonSamples {
		k := s
		k.Domains = nil
		for _, d := range s.Domains {
			if kumoiDomain(d.Name) {
				k.Domains = append(k.Domains, d)
			}
		}
		kumoi = append(kumoi, k)
	}
	spans := domainSpans(kumoi)
	if out != "" {
		var failed []DomainSample
		for _, s := range p.daemonSamples {
			if s.Err != "" {
				failed = append(failed, s)
			}
		}
		if err := writeJSON(filepath.Join(out, "domains.json"), map[string]any{"daemons": p.daemons, "activations": spans, "failed_reads": failed}); err != nil {
			chk.Notes = append(chk.Notes, "domains.json: "+err.Error())
		}
	}
	chk.Notes = append(chk.Notes, daemonSummary(p.daemonSamples, spans))
	if len(p.daemonSamples) == 0 {
		chk.add(Anomaly{Type: "daemon-reads", Detail: "the libvirt daemons were never read: the run cannot be checked for double runs from the daemons"})
		return
	}
	doubles := daemonDoubleRuns(spans)
	for i, d := range doubles {
		if i == maxPerType {
			chk.add(Anomaly{Type: "double-run", Detail: fmt.Sprintf("%d more domains certainly active on two daemons at once (domains.json)", len(doubles)-i)})
			break
		}
		vm := strings.TrimPrefix(d.Domain, hypervisor.DomainPrefix)
		when := fmt.Sprintf("for at least %s, from %s to %s", d.To.Sub(d.From).Round(time.Millisecond), p.at(d.From), p.at(d.To))
		if d.Instant {
			when = fmt.Sprintf("at an instant between %s and %s (a read of one daemon within the other's certain span)", p.at(d.From), p.at(d.To))
		}
		span := func(s DomainSpan) string {
			if s.Certain() {
				return fmt.Sprintf("daemon of %s, domain id %d, certainly active from %s to %s (%d reads)", s.Host, s.ID, p.at(s.From), p.at(s.To), s.Reads)
			}
			return fmt.Sprintf("daemon of %s, domain id %d, seen active in %d read(s) from %s to %s", s.Host, s.ID, s.Reads, p.at(s.FirstStart), p.at(s.LastEnd))
		}
		chk.add(Anomaly{Type: "double-run", Key: vm, Detail: fmt.Sprintf(
			"VM %s: its domain %s was active in two libvirt daemons at once %s, as the daemons themselves listed it: %s, and %s",
			vm, d.Domain, when, span(d.A), span(d.B)), Ops: h.of(vm)})
	}
}

// checkCapacity (b): no host over capacity at any instant. It returns the
// peak use of each host.
func (p *Placement) checkCapacity(chk *Check, ivs []Interval, h placementOps) (peaks []string) {
	unknown := map[string]bool{} // VMs no client created
	byHost := map[string][]Interval{}
	for _, iv := range ivs {
		byHost[iv.Host] = append(byHost[iv.Host], iv)
	}
	for _, host := range slices.Sorted(maps.Keys(byHost)) {
		capa, known := p.capacity[host]
		if !known {
			chk.add(Anomaly{Type: "unknown-host", Key: host, Detail: "domains were observed on a host that is not one of the run's workers: " + host})
			continue
		}
		peaks = append(peaks, p.checkHostCapacity(chk, host, capa, byHost[host], h, unknown))
	}
	if len(unknown) > 0 {
		names := slices.Sorted(maps.Keys(unknown))
		chk.add(Anomaly{Type: "unknown-domain", Detail: fmt.Sprintf("%d domains of VMs no client created were active: %s", len(names), strings.Join(names, ", "))})
	}
	return peaks
}

// checkHostCapacity sweeps one host's intervals in time order; it reports
// the first start that found the host over capacity (and counts the
// others), adds the VMs of unknown size to unknown and returns the host's
// peak use.
func (p *Placement) checkHostCapacity(chk *Check, host string, capa resource.Resources, ivs []Interval, h placementOps, unknown map[string]bool) (peak string) {
	type point struct {
		t     time.Time
		start bool
		iv    Interval
	}
	var pts []point
	for _, iv := range ivs {
		if _, ok := h.sizes[iv.VM]; !ok {
			unknown[iv.VM] = true
			continue
		}
		pts = append(pts, point{iv.Start, true, iv}, point{iv.End, false, iv})
	}
	sort.SliceStable(pts, func(i, j int) bool {
		if !pts[i].t.Equal(pts[j].t) {
			return pts[i].t.Before(pts[j].t)
		}
		return !pts[i].start && pts[j].start // an end at t frees before a start at t takes
	})
	var cpus, mem, peakCPU, peakMem int64
	active := map[string]Interval{}
	over := 0
	for _, pt := range pts {
		s := h.sizes[pt.iv.VM]
		if !pt.start {
			cpus, mem = cpus-s.CPUs, mem-s.MemoryMiB
			delete(active, pt.iv.Domain+"@"+pt.iv.Start.String())
			continue
		}
		cpus, mem = cpus+s.CPUs, mem+s.MemoryMiB
		active[pt.iv.Domain+"@"+pt.iv.Start.String()] = pt.iv
		peakCPU, peakMem = max(peakCPU, cpus), max(peakMem, mem)
		if cpus <= int64(capa.CPUs) && mem <= capa.MemoryMiB {
			continue
		}
		over++
		if over > 1 {
			continue
		}
		var vms []string
		var names []string
		for _, iv := range active {
			names = append(names, iv.VM)
			vms = append(vms, fmt.Sprintf("%s [%s, epoch %d, since %s]", iv.VM, h.sizes[iv.VM], iv.Epoch, p.at(iv.Start)))
		}
		sort.Strings(vms)
		sort.Strings(names)
		chk.add(Anomaly{Type: "overcapacity", Key: host, Detail: fmt.Sprintf(
			"host %s (%d CPUs, %d MiB) had %d CPUs and %d MiB of domains active at %s, when %s started: %s",
			host, capa.CPUs, capa.MemoryMiB, cpus, mem, p.at(pt.t), pt.iv.VM, strings.Join(vms, "; ")), Ops: h.of(names...)})
	}
	if over > 1 {
		chk.add(Anomaly{Type: "overcapacity", Key: host, Detail: fmt.Sprintf("host %s: %d more domain starts found it over capacity (intervals.json)", host, over-1)})
	}
	return fmt.Sprintf("%s %d/%d CPUs %d/%d MiB", host, peakCPU, capa.CPUs, peakMem, capa.MemoryMiB)
}

// finalSummary is what checkFinal found in the final list, for the notes.
type finalSummary struct {
	present map[string]placedVM // by name
	phases  map[string]int      // VMs by phase
	reasons map[string]int      // VMs not in their power's phase, by phase and reason class
}

// checkFinal (c): every acknowledged VM that was not deleted is in the
// final list, and running (or stopped, as asked) or has a reason; nothing
// else is.
func (p *Placement) checkFinal(chk *Check, h placementOps) finalSummary {
	fin := finalSummary{present: map[string]placedVM{}, phases: map[string]int{}, reasons: map[string]int{}}
	dup := map[string]bool{}
	for _, v := range p.final {
		if _, ok := fin.present[v.Name]; ok {
			dup[v.Name] = true
		}
		fin.present[v.Name] = v
	}
	var lost, unexpected, notRunning []string
	var lostOps, unexpectedOps, notRunningOps []Op
	for name, op := range h.creates {
		if _, ok := fin.present[name]; !ok && op.Status == StatusOK && h.deleted[name] == "" {
			lost = append(lost, name)
			lostOps = append(lostOps, h.of(name)...)
		}
	}
	for _, v := range p.final {
		op, attempted := h.creates[v.Name]
		switch {
		case !attempted || op.Status == StatusFail:
			unexpected = append(unexpected, v.Name+" (never created)")
			unexpectedOps = append(unexpectedOps, h.of(v.Name)...)
		case h.deleted[v.Name] == StatusOK:
			unexpected = append(unexpected, v.Name+" (deleted)")
			unexpectedOps = append(unexpectedOps, h.of(v.Name)...)
		}
		fin.phases[v.Phase]++
		if v.Phase != resource.PowerPhase(v.Power) {
			if v.Reason == "" {
				notRunning = append(notRunning, fmt.Sprintf("%s is %s (power %s, host %q) with no reason", v.Name, v.Phase, v.Power, v.Host))
				notRunningOps = append(notRunningOps, h.of(v.Name)...)
			} else {
				fin.reasons[v.Phase+": "+reasonClass(v.Reason)]++
			}
		}
	}
	for _, l := range [][]string{lost, unexpected, notRunning} {
		sort.Strings(l)
	}
	if len(lost) > 0 {
		chk.add(Anomaly{Type: "lost", Detail: fmt.Sprintf("%d acknowledged creates, never deleted, are missing from the final list: %s", len(lost), strings.Join(lost, ", ")), Ops: lostOps})
	}
	if len(unexpected) > 0 {
		chk.add(Anomaly{Type: "unexpected", Detail: fmt.Sprintf("%d VMs are present that should not be: %s", len(unexpected), strings.Join(unexpected, ", ")), Ops: unexpectedOps})
	}
	if len(dup) > 0 {
		chk.add(Anomaly{Type: "duplicate", Detail: "names listed more than once: " + strings.Join(slices.Sorted(maps.Keys(dup)), ", ")})
	}
	if len(notRunning) > 0 {
		chk.add(Anomaly{Type: "not-running", Detail: fmt.Sprintf("%d VMs are neither in the phase their power asks for nor have a reason: %s", len(notRunning), strings.Join(notRunning, "; ")), Ops: notRunningOps})
	}
	return fin
}

// checkObserved: once settled, the API and the hosts agree.
func (p *Placement) checkObserved(chk *Check, ivs []Interval) {
	mm := p.mismatches(ivs)
	for i, m := range mm {
		if i == maxPerType {
			chk.add(Anomaly{Type: "observed-mismatch", Detail: fmt.Sprintf("%d more (intervals.json)", len(mm)-i)})
			break
		}
		chk.add(Anomaly{Type: "observed-mismatch", Detail: m})
	}
}

// checkNotes says what the run exercised: the observations, the peak use
// of each host and the final list.
func (p *Placement) checkNotes(ivs []Interval, moved, replaced int, peaks []string, fin finalSummary) []string {
	closed := map[string]int{}
	for _, iv := range ivs {
		closed[iv.ClosedBy]++
	}
	nObs := 0
	for _, o := range p.obs {
		nObs += len(o)
	}
	kills := 0
	for _, l := range p.lives {
		for _, e := range l {
			if e.Kind == testcluster.ProcExit {
				kills++
			}
		}
	}
	paused := ""
	if closed["pause"] > 0 {
		paused = fmt.Sprintf(", %d by a worker pause", closed["pause"])
	}
	return []string{
		fmt.Sprintf("observations: %d lines from %d hosts, %d intervals (%d closed by a stop, %d by a worker exit (%d exits)%s, %d active at the end); %d VMs ran under more than one placement epoch, %d on more than one host (in turn)",
			nObs, len(p.obs), len(ivs), closed["stop"], closed["exit"], kills, paused, closed["end"], replaced, moved),
		"peak use of each host: " + strings.Join(peaks, "; "),
		fmt.Sprintf("final list: %d VMs, by phase %s; not in their power's phase, with a reason: %s", len(p.final), countString(fin.phases), countString(fin.reasons)),
	}
}

// createsNote counts the creates, and those of unknown outcome by whether
// their VM is in the final list.
func (h placementOps) createsNote(present map[string]placedVM) string {
	var unknownPresent, unknownAbsent int
	for name, op := range h.creates {
		if op.Status == StatusUnknown {
			if _, ok := present[name]; ok {
				unknownPresent++
			} else {
				unknownAbsent++
			}
		}
	}
	return fmt.Sprintf("creates: %d attempted; of unknown outcome: %d present, %d absent", len(h.creates), unknownPresent, unknownAbsent)
}

// overlap is how long two intervals overlap.
func overlap(a, b Interval) time.Duration {
	s, e := a.Start, a.End
	if b.Start.After(s) {
		s = b.Start
	}
	if b.End.Before(e) {
		e = b.End
	}
	return e.Sub(s)
}

// reasonClass shortens a reason for counting: without the VM and host
// names and numbers that differ between VMs.
func reasonClass(r string) string {
	f := strings.FieldsFunc(r, func(c rune) bool { return c == ':' || c == ';' || c == '(' })
	if len(f) == 0 {
		return r
	}
	return strings.TrimSpace(f[0])
}

func countString(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
