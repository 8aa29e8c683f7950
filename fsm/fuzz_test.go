package fsm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Fuzz targets. `go test` runs their seeds and the corpus committed under
// testdata/fuzz/; to fuzz, one target at a time:
//
//	go test -tags libvirt_dlopen -run '^$' -fuzz '^FuzzApply$' -fuzztime 60s ./fsm/

// checkStoredObjects asserts the invariants every object written by Apply
// keeps: a known kind, a valid name and labels, an id, sane indexes, and a
// spec and status already in canonical form.
func checkStoredObjects(t *testing.T, f *fsm.FSM, maxIndex uint64) {
	t.Helper()
	ids := map[string]string{}
	for _, k := range resource.Kinds() {
		objs, err := f.State().List(nil, k.Kind, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if err := resource.ValidateMeta(o.Name, o.Labels); err != nil {
				t.Errorf("%s: stored with invalid metadata: %v", o, err)
			}
			if o.ID == "" || ids[o.ID] != "" {
				t.Errorf("%s: id %q is empty or shared with %s", o, o.ID, ids[o.ID])
			}
			ids[o.ID] = o.String()
			if o.CreateIndex == 0 || o.CreateIndex > o.ModifyIndex || o.ModifyIndex > maxIndex {
				t.Errorf("%s: indexes create=%d modify=%d (max %d)", o, o.CreateIndex, o.ModifyIndex, maxIndex)
			}
			if spec, err := resource.NormalizeSpec(o.Kind, o.Spec); err != nil || !bytes.Equal(spec, o.Spec) {
				t.Errorf("%s: stored spec %s is not canonical (%s, %v)", o, o.Spec, spec, err)
			}
			if st, err := resource.NormalizeStatus(o.Kind, o.Status); err != nil || !bytes.Equal(st, o.Status) {
				t.Errorf("%s: stored status %s is not canonical (%s, %v)", o, o.Status, st, err)
			}
		}
	}
}

// checkStoredACLs asserts the invariants of the ACL tables: valid
// tokens with a secret hash and no secret, valid policies.
func checkStoredACLs(t *testing.T, f *fsm.FSM) {
	t.Helper()
	for _, e := range f.State().ACLTokens(nil) {
		if e.SecretID != "" || len(e.SecretHash) != 64 || e.AccessorID == "" {
			t.Errorf("token %+v: stored with a secret, or without a hash or accessor", e)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("token %s: stored invalid: %v", e.AccessorID, err)
		}
		if got := f.State().ACLTokenBySecret("never-a-secret"); got != nil {
			t.Errorf("lookup of an unknown secret found %s", got.AccessorID)
		}
	}
	for _, p := range f.State().ACLPolicies(nil) {
		if err := p.Validate(); err != nil {
			t.Errorf("ACL policy %s: stored invalid: %v", p.Name, err)
		}
	}
}

