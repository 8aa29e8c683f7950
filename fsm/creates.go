package fsm

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Creates coalesced into one entry (log protocol 12,
// CreatesBinRequestType). Under load the leader gathers the creates that
// wait for a proposal into one entry (cluster/controller/coalesce.go):
// Raft then stores, sends, decodes and hands to the state machine one
// entry where it had one per create, on all three servers. Each create in
// it is applied exactly as if it were an entry of its own at the entry's
// index: one that fails (a name taken, a quota) changes nothing and does
// not affect the others, and each has its own Result (Result.Subs). An
// entry that cannot be decoded, or a create in it that is malformed,
// halts the state machine with none of them applied, as a malformed entry
// does.
//
// The payload, after the type byte: a uvarint count (1 to MaxBatchOps),
// then each create as a uvarint length and a CreateBinRequestType entry's
// payload (createbin.go; without its type byte). Nothing may follow.

// CreatesBinRequest is what a CreatesBinRequestType entry carries: the
// creates, each with its accessor. Encode takes it for that type.
type CreatesBinRequest struct {
	Creates []*CreateBinRequest
}

// EncodeCreates returns the creates-bin entry of entries, each a
// CreateBinRequestType entry (with its type byte, as EncodeFor makes it).
func EncodeCreates(entries [][]byte) ([]byte, error) {
	if len(entries) == 0 || len(entries) > MaxBatchOps {
		return nil, fmt.Errorf("fsm: %d creates in one entry; 1 to %d may be", len(entries), MaxBatchOps)
	}
	n := 1 + binary.MaxVarintLen64
	for _, e := range entries {
		if len(e) == 0 || MessageType(e[0]) != CreateBinRequestType {
			return nil, fmt.Errorf("fsm: a creates-bin entry holds %s entries only", CreateBinRequestType)
		}
		n += binary.MaxVarintLen64 + len(e) - 1
	}
	b := make([]byte, 0, n)
	b = append(b, byte(CreatesBinRequestType))
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = binary.AppendUvarint(b, uint64(len(e)-1))
		b = append(b, e[1:]...)
	}
	return b, nil
}

// splitCreates returns the create-bin payloads of a creates-bin payload
// (after its type byte). An error wraps ErrBadPayload.
func splitCreates(payload []byte) ([][]byte, error) {
	d := &binDecoder{b: payload}
	n := d.uvarint()
	switch {
	case d.err != nil:
		return nil, d.err
	case n == 0 || n > MaxBatchOps:
		return nil, fmt.Errorf("%w: %d creates in one entry; 1 to %d may be", ErrBadPayload, n, MaxBatchOps)
	case n > uint64(len(d.b)):
		return nil, fmt.Errorf("%w: %d creates in %d bytes", ErrBadPayload, n, len(d.b)) // a create takes a byte at least
	}
	subs := make([][]byte, 0, n)
	for range n {
		if sub := d.bytes(); d.err == nil {
			subs = append(subs, sub)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the creates", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return subs, nil
}

// decodeCreates decodes every create of a creates-bin payload: their
// payloads and runs, in order.
func decodeCreates(payload []byte) ([][]byte, []func(*writer) error, error) {
	subs, err := splitCreates(payload)
	if err != nil {
		return nil, nil, err
	}
	runs := make([]func(*writer) error, len(subs))
	for i, sub := range subs {
		if runs[i], err = decodeCreateBin(sub); err != nil {
			return nil, nil, fmt.Errorf("create %d of %d: %w", i, len(subs), err)
		}
	}
	return subs, runs, nil
}

// decodeCreatesNested is the applier of CreatesBinRequestType where an
// entry's command is decoded on its own (in a batch, with an accessor):
// the state machine applies a creates-bin entry itself (group.applyCreates);
// nested in another command it is refused, as a nested batch is.
func decodeCreatesNested([]byte) (func(*writer) error, error) {
	return func(*writer) error {
		return fmt.Errorf("%w: a %s command is an entry of its own, never inside another command", ErrBadPayload, CreatesBinRequestType)
	}, nil
}

// applyCreates applies a creates-bin entry in the group: each create as
// apply applies an entry of its own.
func (g *group) applyCreates(l *raft.Log, payload []byte, start time.Time) *Result {
	f := g.f
	subs, runs, err := decodeCreates(payload)
	if err != nil {
		return g.halt(l.Index, CreatesBinRequestType, err, start)
	}
	out := &Result{Index: l.Index, Subs: make([]*Result, len(runs))}
	// Each create's metrics, reported once none of them halted the
	// entry (a halt reports only itself, as for any entry).
	type applied struct {
		took time.Duration
		err  error
	}
	var metrics []applied
	if f.OnApply != nil {
		metrics = make([]applied, 0, len(runs))
	}
	// This entry's creates start here in g.done and g.events.
	first, firstEv := len(g.done), len(g.events)
	for i, run := range runs {
		substart := time.Now()
		g.begin()
		res, evs, dirty, panicked := f.applyCommand(&g.w, g.txn, l.Index, CreateBinRequestType, run, g.objectCount)
		if panicked != nil {
			// None of the entry's creates stays: drop the ones
			// applied, as a halt leaves the entry unapplied.
			g.done = g.done[:first]
			evs := g.events[:firstEv]
			g.events, g.delta, g.bumped = nil, nil, nil
			g.applied(evs)
			g.rollback()
			return g.halt(l.Index, CreatesBinRequestType, panicked, start)
		}
		switch {
		case res.Err == nil:
			g.done = append(g.done, doneEntry{l: l, create: subs[i]})
			g.applied(evs)
		case dirty:
			g.rollback()
		}
		if metrics != nil {
			metrics = append(metrics, applied{time.Since(substart), res.Err})
		}
		out.Subs[i] = res
	}
	g.last = max(g.last, l.Index)
	for _, m := range metrics {
		f.OnApply(CreateRequestType, m.took, m.err)
	}
	return out
}
