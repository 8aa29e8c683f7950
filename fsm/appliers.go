package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// applier applies one command, given its JSON payload, in w.
type applier func(w *writer, payload []byte) error

// appliers is the registry of commands: the applier of every message type
// this build knows, except BatchRequestType, the envelope of the others
// (applyCommand and writer.batch handle it). A type that is not here is
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

	ClusterInitRequestType: decoded((*writer).clusterInit),
}

// decoded makes the applier of a command whose payload is a T: it
// decodes the payload strictly (decodePayload) into a new T and passes it
// to fn.
func decoded[T any](fn func(*writer, *T) error) applier {
	return func(w *writer, payload []byte) error {
		var req T
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return fn(w, &req)
	}
}

// op applies one command that is not a batch.
func (w *writer) op(t MessageType, payload []byte) error {
	apply, ok := appliers[t]
	if !ok {
		return fmt.Errorf("%w %d", ErrUnknownCommand, uint8(t))
	}
	return apply(w, payload)
}

// batch applies a BatchRequest's operations in order, in w: the first
// that fails fails the batch (the caller then drops w's writes).
func (w *writer) batch(payload []byte) error {
	var req BatchRequest
	if err := decodePayload(payload, &req); err != nil {
		return err
	}
	if len(req.Ops) == 0 {
		return fmt.Errorf("%w: batch has no operations", ErrBadPayload)
	}
	if len(req.Ops) > MaxBatchOps {
		return fmt.Errorf("%w: batch has %d operations; the limit is %d", ErrBadPayload, len(req.Ops), MaxBatchOps)
	}
	for i, op := range req.Ops {
		if op.Type == BatchRequestType {
			return fmt.Errorf("%w: batch operation %d: batches do not nest", ErrBadPayload, i)
		}
		err := w.op(op.Type, op.Payload)
		if errors.Is(err, ErrUnknownCommand) && op.Type&IgnoreUnknownTypeFlag != 0 {
			// Skip only this op, as a single ignorable entry is
			// skipped, so old and new nodes agree on the rest.
			continue
		}
		if err != nil {
			return fmt.Errorf("batch operation %d (%s): %w", i, op.Type, err)
		}
	}
	return nil
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