func fuzzApplySeeds(f *testing.F) {
	for _, g := range goldenEntries(f) {
		data, err := fsm.Encode(g.typ, g.req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// Commands that hit the pre-populated objects (seed: vm/a@1, vm/b@2,
	// host/h1@3).
	add := func(t fsm.MessageType, req any) {
		data, err := fsm.Encode(t, req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	add(fsm.CreateRequestType, createReq(vm, "c", "id-c", map[string]string{"app": "web"}, vmSpec1))
	add(fsm.CreateRequestType, createReq(vm, "a", "id-dup", nil, vmSpec1))
	add(fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", CAS: 1, Labels: map[string]string{"x": "y"}, Spec: raw(vmSpec2)})
	add(fsm.StatusRequestType, &fsm.StatusRequest{Kind: host, Name: "h1", CAS: 3, Status: raw(`{"state":"ready","capacity":{"cpus":4,"memory_mib":4096}}`)})
	add(fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "b", CAS: 2})
	add(fsm.BatchRequestType, batchOf(f,
		fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1),
		fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "c", CAS: at, Spec: raw(vmSpec2)},
		fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a"},
	))
	// The placement life cycle (h1 is down with no capacity; vm/a and vm/b
	// are pending).
	add(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h1", State: resource.HostReady, Capacity: amount(4, 4096)})
	add(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h2", ID: "id-h2", Labels: map[string]string{"rack": "r1"},
		State: resource.HostReady, Address: "127.0.0.12:7946", Capacity: amount(8, 8192), Driver: "sim", Reason: "joined"})
	add(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime,
		Placements: []fsm.Placement{{VM: "a", Host: "h1"}, {VM: "zz", Host: "h1"}},
		Unplaced:   []fsm.Unplaced{{VM: "b", Reason: "no ready host"}}})
	add(fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "h1", Reports: []fsm.VMReport{
		{VM: "a", Epoch: 0, Phase: resource.PhaseRunning}, {VM: "b", Epoch: 3, Phase: "bogus", SetPower: "stopped"}}})
	add(fsm.EvacuateRequestType, &fsm.EvacuateRequest{Time: fsm.TestTime.Add(time.Hour), Host: "h1", Grace: time.Minute, Reason: "down"})
	add(fsm.ActionRequestType, &fsm.ActionRequest{Time: fsm.TestTime, VM: "a", Action: resource.ActionStop})
	// One entry through the whole life cycle: h2 joins, vm/a is placed on
	// it (epoch at), runs, is rebooted, resized, and h2 goes down and is
	// evacuated.
	add(fsm.BatchRequestType, batchOf(f,
		fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h2", ID: "id-h2", State: resource.HostReady, Capacity: amount(8, 8192)},
		fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "a", Host: "h2"}, {VM: "b", Host: "h2"}}},
		fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "h2", Reports: []fsm.VMReport{{VM: "a", Epoch: at, Phase: resource.PhaseRunning}}},
		fsm.ActionRequestType, &fsm.ActionRequest{Time: fsm.TestTime, VM: "a", Action: resource.ActionReboot},
		fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Spec: raw(`{"cpus":4,"memory_mib":4096,"ha":"restart"}`)},
		fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h2", State: resource.HostDown, Capacity: amount(8, 8192)},
		fsm.EvacuateRequestType, &fsm.EvacuateRequest{Time: fsm.TestTime, Host: "h2", Reason: "down"},
	))
	// Protocol 5: h1 in the new host-state format (state_index = the
	// entry's index), a fence record of that period, and evacuations
	// that name it, a wrong period, or too short a measure.
	add(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h1", State: resource.HostDown, Capacity: amount(4, 4096),
		FenceAfterMS: 3000, DownGraceMS: 4000})
	add(fsm.HostFenceRequestType, &fsm.HostFenceRequest{Time: fsm.TestTime, Host: "h1", Fence: resource.HostFence{
		State: resource.FenceFailed, Attempts: 1, ExitCode: 1, Output: "no", StateIndex: 3}})
	add(fsm.EvacuateRequestType, &fsm.EvacuateRequest{Time: fsm.TestTime, Host: "h1", StateIndex: 3, DownForMS: 5000, FenceRequired: true})
	add(fsm.EvacuateRequestType, &fsm.EvacuateRequest{Time: fsm.TestTime, Host: "h1", StateIndex: 9, DownForMS: 1})
	add(fsm.BatchRequestType, batchOf(f,
		fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h1", State: resource.HostDown, Capacity: amount(4, 4096), DownGraceMS: 4000},
		fsm.HostFenceRequestType, &fsm.HostFenceRequest{Time: fsm.TestTime, Host: "h1", Fence: resource.HostFence{
			State: resource.FenceSucceeded, Attempts: 2, StateIndex: at}},
		fsm.EvacuateRequestType, &fsm.EvacuateRequest{Time: fsm.TestTime, Host: "h1", StateIndex: at, DownForMS: 4000, FenceRequired: true},
	))
	// Protocol 6: ACLs, and commands with an accessor.
	hash := resource.HashACLSecret("s")
	add(fsm.ACLBootstrapRequestType, &fsm.ACLBootstrapRequest{Time: fsm.TestTime, AccessorID: "acc-m", SecretHash: hash})
	add(fsm.ACLPolicyUpsertRequestType, &fsm.ACLPolicyUpsertRequest{Time: fsm.TestTime, Policy: resource.ACLPolicy{Name: "p",
		Rules: []resource.ACLRule{{Kind: vm, Access: resource.AccessWrite, Selector: "app=web"}}}})
	add(fsm.ACLTokenCreateRequestType, &fsm.ACLTokenCreateRequest{Time: fsm.TestTime, SecretHash: hash,
		Token: resource.ACLToken{AccessorID: "acc-n", Type: resource.TokenNode, Node: "h1"}})
	add(fsm.BatchRequestType, batchOf(f,
		fsm.ACLPolicyUpsertRequestType, &fsm.ACLPolicyUpsertRequest{Time: fsm.TestTime, Policy: resource.ACLPolicy{Name: "p",
			Rules: []resource.ACLRule{{Kind: vm, Access: resource.AccessRead}}}},
		fsm.ACLTokenCreateRequestType, &fsm.ACLTokenCreateRequest{Time: fsm.TestTime, SecretHash: hash,
			Token: resource.ACLToken{AccessorID: "acc-c", Type: resource.TokenClient, Policies: []string{"p"}}},
		fsm.ACLTokenDeleteRequestType, &fsm.ACLTokenDeleteRequest{Time: fsm.TestTime, AccessorID: "acc-c"},
		fsm.ACLPolicyDeleteRequestType, &fsm.ACLPolicyDeleteRequest{Time: fsm.TestTime, Name: "p"},
	))
	for _, acc := range []string{"acc-1", ""} {
		at, req, err := fsm.WithAccessor(acc, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Spec: raw(vmSpec2)})
		if err != nil {
			f.Fatal(err)
		}
		add(at, req)
	}
	at6, req6, _ := fsm.WithAccessor("acc-2", fsm.BatchRequestType, batchOf(f,
		fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "b"},
		fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1)))
	add(at6, req6)
	// Protocol 7: networks, images, volumes, VM devices, resource reports.
	add(fsm.BatchRequestType, batchOf(f,
		fsm.CreateRequestType, createReq(network, "n1", "id-n1", nil, `{"cidr":"10.0.0.0/29","reserved":[{"from":"10.0.0.3"}]}`),
		fsm.CreateRequestType, createReq(image, "img", "id-img", nil, `{"file":"d.qcow2"}`),
		fsm.CreateRequestType, createReq(volume, "v1", "id-v1", nil, `{"size_mib":5,"image":"img","persistent":true}`),
		fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, `{"cpus":1,"memory_mib":64,"nics":[{"network":"n1"},{"network":"n1","ip":"10.0.0.5"}],"disks":[{"image":"img","size_mib":1},{"volume":"v1"}]}`),
		fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h1", State: resource.HostReady, Capacity: amount(4, 4096)},
		fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "c", Host: "h1"}}},
		fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "h1", Resources: []resource.ResourceReport{
			{Kind: network, Name: "n1", State: resource.HostResourceReady}, {Kind: volume, Name: "v1", State: resource.HostResourceReady, SizeMiB: 5},
			{Kind: image, Name: "nope", State: resource.HostResourceFailed}}},
		fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: network, Name: "n1", Spec: raw(`{"cidr":"10.0.0.0/29","mtu":1400}`)},
		fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "c"},
		fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: network, Name: "n1"},
	))
	add(fsm.CreateRequestType, createReq(network, "n1", "id-n1", nil, `{"cidr":"fd00::/126"}`))
	add(fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, `{"cpus":1,"memory_mib":64,"nics":[{"network":"n1","mac":"02:00:00:00:00:01"}]}`))
	add(fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Spec: raw(`{"cpus":1,"memory_mib":64,"disks":[{"volume":"v1"}]}`)})
	add(fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "h1", Resources: []resource.ResourceReport{{Kind: volume, Name: "x", State: "removed"}}})
	// Protocol 11: ordered reports, one of them late.
	add(fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "h1",
		Reports:   []fsm.VMReport{{VM: "a", Epoch: 5, Phase: resource.PhaseRunning, Seq: 9}, {VM: "a", Epoch: 5, Phase: resource.PhaseStopping, Seq: 8}},
		Resources: []resource.ResourceReport{{Kind: volume, Name: "v1", State: resource.HostResourceReady, Seq: 9}, {Kind: network, Name: "n1", State: resource.HostResourceReady, Seq: 3}}})
	// Protocol 9: a whole live migration in one entry (h1 and h2 offer
	// the modes; vm/a runs on h1 and moves to h2, migration id at), then
	// one by restart that the source's report ends; and the parts alone,
	// mostly refused on the seed state.
	modes := []string{resource.MigrationLive, resource.MigrationRestart}
	add(fsm.BatchRequestType, batchOf(f,
		fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h1", State: resource.HostReady, Capacity: amount(4, 4096), MigrationModes: modes},
		fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h2", ID: "id-h2", State: resource.HostReady, Capacity: amount(4, 4096), MigrationModes: modes},
		fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "a", Host: "h1"}}},
		fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "h1", Reports: []fsm.VMReport{{VM: "a", Epoch: at, Phase: resource.PhaseRunning}}},
		fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "a", Host: "h2", Mode: resource.MigrationLive},
		fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{Time: fsm.TestTime, Host: "h2", Events: []resource.MigrationEvent{
			{VM: "a", ID: at, Event: resource.MigrationPrepared, URI: "qemu+tls://h2/system"}, {VM: "a", ID: at + 1, Event: resource.MigrationDone}}},
		fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{Time: fsm.TestTime, Host: "h1", Events: []resource.MigrationEvent{
			{VM: "a", ID: at, Event: resource.MigrationDone, DowntimeMS: 12}}},
	))
	add(fsm.BatchRequestType, batchOf(f,
		fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h1", State: resource.HostReady, Capacity: amount(4, 4096), MigrationModes: modes},
		fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h2", ID: "id-h2", State: resource.HostReady, Capacity: amount(4, 4096), MigrationModes: modes[1:]},
		fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "a", Host: "h1"}, {VM: "b", Host: "h1"}}},
		fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "h1", Reports: []fsm.VMReport{
			{VM: "a", Epoch: at, Phase: resource.PhaseRunning}, {VM: "b", Epoch: at, Phase: resource.PhaseRunning}}},
		fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "a", Host: "h2", Mode: resource.MigrationRestart},
		fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "b", Host: "h2", Mode: resource.MigrationRestart},
		fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "b", Abort: true},
		fsm.ReportRequestType, &fsm.ReportRequest{Time: fsm.TestTime, Host: "h1", Reports: []fsm.VMReport{{VM: "a", Epoch: at, Phase: resource.PhaseStopped}}},
		fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h2", State: resource.HostDown, Capacity: amount(4, 4096)},
		fsm.EvacuateRequestType, &fsm.EvacuateRequest{Time: fsm.TestTime, Host: "h2", Reason: "down"},
	))
	add(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "a", Host: "h1", Mode: resource.MigrationLive})
	add(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "a", Host: "h1", Mode: "teleport"})
	add(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "a", Abort: true})
	add(fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h1", State: resource.HostReady, Capacity: amount(4, 4096), MigrationModes: []string{"restart", "live"}})
	add(fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{Time: fsm.TestTime, Host: "h1", Events: []resource.MigrationEvent{
		{VM: "a", ID: 1, Event: resource.MigrationFailed, Reason: "x"}, {VM: "zz", ID: 1, Event: resource.MigrationDone},
		{VM: "a", Event: resource.MigrationPrepared}, {VM: "a", ID: 2, Event: "teleported", URI: "\x00"}, {VM: "b", ID: 2, Event: resource.MigrationDone, DowntimeMS: -1}}})
	add(fsm.StatusRequestType, &fsm.StatusRequest{Kind: vm, Name: "a", Status: raw(`{"phase":"migrating","host":"h1","epoch":1,"migration":{"id":1,"target":"h2","mode":"live","state":"ready"}}`)})
	for _, s := range []string{"\x14{}", "\x14{\"events\":null}", "\x14{\"host\":\"h1\",\"events\":[{}]}", "\x14[]", "\x94{}",
		"\x0b{\"vm\":\"a\",\"host\":\"h1\",\"grace\":0,\"mode\":\"live\",\"abort\":true}"} {
		f.Add([]byte(s))
	}
	for _, s := range []string{"\x0e{}", "\x0f{}", "\x10{}", "\x11{}", "\x12{}", "\x13{}", "\x13{\"type\":19,\"payload\":{}}",
		"\x13{\"accessor\":\"a\",\"type\":99,\"payload\":{}}", "\x13{\"accessor\":\"a\",\"type\":131,\"payload\":{}}"} {
		f.Add([]byte(s))
	}
	for _, s := range []string{"", "\x00", "\x01", "\x01{}", "\x04{\"ops\":[]}", "\x63{}", "\xe3{}", "\x01null", "\x02[]", "\x05\"x\"",
		"\x06{}", "\x06null", "\x07{}", "\x08{}", "\x09{}", "\x0a{}", "\x0b{}", "\x0c{}", "\x0d{}", "\x0d{\"fence\":{}}"} {
		f.Add([]byte(s))
	}
}

