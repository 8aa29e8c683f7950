package scheduler_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/scheduler"
)

// The leader's view from the state: host attributes (labels, driver, VM
// count), the VMs' placement fields, the groups' placed members and the
// projects' strategies; planned and applied, the rules hold.
func TestFromStatePlacementFields(t *testing.T) {
	f := fsm.TestFSM(t)
	log := fsm.NewTestLogger(t, f)
	apply := log.Apply
	for i, h := range []string{"h1", "h2", "h3"} {
		apply(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: h, ID: "id-" + h, State: resource.HostReady,
			Capacity: resource.Resources{CPUs: 8, MemoryMiB: 8192 + int64(i)*1024}, Driver: "sim"})
		apply(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: resource.KindHost, Name: h,
			Labels: map[string]string{"zone": map[bool]string{true: "a", false: "b"}[i == 0]}, Spec: json.RawMessage(`{}`)})
	}
	apply(fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: resource.KindProject, Name: "p1", ID: fsm.TestID(100), Spec: json.RawMessage(`{"strategy":"binpack"}`)})
	mk := func(name, spec string) {
		t.Helper()
		s, err := resource.NormalizeRequestSpec(resource.KindVM, json.RawMessage(spec))
		if err != nil {
			t.Fatal(err)
		}
		apply(fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: resource.KindVM, Name: name, ID: fsm.TestID(log.Index + 1000), Spec: s})
	}
	mk("db-1", `{"cpus":1,"memory_mib":512,"affinity":{"group":"db","rule":"anti-affine","hard":true}}`)
	mk("db-2", `{"cpus":1,"memory_mib":512,"affinity":{"group":"db","rule":"anti-affine","hard":true}}`)
	mk("db-3", `{"cpus":1,"memory_mib":512,"affinity":{"group":"db","rule":"anti-affine","hard":true}}`)
	mk("db-4", `{"cpus":1,"memory_mib":512,"affinity":{"group":"db","rule":"anti-affine","hard":true}}`)
	mk("zb", `{"cpus":1,"memory_mib":512,"project":"p1","requirements":"host.labels.zone == \"b\""}`)
	mk("nowhere", `{"cpus":1,"memory_mib":512,"requirements":"host.labels.zone == \"c\" && host.driver == \"sim\""}`)

	// A leader that ignored zb's requirements (zone b) is refused by
	// the state machine, which reads the host's labels.
	res := apply(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "zb", Host: "h1"}}})
	if !errors.Is(res.ItemErrors[0], fsm.ErrPlacementRule) {
		t.Errorf("zb placed on h1 (zone a): %v", res.ItemErrors[0])
	}

	cache, exprs := scheduler.NewCache(), resource.NewExprCache(16)
	for round := range 2 {
		hosts, vms, err := scheduler.FromState(f.State(), cache, true)
		if err != nil {
			t.Fatal(err)
		}
		groups, err := scheduler.GroupsFromState(f.State(), vms)
		if err != nil {
			t.Fatal(err)
		}
		strategies, err := scheduler.ProjectStrategies(f.State(), vms)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 && strategies["p1"] != "binpack" {
			t.Errorf("round %d: project strategies %v (vms %+v)", round, strategies, vms)
		}
		for _, h := range hosts {
			if h.Labels["zone"] == "" || h.Driver != "sim" || h.State != resource.HostReady {
				t.Errorf("host %+v", h)
			}
		}
		plan := scheduler.PlanWith(hosts, vms, scheduler.Options{Groups: groups, ProjectStrategy: strategies, Exprs: exprs})
		if round == 1 {
			// Everything that could go went: db-4 and nowhere keep
			// their reasons, unchanged, so nothing is written.
			if len(plan.Placements)+len(plan.Unplaced) != 0 {
				t.Errorf("second round: %+v", plan)
			}
			break
		}
		res := apply(fsm.PlaceRequestType, &plan)
		for i, e := range res.ItemErrors {
			if e != nil {
				t.Errorf("placement %+v: %v", plan.Placements[i], e)
			}
		}
	}
	hostOf := func(vm string) resource.VMStatus {
		o, err := f.State().Get(nil, resource.KindVM, vm)
		if err != nil || o == nil {
			t.Fatalf("vm %s: %v", vm, err)
		}
		st, err := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil {
			t.Fatal(err)
		}
		return *st
	}
	seen := map[string]bool{}
	for _, v := range []string{"db-1", "db-2", "db-3"} {
		st := hostOf(v)
		if st.Host == "" || seen[st.Host] {
			t.Errorf("%s on %q (hosts so far %v)", v, st.Host, seen)
		}
		seen[st.Host] = true
	}
	if st := hostOf("db-4"); st.Phase != resource.PhasePending || !strings.Contains(st.Reason, "hard anti-affinity of group db") {
		t.Errorf("db-4: %+v", st)
	}
	// zb: zone b is h2 and h3; binpack (its project's) picks the one
	// with less free memory: h2.
	if st := hostOf("zb"); st.Host != "h2" {
		t.Errorf("zb on %q, want h2", st.Host)
	}
	if st := hostOf("nowhere"); st.Reason != `no host satisfies requirement host.labels.zone == "c" (3 hosts checked)` {
		t.Errorf("nowhere: reason %q", st.Reason)
	}

	// A migration target keeps the rules too: stopped, db-1 has
	// nowhere to go (the other hosts hold db-2 and db-3); zb may only go
	// to h3, the other zone b host.
	stop := func(vm, spec string) {
		t.Helper()
		apply(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: resource.KindVM, Name: vm, Spec: json.RawMessage(spec)})
		st := hostOf(vm)
		apply(fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: st.Host,
			Reports: []fsm.VMReport{{VM: vm, Epoch: st.Epoch, Phase: resource.PhaseStopped}}})
	}
	stop("db-1", `{"cpus":1,"memory_mib":512,"power":"stopped","affinity":{"group":"db","rule":"anti-affine","hard":true}}`)
	if h, err := scheduler.MigrationTarget(f.State(), "db-1", fsm.TestTime, 0); err == nil || !strings.Contains(err.Error(), "hard anti-affinity of group db") {
		t.Errorf("db-1 migration target %q, %v", h, err)
	}
	stop("zb", `{"cpus":1,"memory_mib":512,"power":"stopped","project":"p1","requirements":"host.labels.zone == \"b\""}`)
	if h, err := scheduler.MigrationTarget(f.State(), "zb", fsm.TestTime, 0); err != nil || h != "h3" {
		t.Errorf("zb migration target %q, %v; want h3", h, err)
	}
}

