package fsm_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Benchmarks of the hot paths. Run with:
//
//	go test -tags libvirt_dlopen -run '^$' -bench . -benchmem ./fsm/

func benchCreate(i int) *fsm.CreateRequest {
	return createReq(vm, fmt.Sprintf("vm-%07d", i), fmt.Sprintf("id-%07d", i),
		map[string]string{"app": []string{"web", "db"}[i%2], "tier": "front"}, vmSpec2)
}

// BenchmarkApplyCreate applies one create per op to a growing store.
func BenchmarkApplyCreate(b *testing.B) {
	f := fsm.New(fsm.Config{})
	logs := make([]*raft.Log, b.N)
	for i := range logs {
		logs[i] = fsm.TestLog(b, uint64(i)+1, fsm.CreateRequestType, benchCreate(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := f.Apply(logs[i]).(*fsm.Result); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkApplyBatch applies one 64-create batch per op.
func BenchmarkApplyBatch(b *testing.B) {
	const ops = 64
	f := fsm.New(fsm.Config{})
	logs := make([]*raft.Log, b.N)
	for i := range logs {
		req := &fsm.BatchRequest{Time: fsm.TestTime}
		for j := range ops {
			op, err := fsm.NewBatchOp(fsm.CreateRequestType, benchCreate(i*ops+j))
			if err != nil {
				b.Fatal(err)
			}
			req.Ops = append(req.Ops, op)
		}
		logs[i] = fsm.TestLog(b, uint64(i)+1, fsm.BatchRequestType, req)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := f.Apply(logs[i]).(*fsm.Result); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ops), "ns/object")
}

func populated(b *testing.B, n int) *fsm.FSM {
	b.Helper()
	f := fsm.New(fsm.Config{})
	const per = 256
	for i := 0; i < n; i += per {
		req := &fsm.BatchRequest{Time: fsm.TestTime}
		for j := i; j < min(i+per, n); j++ {
			op, err := fsm.NewBatchOp(fsm.CreateRequestType, benchCreate(j))
			if err != nil {
				b.Fatal(err)
			}
			req.Ops = append(req.Ops, op)
		}
		fsm.TestMustApply(b, f, uint64(i/per)+1, fsm.BatchRequestType, req)
	}
	return f
}

// BenchmarkList1k lists 1000 VMs (next to 1000 hosts), all of them and
// with a selector that matches half.
func BenchmarkList1k(b *testing.B) {
	f := populated(b, 1000)
	for i := range 1000 {
		fsm.TestCreate(b, f, uint64(100+i), host, fmt.Sprintf("host-%04d", i), nil)
	}
	for _, tc := range []struct{ name, sel string }{{"all", ""}, {"selector", "app=web,tier"}} {
		sel, err := resource.ParseSelector(tc.sel)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l, err := f.State().List(nil, vm, sel)
				if err != nil || len(l) == 0 {
					b.Fatal(len(l), err)
				}
			}
		})
	}
}

// countingSink is a raft.SnapshotSink that discards what it is given.
type countingSink struct{ n int64 }

func (s *countingSink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }
func (s *countingSink) Close() error                { return nil }
func (s *countingSink) ID() string                  { return "bench" }
func (s *countingSink) Cancel() error               { return nil }

// BenchmarkSnapshotPersist10k takes a snapshot of 10 000 objects and
// streams it out.
func BenchmarkSnapshotPersist10k(b *testing.B) {
	f := populated(b, 10000)
	var size int64
	b.ReportAllocs()
	for b.Loop() {
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		sink := &countingSink{}
		if err := snap.Persist(sink); err != nil {
			b.Fatal(err)
		}
		snap.Release()
		size = sink.n
	}
	b.SetBytes(size)
}