// FuzzApply feeds arbitrary bytes as a log entry's Data to an FSM holding a
// few objects. Apply must not panic — nor hide a panic behind its recover
// (ErrApplyPanic) —; it halts exactly on the entries the model says this
// build cannot understand (notUnderstood), and then keeps its state and
// refuses what follows; a refused entry leaves the state as it was; the
// outcome is deterministic; and what a successful entry wrote satisfies
// the store's invariants and survives a snapshot round trip.
func FuzzApply(f *testing.F) {
	fuzzApplySeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		a := fsm.TestFSM(t)
		seed(t, a)
		before := observe(t, a)
		l := &raft.Log{Index: at, Term: 1, Type: raft.LogCommand, Data: data}
		res := fsm.TestApplyLog(t, a, l)
		if errors.Is(res.Err, fsm.ErrApplyPanic) {
			t.Fatalf("Apply panicked (recovered): %v", res.Err)
		}
		cause := notUnderstood(propEntry{data: bytes.Clone(data)})
		halted := errors.Is(res.Err, fsm.ErrHalted)
		switch {
		case cause != nil && !halted:
			t.Fatalf("entry not understood (%v) did not halt the FSM: %v", cause, res.Err)
		case cause == nil && halted:
			t.Fatalf("entry understood but the FSM halted: %v", res.Err)
		case halted:
			if !errors.Is(res.Err, cause) || a.Halted() != res.Err || a.AppliedIndex() != 3 {
				t.Fatalf("halt %v (Halted %v, applied %d), want cause %v at applied 3", res.Err, a.Halted(), a.AppliedIndex(), cause)
			}
		case a.Halted() != nil || a.AppliedIndex() != at:
			t.Fatalf("Halted %v, applied %d after an understood entry", a.Halted(), a.AppliedIndex())
		}
		if res.Err != nil {
			if after := observe(t, a); after != before {
				t.Fatalf("failed entry (%v) changed the state: %+v -> %+v", res.Err, before, after)
			}
		}
		// Determinism: a twin gives the same answer and state.
		b := fsm.TestFSM(t)
		seed(t, b)
		resB := fsm.TestApplyLog(t, b, &raft.Log{Index: at, Term: 1, Type: raft.LogCommand, Data: bytes.Clone(data)})
		if errString(res.Err) != errString(resB.Err) || a.State().Digest() != b.State().Digest() {
			t.Fatalf("two FSMs disagree: %v / %v", res.Err, resB.Err)
		}
		if halted {
			// Nothing applies after a halt.
			next := fsm.TestApply(t, a, at+1, fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1))
			if !errors.Is(next.Err, fsm.ErrHalted) || observe(t, a) != before {
				t.Fatalf("entry after the halt: %v, or the state changed", next.Err)
			}
			return
		}
		if res.Err != nil {
			return
		}
		checkStoredObjects(t, a, at)
		if !bugOpen("status-host-allocated") && !bugOpen("create-host-allocated") && !bugOpen("vm-status-host-prefix") {
			fsm.TestCheckAllocations(t, a)
		}
		objEvents := 0
		for _, ev := range eventsAt(t, a, at) {
			if ev.Kind != fsm.EventKindACLPolicy && ev.Kind != fsm.EventKindACLToken {
				objEvents++ // ACL changes return no object
			}
		}
		objs := len(res.Objects)
		for _, sub := range res.Subs {
			objs += len(sub.Objects) // a creates-bin entry's
		}
		if objEvents != objs {
			t.Errorf("%d objects written but %d events", objs, objEvents)
		}
		checkStoredACLs(t, a)
		if r := fsm.TestSnapshotRestore(t, a); r.State().Digest() != a.State().Digest() {
			t.Fatalf("snapshot round trip changed the state")
		}
	})
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// FuzzRestore feeds arbitrary bytes to Restore. It must not panic; on error
// the old state stays; on success the state is readable, writable, and a
// fixed point of Persist→Restore.
func FuzzRestore(f *testing.F) {
	g := fsm.TestFSM(f)
	seed(f, g)
	fsm.TestMustApply(f, g, 4, fsm.StatusRequestType, &fsm.StatusRequest{Kind: host, Name: "h1", Status: raw(`{"state":"ready"}`)})
	good := fsm.TestPersist(f, g)
	f.Add(good)
	f.Add(fsm.TestPersist(f, fsm.TestFSM(f)))
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"version":1,"applied_index":7}` + "\n" + `{"object":{"kind":"vm","name":"x","id":"i","labels":null}}`))
	f.Add([]byte(`{"version":1}` + "\n" + `{"index":{"key":"objects/vm","value":9}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(``))
	fsm.TestMustApply(f, g, 5, fsm.ACLBootstrapRequestType, &fsm.ACLBootstrapRequest{Time: fsm.TestTime, AccessorID: "m", SecretHash: resource.HashACLSecret("s")})
	fsm.TestMustApply(f, g, 6, fsm.ACLPolicyUpsertRequestType, &fsm.ACLPolicyUpsertRequest{Time: fsm.TestTime,
		Policy: resource.ACLPolicy{Name: "p", Rules: []resource.ACLRule{{Kind: vm, Access: resource.AccessRead}}}})
	f.Add(fsm.TestPersist(f, g))
	// A migration under way (vm/a from h1 to h2).
	fsm.TestMustApply(f, g, 7, fsm.StatusRequestType, &fsm.StatusRequest{Kind: host, Name: "h1", Status: raw(`{"state":"ready","capacity":{"cpus":4,"memory_mib":4096}}`)})
	fsm.TestMustApply(f, g, 8, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: fsm.TestTime, Name: "h2", ID: "id-h2", State: resource.HostReady, Capacity: amount(4, 4096)})
	fsm.TestMustApply(f, g, 9, fsm.StatusRequestType, &fsm.StatusRequest{Kind: vm, Name: "a",
		Status: raw(`{"phase":"migrating","host":"h1","epoch":1,"migration":{"id":9,"target":"h2","mode":"live","state":"ready","uri":"tcp://h2"}}`)})
	f.Add(fsm.TestPersist(f, g))
	f.Fuzz(func(t *testing.T, data []byte) {
		a := fsm.TestFSM(t)
		seed(t, a)
		before := observe(t, a)
		err := a.Restore(io.NopCloser(bytes.NewReader(data)))
		if err != nil {
			if after := observe(t, a); after != before || a.AppliedIndex() != 3 {
				t.Fatalf("failed Restore (%v) changed the state", err)
			}
			return
		}
		s := a.State()
		d := s.Digest()
		for _, k := range []resource.Kind{vm, host, "nope"} {
			s.List(nil, k, nil)
			s.Index(k)
			s.Count(k)
		}
		a.Events().Since(0, 0)
		s.ACLBootstrapped(nil)
		for _, e := range s.ACLTokens(nil) {
			s.ACLIdentity(e)
			s.ACLToken(nil, e.AccessorID)
		}
		s.ACLPolicies(nil)
		s.ACLTokenBySecret("s")
		p1 := fsm.TestPersist(t, a)
		r := fsm.TestRestore(t, p1)
		if r.State().Digest() != d || r.AppliedIndex() != a.AppliedIndex() {
			t.Fatalf("Persist→Restore of a restored state changed it")
		}
		if p2 := fsm.TestPersist(t, r); !bytes.Equal(p1, p2) {
			t.Fatalf("Persist is not a fixed point:\n%s\n%s", p1, p2)
		}
		// The FSM keeps working on whatever was restored.
		next := max(a.AppliedIndex(), s.LatestIndex()) + 1
		for _, l := range []*raft.Log{
			fsm.TestLog(t, next, fsm.CreateRequestType, createReq(vm, "fuzz-new", "fuzz-new-id", nil, vmSpec1)),
			fsm.TestLog(t, next+1, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "x"}),
		} {
			if res := fsm.TestApplyLog(t, a, l); errors.Is(res.Err, fsm.ErrApplyPanic) || errors.Is(res.Err, fsm.ErrHalted) {
				t.Fatalf("Apply after Restore panicked: %v", res.Err)
			}
		}
	})
}

