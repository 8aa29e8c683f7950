package scheduler

import (
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/kumoi/kumoi/resource"
)

func lhost(name string, zone string, free, total resource.Resources) Host {
	h := host(name, true, free, total)
	h.Labels = map[string]string{"zone": zone}
	h.State = resource.HostReady
	return h
}

func TestPlanRules(t *testing.T) {
	hosts := func() []Host {
		return []Host{
			lhost("h1", "a", res(8, 8192), res(8, 8192)),
			lhost("h2", "b", res(8, 4096), res(8, 8192)),
			lhost("h3", "b", res(8, 6144), res(8, 8192)),
		}
	}
	anti := func(hard bool) *resource.Affinity {
		return &resource.Affinity{Group: "db", Rule: resource.AffinityAntiAffine, Hard: hard}
	}
	aff := &resource.Affinity{Group: "web", Rule: resource.AffinityAffine, Hard: true}
	cases := []struct {
		name   string
		opt    Options
		hosts  []Host
		vms    []VM
		want   map[string]string // vm -> host ("" unplaced)
		reason map[string]string // vm -> substring of its reason
	}{
		{name: "spread by default", vms: []VM{{Name: "v", Need: res(1, 512)}}, want: map[string]string{"v": "h1"}},
		{name: "binpack by the cluster", opt: Options{Strategy: "binpack"}, vms: []VM{{Name: "v", Need: res(1, 512)}}, want: map[string]string{"v": "h2"}},
		{name: "binpack by the project", opt: Options{ProjectStrategy: map[string]string{"p1": "binpack"}},
			vms: []VM{{Name: "v", Project: "p1", Need: res(1, 512)}, {Name: "w", CreateIndex: 1, Need: res(1, 512)}}, want: map[string]string{"v": "h2", "w": "h1"}},
		{name: "VM strategy wins", opt: Options{Strategy: "binpack", ProjectStrategy: map[string]string{"default": "binpack"}},
			vms: []VM{{Name: "v", Strategy: "spread", Need: res(1, 512)}}, want: map[string]string{"v": "h1"}},
		{name: "binpack tie-break by name", opt: Options{Strategy: "binpack"},
			hosts: []Host{lhost("z", "a", res(4, 1024), res(4, 1024)), lhost("y", "a", res(4, 1024), res(4, 1024))},
			vms:   []VM{{Name: "v", Need: res(1, 512)}}, want: map[string]string{"v": "y"}},
		{name: "requirements", vms: []VM{{Name: "v", Need: res(1, 512), Requirements: `host.labels.zone == "b"`}}, want: map[string]string{"v": "h3"}},
		{name: "requirements and binpack", vms: []VM{{Name: "v", Need: res(1, 512), Strategy: "binpack", Requirements: `host.labels.zone == "b"`}}, want: map[string]string{"v": "h2"}},
		{name: "no host satisfies a clause", vms: []VM{{Name: "v", Need: res(1, 512), Requirements: `host.free_memory_mib > 1024 && host.labels.zone == "c"`}},
			want: map[string]string{"v": ""}, reason: map[string]string{"v": `no host satisfies requirement host.labels.zone == "c" (3 hosts checked)`}},
		{name: "satisfied but full", vms: []VM{{Name: "v", Need: res(1, 7000), Requirements: `host.labels.zone == "b"`}},
			want: map[string]string{"v": ""}, reason: map[string]string{"v": "no ready host satisfying the requirements has 1 CPUs"}},
		{name: "rank first", vms: []VM{{Name: "v", Need: res(1, 512), Rank: `host.name == "h2" ? 10 : 0`}}, want: map[string]string{"v": "h2"}},
		{name: "rank then strategy", vms: []VM{{Name: "v", Need: res(1, 512), Rank: `host.labels.zone == "b" ? 1 : 0`}}, want: map[string]string{"v": "h3"}},
		{name: "rank by allocation", vms: []VM{{Name: "v", Need: res(1, 512), Rank: `-host.allocated_memory_mib`}}, want: map[string]string{"v": "h1"}},
		{name: "hard anti-affinity", opt: Options{Groups: map[string]*Group{"db": {Count: map[string]int{"h1": 1}, HardAnti: map[string]bool{"h1": true}}}},
			vms: []VM{{Name: "a", Need: res(1, 512), Affinity: anti(true)}, {Name: "b", CreateIndex: 1, Need: res(1, 512), Affinity: anti(true)},
				{Name: "c", CreateIndex: 2, Need: res(1, 512), Affinity: anti(true)}},
			want: map[string]string{"a": "h3", "b": "h2", "c": ""}, reason: map[string]string{"c": "hard anti-affinity of group db"}},
		{name: "soft anti-affinity breaks with a reason",
			vms:  []VM{{Name: "a", Need: res(1, 512), Affinity: anti(false)}, {Name: "b", CreateIndex: 1, Need: res(1, 7000), Affinity: anti(false)}},
			want: map[string]string{"a": "h1", "b": "h1"}},
		{name: "hard affinity follows the members", opt: Options{Groups: map[string]*Group{"web": {Count: map[string]int{"h2": 1}}}},
			vms: []VM{{Name: "a", Need: res(1, 512), Affinity: aff}}, want: map[string]string{"a": "h2"}},
		{name: "hard affinity first member anywhere, then together",
			vms:  []VM{{Name: "a", Need: res(1, 512), Affinity: aff}, {Name: "b", CreateIndex: 1, Need: res(1, 512), Affinity: aff}},
			want: map[string]string{"a": "h1", "b": "h1"}},
		{name: "bad stored expression", vms: []VM{{Name: "v", Need: res(1, 512), Requirements: `host.nope`}},
			want: map[string]string{"v": ""}, reason: map[string]string{"v": "requirements: line 1, column 6"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hs := tc.hosts
			if hs == nil {
				hs = hosts()
			}
			p := PlanWith(hs, tc.vms, tc.opt)
			got := map[string]string{}
			reasons := map[string]string{}
			for _, pl := range p.Placements {
				got[pl.VM] = pl.Host
				reasons[pl.VM] = pl.Reason
			}
			for _, u := range p.Unplaced {
				reasons[u.VM] = u.Reason
			}
			for vm, h := range tc.want {
				if got[vm] != h {
					t.Errorf("%s on %q, want %q (plan %+v)", vm, got[vm], h, p)
				}
			}
			for vm, r := range tc.reason {
				if !strings.Contains(reasons[vm], r) {
					t.Errorf("%s: reason %q, want %q", vm, reasons[vm], r)
				}
			}
		})
	}
	// The soft case's reason names the cost.
	p := PlanWith(hosts(), []VM{{Name: "a", Need: res(1, 512), Affinity: anti(false)}, {Name: "b", CreateIndex: 1, Need: res(1, 7000), Affinity: anti(false)}}, Options{})
	if want := "placed on h1 breaking soft anti-affinity of group db (h2, h3 full)"; len(p.Placements) != 2 || p.Placements[1].Reason != want {
		t.Errorf("soft: %+v; want reason %q", p.Placements, want)
	}
}

