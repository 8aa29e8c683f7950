package fsm_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Tests of projects and quotas (issue 14).

const project = resource.KindProject

func usageOf(t *testing.T, f *fsm.FSM, name string) resource.ProjectUsage {
	t.Helper()
	st, err := resource.DecodeStatus[resource.ProjectStatus](mustGet(t, f, project, name))
	if err != nil {
		t.Fatal(err)
	}
	return st.Usage
}

func wantUsage(t *testing.T, f *fsm.FSM, name string, want resource.ProjectUsage) {
	t.Helper()
	if got := usageOf(t, f, name); got != want {
		t.Errorf("project %s usage = %+v, want %+v", name, got, want)
	}
}

func wantQuota(t *testing.T, res *fsm.Result, msg string) {
	t.Helper()
	if !errors.Is(res.Err, fsm.ErrQuotaExceeded) {
		t.Fatalf("err = %v, want ErrQuotaExceeded", res.Err)
	}
	var qe *fsm.QuotaError
	if !errors.As(res.Err, &qe) || res.Err.Error() != msg {
		t.Errorf("err = %q, want %q", res.Err, msg)
	}
}

func vmIn(p string, cpus, mem int) string {
	return fmt.Sprintf(`{"cpus":%d,"memory_mib":%d,"project":%q}`, cpus, mem, p)
}

func TestProjectQuotas(t *testing.T) {
	d := newDev(t)
	d.mustCreate(project, "p1", `{"max_vms":3,"max_cpus":8,"max_memory_mib":4096,"max_volume_mib":1000}`)
	d.mustCreate(vm, "a", vmIn("p1", 4, 1024))
	d.mustCreate(vm, "b", vmIn("p1", 2, 1024))
	wantUsage(t, d.f, "p1", resource.ProjectUsage{VMs: 2, CPUs: 6, MemoryMiB: 2048})

	// CPUs: 6 in use, 4 asked, limit 8.
	wantQuota(t, d.create(vm, "c", vmIn("p1", 4, 512)), "project p1: max_cpus 8 exceeded: 6 in use, 4 asked")
	mustAbsent(t, d.f, vm, "c")
	// Memory.
	wantQuota(t, d.create(vm, "c", vmIn("p1", 1, 4096)), "project p1: max_memory_mib 4096 exceeded: 2048 in use, 4096 asked")
	// Exactly at the limit is allowed.
	d.mustCreate(vm, "c", vmIn("p1", 2, 2048))
	wantUsage(t, d.f, "p1", resource.ProjectUsage{VMs: 3, CPUs: 8, MemoryMiB: 4096})
	// VMs.
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: project, Name: "p1", Spec: raw(`{"max_vms":3}`)})
	wantQuota(t, d.create(vm, "d", vmIn("p1", 1, 64)), "project p1: max_vms 3 exceeded: 3 in use, 1 asked")

	// Other projects, and default, are not limited by p1's quotas.
	d.mustCreate(vm, "e", `{"cpus":64,"memory_mib":65536}`)
	d.mustCreate(project, "p2", `{}`)
	d.mustCreate(vm, "f", vmIn("p2", 64, 65536))
	wantUsage(t, d.f, "p2", resource.ProjectUsage{VMs: 1, CPUs: 64, MemoryMiB: 65536})

	// Volume bytes: a volume, and a VM disk's volume.
	d.mustCreate(project, "p3", `{"max_volume_mib":1000}`)
	d.mustCreate(volume, "v1", `{"size_mib":600,"project":"p3"}`)
	wantQuota(t, d.create(volume, "v2", `{"size_mib":500,"project":"p3"}`), "project p3: max_volume_mib 1000 exceeded: 600 in use, 500 asked")
	d.mustCreate(image, "img", imgSpec)
	wantQuota(t, d.create(vm, "g", `{"cpus":1,"memory_mib":64,"project":"p3","disks":[{"image":"img","size_mib":500}]}`),
		"project p3: max_volume_mib 1000 exceeded: 600 in use, 500 asked")
	mustAbsent(t, d.f, vm, "g")
	mustAbsent(t, d.f, volume, "g-disk0")
	d.mustCreate(vm, "g", `{"cpus":1,"memory_mib":64,"project":"p3","disks":[{"image":"img","size_mib":400}]}`)
	wantUsage(t, d.f, "p3", resource.ProjectUsage{VMs: 1, CPUs: 1, MemoryMiB: 64, VolumeMiB: 1000})
	if vs, _ := resource.DecodeSpec[resource.VolumeSpec](mustGet(t, d.f, volume, "g-disk0")); vs.Project != "p3" {
		t.Errorf("disk volume project = %q, want p3", vs.Project)
	}
	// Deleting the VM deletes its disk's volume: both leave the usage.
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "g"})
	wantUsage(t, d.f, "p3", resource.ProjectUsage{VolumeMiB: 600})
}

