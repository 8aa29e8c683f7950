package scheduler

import (
	"strings"
	"testing"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

func TestPlanNetworkFull(t *testing.T) {
	hosts := []Host{host("a", true, res(8, 8192), res(8, 8192))}
	vms := []VM{
		{Name: "v1", CreateIndex: 1, Need: res(1, 1), Networks: []string{"n1"}},
		{Name: "v2", CreateIndex: 2, Need: res(1, 1), Networks: []string{"n1"}},
		{Name: "v3", CreateIndex: 3, Need: res(1, 1), Networks: []string{"n1"}, Reason: "network n1 is full: 5 of 5 addresses in use"},
		{Name: "free", CreateIndex: 4, Need: res(1, 1), Networks: []string{"other"}},
	}
	p := PlanNetworks(hosts, vms, map[string]Network{"n1": {Free: 1, Capacity: 5}})
	if len(p.Placements) != 2 || p.Placements[0].VM != "v1" || p.Placements[1].VM != "free" {
		t.Fatalf("placements %+v: want v1 (the last address) and free (an unlimited network)", p.Placements)
	}
	// v2 gets the reason; v3 has it already: nothing rewritten.
	if len(p.Unplaced) != 1 || p.Unplaced[0].VM != "v2" || p.Unplaced[0].Reason != "network n1 is full: 5 of 5 addresses in use" {
		t.Fatalf("unplaced %+v", p.Unplaced)
	}
	// A second round with the network still full proposes nothing: no
	// hot loop of failing placements.
	vms[1].Reason = p.Unplaced[0].Reason
	p = PlanNetworks(hosts, vms[1:3], map[string]Network{"n1": {Free: 0, Capacity: 5}})
	if len(p.Placements)+len(p.Unplaced) != 0 {
		t.Fatalf("second round %+v", p)
	}
}

func TestPlanVolumeHost(t *testing.T) {
	hosts := []Host{
		host("big", true, res(64, 65536), res(64, 65536)),
		host("small", true, res(2, 2048), res(2, 2048)),
		host("down", false, res(8, 8192), res(8, 8192)),
	}
	vms := []VM{
		{Name: "pinned", CreateIndex: 1, Need: res(1, 1024), Host: "small", HostVolume: "v1"},
		{Name: "toobig", CreateIndex: 2, Need: res(4, 1024), Host: "small", HostVolume: "v2"},
		{Name: "ondown", CreateIndex: 3, Need: res(1, 1024), Host: "down", HostVolume: "v3"},
		{Name: "split", CreateIndex: 4, Need: res(1, 1024), Blocked: "its volumes are on different hosts"},
	}
	p := Plan(hosts, vms)
	if len(p.Placements) != 1 || p.Placements[0] != (fsm.Placement{VM: "pinned", Host: "small"}) {
		t.Fatalf("placements %+v: want pinned on small (its volume's host), not on big", p.Placements)
	}
	reasons := map[string]string{}
	for _, u := range p.Unplaced {
		reasons[u.VM] = u.Reason
	}
	for vm, want := range map[string]string{
		"toobig": "volume v2 is on host small, which does not have 4 CPUs",
		"ondown": "volume v3 is on host down, which is not ready",
		"split":  "different hosts",
	} {
		if !strings.Contains(reasons[vm], want) {
			t.Errorf("%s: reason %q, want %q", vm, reasons[vm], want)
		}
	}
}

// TestFromStateDevices: FromState reads the volumes' host and the NICs
// without an address; NetworksFromState the networks' room.
func TestFromStateDevices(t *testing.T) {
	f := fsm.TestFSM(t)
	log := fsm.NewTestLogger(t, f)
	apply := log.Apply
	create := func(kind resource.Kind, name, spec string) {
		apply(fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: kind, Name: name, ID: fsm.TestID(log.Index + 1), Spec: []byte(spec)})
	}
	apply(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h1", ID: "id-h1", State: resource.HostReady, Capacity: res(4, 4096)})
	create(resource.KindNetwork, "n1", `{"cidr":"10.0.0.0/30"}`) // one address
	create(resource.KindVolume, "v1", `{"size_mib":1}`)
	create(resource.KindVM, "a", `{"cpus":1,"memory_mib":64,"nics":[{"network":"n1"}],"disks":[{"volume":"v1"}]}`)
	create(resource.KindVM, "b", `{"cpus":1,"memory_mib":64,"nics":[{"network":"n1"}]}`)
	apply(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "a", Host: "h1"}}})
	apply(fsm.ActionRequestType, &fsm.ActionRequest{Time: fsm.TestTime, VM: "a", Action: resource.ActionStop})
	apply(fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "h1", Reports: []fsm.VMReport{{VM: "a", Epoch: log.Index - 1, Phase: resource.PhaseFailed}}})
	apply(fsm.ActionRequestType, &fsm.ActionRequest{Time: fsm.TestTime, VM: "a", Action: resource.ActionStart})
	_, vms, err := FromState(f.State(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]VM{}
	for _, v := range vms {
		got[v.Name] = v
	}
	if a := got["a"]; a.Host != "h1" || a.HostVolume != "v1" || len(a.Networks) != 0 {
		t.Errorf("a: %+v, want held to h1 by v1, its address kept", a)
	}
	if b := got["b"]; len(b.Networks) != 1 || b.Networks[0] != "n1" || b.Host != "" {
		t.Errorf("b: %+v, want in need of an address on n1", b)
	}
	nets, err := NetworksFromState(f.State())
	if err != nil || nets["n1"] != (Network{Free: 0, Capacity: 1}) {
		t.Fatalf("networks %+v %v", nets, err)
	}
	hosts, _, _ := FromState(f.State(), nil, true)
	p := PlanNetworks(hosts, vms, nets)
	if len(p.Placements) != 1 || p.Placements[0].VM != "a" {
		t.Fatalf("plan %+v", p)
	}
	for _, u := range p.Unplaced {
		if u.VM == "b" && u.Reason == "network n1 is full: 1 of 1 addresses in use" {
			t.Errorf("b's reason rewritten with the same text: %+v", u)
		}
	}
}