// TestFromStateNoHosts: with no host at all, the VMs whose status says so
// already (the state machine's reason for a VM created then) are not
// read: a round would change nothing. A pending VM with another reason
// is, so that the round tells it there are no hosts.
func TestFromStateNoHosts(t *testing.T) {
	f := fsm.TestFSM(t)
	log := fsm.NewTestLogger(t, f)
	apply := log.Apply
	mk := func(name string) {
		t.Helper()
		apply(fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: resource.KindVM, Name: name, ID: fsm.TestID(log.Index + 1000),
			Spec: json.RawMessage(`{"cpus":1,"memory_mib":512,"power":"running","ha":"none"}`)})
	}
	// "old" is created while a host exists (no reason yet), then the
	// host goes away; "new" is created with no host at all.
	apply(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h1", ID: "id-h1", State: resource.HostReady,
		Capacity: resource.Resources{CPUs: 1, MemoryMiB: 256}, Driver: "sim"})
	mk("old")
	// Volume v1 stays bound to h1 after the VM that used it there is
	// gone; "vol", created with no host, needs it.
	apply(fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: resource.KindVolume, Name: "v1", ID: fsm.TestID(log.Index + 1000),
		Spec: json.RawMessage(`{"size_mib":1,"persistent":true}`)})
	apply(fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: resource.KindVM, Name: "user", ID: fsm.TestID(log.Index + 1000),
		Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"disks":[{"volume":"v1"}]}`)})
	apply(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "user", Host: "h1"}}})
	apply(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: resource.KindVM, Name: "user"})
	apply(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: resource.KindHost, Name: "h1"})
	mk("new")
	apply(fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: resource.KindVM, Name: "vol", ID: fsm.TestID(log.Index + 1000),
		Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"disks":[{"volume":"v1"}]}`)})
	for _, full := range []bool{true, false} {
		hosts, vms, err := scheduler.FromState(f.State(), scheduler.NewCache(), full)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, vm := range vms {
			names = append(names, vm.Name)
		}
		if len(hosts) != 0 || strings.Join(names, ",") != "old,vol" {
			t.Fatalf("full %v: hosts %v, VMs %v; want old, whose reason is not yet the no-hosts one, and vol, whose volume is on a host", full, hosts, names)
		}
		plan := scheduler.PlanWith(hosts, vms, scheduler.Options{})
		reasons := map[string]string{}
		for _, u := range plan.Unplaced {
			reasons[u.VM] = u.Reason
		}
		if len(plan.Unplaced) != 2 || reasons["old"] != resource.ReasonNoHosts || reasons["vol"] != "volume v1 is on host h1, which is not a known host" {
			t.Fatalf("full %v: unplaced %+v, want old told there are no hosts and vol where its volume is", full, plan.Unplaced)
		}
	}
}

