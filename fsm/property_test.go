package fsm_test

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"
	"pgregory.net/rapid"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Property tests over random command sequences. The generator works on a
// small name space so that duplicates, CAS conflicts and not-found cases
// are common, and it mixes in invalid input, ignorable garbage, entries
// that are not commands and, now and then (propGen.fatalOdds), an entry
// this build cannot understand, on which the FSM must halt.

var (
	propNames  = []string{"a", "b", "c", "Bad", ""} // the last two are invalid
	propLabelK = []string{"app", "tier", "zone"}
	propLabelV = []string{"web", "db", ""}
	propPhases = []string{resource.PhasePending, resource.PhaseRunning, resource.PhaseStopped}
	propStates = []string{resource.HostReady, resource.HostDown}
	propZones  = []*time.Location{time.UTC, time.FixedZone("", 9*3600), time.FixedZone("", -5*3600)}
	// propRefs are the names placement commands refer to: VMs and hosts
	// share the name space, and "zz" never exists.
	propRefs = []string{"a", "b", "c", "a", "b", "c", "zz"}
	// propVMHosts are the status.host values status writes put on VMs:
	// "h1" and "h2" are never host names.
	propVMHosts = []string{"", "h1", "h2"}
	// propAllHosts are the host names reads are checked for.
	propAllHosts = []string{"a", "b", "c", "h1", "h2", "zz"}
	// propAllPhases are the phases reads are checked for.
	propAllPhases = []string{
		resource.PhasePending, resource.PhaseScheduled, resource.PhaseStarting, resource.PhaseRunning,
		resource.PhaseStopping, resource.PhaseStopped, resource.PhaseSuspended, resource.PhaseFailed, resource.PhaseLost,
	}
	propReportPhases = []string{
		resource.PhaseStarting, resource.PhaseRunning, resource.PhaseRunning, resource.PhaseStopping,
		resource.PhaseStopped, resource.PhaseSuspended, resource.PhaseFailed, resource.PhasePending, resource.PhaseLost, "",
	}
	propActions = []string{resource.ActionStart, resource.ActionStop, resource.ActionSuspend, resource.ActionResume, resource.ActionReboot, "explode"}
)

// Faults: most generated operations are valid; a fault draw breaks at most
// one part of one.
const (
	faultNone = iota
	faultKind
	faultName
	faultLabels
	faultID
	faultSpec
	faultStatus
	faultCount
)

func drawFault(t *rapid.T) int {
	// Two draws in three are valid.
	if f := rapid.IntRange(0, 3*faultCount-1).Draw(t, "fault"); f < faultCount {
		return f
	}
	return faultNone
}

// propEntry is one generated log entry: a typed command, or raw Data, or a
// log entry that is not a command.
type propEntry struct {
	typ     fsm.MessageType
	req     any
	data    []byte // used when req is nil
	logType raft.LogType
}

func (e propEntry) String() string {
	if e.logType != raft.LogCommand {
		return "log:" + e.logType.String()
	}
	if e.req == nil {
		return fmt.Sprintf("raw:%q", e.data)
	}
	b, _ := json.Marshal(e.req)
	return fmt.Sprintf("%s:%s", e.typ, b)
}

func (e propEntry) log(t fsm.TB, index uint64) *raft.Log {
	switch {
	case e.logType != raft.LogCommand:
		return &raft.Log{Index: index, Term: 1, Type: e.logType, Data: e.data}
	case e.req == nil:
		return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: e.data}
	}
	return fsm.TestLog(t, index, e.typ, e.req)
}

// propGen draws commands. cas chooses the CAS value for kind/name; next is
// the index the command will be applied at. The model test gives it a view
// of the model's state (placed, allocated) so that reports carry the
// right epochs and host status writes keep the allocation right; without
// one, epochs are random and host status writes leave allocated out.
type propGen struct {
	cas func(t *rapid.T, kind resource.Kind, name string, next uint64) uint64
	// placed returns VM name's status.host and status.epoch.
	placed func(name string) (host string, epoch uint64, ok bool)
	// reportSeq returns VM name's status.report_seq (nil: not known).
	reportSeq func(name string) uint64
	// allocated returns host name's allocation, if it exists.
	allocated func(name string) (resource.Resources, bool)
	// migration returns VM name's migration under way (nil: none, or
	// no view of the state: ids are then random).
	migration func(name string) (source string, m *resource.VMMigration)
	// vmHosts are the hosts status writes put VMs on.
	vmHosts []string
	// fatalOdds: entry draws one entry in about fatalOdds from the
	// entries the FSM cannot understand (notUnderstood; 0: never). Other
	// draws keep their garbage ignorable, so that runs go on long before
	// a halt.
	fatalOdds int
}

// randomCAS ignores the state: mostly 0, else a small index.
func randomCAS(t *rapid.T, _ resource.Kind, _ string, next uint64) uint64 {
	if rapid.IntRange(0, 2).Draw(t, "cas?") != 2 {
		return 0
	}
	return rapid.Uint64Range(1, next).Draw(t, "cas")
}

func drawTime(t *rapid.T) time.Time {
	h := rapid.IntRange(0, 48).Draw(t, "hour")
	zone := rapid.SampledFrom(propZones).Draw(t, "zone")
	return fsm.TestTime.Add(time.Duration(h) * time.Hour).In(zone)
}

func drawLabels(t *rapid.T, fault int) map[string]string {
	n := rapid.IntRange(0, 2).Draw(t, "nlabels")
	if n == 0 && fault != faultLabels && rapid.Bool().Draw(t, "nil labels") {
		return nil
	}
	l := map[string]string{}
	for range n {
		l[rapid.SampledFrom(propLabelK).Draw(t, "label key")] = rapid.SampledFrom(propLabelV).Draw(t, "label value")
	}
	if fault == faultLabels {
		l[rapid.SampledFrom([]string{"bad key", "-x", ""}).Draw(t, "bad label key")] = "v"
	}
	return l
}

func drawSpec(t *rapid.T, kind resource.Kind, fault int) json.RawMessage {
	if fault == faultSpec {
		return raw(rapid.SampledFrom([]string{
			`null`, `{"cpus":1,"memory_mib":1,"bogus":true}`, `[]`, `{"cpus":"1"}`, `{}`,
			`{"cpu_overcommit":2}`, `{"cpus":0,"memory_mib":64}`, `{"cpus":1,"memory_mib":0}`,
			`{"cpus":1,"memory_mib":1,"power":"off"}`, `{"cpu_overcommit":0.5}`, `{"memory_overcommit":65}`,
			`{"cpus":1,"memory_mib":1,"boot":{"image":"../disk.qcow2"}}`,
		}).Draw(t, "bad spec"))
	}
	m := map[string]any{}
	if kind == host {
		for _, k := range []string{"cpu_overcommit", "memory_overcommit"} {
			if v := rapid.SampledFrom([]float64{0, 1, 1.5, 4}).Draw(t, k); v != 0 {
				m[k] = v
			}
		}
		if rapid.IntRange(0, 3).Draw(t, "unschedulable") == 0 {
			m["unschedulable"] = true
		}
	} else {
		m["cpus"] = rapid.IntRange(1, 4).Draw(t, "cpus")
		m["memory_mib"] = rapid.SampledFrom([]int{256, 1024, 4096}).Draw(t, "memory")
		if p := rapid.SampledFrom([]string{"", "running", "stopped", "suspended"}).Draw(t, "power"); p != "" {
			m["power"] = p
		}
		if h := rapid.SampledFrom([]string{"", "none", "restart"}).Draw(t, "ha"); h != "" {
			m["ha"] = h
		}
		if rapid.IntRange(0, 5).Draw(t, "boot?") == 0 {
			m["boot"] = map[string]string{"kernel": "/boot/vmlinuz", "cmdline": "console=ttyS0"}
		}
	}
	b, _ := json.Marshal(m)
	return b
}

func (g propGen) drawStatus(t *rapid.T, kind resource.Kind, name string, fault int) json.RawMessage {
	if fault == faultStatus {
		return raw(rapid.SampledFrom([]string{`null`, `{"bogus":1}`, `{"phase":7}`, `[]`, `{"epoch":-1}`}).Draw(t, "bad status"))
	}
	var m map[string]any
	if kind == host {
		m = map[string]any{
			"state":    rapid.SampledFrom(propStates).Draw(t, "state"),
			"capacity": map[string]any{"cpus": rapid.IntRange(0, 64).Draw(t, "cap cpus"), "memory_mib": 65536},
		}
		if g.allocated != nil {
			if a, ok := g.allocated(name); ok {
				m["allocated"] = a
			}
		}
		if rapid.Bool().Draw(t, "host since?") {
			m["since"] = drawTime(t)
		}
	} else {
		m = map[string]any{"phase": rapid.SampledFrom(propPhases).Draw(t, "phase")}
		if h := rapid.SampledFrom(g.vmHosts).Draw(t, "host"); h != "" {
			m["host"] = h
			m["epoch"] = rapid.IntRange(1, 50).Draw(t, "epoch")
		}
		m["since"] = drawTime(t)
	}
	b, _ := json.Marshal(m)
	return b
}

func drawName(t *rapid.T, fault int) string {
	if fault == faultName {
		return rapid.SampledFrom(propNames[3:]).Draw(t, "bad name")
	}
	return rapid.SampledFrom(propNames[:3]).Draw(t, "name")
}

func drawPlace(t *rapid.T, fault int) *fsm.PlaceRequest {
	req := &fsm.PlaceRequest{Time: drawTime(t)}
	for range rapid.IntRange(0, 3).Draw(t, "placements") {
		p := fsm.Placement{VM: rapid.SampledFrom(propRefs).Draw(t, "place vm"), Host: rapid.SampledFrom(propRefs).Draw(t, "place host")}
		if fault == faultName {
			p.Host = rapid.SampledFrom(propNames[3:]).Draw(t, "bad host")
		}
		req.Placements = append(req.Placements, p)
	}
	for range rapid.IntRange(-2, 2).Draw(t, "unplaced") {
		req.Unplaced = append(req.Unplaced, fsm.Unplaced{
			VM:     rapid.SampledFrom(propRefs).Draw(t, "unplaced vm"),
			Reason: rapid.SampledFrom([]string{"no host fits", "waiting for placement", ""}).Draw(t, "unplaced reason"),
		})
	}
	return req
}

func (g propGen) drawReport(t *rapid.T, next uint64, fault int) *fsm.ReportRequest {
	n := rapid.IntRange(1, 3).Draw(t, "reports")
	req := &fsm.ReportRequest{Time: drawTime(t), Reports: []fsm.VMReport{}}
	req.Host = rapid.SampledFrom([]string{"a", "b", "c", "h1", "zz", ""}).Draw(t, "report host")
	for i := range n {
		r := fsm.VMReport{
			VM:     rapid.SampledFrom(propRefs).Draw(t, "report vm"),
			Epoch:  rapid.Uint64Range(0, next).Draw(t, "report epoch"),
			Phase:  rapid.SampledFrom(propReportPhases).Draw(t, "report phase"),
			Reason: rapid.SampledFrom([]string{"", "booted", "guest powered off"}).Draw(t, "report reason"),
		}
		if g.placed != nil && rapid.IntRange(0, 4).Draw(t, "right epoch?") != 0 {
			// Mostly the VM's own host (the first report picks the
			// request's host) and epoch.
			if h, e, ok := g.placed(r.VM); ok {
				if i == 0 {
					req.Host = h
				}
				r.Epoch = e
			}
		}
		if fault == faultStatus {
			r.Phase = "exploded"
		}
		r.SetPower = rapid.SampledFrom([]string{"", "", "", "", resource.PowerRunning, resource.PowerStopped, resource.PowerSuspended, "off"}).Draw(t, "set power")
		if rapid.IntRange(0, 3).Draw(t, "reboot done?") == 0 {
			r.RebootDone = rapid.Uint64Range(0, next).Draw(t, "reboot done")
		}
		if rapid.IntRange(0, 3).Draw(t, "restarted?") == 0 {
			r.Restarts = rapid.Uint64Range(0, 3).Draw(t, "restarts")
		}
		if rapid.IntRange(0, 2).Draw(t, "sequenced?") == 0 {
			// Around the recorded sequence, so that late reports (not
			// above it) come up as often as newer ones.
			rec := uint64(0)
			if g.reportSeq != nil {
				rec = g.reportSeq(r.VM)
			}
			r.Seq = max(rec+rapid.Uint64Range(0, 3).Draw(t, "seq step"), 2) - 1
		}
		req.Reports = append(req.Reports, r)
	}
	return req
}

func drawHostState(t *rapid.T, fault int) *fsm.HostStateRequest {
	name := drawName(t, fault)
	req := &fsm.HostStateRequest{
		Time: drawTime(t), Name: name,
		// Ids of their own: see "host-state-duplicate-id" in openBugs.
		ID:       "hs-" + name,
		Labels:   drawLabels(t, fault),
		State:    rapid.SampledFrom([]string{resource.HostReady, resource.HostReady, resource.HostDown, resource.HostLeft, resource.HostDraining}).Draw(t, "host state"),
		Address:  rapid.SampledFrom([]string{"", "127.0.0.11:7946"}).Draw(t, "address"),
		Capacity: resource.Resources{CPUs: rapid.SampledFrom([]int{0, 1, 2, 4, 8, 16}).Draw(t, "capacity cpus"), MemoryMiB: rapid.SampledFrom([]int64{0, 512, 2048, 8192}).Draw(t, "capacity memory")},
		Driver:   rapid.SampledFrom([]string{"", "sim"}).Draw(t, "driver"),
		Reason:   rapid.SampledFrom([]string{"", "joined", "missed probes"}).Draw(t, "host reason"),
	}
	switch rapid.IntRange(0, 3).Draw(t, "foreign domains") {
	case 1:
		req.ForeignDomains, req.ForeignDomainCount = []string{"kumoi-other"}, 1
	case 2:
		req.ForeignDomains, req.ForeignDomainCount = []string{"kumoi-a", "kumoi-b"}, 5
	case 3:
		// More named than counted: refused.
		req.ForeignDomains, req.ForeignDomainCount = []string{"kumoi-a", "kumoi-b"}, 1
	}
	if rapid.IntRange(0, 2).Draw(t, "protocol 5 host-state?") != 0 {
		// Fence-after at, below or above the grace; a bad grace now
		// and then.
		req.DownGraceMS = rapid.SampledFrom([]int64{4000, 4000, 30000, 0, -1, fsm.MaxTimingMS + 1}).Draw(t, "down grace ms")
		req.FenceAfterMS = rapid.SampledFrom([]int64{0, 3000, 3000, 4000, 60000, -5}).Draw(t, "fence after ms")
	}
	req.MigrationModes = drawMigrationModes(t)
	switch fault {
	case faultID:
		req.ID = ""
	case faultStatus:
		req.State = rapid.SampledFrom([]string{"up", ""}).Draw(t, "bad host state")
	case faultSpec:
		req.Capacity.MemoryMiB = -1
	}
	return req
}

// propMigrationModes are the migration modes host-states advertise (the
// last two are refused: unsorted, unknown).
var propMigrationModes = [][]string{
	nil, nil, {resource.MigrationLive, resource.MigrationRestart}, {resource.MigrationLive, resource.MigrationRestart},
	{resource.MigrationLive}, {resource.MigrationRestart},
	{resource.MigrationRestart, resource.MigrationLive}, {"teleport"},
}

func drawMigrationModes(t *rapid.T) []string {
	return slices.Clone(rapid.SampledFrom(propMigrationModes).Draw(t, "migration modes"))
}

