package fsm_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Golden files pin the wire format of every message type: a log written by
// this build must keep applying, to the same state, on every later build.
//
// Each file testdata/golden/<type>.hex holds one log entry's Data as two
// lines: the type byte in hex, then the JSON payload byte for byte.
// testdata/golden/state.json is the state after applying them in order.
//
// After an intended format change (a new message type, never a changed
// one), regenerate with:
//
//	go test -tags libvirt_dlopen ./fsm -run Golden -update
var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const goldenDir = "testdata/golden"

var (
	goldenT0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	goldenT1 = goldenT0.Add(time.Minute)
	goldenT2 = goldenT1.Add(time.Minute)
	goldenT3 = goldenT2.Add(time.Minute)
)

// goldenEntry is one message type's fixed request. They are applied in
// order, entry i at log index i+1, so later ones may refer to earlier ones.
type goldenEntry struct {
	typ fsm.MessageType
	req any
	// file names a second entry of a type (a later protocol's format of
	// it); empty: the type's name. noObjects: it applies and writes
	// nothing.
	file      string
	noObjects bool
}

// goldenBeforeInit is how many golden entries come before cluster-init
// (snapshot-v1.jsonl is the state they build).
const goldenBeforeInit = 11

// goldenRefused lists the golden entries (by file name) that must decode
// and then be refused with the error (changing nothing): types added after
// the fixed log left no state in which they apply.
var goldenRefused = map[string]error{"migrate": fsm.ErrHostNotReady}