// TestFromStateRoundsSkipUnchanged: with one cache, a round whose hosts
// have not changed returns only the VMs that became pending or changed
// since the last round, however many were pending then; a host change
// brings every pending VM back.
func TestFromStateRoundsSkipUnchanged(t *testing.T) {
	f := fsm.TestFSM(t)
	log := fsm.NewTestLogger(t, f)
	apply := log.Apply
	mk := func(name, spec string) {
		t.Helper()
		apply(fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: resource.KindVM, Name: name, ID: fsm.TestID(log.Index + 1000),
			Spec: json.RawMessage(spec)})
	}
	// One small host: big VMs stay pending with a reason.
	apply(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h1", ID: "id-h1", State: resource.HostReady,
		Capacity: resource.Resources{CPUs: 1, MemoryMiB: 256}, Driver: "sim"})
	for _, n := range []string{"a", "b", "c"} {
		mk(n, `{"cpus":4,"memory_mib":4096}`)
	}
	cache := scheduler.NewCache()
	round := func(full bool, want string) {
		t.Helper()
		hosts, vms, err := scheduler.FromState(f.State(), cache, full)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, vm := range vms {
			names = append(names, vm.Name)
		}
		if strings.Join(names, ",") != want {
			t.Fatalf("full %v: VMs %v, want %q", full, names, want)
		}
		if plan := scheduler.PlanWith(hosts, vms, scheduler.Options{}); len(plan.Placements)+len(plan.Unplaced) > 0 {
			apply(fsm.PlaceRequestType, &plan)
		}
	}
	round(false, "a,b,c") // the first round reads them all (and writes their reasons)
	round(false, "a,b,c") // their reasons were written since
	round(false, "")
	round(false, "")
	mk("d", `{"cpus":4,"memory_mib":4096}`)
	round(false, "d")
	round(false, "d") // its reason
	round(false, "")
	apply(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: resource.KindVM, Name: "b", Spec: json.RawMessage(`{"cpus":2,"memory_mib":4096}`)})
	round(false, "b")
	round(false, "b")
	round(false, "")
	round(true, "a,b,c,d") // a full round reads them all
	round(false, "")
	apply(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h2", ID: "id-h2", State: resource.HostReady,
		Capacity: resource.Resources{CPUs: 2, MemoryMiB: 1024}, Driver: "sim"})
	round(false, "a,b,c,d") // new hosts: every pending VM again
	round(false, "")        // (same reasons: nothing written)
}
