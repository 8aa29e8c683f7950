package fsm_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// TestProtocolVersions: every message type belongs to a protocol this
// build speaks, and the newest protocol a type or a payload field needs is
// ProtocolVersion (a new type or field must bump it, or old nodes would be
// proposed entries they halt on or apply differently).
func TestProtocolVersions(t *testing.T) {
	newest := 0
	for _, mt := range fsm.MessageTypes {
		p := fsm.MinProtocol(mt)
		if p < 1 || p > fsm.ProtocolVersion {
			t.Errorf("%s: protocol %d outside 1..%d", mt, p, fsm.ProtocolVersion)
		}
		newest = max(newest, p)
	}
	cases := []struct {
		t    fsm.MessageType
		req  any
		want int
	}{
		{fsm.CreateRequestType, &fsm.CreateRequest{}, 1},
		{fsm.MigrateRequestType, &fsm.MigrateRequest{}, 2},
		{fsm.MigrateRequestType, &fsm.MigrateRequest{PhaseOnly: true}, 5},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{mustOp(t, fsm.MigrateRequestType, &fsm.MigrateRequest{PhaseOnly: true})}}, 5},
		{fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{}, 3},
		{fsm.HostStateRequestType, &fsm.HostStateRequest{}, 1},
		{fsm.HostStateRequestType, &fsm.HostStateRequest{ForeignDomainCount: 1}, 3},
		{fsm.HostStateRequestType, &fsm.HostStateRequest{ImageDir: "/var/lib/kumoi/images"}, 6},
		{fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"boot":{"image":"/images/d.qcow2"}}`)}, 1},
		{fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"boot":{"image":"d.qcow2"}}`)}, 6},
		{fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"boot":{"kernel":"k/vmlinuz"}}`)}, 6},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{mustOp(t, fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"boot":{"initrd":"i.img","kernel":"/k"}}`)})}}, 6},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.HostStateRequestType, &fsm.HostStateRequest{ImageDir: "/images"}),
		}}, 6},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.CreateRequestType, &fsm.CreateRequest{}), mustOp(t, fsm.MigrateRequestType, &fsm.MigrateRequest{}),
		}}, 2},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.HostStateRequestType, &fsm.HostStateRequest{ForeignDomains: []string{"kumoi-x"}}),
		}}, 3},
		{fsm.ReportRequestType, &fsm.ReportRequest{Reports: []fsm.VMReport{{VM: "a", Phase: resource.PhaseRunning}}}, 1},
		{fsm.ReportRequestType, &fsm.ReportRequest{Reports: []fsm.VMReport{{VM: "a"}, {VM: "b", Restarts: 1}}}, 4},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.ReportRequestType, &fsm.ReportRequest{Reports: []fsm.VMReport{{VM: "a", Restarts: 2}}}),
		}}, 4},
		// Protocol 7: networks, images, volumes, VM devices, resource reports.
		{fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindNetwork, Spec: json.RawMessage(`{"cidr":"10.0.0.0/24"}`)}, 7},
		{fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindImage, Spec: json.RawMessage(`{"file":"d.qcow2"}`)}, 7},
		{fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: resource.KindVolume, Spec: json.RawMessage(`{"size_mib":1}`)}, 7},
		{fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"nics":[{"network":"n"}]}`)}, 7},
		{fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"disks":[{"volume":"v"}]}`)}, 7},
		{fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64}`)}, 1},
		{fsm.ReportRequestType, &fsm.ReportRequest{Resources: []resource.ResourceReport{{Kind: resource.KindImage, Name: "i", State: "ready"}}}, 7},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64}`)}),
			mustOp(t, fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVolume, Spec: json.RawMessage(`{"size_mib":1}`)}),
		}}, 7},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.ReportRequestType, &fsm.ReportRequest{Resources: []resource.ResourceReport{{Kind: resource.KindVolume, Name: "v", State: "ready"}}}),
		}}, 7},
		{fsm.AccessorRequestType, mustAccessor(t, fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindNetwork, Spec: json.RawMessage(`{}`)}), 7},
		// Protocol 8: projects and the placement fields.
		{fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindProject, Spec: json.RawMessage(`{}`)}, 8},
		{fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"project":"p1"}`)}, 8},
		{fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"affinity":{"group":"g","rule":"affine"}}`)}, 8},
		{fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"nics":[{"network":"n"}],"requirements":"true"}`)}, 8},
		{fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVolume, Spec: json.RawMessage(`{"size_mib":1,"project":"p1"}`)}, 8},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindVM, Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"rank":"1"}`)}),
		}}, 8},
		{fsm.AccessorRequestType, mustAccessor(t, fsm.CreateRequestType, &fsm.CreateRequest{Kind: resource.KindProject, Spec: json.RawMessage(`{}`)}), 8},
		{fsm.PlaceRequestType, &fsm.PlaceRequest{Placements: []fsm.Placement{{VM: "a", Host: "h"}}}, 1},
		{fsm.PlaceRequestType, &fsm.PlaceRequest{Placements: []fsm.Placement{{VM: "a", Host: "h", Reason: "placed on h breaking soft anti-affinity of group g"}}}, 8},
		// Protocol 9: migrations of running VMs.
		{fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{}, 9},
		{fsm.MigrateRequestType, &fsm.MigrateRequest{Mode: resource.MigrationLive}, 9},
		{fsm.MigrateRequestType, &fsm.MigrateRequest{Mode: resource.MigrationRestart, PhaseOnly: true}, 9},
		{fsm.MigrateRequestType, &fsm.MigrateRequest{Abort: true}, 9},
		{fsm.HostStateRequestType, &fsm.HostStateRequest{MigrationModes: []string{resource.MigrationLive}}, 9},
		{fsm.HostStateRequestType, &fsm.HostStateRequest{MigrationModes: []string{}, ImageDir: "/images"}, 6},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.CreateRequestType, &fsm.CreateRequest{}), mustOp(t, fsm.MigrateRequestType, &fsm.MigrateRequest{Mode: resource.MigrationLive}),
		}}, 9},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{mustOp(t, fsm.MigrateRequestType, &fsm.MigrateRequest{Abort: true})}}, 9},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.HostStateRequestType, &fsm.HostStateRequest{MigrationModes: []string{resource.MigrationRestart}}),
		}}, 9},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{mustOp(t, fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{})}}, 9},
		{fsm.AccessorRequestType, mustAccessor(t, fsm.MigrateRequestType, &fsm.MigrateRequest{Mode: resource.MigrationLive}), 9},
		{fsm.AccessorRequestType, mustAccessor(t, fsm.MigrateRequestType, &fsm.MigrateRequest{PhaseOnly: true}), 6}, // an envelope is 6
		// Protocol 11: ordered reports.
		{fsm.ReportRequestType, &fsm.ReportRequest{Reports: []fsm.VMReport{{VM: "a", Phase: resource.PhaseRunning, Seq: 7}}}, 11},
		{fsm.ReportRequestType, &fsm.ReportRequest{Reports: []fsm.VMReport{{VM: "a", Phase: resource.PhaseRunning, Restarts: 1}}}, 4},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.ReportRequestType, &fsm.ReportRequest{Reports: []fsm.VMReport{{VM: "a", Phase: resource.PhaseRunning, Seq: 7}}}),
		}}, 11},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{
			mustOp(t, fsm.ReportRequestType, &fsm.ReportRequest{Reports: []fsm.VMReport{{VM: "a", Phase: resource.PhaseRunning, Restarts: 1}}}),
		}}, 4},
		{fsm.AccessorRequestType, &fsm.AccessorRequest{Accessor: "acc-1", Type: fsm.ReportRequestType, Payload: json.RawMessage(`{"host":"h","reports":[{"vm":"a","epoch":3,"phase":"running","seq":9}]}`)}, 11},
		{fsm.AccessorRequestType, mustAccessor(t, fsm.HostStateRequestType, &fsm.HostStateRequest{MigrationModes: []string{resource.MigrationLive}}), 9},
		{fsm.AccessorRequestType, mustAccessor(t, fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{}), 9},
		// An envelope as it is decoded from the log (its payload only).
		{fsm.AccessorRequestType, &fsm.AccessorRequest{Accessor: "acc-1", Type: fsm.MigrateRequestType, Payload: json.RawMessage(`{"vm":"a","host":"h","grace":0,"abort":true}`)}, 9},
		{fsm.AccessorRequestType, &fsm.AccessorRequest{Accessor: "acc-1", Type: fsm.MigrateRequestType, Payload: json.RawMessage(`{"vm":"a","host":"h","grace":0}`)}, 6},
		{fsm.AccessorRequestType, &fsm.AccessorRequest{Accessor: "acc-1", Type: fsm.HostStateRequestType, Payload: json.RawMessage(`{"name":"h","state":"ready","migration_modes":["live"]}`)}, 9},
		{fsm.AccessorRequestType, &fsm.AccessorRequest{Accessor: "acc-1", Type: fsm.MigrationEventRequestType, Payload: json.RawMessage(`{"host":"h","events":[]}`)}, 9},
		{fsm.AccessorRequestType, &fsm.AccessorRequest{Accessor: "acc-1", Type: fsm.BatchRequestType, Payload: json.RawMessage(`{"ops":[{"type":11,"payload":{"vm":"a","host":"h","grace":0,"mode":"live"}}]}`)}, 9},
	}
	for _, tc := range cases {
		newest = max(newest, tc.want)
		if got := fsm.RequiredProtocol(tc.t, tc.req); got != tc.want {
			t.Errorf("RequiredProtocol(%s, %+v) = %d, want %d", tc.t, tc.req, got, tc.want)
		}
	}
	if newest != fsm.ProtocolVersion {
		t.Errorf("the newest protocol a type or field needs is %d, ProtocolVersion %d", newest, fsm.ProtocolVersion)
	}
	req := &fsm.ReportRequest{Host: "h", Reports: []fsm.VMReport{{VM: "a", Phase: resource.PhaseRunning, Reason: "r", Restarts: 3}}}
	if old := req.WithoutRestarts(); old.UsesRestarts() || fsm.RequiredProtocol(fsm.ReportRequestType, old) != 1 ||
		old.Reports[0].Reason != "r" || req.Reports[0].Restarts != 3 {
		t.Errorf("WithoutRestarts: %+v (original %+v); want the reports without restarts, the original untouched", old, req)
	}
	req.Reports[0].Seq = 5
	if old := req.WithoutSeq(); old.UsesSeq() || fsm.RequiredProtocol(fsm.ReportRequestType, old) != 4 ||
		old.Reports[0].Restarts != 3 || req.Reports[0].Seq != 5 {
		t.Errorf("WithoutSeq: %+v (original %+v); want the reports without seq, the original untouched", old, req)
	}
	req.Resources = []resource.ResourceReport{{Kind: resource.KindNetwork, Name: "n", State: "ready"}}
	if old := req.WithoutResources(); fsm.RequiredProtocol(fsm.ReportRequestType, old) != 11 || len(req.Resources) != 1 ||
		fsm.RequiredProtocol(fsm.ReportRequestType, old.WithoutSeq().WithoutRestarts()) != 1 {
		t.Errorf("WithoutResources: %+v (original %+v); want the request without resources, the original untouched", old, req)
	}
}