// decodeTargets are the types the HTTP layer and the FSM decode strictly.
var decodeTargets = []struct {
	prefix string
	new    func() any
}{
	{"spec", func() any { return new(resource.VMSpec) }},
	{"spec", func() any { return new(resource.HostSpec) }},
	{"status", func() any { return new(resource.VMStatus) }},
	{"status", func() any { return new(resource.HostStatus) }},
	{"", func() any { return new(resource.CreateRequest) }},
	{"", func() any { return new(resource.UpdateRequest) }},
	{"", func() any { return new(resource.MigrationEventsRequest) }},
}

// FuzzDecodeStrict: resource.DecodeStrict never panics; every error is a
// *FieldError wrapping ErrInvalid that names a field under the prefix; what
// it accepts is one JSON value and re-encodes to something it accepts again.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{
		`{"cpus":1,"memory_mib":512}`, `{"cpus":1,"memory_mib":512,"bogus":1}`, `{"cpus":"x"}`, `{"CPUS":2}`,
		`{"phase":"migrating","host":"h1","migration":{"id":3,"target":"h2","mode":"live","state":"ready","uri":"x"}}`,
		`{"host":"h1","events":[{"vm":"a","id":3,"event":"done","downtime_ms":5}]}`,
		`{"cpu_overcommit":1.5}`, `{"phase":"running","since":"2025-01-02T03:04:05+09:00"}`,
		`{"state":"ready","capacity":{"cpus":"x"}}`, `{"name":"a","labels":{"k":"v"},"spec":{}}`,
		`{} {}`, `{}]`, `[`, ``, `null`, `"x"`, `{"a":1`, "{\"\xff\":1}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tg := range decodeTargets {
			v := tg.new()
			err := resource.DecodeStrict(data, v, tg.prefix)
			if err != nil {
				var fe *resource.FieldError
				if !errors.As(err, &fe) || !errors.Is(err, resource.ErrInvalid) {
					t.Fatalf("DecodeStrict(%T) error %v (%T) is not a FieldError wrapping ErrInvalid", v, err, err)
				}
				if fe.Field == "" || (tg.prefix != "" && fe.Field != tg.prefix && !strings.HasPrefix(fe.Field, tg.prefix+".")) {
					t.Fatalf("DecodeStrict(%T, prefix %q) error names field %q (error %q)", v, tg.prefix, fe.Field, err)
				}
				continue
			}
			if !json.Valid(data) {
				t.Fatalf("DecodeStrict(%T) accepted invalid JSON %q", v, data)
			}
			again, err := json.Marshal(v)
			if err != nil {
				continue // e.g. a time that cannot be re-encoded; not DecodeStrict's concern
			}
			w := tg.new()
			if err := resource.DecodeStrict(again, w, tg.prefix); err != nil {
				t.Fatalf("DecodeStrict(%T) rejects its own re-encoding %s: %v", v, again, err)
			}
			if third, _ := json.Marshal(w); !bytes.Equal(again, third) {
				t.Fatalf("%T: re-encoding is not stable: %s vs %s", v, again, third)
			}
		}
	})
}

