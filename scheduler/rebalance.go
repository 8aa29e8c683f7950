package scheduler

import (
	"fmt"
	"math"
	"sort"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Rebalancing (kumoi host rebalance, POST /v1/rebalance): migrations that
// move the cluster toward its placement strategy. Rebalance is pure and
// deterministic: the same hosts and VMs give the same moves. The state
// machine checks every move again when the controllers propose it.

// DefaultRebalanceMax is how many moves a rebalance proposes at most when
// asked for none in particular; DefaultRebalanceThreshold the smallest
// gain (in free-memory fraction, 0.05 = 5 points) a spread move must make.
const (
	DefaultRebalanceMax       = 5
	DefaultRebalanceThreshold = 0.05
)

// Move modes (Move.Mode): live moves a running VM, cold one that runs
// nowhere (the state machine's MigrateRequest.Mode "" ).
const (
	MoveLive = resource.MigrationLive
	MoveCold = "cold"
)

// RebalanceHost is a host as Rebalance sees it: Host (Ready means ready
// and schedulable; only those take part), and whether its worker takes
// live migrations (resource.HostStatus.CanMigrate(live)).
type RebalanceHost struct {
	Host
	Live bool
}

// RebalanceVM is a VM placed on a host.
type RebalanceVM struct {
	Name string
	Host string
	Need resource.Resources
	// Running: the VM runs (it can only move live). Otherwise it is
	// stopped and moves cold.
	Running bool
	// Fixed: the VM counts where it is but never moves (it is starting,
	// suspended, failed, its volumes tie it to its host...).
	Fixed bool
	// Migrating: a migration is under way (to Target, where it counts
	// too); it never moves.
	Migrating    bool
	Target       string
	Requirements string
	Affinity     *resource.Affinity
}

// Move is one migration a rebalance proposes.
type Move struct {
	VM     string `json:"vm"`
	From   string `json:"from"`
	To     string `json:"to"`
	Mode   string `json:"mode"` // live or cold
	Reason string `json:"reason"`
}

// RebalanceOptions: the cluster's strategy (spread, binpack; "" is
// spread), at most Max moves (0: DefaultRebalanceMax) and, for spread, the
// smallest gain a move must make (0: DefaultRebalanceThreshold).
type RebalanceOptions struct {
	Strategy  string
	Max       int
	Threshold float64
	Exprs     *resource.ExprCache
}

// rbHost is a host during a rebalance.
type rbHost struct {
	*RebalanceHost
	vms []*RebalanceVM // placed here, by name
}

func (h *rbHost) freeFrac() float64 {
	if h.Total.MemoryMiB <= 0 {
		return 0
	}
	return float64(h.Free.MemoryMiB) / float64(h.Total.MemoryMiB)
}

// rbGroup counts an affinity group's members per host.
type rbGroup struct {
	count    map[string]int
	hardAnti map[string]int
}

type rebalancer struct {
	opt    RebalanceOptions
	hosts  []*rbHost // ready hosts, by name
	byName map[string]*rbHost
	groups map[string]*rbGroup
}

// Rebalance returns at most opt.Max moves toward the strategy:
//
//   - spread: from the most loaded host (least free memory, as a fraction
//     of its capacity) to the least loaded, the VM whose move narrows the
//     gap between the two the most, while it narrows it by more than the
//     threshold; when no VM of that pair can move, the next pair;
//   - binpack: the least loaded hosts are emptied onto fuller ones (least
//     free memory first), a host only when all its VMs can go.
//
// Every move keeps the target within its free capacity, satisfies the
// VM's requirements and its affinity rule (a move never breaks a rule,
// hard or soft, nor joins a hard anti-affine member); a running VM moves
// live, only between hosts that both take live migrations, a stopped one
// cold; a VM that migrates, or is Fixed, never moves. Only ready hosts
// take part.
func Rebalance(hosts []RebalanceHost, vms []RebalanceVM, opt RebalanceOptions) []Move {
	if opt.Max <= 0 {
		opt.Max = DefaultRebalanceMax
	}
	if opt.Threshold <= 0 {
		opt.Threshold = DefaultRebalanceThreshold
	}
	if opt.Exprs == nil {
		opt.Exprs = resource.NewExprCache(256)
	}
	r := &rebalancer{opt: opt, byName: map[string]*rbHost{}, groups: map[string]*rbGroup{}}
	hs := make([]RebalanceHost, len(hosts))
	copy(hs, hosts)
	for i := range hs {
		if !hs[i].Ready || hs[i].Total.MemoryMiB <= 0 {
			continue
		}
		h := &rbHost{RebalanceHost: &hs[i]}
		r.hosts = append(r.hosts, h)
		r.byName[h.Name] = h
	}
	sort.Slice(r.hosts, func(i, j int) bool { return r.hosts[i].Name < r.hosts[j].Name })
	vs := make([]RebalanceVM, len(vms))
	copy(vs, vms)
	sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
	for i := range vs {
		v := &vs[i]
		if h := r.byName[v.Host]; h != nil {
			h.vms = append(h.vms, v)
		}
		if a := v.Affinity; a != nil {
			for _, host := range []string{v.Host, v.Target} {
				if host != "" {
					r.group(a.Group).add(host, a, 1)
				}
			}
		}
	}
	if len(r.hosts) < 2 {
		return nil
	}
	if opt.Strategy == resource.StrategyBinpack {
		return r.binpack()
	}
	return r.spread()
}

func (r *rebalancer) group(name string) *rbGroup {
	g := r.groups[name]
	if g == nil {
		g = &rbGroup{count: map[string]int{}, hardAnti: map[string]int{}}
		r.groups[name] = g
	}
	return g
}

func (g *rbGroup) add(host string, a *resource.Affinity, n int) {
	g.count[host] += n
	if a.Hard && a.Rule == resource.AffinityAntiAffine {
		g.hardAnti[host] += n
	}
}

// mode is how v moves from its host to to: live, cold, or "" (it cannot).
func (r *rebalancer) mode(v *RebalanceVM, from, to *rbHost) string {
	switch {
	case v.Fixed || v.Migrating:
		return ""
	case v.Running && from.Live && to.Live:
		return MoveLive
	case v.Running:
		return ""
	}
	return MoveCold
}

// fits reports whether v may go to host to (it is not there): capacity,
// requirements, affinity.
func (r *rebalancer) fits(v *RebalanceVM, to *rbHost) bool {
	if to.Free.CPUs < v.Need.CPUs || to.Free.MemoryMiB < v.Need.MemoryMiB {
		return false
	}
	if v.Requirements != "" {
		e, err := r.opt.Exprs.Compile(v.Requirements, true)
		if err != nil {
			return false
		}
		attrs := attrsOf(&to.Host)
		if !e.Match(&attrs) {
			return false
		}
	}
	a := v.Affinity
	if a == nil {
		return true
	}
	g := r.group(a.Group)
	if g.hardAnti[to.Name] > 0 {
		return false // a hard anti-affine member is there
	}
	others := func(host string) int {
		n := g.count[host]
		if host == v.Host {
			n-- // v leaves it
		}
		return n
	}
	switch a.Rule {
	case resource.AffinityAntiAffine:
		return others(to.Name) == 0
	case resource.AffinityAffine:
		placed := false
		for host := range g.count {
			if others(host) > 0 {
				placed = true
				break
			}
		}
		return !placed || others(to.Name) > 0
	}
	return true
}

// apply moves v to host to in the rebalancer's view.
func (r *rebalancer) apply(v *RebalanceVM, from, to *rbHost) {
	from.Free.CPUs += v.Need.CPUs
	from.Free.MemoryMiB += v.Need.MemoryMiB
	from.VMs--
	to.Free.CPUs -= v.Need.CPUs
	to.Free.MemoryMiB -= v.Need.MemoryMiB
	to.VMs++
	for i, x := range from.vms {
		if x == v {
			from.vms = append(from.vms[:i:i], from.vms[i+1:]...)
			break
		}
	}
	to.vms = append(to.vms, v)
	sort.Slice(to.vms, func(i, j int) bool { return to.vms[i].Name < to.vms[j].Name })
	if a := v.Affinity; a != nil {
		g := r.group(a.Group)
		g.add(from.Name, a, -1)
		g.add(to.Name, a, 1)
	}
	v.Host = to.Name
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

// spread moves VMs from the most loaded hosts to the least loaded.
func (r *rebalancer) spread() []Move {
	var moves []Move
	for len(moves) < r.opt.Max {
		m, ok := r.spreadMove()
		if !ok {
			break
		}
		moves = append(moves, m)
	}
	return moves
}

// spreadMove finds the next spread move and applies it.
func (r *rebalancer) spreadMove() (Move, bool) {
	order := append([]*rbHost(nil), r.hosts...)
	sort.SliceStable(order, func(i, j int) bool {
		fi, fj := order[i].freeFrac(), order[j].freeFrac()
		if fi != fj {
			return fi < fj
		}
		return order[i].Name < order[j].Name
	})
	// Sources most loaded first, targets least loaded first.
	for si := 0; si < len(order); si++ {
		src := order[si]
		for ti := len(order) - 1; ti > si; ti-- {
			dst := order[ti]
			before := dst.freeFrac() - src.freeFrac()
			if before <= r.opt.Threshold {
				break // the gap only narrows from here on
			}
			var best *RebalanceVM
			bestGain, bestMode := 0.0, ""
			for _, v := range src.vms {
				mode := r.mode(v, src, dst)
				if mode == "" || !r.fits(v, dst) {
					continue
				}
				fs := float64(src.Free.MemoryMiB+v.Need.MemoryMiB) / float64(src.Total.MemoryMiB)
				fd := float64(dst.Free.MemoryMiB-v.Need.MemoryMiB) / float64(dst.Total.MemoryMiB)
				gain := before - math.Abs(fd-fs)
				if gain > r.opt.Threshold && gain > bestGain {
					best, bestGain, bestMode = v, gain, mode
				}
			}
			if best == nil {
				continue
			}
			reason := fmt.Sprintf("spread: %s has %s of its memory free, %s %s", src.Name, pct(src.freeFrac()), dst.Name, pct(dst.freeFrac()))
			r.apply(best, src, dst)
			reason += fmt.Sprintf("; after the move %s and %s", pct(src.freeFrac()), pct(dst.freeFrac()))
			return Move{VM: best.Name, From: src.Name, To: dst.Name, Mode: bestMode, Reason: reason}, true
		}
	}
	return Move{}, false
}

// binpack empties the least loaded hosts onto fuller ones.
func (r *rebalancer) binpack() []Move {
	order := append([]*rbHost(nil), r.hosts...)
	used := func(h *rbHost) int64 { return h.Total.MemoryMiB - h.Free.MemoryMiB }
	sort.SliceStable(order, func(i, j int) bool {
		ui, uj := used(order[i]), used(order[j])
		if ui != uj {
			return ui < uj
		}
		return order[i].Name < order[j].Name
	})
	var moves []Move
	emptied := map[string]bool{}
	for si, src := range order {
		if len(moves) >= r.opt.Max {
			break
		}
		if len(src.vms) == 0 {
			emptied[src.Name] = true
			continue
		}
		// Targets: the hosts after src in the order, not emptied, least
		// free memory first.
		var targets []*rbHost
		for _, t := range order[si+1:] {
			if !emptied[t.Name] {
				targets = append(targets, t)
			}
		}
		planned, ok := r.emptyHost(src, targets)
		if !ok {
			continue
		}
		n := len(src.vms)
		for _, p := range planned {
			if len(moves) >= r.opt.Max {
				break
			}
			reason := fmt.Sprintf("binpack: empties %s (%d VMs, %s used, the least loaded host)", src.Name, n, resource.FormatMiB(used(src)))
			mode := r.mode(p.vm, src, p.to)
			r.apply(p.vm, src, p.to)
			moves = append(moves, Move{VM: p.vm.Name, From: src.Name, To: p.to.Name, Mode: mode, Reason: reason})
		}
		if len(src.vms) == 0 {
			emptied[src.Name] = true
		}
	}
	return moves
}

type plannedMove struct {
	vm *RebalanceVM
	to *rbHost
}

// emptyHost plans where every VM of src goes (without applying it), or
// says that some VM cannot go anywhere.
func (r *rebalancer) emptyHost(src *rbHost, targets []*rbHost) ([]plannedMove, bool) {
	// Simulate the moves, then undo them.
	var planned []plannedMove
	ok := true
	for _, v := range append([]*RebalanceVM(nil), src.vms...) {
		sort.SliceStable(targets, func(i, j int) bool {
			if targets[i].Free.MemoryMiB != targets[j].Free.MemoryMiB {
				return targets[i].Free.MemoryMiB < targets[j].Free.MemoryMiB
			}
			return targets[i].Name < targets[j].Name
		})
		var to *rbHost
		for _, t := range targets {
			if r.mode(v, src, t) != "" && r.fits(v, t) {
				to = t
				break
			}
		}
		if to == nil {
			ok = false
			break
		}
		planned = append(planned, plannedMove{vm: v, to: to})
		r.apply(v, src, to)
	}
	// Undo the simulation.
	for i := len(planned) - 1; i >= 0; i-- {
		p := planned[i]
		r.apply(p.vm, p.to, src)
	}
	if !ok {
		return nil, false
	}
	return planned, true
}

// RebalanceFromState is Rebalance over the state: every host, and every
// VM placed on one (a running VM moves live; a stopped one cold unless
// its volumes tie it to its host; the others stay).
func RebalanceFromState(st *fsm.Store, opt RebalanceOptions) ([]Move, error) {
	hosts, err := HostsFromState(st)
	if err != nil {
		return nil, err
	}
	rhosts := make([]RebalanceHost, 0, len(hosts))
	for _, h := range hosts {
		rh := RebalanceHost{Host: h}
		if ho, err := st.Get(nil, resource.KindHost, h.Name); err == nil && ho != nil {
			if hs, err := resource.DecodeStatus[resource.HostStatus](ho); err == nil {
				rh.Live = hs.CanMigrate(resource.MigrationLive)
			}
		}
		rhosts = append(rhosts, rh)
	}
	objs, err := st.List(nil, resource.KindVM, nil)
	if err != nil {
		return nil, err
	}
	var vms []RebalanceVM
	for _, o := range objs {
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil {
			continue
		}
		vs, err := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil || vs.Host == "" {
			continue
		}
		v := RebalanceVM{Name: o.Name, Host: vs.Host, Need: resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB},
			Requirements: spec.Requirements, Affinity: spec.Affinity}
		switch {
		case vs.Migration != nil:
			v.Migrating, v.Target = true, vs.Migration.Target
		case vs.Phase == resource.PhaseRunning && spec.Power == resource.PowerRunning:
			v.Running = true
		case vs.Phase == resource.PhaseStopped && spec.Power == resource.PowerStopped:
			for _, d := range spec.Disks {
				if d.Volume != "" {
					v.Fixed = true // a cold move would need its volumes there
				}
			}
		default:
			v.Fixed = true
		}
		vms = append(vms, v)
	}
	return Rebalance(rhosts, vms, opt), nil
}