func goldenEntries(t testing.TB) []goldenEntry {
	t.Helper()
	op := func(mt fsm.MessageType, req any) fsm.BatchOp {
		o, err := fsm.NewBatchOp(mt, req)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	return []goldenEntry{
		{typ: fsm.CreateRequestType, req: &fsm.CreateRequest{
			Time: goldenT0, Kind: resource.KindVM, Name: "web-1", ID: "6a1f4e0c-2b7d-4c39-9a51-0d3e8f7b2c11",
			Labels: map[string]string{"app": "web", "tier": "front"},
			Spec:   raw(`{"cpus":2,"memory_mib":2048,"ha":"restart"}`),
		}},
		{typ: fsm.UpdateRequestType, req: &fsm.UpdateRequest{
			Time: goldenT0, Kind: resource.KindVM, Name: "web-1", CAS: 1,
			Labels: map[string]string{"app": "web"},
			Spec:   raw(`{"cpus":4,"memory_mib":4096,"power":"stopped","ha":"none"}`),
		}},
		{typ: fsm.DeleteRequestType, req: &fsm.DeleteRequest{Time: goldenT1, Kind: resource.KindVM, Name: "web-1", CAS: 2}},
		{typ: fsm.BatchRequestType, req: &fsm.BatchRequest{Time: goldenT1, Ops: []fsm.BatchOp{
			op(fsm.CreateRequestType, &fsm.CreateRequest{Time: goldenT1, Kind: resource.KindHost, Name: "host-1", ID: "0b9e2d61-5c4a-4f0e-8e13-7a6c5d4b3a21", Labels: map[string]string{"rack": "r1"}, Spec: raw(`{"cpu_overcommit":2,"memory_overcommit":1.5}`)}),
			op(fsm.StatusRequestType, &fsm.StatusRequest{Time: goldenT1, Kind: resource.KindHost, Name: "host-1", Status: raw(`{"state":"ready","address":"127.0.0.11:7946","capacity":{"cpus":16,"memory_mib":65536},"allocated":{"cpus":2,"memory_mib":2048},"driver":"sim","since":"2025-01-02T03:05:05Z"}`)}),
			op(fsm.CreateRequestType, &fsm.CreateRequest{Time: goldenT1, Kind: resource.KindVM, Name: "db-1", ID: "3c8d7e6f-1a2b-4c3d-8e9f-0a1b2c3d4e5f", Spec: raw(`{"cpus":2,"memory_mib":2048}`)}),
			op(fsm.CreateRequestType, &fsm.CreateRequest{Time: goldenT1, Kind: resource.KindVM, Name: "tmp-1", ID: "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", Spec: raw(`{"cpus":1,"memory_mib":256}`)}),
			op(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: goldenT1, Kind: resource.KindVM, Name: "db-1", CAS: 4, Labels: map[string]string{"app": "db"}, Spec: raw(`{"cpus":2,"memory_mib":2048,"ha":"restart"}`)}),
			op(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: goldenT1, Kind: resource.KindVM, Name: "tmp-1", CAS: 4}),
		}}},
		{typ: fsm.StatusRequestType, req: &fsm.StatusRequest{
			Time: goldenT1, Kind: resource.KindVM, Name: "db-1", CAS: 4,
			Status: raw(`{"phase":"running","host":"host-1","epoch":4,"reason":"started","since":"2025-01-02T03:05:05Z"}`),
		}},
		// The placement life cycle, on db-1 (ha=restart, running on
		// host-1 at epoch 4): the guest powers itself off, host-1 dies,
		// its VMs are evacuated after the grace, the scheduler finds no
		// ready host for db-1, and the user starts it again.
		{typ: fsm.ReportRequestType, req: &fsm.ReportRequest{Time: goldenT2, Host: "host-1", Reports: []fsm.VMReport{
			{VM: "db-1", Epoch: 4, Phase: resource.PhaseStopped, Reason: "guest powered off", SetPower: resource.PowerStopped},
			{VM: "gone", Epoch: 1, Phase: resource.PhaseRunning},
		}}},
		{typ: fsm.HostStateRequestType, req: &fsm.HostStateRequest{
			Time: goldenT2, Name: "host-1", ID: "0b9e2d61-5c4a-4f0e-8e13-7a6c5d4b3a21", Labels: map[string]string{"rack": "r1"},
			State: resource.HostDown, Address: "127.0.0.11:7946", Capacity: resource.Resources{CPUs: 16, MemoryMiB: 65536},
			Driver: "sim", Reason: "failed gossip probes",
		}},
		{typ: fsm.EvacuateRequestType, req: &fsm.EvacuateRequest{Time: goldenT3, Host: "host-1", Grace: 30 * time.Second, Reason: "host-1 is down"}},
		{typ: fsm.PlaceRequestType, req: &fsm.PlaceRequest{
			Time:       goldenT3,
			Placements: []fsm.Placement{{VM: "db-1", Host: "host-1"}},
			Unplaced:   []fsm.Unplaced{{VM: "db-1", Reason: "no ready host has 2 CPUs and 2GiB free"}},
		}},
		{typ: fsm.ActionRequestType, req: &fsm.ActionRequest{Time: goldenT3, VM: "db-1", Action: resource.ActionStart}},
		// host-1 is down: the move is refused and changes nothing.
		{typ: fsm.MigrateRequestType, req: &fsm.MigrateRequest{Time: goldenT3, VM: "db-1", Host: "host-1", Grace: 30 * time.Second}},
		// Last: snapshot-v1.jsonl is the state before it.
		{typ: fsm.ClusterInitRequestType, req: &fsm.ClusterInitRequest{Time: goldenT3, ID: "9d2f6a3e-41c7-4b8e-a5d0-6e1f2c3b4a59"}},
		// Protocol 5: host-1, still down, in the new host-state format
		// (its period is named from here: state_index 13), fenced by
		// the controllers' --fence-command, then evacuated on the
		// leader's monotonic measure (no VM is left on it: nothing
		// written).
		{typ: fsm.HostStateRequestType, file: "host-state-v5", req: &fsm.HostStateRequest{
			Time: goldenT3, Name: "host-1", ID: "0b9e2d61-5c4a-4f0e-8e13-7a6c5d4b3a21", Labels: map[string]string{"rack": "r1"},
			State: resource.HostDown, Address: "127.0.0.11:7946", Capacity: resource.Resources{CPUs: 16, MemoryMiB: 65536},
			Driver: "sim", Reason: "failed gossip probes", FenceAfterMS: 3000, DownGraceMS: 30000,
		}},
		{typ: fsm.HostFenceRequestType, req: &fsm.HostFenceRequest{Time: goldenT3, Host: "host-1", Fence: resource.HostFence{
			State: resource.FenceSucceeded, Attempts: 2, ExitCode: 0, Output: "Success: Powered OFF\n",
			Reason: "the fence command succeeded on attempt 2", StartedAt: goldenT3, FinishedAt: goldenT3.Add(2 * time.Second), StateIndex: 13,
		}}},
		{typ: fsm.EvacuateRequestType, file: "evacuate-v5", noObjects: true, req: &fsm.EvacuateRequest{
			Time: goldenT3, Host: "host-1", Grace: 30 * time.Second, Reason: "host-1 is down",
			StateIndex: 13, DownForMS: 31000, FenceRequired: true,
		}},
		// Protocol 6: ACLs (goldenBeforeACL entries come before them).
		{typ: fsm.ACLBootstrapRequestType, req: &fsm.ACLBootstrapRequest{
			Time: goldenT3, AccessorID: "3f0c9a8e-1d2b-4c5a-8e7f-6a5b4c3d2e1f",
			SecretHash: resource.HashACLSecret("golden-management-secret"), Name: "Bootstrap Token",
		}},
		{typ: fsm.ACLPolicyUpsertRequestType, req: &fsm.ACLPolicyUpsertRequest{
			Time: goldenT3, Create: true, Policy: resource.ACLPolicy{Name: "web-ops", Description: "web team",
				Rules: []resource.ACLRule{{Kind: resource.KindVM, Access: resource.AccessRead}, {Kind: resource.KindVM, Access: resource.AccessWrite, Selector: "team=web"}}},
		}},
		{typ: fsm.ACLTokenCreateRequestType, req: &fsm.ACLTokenCreateRequest{
			Time: goldenT3, SecretHash: resource.HashACLSecret("golden-ci-secret"),
			Token: resource.ACLToken{AccessorID: "9d8c7b6a-5f4e-4d3c-9b2a-1f0e9d8c7b6a", Name: "ci", Type: resource.TokenClient, Policies: []string{"web-ops"}},
		}},
		{typ: fsm.AccessorRequestType, req: &fsm.AccessorRequest{
			Accessor: "9d8c7b6a-5f4e-4d3c-9b2a-1f0e9d8c7b6a", Type: fsm.CreateRequestType,
			Payload: raw(`{"time":"2025-01-02T03:07:05Z","kind":"vm","name":"web-9","id":"5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716","labels":{"team":"web"},"spec":{"cpus":1,"memory_mib":512}}`),
		}},
		{typ: fsm.ACLTokenDeleteRequestType, req: &fsm.ACLTokenDeleteRequest{Time: goldenT3, AccessorID: "9d8c7b6a-5f4e-4d3c-9b2a-1f0e9d8c7b6a"}},
		{typ: fsm.ACLPolicyDeleteRequestType, req: &fsm.ACLPolicyDeleteRequest{Time: goldenT3, Name: "web-ops"}},
		// Protocol 9: a live migration of web-9 (pending since 19) from
		// host-2 to host-3, which offer the modes: host-2 joins, a batch
		// has host-3 join, places web-9 on host-2 (epoch 23) and reports
		// it running; the migration starts (id 24), the target says
		// prepared and the source done (web-9 on host-3, epoch 26).
		{typ: fsm.HostStateRequestType, file: "host-state-v9", req: &fsm.HostStateRequest{
			Time: goldenT3, Name: "host-2", ID: "7c1e5a2b-3d4f-4a6b-9c8d-0e1f2a3b4c5d", Labels: map[string]string{"rack": "r2"},
			State: resource.HostReady, Address: "127.0.0.12:7946", Capacity: resource.Resources{CPUs: 8, MemoryMiB: 16384},
			Driver: "libvirt", Reason: "joined", MigrationModes: []string{resource.MigrationLive, resource.MigrationRestart},
		}},
		{typ: fsm.BatchRequestType, file: "batch-v9", req: &fsm.BatchRequest{Time: goldenT3, Ops: []fsm.BatchOp{
			op(fsm.HostStateRequestType, &fsm.HostStateRequest{
				Time: goldenT3, Name: "host-3", ID: "2f4e6d8c-1b3a-4c5d-8e7f-9a0b1c2d3e4f", Labels: map[string]string{"rack": "r3"},
				State: resource.HostReady, Address: "127.0.0.13:7946", Capacity: resource.Resources{CPUs: 8, MemoryMiB: 16384},
				Driver: "libvirt", Reason: "joined", MigrationModes: []string{resource.MigrationLive},
			}),
			op(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: goldenT3, Placements: []fsm.Placement{{VM: "web-9", Host: "host-2"}}}),
			op(fsm.ReportRequestType, &fsm.ReportRequest{Time: goldenT3, Host: "host-2", Reports: []fsm.VMReport{
				{VM: "web-9", Epoch: 23, Phase: resource.PhaseRunning, Reason: "booted"},
			}}),
		}}},
		{typ: fsm.MigrateRequestType, file: "migrate-v9", req: &fsm.MigrateRequest{Time: goldenT3, VM: "web-9", Host: "host-3", Mode: resource.MigrationLive}},
		{typ: fsm.MigrationEventRequestType, req: &fsm.MigrationEventRequest{Time: goldenT3, Host: "host-3", Events: []resource.MigrationEvent{
			{VM: "web-9", ID: 24, Event: resource.MigrationPrepared, URI: "qemu+tls://127.0.0.13/system"},
		}}},
		{typ: fsm.MigrationEventRequestType, file: "migration-event-done", req: &fsm.MigrationEventRequest{Time: goldenT3, Host: "host-2", Events: []resource.MigrationEvent{
			{VM: "web-9", ID: 24, Event: resource.MigrationDone, DowntimeMS: 42},
		}}},
		{typ: fsm.CreateBinRequestType, req: &fsm.CreateBinRequest{Accessor: "9c4b2a8e-0d6f-4e1a-8b3c-5d7e9f1a2b3c", Create: &fsm.CreateRequest{
			Time: goldenT3, Kind: resource.KindVM, Name: "web-bin", ID: "7f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
			Labels: map[string]string{"app": "web", "tier": "front"}, Spec: json.RawMessage(`{"cpus":1,"memory_mib":512}`),
		}}},
		// Protocol 11: host-3 reports web-9 (epoch 26) with a sequence.
		{typ: fsm.ReportRequestType, file: "report-v11", req: &fsm.ReportRequest{Time: goldenT3, Host: "host-3", Reports: []fsm.VMReport{
			{VM: "web-9", Epoch: 26, Phase: resource.PhaseRunning, Reason: "migrated", Seq: 1764820800000000000},
		}}},
		// Protocol 12: three creates coalesced into one entry, one of them
		// with an accessor, one refused (web-bin is taken).
		{typ: fsm.CreatesBinRequestType, req: &fsm.CreatesBinRequest{Creates: []*fsm.CreateBinRequest{
			{Create: &fsm.CreateRequest{Time: goldenT3, Kind: resource.KindVM, Name: "web-c1", ID: "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
				Labels: map[string]string{"app": "web"}, Spec: json.RawMessage(`{"cpus":1,"memory_mib":256}`)}},
			{Accessor: "9c4b2a8e-0d6f-4e1a-8b3c-5d7e9f1a2b3c", Create: &fsm.CreateRequest{Time: goldenT3, Kind: resource.KindVM, Name: "web-c2",
				ID: "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2c", Spec: json.RawMessage(`{"cpus":2,"memory_mib":512}`)}},
			{Create: &fsm.CreateRequest{Time: goldenT3, Kind: resource.KindVM, Name: "web-bin",
				ID: "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2d", Spec: json.RawMessage(`{"cpus":1,"memory_mib":256}`)}},
		}}},
	}
}

