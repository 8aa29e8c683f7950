package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Options are what a plan needs besides hosts and VMs.
type Options struct {
	// Networks are the networks' free addresses (absent: not limited).
	Networks map[string]Network
	// Strategy is the cluster default (binpack or spread; empty:
	// spread); ProjectStrategy a project's (spec.strategy), which a
	// VM's own overrides.
	Strategy        string
	ProjectStrategy map[string]string
	// Groups are the affinity groups' placed members (GroupsFromState).
	Groups map[string]*Group
	// Exprs caches compiled expressions between rounds (nil: a new one).
	Exprs *resource.ExprCache
}

// Group is an affinity group's placed members: how many on each host,
// and the hosts holding a hard anti-affine member (no other member may
// join those).
type Group struct {
	Count    map[string]int
	HardAnti map[string]bool
}

func (g *Group) add(host string, hardAnti bool) {
	if g.Count == nil {
		g.Count = map[string]int{}
	}
	g.Count[host]++
	if hardAnti {
		if g.HardAnti == nil {
			g.HardAnti = map[string]bool{}
		}
		g.HardAnti[host] = true
	}
}

// cand is a host that may take VMs, with its attributes for the
// expressions; ver changes when a placement changes them.
type cand struct {
	Host
	attrs resource.HostAttrs
	ver   uint32
	slot  int // its position at the start (the expression caches' key)
}

type evalCache struct {
	ver []uint32
	val []float64
}

// planner is one round's state.
type planner struct {
	opt   Options
	cands []*cand // ordered by free memory, most first, then by name
	evals map[*resource.HostExpr]*evalCache
	init  []resource.HostAttrs // every ready host before the plan (reasons)
}

func attrsOf(h *Host) resource.HostAttrs {
	st := resource.HostStatus{State: h.State, Driver: h.Driver,
		Allocated: resource.Resources{CPUs: h.Total.CPUs - h.Free.CPUs, MemoryMiB: h.Total.MemoryMiB - h.Free.MemoryMiB}}
	return resource.NewHostAttrs(h.Name, h.Labels, &st, h.Total, h.VMs)
}

// PlanWith places vms (oldest first) on hosts: each VM goes to a ready
// host with room that satisfies its requirements and its hard affinity
// rule, preferring the soft one; among those the highest rank wins, then
// the strategy (binpack: least free memory first; spread: most first),
// then the host name. VMs that fit nowhere get a reason that says why
// (the requirement no host satisfies, the group rule...), but only when
// it differs from the reason they already have. The plan's placements
// are added to opt.Groups.
func PlanWith(hosts []Host, vms []VM, opt Options) fsm.PlaceRequest {
	var plan fsm.PlaceRequest
	if opt.Exprs == nil {
		opt.Exprs = resource.NewExprCache(1024)
	}
	if opt.Groups == nil {
		opt.Groups = map[string]*Group{}
	}
	nets := opt.Networks
	rs := newReasoner(hosts)
	p := &planner{opt: opt, evals: map[*resource.HostExpr]*evalCache{}}
	for i := range hosts {
		h := &hosts[i]
		if !h.Ready {
			continue
		}
		p.init = append(p.init, attrsOf(h))
		if h.Free.CPUs > 0 && h.Free.MemoryMiB > 0 {
			// The plan's copy: the caller's hosts stay as given.
			p.cands = append(p.cands, &cand{Host: *h, attrs: attrsOf(h), ver: 1, slot: len(p.cands)})
		}
	}
	if len(p.cands) > 0 {
		sort.Slice(vms, func(i, j int) bool {
			if vms[i].CreateIndex != vms[j].CreateIndex {
				return vms[i].CreateIndex < vms[j].CreateIndex
			}
			return vms[i].Name < vms[j].Name
		})
		sort.Slice(p.cands, func(i, j int) bool { return less(p.cands[i].Host, p.cands[j].Host) })
	}
	for _, vm := range vms {
		if r := blockedReason(vm, nets); r != "" {
			if r != vm.Reason {
				plan.Unplaced = append(plan.Unplaced, fsm.Unplaced{VM: vm.Name, Reason: r})
			}
			continue
		}
		i, reason, why := p.place(&vm)
		if i < 0 {
			if why == "" {
				why = rs.hostReason(vm, hosts)
			}
			if why != vm.Reason {
				plan.Unplaced = append(plan.Unplaced, fsm.Unplaced{VM: vm.Name, Reason: why})
			}
			continue
		}
		c := p.cands[i]
		for _, n := range vm.Networks {
			if nf, ok := nets[n]; ok {
				nf.Free--
				nets[n] = nf
			}
		}
		plan.Placements = append(plan.Placements, fsm.Placement{VM: vm.Name, Host: c.Name, Reason: reason})
		c.Free.CPUs -= vm.Need.CPUs
		c.Free.MemoryMiB -= vm.Need.MemoryMiB
		c.VMs++
		c.attrs = attrsOf(&c.Host)
		c.ver++
		if a := vm.Affinity; a != nil {
			g := opt.Groups[a.Group]
			if g == nil {
				g = &Group{}
				opt.Groups[a.Group] = g
			}
			g.add(c.Name, a.Hard && a.Rule == resource.AffinityAntiAffine)
		}
		// Keep "most free memory first" without a full sort: bubble the
		// host down to its place.
		for j := i; j+1 < len(p.cands) && less(p.cands[j+1].Host, p.cands[j].Host); j++ {
			p.cands[j], p.cands[j+1] = p.cands[j+1], p.cands[j]
		}
	}
	return plan
}