// BenchmarkRestore10k restores a 10 000-object snapshot.
func BenchmarkRestore10k(b *testing.B) {
	data := fsm.TestPersist(b, populated(b, 10000))
	f := fsm.New(fsm.Config{})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyRaftBatch applies 40 single-create log entries per op
// through ApplyBatch, as raft hands a busy leader's entries to the FSM
// (BatchingFSM): the path of BenchmarkCreates in ./bench.
func BenchmarkApplyRaftBatch(b *testing.B) {
	const per = 40
	f := fsm.New(fsm.Config{})
	batches := make([][]*raft.Log, b.N)
	for i := range batches {
		for j := range per {
			n := i*per + j
			batches[i] = append(batches[i], fsm.TestLog(b, uint64(n)+1, fsm.CreateRequestType, benchCreate(n)))
		}
	}
	applyRaftBatches(b, f, batches, per)
}

// BenchmarkApplyBatchGroup applies 32 entries of 1,024 creates each in one
// ApplyBatch, as a server catching up replays a log of batches: the cost
// per object must not grow with the group (the object cap's count once
// scanned every event of the group for each create).
func BenchmarkApplyBatchGroup(b *testing.B) {
	const entries, ops = 32, 1024
	f := fsm.New(fsm.Config{})
	groups := make([][]*raft.Log, b.N)
	for i := range groups {
		for e := range entries {
			req := &fsm.BatchRequest{Time: fsm.TestTime}
			for j := range ops {
				op, err := fsm.NewBatchOp(fsm.CreateRequestType, benchCreate((i*entries+e)*ops+j))
				if err != nil {
					b.Fatal(err)
				}
				req.Ops = append(req.Ops, op)
			}
			groups[i] = append(groups[i], fsm.TestLog(b, uint64(i*entries+e)+1, fsm.BatchRequestType, req))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for _, r := range f.ApplyBatch(groups[i]) {
			if res := r.(*fsm.Result); res.Err != nil {
				b.Fatal(res.Err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*entries*ops), "ns/object")
}

// BenchmarkApplyRaftBatchBin is BenchmarkApplyRaftBatch with the creates
// in protocol 10's binary entry (create-bin), as a cluster that speaks 10
// logs them: the state machine's share of bench-compare's creates.
func BenchmarkApplyRaftBatchBin(b *testing.B) {
	const per = 40
	f := fsm.New(fsm.Config{})
	batches := make([][]*raft.Log, b.N)
	for i := range batches {
		for j := range per {
			n := i*per + j
			data := fsm.EncodeCreateBin("", benchCreate(n))
			batches[i] = append(batches[i], &raft.Log{Index: uint64(n) + 1, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: fsm.TestTime})
		}
	}
	applyRaftBatches(b, f, batches, per)
}

// applyRaftBatches applies batches[i] in op i through ApplyBatch and
// reports the time per object (per objects each).
func applyRaftBatches(b *testing.B, f *fsm.FSM, batches [][]*raft.Log, per int) {
	fsm.NoCacheChecksForTest(b) // the production path
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range f.ApplyBatch(batches[i]) {
			if res := r.(*fsm.Result); res.Err != nil {
				b.Fatal(res.Err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/object")
}

// BenchmarkApplyCreateInProject applies one create per op into a project
// (with quotas) that already holds 20,000 VMs: the project's usage must
// not be recounted from all its VMs on each write (without the tests'
// checks, which recount it).
func BenchmarkApplyCreateInProject(b *testing.B) {
	const held = 20000
	fsm.NoCacheChecksForTest(b)
	f := fsm.New(fsm.Config{})
	idx := uint64(1)
	apply := func(t fsm.MessageType, req any) {
		if res := f.Apply(fsm.TestLog(b, idx, t, req)).(*fsm.Result); res.Err != nil {
			b.Fatal(res.Err)
		}
		idx++
	}
	apply(fsm.CreateRequestType, createReq(project, "p1", "id-p1", nil, `{"max_vms":1000000}`))
	spec := `{"cpus":1,"memory_mib":64,"project":"p1"}`
	for i := 0; i < held; i += 1000 {
		req := &fsm.BatchRequest{Time: fsm.TestTime}
		for j := i; j < i+1000; j++ {
			op, err := fsm.NewBatchOp(fsm.CreateRequestType, createReq(vm, fmt.Sprintf("held-%07d", j), fmt.Sprintf("idh-%07d", j), nil, spec))
			if err != nil {
				b.Fatal(err)
			}
			req.Ops = append(req.Ops, op)
		}
		apply(fsm.BatchRequestType, req)
	}
	logs := make([]*raft.Log, b.N)
	for i := range logs {
		logs[i] = fsm.TestLog(b, idx+uint64(i), fsm.CreateRequestType, createReq(vm, fmt.Sprintf("vm-%07d", i), fmt.Sprintf("id-%07d", i), nil, spec))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := f.Apply(logs[i]).(*fsm.Result); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkApplyCreateOnBigNetwork applies one create per op of a VM with
// a NIC on a network (a /15) where 20,000 VMs already hold addresses: the
// addresses held must not be counted from the index on each allocation
// (without the tests' checks, which count them).
func BenchmarkApplyCreateOnBigNetwork(b *testing.B) {
	const held = 20000
	fsm.NoCacheChecksForTest(b)
	f := fsm.New(fsm.Config{})
	idx := uint64(1)
	apply := func(t fsm.MessageType, req any) {
		if res := f.Apply(fsm.TestLog(b, idx, t, req)).(*fsm.Result); res.Err != nil {
			b.Fatal(res.Err)
		}
		idx++
	}
	apply(fsm.CreateRequestType, createReq(network, "n1", "id-n1", nil, `{"cidr":"10.0.0.0/15"}`))
	spec := `{"cpus":1,"memory_mib":64,"nics":[{"network":"n1"}]}`
	for i := 0; i < held; i += 1000 {
		req := &fsm.BatchRequest{Time: fsm.TestTime}
		for j := i; j < i+1000; j++ {
			op, err := fsm.NewBatchOp(fsm.CreateRequestType, createReq(vm, fmt.Sprintf("held-%07d", j), fmt.Sprintf("idh-%07d", j), nil, spec))
			if err != nil {
				b.Fatal(err)
			}
			req.Ops = append(req.Ops, op)
		}
		apply(fsm.BatchRequestType, req)
	}
	logs := make([]*raft.Log, b.N)
	for i := range logs {
		logs[i] = fsm.TestLog(b, idx+uint64(i), fsm.CreateRequestType, createReq(vm, fmt.Sprintf("vm-%07d", i), fmt.Sprintf("id-%07d", i), nil, spec))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := f.Apply(logs[i]).(*fsm.Result); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}