// goldenBeforeACL is how many golden entries come before the ACL ones
// (the state testdata/golden/snapshot-v2.jsonl holds).
const goldenBeforeACL = 15

// goldenNoObjects lists the golden entries that write no object.
var goldenNoObjects = map[fsm.MessageType]bool{
	fsm.ClusterInitRequestType: true, fsm.ACLBootstrapRequestType: true, fsm.ACLPolicyUpsertRequestType: true,
	fsm.ACLPolicyDeleteRequestType: true, fsm.ACLTokenCreateRequestType: true, fsm.ACLTokenDeleteRequestType: true,
}

// goldenIndex is the log index golden entry i is applied at.
func goldenIndex(i int) uint64 { return uint64(i) + 1 }

func goldenPath(mt fsm.MessageType) string { return filepath.Join(goldenDir, mt.String()+".hex") }

func (g goldenEntry) path() string {
	if g.file != "" {
		return filepath.Join(goldenDir, g.file+".hex")
	}
	return goldenPath(g.typ)
}

func formatGolden(data []byte) []byte {
	return fmt.Appendf(nil, "%02x\n%s\n", data[0], data[1:])
}

func parseGolden(t testing.TB, path string, b []byte) []byte {
	t.Helper()
	head, payload, ok := bytes.Cut(b, []byte("\n"))
	payload, ok2 := bytes.CutSuffix(payload, []byte("\n"))
	typ, err := hex.DecodeString(string(head))
	if !ok || !ok2 || err != nil || len(typ) != 1 {
		t.Fatalf("%s: not a golden entry (want a hex type byte line, then the payload line)", path)
	}
	return append(typ, payload...)
}