// drawMigrationEvents draws workers' migration events: with a view of the
// state mostly for a migration under way, from its source or target.
func (g propGen) drawMigrationEvents(t *rapid.T, next uint64) *fsm.MigrationEventRequest {
	req := &fsm.MigrationEventRequest{Time: drawTime(t), Host: rapid.SampledFrom([]string{"a", "b", "c", "h1", "zz", ""}).Draw(t, "migration event host")}
	for i := range rapid.IntRange(1, 3).Draw(t, "migration events") {
		e := resource.MigrationEvent{
			VM:    rapid.SampledFrom(propRefs).Draw(t, "migration event vm"),
			ID:    rapid.Uint64Range(0, next).Draw(t, "migration event id"),
			Event: rapid.SampledFrom([]string{resource.MigrationPrepared, resource.MigrationDone, resource.MigrationDone, resource.MigrationFailed, "exploded"}).Draw(t, "migration event"),
		}
		if g.migration != nil && rapid.IntRange(0, 4).Draw(t, "migration event right id?") != 0 {
			if source, m := g.migration(e.VM); m != nil {
				e.ID = m.ID
				if i == 0 {
					req.Host = rapid.SampledFrom([]string{source, m.Target, m.Target, "c"}).Draw(t, "migration event side")
				}
			}
		}
		switch rapid.IntRange(0, 5).Draw(t, "migration event uri") {
		case 0:
		case 1:
			e.URI = "bad\x00uri"
		default:
			if e.Event == resource.MigrationPrepared {
				e.URI = "qemu+tls://" + req.Host + "/system"
			}
		}
		e.Reason = rapid.SampledFrom([]string{"", "", "the target ran out of memory"}).Draw(t, "migration event reason")
		e.DowntimeMS = rapid.SampledFrom([]int64{0, 0, 42, -1, fsm.MaxTimingMS + 1}).Draw(t, "migration event downtime")
		req.Events = append(req.Events, e)
	}
	return req
}

func drawEvacuate(t *rapid.T, next uint64) *fsm.EvacuateRequest {
	req := &fsm.EvacuateRequest{
		Time:   drawTime(t),
		Host:   rapid.SampledFrom(propRefs).Draw(t, "evacuate host"),
		Grace:  rapid.SampledFrom([]time.Duration{0, 30 * time.Minute, 2 * time.Hour, 100 * time.Hour, -time.Hour}).Draw(t, "grace"),
		Reason: rapid.SampledFrom([]string{"host down", ""}).Draw(t, "evacuate reason"),
	}
	if rapid.Bool().Draw(t, "protocol 5 evacuate?") {
		drawEvacuate5(t, req, rapid.Uint64Range(0, next).Draw(t, "evacuate state index"))
	}
	return req
}

// drawEvacuate5 makes req a protocol 5 evacuation of the period that began
// at stateIndex (0: none), with a measure and a grace below, at or above
// the usual published ones (4 s, 30 s).
func drawEvacuate5(t *rapid.T, req *fsm.EvacuateRequest, stateIndex uint64) {
	req.StateIndex = stateIndex
	req.DownForMS = rapid.SampledFrom([]int64{0, 1000, 3999, 4000, 30000, 60000, -1}).Draw(t, "down for ms")
	req.Grace = rapid.SampledFrom([]time.Duration{0, 0, 4 * time.Second, time.Minute, -time.Second}).Draw(t, "evacuate grace")
	req.FenceRequired = rapid.Bool().Draw(t, "fence required")
}

// drawHostFence draws a fence record for host of the period that began at
// stateIndex, some of them invalid.
func drawHostFence(t *rapid.T, host string, stateIndex uint64) *fsm.HostFenceRequest {
	req := &fsm.HostFenceRequest{Time: drawTime(t), Host: host, Fence: resource.HostFence{
		State:      rapid.SampledFrom([]string{resource.FenceRunning, resource.FenceSucceeded, resource.FenceSucceeded, resource.FenceFailed, "done"}).Draw(t, "fence state"),
		Attempts:   rapid.SampledFrom([]int{1, 1, 2, 7, 0, -1}).Draw(t, "fence attempts"),
		ExitCode:   rapid.SampledFrom([]int{0, 1, -1, 255}).Draw(t, "fence exit code"),
		Output:     rapid.SampledFrom([]string{"", "Success: Powered OFF\n", "\u00e9t\u00e9", strings.Repeat("x", resource.MaxFenceOutput+1)}).Draw(t, "fence output"),
		Reason:     rapid.SampledFrom([]string{"", "the fence command failed"}).Draw(t, "fence reason"),
		StartedAt:  drawTime(t),
		FinishedAt: drawTime(t),
		StateIndex: stateIndex,
	}}
	return req
}

// op draws one non-batch command.
// propClusterIDs are the identities cluster-init commands give: two valid
// ones (the second is refused once the first is set) and malformed ones.
var propClusterIDs = []string{
	"11111111-2222-4333-8444-555555555555", "66666666-7777-4888-9999-000000000000",
	"", "not-a-uuid", "11111111222243338444555555555555",
}

func (g propGen) op(t *rapid.T, next uint64) (fsm.MessageType, any) {
	fault := drawFault(t)
	kind := rapid.SampledFrom([]resource.Kind{vm, host}).Draw(t, "kind")
	name := drawName(t, fault)
	if fault == faultKind {
		kind = rapid.SampledFrom([]resource.Kind{"nope", ""}).Draw(t, "bad kind")
	}
	switch rapid.IntRange(0, 24).Draw(t, "op") {
	case 23:
		return fsm.MigrationEventRequestType, g.drawMigrationEvents(t, next)
	case 24:
		// A migration of a VM that runs, or an abort.
		req := &fsm.MigrateRequest{
			Time: drawTime(t), VM: rapid.SampledFrom(propRefs).Draw(t, "migrate vm"),
			Host: rapid.SampledFrom(append([]string{""}, propRefs...)).Draw(t, "migrate host"),
			Mode: rapid.SampledFrom([]string{resource.MigrationLive, resource.MigrationLive, resource.MigrationRestart, "", "teleport"}).Draw(t, "migrate mode"),
		}
		if rapid.IntRange(0, 3).Draw(t, "migrate abort?") == 0 {
			req.Abort = true
		}
		return fsm.MigrateRequestType, req
	case 21:
		return g.aclOp(t, next, fault)
	case 22:
		mt, req := g.op(t, next)
		acc := rapid.SampledFrom(propAccessors).Draw(t, "accessor")
		if mt == fsm.AccessorRequestType {
			// Nested: understood, and refused.
			payload, _ := json.Marshal(req)
			return mt, &fsm.AccessorRequest{Accessor: acc, Type: mt, Payload: payload}
		}
		if mt == fsm.CreateBinRequestType {
			// The binary create carries its accessor itself.
			req.(*fsm.CreateBinRequest).Accessor = acc
			return mt, req
		}
		wt, wreq, err := fsm.WithAccessor(acc, mt, req)
		if err != nil {
			t.Fatal(err)
		}
		return wt, wreq
	case 0, 1, 2:
		id := fmt.Sprintf("id-%s-%d", name, rapid.IntRange(0, 2).Draw(t, "id"))
		if fault == faultID {
			id = ""
		}
		req := &fsm.CreateRequest{
			Time: drawTime(t), Kind: kind, Name: name, ID: id,
			Labels: drawLabels(t, fault), Spec: drawSpec(t, kind, fault),
		}
		if rapid.IntRange(0, 2).Draw(t, "binary create?") == 0 {
			return fsm.CreateBinRequestType, &fsm.CreateBinRequest{Create: req}
		}
		return fsm.CreateRequestType, req
	case 3, 4, 5:
		return fsm.UpdateRequestType, &fsm.UpdateRequest{
			Time: drawTime(t), Kind: kind, Name: name, CAS: g.cas(t, kind, name, next),
			Labels: drawLabels(t, fault), Spec: drawSpec(t, kind, fault),
		}
	case 6, 7:
		return fsm.StatusRequestType, &fsm.StatusRequest{
			Time: drawTime(t), Kind: kind, Name: name, CAS: g.cas(t, kind, name, next),
			Status: g.drawStatus(t, kind, name, fault),
		}
	case 8, 9:
		return fsm.DeleteRequestType, &fsm.DeleteRequest{Time: drawTime(t), Kind: kind, Name: name, CAS: g.cas(t, kind, name, next)}
	case 10, 11, 12:
		return fsm.PlaceRequestType, drawPlace(t, fault)
	case 13, 14:
		return fsm.ReportRequestType, g.drawReport(t, next, fault)
	case 15, 16:
		return fsm.HostStateRequestType, drawHostState(t, fault)
	case 17:
		if rapid.IntRange(0, 2).Draw(t, "fence instead?") == 0 {
			return fsm.HostFenceRequestType, drawHostFence(t, rapid.SampledFrom(propRefs).Draw(t, "fence host"), rapid.Uint64Range(0, next).Draw(t, "fence state index"))
		}
		return fsm.EvacuateRequestType, drawEvacuate(t, next)
	case 19:
		return fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{
			Time: drawTime(t), ID: rapid.SampledFrom(propClusterIDs).Draw(t, "cluster id"),
		}
	case 18:
		return fsm.MigrateRequestType, &fsm.MigrateRequest{
			Time: drawTime(t), VM: rapid.SampledFrom(propRefs).Draw(t, "migrate vm"),
			Host:      rapid.SampledFrom(append([]string{""}, propRefs...)).Draw(t, "migrate host"),
			Grace:     rapid.SampledFrom([]time.Duration{0, 30 * time.Minute, 100 * time.Hour}).Draw(t, "migrate grace"),
			PhaseOnly: rapid.Bool().Draw(t, "migrate phase only"),
		}
	}
	return fsm.ActionRequestType, &fsm.ActionRequest{
		Time: drawTime(t), VM: rapid.SampledFrom(propRefs).Draw(t, "action vm"), Action: rapid.SampledFrom(propActions).Draw(t, "action"),
		Force: rapid.IntRange(0, 3).Draw(t, "force") == 0,
	}
}

// propAccessors are the accessor IDs envelopes carry ("" is the command
// as it is; the long one is refused).
var propAccessors = []string{"acc-1", "acc-2", "", strings.Repeat("x", 65)}

var propSecretHashes = []string{
	resource.HashACLSecret("s1"), resource.HashACLSecret("s2"), "", "ABC",
}

// aclOp draws an ACL command.
func (g propGen) aclOp(t *rapid.T, next uint64, fault int) (fsm.MessageType, any) {
	acc := rapid.SampledFrom([]string{"acc-1", "acc-2", "acc-3", ""}).Draw(t, "acl accessor")
	hash := rapid.SampledFrom(propSecretHashes).Draw(t, "acl hash")
	pname := rapid.SampledFrom([]string{"p1", "p2", "Bad Name"}).Draw(t, "acl policy")
	switch rapid.IntRange(0, 4).Draw(t, "acl op") {
	case 0:
		return fsm.ACLBootstrapRequestType, &fsm.ACLBootstrapRequest{Time: drawTime(t), AccessorID: acc, SecretHash: hash}
	case 1:
		rules := rapid.SampledFrom([][]resource.ACLRule{
			{{Kind: vm, Access: resource.AccessRead}},
			{{Kind: vm, Access: resource.AccessWrite, Selector: "team=web"}, {Kind: resource.KindCluster, Access: resource.AccessAdmin}},
			{},
			{{Kind: "nope", Access: resource.AccessRead}},
		}).Draw(t, "acl rules")
		return fsm.ACLPolicyUpsertRequestType, &fsm.ACLPolicyUpsertRequest{
			Time: drawTime(t), Policy: resource.ACLPolicy{Name: pname, Rules: rules},
			Create: rapid.Bool().Draw(t, "acl create"), CAS: rapid.SampledFrom([]uint64{0, 0, next - 1, 1}).Draw(t, "acl cas"),
		}
	case 2:
		return fsm.ACLPolicyDeleteRequestType, &fsm.ACLPolicyDeleteRequest{Time: drawTime(t), Name: pname}
	case 3:
		tok := rapid.SampledFrom([]resource.ACLToken{
			{Type: resource.TokenClient, Policies: []string{"p1"}},
			{Type: resource.TokenClient, Policies: []string{"p1", "p2"}},
			{Type: resource.TokenManagement},
			{Type: resource.TokenNode, Node: "h1"},
			{Type: resource.TokenNode},
			{Type: "root"},
		}).Draw(t, "acl token")
		tok.AccessorID = acc
		tok.Name = rapid.SampledFrom([]string{"", "ci"}).Draw(t, "acl token name")
		return fsm.ACLTokenCreateRequestType, &fsm.ACLTokenCreateRequest{Time: drawTime(t), Token: tok, SecretHash: hash}
	}
	return fsm.ACLTokenDeleteRequestType, &fsm.ACLTokenDeleteRequest{Time: drawTime(t), AccessorID: acc}
}

