package scheduler

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/kumoi/kumoi/resource"
)

// rbHostOf is a ready host with capacity cpus/mem (MiB) and used of it.
func rbHostOf(name string, cpus int, mem int64, usedCPUs int, usedMem int64, live bool) RebalanceHost {
	return RebalanceHost{Host: Host{Name: name, Ready: true, State: resource.HostReady,
		Total: resource.Resources{CPUs: cpus, MemoryMiB: mem},
		Free:  resource.Resources{CPUs: cpus - usedCPUs, MemoryMiB: mem - usedMem}}, Live: live}
}

// cluster builds hosts from the VMs placed on them (Free = Total - sum).
func rbCluster(hosts []RebalanceHost, vms []RebalanceVM) []RebalanceHost {
	out := append([]RebalanceHost(nil), hosts...)
	for i := range out {
		for _, v := range vms {
			for _, h := range []string{v.Host, v.Target} {
				if h == out[i].Name {
					out[i].Free.CPUs -= v.Need.CPUs
					out[i].Free.MemoryMiB -= v.Need.MemoryMiB
					out[i].VMs++
				}
			}
		}
	}
	return out
}

func rvm(name, host string, mem int64, running bool) RebalanceVM {
	return RebalanceVM{Name: name, Host: host, Need: resource.Resources{CPUs: 1, MemoryMiB: mem}, Running: running}
}

