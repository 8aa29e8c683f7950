package fsm

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kumoi/kumoi/resource"
)

// ProtocolVersion is the highest log protocol this build speaks: the set
// of message types (and payload fields) it can apply. A leader proposes a
// command only when every server of the Raft configuration speaks the
// protocol the command needs (cluster/controller), so that no replica
// meets an entry it cannot apply (and halts) during a rolling upgrade.
//
//	1  create, update, delete, batch, status, place, report, host-state,
//	   evacuate, action (the first release)
//	2  migrate
//	3  cluster-init; host-state's foreign_domains and foreign_domain_count
//	4  report's restarts (status.restarts)
//	5  host-fence; host-state's fence_after_ms and down_grace_ms (and with
//	   them status.state_index); evacuate's state_index, down_for_ms and
//	   fence_required (evacuation on the leader's monotonic clock);
//	   migrate's phase_only (no clock decides a move off a down host)
//	6  ACLs: acl-bootstrap, acl-policy-upsert, acl-policy-delete,
//	   acl-token-create, acl-token-delete, and with-accessor (any
//	   command with the accessor ID of the token that made it);
//	   host-state's image_dir (the worker's --image-dir)
//	7  networks, images and volumes: creates and updates of those kinds,
//	   VM specs with nics or disks, and report's resources
//	8  projects (quotas) and placement: creates and updates of kind
//	   project, VM and volume specs with project, requirements, rank,
//	   strategy or affinity; a place with a placement's reason
//	9  migrations of running VMs: migrate's mode and abort,
//	   migration-event, host-state's migration_modes (status.migration)
//	10 create-bin: a create and its accessor in a binary encoding
//	   (createbin.go; no JSON to decode on every replica)
//	11 report's seq (status.report_seq): a worker's reports are ordered,
//	   and one delivered late is refused
//	12 creates-bin: creates coalesced by the leader into one entry, each
//	   applied as if it were an entry of its own (creates.go)
const ProtocolVersion = 12

// MinProtocol is the protocol a node must speak to apply message type t.
// Unknown types (ignorable or not) are 1: whether a node skips or halts
// on them is the type's own business.
func MinProtocol(t MessageType) int {
	switch t {
	case MigrateRequestType:
		return 2
	case ClusterInitRequestType:
		return 3
	case HostFenceRequestType:
		return 5
	case ACLBootstrapRequestType, ACLPolicyUpsertRequestType, ACLPolicyDeleteRequestType,
		ACLTokenCreateRequestType, ACLTokenDeleteRequestType, AccessorRequestType:
		return 6
	case MigrationEventRequestType:
		return 9
	case CreateBinRequestType:
		return 10
	case CreatesBinRequestType:
		return 12
	}
	return 1
}

// RequiredProtocol is the protocol every server must speak before a
// command may be proposed: its type's, the highest of a batch's
// operations', and the protocol of the optional payload fields it uses.
func RequiredProtocol(t MessageType, req any) int {
	need := MinProtocol(t)
	switch r := req.(type) {
	case *AccessorRequest:
		if r.inner != nil {
			need = max(need, RequiredProtocol(r.Type, r.inner))
		} else {
			need = max(need, payloadProtocol(r.Type, r.Payload))
		}
	case *BatchRequest:
		for _, op := range r.Ops {
			need = max(need, MinProtocol(op.Type))
			if op.Type == HostStateRequestType && hostStateUsesForeign(op.Payload) {
				need = max(need, 3)
			}
			if op.Type == ReportRequestType {
				need = max(need, reportProtocol(op.Payload))
			}
			if payloadUses5(op.Type, op.Payload) {
				need = max(need, 5)
			}
			if op.Type == HostStateRequestType && hostStateUsesImageDir(op.Payload) {
				need = max(need, 6)
			}
			if payloadUsesRelativeBoot(op.Type, op.Payload) {
				need = max(need, 6)
			}
			need = max(need, payloadUses7(op.Type, op.Payload))
			if payloadUses9(op.Type, op.Payload) {
				need = max(need, 9)
			}
		}
	case *PlaceRequest:
		// A placement's reason (a soft affinity rule broken) is
		// protocol 8: older builds refuse the field.
		for _, p := range r.Placements {
			if p.Reason != "" {
				need = max(need, 8)
				break
			}
		}
	case *HostStateRequest:
		if len(r.ForeignDomains) > 0 || r.ForeignDomainCount > 0 {
			need = max(need, 3)
		}
		if r.UsesTiming() {
			need = max(need, 5)
		}
		if r.ImageDir != "" {
			need = max(need, 6)
		}
		if len(r.MigrationModes) > 0 {
			need = max(need, 9)
		}
	case *CreateRequest:
		if specUsesRelativeBoot(r.Kind, r.Spec) {
			need = max(need, 6)
		}
		if specUses7(r.Kind, r.Spec) {
			need = max(need, 7)
		}
		need = max(need, specProtocol(r.Kind, r.Spec))
	case *UpdateRequest:
		if specUsesRelativeBoot(r.Kind, r.Spec) {
			need = max(need, 6)
		}
		if specUses7(r.Kind, r.Spec) {
			need = max(need, 7)
		}
		need = max(need, specProtocol(r.Kind, r.Spec))
	case *MigrateRequest:
		if r.UsesPhaseOnly() {
			need = max(need, 5)
		}
		if r.UsesMigration() {
			need = max(need, 9)
		}
	case *EvacuateRequest:
		if r.UsesStateIndex() {
			need = max(need, 5)
		}
	case *ReportRequest:
		if r.UsesRestarts() {
			need = max(need, 4)
		}
		if len(r.Resources) > 0 {
			need = max(need, 7)
		}
		if r.UsesSeq() {
			need = max(need, 11)
		}
	}
	return need
}

