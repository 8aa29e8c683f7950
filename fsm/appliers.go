package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

func (w *writer) op(t MessageType, payload []byte) error {
	switch t {
	case CreateRequestType:
		var req CreateRequest
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return w.create(&req)
	case UpdateRequestType:
		var req UpdateRequest
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return w.update(&req)
	case StatusRequestType:
		var req StatusRequest
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return w.status(&req)
	case DeleteRequestType:
		var req DeleteRequest
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return w.delete(&req)
	case PlaceRequestType:
		var req PlaceRequest
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return w.place(&req)
	case ReportRequestType:
		var req ReportRequest
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return w.report(&req)
	case HostStateRequestType:
		var req HostStateRequest
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return w.hostState(&req)
	case EvacuateRequestType:
		var req EvacuateRequest
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return w.evacuate(&req)
	case ActionRequestType:
		var req ActionRequest
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return w.action(&req)
	case MigrateRequestType:
		var req MigrateRequest
		if err := decodePayload(payload, &req); err != nil {
			return err
		}
		return w.migrate(&req)
	}
	return fmt.Errorf("%w %d", ErrUnknownCommand, uint8(t))
}

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