// cacheOf is e's cache of results by candidate.
func (p *planner) cacheOf(e *resource.HostExpr) *evalCache {
	ec := p.evals[e]
	if ec == nil {
		ec = &evalCache{ver: make([]uint32, len(p.cands)), val: make([]float64, len(p.cands))}
		p.evals[e] = ec
	}
	return ec
}

// eval is e on candidate c, cached (in ec, e's cache) until the host
// changes.
func (p *planner) eval(e *resource.HostExpr, ec *evalCache, c *cand, boolean bool) float64 {
	k := c.slot
	if ec.ver[k] == c.ver {
		return ec.val[k]
	}
	var v float64
	if boolean {
		if e.Match(&c.attrs) {
			v = 1
		}
	} else {
		v = e.Rank(&c.attrs)
	}
	ec.ver[k], ec.val[k] = c.ver, v
	return v
}

func (p *planner) strategy(vm *VM) string {
	if vm.Strategy != "" {
		return vm.Strategy
	}
	if s := p.opt.ProjectStrategy[resource.ProjectOf(vm.Project)]; s != "" {
		return s
	}
	if p.opt.Strategy != "" {
		return p.opt.Strategy
	}
	return resource.StrategySpread
}

// order visits the candidates in the strategy's order: spread in the
// list's (most free memory first, then name), binpack least free first,
// then name. visit returns false to stop.
func (p *planner) order(binpack bool, visit func(i int) bool) {
	n := len(p.cands)
	if !binpack {
		for i := 0; i < n; i++ {
			if !visit(i) {
				return
			}
		}
		return
	}
	for hi := n - 1; hi >= 0; {
		lo := hi
		for lo > 0 && p.cands[lo-1].Free.MemoryMiB == p.cands[hi].Free.MemoryMiB {
			lo--
		}
		for i := lo; i <= hi; i++ {
			if !visit(i) {
				return
			}
		}
		hi = lo - 1
	}
}

// affinityOK reports whether candidate c keeps vm's group rule (soft
// rules too when strict) and the hard anti-affine members' rules.
func (p *planner) affinityOK(vm *VM, c *cand, strict bool) bool {
	a := vm.Affinity
	if a == nil {
		return true
	}
	g := p.opt.Groups[a.Group]
	if g == nil {
		return true
	}
	if g.HardAnti[c.Name] {
		return false
	}
	if !a.Hard && !strict {
		return true
	}
	switch a.Rule {
	case resource.AffinityAntiAffine:
		return g.Count[c.Name] == 0
	case resource.AffinityAffine:
		return len(g.Count) == 0 || g.Count[c.Name] > 0
	}
	return true
}

