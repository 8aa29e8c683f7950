package worker

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/cluster/fenceguard"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// TestGuardFenceIsNotBehindKumoisBack: a domain the fence guard destroyed
// while the VM was meant to run (the worker learns it from the guard's
// record file, even when no acknowledgement told it) is Kumoi's own stop:
// the VM keeps its desired power and is started again, saying why. The
// same domain without the record is a destroy behind Kumoi's back, which
// the VM follows (and which is what the worker wrongly concluded once,
// paused between a renewal and its listing).
func TestGuardFenceIsNotBehindKumoisBack(t *testing.T) {
	spec := &resource.VMSpec{CPUs: 1, MemoryMiB: 64, Power: resource.PowerRunning, HA: resource.HANone}
	st := &resource.VMStatus{Phase: resource.PhaseRunning, Host: "hv-1", Epoch: 7}
	o := &resource.Object{Kind: resource.KindVM, Name: "solo", ID: "vm-1"}
	d := hypervisor.DomainInfo{Name: "kumoi-solo", VMID: "vm-1", Epoch: 7, Kumoi: true, State: hypervisor.StateShutoff, Reason: hypervisor.StopDestroyed}
	newWorker := func(dir string) *Worker {
		w := &Worker{cfg: Config{NodeID: "hv-1"}, logger: hclog.NewNullLogger(),
			reported: map[string]resource.VMReport{}, stopping: map[string]bool{}, failed: map[string]uint64{},
			seenUp: map[string]uint64{"solo": 7}, notes: map[string]note{}, guardFenced: map[string]fenceguard.FenceRecord{},
			guard: &guardLink{dir: dir}}
		return w
	}

	dir := t.TempDir()
	rec := fenceguard.FenceRecord{Seq: 3, At: time.Now(), Why: "no proof for 3s", Domains: []string{"kumoi-solo"}}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(dir, fenceguard.RecordFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorker(dir)
	w.loadGuardFence()
	v := &vmPass{o: o, spec: spec, st: st, name: d.Name, d: d, rep: resource.VMReport{VM: "solo", Epoch: 7}}
	rep, _, done := w.behindKumoisBack(v)
	if done || rep.SetPower != "" || !v.restart {
		t.Fatalf("a fenced domain: done %v, set_power %q, restart %v; want it started again, desired power kept", done, rep.SetPower, v.restart)
	}
	if n := w.notes["solo"]; !strings.Contains(n.reason, "fence guard") || !n.pending {
		t.Errorf("note %+v does not say the fence guard stopped it", n)
	}

	w = newWorker(t.TempDir()) // no record
	w.loadGuardFence()
	v = &vmPass{o: o, spec: spec, st: st, name: d.Name, d: d, rep: resource.VMReport{VM: "solo", Epoch: 7}}
	rep, _, done = w.behindKumoisBack(v)
	if !done || rep.SetPower != resource.PowerStopped {
		t.Fatalf("a destroy without a fence record: done %v, set_power %q; want the VM to follow it", done, rep.SetPower)
	}
}
