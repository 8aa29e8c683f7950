package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// applier decodes one command's JSON payload (strictly: decodePayload)
// and returns the function that applies it in a writer. A decoding error
// means this build cannot understand the entry (the FSM halts); the
// returned function's errors are business errors.
type applier func(payload []byte) (func(w *writer) error, error)

// appliers is the registry of commands: the applier of every message type
// this build knows, except BatchRequestType, the envelope of the others
// (decode and decodeBatch handle it). A type that is not here is
// unknown (ErrUnknownCommand). To add a command, give it a new
// MessageType (append-only), list it in MessageTypes and name it in
// MessageType.String, and register its applier here.
var appliers = map[MessageType]applier{
	CreateRequestType:    decoded((*writer).create),
	UpdateRequestType:    decoded((*writer).update),
	StatusRequestType:    decoded((*writer).status),
	DeleteRequestType:    decoded((*writer).delete),
	PlaceRequestType:     decoded((*writer).place),
	ReportRequestType:    decoded((*writer).report),
	HostStateRequestType: decoded((*writer).hostState),
	EvacuateRequestType:  decoded((*writer).evacuate),
	ActionRequestType:    decoded((*writer).action),
	MigrateRequestType:   decoded((*writer).migrate),

	MigrationEventRequestType: decoded((*writer).migrationEvents),
	CreateBinRequestType:      decodeCreateBin,
	CreatesBinRequestType:     decodeCreatesNested,

	ClusterInitRequestType: decoded((*writer).clusterInit),
	HostFenceRequestType:   decoded((*writer).hostFence),

	ACLBootstrapRequestType:    decoded((*writer).aclBootstrap),
	ACLPolicyUpsertRequestType: decoded((*writer).aclPolicyUpsert),
	ACLPolicyDeleteRequestType: decoded((*writer).aclPolicyDelete),
	ACLTokenCreateRequestType:  decoded((*writer).aclTokenCreate),
	ACLTokenDeleteRequestType:  decoded((*writer).aclTokenDelete),
}

// decoded makes the applier of a command whose payload is a T: it
// decodes the payload strictly (decodePayload) into a new T, and the
// function it returns passes it to fn.
func decoded[T any](fn func(*writer, *T) error) applier {
	return func(payload []byte) (func(*writer) error, error) {
		var req T
		if err := decodePayload(payload, &req); err != nil {
			return nil, err
		}
		return func(w *writer) error { return fn(w, &req) }, nil
	}
}

// decode decodes a log entry's command, a batch's included, and returns
// the function that applies it; a type of a protocol after maxProto is
// unknown. Its error means the entry is not
// understood: an unknown type (ErrUnknownCommand; the caller skips it
// when the type has IgnoreUnknownTypeFlag) or a payload that does not
// decode (ErrBadPayload). It depends on the entry's bytes only.
func decode(t MessageType, payload []byte, maxProto int) (func(*writer) error, error) {
	if t == BatchRequestType {
		return decodeBatch(payload, maxProto)
	}
	if err := checkProtocol(t, maxProto); err != nil {
		return nil, err
	}
	if t == AccessorRequestType {
		return decodeAccessor(payload, maxProto)
	}
	dec, ok := appliers[t]
	if !ok {
		return nil, fmt.Errorf("%w %d", ErrUnknownCommand, uint8(t))
	}
	return dec(payload)
}

// batchOp is a decoded operation of a batch.
type batchOp struct {
	i   int
	t   MessageType
	run func(*writer) error
}

// decodeBatch decodes a BatchRequest and every one of its operations
// (those of an unknown type with IgnoreUnknownTypeFlag are skipped, as a
// single ignorable entry is, so old and new nodes agree on the rest). The
// function it returns applies the operations in order, in w: the first
// that fails fails the batch (the caller then drops w's writes). An
// empty, oversized or nested batch is understood, and refused when
// applied.
func decodeBatch(payload []byte, maxProto int) (func(*writer) error, error) {
	var req BatchRequest
	if err := decodePayload(payload, &req); err != nil {
		return nil, err
	}
	if len(req.Ops) > MaxBatchOps {
		n := len(req.Ops)
		return func(*writer) error {
			return fmt.Errorf("%w: batch has %d operations; the limit is %d", ErrBadPayload, n, MaxBatchOps)
		}, nil
	}
	ops := make([]batchOp, 0, len(req.Ops))
	nested := -1
	for i, op := range req.Ops {
		if op.Type == BatchRequestType {
			if nested < 0 {
				nested = i
			}
			continue
		}
		run, err := decode(op.Type, op.Payload, maxProto)
		if errors.Is(err, ErrUnknownCommand) && op.Type&IgnoreUnknownTypeFlag != 0 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("batch operation %d (%s): %w", i, op.Type, err)
		}
		ops = append(ops, batchOp{i: i, t: op.Type, run: run})
	}
	empty := len(req.Ops) == 0
	return func(w *writer) error {
		switch {
		case empty:
			return fmt.Errorf("%w: batch has no operations", ErrBadPayload)
		case nested >= 0:
			return fmt.Errorf("%w: batch operation %d: batches do not nest", ErrBadPayload, nested)
		}
		for _, op := range ops {
			if err := op.run(w); err != nil {
				return fmt.Errorf("batch operation %d (%s): %w", op.i, op.t, err)
			}
		}
		return nil
	}, nil
}

// decodePayload decodes a command's JSON payload into v, strictly: no
// unknown field, nothing after the value.
func decodePayload(payload []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after payload", ErrBadPayload)
	}
	return nil
}