// place picks vm's host: its index in p.cands, and the placement's
// reason; or -1 and why not ("" for the capacity reasoner's).
func (p *planner) place(vm *VM) (int, string, string) {
	var req, rank *resource.HostExpr
	var err error
	if vm.Requirements != "" {
		if req, err = p.opt.Exprs.Compile(vm.Requirements, true); err != nil {
			return -1, "", "requirements: " + err.Error()
		}
	}
	if vm.Rank != "" {
		if rank, err = p.opt.Exprs.Compile(vm.Rank, false); err != nil {
			return -1, "", "rank: " + err.Error()
		}
	}
	binpack := p.strategy(vm) == resource.StrategyBinpack
	var reqC, rankC *evalCache
	if req != nil {
		reqC = p.cacheOf(req)
	}
	if rank != nil {
		rankC = p.cacheOf(rank)
	}
	pick := func(strict bool) int {
		best, bestRank := -1, 0.0
		p.order(binpack, func(i int) bool {
			c := p.cands[i]
			if vm.Host != "" && c.Name != vm.Host {
				return true
			}
			if c.Free.CPUs < vm.Need.CPUs || c.Free.MemoryMiB < vm.Need.MemoryMiB {
				return true
			}
			// The rank first: a host that does not beat the best so
			// far needs no other check.
			var r float64
			if rank != nil {
				if rankC.ver[c.slot] == c.ver { // eval's cache, inline
					r = rankC.val[c.slot]
				} else {
					r = p.eval(rank, rankC, c, false)
				}
				if best >= 0 && r <= bestRank {
					return true
				}
			}
			if !p.affinityOK(vm, c, strict) {
				return true
			}
			if req != nil && p.eval(req, reqC, c, true) == 0 {
				return true
			}
			if rank == nil {
				best = i
				return false
			}
			best, bestRank = i, r
			return true
		})
		return best
	}
	if i := pick(true); i >= 0 {
		return i, "", ""
	}
	soft := vm.Affinity != nil && !vm.Affinity.Hard
	if soft {
		if i := pick(false); i >= 0 {
			return i, p.softCost(vm, p.cands[i].Name, req), ""
		}
	}
	return -1, "", p.whyNot(vm, req)
}

// softCost is the reason of a placement that breaks vm's soft rule: the
// hosts that keep the rule, and why they did not take it.
func (p *planner) softCost(vm *VM, host string, req *resource.HostExpr) string {
	a := vm.Affinity
	what := "anti-affinity"
	if a.Rule == resource.AffinityAffine {
		what = "affinity"
	}
	var full, failing []string
	for _, c := range p.cands {
		if c.Name == host || !p.affinityOK(vm, c, true) {
			continue
		}
		if req != nil && p.eval(req, p.cacheOf(req), c, true) == 0 {
			failing = append(failing, c.Name)
		} else {
			full = append(full, c.Name)
		}
	}
	sort.Strings(full)
	sort.Strings(failing)
	var parts []string
	if len(full) > 0 {
		parts = append(parts, listNames(full)+" full")
	}
	if len(failing) > 0 {
		parts = append(parts, listNames(failing)+" failing requirements")
	}
	if len(parts) == 0 {
		parts = append(parts, "no other host")
	}
	return fmt.Sprintf("placed on %s breaking soft %s of group %s (%s)", host, what, a.Group, strings.Join(parts, "; "))
}

func listNames(names []string) string {
	const max = 5
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
	}
	return strings.Join(names, ", ")
}

// whyNot explains a VM no host takes by its requirements or its hard
// rule, from the ready hosts as they were before the plan (stable
// reasons); "" when capacity is the reason.
func (p *planner) whyNot(vm *VM, req *resource.HostExpr) string {
	n := len(p.init)
	if n == 0 {
		return ""
	}
	if req != nil {
		sat := 0
		for i := range p.init {
			if req.Match(&p.init[i]) {
				sat++
			}
		}
		if sat == 0 {
			for _, term := range req.Terms() {
				t, err := p.opt.Exprs.Compile(term, true)
				if err != nil {
					continue
				}
				ok := false
				for i := range p.init {
					if t.Match(&p.init[i]) {
						ok = true
						break
					}
				}
				if !ok {
					return fmt.Sprintf("no host satisfies requirement %s (%d hosts checked)", term, n)
				}
			}
			return fmt.Sprintf("no host satisfies requirements %s (%d hosts checked)", vm.Requirements, n)
		}
	}
	if a := vm.Affinity; a != nil && a.Hard {
		if g := p.opt.Groups[a.Group]; g != nil && len(g.Count) > 0 {
			hosts := make([]string, 0, len(g.Count))
			for h := range g.Count {
				hosts = append(hosts, h)
			}
			sort.Strings(hosts)
			if a.Rule == resource.AffinityAntiAffine {
				return fmt.Sprintf("hard anti-affinity of group %s: no ready host with %d CPUs and %s free is without a member (members on %s)",
					a.Group, vm.Need.CPUs, resource.FormatMiB(vm.Need.MemoryMiB), listNames(hosts))
			}
			return fmt.Sprintf("hard affinity of group %s: its members' hosts (%s) do not take %d CPUs and %s now",
				a.Group, listNames(hosts), vm.Need.CPUs, resource.FormatMiB(vm.Need.MemoryMiB))
		}
	}
	if req != nil {
		return fmt.Sprintf("no ready host satisfying the requirements has %d CPUs and %s free right now (%d hosts checked)",
			vm.Need.CPUs, resource.FormatMiB(vm.Need.MemoryMiB), n)
	}
	return ""
}