func mustOp(t *testing.T, mt fsm.MessageType, req any) fsm.BatchOp {
	op, err := fsm.NewBatchOp(mt, req)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// TestMaxProtocol: an FSM limited to an older protocol behaves as a build
// of it: it applies that protocol's commands and halts on a later one,
// alone or inside a batch.
func TestMaxProtocol(t *testing.T) {
	old := fsm.New(fsm.Config{MaxProtocol: 1})
	fsm.TestMustApply(t, old, 1, fsm.CreateRequestType, createReq(vm, "a", fsm.TestID(1), nil, vmSpec1))
	res := fsm.TestApply(t, old, 2, fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "a", Host: "h"})
	if !errors.Is(res.Err, fsm.ErrHalted) || !errors.Is(old.Halted(), fsm.ErrUnknownCommand) || old.AppliedIndex() != 1 {
		t.Fatalf("protocol 1 FSM on migrate: %v (halted %v, applied %d), want a halt on an unknown command", res.Err, old.Halted(), old.AppliedIndex())
	}

	two := fsm.New(fsm.Config{MaxProtocol: 2})
	batch := &fsm.BatchRequest{Time: fsm.TestTime, Ops: []fsm.BatchOp{
		mustOp(t, fsm.CreateRequestType, createReq(vm, "b", fsm.TestID(2), nil, vmSpec1)),
		mustOp(t, fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{Time: fsm.TestTime, ID: "11111111-2222-4333-8444-555555555555"}),
	}}
	res = fsm.TestApply(t, two, 1, fsm.BatchRequestType, batch)
	if !errors.Is(res.Err, fsm.ErrHalted) || two.State().Count(resource.KindVM) != 0 {
		t.Fatalf("protocol 2 FSM on a batch with cluster-init: %v, %d VMs; want a halt and nothing applied", res.Err, two.State().Count(resource.KindVM))
	}

	full := fsm.New(fsm.Config{})
	fsm.TestMustApply(t, full, 1, fsm.BatchRequestType, batch)
	if full.State().ClusterID(nil) == "" {
		t.Fatal("a full-protocol FSM did not apply cluster-init")
	}

	// A protocol 8 node knows no migration-event (type 20): alone, in a
	// batch or in an envelope, it halts on it and applies nothing of it;
	// a protocol 9 node applies them (the event refers to no VM: an item
	// error only).
	ev := &fsm.MigrationEventRequest{Time: fsm.TestTime, Host: "h", Events: []resource.MigrationEvent{{VM: "a", ID: 1, Event: resource.MigrationFailed}}}
	for name, entry := range map[string]func(t *testing.T) (fsm.MessageType, any){
		"alone": func(*testing.T) (fsm.MessageType, any) { return fsm.MigrationEventRequestType, ev },
		"in a batch": func(t *testing.T) (fsm.MessageType, any) {
			return fsm.BatchRequestType, &fsm.BatchRequest{Time: fsm.TestTime, Ops: []fsm.BatchOp{
				mustOp(t, fsm.CreateRequestType, createReq(vm, "b", fsm.TestID(2), nil, vmSpec1)), mustOp(t, fsm.MigrationEventRequestType, ev),
			}}
		},
		"in an envelope": func(t *testing.T) (fsm.MessageType, any) {
			return fsm.AccessorRequestType, mustAccessor(t, fsm.MigrationEventRequestType, ev)
		},
	} {
		t.Run(name, func(t *testing.T) {
			mt, req := entry(t)
			eight := fsm.New(fsm.Config{MaxProtocol: 8})
			res := fsm.TestApply(t, eight, 1, mt, req)
			if !errors.Is(res.Err, fsm.ErrHalted) || !errors.Is(eight.Halted(), fsm.ErrUnknownCommand) || eight.AppliedIndex() != 0 || eight.State().Count(resource.KindVM) != 0 {
				t.Fatalf("protocol 8 FSM on a migration-event %s: %v (halted %v, applied %d); want a halt on an unknown command, nothing applied",
					name, res.Err, eight.Halted(), eight.AppliedIndex())
			}
			nine := fsm.New(fsm.Config{MaxProtocol: 9})
			if res := fsm.TestApply(t, nine, 1, mt, req); res.Err != nil || nine.Halted() != nil {
				t.Fatalf("protocol 9 FSM on a migration-event %s: %v (halted %v)", name, res.Err, nine.Halted())
			}
		})
	}
	if fsm.MinProtocol(fsm.MigrationEventRequestType) != 9 {
		t.Errorf("MinProtocol(migration-event) = %d, want 9", fsm.MinProtocol(fsm.MigrationEventRequestType))
	}
}

func mustAccessor(t *testing.T, mt fsm.MessageType, req any) any {
	_, r, err := fsm.WithAccessor("acc-1", mt, req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