func writeOrCompare(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./fsm -run Golden -update` to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed:\n got %s\nwant %s\nThe log format is a compatibility contract: old entries must keep "+
			"decoding. Add a new message type instead of changing one; regenerate with -update only for a new type.",
			path, got, want)
	}
}

// TestGoldenEncode fails when fsm.Encode's output changes for any message
// type.
func TestGoldenEncode(t *testing.T) {
	for _, g := range goldenEntries(t) {
		t.Run(strings.TrimSuffix(filepath.Base(g.path()), ".hex"), func(t *testing.T) {
			data, err := fsm.Encode(g.typ, g.req)
			if err != nil {
				t.Fatal(err)
			}
			if data[0] != byte(g.typ) {
				t.Fatalf("type byte = %d, want %d", data[0], g.typ)
			}
			writeOrCompare(t, g.path(), formatGolden(data))
		})
	}
}

// TestGoldenEveryMessageType: every known message type has a golden file.
func TestGoldenEveryMessageType(t *testing.T) {
	have := map[fsm.MessageType]bool{}
	for _, g := range goldenEntries(t) {
		have[g.typ] = true
	}
	for i := 0; i < 256; i++ {
		mt := fsm.MessageType(i)
		if strings.HasPrefix(mt.String(), "type(") {
			continue
		}
		if !have[mt] {
			t.Errorf("message type %d (%s) has no golden entry: add one to goldenEntries", i, mt)
		}
	}
}

// applyGoldenLog applies the stored golden entries (not freshly encoded
// ones), in order, to a fresh FSM.
func applyGoldenLog(t *testing.T) *fsm.FSM {
	t.Helper()
	return applyGoldenPrefix(t, len(goldenEntries(t)))
}

// applyGoldenPrefix applies the first n golden entries.
func applyGoldenPrefix(t *testing.T, n int) *fsm.FSM {
	t.Helper()
	f := fsm.TestFSM(t)
	for i, g := range goldenEntries(t)[:n] {
		path := g.path()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		l := &raft.Log{Index: goldenIndex(i), Term: 1, Type: raft.LogCommand, Data: parseGolden(t, path, b)}
		res := fsm.TestApplyLog(t, f, l)
		if want := goldenRefused[strings.TrimSuffix(filepath.Base(path), ".hex")]; want != nil {
			if !errors.Is(res.Err, want) {
				t.Fatalf("%s: %v, want it refused with %v", path, res.Err, want)
			}
			continue
		}
		if res.Err != nil {
			t.Fatalf("%s no longer applies: %v", path, res.Err)
		}
		objs := len(res.Objects)
		for j, sub := range res.Subs {
			// The golden creates-bin entry's last create is refused.
			if refused := j == len(res.Subs)-1; (sub.Err != nil) != refused || (refused && !errors.Is(sub.Err, fsm.ErrExists)) {
				t.Fatalf("%s: create %d: %v", path, j, sub.Err)
			}
			objs += len(sub.Objects)
		}
		if objs == 0 && !goldenNoObjects[g.typ] && !g.noObjects {
			t.Errorf("%s wrote no objects", path)
		}
	}
	return f
}

// goldenBeforeMigration is how many golden entries come before the
// protocol 9 (migration) ones: state.json and snapshot.jsonl hold the
// state they build (as the protocol 8 build wrote them); state-v9.json and
// snapshot-v9.jsonl the state the whole log builds.
const goldenBeforeMigration = 21

// goldenBeforeBin is how many golden entries come before the protocol 10
// (create-bin) one: state-v9.json and snapshot-v9.jsonl hold the state
// they build (as the protocol 9 build wrote them); state-v10.json and
// snapshot-v10.jsonl the state the whole log builds.
const goldenBeforeBin = 26

// goldenBeforeSeq is how many golden entries come before the protocol 11
// one (a report with seq): state-v10.json and snapshot-v10.jsonl hold the
// state they build (as the protocol 10 build wrote them); state-v11.json
// and snapshot-v11.jsonl the state the whole log builds.
const goldenBeforeSeq = 27

// goldenBeforeCreates is how many golden entries come before the protocol
// 12 one (creates coalesced): state-v11.json and snapshot-v11.jsonl hold
// the state they build (as the protocol 11 build wrote them);
// state-v12.json and snapshot-v12.jsonl the state the whole log builds.
const goldenBeforeCreates = 28

// TestGoldenDecode: a log written by an older build keeps applying, and to
// the same state.
func TestGoldenDecode(t *testing.T) {
	if n := len(goldenEntries(t)); goldenBeforeMigration >= n || goldenEntries(t)[goldenBeforeMigration].file != "host-state-v9" {
		t.Fatalf("goldenBeforeMigration (%d) does not point at the first protocol 9 entry", goldenBeforeMigration)
	}
	writeOrCompare(t, filepath.Join(goldenDir, "state.json"), goldenStateJSON(t, applyGoldenPrefix(t, goldenBeforeMigration)))
	if n := len(goldenEntries(t)); goldenBeforeBin >= n || goldenEntries(t)[goldenBeforeBin].typ != fsm.CreateBinRequestType {
		t.Fatalf("goldenBeforeBin (%d) does not point at the first protocol 10 entry", goldenBeforeBin)
	}
	writeOrCompare(t, filepath.Join(goldenDir, "state-v9.json"), goldenStateJSON(t, applyGoldenPrefix(t, goldenBeforeBin)))
	if n := len(goldenEntries(t)); goldenBeforeSeq >= n || goldenEntries(t)[goldenBeforeSeq].file != "report-v11" {
		t.Fatalf("goldenBeforeSeq (%d) does not point at the first protocol 11 entry", goldenBeforeSeq)
	}
	writeOrCompare(t, filepath.Join(goldenDir, "state-v10.json"), goldenStateJSON(t, applyGoldenPrefix(t, goldenBeforeSeq)))
	if n := len(goldenEntries(t)); goldenBeforeCreates >= n || goldenEntries(t)[goldenBeforeCreates].typ != fsm.CreatesBinRequestType {
		t.Fatalf("goldenBeforeCreates (%d) does not point at the first protocol 12 entry", goldenBeforeCreates)
	}
	writeOrCompare(t, filepath.Join(goldenDir, "state-v11.json"), goldenStateJSON(t, applyGoldenPrefix(t, goldenBeforeCreates)))
	writeOrCompare(t, filepath.Join(goldenDir, "state-v12.json"), goldenStateJSON(t, applyGoldenLog(t)))
}

// goldenStateJSON is f's objects, indexes and events as the golden state
// files hold them.
func goldenStateJSON(t *testing.T, f *fsm.FSM) []byte {
	t.Helper()
	type goldenState struct {
		Objects []*resource.Object `json:"objects"`
		Indexes map[string]uint64  `json:"indexes"`
		Events  []string           `json:"events"`
	}
	st := goldenState{Indexes: map[string]uint64{}}
	for _, k := range []resource.Kind{resource.KindHost, resource.KindVM} {
		objs, err := f.State().List(nil, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		st.Objects = append(st.Objects, objs...)
		st.Indexes[string(k)] = f.State().Index(k)
	}
	st.Indexes["latest"] = f.State().LatestIndex()
	evs, _, _, _ := f.Events().Since(0, 0)
	for _, ev := range evs {
		st.Events = append(st.Events, fmt.Sprintf("%d %s %s/%s", ev.Index, ev.Type, ev.Kind, ev.Name))
	}
	got, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(got, '\n')
}

// TestGoldenSnapshot pins the snapshot stream format the same way: the
// persisted golden state must not change, and the stored stream must
// restore to the state the golden log builds.
//
// snapshot.jsonl is the state before the protocol 9 entries, as the
// protocol 8 build wrote it; snapshot-v9.jsonl the state before the
// protocol 10 entry, with a migration's status and hosts' migration modes;
// snapshot-v10.jsonl the state before the protocol 11 entry;
// snapshot-v11.jsonl the state before the protocol 12 entry (a VM's
// status.report_seq); snapshot-v12.jsonl the whole log's.
func TestGoldenSnapshot(t *testing.T) {
	for _, c := range []struct {
		file string
		n    int
	}{{"snapshot.jsonl", goldenBeforeMigration}, {"snapshot-v9.jsonl", goldenBeforeBin}, {"snapshot-v10.jsonl", goldenBeforeSeq}, {"snapshot-v11.jsonl", goldenBeforeCreates}, {"snapshot-v12.jsonl", len(goldenEntries(t))}} {
		f := applyGoldenPrefix(t, c.n)
		path := filepath.Join(goldenDir, c.file)
		writeOrCompare(t, path, fsm.TestPersist(t, f))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		g := fsm.TestRestore(t, b)
		if g.State().Digest() != f.State().Digest() || g.AppliedIndex() != f.AppliedIndex() {
			t.Errorf("%s restores to a different state than the golden log builds", path)
		}
		if g.State().ClusterID(nil) == "" {
			t.Errorf("%s restores without the cluster id", path)
		}
		fsm.TestCheckAllocations(t, g)
	}
}

// TestGoldenSnapshotV2: a snapshot of a cluster without ACLs (format
// version 2, which this build also writes then) still restores, to the
// state the golden log had before the ACL entries.
func TestGoldenSnapshotV2(t *testing.T) {
	path := filepath.Join(goldenDir, "snapshot-v2.jsonl")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(`{"version":2,`)) {
		t.Fatalf("%s is not a version 2 snapshot", path)
	}
	if n := len(goldenEntries(t)); goldenBeforeACL >= n || goldenEntries(t)[goldenBeforeACL].typ != fsm.ACLBootstrapRequestType {
		t.Fatalf("goldenBeforeACL (%d) does not point at the first ACL entry", goldenBeforeACL)
	}
	before := applyGoldenPrefix(t, goldenBeforeACL)
	g := fsm.TestRestore(t, b)
	if g.State().Digest() != before.State().Digest() || g.AppliedIndex() != before.AppliedIndex() {
		t.Errorf("%s restores to a different state than the golden log had before the ACL entries", path)
	}
	if p := fsm.TestPersist(t, before); !bytes.Equal(p, b) {
		t.Errorf("a state without ACLs no longer persists as version 2:\n%s", p)
	}
}

// TestGoldenSnapshotV1: a snapshot written before the cluster had an
// identity (format version 1, from the build before it) still restores,
// to the state the golden log had then.
func TestGoldenSnapshotV1(t *testing.T) {
	path := filepath.Join(goldenDir, "snapshot-v1.jsonl")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(`{"version":1,`)) {
		t.Fatalf("%s is not a version 1 snapshot", path)
	}
	before := applyGoldenPrefix(t, goldenBeforeInit)
	g := fsm.TestRestore(t, b)
	if g.State().Digest() != before.State().Digest() || g.AppliedIndex() != before.AppliedIndex() || g.State().ClusterID(nil) != "" {
		t.Errorf("%s restores to a different state than the golden log had before cluster-init", path)
	}
}
