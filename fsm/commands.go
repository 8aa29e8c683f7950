package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// MessageType is the first byte of every Raft log entry Kumoi writes. The
// values are an append-only enum: never renumber or reuse one.
type MessageType uint8

// Message types. A type with IgnoreUnknownTypeFlag set may be skipped by an
// older node that does not know it; any other unknown type is an error.
const (
	CreateRequestType MessageType = 1
	UpdateRequestType MessageType = 2
	DeleteRequestType MessageType = 3
	BatchRequestType  MessageType = 4
	StatusRequestType MessageType = 5

	// Commands of the placement life cycle (workers issue).
	PlaceRequestType     MessageType = 6
	ReportRequestType    MessageType = 7
	HostStateRequestType MessageType = 8
	EvacuateRequestType  MessageType = 9
	ActionRequestType    MessageType = 10
	MigrateRequestType   MessageType = 11

	// The cluster's own identity (the first leader proposes it).
	ClusterInitRequestType MessageType = 12

	// The result of the controllers' --fence-command on a host.
	HostFenceRequestType MessageType = 13

	// ACLs (acl.go; log protocol 6).
	ACLBootstrapRequestType    MessageType = 14
	ACLPolicyUpsertRequestType MessageType = 15
	ACLPolicyDeleteRequestType MessageType = 16
	ACLTokenCreateRequestType  MessageType = 17
	ACLTokenDeleteRequestType  MessageType = 18
	// AccessorRequestType carries another command with the accessor ID
	// of the token that made it.
	AccessorRequestType MessageType = 19

	// Workers' migration events (migration.go; log protocol 9).
	MigrationEventRequestType MessageType = 20

	// A create (with its accessor) in a binary encoding (createbin.go;
	// log protocol 10).
	CreateBinRequestType MessageType = 21

	// Creates coalesced into one entry by the leader, each applied as if
	// it were an entry of its own (creates.go; log protocol 12).
	CreatesBinRequestType MessageType = 22

	// IgnoreUnknownTypeFlag marks commands that older nodes may skip.
	IgnoreUnknownTypeFlag MessageType = 128
)

func (t MessageType) String() string {
	switch t {
	case CreateRequestType:
		return "create"
	case UpdateRequestType:
		return "update"
	case DeleteRequestType:
		return "delete"
	case BatchRequestType:
		return "batch"
	case StatusRequestType:
		return "status"
	case PlaceRequestType:
		return "place"
	case ReportRequestType:
		return "report"
	case HostStateRequestType:
		return "host-state"
	case EvacuateRequestType:
		return "evacuate"
	case ActionRequestType:
		return "action"
	case MigrateRequestType:
		return "migrate"
	case ClusterInitRequestType:
		return "cluster-init"
	case HostFenceRequestType:
		return "host-fence"
	case ACLBootstrapRequestType:
		return "acl-bootstrap"
	case ACLPolicyUpsertRequestType:
		return "acl-policy-upsert"
	case ACLPolicyDeleteRequestType:
		return "acl-policy-delete"
	case ACLTokenCreateRequestType:
		return "acl-token-create"
	case ACLTokenDeleteRequestType:
		return "acl-token-delete"
	case AccessorRequestType:
		return "with-accessor"
	case MigrationEventRequestType:
		return "migration-event"
	case CreateBinRequestType:
		return "create-bin"
	case CreatesBinRequestType:
		return "creates-bin"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// MessageTypes lists every known message type, in order (metrics and
// tests iterate it).
var MessageTypes = []MessageType{
	CreateRequestType, UpdateRequestType, DeleteRequestType, BatchRequestType, StatusRequestType,
	PlaceRequestType, ReportRequestType, HostStateRequestType, EvacuateRequestType, ActionRequestType, MigrateRequestType,
	ClusterInitRequestType, HostFenceRequestType,
	ACLBootstrapRequestType, ACLPolicyUpsertRequestType, ACLPolicyDeleteRequestType,
	ACLTokenCreateRequestType, ACLTokenDeleteRequestType, AccessorRequestType,
	MigrationEventRequestType, CreateBinRequestType, CreatesBinRequestType,
}

// BatchRequest applies its operations atomically: all or none.
type BatchRequest struct {
	Time time.Time `json:"time"`
	Ops  []BatchOp `json:"ops"`
}

// BatchOp is one operation of a batch; Payload is the JSON of the request
// type named by Type. Batches do not nest.
type BatchOp struct {
	Type    MessageType     `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// MaxBatchOps bounds the operations of one batch.
const MaxBatchOps = 4096

// Encode returns the log entry for a request: [type byte][JSON payload].
func Encode(t MessageType, req any) ([]byte, error) {
	if b, ok := req.(*CreateBinRequest); ok && t == CreateBinRequestType {
		return EncodeCreateBin(b.Accessor, b.Create), nil
	}
	if b, ok := req.(*CreatesBinRequest); ok && t == CreatesBinRequestType {
		entries := make([][]byte, len(b.Creates))
		for i, c := range b.Creates {
			entries[i] = EncodeCreateBin(c.Accessor, c.Create)
		}
		return EncodeCreates(entries)
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %s: %w", t, err)
	}
	buf := make([]byte, 0, len(payload)+1)
	buf = append(buf, byte(t))
	return append(buf, payload...), nil
}

// NewBatchOp wraps a request as a batch operation.
func NewBatchOp(t MessageType, req any) (BatchOp, error) {
	if t == CreateBinRequestType || t == CreatesBinRequestType {
		// A batch is JSON, and so are its operations' payloads.
		return BatchOp{}, fmt.Errorf("fsm: a %s command cannot be a batch operation; batch a create", t)
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return BatchOp{}, fmt.Errorf("fsm: encode %s: %w", t, err)
	}
	return BatchOp{Type: t, Payload: payload}, nil
}

// Errors returned in Result.Err. Validation errors wrap resource.ErrInvalid.
var (
	ErrNotFound       = errors.New("not found")
	ErrExists         = errors.New("already exists")
	ErrCASMismatch    = errors.New("modify_index mismatch")
	ErrUnknownCommand = errors.New("unknown command type")
	ErrBadPayload     = errors.New("malformed command payload")
)

// Errors of the placement commands (in Result.Err or Result.ItemErrors).
var (
	ErrNoCapacity   = errors.New("not enough free capacity")
	ErrHostNotReady = errors.New("host does not take placements")
	ErrStaleEpoch   = errors.New("stale placement epoch")
	ErrWrongPhase   = errors.New("operation not allowed in this phase")
	ErrHostBusy     = errors.New("host still has VMs assigned")
	// ErrInUse: a network, image or volume that VMs (or volumes) use
	// cannot be deleted or changed that way; the message names them.
	ErrInUse = errors.New("in use")
)

// Result is what Apply returns for one log entry (the raft ApplyFuture's
// Response). Objects are the objects written (for deletes: as they were),
// in operation order.
type Result struct {
	Index   uint64
	Objects []*resource.Object
	Err     error
	// ItemErrors holds per-item outcomes of commands whose items succeed
	// or fail independently (place, report): nil entries succeeded.
	ItemErrors []error
	// ResourceErrors holds the outcomes of a report's resource reports
	// (ReportRequest.Resources), in order: nil entries were recorded.
	ResourceErrors []error
	// Subs holds the results of a creates-bin entry's creates, in order
	// (each as the create's own entry would have had; Err set and Subs
	// nil: the entry halted the state machine, none was applied).
	Subs []*Result
}
