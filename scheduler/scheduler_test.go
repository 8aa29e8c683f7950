package scheduler

import (
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/kumoi/kumoi/resource"
)

func res(c int, m int64) resource.Resources { return resource.Resources{CPUs: c, MemoryMiB: m} }

func host(name string, ready bool, free, total resource.Resources) Host {
	return Host{Name: name, Ready: ready, Free: free, Total: total}
}

func TestPlan(t *testing.T) {
	hosts := []Host{
		host("a", true, res(4, 4096), res(4, 4096)),
		host("b", true, res(8, 8192), res(8, 8192)),
		host("down", false, res(64, 65536), res(64, 65536)),
	}
	vms := []VM{
		{Name: "v2", CreateIndex: 2, Need: res(2, 6000)},
		{Name: "v1", CreateIndex: 1, Need: res(1, 1024)},
		{Name: "huge", CreateIndex: 3, Need: res(16, 1024)},
		{Name: "v4", CreateIndex: 4, Need: res(4, 4096)},
		{Name: "v5", CreateIndex: 5, Need: res(4, 4096)},
	}
	p := Plan(hosts, vms)
	got := map[string]string{}
	for _, pl := range p.Placements {
		got[pl.VM] = pl.Host
	}
	// v1 (oldest) goes to b (most free memory), v2 needs 6000 MiB: only b
	// has it; v4 then fits a; v5 fits nowhere.
	want := map[string]string{"v1": "b", "v2": "b", "v4": "a"}
	for vm, h := range want {
		if got[vm] != h {
			t.Errorf("%s placed on %q, want %q (plan %+v)", vm, got[vm], h, p.Placements)
		}
	}
	if len(p.Placements) != 3 {
		t.Errorf("placements = %+v", p.Placements)
	}
	reasons := map[string]string{}
	for _, u := range p.Unplaced {
		reasons[u.VM] = u.Reason
	}
	if !strings.Contains(reasons["huge"], "larger than any host") {
		t.Errorf("huge: reason %q", reasons["huge"])
	}
	if !strings.Contains(reasons["v5"], "free right now") {
		t.Errorf("v5: reason %q", reasons["v5"])
	}

	// An unchanged reason is not rewritten.
	p = Plan(nil, []VM{{Name: "x", Need: res(1, 1), Reason: "no hosts: start a worker (kumoi agent --worker) to run VMs"}})
	if len(p.Unplaced) != 0 || len(p.Placements) != 0 {
		t.Errorf("unchanged reason rewritten: %+v", p)
	}
}

// TestPlanNeverExceedsFree: whatever the input, the plan puts no more on a
// host than it has free, places only on ready hosts, and each VM at most once.
func TestPlanNeverExceedsFree(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nh := rapid.IntRange(0, 6).Draw(t, "hosts")
		var hosts []Host
		for i := 0; i < nh; i++ {
			f := res(rapid.IntRange(0, 16).Draw(t, "cpu"), rapid.Int64Range(0, 16384).Draw(t, "mem"))
			hosts = append(hosts, host(string(rune('a'+i)), rapid.Bool().Draw(t, "ready"), f, f))
		}
		nv := rapid.IntRange(0, 30).Draw(t, "vms")
		var vms []VM
		for i := 0; i < nv; i++ {
			vms = append(vms, VM{Name: "v" + string(rune('a'+i)), CreateIndex: uint64(rapid.IntRange(1, 5).Draw(t, "ci")),
				Need: res(rapid.IntRange(1, 8).Draw(t, "need-cpu"), rapid.Int64Range(1, 8192).Draw(t, "need-mem"))})
		}
		need := map[string]resource.Resources{}
		for _, v := range vms {
			need[v.Name] = v.Need
		}
		p := Plan(hosts, vms)
		used := map[string]resource.Resources{}
		seen := map[string]bool{}
		for _, pl := range p.Placements {
			if seen[pl.VM] {
				t.Fatalf("%s placed twice", pl.VM)
			}
			seen[pl.VM] = true
			u := used[pl.Host]
			u.CPUs += need[pl.VM].CPUs
			u.MemoryMiB += need[pl.VM].MemoryMiB
			used[pl.Host] = u
		}
		// "larger than any host" exactly when no ready host's capacity
		// holds the VM (brute force against the frontier).
		for _, u := range p.Unplaced {
			fits := false
			for _, h := range hosts {
				if h.Ready && h.Total.CPUs >= need[u.VM].CPUs && h.Total.MemoryMiB >= need[u.VM].MemoryMiB {
					fits = true
				}
			}
			if !strings.Contains(u.Reason, "free right now") && !strings.HasPrefix(u.Reason, "larger than any host") {
				continue // no ready host at all
			}
			if large := strings.HasPrefix(u.Reason, "larger than any host"); large == fits {
				t.Fatalf("%s: reason %q, but fits some host: %t", u.VM, u.Reason, fits)
			}
		}
		for _, h := range hosts {
			u := used[h.Name]
			if !h.Ready && (u != resource.Resources{}) {
				t.Fatalf("placed on host %s which is not ready", h.Name)
			}
			if u.CPUs > h.Free.CPUs || u.MemoryMiB > h.Free.MemoryMiB {
				t.Fatalf("host %s: used %+v > free %+v", h.Name, u, h.Free)
			}
		}
	})
}