// batch draws a batch; with bad, one of its operations (or, rarely, its
// shape) is one the FSM cannot understand.
func (g propGen) batch(t *rapid.T, next uint64, bad bool) *fsm.BatchRequest {
	req := &fsm.BatchRequest{Time: drawTime(t), Ops: []fsm.BatchOp{}}
	n := rapid.IntRange(1, 6).Draw(t, "batch size")
	if n == 6 && !bad {
		n = 0 // an empty batch, refused
	}
	for i := range n {
		var op fsm.BatchOp
		switch rapid.IntRange(0, 39).Draw(t, "batch op kind") {
		case 39:
			op = fsm.BatchOp{Type: fsm.BatchRequestType, Payload: raw(`{"ops":[]}`)} // nested: refused
		case 38:
			op = fsm.BatchOp{Type: fsm.CreateRequestType | fsm.IgnoreUnknownTypeFlag, Payload: raw(`"garbage"`)} // ignorable: skipped
		case 37:
			op = fsm.BatchOp{Type: fsm.DeleteRequestType, Payload: raw(`{}`)} // decodes, refused
		case 36:
			op = fsm.BatchOp{Type: 0xe3, Payload: raw(`{}`)} // unknown, ignorable: skipped
		default:
			mt, r := g.op(t, next)
			if b, ok := r.(*fsm.CreateBinRequest); ok {
				// Batches hold JSON: the create itself, with its
				// accessor in an envelope.
				var err error
				if mt, r, err = fsm.WithAccessor(b.Accessor, fsm.CreateRequestType, b.Create); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if op, err = fsm.NewBatchOp(mt, r); err != nil {
				t.Fatalf("batch op %d: %v", i, err)
			}
		}
		req.Ops = append(req.Ops, op)
	}
	if bad {
		op := rapid.SampledFrom([]fsm.BatchOp{
			{Type: 99, Payload: raw(`{}`)},                                  // unknown type
			{Type: 0, Payload: raw(`{}`)},                                   // type 0 is unknown
			{Type: fsm.DeleteRequestType, Payload: raw(`"garbage"`)},        // does not decode
			{Type: fsm.CreateRequestType, Payload: raw(`{"x":1}`)},          // unknown field
			{Type: fsm.PlaceRequestType, Payload: raw(`[]`)},                // wrong shape
			{Type: fsm.MigrateRequestType, Payload: raw(`{"vm":7}`)},        // wrong field type
			{Type: fsm.EvacuateRequestType, Payload: raw(`{"grace":"1h"}`)}, // a duration is a number
		}).Draw(t, "bad op")
		at := rapid.IntRange(0, len(req.Ops)).Draw(t, "bad op at")
		req.Ops = slices.Insert(req.Ops, at, op)
	}
	return req
}

// entry draws one log entry to be applied at index next.
func (g propGen) entry(t *rapid.T, next uint64) propEntry {
	if g.fatalOdds > 0 && rapid.IntRange(0, g.fatalOdds-1).Draw(t, "understood") == 0 {
		return g.notUnderstood(t, next)
	}
	switch rapid.IntRange(0, 29).Draw(t, "entry kind") {
	case 29:
		return propEntry{logType: rapid.SampledFrom([]raft.LogType{raft.LogNoop, raft.LogBarrier, raft.LogConfiguration}).Draw(t, "log type")}
	case 28:
		// Garbage of an unknown ignorable type: skipped.
		data := rapid.SliceOfN(rapid.Byte(), 1, 12).Draw(t, "garbage")
		data[0] |= byte(fsm.IgnoreUnknownTypeFlag)
		return propEntry{data: data}
	case 27:
		// A valid command under its type with the ignorable flag: an
		// unknown type, skipped.
		mt, req := g.op(t, next)
		data, err := fsm.Encode(mt|fsm.IgnoreUnknownTypeFlag, req)
		if err != nil {
			t.Fatal(err)
		}
		return propEntry{data: data}
	case 26:
		return propEntry{data: []byte("\xe3{}")} // unknown, ignorable
	case 25:
		// A known type byte with a small payload that decodes (and is
		// mostly refused).
		b := rapid.IntRange(1, int(fsm.HostFenceRequestType)).Draw(t, "raw type")
		p := rapid.SampledFrom([]string{`{}`, `null`, ` {} `, "{}\n"}).Draw(t, "raw payload")
		return propEntry{data: append([]byte{byte(b)}, p...)}
	case 20, 21, 22, 23, 24:
		return propEntry{typ: fsm.BatchRequestType, req: g.batch(t, next, false)}
	case 19:
		if e, ok := g.creates(t, next); ok {
			return e
		}
	}
	mt, req := g.op(t, next)
	return propEntry{typ: mt, req: req}
}

// creates draws a creates-bin entry (creates the leader coalesced): the
// creates among a few drawn commands, as raw data (the model decodes it).
func (g propGen) creates(t *rapid.T, next uint64) (propEntry, bool) {
	var entries [][]byte
	for range rapid.IntRange(1, 6).Draw(t, "coalesced commands") {
		switch mt, req := g.op(t, next); mt {
		case fsm.CreateBinRequestType:
			b := req.(*fsm.CreateBinRequest)
			entries = append(entries, fsm.EncodeCreateBin(b.Accessor, b.Create))
		case fsm.CreateRequestType:
			entries = append(entries, fsm.EncodeCreateBin("", req.(*fsm.CreateRequest)))
		}
	}
	if len(entries) == 0 {
		return propEntry{}, false
	}
	data, err := fsm.EncodeCreates(entries)
	if err != nil {
		t.Fatal(err)
	}
	return propEntry{data: data}, true
}

// notUnderstood draws an entry this build cannot understand: the FSM must
// halt on it.
func (g propGen) notUnderstood(t *rapid.T, next uint64) propEntry {
	switch rapid.IntRange(0, 5).Draw(t, "not understood") {
	case 0:
		return propEntry{data: []byte{}} // empty
	case 1:
		// An unknown type without the ignorable flag, with a payload
		// that would be a valid command.
		b := rapid.SampledFrom([]byte{0, 23, 24, 42, 99, 127}).Draw(t, "unknown type")
		_, req := g.op(t, next)
		data, err := fsm.Encode(fsm.MessageType(b), req)
		if err != nil {
			t.Fatal(err)
		}
		return propEntry{data: data}
	case 2:
		// A known type with a payload that does not decode strictly.
		b := rapid.IntRange(1, int(fsm.HostFenceRequestType)).Draw(t, "raw type")
		p := rapid.SampledFrom([]string{``, `[]`, `{"x":1}`, `not json`, `{} {}`, `{}}`, `"x"`, `{"time":"yesterday"}`, `{`}).Draw(t, "bad payload")
		return propEntry{data: append([]byte{byte(b)}, p...)}
	case 3:
		// Random bytes, of a type without the ignorable flag (they may
		// happen to decode: the model decides).
		data := rapid.SliceOfN(rapid.Byte(), 1, 12).Draw(t, "garbage")
		data[0] &^= byte(fsm.IgnoreUnknownTypeFlag)
		return propEntry{data: data}
	case 4:
		// A batch envelope that does not decode.
		p := rapid.SampledFrom([]string{`{"ops":[{"type":300,"payload":{}}]}`, `{"ops":{}}`, `{"ops":[{"type":3}]}`, `{"ops":[],"x":1}`}).Draw(t, "bad batch")
		return propEntry{data: append([]byte{byte(fsm.BatchRequestType)}, p...)}
	}
	return propEntry{typ: fsm.BatchRequestType, req: g.batch(t, next, true)}
}

// drawLog draws a log of n entries (indexes 1..n).
func drawLog(t *rapid.T, minLen, maxLen int) []propEntry {
	n := rapid.IntRange(minLen, maxLen).Draw(t, "log length")
	g := propGen{cas: randomCAS, vmHosts: []string{"", "h1", "a", "b"}}
	out := make([]propEntry, n)
	for i := range out {
		out[i] = g.entry(t, uint64(i)+1)
	}
	// Some logs have an entry the FSM cannot understand, mostly late
	// (rapid favours small draws), so that most of the log is applied
	// before the halt.
	if n > 0 && rapid.IntRange(0, 2).Draw(t, "halting entry?") == 2 {
		i := n - 1 - rapid.IntRange(0, n-1).Draw(t, "halting entry from the end")
		out[i] = g.notUnderstood(t, uint64(i)+1)
	}
	return out
}

// ---- comparing two FSMs ----

var propSelectors = []string{"", "app=web", "app!=web", "tier", "!tier", "app=db,zone"}

// sameState asserts that a and b hold the same replicated state and
// return the same answers to every read.
func sameState(t *rapid.T, what string, a, b *fsm.FSM) {
	sa, sb := a.State(), b.State()
	if da, db := sa.Digest(), sb.Digest(); da != db {
		t.Fatalf("%s: digests differ: %s vs %s", what, da, db)
	}
	if sa.LatestIndex() != sb.LatestIndex() {
		t.Fatalf("%s: LatestIndex %d vs %d", what, sa.LatestIndex(), sb.LatestIndex())
	}
	if a.AppliedIndex() != b.AppliedIndex() {
		t.Fatalf("%s: AppliedIndex %d vs %d", what, a.AppliedIndex(), b.AppliedIndex())
	}
	for _, k := range []resource.Kind{vm, host, "nope"} {
		if sa.Index(k) != sb.Index(k) || sa.Count(k) != sb.Count(k) {
			t.Fatalf("%s: Index/Count(%s) %d/%d vs %d/%d", what, k, sa.Index(k), sa.Count(k), sb.Index(k), sb.Count(k))
		}
		for _, s := range propSelectors {
			sel, err := resource.ParseSelector(s)
			if err != nil {
				t.Fatal(err)
			}
			la, errA := sa.List(nil, k, sel)
			lb, errB := sb.List(nil, k, sel)
			if errA != nil || errB != nil {
				t.Fatalf("%s: List errors %v, %v", what, errA, errB)
			}
			if !slices.EqualFunc(la, lb, (*resource.Object).Equal) {
				t.Fatalf("%s: List(%s, %q) differs:\n%v\n%v", what, k, s, objs(la), objs(lb))
			}
		}
		for _, n := range propNames {
			oa, _ := sa.Get(nil, k, n)
			ob, _ := sb.Get(nil, k, n)
			if !oa.Equal(ob) {
				t.Fatalf("%s: Get(%s/%s) differs: %+v vs %+v", what, k, n, oa, ob)
			}
		}
	}
	for _, h := range propAllHosts {
		la, errA := sa.VMsOnHost(nil, h)
		lb, errB := sb.VMsOnHost(nil, h)
		if errA != nil || errB != nil || !slices.EqualFunc(la, lb, (*resource.Object).Equal) {
			t.Fatalf("%s: VMsOnHost(%s) differs (%v, %v):\n%v\n%v", what, h, errA, errB, objs(la), objs(lb))
		}
	}
	for _, ph := range propAllPhases {
		la, errA := sa.VMsInPhase(nil, ph)
		lb, errB := sb.VMsInPhase(nil, ph)
		if errA != nil || errB != nil || !slices.EqualFunc(la, lb, (*resource.Object).Equal) {
			t.Fatalf("%s: VMsInPhase(%s) differs (%v, %v):\n%v\n%v", what, ph, errA, errB, objs(la), objs(lb))
		}
	}
}

func objs(l []*resource.Object) string {
	var sb strings.Builder
	for _, o := range l {
		b, _ := json.Marshal(o)
		sb.Write(b)
		sb.WriteByte('\n')
	}
	return sb.String()
}

func sameResult(t *rapid.T, what string, ra, rb *fsm.Result) {
	if ra.Index != rb.Index || fmt.Sprint(ra.Err) != fmt.Sprint(rb.Err) ||
		!slices.EqualFunc(ra.Objects, rb.Objects, (*resource.Object).Equal) ||
		fmt.Sprint(ra.ItemErrors) != fmt.Sprint(rb.ItemErrors) || len(ra.Subs) != len(rb.Subs) {
		t.Fatalf("%s: results differ:\n%+v\n%+v", what, ra, rb)
	}
	for i := range ra.Subs {
		sameResult(t, fmt.Sprintf("%s, create %d", what, i), ra.Subs[i], rb.Subs[i])
	}
}

func eventStrings(evs []resource.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		b, _ := json.Marshal(ev)
		out[i] = string(b)
	}
	return out
}

func applyProp(t *rapid.T, f *fsm.FSM, e propEntry, index uint64) *fsm.Result {
	res := fsm.TestApplyLog(t, f, e.log(t, index))
	if errors.Is(res.Err, fsm.ErrApplyPanic) {
		t.Fatalf("entry %d (%s) panicked inside Apply: %v", index, e, res.Err)
	}
	return res
}

// TestPropertySameLogSameState: replicas fed the same log end in the same
// state. Three fresh FSMs get one generated log — every message type,
// batches, business errors, ignorable garbage, entries that are not
// commands and, in some logs, an entry the FSM cannot understand — one
// entry at a time through Apply, in random chunks through ApplyBatch, and
// all in one ApplyBatch: they give the same results and end with the same
// state digest, the same events, the same AppliedIndex and the same halt.
// It also checks that the generator covered every message type.
func TestPropertySameLogSameState(t *testing.T) {
	seen := map[fsm.MessageType]int{}
	var runs, halted, refused int
	rapid.Check(t, func(t *rapid.T) {
		entries := drawLog(t, 1, 60)
		a, b, c := fsm.New(fsm.Config{}), fsm.New(fsm.Config{}), fsm.New(fsm.Config{})
		var resA []*fsm.Result
		for i, e := range entries {
			resA = append(resA, applyProp(t, a, e, uint64(i)+1))
		}
		for i := 0; i < len(entries); {
			n := rapid.IntRange(1, 8).Draw(t, "chunk")
			n = min(n, len(entries)-i)
			logs := make([]*raft.Log, n)
			for j := range logs {
				logs[j] = entries[i+j].log(t, uint64(i+j)+1)
			}
			for j, r := range b.ApplyBatch(logs) {
				sameResult(t, fmt.Sprintf("entry %d", i+j+1), resA[i+j], r.(*fsm.Result))
			}
			i += n
		}
		all := make([]*raft.Log, len(entries))
		for i, e := range entries {
			all[i] = e.log(t, uint64(i)+1)
		}
		for i, r := range c.ApplyBatch(all) {
			sameResult(t, fmt.Sprintf("entry %d in one batch", i+1), resA[i], r.(*fsm.Result))
		}
		sameState(t, "after the log (chunks)", a, b)
		sameState(t, "after the log (one batch)", a, c)
		ea, _, _, _ := a.Events().Since(0, 0)
		for _, other := range []*fsm.FSM{b, c} {
			eo, _, _, _ := other.Events().Since(0, 0)
			if !slices.Equal(eventStrings(ea), eventStrings(eo)) {
				t.Fatalf("events differ:\n%v\n%v", eventStrings(ea), eventStrings(eo))
			}
		}
		if errString(a.Halted()) != errString(b.Halted()) || errString(a.Halted()) != errString(c.Halted()) {
			t.Fatalf("halts differ: %v / %v / %v", a.Halted(), b.Halted(), c.Halted())
		}
		runs++
		if a.Halted() != nil {
			halted++
		}
		for i, e := range entries {
			if e.logType == raft.LogCommand && e.req == nil && len(e.data) > 0 && fsm.MessageType(e.data[0]) == fsm.CreatesBinRequestType {
				seen[fsm.CreatesBinRequestType]++
			}
			if e.logType == raft.LogCommand && e.req != nil {
				seen[e.typ]++
				if b, ok := e.req.(*fsm.BatchRequest); ok {
					for _, op := range b.Ops {
						seen[op.Type]++
					}
				}
			}
			if r := resA[i]; r.Err != nil && !errors.Is(r.Err, fsm.ErrHalted) {
				refused++
			}
		}
	})
	for _, mt := range fsm.MessageTypes {
		if seen[mt] == 0 {
			t.Errorf("no generated log had a %s command", mt)
		}
	}
	if halted == 0 || halted == runs || refused == 0 {
		t.Errorf("of %d logs %d halted and %d entries were refused: the generator must produce both", runs, halted, refused)
	}
	t.Logf("%d logs, %d halted, %d refused entries, commands by type %v", runs, halted, refused, seen)
}

// TestPropertySnapshotRestore: Snapshot → Persist → Restore into a fresh FSM
// gives an identical state; the same further log keeps both identical. The
// snapshot is taken at a point in time: entries applied between Snapshot and
// Persist are not in it.
func TestPropertySnapshotRestore(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		entries := drawLog(t, 0, 60)
		cut := rapid.IntRange(0, len(entries)).Draw(t, "snapshot at")
		late := rapid.IntRange(cut, len(entries)).Draw(t, "persist at")
		a := fsm.New(fsm.Config{})
		for i, e := range entries[:cut] {
			applyProp(t, a, e, uint64(i)+1)
		}
		if a.Halted() != nil {
			// A halted FSM takes no snapshot (nor restores one).
			if _, err := a.Snapshot(); !errors.Is(err, fsm.ErrHalted) {
				t.Fatalf("Snapshot of a halted FSM: %v", err)
			}
			return
		}
		ref := fsm.TestSnapshotRestore(t, a) // what the snapshot must contain
		sameState(t, "restored", a, ref)
		snap, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		for i := cut; i < late; i++ {
			applyProp(t, a, entries[i], uint64(i)+1)
		}
		var sink fsm.TestSink
		if err := snap.Persist(&sink); err != nil {
			t.Fatal(err)
		}
		snap.Release()
		b := fsm.TestRestore(t, sink.Bytes())
		sameState(t, "restored from a snapshot taken before later writes", ref, b)
		if b.AppliedIndex() != uint64(cut) {
			t.Fatalf("restored AppliedIndex = %d, want %d", b.AppliedIndex(), cut)
		}
		// The restored node has no event history: readers must reset.
		if _, reset, floor, _ := b.Events().Since(0, 0); uint64(cut) > 0 && (!reset || floor != uint64(cut)) {
			t.Fatalf("after restore Since(0): reset=%v floor=%d, want a reset at %d", reset, floor, cut)
		}
		// Bring b up to a's position, then apply the rest to both.
		for i := cut; i < late; i++ {
			applyProp(t, b, entries[i], uint64(i)+1)
		}
		sameState(t, "caught up", a, b)
		for i := late; i < len(entries); i++ {
			ra := applyProp(t, a, entries[i], uint64(i)+1)
			rb := applyProp(t, b, entries[i], uint64(i)+1)
			sameResult(t, fmt.Sprintf("entry %d after restore", i+1), ra, rb)
			sameState(t, fmt.Sprintf("after entry %d", i+1), a, b)
		}
		// Events b recorded after the restore are the same as a's.
		ea, _, _, _ := a.Events().Since(uint64(cut), 0)
		eb, _, _, _ := b.Events().Since(uint64(cut), 0)
		if !slices.Equal(eventStrings(ea), eventStrings(eb)) {
			t.Fatalf("events after the restore differ:\n%v\n%v", eventStrings(ea), eventStrings(eb))
		}
		if errString(a.Halted()) != errString(b.Halted()) {
			t.Fatalf("halts differ: %v / %v", a.Halted(), b.Halted())
		}
		if b.Halted() != nil {
			return
		}
		// A second round trip is a fixed point.
		p1 := fsm.TestPersist(t, b)
		if p2 := fsm.TestPersist(t, fsm.TestRestore(t, p1)); string(p1) != string(p2) {
			t.Fatalf("persist(restore(persist(s))) != persist(s)")
		}
	})
}

