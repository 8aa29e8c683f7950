package controller

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/scheduler"
)

// TestSchedulerNetworkFullAndVolumeHost: the scheduler places a VM whose
// network has an address left, leaves the next one pending with the
// network-full reason and then has nothing to propose for it (no loop of
// failing placements); a VM whose volume is bound to a host is placed
// only there.
func TestSchedulerNetworkFullAndVolumeHost(t *testing.T) {
	ic := newInmemCluster(t, 1)
	c := ic.ctrls[ic.leader(t)]
	ctx := context.Background()
	propose := func(typ fsm.MessageType, req any) {
		t.Helper()
		res, err := c.Propose(ctx, typ, req)
		if err == nil {
			err = res.Err
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	create := func(kind resource.Kind, name, spec string) {
		t.Helper()
		propose(fsm.CreateRequestType, &fsm.CreateRequest{Time: time.Now().UTC(), Kind: kind, Name: name, ID: uuid.NewString(), Spec: json.RawMessage(spec)})
	}
	vmStatus := func(name string) resource.VMStatus {
		o, err := c.FSM().State().Get(nil, resource.KindVM, name)
		if err != nil || o == nil {
			t.Fatalf("vm %s: %v", name, err)
		}
		st, err := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil {
			t.Fatal(err)
		}
		return *st
	}
	for _, h := range []string{"h1", "h2"} {
		propose(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: h, ID: uuid.NewString(), State: resource.HostReady,
			Capacity: resource.Resources{CPUs: 8, MemoryMiB: 8192}})
	}
	create(resource.KindNetwork, "n1", `{"cidr":"10.0.0.0/30"}`) // one address
	create(resource.KindVolume, "v1", `{"size_mib":1}`)
	create(resource.KindVM, "a", `{"cpus":1,"memory_mib":64,"nics":[{"network":"n1"}],"disks":[{"volume":"v1"}]}`)
	create(resource.KindVM, "b", `{"cpus":1,"memory_mib":64,"nics":[{"network":"n1"}]}`)
	testcluster.WaitFor(t, 10*time.Second, "a placed, b pending on the full network", func() (bool, error) {
		a, b := vmStatus("a"), vmStatus("b")
		return a.Phase == resource.PhaseScheduled && b.Phase == resource.PhasePending &&
			b.Reason == "network n1 is full: 1 of 1 addresses in use", nil
	})
	host := vmStatus("a").Host
	// The other host becomes the roomier: without its volume, a would go
	// there next.
	other := map[string]string{"h1": "h2", "h2": "h1"}[host]
	propose(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: other, State: resource.HostReady,
		Capacity: resource.Resources{CPUs: 64, MemoryMiB: 65536}})
	// Nothing more to propose for b while the network is full.
	hosts, vms, err := scheduler.FromState(c.FSM().State(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	nets, err := scheduler.NetworksFromState(c.FSM().State())
	if err != nil {
		t.Fatal(err)
	}
	if p := scheduler.PlanNetworks(hosts, vms, nets); len(p.Placements)+len(p.Unplaced) != 0 {
		t.Fatalf("plan for a full network: %+v, want nothing", p)
	}
	// Freed: b is placed. a, stopped, failed and started again, goes
	// back to its volume's host.
	propose(fsm.ActionRequestType, &fsm.ActionRequest{Time: time.Now().UTC(), VM: "a", Action: resource.ActionStop})
	propose(fsm.ReportRequestType, &fsm.ReportRequest{Time: time.Now().UTC(), Host: host, Reports: []fsm.VMReport{{VM: "a", Epoch: vmStatus("a").Epoch, Phase: resource.PhaseStopped}}})
	propose(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: time.Now().UTC(), Kind: resource.KindVM, Name: "a",
		Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"power":"stopped","disks":[{"volume":"v1"}]}`)})
	testcluster.WaitFor(t, 10*time.Second, "b placed once a released its address", func() (bool, error) {
		return vmStatus("b").Phase == resource.PhaseScheduled, nil
	})
	propose(fsm.ReportRequestType, &fsm.ReportRequest{Time: time.Now().UTC(), Host: host, Reports: []fsm.VMReport{{VM: "a", Epoch: vmStatus("a").Epoch, Phase: resource.PhaseFailed}}})
	propose(fsm.ActionRequestType, &fsm.ActionRequest{Time: time.Now().UTC(), VM: "a", Action: resource.ActionStart})
	testcluster.WaitFor(t, 10*time.Second, "a placed again on its volume's host", func() (bool, error) {
		st := vmStatus("a")
		return st.Phase == resource.PhaseScheduled, nil
	})
	if got := vmStatus("a").Host; got != host {
		t.Fatalf("a placed on %s, want %s (its volume's host)", got, host)
	}
}
