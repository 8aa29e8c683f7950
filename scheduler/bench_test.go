package scheduler_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/scheduler"
)

// BenchmarkPlacement places 10,000 VMs onto 1,000 hosts with
// requirements, rank and hard anti-affinity on (groups of 3), as the
// leader does it: read the state (scheduler.FromState, the groups and
// projects), plan (scheduler.PlanWith) and apply the plan to the state
// machine in chunks of fsm.MaxBatchOps (where every placement's capacity,
// requirements and hard rules are checked again), until nothing is
// pending. Without Raft (bench's BenchmarkPlacement measures the whole
// cluster). It reports placements/s of the whole loop, and of planning
// (planned/s) and of the state machine's apply (applied/s) alone; it
// fails if a VM stays pending. The plain variant is the same without
// the rules.
//
//	go test -tags libvirt_dlopen -run '^$' -bench '^BenchmarkPlacement$' -benchtime 3x ./scheduler/
func BenchmarkPlacement(b *testing.B) {
	b.Run("rules", func(b *testing.B) {
		benchPlacement(b, `"requirements":"host.labels.zone != \"z\" && host.free_memory_mib >= %d","rank":"-host.allocated_cpus","affinity":{"group":"g%d","rule":"anti-affine","hard":true}`)
	})
	// The same without requirements, rank and affinity: what they cost.
	b.Run("plain", func(b *testing.B) { benchPlacement(b, "") })
}

func benchPlacement(b *testing.B, rules string) {
	const nVMs, nHosts = 10000, 1000
	var total, planning, applying time.Duration
	for range b.N {
		b.StopTimer()
		f := fsm.TestFSM(b)
		idx := uint64(0)
		var ops []fsm.BatchOp
		for i := range nHosts {
			ops = append(ops, op(b, fsm.HostStateRequestType, &fsm.HostStateRequest{
				Time: fsm.TestTime, Name: fmt.Sprintf("host-%04d", i), ID: fmt.Sprintf("h-%d", i), State: resource.HostReady,
				Capacity: resource.Resources{CPUs: 16, MemoryMiB: 64 << 10}, Driver: "sim",
			}))
		}
		for i := range nHosts {
			ops = append(ops, op(b, fsm.UpdateRequestType, &fsm.UpdateRequest{
				Time: fsm.TestTime, Kind: resource.KindHost, Name: fmt.Sprintf("host-%04d", i),
				Labels: map[string]string{"zone": string(rune('a' + i%4))}, Spec: json.RawMessage(`{}`),
			}))
		}
		for i := range nVMs {
			cpus, mem := 1, int64(512)<<(i%4)
			if i%4 == 0 {
				cpus = 2
			}
			js := fmt.Sprintf(`{"cpus":%d,"memory_mib":%d}`, cpus, mem)
			if rules != "" {
				js = fmt.Sprintf(`{"cpus":%d,"memory_mib":%d,`+rules+`}`, cpus, mem, mem, i/3)
			}
			spec, err := resource.NormalizeRequestSpec(resource.KindVM, json.RawMessage(js))
			if err != nil {
				b.Fatal(err)
			}
			ops = append(ops, op(b, fsm.CreateRequestType, &fsm.CreateRequest{
				Time: fsm.TestTime, Kind: resource.KindVM, Name: fmt.Sprintf("vm-%05d", i), ID: fmt.Sprintf("v-%d", i), Spec: spec,
			}))
		}
		for len(ops) > 0 {
			n := min(len(ops), fsm.MaxBatchOps)
			idx++
			res := fsm.TestMustApply(b, f, idx, fsm.BatchRequestType, &fsm.BatchRequest{Ops: ops[:n]})
			if res.Err != nil {
				b.Fatal(res.Err)
			}
			ops = ops[n:]
		}
		st := f.State()
		cache, exprs := scheduler.NewCache(), resource.NewExprCache(1024)
		placed := 0
		b.StartTimer()
		t0 := time.Now()
		for round := 0; ; round++ {
			hosts, vms, err := scheduler.FromState(st, cache, true)
			if err != nil {
				b.Fatal(err)
			}
			if len(vms) == 0 {
				break
			}
			if round > 10 {
				b.Fatalf("%d VMs still pending after %d rounds", len(vms), round)
			}
			groups, err := scheduler.GroupsFromState(st, vms)
			if err != nil {
				b.Fatal(err)
			}
			tp := time.Now()
			plan := scheduler.PlanWith(hosts, vms, scheduler.Options{Groups: groups, Exprs: exprs})
			planning += time.Since(tp)
			if len(plan.Placements) == 0 {
				b.Fatalf("%d VMs pending, none placed: %+v", len(vms), plan.Unplaced[:min(3, len(plan.Unplaced))])
			}
			ta := time.Now()
			for len(plan.Placements) > 0 {
				n := min(len(plan.Placements), fsm.MaxBatchOps)
				idx++
				res := fsm.TestMustApply(b, f, idx, fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: plan.Placements[:n]})
				for i, e := range res.ItemErrors {
					if e != nil {
						b.Fatalf("placement %+v refused: %v", plan.Placements[i], e)
					}
					placed++
				}
				plan.Placements = plan.Placements[n:]
			}
			applying += time.Since(ta)
		}
		total += time.Since(t0)
		if placed != nVMs {
			b.Fatalf("placed %d of %d", placed, nVMs)
		}
	}
	b.ReportMetric(float64(nVMs*b.N)/total.Seconds(), "placements/s")
	b.ReportMetric(float64(nVMs*b.N)/planning.Seconds(), "planned/s")
	b.ReportMetric(float64(nVMs*b.N)/applying.Seconds(), "applied/s")
}

func op(b *testing.B, t fsm.MessageType, req any) fsm.BatchOp {
	b.Helper()
	p, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	return fsm.BatchOp{Type: t, Payload: p}
}