// ---- model check ----

type mKey struct {
	kind resource.Kind
	name string
}

type mObj struct {
	id             string
	labels         map[string]string
	spec, status   string
	create, modify uint64
	by             string // ModifiedBy
}

type mPolicy struct {
	rules          string
	create, modify uint64
}

// model is the specification: a map of objects, the per-kind indexes, and
// the rules of placement written out again, independently of the FSM.
type model struct {
	objs   map[mKey]mObj
	kindIx map[resource.Kind]uint64
	latest uint64
	// touched are the hosts whose allocation the current entry may have
	// changed; it is recomputed when the entry ends.
	touched map[string]bool
	// applied is the index of the last entry applied (or refused, or
	// skipped); halted is set by the first entry the FSM cannot
	// understand, after which nothing is applied.
	applied uint64
	halted  bool
	// clusterID is the cluster's identity (the first valid cluster-init).
	clusterID string
	// accessor is the accessor of the command being applied.
	accessor string
	// ACLs: bootstrapped, policies by name, tokens' secret hashes by
	// accessor.
	aclBoot  bool
	policies map[string]mPolicy
	tokens   map[string]string
}

func newModel() *model {
	return &model{objs: map[mKey]mObj{}, kindIx: map[resource.Kind]uint64{}, policies: map[string]mPolicy{}, tokens: map[string]string{}}
}

func (m *model) clone() *model {
	return &model{objs: maps.Clone(m.objs), kindIx: maps.Clone(m.kindIx), latest: m.latest, touched: maps.Clone(m.touched),
		applied: m.applied, halted: m.halted, clusterID: m.clusterID, accessor: m.accessor,
		aclBoot: m.aclBoot, policies: maps.Clone(m.policies), tokens: maps.Clone(m.tokens)}
}

func (m *model) bump(kind resource.Kind, index uint64) {
	m.kindIx[kind] = index
	m.latest = index
}

func (m *model) idUsed(id string) bool {
	for _, o := range m.objs {
		if o.id == id {
			return true
		}
	}
	return false
}

func (m *model) anyHost() bool {
	for k := range m.objs {
		if k.kind == host {
			return true
		}
	}
	return false
}

func (m *model) touch(host string) {
	if host == "" {
		return
	}
	if m.touched == nil {
		m.touched = map[string]bool{}
	}
	m.touched[host] = true
}

func mustJSON(t *rapid.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("model: encode %T: %v", v, err)
	}
	return string(b)
}

func decodeAs[T any](t *rapid.T, s string) T {
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("model: decode %T from %s: %v", v, s, err)
	}
	return v
}

func (m *model) vmSpec(t *rapid.T, name string) resource.VMSpec {
	return decodeAs[resource.VMSpec](t, m.objs[mKey{vm, name}].spec)
}

func (m *model) vmStatus(t *rapid.T, name string) resource.VMStatus {
	return decodeAs[resource.VMStatus](t, m.objs[mKey{vm, name}].status)
}

func (m *model) hostSpec(t *rapid.T, name string) resource.HostSpec {
	s := decodeAs[resource.HostSpec](t, m.objs[mKey{host, name}].spec)
	s.Default()
	return s
}

func (m *model) hostStatus(t *rapid.T, name string) resource.HostStatus {
	return decodeAs[resource.HostStatus](t, m.objs[mKey{host, name}].status)
}

func (m *model) has(kind resource.Kind, name string) bool {
	_, ok := m.objs[mKey{kind, name}]
	return ok
}

// vmsOn returns the names of the VMs whose status.host is host, in order.
func (m *model) vmsOn(t *rapid.T, host string) []string {
	var out []string
	for k := range m.objs {
		if k.kind == vm && m.vmStatus(t, k.name).Host == host {
			out = append(out, k.name)
		}
	}
	slices.Sort(out)
	return out
}