func TestProjectQuotaUpdates(t *testing.T) {
	d := newDev(t)
	d.mustCreate(project, "p1", `{"max_cpus":8,"max_memory_mib":4096,"max_volume_mib":1000}`)
	d.mustCreate(project, "p2", `{"max_cpus":4}`)
	d.mustCreate(vm, "a", vmIn("p1", 4, 1024))
	d.mustCreate(vm, "b", vmIn("p1", 2, 1024))

	// Growing a VM.
	wantQuota(t, d.update(vm, "a", vmIn("p1", 8, 1024)), "project p1: max_cpus 8 exceeded: 6 in use, 4 asked")
	if d.update(vm, "a", vmIn("p1", 6, 1024)).Err != nil {
		t.Fatal("growing within the quota failed")
	}
	wantUsage(t, d.f, "p1", resource.ProjectUsage{VMs: 2, CPUs: 8, MemoryMiB: 2048})
	// One dimension down, another up within its limit.
	if res := d.update(vm, "a", vmIn("p1", 4, 3072)); res.Err != nil {
		t.Fatal(res.Err)
	}
	wantUsage(t, d.f, "p1", resource.ProjectUsage{VMs: 2, CPUs: 6, MemoryMiB: 4096})

	// Moving a VM to another project counts there.
	wantQuota(t, d.update(vm, "a", vmIn("p2", 6, 1024)), "project p2: max_cpus 4 exceeded: 0 in use, 6 asked")
	if res := d.update(vm, "a", vmIn("p2", 4, 1024)); res.Err != nil {
		t.Fatal(res.Err)
	}
	wantUsage(t, d.f, "p1", resource.ProjectUsage{VMs: 1, CPUs: 2, MemoryMiB: 1024})
	wantUsage(t, d.f, "p2", resource.ProjectUsage{VMs: 1, CPUs: 4, MemoryMiB: 1024})
	// To the default project (no object: no quota).
	if res := d.update(vm, "a", `{"cpus":32,"memory_mib":1024}`); res.Err != nil {
		t.Fatal(res.Err)
	}
	wantUsage(t, d.f, "p2", resource.ProjectUsage{})

	// Resizing a volume.
	d.mustCreate(volume, "v", `{"size_mib":600,"project":"p1"}`)
	wantQuota(t, d.update(volume, "v", `{"size_mib":1200,"project":"p1"}`), "project p1: max_volume_mib 1000 exceeded: 600 in use, 600 asked")
	if res := d.update(volume, "v", `{"size_mib":1000,"project":"p1"}`); res.Err != nil {
		t.Fatal(res.Err)
	}
	wantUsage(t, d.f, "p1", resource.ProjectUsage{VMs: 1, CPUs: 2, MemoryMiB: 1024, VolumeMiB: 1000})

	// A limit lowered below the usage: allowed; it blocks new usage only.
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: project, Name: "p1", Spec: raw(`{"max_cpus":1}`)})
	wantUsage(t, d.f, "p1", resource.ProjectUsage{VMs: 1, CPUs: 2, MemoryMiB: 1024, VolumeMiB: 1000})
	wantQuota(t, d.update(vm, "b", vmIn("p1", 3, 1024)), "project p1: max_cpus 1 exceeded: 2 in use, 1 asked")
	if res := d.update(vm, "b", vmIn("p1", 2, 512)); res.Err != nil {
		t.Errorf("a change that does not raise an over-limit dimension: %v", res.Err)
	}
	// Status writes do not count.
	d.host("h1")
	wantUsage(t, d.f, "p1", resource.ProjectUsage{VMs: 1, CPUs: 2, MemoryMiB: 512, VolumeMiB: 1000})
}