func TestRebalanceTable(t *testing.T) {
	anti := &resource.Affinity{Group: "g", Rule: resource.AffinityAntiAffine, Hard: true}
	withAff := func(v RebalanceVM, a *resource.Affinity) RebalanceVM { v.Affinity = a; return v }
	withReq := func(v RebalanceVM, req string) RebalanceVM { v.Requirements = req; return v }
	fixed := func(v RebalanceVM) RebalanceVM { v.Fixed = true; return v }
	migrating := func(v RebalanceVM, to string) RebalanceVM { v.Migrating, v.Target = true, to; return v }
	h := func(name string, live bool) RebalanceHost { return rbHostOf(name, 16, 16384, 0, 0, live) }
	tests := []struct {
		name     string
		hosts    []RebalanceHost
		vms      []RebalanceVM
		strategy string
		max      int
		want     []string // "vm from→to mode"
	}{
		{
			name:  "balanced: nothing to do",
			hosts: []RebalanceHost{h("a", true), h("b", true)},
			vms:   []RebalanceVM{rvm("v1", "a", 4096, true), rvm("v2", "b", 4096, true)},
			want:  nil,
		},
		{
			name:  "spread: the VM that closes the gap best moves live",
			hosts: []RebalanceHost{h("a", true), h("b", true)},
			vms:   []RebalanceVM{rvm("v1", "a", 4096, true), rvm("v2", "a", 2048, true), rvm("v3", "a", 8192, true)},
			want:  []string{"v3 a→b live"},
		},
		{
			name:  "spread: stopped VMs move cold, running ones not without live",
			hosts: []RebalanceHost{h("a", false), h("b", false)},
			vms:   []RebalanceVM{rvm("run", "a", 8192, true), rvm("stop", "a", 4096, false)},
			want:  []string{"stop a→b cold"},
		},
		{
			name:  "spread: a running VM does not move to a host without live",
			hosts: []RebalanceHost{h("a", true), h("b", false)},
			vms:   []RebalanceVM{rvm("run", "a", 8192, true)},
			want:  nil,
		},
		{
			name:  "spread: never a migrating or fixed VM",
			hosts: []RebalanceHost{h("a", true), h("b", true), h("c", true)},
			vms:   []RebalanceVM{migrating(rvm("m", "a", 4096, true), "c"), fixed(rvm("f", "a", 4096, true))},
			want:  nil,
		},
		{
			name:  "spread: requirements hold",
			hosts: []RebalanceHost{h("a", true), h("b", true)},
			vms:   []RebalanceVM{withReq(rvm("v1", "a", 8192, true), `name == "a"`)},
			want:  nil,
		},
		{
			name:  "spread: hard anti-affinity holds",
			hosts: []RebalanceHost{h("a", true), h("b", true), h("c", true)},
			vms: []RebalanceVM{withAff(rvm("g1", "a", 4096, true), anti), withAff(rvm("g2", "a", 4096, true), anti),
				withAff(rvm("g3", "b", 1024, true), anti), rvm("x", "c", 1024, true)},
			// (an impossible start: two hard anti-affine members on a)
			// g1 may go to c only (b holds g3).
			want: []string{"g1 a→c live", "x c→b live"},
		},
		{
			name:  "spread: max bounds the moves",
			hosts: []RebalanceHost{h("a", true), h("b", true)},
			vms: []RebalanceVM{rvm("v1", "a", 1024, true), rvm("v2", "a", 1024, true), rvm("v3", "a", 1024, true),
				rvm("v4", "a", 1024, true), rvm("v5", "a", 1024, true), rvm("v6", "a", 1024, true)},
			max:  2,
			want: []string{"v1 a→b live", "v2 a→b live"},
		},
		{
			name:     "binpack: empties the least loaded host",
			strategy: resource.StrategyBinpack,
			hosts:    []RebalanceHost{h("a", true), h("b", true), h("c", true)},
			vms:      []RebalanceVM{rvm("v1", "a", 8192, true), rvm("v2", "b", 2048, true), rvm("v3", "c", 4096, true)},
			want:     []string{"v2 b→a live", "v3 c→a live"},
		},
		{
			name:     "binpack: a host with a VM that cannot move stays",
			strategy: resource.StrategyBinpack,
			hosts:    []RebalanceHost{h("a", true), h("b", true)},
			vms:      []RebalanceVM{rvm("v1", "a", 8192, true), rvm("v2", "b", 1024, true), fixed(rvm("v3", "b", 1024, true))},
			want:     nil,
		},
		{
			name:     "binpack: capacity holds",
			strategy: resource.StrategyBinpack,
			hosts:    []RebalanceHost{h("a", true), h("b", true)},
			vms:      []RebalanceVM{rvm("v1", "a", 12288, true), rvm("v2", "b", 6144, true)},
			want:     nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			moves := Rebalance(rbCluster(tt.hosts, tt.vms), tt.vms, RebalanceOptions{Strategy: tt.strategy, Max: tt.max})
			var got []string
			for _, m := range moves {
				got = append(got, fmt.Sprintf("%s %s→%s %s", m.VM, m.From, m.To, m.Mode))
				if m.Reason == "" {
					t.Errorf("move %v has no reason", m)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("moves = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRebalanceSpreadConverges(t *testing.T) {
	hosts := []RebalanceHost{rbHostOf("a", 32, 32768, 0, 0, true), rbHostOf("b", 32, 32768, 0, 0, true), rbHostOf("c", 32, 32768, 0, 0, true)}
	var vms []RebalanceVM
	for i := range 12 {
		vms = append(vms, rvm(fmt.Sprintf("v%02d", i), "a", 2048, true))
	}
	moves := Rebalance(rbCluster(hosts, vms), vms, RebalanceOptions{Max: 100})
	count := map[string]int{"a": 12}
	for _, m := range moves {
		count[m.From]--
		count[m.To]++
	}
	for _, h := range []string{"a", "b", "c"} {
		if count[h] < 3 || count[h] > 5 {
			t.Fatalf("after %d moves the hosts hold %v; want about 4 each", len(moves), count)
		}
	}
}

// TestRebalanceProperties: on random clusters the moves never overcommit
// a host, never break a hard anti-affinity rule, never exceed max, never
// move a migrating or fixed VM, move running VMs live only between live
// hosts, and are the same on every call.
func TestRebalanceProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 5))
	for iter := range 300 {
		nh := 2 + rng.IntN(5)
		var hosts []RebalanceHost
		for i := range nh {
			hosts = append(hosts, rbHostOf(fmt.Sprintf("h%d", i), 8+rng.IntN(24), int64(8192+1024*rng.IntN(24)), 0, 0, rng.IntN(4) != 0))
		}
		used := map[string]resource.Resources{}
		var vms []RebalanceVM
		for i := range rng.IntN(30) {
			h := hosts[rng.IntN(nh)]
			v := rvm(fmt.Sprintf("vm%02d", i), h.Name, int64(512*(1+rng.IntN(8))), rng.IntN(3) != 0)
			v.Need.CPUs = 1 + rng.IntN(4)
			u := used[h.Name]
			if u.CPUs+v.Need.CPUs > h.Total.CPUs || u.MemoryMiB+v.Need.MemoryMiB > h.Total.MemoryMiB {
				continue
			}
			switch rng.IntN(10) {
			case 0:
				v.Fixed = true
			case 1, 2:
				v.Affinity = &resource.Affinity{Group: fmt.Sprintf("g%d", rng.IntN(2)), Rule: resource.AffinityAntiAffine, Hard: true}
			}
			u.CPUs += v.Need.CPUs
			u.MemoryMiB += v.Need.MemoryMiB
			used[h.Name] = u
			vms = append(vms, v)
		}
		for _, strategy := range []string{resource.StrategySpread, resource.StrategyBinpack} {
			maxMoves := 1 + rng.IntN(6)
			hs := rbCluster(hosts, vms)
			opt := RebalanceOptions{Strategy: strategy, Max: maxMoves}
			moves := Rebalance(hs, vms, opt)
			if again := Rebalance(hs, vms, opt); !reflect.DeepEqual(moves, again) {
				t.Fatalf("iter %d %s: not deterministic:\n%v\n%v", iter, strategy, moves, again)
			}
			if len(moves) > maxMoves {
				t.Fatalf("iter %d %s: %d moves, max %d", iter, strategy, len(moves), maxMoves)
			}
			checkMoves(t, fmt.Sprintf("iter %d %s", iter, strategy), hs, vms, moves)
		}
	}
}

// checkMoves applies the moves in order and checks every invariant.
func checkMoves(t *testing.T, what string, hosts []RebalanceHost, vms []RebalanceVM, moves []Move) {
	t.Helper()
	free := map[string]resource.Resources{}
	live := map[string]bool{}
	for _, h := range hosts {
		free[h.Name] = h.Free
		live[h.Name] = h.Live
	}
	byName := map[string]*RebalanceVM{}
	vs := append([]RebalanceVM(nil), vms...)
	for i := range vs {
		byName[vs[i].Name] = &vs[i]
	}
	for _, m := range moves {
		v := byName[m.VM]
		switch {
		case v == nil:
			t.Fatalf("%s: move of unknown VM %v", what, m)
		case v.Fixed || v.Migrating:
			t.Fatalf("%s: moved a fixed or migrating VM: %v", what, m)
		case v.Host != m.From || m.From == m.To:
			t.Fatalf("%s: move %v of a VM on %s", what, m, v.Host)
		case v.Running && (m.Mode != MoveLive || !live[m.From] || !live[m.To]):
			t.Fatalf("%s: running VM moved %s between hosts live=%t,%t", what, m.Mode, live[m.From], live[m.To])
		case !v.Running && m.Mode != MoveCold:
			t.Fatalf("%s: stopped VM moved %s", what, m.Mode)
		}
		f := free[m.To]
		f.CPUs -= v.Need.CPUs
		f.MemoryMiB -= v.Need.MemoryMiB
		if f.CPUs < 0 || f.MemoryMiB < 0 {
			t.Fatalf("%s: move %v overcommits %s: free %+v", what, m, m.To, f)
		}
		free[m.To] = f
		g := free[m.From]
		g.CPUs += v.Need.CPUs
		g.MemoryMiB += v.Need.MemoryMiB
		free[m.From] = g
		if a := v.Affinity; a != nil && a.Hard && a.Rule == resource.AffinityAntiAffine {
			for _, o := range vs {
				if o.Name != v.Name && o.Affinity != nil && o.Affinity.Group == a.Group && o.Host == m.To {
					t.Fatalf("%s: move %v joins %s of anti-affine group %s", what, m, o.Name, a.Group)
				}
			}
		}
		v.Host = m.To
	}
}
