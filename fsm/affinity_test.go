package fsm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// A plan that breaks a VM's requirements or a hard affinity rule is
// refused when the state machine applies it, whatever the leader
// planned; soft rules are not the state machine's business.
func TestPlaceRulesAtApplyTime(t *testing.T) {
	f := fsm.TestFSM(t)
	hostState(t, f, 1, "h1", resource.HostReady, 8, 8192)
	hostState(t, f, 2, "h2", resource.HostReady, 8, 8192)
	hostState(t, f, 3, "h3", resource.HostReady, 8, 8192)
	mkVM(t, f, 4, "db-1", `{"cpus":1,"memory_mib":512,"affinity":{"group":"db","rule":"anti-affine","hard":true}}`)
	mkVM(t, f, 5, "db-2", `{"cpus":1,"memory_mib":512,"affinity":{"group":"db","rule":"anti-affine","hard":true}}`)
	mkVM(t, f, 6, "soft", `{"cpus":1,"memory_mib":512,"affinity":{"group":"db","rule":"anti-affine"}}`)
	mkVM(t, f, 7, "web-1", `{"cpus":1,"memory_mib":512,"affinity":{"group":"web","rule":"affine","hard":true}}`)
	mkVM(t, f, 8, "web-2", `{"cpus":1,"memory_mib":512,"affinity":{"group":"web","rule":"affine","hard":true}}`)
	mkVM(t, f, 9, "picky", `{"cpus":1,"memory_mib":512,"requirements":"host.name == \"h3\" && host.free_memory_mib >= 1024"}`)
	mkVM(t, f, 10, "big", `{"cpus":1,"memory_mib":512,"requirements":"host.free_memory_mib > 8000"}`)
	placeAll(t, f, 11, "h1", "db-1", "web-1")

	// One plan, each placement checked on its own.
	res := fsm.TestMustApply(t, f, 12, fsm.PlaceRequestType, place("db-2@h1", "soft@h1", "web-2@h2", "picky@h2", "big@h1"))
	for i, name := range []string{"db-2", "soft", "web-2", "picky", "big"} {
		err := res.ItemErrors[i]
		if err == nil || !errors.Is(err, fsm.ErrPlacementRule) || !errors.Is(err, fsm.ErrHostNotReady) {
			t.Errorf("%s: error %v; want ErrPlacementRule (and ErrHostNotReady, a 409)", name, err)
		}
		if got := vmStatus(t, f, name); got.Phase != resource.PhasePending {
			t.Errorf("%s is %s after a refused placement", name, got.Phase)
		}
	}
	for i, want := range []string{`hard anti-affinity of group db: vm "db-1" is on host "h1"`, `hard anti-affinity of group db`,
		`hard affinity of group web: its members are on h1, not "h2"`, `does not satisfy the requirements of vm "picky"`, `"big"`} {
		if !strings.Contains(res.ItemErrors[i].Error(), want) {
			t.Errorf("error %d %q does not say %q", i, res.ItemErrors[i], want)
		}
	}

	// The same VMs where the rules allow them; a soft rule broken is
	// the planner's choice, its reason kept.
	req := place("db-2@h2", "web-2@h1", "picky@h3")
	req.Placements = append(req.Placements, fsm.Placement{VM: "soft", Host: "h3", Reason: "placed on h3 breaking soft anti-affinity of group db (h1, h2 full)"})
	res = fsm.TestMustApply(t, f, 13, fsm.PlaceRequestType, req)
	for i, err := range res.ItemErrors {
		if err != nil {
			t.Errorf("placement %d: %v", i, err)
		}
	}
	if got := vmStatus(t, f, "soft"); got.Host != "h3" || !strings.Contains(got.Reason, "breaking soft anti-affinity") {
		t.Errorf("soft: %+v", got)
	}
	// big: h3 now has 2 VMs' memory allocated, below 8000 MiB free.
	if res := fsm.TestMustApply(t, f, 14, fsm.PlaceRequestType, place("big@h3")); res.ItemErrors[0] == nil {
		t.Errorf("big placed on h3 with %+v allocated", hostStatus(t, f, "h3").Allocated)
	}
	fsm.TestCheckAllocations(t, f)

	// A migration to a named host is held to the same rules: db-1 may
	// not join db-2 on h2 (hard anti-affinity).
	mig := &fsm.MigrateRequest{Time: fsm.TestTime, VM: "db-1", Host: "h2"}
	hostState(t, f, 15, "h1", resource.HostDown, 8, 8192)
	if res := fsm.TestApply(t, f, 16, fsm.MigrateRequestType, mig); !errors.Is(res.Err, fsm.ErrPlacementRule) {
		t.Errorf("migrate db-1 to h2: %v; want ErrPlacementRule", res.Err)
	}
}

// PlacedGroupMembers is GroupMembers without the members on no host.
func TestPlacedGroupMembers(t *testing.T) {
	f := fsm.TestFSM(t)
	hostState(t, f, 1, "h1", resource.HostReady, 8, 8192)
	mkVM(t, f, 2, "db-1", `{"cpus":1,"memory_mib":512,"affinity":{"group":"db","rule":"anti-affine","hard":true}}`)
	mkVM(t, f, 3, "db-2", `{"cpus":1,"memory_mib":512,"affinity":{"group":"db","rule":"anti-affine"}}`)
	mkVM(t, f, 4, "web-1", `{"cpus":1,"memory_mib":512,"affinity":{"group":"web","rule":"affine"}}`)
	placeAll(t, f, 5, "h1", "db-2", "web-1")
	all, err := f.State().GroupMembers("db")
	if err != nil {
		t.Fatal(err)
	}
	placed, err := f.State().PlacedGroupMembers("db")
	if err != nil {
		t.Fatal(err)
	}
	want := []fsm.GroupMember{{VM: "db-2", Host: "h1", Rule: resource.AffinityAntiAffine}}
	if len(all) != 2 || all[0].Host != "" || all[1] != want[0] || len(placed) != 1 || placed[0] != want[0] {
		t.Errorf("members %+v, placed %+v; want placed %+v", all, placed, want)
	}
}
