package scheduler_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/scheduler"
)

// BenchmarkScale builds the state of a large cloud in one state machine
// (issue 15 item 3, the part without Raft): 5,000 sim hosts registered
// and 150,000 VMs created (batches of fsm.MaxBatchOps, as the API's
// batches are) and placed by the scheduler (FromState, PlanWith,
// PlaceRequest until nothing is pending), then measures what an operator
// of such a cloud waits for:
//
//   - heap-MiB: the live heap once it is built (after a GC): the state
//     store's share of a controller's memory;
//   - snapshot-MiB, persist-ms: the snapshot's size and the time to write it;
//   - restore-ms: the time a fresh state machine takes to restore it (what
//     a new follower does; issue target ≤ 5 s with the transfer);
//   - list-p99-ms: a full list of the 150,000 VMs (20 lists);
//   - select-p99-ms: a list with a label selector that matches 1 in 100;
//   - create-us, create-empty-us: one single-create entry applied on the
//     full state and on an empty one (1,000 each): a write that costs O(all
//     objects) shows as a ratio far above 1.
//
// It also reports build-s (hosts, VMs and placements). Run it alone:
//
//	go test -tags libvirt_dlopen -run '^$' -bench '^BenchmarkScale$' -benchtime 1x -timeout 30m ./scheduler/
func BenchmarkScale(b *testing.B) {
	const nHosts, nVMs = 5000, 150000
	for range b.N {
		t0 := time.Now()
		f := fsm.TestFSM(b)
		idx := uint64(0)
		apply := func(t fsm.MessageType, req any) *fsm.Result {
			idx++
			res := fsm.TestMustApply(b, f, idx, t, req)
			if res.Err != nil {
				b.Fatalf("entry %d: %v", idx, res.Err)
			}
			return res
		}
		batch := func(ops []fsm.BatchOp) {
			for len(ops) > 0 {
				n := min(len(ops), fsm.MaxBatchOps)
				apply(fsm.BatchRequestType, &fsm.BatchRequest{Ops: ops[:n]})
				ops = ops[n:]
			}
		}
		var ops []fsm.BatchOp
		for i := range nHosts {
			ops = append(ops, op(b, fsm.HostStateRequestType, &fsm.HostStateRequest{
				Time: fsm.TestTime, Name: fmt.Sprintf("host-%05d", i), ID: fmt.Sprintf("h-%d", i), State: resource.HostReady,
				Capacity: resource.Resources{CPUs: 64, MemoryMiB: 256 << 10}, Driver: "sim",
			}))
		}
		batch(ops)
		ops = ops[:0]
		for i := range nVMs {
			ops = append(ops, op(b, fsm.CreateRequestType, &fsm.CreateRequest{
				Time: fsm.TestTime, Kind: resource.KindVM, Name: fmt.Sprintf("vm-%06d", i), ID: fmt.Sprintf("v-%d", i),
				Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%100), "tier": "web"},
				Spec:   json.RawMessage(fmt.Sprintf(`{"cpus":%d,"memory_mib":%d}`, 1+i%2, 512<<(i%3))),
			}))
		}
		batch(ops)
		ops = nil
		st := f.State()
		cache, placed := scheduler.NewCache(), 0
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
			plan := scheduler.PlanWith(hosts, vms, scheduler.Options{})
			for len(plan.Placements) > 0 {
				n := min(len(plan.Placements), fsm.MaxBatchOps)
				res := apply(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: plan.Placements[:n]})
				for _, e := range res.ItemErrors {
					if e == nil {
						placed++
					}
				}
				plan.Placements = plan.Placements[n:]
			}
		}
		if placed != nVMs {
			b.Fatalf("placed %d of %d", placed, nVMs)
		}
		build := time.Since(t0)

		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)

		tp := time.Now()
		data := fsm.TestPersist(b, f)
		persist := time.Since(tp)
		tr := time.Now()
		g := fsm.TestFSM(b)
		if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			b.Fatal(err)
		}
		restore := time.Since(tr)
		if l, _ := g.State().List(nil, resource.KindVM, nil); len(l) != nVMs {
			b.Fatalf("restored %d VMs of %d", len(l), nVMs)
		}
		g = nil

		p99 := func(n int, list func() int, want int) time.Duration {
			var ds []time.Duration
			for range n {
				t := time.Now()
				if got := list(); got != want {
					b.Fatalf("listed %d, want %d", got, want)
				}
				ds = append(ds, time.Since(t))
			}
			slices.Sort(ds)
			return ds[(len(ds)*99-1)/100]
		}
		full := p99(20, func() int { l, _ := st.List(nil, resource.KindVM, nil); return len(l) }, nVMs)
		sel, err := resource.ParseSelector("app=app-7")
		if err != nil {
			b.Fatal(err)
		}
		selected := p99(20, func() int { l, _ := st.List(nil, resource.KindVM, sel); return len(l) }, nVMs/100)

		perCreate := func(f *fsm.FSM, idx *uint64, prefix string) time.Duration {
			const n = 1000
			t := time.Now()
			for i := range n {
				*idx++
				res := fsm.TestMustApply(b, f, *idx, fsm.CreateRequestType, &fsm.CreateRequest{
					Time: fsm.TestTime, Kind: resource.KindVM, Name: fmt.Sprintf("%s-%d", prefix, i), ID: fmt.Sprintf("%s-id-%d", prefix, i),
					Spec: json.RawMessage(`{"cpus":1,"memory_mib":512}`),
				})
				if res.Err != nil {
					b.Fatal(res.Err)
				}
			}
			return time.Since(t) / n
		}
		atScale := perCreate(f, &idx, "late")
		empty, eidx := fsm.TestFSM(b), uint64(0)
		atEmpty := perCreate(empty, &eidx, "early")

		us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
		msf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		b.ReportMetric(build.Seconds(), "build-s")
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(len(data))/(1<<20), "snapshot-MiB")
		b.ReportMetric(msf(persist), "persist-ms")
		b.ReportMetric(msf(restore), "restore-ms")
		b.ReportMetric(msf(full), "list-p99-ms")
		b.ReportMetric(msf(selected), "select-p99-ms")
		b.ReportMetric(us(atScale), "create-us")
		b.ReportMetric(us(atEmpty), "create-empty-us")
		b.ReportMetric(0, "ns/op")
		b.Logf("%d hosts, %d VMs placed in %s; heap %.0f MiB; snapshot %.1f MiB persisted in %s, restored in %s; full list p99 %s, selector p99 %s; one create %s at scale, %s on an empty state",
			nHosts, nVMs, build.Round(time.Millisecond), float64(ms.HeapAlloc)/(1<<20), float64(len(data))/(1<<20),
			persist.Round(time.Millisecond), restore.Round(time.Millisecond), full.Round(time.Microsecond), selected.Round(time.Microsecond),
			atScale.Round(time.Microsecond), atEmpty.Round(time.Microsecond))
	}
}