func TestProjectReferences(t *testing.T) {
	d := newDev(t)
	res := d.create(vm, "a", vmIn("p1", 1, 64))
	if !errors.Is(res.Err, resource.ErrInvalid) || fieldOf(res.Err) != "spec.project" || !strings.Contains(res.Err.Error(), "no project p1: create it first") {
		t.Fatalf("vm in unknown project: %v", res.Err)
	}
	res = d.create(volume, "v", `{"size_mib":1,"project":"p1"}`)
	if fieldOf(res.Err) != "spec.project" {
		t.Fatalf("volume in unknown project: %v", res.Err)
	}
	// default needs no object.
	d.mustCreate(vm, "a", vmIn("default", 1, 64))
	d.mustCreate(vm, "b", `{"cpus":2,"memory_mib":64}`)
	if res := d.update(vm, "b", vmIn("p1", 2, 64)); fieldOf(res.Err) != "spec.project" {
		t.Fatalf("update into unknown project: %v", res.Err)
	}

	// The default project's object: its usage counts what is there, and
	// its limits apply from then on.
	d.mustCreate(project, "default", `{"max_vms":1}`)
	wantUsage(t, d.f, "default", resource.ProjectUsage{VMs: 2, CPUs: 3, MemoryMiB: 128})
	wantQuota(t, d.create(vm, "c", `{"cpus":1,"memory_mib":64}`), "project default: max_vms 1 exceeded: 2 in use, 1 asked")
	// Deleting it lifts them, although VMs use it.
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: project, Name: "default"})
	d.mustCreate(vm, "c", `{"cpus":1,"memory_mib":64}`)

	// Other projects in use cannot be deleted.
	d.mustCreate(project, "p1", `{}`)
	d.mustCreate(vm, "x", vmIn("p1", 1, 64))
	d.mustCreate(volume, "v", `{"size_mib":1,"project":"p1"}`)
	res = d.del(project, "p1")
	if !errors.Is(res.Err, fsm.ErrInUse) || !strings.Contains(res.Err.Error(), "project p1 is used by vm x and volume v") {
		t.Fatalf("delete in use: %v", res.Err)
	}
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "x"})
	wantUsage(t, d.f, "p1", resource.ProjectUsage{VolumeMiB: 1})
	if res := d.del(project, "p1"); !errors.Is(res.Err, fsm.ErrInUse) || !strings.Contains(res.Err.Error(), "used by volume v") {
		t.Fatalf("delete in use by a volume: %v", res.Err)
	}
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: volume, Name: "v"})
	wantUsage(t, d.f, "p1", resource.ProjectUsage{})
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: project, Name: "p1"})

	// A status written to a project does not stick: usage is derived.
	d.mustCreate(project, "p2", `{}`)
	d.mustCreate(vm, "y", vmIn("p2", 3, 64))
	d.must(fsm.StatusRequestType, &fsm.StatusRequest{Kind: project, Name: "p2", Status: raw(`{"usage":{"vms":0,"cpus":0,"memory_mib":0,"volume_mib":0}}`)})
	wantUsage(t, d.f, "p2", resource.ProjectUsage{VMs: 1, CPUs: 3, MemoryMiB: 64})
}