// migratingTo returns the names of the VMs migrating to host, in order.
func (m *model) migratingTo(t *rapid.T, host string) []string {
	var out []string
	for k := range m.objs {
		if k.kind == vm {
			if mg := m.vmStatus(t, k.name).Migration; mg != nil && mg.Target == host {
				out = append(out, k.name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// allocated sums the specs of the VMs whose status.host is host and of
// those migrating to it (a migration reserves both hosts).
func (m *model) allocated(t *rapid.T, host string) resource.Resources {
	var r resource.Resources
	for _, n := range append(m.vmsOn(t, host), m.migratingTo(t, host)...) {
		s := m.vmSpec(t, n)
		r.CPUs += s.CPUs
		r.MemoryMiB += s.MemoryMiB
	}
	return r
}

// touchVM marks the hosts a VM status holds: its host and its
// migration's target.
func (m *model) touchVM(st resource.VMStatus) {
	m.touch(st.Host)
	if st.Migration != nil {
		m.touch(st.Migration.Target)
	}
}

// schedulable is floor(capacity × ratio), computed exactly with the ratio
// as it is written in decimal (20 × 1.15 is 23, though 1.15 is a little
// less in binary).
func schedulable(spec resource.HostSpec, capacity resource.Resources) resource.Resources {
	scale := func(n int64, ratio float64) int64 {
		if ratio < 1 {
			ratio = 1
		}
		r, ok := new(big.Rat).SetString(strconv.FormatFloat(ratio, 'g', -1, 64))
		if !ok {
			panic(fmt.Sprintf("ratio %v", ratio))
		}
		r.Mul(r, new(big.Rat).SetInt64(n))
		q := new(big.Int).Quo(r.Num(), r.Denom()) // truncates; n, ratio ≥ 0
		return q.Int64()
	}
	return resource.Resources{
		CPUs:      int(scale(int64(capacity.CPUs), spec.CPUOvercommit)),
		MemoryMiB: scale(capacity.MemoryMiB, spec.MemoryOvercommit),
	}
}

func (m *model) limit(t *rapid.T, host string) resource.Resources {
	return schedulable(m.hostSpec(t, host), m.hostStatus(t, host).Capacity)
}

// write stores o as kind/name at index and returns the event.
func (m *model) write(kind resource.Kind, name string, o mObj, index uint64, ev string) string {
	o.modify = index
	if m.accessor != "" {
		o.by = m.accessor
	}
	m.objs[mKey{kind, name}] = o
	m.bump(kind, index)
	return fmt.Sprintf("%s %s/%s", ev, kind, name)
}

// putVM writes VM name's spec (if non-nil) and status, marking its old and
// new hosts.
func (m *model) putVM(t *rapid.T, index uint64, name string, spec *resource.VMSpec, st resource.VMStatus) string {
	o := m.objs[mKey{vm, name}]
	m.touchVM(m.vmStatus(t, name))
	m.touchVM(st)
	if spec != nil {
		o.spec = mustJSON(t, spec)
	}
	o.status = mustJSON(t, &st)
	return m.write(vm, name, o, index, resource.EventUpdated)
}

// modelOp is one operation's expected outcome: either the errors any of
// which the FSM may report (the request may break several rules; the FSM
// reports one), or success with its events ("created vm/a") and, for
// place and report, each item's possible errors (none: it succeeds).
type modelOp struct {
	errs   []error
	events []string
	items  [][]error
	// subs: a creates-bin entry's creates, each its errors as an entry.
	subs [][]error
	// halt: the FSM cannot understand the entry and must halt on it, for
	// this reason (ErrBadPayload or ErrUnknownCommand).
	halt error
	// notApplied: the FSM had halted before the entry.
	notApplied bool
}

func known(kind resource.Kind) bool { _, ok := resource.Lookup(kind); return ok }

func validPower(p string) bool {
	return p == resource.PowerRunning || p == resource.PowerStopped || p == resource.PowerSuspended
}

var modelReportable = map[string]bool{
	resource.PhaseStarting: true, resource.PhaseRunning: true, resource.PhaseStopping: true,
	resource.PhaseStopped: true, resource.PhaseSuspended: true, resource.PhaseFailed: true,
}

// apply applies one non-batch operation to m (only when it succeeds).
func (m *model) apply(t *rapid.T, index uint64, mt fsm.MessageType, req any) modelOp {
	var r modelOp
	fail := func(err error) { r.errs = append(r.errs, err) }
	switch mt {
	case fsm.CreateRequestType:
		q := req.(*fsm.CreateRequest)
		k := mKey{q.Kind, q.Name}
		if !known(q.Kind) || resource.ValidateName(q.Name) != nil || resource.ValidateLabels(q.Labels) != nil || q.ID == "" {
			fail(resource.ErrInvalid)
		}
		var spec json.RawMessage
		if known(q.Kind) {
			var err error
			if spec, err = resource.NormalizeSpec(q.Kind, q.Spec); err != nil {
				fail(resource.ErrInvalid)
			}
		}
		if _, ok := m.objs[k]; ok {
			fail(fsm.ErrExists)
		}
		if q.ID != "" && m.idUsed(q.ID) {
			fail(fsm.ErrExists)
		}
		if r.errs != nil {
			return r
		}
		status, err := resource.InitialStatus(q.Kind, q.Time)
		if err != nil {
			t.Fatalf("model: initial status: %v", err)
		}
		if q.Kind == vm && !m.anyHost() {
			// With no host at all, a new VM says so.
			st := resource.VMStatus{Phase: resource.PhasePending, Reason: resource.ReasonNoHosts, Since: q.Time.UTC()}
			status = raw(mustJSON(t, &st))
		}
		if q.Kind == host && !bugOpen("create-host-allocated") {
			st := decodeAs[resource.HostStatus](t, string(status))
			st.Allocated = m.allocated(t, q.Name)
			status = raw(mustJSON(t, &st))
		}
		labels := maps.Clone(q.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		m.objs[k] = mObj{id: q.ID, labels: labels, spec: string(spec), status: string(status), create: index, modify: index, by: m.accessor}
		m.bump(q.Kind, index)
		r.events = append(r.events, fmt.Sprintf("created %s/%s", q.Kind, q.Name))
	case fsm.UpdateRequestType:
		q := req.(*fsm.UpdateRequest)
		if resource.ValidateLabels(q.Labels) != nil {
			fail(resource.ErrInvalid)
		}
		cur, ok := m.lookup(q.Kind, q.Name, q.CAS, fail)
		var spec json.RawMessage
		if known(q.Kind) {
			var err error
			if spec, err = resource.NormalizeSpec(q.Kind, q.Spec); err != nil {
				fail(resource.ErrInvalid)
			}
		}
		if ok && spec != nil && q.Kind == vm {
			m.recheckResize(t, q.Name, string(spec), decodeAs[resource.VMSpec](t, string(spec)), fail)
		}
		if r.errs != nil || !ok {
			return r
		}
		cur.labels = maps.Clone(q.Labels)
		if cur.labels == nil {
			cur.labels = map[string]string{}
		}
		cur.spec = string(spec)
		r.events = append(r.events, m.write(q.Kind, q.Name, cur, index, resource.EventUpdated))
	case fsm.StatusRequestType:
		q := req.(*fsm.StatusRequest)
		cur, ok := m.lookup(q.Kind, q.Name, q.CAS, fail)
		var status json.RawMessage
		if known(q.Kind) {
			var err error
			if status, err = resource.NormalizeStatus(q.Kind, q.Status); err != nil {
				fail(resource.ErrInvalid)
			}
		}
		if r.errs != nil || !ok {
			return r
		}
		switch q.Kind {
		case vm:
			m.touchVM(m.vmStatus(t, q.Name))
			m.touchVM(decodeAs[resource.VMStatus](t, string(status)))
		case host:
			if !bugOpen("status-host-allocated") {
				// The allocation is the FSM's own.
				st := decodeAs[resource.HostStatus](t, string(status))
				st.Allocated = m.allocated(t, q.Name)
				status = raw(mustJSON(t, &st))
			}
		}
		cur.status = string(status)
		r.events = append(r.events, m.write(q.Kind, q.Name, cur, index, resource.EventUpdated))
	case fsm.DeleteRequestType:
		q := req.(*fsm.DeleteRequest)
		_, ok := m.lookup(q.Kind, q.Name, q.CAS, fail)
		if ok && q.Kind == host && m.allocated(t, q.Name) != (resource.Resources{}) {
			fail(fsm.ErrHostBusy)
		}
		if !ok || r.errs != nil {
			return r
		}
		if q.Kind == vm {
			m.touchVM(m.vmStatus(t, q.Name))
		}
		delete(m.objs, mKey{q.Kind, q.Name})
		m.bump(q.Kind, index)
		r.events = append(r.events, fmt.Sprintf("deleted %s/%s", q.Kind, q.Name))
	case fsm.PlaceRequestType:
		return m.place(t, index, req.(*fsm.PlaceRequest))
	case fsm.ReportRequestType:
		return m.report(t, index, req.(*fsm.ReportRequest))
	case fsm.HostStateRequestType:
		return m.hostState(t, index, req.(*fsm.HostStateRequest))
	case fsm.EvacuateRequestType:
		return m.evacuate(t, index, req.(*fsm.EvacuateRequest))
	case fsm.HostFenceRequestType:
		return m.hostFence(t, index, req.(*fsm.HostFenceRequest))
	case fsm.ActionRequestType:
		return m.action(t, index, req.(*fsm.ActionRequest))
	case fsm.MigrateRequestType:
		return m.migrate(t, index, req.(*fsm.MigrateRequest))
	case fsm.MigrationEventRequestType:
		return m.migrationEvents(t, index, req.(*fsm.MigrationEventRequest))
	case fsm.ClusterInitRequestType:
		// The first valid identity wins; the same one again changes
		// nothing; another is refused. No object, no event.
		q := req.(*fsm.ClusterInitRequest)
		_, perr := uuid.Parse(q.ID)
		switch {
		case perr != nil || len(q.ID) != 36:
			fail(resource.ErrInvalid)
		case m.clusterID == "":
			m.clusterID = q.ID
		case m.clusterID != q.ID:
			fail(fsm.ErrExists)
		}
	case fsm.CreateBinRequestType:
		// A create, with its accessor, as the envelope applies one.
		q := req.(*fsm.CreateBinRequest)
		if len(q.Accessor) > 64 {
			fail(resource.ErrInvalid)
			return r
		}
		prev := m.accessor
		m.accessor = q.Accessor
		defer func() { m.accessor = prev }()
		return m.apply(t, index, fsm.CreateRequestType, q.Create)
	case fsm.AccessorRequestType:
		q := req.(*fsm.AccessorRequest)
		if q.Type == fsm.AccessorRequestType {
			fail(fsm.ErrBadPayload)
			return r
		}
		if q.Type&fsm.IgnoreUnknownTypeFlag != 0 {
			return r
		}
		if q.Type == fsm.CreatesBinRequestType {
			// Never inside another command: refused.
			if len(q.Accessor) > 64 {
				fail(resource.ErrInvalid)
			} else {
				fail(fsm.ErrBadPayload)
			}
			return r
		}
		inner, err := decodeReq(q.Type, q.Payload)
		if err != nil {
			t.Fatalf("model: envelope's %s %s does not decode: %v", q.Type, q.Payload, err)
		}
		if len(q.Accessor) > 64 {
			fail(resource.ErrInvalid)
			return r
		}
		prev := m.accessor
		m.accessor = q.Accessor
		defer func() { m.accessor = prev }()
		return m.apply(t, index, q.Type, inner)
	case fsm.ACLBootstrapRequestType, fsm.ACLPolicyUpsertRequestType, fsm.ACLPolicyDeleteRequestType,
		fsm.ACLTokenCreateRequestType, fsm.ACLTokenDeleteRequestType:
		return m.applyACL(index, mt, req)
	default:
		fail(fsm.ErrUnknownCommand)
	}
	return r
}

func validPropHash(h string) bool {
	return len(h) == 64 && strings.Trim(h, "0123456789abcdef") == ""
}

// applyACL models the ACL commands.
func (m *model) applyACL(index uint64, mt fsm.MessageType, req any) modelOp {
	var r modelOp
	fail := func(err error) { r.errs = append(r.errs, err) }
	event := func(kind resource.Kind, ev, name string) {
		m.bump(kind, index)
		r.events = append(r.events, fmt.Sprintf("%s %s/%s", ev, kind, name))
	}
	newToken := func(tok resource.ACLToken, hash string) {
		if tok.AccessorID == "" || len(tok.AccessorID) > 64 || !validPropHash(hash) || tok.Validate() != nil {
			fail(resource.ErrInvalid)
		}
		for _, p := range tok.Policies {
			if _, ok := m.policies[p]; !ok {
				fail(resource.ErrInvalid)
			}
		}
		if _, ok := m.tokens[tok.AccessorID]; ok {
			fail(fsm.ErrExists)
		}
		for _, h := range m.tokens {
			if h == hash {
				fail(fsm.ErrExists)
			}
		}
	}
	switch mt {
	case fsm.ACLBootstrapRequestType:
		q := req.(*fsm.ACLBootstrapRequest)
		if m.aclBoot {
			fail(fsm.ErrACLBootstrapped)
		}
		newToken(resource.ACLToken{AccessorID: q.AccessorID, Name: q.Name, Type: resource.TokenManagement}, q.SecretHash)
		if r.errs != nil {
			return r
		}
		m.aclBoot = true
		m.tokens[q.AccessorID] = q.SecretHash
		event(fsm.EventKindACLToken, resource.EventCreated, q.AccessorID)
	case fsm.ACLPolicyUpsertRequestType:
		q := req.(*fsm.ACLPolicyUpsertRequest)
		if q.Policy.Validate() != nil {
			fail(resource.ErrInvalid)
		}
		cur, ok := m.policies[q.Policy.Name]
		switch {
		case ok && q.Create:
			fail(fsm.ErrExists)
		case ok && q.CAS != 0 && q.CAS != cur.modify:
			fail(fsm.ErrCASMismatch)
		case !ok && q.CAS != 0:
			fail(fsm.ErrNotFound)
		}
		if r.errs != nil {
			return r
		}
		ev := resource.EventUpdated
		if !ok {
			ev, cur.create = resource.EventCreated, index
		}
		cur.modify = index
		cur.rules = fmt.Sprint(q.Policy.Rules)
		m.policies[q.Policy.Name] = cur
		event(fsm.EventKindACLPolicy, ev, q.Policy.Name)
	case fsm.ACLPolicyDeleteRequestType:
		q := req.(*fsm.ACLPolicyDeleteRequest)
		if _, ok := m.policies[q.Name]; !ok {
			fail(fsm.ErrNotFound)
			return r
		}
		delete(m.policies, q.Name)
		event(fsm.EventKindACLPolicy, resource.EventDeleted, q.Name)
	case fsm.ACLTokenCreateRequestType:
		q := req.(*fsm.ACLTokenCreateRequest)
		newToken(q.Token, q.SecretHash)
		if r.errs != nil {
			return r
		}
		m.tokens[q.Token.AccessorID] = q.SecretHash
		event(fsm.EventKindACLToken, resource.EventCreated, q.Token.AccessorID)
	case fsm.ACLTokenDeleteRequestType:
		q := req.(*fsm.ACLTokenDeleteRequest)
		if _, ok := m.tokens[q.AccessorID]; !ok {
			fail(fsm.ErrNotFound)
			return r
		}
		delete(m.tokens, q.AccessorID)
		event(fsm.EventKindACLToken, resource.EventDeleted, q.AccessorID)
	}
	return r
}

// recheckResize: a spec change of a placed VM must not take its host past
// its schedulable capacity in a dimension the change grows.
func (m *model) recheckResize(t *rapid.T, name, rawSpec string, ns resource.VMSpec, fail func(error)) {
	st := m.vmStatus(t, name)
	h := st.Host
	if h == "" {
		return
	}
	if st.Migration != nil && rawSpec != m.objs[mKey{vm, name}].spec {
		// The spec of a migrating VM does not change (labels may).
		fail(fsm.ErrWrongPhase)
		return
	}
	m.touch(h)
	if !m.has(host, h) {
		return
	}
	old := m.vmSpec(t, name)
	others := m.allocated(t, h)
	others.CPUs -= old.CPUs
	others.MemoryMiB -= old.MemoryMiB
	lim := m.limit(t, h)
	overCPU := others.CPUs+ns.CPUs > lim.CPUs
	overMem := others.MemoryMiB+ns.MemoryMiB > lim.MemoryMiB
	if bugOpen("update-on-overcommitted-host") {
		if overCPU || overMem {
			fail(fsm.ErrNoCapacity)
		}
		return
	}
	if (overCPU && ns.CPUs > old.CPUs) || (overMem && ns.MemoryMiB > old.MemoryMiB) {
		fail(fsm.ErrNoCapacity)
	}
}

func (m *model) place(t *rapid.T, index uint64, q *fsm.PlaceRequest) modelOp {
	var r modelOp
	if len(q.Placements)+len(q.Unplaced) > fsm.MaxBatchOps {
		return modelOp{errs: []error{fsm.ErrBadPayload}}
	}
	r.items = make([][]error, len(q.Placements))
	for i, p := range q.Placements {
		var errs []error
		if !m.has(vm, p.VM) {
			errs = append(errs, fsm.ErrNotFound)
		} else if m.vmStatus(t, p.VM).Phase != resource.PhasePending {
			errs = append(errs, fsm.ErrWrongPhase)
		}
		switch {
		case !m.has(host, p.Host):
			errs = append(errs, fsm.ErrNotFound)
		case m.hostStatus(t, p.Host).State != resource.HostReady || m.hostSpec(t, p.Host).Unschedulable:
			errs = append(errs, fsm.ErrHostNotReady)
		case m.has(vm, p.VM):
			need, alloc, lim := m.vmSpec(t, p.VM), m.allocated(t, p.Host), m.limit(t, p.Host)
			if alloc.CPUs+need.CPUs > lim.CPUs || alloc.MemoryMiB+need.MemoryMiB > lim.MemoryMiB {
				errs = append(errs, fsm.ErrNoCapacity)
			}
		}
		if errs != nil {
			r.items[i] = errs
			continue
		}
		st := resource.VMStatus{Phase: resource.PhaseScheduled, Host: p.Host, Epoch: index, Since: q.Time.UTC()}
		r.events = append(r.events, m.putVM(t, index, p.VM, nil, st))
	}
	for _, u := range q.Unplaced {
		if !m.has(vm, u.VM) {
			continue
		}
		st := m.vmStatus(t, u.VM)
		if st.Phase != resource.PhasePending || st.Reason == u.Reason {
			continue
		}
		st.Reason = u.Reason
		r.events = append(r.events, m.putVM(t, index, u.VM, nil, st))
	}
	return r
}

func (m *model) report(t *rapid.T, index uint64, q *fsm.ReportRequest) modelOp {
	var r modelOp
	if len(q.Reports) > fsm.MaxBatchOps {
		return modelOp{errs: []error{fsm.ErrBadPayload}}
	}
	r.items = make([][]error, len(q.Reports))
	for i, rp := range q.Reports {
		var errs []error
		if !modelReportable[rp.Phase] {
			errs = append(errs, resource.ErrInvalid)
		}
		var spec resource.VMSpec
		var st resource.VMStatus
		if !m.has(vm, rp.VM) {
			errs = append(errs, fsm.ErrNotFound)
		} else {
			spec, st = m.vmSpec(t, rp.VM), m.vmStatus(t, rp.VM)
			if st.Host != q.Host || st.Epoch != rp.Epoch || (st.Host == "" && !bugOpen("report-unplaced-vm")) {
				errs = append(errs, fsm.ErrStaleEpoch)
			} else if rp.Seq != 0 && rp.Seq <= st.ReportSeq {
				errs = append(errs, fsm.ErrStaleEpoch) // sent before the last one recorded
			}
			if rp.SetPower != "" && rp.SetPower != spec.Power && !validPower(rp.SetPower) {
				errs = append(errs, resource.ErrInvalid)
			}
		}
		if errs != nil {
			r.items[i] = errs
			continue
		}
		nst := st
		if rp.Seq != 0 {
			nst.ReportSeq = rp.Seq
		}
		if mg := st.Migration; mg != nil {
			if rp.Phase == resource.PhaseRunning || rp.Phase == resource.PhaseStarting || mg.State != resource.MigrationPreparing {
				// The guest runs on the source while it migrates; once
				// the source began, only its events end it.
				rp.Phase, rp.Reason = st.Phase, st.Reason
			} else {
				// It stopped there: the migration ends.
				nst.Migration = nil
				rp.Reason += " (the migration to " + mg.Target + " ended)"
			}
		}
		if nst.Phase != rp.Phase {
			nst.Since = q.Time.UTC()
		}
		nst.Phase, nst.Reason = rp.Phase, rp.Reason
		if rp.RebootDone > nst.RebootDone && rp.RebootDone <= nst.RebootRequested {
			nst.RebootDone = rp.RebootDone
		}
		if rp.Restarts == st.Restarts+1 {
			nst.Restarts = rp.Restarts
		}
		powerChanged := rp.SetPower != "" && rp.SetPower != spec.Power
		spec.Power = cmp.Or(rp.SetPower, spec.Power)
		changed := nst != st || powerChanged
		if bugOpen("report-set-power-noop") {
			changed = nst != st || rp.SetPower != ""
		}
		if changed {
			r.events = append(r.events, m.putVM(t, index, rp.VM, &spec, nst))
		}
	}
	return r
}

func (m *model) hostState(t *rapid.T, index uint64, q *fsm.HostStateRequest) modelOp {
	var r modelOp
	fail := func(err error) { r.errs = append(r.errs, err) }
	if resource.ValidateName(q.Name) != nil {
		fail(resource.ErrInvalid)
	}
	switch q.State {
	case resource.HostReady, resource.HostDown, resource.HostLeft, resource.HostDraining:
	default:
		fail(resource.ErrInvalid)
	}
	if q.Capacity.CPUs < 0 || q.Capacity.MemoryMiB < 0 {
		fail(resource.ErrInvalid)
	}
	if q.ForeignDomainCount < len(q.ForeignDomains) {
		fail(resource.ErrInvalid)
	}
	for i, mode := range q.MigrationModes {
		if mode != resource.MigrationLive && mode != resource.MigrationRestart || i > 0 && q.MigrationModes[i-1] >= mode {
			fail(resource.ErrInvalid)
		}
	}
	timing := q.DownGraceMS != 0 || q.FenceAfterMS != 0
	if timing && (q.DownGraceMS <= 0 || q.DownGraceMS > fsm.MaxTimingMS) || q.FenceAfterMS < 0 || q.FenceAfterMS > fsm.MaxTimingMS {
		fail(resource.ErrInvalid)
	}
	exists := m.has(host, q.Name)
	if !exists {
		if resource.ValidateLabels(q.Labels) != nil || q.ID == "" {
			fail(resource.ErrInvalid)
		}
		if q.ID != "" && m.idUsed(q.ID) {
			fail(fsm.ErrExists)
		}
	}
	if r.errs != nil {
		return r
	}
	if !exists {
		spec, err := resource.NormalizeSpec(host, raw(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		st := resource.HostStatus{
			State: q.State, Address: q.Address, Capacity: q.Capacity, Allocated: m.allocated(t, q.Name),
			Driver: q.Driver, Reason: q.Reason, Since: q.Time.UTC(),
			ForeignDomains: slices.Clone(q.ForeignDomains), ForeignDomainCount: q.ForeignDomainCount,
			MigrationModes: slices.Clone(q.MigrationModes),
		}
		if timing {
			st.StateIndex, st.FenceAfterMS, st.DownGraceMS = index, q.FenceAfterMS, q.DownGraceMS
		}
		labels := maps.Clone(q.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		m.objs[mKey{host, q.Name}] = mObj{id: q.ID, labels: labels, spec: string(spec), status: mustJSON(t, &st), create: index}
		r.events = append(r.events, m.write(host, q.Name, m.objs[mKey{host, q.Name}], index, resource.EventCreated))
		return r
	}
	st := m.hostStatus(t, q.Name)
	nst := st
	switch {
	case nst.State != q.State && timing:
		nst.Since, nst.StateIndex = q.Time.UTC(), index
	case nst.State != q.State:
		nst.Since, nst.StateIndex = q.Time.UTC(), 0 // the older format names no period
	case timing && nst.StateIndex == 0:
		nst.StateIndex = index
	}
	if timing {
		nst.FenceAfterMS, nst.DownGraceMS = q.FenceAfterMS, q.DownGraceMS
	}
	nst.State, nst.Address, nst.Capacity, nst.Driver, nst.Reason = q.State, q.Address, q.Capacity, q.Driver, q.Reason
	nst.ForeignDomains, nst.ForeignDomainCount = slices.Clip(q.ForeignDomains), q.ForeignDomainCount
	if len(nst.ForeignDomains) == 0 {
		nst.ForeignDomains = nil
	}
	nst.MigrationModes = slices.Clip(q.MigrationModes)
	if !nst.SameObservation(&st) {
		o := m.objs[mKey{host, q.Name}]
		o.status = mustJSON(t, &nst)
		r.events = append(r.events, m.write(host, q.Name, o, index, resource.EventUpdated))
	}
	return r
}

func (m *model) evacuate(t *rapid.T, index uint64, q *fsm.EvacuateRequest) modelOp {
	if !m.has(host, q.Host) {
		return modelOp{errs: []error{fsm.ErrNotFound}}
	}
	hs := m.hostStatus(t, q.Host)
	if hs.State != resource.HostDown && hs.State != resource.HostLeft {
		return modelOp{errs: []error{fsm.ErrWrongPhase}}
	}
	if q.StateIndex != 0 || q.DownForMS != 0 || q.FenceRequired {
		// Protocol 5: the leader's monotonic measure of the current
		// period against the published timing; no wall clock.
		grace := time.Duration(hs.DownGraceMS) * time.Millisecond
		downFor := time.Duration(q.DownForMS) * time.Millisecond
		switch {
		case q.StateIndex == 0 || q.StateIndex != hs.StateIndex, hs.DownGraceMS <= 0:
			return modelOp{errs: []error{fsm.ErrWrongPhase}}
		case q.DownForMS < 0 || q.Grace < 0:
			return modelOp{errs: []error{resource.ErrInvalid}}
		case downFor < grace || downFor < q.Grace, hs.FenceAfterMS >= hs.DownGraceMS:
			return modelOp{errs: []error{fsm.ErrWrongPhase}}
		case q.FenceRequired && (hs.Fence == nil || hs.Fence.State != resource.FenceSucceeded || hs.Fence.StateIndex != hs.StateIndex):
			return modelOp{errs: []error{fsm.ErrWrongPhase}}
		}
	} else if q.Time.Sub(hs.Since) < q.Grace {
		return modelOp{errs: []error{fsm.ErrWrongPhase}}
	}
	var r modelOp
	for _, n := range m.vmsOn(t, q.Host) {
		st := m.vmStatus(t, n)
		var nst resource.VMStatus
		spec := m.vmSpec(t, n)
		mg := st.Migration
		switch {
		case mg != nil && mg.Mode == resource.MigrationLive && mg.State != resource.MigrationPreparing && spec.HA == resource.HARestart &&
			len(spec.Disks) == 0 && (m.hostStatus(t, mg.Target).State == resource.HostReady || m.hostStatus(t, mg.Target).State == resource.HostDraining):
			// A live migration had begun: the VM continues on its
			// target (generated specs have no disks).
			nst = resource.VMStatus{Phase: resource.PhaseScheduled, Host: mg.Target, Epoch: index, Since: q.Time.UTC(), Restarts: st.Restarts,
				Reason: q.Reason + "; its live migration to " + mg.Target + " had begun, so it continues there"}
		case spec.HA == resource.HARestart:
			nst = resource.VMStatus{Phase: resource.PhasePending, Reason: q.Reason + "; waiting to be placed elsewhere", Since: q.Time.UTC()}
		case st.Phase == resource.PhaseLost:
			continue
		default:
			nst = st
			// A migration from the host ends with it.
			nst.Phase, nst.Reason, nst.Since, nst.Migration = resource.PhaseLost, q.Reason, q.Time.UTC(), nil
		}
		r.events = append(r.events, m.putVM(t, index, n, nil, nst))
	}
	// Migrations to the host end; their VMs stay on their sources.
	for _, n := range m.migratingTo(t, q.Host) {
		st := m.vmStatus(t, n)
		nst := st
		nst.Migration, nst.Phase, nst.Since = nil, resource.PhaseRunning, q.Time.UTC()
		nst.Reason = "the migration to " + q.Host + " ended: the target was evacuated (" + q.Reason + "); the VM stays on " + st.Host
		r.events = append(r.events, m.putVM(t, index, n, nil, nst))
	}
	return r
}

// hostFence: a valid record of a period the host has reached, not older
// than the one recorded, replaces the host's fence record.
func (m *model) hostFence(t *rapid.T, index uint64, q *fsm.HostFenceRequest) modelOp {
	f := q.Fence
	switch f.State {
	case resource.FenceRunning, resource.FenceSucceeded, resource.FenceFailed:
	default:
		return modelOp{errs: []error{resource.ErrInvalid}}
	}
	if f.Attempts < 1 || f.Attempts > fsm.MaxFenceAttempts || len(f.Output) > resource.MaxFenceOutput || len(f.Reason) > 1024 || f.StateIndex == 0 {
		return modelOp{errs: []error{resource.ErrInvalid}}
	}
	if !m.has(host, q.Host) {
		return modelOp{errs: []error{fsm.ErrNotFound}}
	}
	hs := m.hostStatus(t, q.Host)
	if f.StateIndex > hs.StateIndex || (hs.Fence != nil && f.StateIndex < hs.Fence.StateIndex) {
		return modelOp{errs: []error{fsm.ErrWrongPhase}}
	}
	f.StartedAt, f.FinishedAt = f.StartedAt.UTC(), f.FinishedAt.UTC()
	nst := hs
	nst.Fence = &f
	if nst.SameObservation(&hs) {
		return modelOp{}
	}
	o := m.objs[mKey{host, q.Host}]
	o.status = mustJSON(t, &nst)
	return modelOp{events: []string{m.write(host, q.Host, o, index, resource.EventUpdated)}}
}

func (m *model) action(t *rapid.T, index uint64, q *fsm.ActionRequest) modelOp {
	if !m.has(vm, q.VM) {
		return modelOp{errs: []error{fsm.ErrNotFound}}
	}
	spec, st := m.vmSpec(t, q.VM), m.vmStatus(t, q.VM)
	power, nst := spec.Power, st
	wrong := modelOp{errs: []error{fsm.ErrWrongPhase}}
	if st.Migration != nil {
		return wrong // whatever the action: abort the migration first
	}
	switch q.Action {
	case resource.ActionStart:
		power = resource.PowerRunning
		if st.Phase == resource.PhaseFailed || st.Phase == resource.PhaseLost {
			// Placed anew: back to pending, off its host.
			nst = resource.VMStatus{Phase: resource.PhasePending, Since: q.Time.UTC(),
				Reason: "started again after it was " + st.Phase + "; waiting for placement"}
			m.touch(st.Host)
		}
	case resource.ActionStop:
		power = resource.PowerStopped
		if q.Force && st.Host != "" && st.Phase != resource.PhaseStopped {
			nst.StopForced = true
		}
	case resource.ActionSuspend:
		if st.Phase != resource.PhaseRunning {
			return wrong
		}
		power = resource.PowerSuspended
	case resource.ActionResume:
		if st.Phase != resource.PhaseSuspended && spec.Power != resource.PowerSuspended {
			return wrong
		}
		power = resource.PowerRunning
	case resource.ActionReboot:
		if st.Phase != resource.PhaseRunning {
			return wrong
		}
		nst.RebootRequested = index
	default:
		return modelOp{errs: []error{resource.ErrInvalid}}
	}
	if q.Force && q.Action != resource.ActionStop {
		return modelOp{errs: []error{resource.ErrInvalid}}
	}
	if power != resource.PowerStopped {
		nst.StopForced = false
	}
	if power == spec.Power && nst == st {
		return modelOp{}
	}
	o := m.objs[mKey{vm, q.VM}]
	spec.Power = power
	o.spec, o.status = mustJSON(t, &spec), mustJSON(t, &nst)
	return modelOp{events: []string{m.write(vm, q.VM, o, index, resource.EventUpdated)}}
}

// migrate: a VM that runs nowhere (unplaced, stopped with power stopped,
// failed, lost, or on a host that is gone, or without phase_only down or
// left for the grace) moves to a ready, schedulable host with room, with a
// new epoch.
//
// Protocol 9: with a mode, a VM that runs on its host starts a migration
// (migrateRunning); abort cancels one.
func (m *model) migrate(t *rapid.T, index uint64, q *fsm.MigrateRequest) modelOp {
	fail := func(err error) modelOp { return modelOp{errs: []error{err}} }
	if q.Abort {
		return m.migrationAbort(t, index, q)
	}
	if q.Host == "" {
		return fail(resource.ErrInvalid)
	}
	if q.Mode != "" && q.Mode != resource.MigrationLive && q.Mode != resource.MigrationRestart {
		return fail(resource.ErrInvalid)
	}
	if !m.has(vm, q.VM) {
		return fail(fsm.ErrNotFound)
	}
	spec, st := m.vmSpec(t, q.VM), m.vmStatus(t, q.VM)
	if st.Migration != nil {
		return fail(fsm.ErrWrongPhase)
	}
	if q.Mode != "" && st.Host != "" && st.Host != q.Host && modelRunsOnHost(spec, st) {
		return m.migrateRunning(t, index, q, spec, st)
	}
	if st.Host == q.Host {
		return fail(fsm.ErrWrongPhase)
	}
	if st.Host != "" {
		gone := !m.has(host, st.Host)
		if !gone {
			hs := m.hostStatus(t, st.Host)
			// With phase_only no clock decides: only evacuation (the VM
			// becomes lost) or the host's removal frees it.
			gone = !q.PhaseOnly && (hs.State == resource.HostDown || hs.State == resource.HostLeft) && q.Time.Sub(hs.Since) >= q.Grace
		}
		stopped := st.Phase == resource.PhaseStopped && spec.Power == resource.PowerStopped
		if !gone && !stopped && st.Phase != resource.PhaseFailed && st.Phase != resource.PhaseLost {
			return fail(fsm.ErrWrongPhase)
		}
	}
	switch {
	case !m.has(host, q.Host):
		return fail(fsm.ErrNotFound)
	case m.hostStatus(t, q.Host).State != resource.HostReady || m.hostSpec(t, q.Host).Unschedulable:
		return fail(fsm.ErrHostNotReady)
	}
	alloc, lim := m.allocated(t, q.Host), m.limit(t, q.Host)
	if alloc.CPUs+spec.CPUs > lim.CPUs || alloc.MemoryMiB+spec.MemoryMiB > lim.MemoryMiB {
		return fail(fsm.ErrNoCapacity)
	}
	reason := "migrated"
	if st.Host != "" {
		reason = "migrated from " + st.Host
	}
	nst := resource.VMStatus{Phase: resource.PhaseScheduled, Host: q.Host, Epoch: index, Reason: reason, Since: q.Time.UTC()}
	return modelOp{events: []string{m.putVM(t, index, q.VM, nil, nst)}}
}

// modelRunsOnHost: the VM's guest is, or is to be, up on its host.
func modelRunsOnHost(spec resource.VMSpec, st resource.VMStatus) bool {
	switch st.Phase {
	case resource.PhaseScheduled:
		return spec.Power != resource.PowerStopped
	case resource.PhaseStarting, resource.PhaseRunning, resource.PhaseSuspended, resource.PhaseStopping:
		return true
	}
	return false
}

// Migrations in the model. What the generators draw, the model predicts
// exactly: migrate with a mode (live, restart, unknown) or abort, events
// of every kind from the source, the target or another host with right
// or wrong ids, hosts' migration modes (valid or not), and everything
// else while a migration is under way (reports, actions, spec updates,
// deletes, evacuations of either host, status writes). Not drawn, so not
// modelled: VM specs with requirements, affinity or disks (the placement
// rules and the volumes a live migration moves: migration_test.go covers
// them), and status writes that carry a migration.
//
// migrateRunning: a running VM (power running) on a ready or draining
// host that offers the mode starts a migration to a ready, schedulable
// host that offers it and has room besides what it holds (the generated
// specs have no requirements, affinity or devices). Both hosts hold it
// until the migration ends.
func (m *model) migrateRunning(t *rapid.T, index uint64, q *fsm.MigrateRequest, spec resource.VMSpec, st resource.VMStatus) modelOp {
	fail := func(err error) modelOp { return modelOp{errs: []error{err}} }
	if st.Phase != resource.PhaseRunning || spec.Power != resource.PowerRunning {
		return fail(fsm.ErrWrongPhase)
	}
	if !m.has(host, st.Host) {
		return fail(fsm.ErrNotFound)
	}
	if shs := m.hostStatus(t, st.Host); shs.State != resource.HostReady && shs.State != resource.HostDraining || !slices.Contains(shs.MigrationModes, q.Mode) {
		return fail(fsm.ErrHostNotReady)
	}
	if !m.has(host, q.Host) {
		return fail(fsm.ErrNotFound)
	}
	if hs := m.hostStatus(t, q.Host); hs.State != resource.HostReady || m.hostSpec(t, q.Host).Unschedulable || !slices.Contains(hs.MigrationModes, q.Mode) {
		return fail(fsm.ErrHostNotReady)
	}
	alloc, lim := m.allocated(t, q.Host), m.limit(t, q.Host)
	if alloc.CPUs+spec.CPUs > lim.CPUs || alloc.MemoryMiB+spec.MemoryMiB > lim.MemoryMiB {
		return fail(fsm.ErrNoCapacity)
	}
	mg := &resource.VMMigration{ID: index, Target: q.Host, Mode: q.Mode, State: resource.MigrationPreparing, Since: q.Time.UTC()}
	nst := st
	nst.Phase, nst.Since, nst.Migration = resource.PhaseMigrating, q.Time.UTC(), mg
	nst.Reason = "live-migrating to " + q.Host + ": the target prepares"
	if q.Mode == resource.MigrationRestart {
		mg.State = resource.MigrationReady
		nst.Reason = "moving to " + q.Host + ": shutting the guest down here, to start it there"
	}
	return modelOp{events: []string{m.putVM(t, index, q.VM, nil, nst)}}
}

// migrationAbort: at once while the target prepares; once ready, the
// source is asked (aborting); asked again, at once.
func (m *model) migrationAbort(t *rapid.T, index uint64, q *fsm.MigrateRequest) modelOp {
	if !m.has(vm, q.VM) {
		return modelOp{errs: []error{fsm.ErrNotFound}}
	}
	st := m.vmStatus(t, q.VM)
	mg := st.Migration
	if mg == nil {
		return modelOp{errs: []error{fsm.ErrWrongPhase}}
	}
	nst := st
	switch mg.State {
	case resource.MigrationAborting:
		nst.Migration, nst.Phase = nil, resource.PhaseRunning
		nst.Reason = "the migration to " + mg.Target + " was aborted again, so at once: the VM stays on " + st.Host +
			" (if the hypervisor had finished the move, its guest left " + st.Host + "; the target removes what arrived)"
	case resource.MigrationPreparing:
		nst.Migration, nst.Phase = nil, resource.PhaseRunning
		nst.Reason = "the migration to " + mg.Target + " was aborted before it began"
	default:
		nm := *mg
		nm.State = resource.MigrationAborting
		nst.Migration = &nm
		nst.Reason = "aborting the migration to " + mg.Target + ": the source cancels it"
	}
	nst.Since = q.Time.UTC()
	return modelOp{events: []string{m.putVM(t, index, q.VM, nil, nst)}}
}

// migrationEvents applies workers' migration events in order, each with
// its own outcome.
func (m *model) migrationEvents(t *rapid.T, index uint64, q *fsm.MigrationEventRequest) modelOp {
	if len(q.Events) > fsm.MaxBatchOps {
		return modelOp{errs: []error{fsm.ErrBadPayload}}
	}
	r := modelOp{items: make([][]error, len(q.Events))}
	for i, e := range q.Events {
		ev, err := m.migrationEvent(t, index, q.Time, q.Host, e)
		if err != nil {
			r.items[i] = []error{err}
			continue
		}
		if ev != "" {
			r.events = append(r.events, ev)
		}
	}
	return r
}

func validMigrationEvent(e resource.MigrationEvent) bool {
	switch e.Event {
	case resource.MigrationPrepared, resource.MigrationDone, resource.MigrationFailed:
	default:
		return false
	}
	return e.ID != 0 && len(e.URI) <= fsm.MaxMigrationURIBytes && !strings.ContainsFunc(e.URI, unicode.IsControl) &&
		utf8.ValidString(e.URI) && (e.Event != resource.MigrationPrepared || e.URI != "") &&
		len(e.Reason) <= fsm.MaxMigrationReasonBytes && utf8.ValidString(e.Reason) && e.DowntimeMS >= 0 && e.DowntimeMS <= fsm.MaxTimingMS
}

// migrationEvent: an event of the migration under way from its source or
// target; "" with a nil error: nothing to write.
func (m *model) migrationEvent(t *rapid.T, index uint64, now time.Time, from string, e resource.MigrationEvent) (string, error) {
	if !validMigrationEvent(e) {
		return "", resource.ErrInvalid
	}
	if !m.has(vm, e.VM) {
		return "", fsm.ErrNotFound
	}
	st := m.vmStatus(t, e.VM)
	mg := st.Migration
	if mg == nil || mg.ID != e.ID || from != st.Host && from != mg.Target {
		return "", fsm.ErrStaleEpoch
	}
	source, target := st.Host, mg.Target
	nst := st
	nst.Since = now.UTC()
	switch e.Event {
	case resource.MigrationPrepared:
		if from != target || mg.Mode != resource.MigrationLive {
			return "", fsm.ErrWrongPhase
		}
		if mg.State != resource.MigrationPreparing {
			return "", nil
		}
		nm := *mg
		nm.State, nm.URI = resource.MigrationReady, e.URI
		nst.Migration = &nm
		nst.Reason = "live-migrating to " + target + ": the target is ready; the source copies the guest"
	case resource.MigrationDone:
		if mg.State == resource.MigrationPreparing || from == target && mg.Mode != resource.MigrationLive {
			return "", fsm.ErrWrongPhase
		}
		// The epoch passes to the target (the generated specs have no
		// disks: no volume moves).
		nst = resource.VMStatus{Phase: resource.PhaseRunning, Host: target, Epoch: index, Since: now.UTC(),
			RebootRequested: st.RebootRequested, RebootDone: st.RebootDone, Restarts: st.Restarts}
		if mg.Mode == resource.MigrationLive {
			nst.Reason = "live-migrated from " + source
			if e.DowntimeMS > 0 {
				nst.Reason += fmt.Sprintf(" (paused %d ms)", e.DowntimeMS)
			}
		} else {
			nst.Phase = resource.PhaseScheduled
			nst.Reason = "moved from " + source + " (shut down there; starts here)"
		}
	case resource.MigrationFailed:
		nst.Migration, nst.Phase = nil, resource.PhaseRunning
		why := cmp.Or(e.Reason, "no reason given")
		nst.Reason = fmt.Sprintf("the migration to %s failed (%s says: %s); the VM stays on %s", target, from, why, source)
		if mg.State == resource.MigrationAborting {
			nst.Reason = fmt.Sprintf("the migration to %s was aborted (%s); the VM stays on %s", target, why, source)
		}
	}
	return m.putVM(t, index, e.VM, nil, nst), nil
}

// recompute writes the allocation of every touched host that changed, in
// name order, as the FSM does when an entry ends.
func (m *model) recompute(t *rapid.T, index uint64) []string {
	var evs []string
	for _, h := range slices.Sorted(maps.Keys(m.touched)) {
		if !m.has(host, h) {
			continue
		}
		st := m.hostStatus(t, h)
		if a := m.allocated(t, h); a != st.Allocated {
			st.Allocated = a
			o := m.objs[mKey{host, h}]
			o.status = mustJSON(t, &st)
			evs = append(evs, m.write(host, h, o, index, resource.EventUpdated))
		}
	}
	m.touched = nil
	return evs
}

func (m *model) lookup(kind resource.Kind, name string, cas uint64, fail func(error)) (mObj, bool) {
	if !known(kind) {
		fail(resource.ErrInvalid)
		return mObj{}, false
	}
	cur, ok := m.objs[mKey{kind, name}]
	if !ok {
		fail(fsm.ErrNotFound)
		return mObj{}, false
	}
	if cas != 0 && cas != cur.modify {
		fail(fsm.ErrCASMismatch)
	}
	return cur, true
}

// applyEntry applies a whole log entry to the model and returns the
// expected outcome; the model changes only if the entry succeeds. An entry
// the FSM cannot understand halts the model: nothing applies after it.
func (m *model) applyEntry(t *rapid.T, index uint64, e propEntry) modelOp {
	if m.halted {
		return modelOp{notApplied: true}
	}
	if cause := notUnderstood(e); cause != nil {
		m.halted = true
		return modelOp{halt: cause}
	}
	r := m.applyUnderstood(t, index, e)
	m.applied = index
	return r
}

// notUnderstood returns why this build cannot understand e (the FSM must
// halt on it), or nil: an empty entry or a payload that does not decode
// strictly (ErrBadPayload), an unknown type without the ignorable flag
// (ErrUnknownCommand), the same for any operation of a batch that is not
// oversized. It looks at the entry's bytes only.
func notUnderstood(e propEntry) error {
	switch {
	case e.logType != raft.LogCommand:
		return nil
	case e.req == nil:
		if len(e.data) == 0 {
			return fsm.ErrBadPayload
		}
		mt := fsm.MessageType(e.data[0])
		req, err := decodeReq(mt, e.data[1:])
		switch {
		case errors.Is(err, fsm.ErrUnknownCommand) && mt&fsm.IgnoreUnknownTypeFlag != 0:
			return nil // skipped
		case errors.Is(err, fsm.ErrUnknownCommand):
			return fsm.ErrUnknownCommand
		case err != nil:
			return fsm.ErrBadPayload
		}
		if b, ok := req.(*fsm.BatchRequest); ok {
			return batchNotUnderstood(b)
		}
		if a, ok := req.(*fsm.AccessorRequest); ok {
			return envelopeNotUnderstood(a)
		}
	case e.typ == fsm.BatchRequestType:
		return batchNotUnderstood(e.req.(*fsm.BatchRequest))
	case e.typ == fsm.AccessorRequestType:
		return envelopeNotUnderstood(e.req.(*fsm.AccessorRequest))
	}
	return nil
}

func envelopeNotUnderstood(a *fsm.AccessorRequest) error {
	if a.Type == fsm.AccessorRequestType || a.Type == fsm.CreatesBinRequestType {
		return nil // nested: understood, and refused
	}
	req, err := decodeReq(a.Type, a.Payload)
	switch {
	case errors.Is(err, fsm.ErrUnknownCommand) && a.Type&fsm.IgnoreUnknownTypeFlag != 0:
	case errors.Is(err, fsm.ErrUnknownCommand):
		return fsm.ErrUnknownCommand
	case err != nil:
		return fsm.ErrBadPayload
	}
	if b, ok := req.(*fsm.BatchRequest); ok {
		return batchNotUnderstood(b)
	}
	return nil
}

func batchNotUnderstood(b *fsm.BatchRequest) error {
	if len(b.Ops) > fsm.MaxBatchOps {
		return nil // refused before its operations are looked at
	}
	for _, op := range b.Ops {
		if op.Type == fsm.BatchRequestType || op.Type == fsm.CreatesBinRequestType {
			continue // nested: understood, and refused
		}
		req, err := decodeReq(op.Type, op.Payload)
		switch {
		case errors.Is(err, fsm.ErrUnknownCommand) && op.Type&fsm.IgnoreUnknownTypeFlag != 0:
		case errors.Is(err, fsm.ErrUnknownCommand):
			return fsm.ErrUnknownCommand
		case err != nil:
			return fsm.ErrBadPayload
		}
		if a, ok := req.(*fsm.AccessorRequest); ok {
			if err := envelopeNotUnderstood(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyUnderstood applies an entry the FSM understands.
func (m *model) applyUnderstood(t *rapid.T, index uint64, e propEntry) modelOp {
	m.touched = nil
	var r modelOp
	switch {
	case e.logType != raft.LogCommand:
		return modelOp{}
	case e.req == nil:
		mt := fsm.MessageType(e.data[0])
		if mt&fsm.IgnoreUnknownTypeFlag != 0 {
			return modelOp{} // unknown and ignorable: skipped
		}
		req, err := decodeReq(mt, e.data[1:])
		if err != nil {
			t.Fatalf("model: entry %q does not decode: %v", e.data, err)
		}
		return m.applyUnderstood(t, index, propEntry{typ: mt, req: req})
	case e.typ == fsm.CreatesBinRequestType:
		// Each create as an entry of its own at this index.
		creates := e.req.(*createsReq)
		r.subs = make([][]error, len(creates.subs))
		for i, c := range creates.subs {
			sub := m.applyUnderstood(t, index, propEntry{typ: fsm.CreateBinRequestType, req: c})
			r.subs[i] = sub.errs
			r.events = append(r.events, sub.events...)
		}
		return r
	case e.typ != fsm.BatchRequestType:
		next := m.clone()
		if r = next.apply(t, index, e.typ, e.req); r.errs != nil {
			return r
		}
		*m = *next
	default:
		r = m.applyBatch(t, index, e.req.(*fsm.BatchRequest))
		if r.errs != nil {
			return r
		}
	}
	r.events = append(r.events, m.recompute(t, index)...)
	return r
}

// applyBatch applies a batch the FSM understands: its shape is checked
// first (empty, oversized, nested), then its operations run in order.
func (m *model) applyBatch(t *rapid.T, index uint64, b *fsm.BatchRequest) modelOp {
	if len(b.Ops) == 0 || len(b.Ops) > fsm.MaxBatchOps || slices.ContainsFunc(b.Ops, func(op fsm.BatchOp) bool { return op.Type == fsm.BatchRequestType }) {
		return modelOp{errs: []error{fsm.ErrBadPayload}}
	}
	next := m.clone()
	var evs []string
	for _, op := range b.Ops {
		if op.Type&fsm.IgnoreUnknownTypeFlag != 0 {
			continue // unknown and ignorable: skipped
		}
		if op.Type == fsm.CreatesBinRequestType {
			return modelOp{errs: []error{fsm.ErrBadPayload}} // never inside another command
		}
		req, err := decodeReq(op.Type, op.Payload)
		if err != nil {
			t.Fatalf("model: batch op %s %s does not decode: %v", op.Type, op.Payload, err)
		}
		r := next.apply(t, index, op.Type, req)
		if r.errs != nil {
			return r
		}
		evs = append(evs, r.events...)
	}
	*m = *next
	// Item outcomes of the place and report ops inside a batch are not
	// checked: see the report on Result.ItemErrors in batches.
	return modelOp{events: evs}
}

// createsReq is a creates-bin entry, decoded: its creates.
type createsReq struct{ subs []*fsm.CreateBinRequest }

// decodeCreatesReq decodes a creates-bin payload as the format says
// (fsm/creates.go), independently of the FSM's decoder: a uvarint count
// of 1 to MaxBatchOps, each create a uvarint length and a create-bin
// payload, nothing after.
func decodeCreatesReq(payload []byte) (*createsReq, error) {
	n, k := binary.Uvarint(payload)
	if k <= 0 || n == 0 || n > fsm.MaxBatchOps {
		return nil, fsm.ErrBadPayload
	}
	payload = payload[k:]
	out := &createsReq{}
	for range n {
		l, k := binary.Uvarint(payload)
		if k <= 0 || l > uint64(len(payload)-k) {
			return nil, fsm.ErrBadPayload
		}
		acc, c, err := fsm.DecodeCreateBin(payload[k : k+int(l)])
		if err != nil {
			return nil, err
		}
		out.subs = append(out.subs, &fsm.CreateBinRequest{Accessor: acc, Create: c})
		payload = payload[k+int(l):]
	}
	if len(payload) != 0 {
		return nil, fsm.ErrBadPayload
	}
	return out, nil
}

// decodeReq decodes a payload as the FSM does: strictly, one JSON value.
func decodeReq(mt fsm.MessageType, payload []byte) (any, error) {
	var req any
	switch mt {
	case fsm.CreateRequestType:
		req = new(fsm.CreateRequest)
	case fsm.UpdateRequestType:
		req = new(fsm.UpdateRequest)
	case fsm.StatusRequestType:
		req = new(fsm.StatusRequest)
	case fsm.DeleteRequestType:
		req = new(fsm.DeleteRequest)
	case fsm.BatchRequestType:
		req = new(fsm.BatchRequest)
	case fsm.PlaceRequestType:
		req = new(fsm.PlaceRequest)
	case fsm.ReportRequestType:
		req = new(fsm.ReportRequest)
	case fsm.HostStateRequestType:
		req = new(fsm.HostStateRequest)
	case fsm.EvacuateRequestType:
		req = new(fsm.EvacuateRequest)
	case fsm.ActionRequestType:
		req = new(fsm.ActionRequest)
	case fsm.MigrateRequestType:
		req = new(fsm.MigrateRequest)
	case fsm.ClusterInitRequestType:
		req = new(fsm.ClusterInitRequest)
	case fsm.HostFenceRequestType:
		req = new(fsm.HostFenceRequest)
	case fsm.ACLBootstrapRequestType:
		req = new(fsm.ACLBootstrapRequest)
	case fsm.ACLPolicyUpsertRequestType:
		req = new(fsm.ACLPolicyUpsertRequest)
	case fsm.ACLPolicyDeleteRequestType:
		req = new(fsm.ACLPolicyDeleteRequest)
	case fsm.ACLTokenCreateRequestType:
		req = new(fsm.ACLTokenCreateRequest)
	case fsm.ACLTokenDeleteRequestType:
		req = new(fsm.ACLTokenDeleteRequest)
	case fsm.AccessorRequestType:
		req = new(fsm.AccessorRequest)
	case fsm.MigrationEventRequestType:
		req = new(fsm.MigrationEventRequest)
	case fsm.CreateBinRequestType:
		acc, c, err := fsm.DecodeCreateBin(payload)
		if err != nil {
			return nil, err
		}
		return &fsm.CreateBinRequest{Accessor: acc, Create: c}, nil
	case fsm.CreatesBinRequestType:
		return decodeCreatesReq(payload)
	default:
		return nil, fsm.ErrUnknownCommand
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return req, nil
}

// check asserts that the FSM answers every read as the model does.
func (m *model) check(t *rapid.T, f *fsm.FSM) {
	s := f.State()
	if s.LatestIndex() != m.latest {
		t.Fatalf("LatestIndex = %d, model %d", s.LatestIndex(), m.latest)
	}
	if f.AppliedIndex() != m.applied {
		t.Fatalf("AppliedIndex = %d, model %d", f.AppliedIndex(), m.applied)
	}
	if (f.Halted() != nil) != m.halted {
		t.Fatalf("Halted() = %v, model halted %t", f.Halted(), m.halted)
	}
	if id := s.ClusterID(nil); id != m.clusterID {
		t.Fatalf("ClusterID = %q, model %q", id, m.clusterID)
	}
	if s.ACLBootstrapped(nil) != m.aclBoot {
		t.Fatalf("ACLBootstrapped = %t, model %t", s.ACLBootstrapped(nil), m.aclBoot)
	}
	var gotPol []string
	for _, p := range s.ACLPolicies(nil) {
		mp := m.policies[p.Name]
		if p.CreateIndex != mp.create || p.ModifyIndex != mp.modify || fmt.Sprint(p.Rules) != mp.rules {
			t.Fatalf("ACL policy %s: %+v, model %+v", p.Name, p, mp)
		}
		gotPol = append(gotPol, p.Name)
	}
	if want := slices.Sorted(maps.Keys(m.policies)); !slices.Equal(gotPol, want) {
		t.Fatalf("ACL policies %v, model %v", gotPol, want)
	}
	var gotTok []string
	for _, e := range s.ACLTokens(nil) {
		if m.tokens[e.AccessorID] != e.SecretHash {
			t.Fatalf("ACL token %s: hash %s, model %s", e.AccessorID, e.SecretHash, m.tokens[e.AccessorID])
		}
		gotTok = append(gotTok, e.AccessorID)
	}
	if want := slices.Sorted(maps.Keys(m.tokens)); !slices.Equal(gotTok, want) {
		t.Fatalf("ACL tokens %v, model %v", gotTok, want)
	}
	for _, k := range []resource.Kind{vm, host} {
		if s.Index(k) != m.kindIx[k] {
			t.Fatalf("Index(%s) = %d, model %d", k, s.Index(k), m.kindIx[k])
		}
		var want []string
		for key := range m.objs {
			if key.kind == k {
				want = append(want, key.name)
			}
		}
		slices.Sort(want)
		got, err := s.List(nil, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(names(got), want) {
			t.Fatalf("List(%s) = %v, model %v", k, names(got), want)
		}
		if s.Count(k) != len(want) {
			t.Fatalf("Count(%s) = %d, model %d", k, s.Count(k), len(want))
		}
		for _, o := range got {
			mo := m.objs[mKey{k, o.Name}]
			exp := &resource.Object{Kind: k, Name: o.Name, ID: mo.id, Labels: mo.labels, CreateIndex: mo.create,
				ModifyIndex: mo.modify, ModifiedBy: mo.by, Spec: raw(mo.spec), Status: raw(mo.status)}
			if !o.Equal(exp) {
				t.Fatalf("%s/%s:\n  fsm   %+v\n  model %+v", k, o.Name, o, exp)
			}
			if g, _ := s.Get(nil, k, o.Name); g != o {
				t.Fatalf("Get(%s/%s) and List disagree", k, o.Name)
			}
		}
		for _, n := range propNames {
			g, err := s.Get(nil, k, n)
			if _, ok := m.objs[mKey{k, n}]; err != nil || ok != (g != nil) {
				t.Fatalf("Get(%s/%s) = %v, %v; model has it: %v", k, n, g, err, ok)
			}
		}
		for _, sel := range modelSelectors {
			ps, err := resource.ParseSelector(sel.sel)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := s.List(nil, k, ps)
			var want []string
			for _, o := range all(t, s, k) {
				if sel.match(m.objs[mKey{k, o.Name}].labels) {
					want = append(want, o.Name)
				}
			}
			if !slices.Equal(names(got), want) {
				t.Fatalf("List(%s, %q) = %v, model %v", k, sel.sel, names(got), want)
			}
		}
	}
	for _, h := range propAllHosts {
		got, err := s.VMsOnHost(nil, h)
		if want := m.vmsOn(t, h); err != nil || !slices.Equal(names(got), want) {
			t.Fatalf("VMsOnHost(%s) = %v, %v; model %v", h, names(got), err, want)
		}
	}
	for _, ph := range propAllPhases {
		got, err := s.VMsInPhase(nil, ph)
		var want []string
		for key := range m.objs {
			if key.kind == vm && m.vmStatus(t, key.name).Phase == ph {
				want = append(want, key.name)
			}
		}
		slices.Sort(want)
		if err != nil || !slices.Equal(names(got), want) {
			t.Fatalf("VMsInPhase(%s) = %v, %v; model %v", ph, names(got), err, want)
		}
	}
	fsm.TestCheckAllocations(t, f)
}

func all(t *rapid.T, s *fsm.Store, k resource.Kind) []*resource.Object {
	l, err := s.List(nil, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// modelSelectors pairs selectors with an independent implementation.
var modelSelectors = []struct {
	sel   string
	match func(map[string]string) bool
}{
	{"app=web", func(l map[string]string) bool { v, ok := l["app"]; return ok && v == "web" }},
	{"app!=web", func(l map[string]string) bool { v, ok := l["app"]; return !ok || v != "web" }},
	{"tier", func(l map[string]string) bool { _, ok := l["tier"]; return ok }},
	{"!tier", func(l map[string]string) bool { _, ok := l["tier"]; return !ok }},
	{"app=db,zone=", func(l map[string]string) bool { z, ok := l["zone"]; return l["app"] == "db" && ok && z == "" }},
}

// modelStats counts what the model test exercised, to keep the generator
// honest (see TestPropertyModel with -v).
type modelStats struct {
	entries, failed, placed, reported, evacuated, hostStates, actions int
	halted, notApplied                                                int
	// migrations started, and migration events accepted
	migrations, migrationEvents int
}

// TestPropertyModel runs random commands against the FSM and a map model
// side by side, checking every result and the whole state after each step.
// Some steps replace the FSM by its own snapshot/restore round trip.
func TestPropertyModel(t *testing.T) {
	var stats modelStats
	rapid.Check(t, func(t *rapid.T) {
		f := fsm.New(fsm.Config{})
		m := newModel()
		var index uint64
		g := propGen{
			cas: func(t *rapid.T, kind resource.Kind, name string, next uint64) uint64 {
				switch rapid.IntRange(0, 4).Draw(t, "cas mode") {
				case 0, 1:
					return 0
				case 2:
					if o, ok := m.objs[mKey{kind, name}]; ok {
						return o.modify // the current one: succeeds
					}
					return next // created earlier in the same batch
				case 3:
					return next
				}
				return rapid.Uint64Range(1, next).Draw(t, "cas")
			},
			placed: func(name string) (string, uint64, bool) {
				if !m.has(vm, name) {
					return "", 0, false
				}
				st := m.vmStatus(t, name)
				return st.Host, st.Epoch, st.Host != ""
			},
			reportSeq: func(name string) uint64 {
				if !m.has(vm, name) {
					return 0
				}
				return m.vmStatus(t, name).ReportSeq
			},
			allocated: func(name string) (resource.Resources, bool) {
				if !m.has(host, name) {
					return resource.Resources{}, false
				}
				return m.allocated(t, name), true
			},
			migration: func(name string) (string, *resource.VMMigration) {
				if !m.has(vm, name) {
					return "", nil
				}
				st := m.vmStatus(t, name)
				return st.Host, st.Migration
			},
			vmHosts: propVMHosts,
			// About one run in four halts, at a random step.
			fatalOdds: 40,
		}
		step := func(t *rapid.T, e propEntry) {
			index++
			stats.entries++
			before := f.State().Digest()
			want := m.applyEntry(t, index, e)
			res := applyProp(t, f, e, index)
			evs := eventsAt(t, f, index)
			if want.halt != nil || want.notApplied {
				var he *fsm.HaltError
				isHalt := errors.As(res.Err, &he) && he.Index == index
				switch {
				case !errors.Is(res.Err, fsm.ErrHalted):
					t.Fatalf("entry %d %s: FSM result %v, model expects a halted FSM (halt %v)", index, e, res.Err, want.halt)
				case want.halt != nil && (!isHalt || !errors.Is(res.Err, want.halt) || f.Halted() != res.Err):
					t.Fatalf("entry %d %s: FSM error %v (Halted %v), model expects it to halt here with %v", index, e, res.Err, f.Halted(), want.halt)
				case want.notApplied && isHalt:
					t.Fatalf("entry %d %s: FSM halted again on it: %v", index, e, res.Err)
				}
				if f.State().Digest() != before || len(evs) != 0 || len(res.Objects) != 0 {
					t.Fatalf("entry %d: the halting or a later entry changed the state or added events", index)
				}
				if want.halt != nil {
					stats.halted++
				} else {
					stats.notApplied++
				}
				return
			}
			switch {
			case errors.Is(res.Err, fsm.ErrHalted):
				t.Fatalf("entry %d %s: FSM halted (%v), model expects it understood", index, e, res.Err)
			case want.errs == nil && res.Err != nil:
				t.Fatalf("entry %d %s: FSM error %v, model expects success", index, e, res.Err)
			case want.errs != nil && res.Err == nil:
				t.Fatalf("entry %d %s: FSM succeeded, model expects one of %v", index, e, want.errs)
			case want.errs != nil:
				stats.failed++
				if !slices.ContainsFunc(want.errs, func(w error) bool { return errors.Is(res.Err, w) }) {
					t.Fatalf("entry %d %s: FSM error %v, model expects one of %v", index, e, res.Err, want.errs)
				}
				if f.State().Digest() != before || len(evs) != 0 {
					t.Fatalf("entry %d: failed entry changed the state or added events", index)
				}
			}
			var got []string
			for _, ev := range evs {
				got = append(got, fmt.Sprintf("%s %s/%s", ev.Type, ev.Kind, ev.Name))
			}
			if !slices.Equal(got, want.events) {
				t.Fatalf("entry %d %s: events %v, model %v", index, e, got, want.events)
			}
			objEvents := 0
			for _, ev := range evs {
				if ev.Kind != fsm.EventKindACLPolicy && ev.Kind != fsm.EventKindACLToken {
					objEvents++ // ACL changes return no object
				}
			}
			objs := len(res.Objects)
			for _, sub := range res.Subs {
				objs += len(sub.Objects)
			}
			if objs != objEvents {
				t.Fatalf("entry %d: Result has %d objects, want one per write (%d)", index, objs, objEvents)
			}
			if len(res.Subs) != len(want.subs) {
				t.Fatalf("entry %d %s: %d results of creates, model expects %d", index, e, len(res.Subs), len(want.subs))
			}
			for i, w := range want.subs {
				got := res.Subs[i].Err
				if (w == nil) != (got == nil) || (w != nil && !slices.ContainsFunc(w, func(w error) bool { return errors.Is(got, w) })) {
					t.Fatalf("entry %d %s: create %d: FSM %v, model expects one of %v", index, e, i, got, w)
				}
				if res.Subs[i].Index != index {
					t.Fatalf("entry %d: create %d answered at index %d", index, i, res.Subs[i].Index)
				}
			}
			if want.items != nil {
				if len(res.ItemErrors) != len(want.items) {
					t.Fatalf("entry %d %s: ItemErrors %v, model expects %d items", index, e, res.ItemErrors, len(want.items))
				}
				for i, w := range want.items {
					got := res.ItemErrors[i]
					if (w == nil) != (got == nil) || (w != nil && !slices.ContainsFunc(w, func(w error) bool { return errors.Is(got, w) })) {
						t.Fatalf("entry %d %s: item %d: FSM %v, model expects one of %v", index, e, i, got, w)
					}
					if got == nil && e.typ == fsm.PlaceRequestType {
						stats.placed++
					}
					if got == nil && e.typ == fsm.ReportRequestType {
						stats.reported++
					}
					if got == nil && e.typ == fsm.MigrationEventRequestType {
						stats.migrationEvents++
					}
				}
			}
			for _, o := range res.Objects {
				if st, err := resource.DecodeStatus[resource.VMStatus](o); o.Kind == vm && err == nil && st.Migration != nil && st.Migration.ID == index {
					stats.migrations++
				}
			}
			switch {
			case res.Err != nil:
			case e.typ == fsm.EvacuateRequestType && len(evs) > 0:
				stats.evacuated++
			case e.typ == fsm.HostStateRequestType:
				stats.hostStates++
			case e.typ == fsm.ActionRequestType && len(evs) > 0:
				stats.actions++
			}
		}
		life := lifeGen{vms: []string{"a", "b", "c", "d", "e"}, hosts: propNames[:3], store: func() *fsm.Store { return f.State() }, capacityInBatch: true}
		lifeStep := func(t *rapid.T) {
			mt, req := life.op(t, index+1, false)
			step(t, propEntry{typ: mt, req: req})
		}
		// Start with some hosts and VMs.
		for _, h := range life.hosts {
			if rapid.IntRange(0, 2).Draw(t, "join?") != 0 {
				step(t, propEntry{typ: fsm.HostStateRequestType, req: life.join(t, h)})
			}
		}
		for _, v := range life.vms {
			if rapid.IntRange(0, 2).Draw(t, "create?") != 0 {
				step(t, propEntry{typ: fsm.CreateRequestType, req: &fsm.CreateRequest{
					Time: drawTime(t), Kind: vm, Name: v, ID: "first-" + v, Spec: raw(drawVMSpec(t)),
				}})
			}
		}
		// Now and then a migration under way from the start: hosts a and
		// b offer both modes and have room, vm/mig runs on a and starts
		// moving to b (the random steps then drive or end it).
		if rapid.IntRange(0, 2).Draw(t, "a migration under way?") == 0 {
			for _, h := range []string{"a", "b"} {
				req := life.join(t, h)
				req.Capacity, req.MigrationModes = resource.Resources{CPUs: 16, MemoryMiB: 16384}, []string{resource.MigrationLive, resource.MigrationRestart}
				step(t, propEntry{typ: fsm.HostStateRequestType, req: req})
			}
			step(t, propEntry{typ: fsm.CreateRequestType, req: &fsm.CreateRequest{
				Time: drawTime(t), Kind: vm, Name: "mig", ID: "first-mig", Spec: raw(`{"cpus":1,"memory_mib":256,"power":"running"}`),
			}})
			step(t, propEntry{typ: fsm.PlaceRequestType, req: &fsm.PlaceRequest{Time: drawTime(t), Placements: []fsm.Placement{{VM: "mig", Host: "a"}}}})
			step(t, propEntry{typ: fsm.ReportRequestType, req: &fsm.ReportRequest{Time: drawTime(t), Host: "a", Reports: []fsm.VMReport{
				{VM: "mig", Epoch: index, Phase: resource.PhaseRunning},
			}}})
			mode := rapid.SampledFrom([]string{resource.MigrationLive, resource.MigrationRestart}).Draw(t, "scenario mode")
			step(t, propEntry{typ: fsm.MigrateRequestType, req: &fsm.MigrateRequest{Time: drawTime(t), VM: "mig", Host: "b", Mode: mode}})
			if mode == resource.MigrationLive {
				step(t, propEntry{typ: fsm.MigrationEventRequestType, req: &fsm.MigrationEventRequest{Time: drawTime(t), Host: "b", Events: []resource.MigrationEvent{
					{VM: "mig", ID: index, Event: resource.MigrationPrepared, URI: "qemu+tls://b/system"},
				}}})
			}
		}
		// A loop rather than t.Repeat: runs are longer than Repeat's
		// default, so VMs get through whole life cycles.
		actions := map[string]func(*rapid.T){
			"life cycle": lifeStep,
			"op": func(t *rapid.T) {
				mt, req := g.op(t, index+1)
				step(t, propEntry{typ: mt, req: req})
			},
			"batch": func(t *rapid.T) {
				step(t, propEntry{typ: fsm.BatchRequestType, req: g.batch(t, index+1, false)})
			},
			"any entry": func(t *rapid.T) {
				step(t, g.entry(t, index+1))
			},
			"snapshot and restore": func(t *rapid.T) {
				if m.halted {
					// A halted FSM neither takes nor restores a
					// snapshot; it stays as it is.
					if _, err := f.Snapshot(); !errors.Is(err, fsm.ErrHalted) {
						t.Fatalf("Snapshot of a halted FSM: %v", err)
					}
					return
				}
				f = fsm.TestSnapshotRestore(t, f)
			},
		}
		actions["migration"] = func(t *rapid.T) {
			mt, req := life.migrationOp(t, index+1)
			step(t, propEntry{typ: mt, req: req})
		}
		weighted := []string{"life cycle", "migration", "life cycle", "life cycle", "life cycle", "life cycle", "op", "batch", "any entry", "snapshot and restore"}
		m.check(t, f)
		for range rapid.IntRange(20, 100).Draw(t, "steps") {
			actions[rapid.SampledFrom(weighted).Draw(t, "action")](t)
			m.check(t, f)
		}
	})
	t.Logf("model test: %+v", stats)
	if stats.halted == 0 || stats.failed == 0 {
		t.Errorf("the model test never halted the FSM or never had an entry refused: %+v", stats)
	}
	if stats.migrations == 0 || stats.migrationEvents == 0 {
		t.Errorf("the model test never started a migration or never had a migration event accepted: %+v", stats)
	}
}