// FuzzNormalizeSpec: NormalizeSpec and NormalizeStatus, for every kind,
// never panic, report errors as FieldErrors under "spec"/"status", and are
// idempotent: what they return normalizes to itself and validates.
func FuzzNormalizeSpec(f *testing.F) {
	for _, s := range []string{
		`{"cpus":1,"memory_mib":512}`, `{"cpus":2,"memory_mib":1024,"power":"stopped","ha":"restart"}`,
		`{"cpus":0,"memory_mib":1}`, `{"cpus":1,"memory_mib":1,"power":"off"}`, `{}`,
		`{"cpu_overcommit":1.5,"memory_overcommit":2,"unschedulable":true}`, `{"cpu_overcommit":-0}`,
		`{"cpu_overcommit":1e-400}`, `{"memory_overcommit":64.00000000000001}`,
		`{"phase":"running","host":"h1","epoch":3,"since":"2025-01-02T03:04:05.123456789+09:00"}`,
		`{"state":"ready","capacity":{"cpus":8,"memory_mib":16384},"since":"0000-01-01T00:00:00+01:00"}`,
		`null`, `[]`, ``, `{"cpus":1,"cpus":2,"memory_mib":3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range resource.Kinds() {
			check := func(what, prefix string, norm func(resource.Kind, json.RawMessage) (json.RawMessage, error)) {
				out, err := norm(k.Kind, data)
				if err != nil {
					var fe *resource.FieldError
					if !errors.As(err, &fe) || !errors.Is(err, resource.ErrInvalid) ||
						(fe.Field != prefix && !strings.HasPrefix(fe.Field, prefix+".")) {
						t.Fatalf("%s(%s) error %q does not name a field under %q", what, k.Kind, err, prefix)
					}
					return
				}
				if !json.Valid(out) {
					t.Fatalf("%s(%s) returned invalid JSON %q", what, k.Kind, out)
				}
				again, err := norm(k.Kind, out)
				if err != nil || !bytes.Equal(again, out) {
					t.Fatalf("%s(%s) is not idempotent: %s -> %s (%v)", what, k.Kind, out, again, err)
				}
			}
			check("NormalizeSpec", "spec", resource.NormalizeSpec)
			check("NormalizeStatus", "status", resource.NormalizeStatus)
		}
	})
}