// TestProjectQuotaConcurrentCreates: creates in one ApplyBatch (one
// transaction) and in one batch command never overshoot.
func TestProjectQuotaConcurrentCreates(t *testing.T) {
	f := fsm.TestFSM(t)
	fsm.TestMustApply(t, f, 1, fsm.CreateRequestType, createReq(project, "p1", "id-p1", nil, `{"max_vms":5,"max_cpus":7}`))
	var logs []*raft.Log
	for i := range 10 {
		logs = append(logs, fsm.TestLog(t, uint64(2+i), fsm.CreateRequestType, createReq(vm, fmt.Sprintf("v%d", i), fmt.Sprintf("id-%d", i), nil, vmIn("p1", 1+i%2, 64))))
	}
	out := f.ApplyBatch(logs)
	ok := 0
	for i, r := range out {
		res := r.(*fsm.Result)
		switch {
		case res.Err == nil:
			ok++
		case !errors.Is(res.Err, fsm.ErrQuotaExceeded):
			t.Errorf("entry %d: %v", i, res.Err)
		}
	}
	st, _ := resource.DecodeStatus[resource.ProjectStatus](mustGet(t, f, project, "p1"))
	vms, _ := f.State().List(nil, vm, nil)
	if ok != len(vms) || st.Usage.VMs != int64(len(vms)) || st.Usage.VMs > 5 || st.Usage.CPUs > 7 {
		t.Errorf("%d creates succeeded, %d VMs, usage %+v: over the quota", ok, len(vms), st.Usage)
	}
	// v0..v4 have 1,2,1,2,1 CPUs: 7 with v0-v4; v5 is over max_vms.
	if ok != 5 || st.Usage.CPUs != 7 {
		t.Errorf("%d creates succeeded, usage %+v; want 5 and 7 CPUs", ok, st.Usage)
	}

	// One batch command over the quota fails as a whole.
	fsm.TestMustApply(t, f, 20, fsm.CreateRequestType, createReq(project, "p2", "id-p2", nil, `{"max_vms":2}`))
	res := fsm.TestApply(t, f, 21, fsm.BatchRequestType, batchOf(t,
		fsm.CreateRequestType, createReq(vm, "w1", "id-w1", nil, vmIn("p2", 1, 64)),
		fsm.CreateRequestType, createReq(vm, "w2", "id-w2", nil, vmIn("p2", 1, 64)),
		fsm.CreateRequestType, createReq(vm, "w3", "id-w3", nil, vmIn("p2", 1, 64)),
	))
	if !errors.Is(res.Err, fsm.ErrQuotaExceeded) || res.Err.Error() != "project p2: max_vms 2 exceeded: 0 in use, 3 asked" {
		t.Fatalf("batch over quota: %v", res.Err)
	}
	mustAbsent(t, f, vm, "w1")
}

func TestProjectSnapshotRestore(t *testing.T) {
	d := newDev(t)
	d.mustCreate(project, "p1", `{"max_vms":2,"max_cpus":8,"strategy":"spread"}`)
	d.mustCreate(vm, "a", vmIn("p1", 4, 1024))
	d.mustCreate(volume, "v", `{"size_mib":10,"project":"p1"}`)
	r := fsm.TestSnapshotRestore(t, d.f)
	if r.State().Digest() != d.f.State().Digest() {
		t.Error("restored state differs")
	}
	wantUsage(t, r, "p1", resource.ProjectUsage{VMs: 1, CPUs: 4, MemoryMiB: 1024, VolumeMiB: 10})
	// The restored index still counts: quotas hold, deletes refused.
	d.f = r
	wantQuota(t, d.create(vm, "b", vmIn("p1", 8, 64)), "project p1: max_cpus 8 exceeded: 4 in use, 8 asked")
	if res := d.del(project, "p1"); !errors.Is(res.Err, fsm.ErrInUse) {
		t.Errorf("delete in use after restore: %v", res.Err)
	}
}

