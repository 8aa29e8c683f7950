package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestDrainLoopMovesVMsOff: a host drained with migrate has its VMs moved
// off by the leader: a stopped VM cold at once, running VMs live where
// both hosts take live migrations and by restart where only that is
// possible, at most DrainInFlight at a time (no worker carries them out
// here: the state machine records status.migration), and a VM that fits
// nowhere keeps a blocker that says why.
func TestDrainLoopMovesVMsOff(t *testing.T) {
	ic := newInmemCluster(t, 1)
	c := ic.ctrls[ic.leader(t)]
	ctx := context.Background()
	host := func(name string, cpus int, mem int64, modes ...string) {
		t.Helper()
		if _, err := c.Propose(ctx, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: name, ID: uuid.NewString(),
			State: resource.HostReady, Capacity: resource.Resources{CPUs: cpus, MemoryMiB: mem}, MigrationModes: modes}); err != nil {
			t.Fatal(err)
		}
	}
	vm := func(name string, mem int64, power string) {
		t.Helper()
		if _, err := c.Propose(ctx, fsm.CreateRequestType, &fsm.CreateRequest{Time: time.Now().UTC(), Kind: resource.KindVM, Name: name,
			ID: uuid.NewString(), Spec: json.RawMessage(fmt.Sprintf(`{"cpus":1,"memory_mib":%d,"power":%q}`, mem, power))}); err != nil {
			t.Fatal(err)
		}
	}
	status := func(name string) *resource.VMStatus {
		o, _ := c.FSM().State().Get(nil, resource.KindVM, name)
		if o == nil {
			return &resource.VMStatus{}
		}
		st, _ := resource.DecodeStatus[resource.VMStatus](o)
		return st
	}
	host("h1", 8, 16384, resource.MigrationLive, resource.MigrationRestart)
	names := []string{"big", "cold-1", "run-1", "run-2", "run-3"}
	vm("big", 8192, resource.PowerStopped)
	vm("cold-1", 256, resource.PowerStopped)
	for _, n := range names[2:] {
		vm(n, 512, resource.PowerRunning)
	}
	testcluster.WaitFor(t, 10*time.Second, "the VMs placed on h1", func() (bool, error) {
		for _, n := range names {
			if status(n).Host != "h1" {
				return false, nil
			}
		}
		return true, nil
	})
	// The worker's reports: the running ones run, the others are stopped.
	var reports []resource.VMReport
	for _, n := range names {
		phase := resource.PhaseRunning
		if n == "big" || n == "cold-1" {
			phase = resource.PhaseStopped
		}
		reports = append(reports, resource.VMReport{VM: n, Epoch: status(n).Epoch, Phase: phase})
	}
	if _, err := c.Propose(ctx, fsm.ReportRequestType, &fsm.ReportRequest{Time: time.Now().UTC(), Host: "h1", Reports: reports}); err != nil {
		t.Fatal(err)
	}
	// h2 takes live migrations but has room for one VM; h3 only restarts.
	host("h2", 1, 600, resource.MigrationLive, resource.MigrationRestart)
	host("h3", 8, 4096, resource.MigrationRestart)

	if _, err := c.Propose(ctx, fsm.UpdateRequestType, &fsm.UpdateRequest{Time: time.Now().UTC(), Kind: resource.KindHost, Name: "h1",
		Spec: json.RawMessage(`{"unschedulable":true,"drain":{"migrate":true}}`)}); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 4*time.Second, "cold-1 moved, run-1 and run-2 migrating, big blocked", func() (bool, error) {
		m1, m2 := status("run-1").Migration, status("run-2").Migration
		return status("cold-1").Host == "h3" && m1 != nil && m2 != nil && c.DrainBlockers("h1")["big"] != "", nil
	})
	if m := status("run-1").Migration; m.Mode != resource.MigrationLive || m.Target != "h2" {
		t.Errorf("run-1's migration = %+v; want live to h2", m)
	}
	if m := status("run-2").Migration; m.Mode != resource.MigrationRestart || m.Target != "h3" {
		t.Errorf("run-2's migration = %+v; want restart to h3 (h2 is full, h3 takes restarts only)", m)
	}
	if st := status("run-3"); st.Migration != nil || st.Host != "h1" {
		t.Errorf("run-3 = %+v; want it waiting on h1 (%d migrations in flight at most)", st, DrainInFlight)
	}
	if b := c.DrainBlockers("h1")["big"]; !strings.Contains(b, "cannot migrate") {
		t.Errorf("big's blocker = %q; want why no host takes it", b)
	}
	// Enabling the host ends the drain: the leader forgets it.
	if _, err := c.Propose(ctx, fsm.UpdateRequestType, &fsm.UpdateRequest{Time: time.Now().UTC(), Kind: resource.KindHost, Name: "h1",
		Spec: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 2*time.Second, "the drain forgotten", func() (bool, error) { return c.DrainBlockers("h1") == nil, nil })
}