// Whatever the hosts and VMs, a plan never overcommits a host, never puts
// a VM where its requirements fail or beside a hard anti-affine member,
// keeps hard-affine members together, and is deterministic.
func TestPlanRulesProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nh := rapid.IntRange(1, 6).Draw(t, "hosts")
		var hosts []Host
		for i := range nh {
			total := res(rapid.IntRange(1, 8).Draw(t, "cpu"), rapid.Int64Range(512, 8192).Draw(t, "mem"))
			h := lhost(fmt.Sprintf("h%d", i), rapid.SampledFrom([]string{"a", "b"}).Draw(t, "zone"), total, total)
			h.Ready = rapid.Bool().Draw(t, "ready")
			hosts = append(hosts, h)
		}
		nv := rapid.IntRange(0, 12).Draw(t, "vms")
		var vms []VM
		for i := range nv {
			vm := VM{Name: fmt.Sprintf("v%d", i), CreateIndex: uint64(i), Need: res(rapid.IntRange(1, 4).Draw(t, "c"), rapid.Int64Range(1, 4096).Draw(t, "m")),
				Strategy:     rapid.SampledFrom([]string{"", "binpack", "spread"}).Draw(t, "strategy"),
				Requirements: rapid.SampledFrom([]string{"", `host.labels.zone == "a"`, `host.free_memory_mib > 2048`}).Draw(t, "req"),
				Rank:         rapid.SampledFrom([]string{"", "-host.allocated_cpus", "host.vm_count"}).Draw(t, "rank")}
			if rapid.Bool().Draw(t, "grouped") {
				vm.Affinity = &resource.Affinity{Group: rapid.SampledFrom([]string{"g1", "g2"}).Draw(t, "group"),
					Rule: rapid.SampledFrom([]string{resource.AffinityAffine, resource.AffinityAntiAffine}).Draw(t, "rule"), Hard: rapid.Bool().Draw(t, "hard")}
			}
			vms = append(vms, vm)
		}
		p := PlanWith(hosts, append([]VM(nil), vms...), Options{})
		again := PlanWith(hosts, append([]VM(nil), vms...), Options{})
		if fmt.Sprint(p) != fmt.Sprint(again) {
			t.Fatalf("not deterministic:\n%+v\n%+v", p, again)
		}
		byName := map[string]VM{}
		for _, v := range vms {
			byName[v.Name] = v
		}
		hostBy := map[string]Host{}
		for _, h := range hosts {
			hostBy[h.Name] = h
		}
		used := map[string]resource.Resources{}
		for _, pl := range p.Placements {
			v, h := byName[pl.VM], hostBy[pl.Host]
			if !h.Ready {
				t.Fatalf("%s on a host that is not ready", pl.VM)
			}
			if v.Requirements != "" {
				e, err := resource.CompileHostExpr(v.Requirements, true)
				if err != nil {
					t.Fatal(err)
				}
				a := h
				a.Free.CPUs -= used[h.Name].CPUs
				a.Free.MemoryMiB -= used[h.Name].MemoryMiB
				if attrs := attrsOf(&a); !e.Match(&attrs) {
					t.Fatalf("%s on %s breaks %s (%+v)", pl.VM, pl.Host, v.Requirements, attrs)
				}
			}
			u := used[h.Name]
			u.CPUs += v.Need.CPUs
			u.MemoryMiB += v.Need.MemoryMiB
			used[h.Name] = u
			if u.CPUs > h.Free.CPUs || u.MemoryMiB > h.Free.MemoryMiB {
				t.Fatalf("host %s overcommitted: %+v of %+v", h.Name, u, h.Free)
			}
		}
		// Hard rules, in plan order: an anti-affine VM joins no member,
		// no member joins a hard anti-affine one, and a hard affine VM
		// joins a member when one is placed.
		members := map[string]map[string][]VM{} // group -> host -> members placed so far
		for _, pl := range p.Placements {
			v := byName[pl.VM]
			a := v.Affinity
			if a == nil {
				continue
			}
			g := members[a.Group]
			if g == nil {
				g = map[string][]VM{}
				members[a.Group] = g
			}
			here := g[pl.Host]
			if a.Hard && a.Rule == resource.AffinityAntiAffine && len(here) > 0 {
				t.Fatalf("%s (hard anti-affine) joins %s on %s", pl.VM, here[0].Name, pl.Host)
			}
			for _, m := range here {
				if m.Affinity.Hard && m.Affinity.Rule == resource.AffinityAntiAffine {
					t.Fatalf("%s joins %s (hard anti-affine) on %s", pl.VM, m.Name, pl.Host)
				}
			}
			if a.Hard && a.Rule == resource.AffinityAffine && len(g) > 0 && len(here) == 0 {
				t.Fatalf("%s (hard affine) on %s, away from its group's members %v", pl.VM, pl.Host, g)
			}
			g[pl.Host] = append(here, v)
		}
	})
}