// TestProjectUsageMovesWithEveryWrite: a project's usage is moved by what
// each entry changes, not counted again from its members; after every
// entry of a seeded random mix (creates, resizes, moves between projects
// and to none, deletes, batches, entries refused by a quota or failing
// half way, a "default" project created once VMs name it), every
// project's stored usage is what its members add up to. (The fsm tests
// also make the state machine count again at each entry and halt if the
// two differ: checkApplyCaches.)
func TestProjectUsageMovesWithEveryWrite(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 15))
			d := newDev(t)
			d.mustCreate(project, "p1", `{"max_cpus":40}`)
			d.mustCreate(project, "p2", `{"max_vms":6,"max_volume_mib":3000}`)
			projects := []string{"p1", "p2", "default", ""}
			vmSpec := func() string {
				p := projects[rng.IntN(len(projects))]
				return fmt.Sprintf(`{"cpus":%d,"memory_mib":%d,"project":%q}`, 1+rng.IntN(4), 64*(1+rng.IntN(8)), p)
			}
			volSpec := func() string {
				return fmt.Sprintf(`{"size_mib":%d,"project":%q}`, 100*(1+rng.IntN(10)), projects[rng.IntN(len(projects))])
			}
			op := func() (fsm.MessageType, any) {
				kind, spec := vm, vmSpec()
				if rng.IntN(3) == 0 {
					kind, spec = volume, volSpec()
				}
				name := fmt.Sprintf("%s-%d", kind, rng.IntN(12))
				switch rng.IntN(3) {
				case 0:
					return fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: kind, Name: name, ID: fsm.TestID(d.i*100 + uint64(rng.IntN(100))), Spec: raw(spec)}
				case 1:
					return fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: kind, Name: name, Spec: raw(spec)}
				}
				return fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: kind, Name: name}
			}
			failed := 0
			for i := range 300 {
				if i == 150 {
					d.mustCreate(project, "default", `{}`)
				}
				var res *fsm.Result
				if rng.IntN(4) == 0 {
					req := &fsm.BatchRequest{Time: fsm.TestTime}
					for range 2 + rng.IntN(4) {
						typ, r := op()
						bop, err := fsm.NewBatchOp(typ, r)
						if err != nil {
							t.Fatal(err)
						}
						req.Ops = append(req.Ops, bop)
					}
					res = d.apply(fsm.BatchRequestType, req)
				} else {
					res = d.apply(op())
				}
				if errors.Is(res.Err, fsm.ErrHalted) {
					t.Fatalf("entry %d: %v", d.i, res.Err)
				}
				if res.Err != nil {
					failed++
				}
				for _, p := range []string{"p1", "p2", "default"} {
					if p == "default" && i < 150 {
						continue
					}
					if got, want := usageOf(t, d.f, p), countUsage(t, d.f, p); got != want {
						t.Fatalf("after entry %d: project %s usage %+v, its members add up to %+v", d.i, p, got, want)
					}
				}
			}
			if failed == 0 || failed > 250 {
				t.Fatalf("%d of 300 entries failed: the mix must have both", failed)
			}
		})
	}
}

// countUsage adds up what the VMs and volumes of project hold.
func countUsage(t *testing.T, f *fsm.FSM, name string) resource.ProjectUsage {
	t.Helper()
	var u resource.ProjectUsage
	for _, kind := range []resource.Kind{vm, volume} {
		objs, err := f.State().List(nil, kind, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			var s struct {
				CPUs      int64  `json:"cpus"`
				MemoryMiB int64  `json:"memory_mib"`
				SizeMiB   int64  `json:"size_mib"`
				Project   string `json:"project"`
			}
			if err := json.Unmarshal(o.Spec, &s); err != nil {
				t.Fatal(err)
			}
			if resource.ProjectOf(s.Project) != name {
				continue
			}
			if kind == vm {
				u.VMs++
				u.CPUs += s.CPUs
				u.MemoryMiB += s.MemoryMiB
			} else {
				u.VolumeMiB += s.SizeMiB
			}
		}
	}
	return u
}