// payloadProtocol is RequiredProtocol of an encoded command.
func payloadProtocol(t MessageType, payload []byte) int {
	var req any
	switch t {
	case BatchRequestType:
		req = &BatchRequest{}
	case HostStateRequestType:
		req = &HostStateRequest{}
	case MigrateRequestType:
		req = &MigrateRequest{}
	case CreateRequestType:
		req = &CreateRequest{}
	case UpdateRequestType:
		req = &UpdateRequest{}
	case EvacuateRequestType:
		req = &EvacuateRequest{}
	case ReportRequestType:
		req = &ReportRequest{}
	case AccessorRequestType:
		req = &AccessorRequest{}
	default:
		return MinProtocol(t)
	}
	if decodePayload(payload, req) != nil {
		return MinProtocol(t)
	}
	return RequiredProtocol(t, req)
}

// hostStateUsesForeign reports whether an encoded host-state payload
// carries the protocol 3 fields.
func hostStateUsesForeign(payload []byte) bool {
	var q HostStateRequest
	if decodePayload(payload, &q) != nil {
		return false
	}
	return len(q.ForeignDomains) > 0 || q.ForeignDomainCount > 0
}

// hostStateUsesImageDir reports whether an encoded host-state payload
// carries the protocol 6 field.
func hostStateUsesImageDir(payload []byte) bool {
	var q HostStateRequest
	return decodePayload(payload, &q) == nil && q.ImageDir != ""
}

// payloadUses5 reports whether an encoded host-state or evacuate payload
// carries the protocol 5 fields.
func payloadUses5(t MessageType, payload []byte) bool {
	switch t {
	case HostStateRequestType:
		var q HostStateRequest
		return decodePayload(payload, &q) == nil && q.UsesTiming()
	case EvacuateRequestType:
		var q EvacuateRequest
		return decodePayload(payload, &q) == nil && q.UsesStateIndex()
	case MigrateRequestType:
		var q MigrateRequest
		return decodePayload(payload, &q) == nil && q.UsesPhaseOnly()
	}
	return false
}

// payloadUses9 reports whether an encoded host-state or migrate payload
// carries the protocol 9 fields.
func payloadUses9(t MessageType, payload []byte) bool {
	switch t {
	case HostStateRequestType:
		var q HostStateRequest
		return decodePayload(payload, &q) == nil && len(q.MigrationModes) > 0
	case MigrateRequestType:
		var q MigrateRequest
		return decodePayload(payload, &q) == nil && q.UsesMigration()
	}
	return false
}

// UsesRestarts reports whether a report request carries the protocol 4
// field (a VM report's restarts).
func (r *ReportRequest) UsesRestarts() bool {
	for _, v := range r.Reports {
		if v.Restarts > 0 {
			return true
		}
	}
	return false
}

// WithoutRestarts is a copy of the request without the protocol 4 field,
// for a cluster that does not speak it yet: the reports are recorded, the
// restart counter is not.
func (r *ReportRequest) WithoutRestarts() *ReportRequest {
	n := *r
	n.Reports = make([]VMReport, len(r.Reports))
	for i, v := range r.Reports {
		v.Restarts = 0
		n.Reports[i] = v
	}
	return &n
}

// UsesSeq reports whether a report request carries the protocol 11
// field (a VM or resource report's seq).
func (r *ReportRequest) UsesSeq() bool {
	for _, v := range r.Reports {
		if v.Seq > 0 {
			return true
		}
	}
	for _, v := range r.Resources {
		if v.Seq > 0 {
			return true
		}
	}
	return false
}

// WithoutSeq is a copy of the request without the protocol 11 field, for
// a cluster that does not speak it yet: the reports are recorded, not
// ordered (one delivered late is recorded too, as before).
func (r *ReportRequest) WithoutSeq() *ReportRequest {
	n := *r
	n.Reports = make([]VMReport, len(r.Reports))
	for i, v := range r.Reports {
		v.Seq = 0
		n.Reports[i] = v
	}
	if r.Resources != nil {
		n.Resources = make([]resource.ResourceReport, len(r.Resources))
		for i, v := range r.Resources {
			v.Seq = 0
			n.Resources[i] = v
		}
	}
	return &n
}

// WithoutResources is a copy of the request without the protocol 7
// resource reports, for a cluster that does not speak it yet: the VM
// reports are recorded, the networks, images and volumes are not.
func (r *ReportRequest) WithoutResources() *ReportRequest {
	n := *r
	n.Resources = nil
	return &n
}

// reportProtocol is the protocol an encoded report payload (a batch
// op's) needs for the optional fields it carries.
func reportProtocol(payload []byte) int {
	var q ReportRequest
	if decodePayload(payload, &q) != nil {
		return 1
	}
	return RequiredProtocol(ReportRequestType, &q)
}

// checkProtocol: a node limited to protocol max does not know message
// types of a later one (as a build of that protocol would not).
func checkProtocol(t MessageType, max int) error {
	if MinProtocol(t) > max {
		return fmt.Errorf("%w %d (%s needs log protocol %d; this node speaks %d)", ErrUnknownCommand, uint8(t), t, MinProtocol(t), max)
	}
	return nil
}

// specUsesRelativeBoot reports whether a VM spec boots a path relative to
// the host's image directory (protocol 6: older builds refuse a boot path
// that is not absolute).
func specUsesRelativeBoot(kind resource.Kind, spec json.RawMessage) bool {
	if kind != resource.KindVM || len(spec) == 0 {
		return false
	}
	var s struct {
		Boot *resource.Boot `json:"boot"`
	}
	if json.Unmarshal(spec, &s) != nil || s.Boot == nil {
		return false
	}
	for _, p := range []string{s.Boot.Image, s.Boot.Kernel, s.Boot.Initrd} {
		if p != "" && !strings.HasPrefix(p, "/") {
			return true
		}
	}
	return false
}

// payloadUsesRelativeBoot is specUsesRelativeBoot of an encoded create or
// update.
func payloadUsesRelativeBoot(t MessageType, payload []byte) bool {
	switch t {
	case CreateRequestType:
		var r CreateRequest
		return decodePayload(payload, &r) == nil && specUsesRelativeBoot(r.Kind, r.Spec)
	case UpdateRequestType:
		var r UpdateRequest
		return decodePayload(payload, &r) == nil && specUsesRelativeBoot(r.Kind, r.Spec)
	}
	return false
}

// storageKinds are the kinds of protocol 7: older builds do not know them.
var storageKinds = map[resource.Kind]bool{resource.KindNetwork: true, resource.KindImage: true, resource.KindVolume: true}

// specUses7 reports whether a create or update needs protocol 7: a kind of
// it, or a VM spec with nics or disks (older builds refuse the fields).
func specUses7(kind resource.Kind, spec json.RawMessage) bool {
	if storageKinds[kind] {
		return true
	}
	if kind != resource.KindVM || len(spec) == 0 {
		return false
	}
	var s struct {
		NICs  []json.RawMessage `json:"nics"`
		Disks []json.RawMessage `json:"disks"`
	}
	return json.Unmarshal(spec, &s) == nil && (s.NICs != nil || s.Disks != nil)
}

// specUses8 reports whether a create or update needs protocol 8: a
// project, or a VM or volume spec with the placement fields (project,
// requirements, rank, strategy, affinity), which older builds refuse.
func specUses8(kind resource.Kind, spec json.RawMessage) bool {
	if kind == resource.KindProject {
		return true
	}
	if (kind != resource.KindVM && kind != resource.KindVolume) || len(spec) == 0 {
		return false
	}
	var s struct {
		Project      json.RawMessage `json:"project"`
		Requirements json.RawMessage `json:"requirements"`
		Rank         json.RawMessage `json:"rank"`
		Strategy     json.RawMessage `json:"strategy"`
		Affinity     json.RawMessage `json:"affinity"`
	}
	return json.Unmarshal(spec, &s) == nil && (s.Project != nil || s.Requirements != nil || s.Rank != nil || s.Strategy != nil || s.Affinity != nil)
}

// specUses9 reports whether a create or update needs protocol 9: a host
// spec with drain (older builds refuse the field).
func specUses9(kind resource.Kind, spec json.RawMessage) bool {
	if kind != resource.KindHost || len(spec) == 0 {
		return false
	}
	var s struct {
		Drain json.RawMessage `json:"drain"`
	}
	return json.Unmarshal(spec, &s) == nil && s.Drain != nil
}

// specProtocol is the protocol of a create's or update's spec fields (0,
// 7 or 8).
func specProtocol(kind resource.Kind, spec json.RawMessage) int {
	switch {
	case specUses9(kind, spec):
		return 9
	case specUses8(kind, spec):
		return 8
	case specUses7(kind, spec):
		return 7
	}
	return 0
}

// payloadUses7 is the protocol 7 (and 8) part of an encoded batch operation's
// RequiredProtocol (7 or 0).
func payloadUses7(t MessageType, payload []byte) int {
	switch t {
	case CreateRequestType:
		var r CreateRequest
		if decodePayload(payload, &r) == nil {
			return specProtocol(r.Kind, r.Spec)
		}
	case UpdateRequestType:
		var r UpdateRequest
		if decodePayload(payload, &r) == nil {
			return specProtocol(r.Kind, r.Spec)
		}
	case ReportRequestType:
		var r ReportRequest
		if decodePayload(payload, &r) == nil && len(r.Resources) > 0 {
			return 7
		}
	}
	return 0
}
