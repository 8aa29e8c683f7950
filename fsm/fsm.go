package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/resource"
)

// FSM implements raft.FSM and raft.BatchingFSM over a Store.
type FSM struct {
	store  *Store
	events *EventBuffer
	logger hclog.Logger

	applied atomic.Uint64 // index of the last log applied (or restored)

	// OnApply, if set, observes each applied command's type and duration
	// (for metrics). It must not block.
	OnApply func(t MessageType, d time.Duration, err error)
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// Config configures a new FSM.
type Config struct {
	Logger hclog.Logger
	// EventBufferSize is how many events are retained for /v1/events
	// resumption (default 16384).
	EventBufferSize int
}

// New returns an FSM with an empty store.
func New(cfg Config) *FSM {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.EventBufferSize <= 0 {
		cfg.EventBufferSize = 16384
	}
	return &FSM{
		store:  NewStore(),
		events: NewEventBuffer(cfg.EventBufferSize),
		logger: cfg.Logger.Named("fsm"),
	}
}

// State returns the state store.
func (f *FSM) State() *Store { return f.store }

// Events returns the event buffer.
func (f *FSM) Events() *EventBuffer { return f.events }

// AppliedIndex returns the index of the last log entry applied.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Apply applies one Raft log entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies several entries, in order, with the semantics of
// applying each on its own: an entry that fails changes nothing and does
// not affect its neighbours. For speed they share one write transaction,
// committed once at the end (so readers see the whole batch at once): an
// entry that fails before writing is simply dropped; one that fails (or
// panics) after writing aborts the shared transaction, which is rebuilt by
// replaying the entries that succeeded before it (deterministic, so they
// succeed again with the same effects).
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	g := group{f: f}
	for i, l := range logs {
		out[i] = g.apply(l)
	}
	g.commit()
	return out
}

// group is the shared write transaction of one ApplyBatch.
type group struct {
	f      *FSM
	txn    *memdb.Txn
	done   []*raft.Log // entries applied in txn, for a replay
	events []resource.Event
	last   uint64
	// bumped is the index of the last change to each kind in txn: the
	// index table is written once per kind at commit, not per write.
	bumped map[resource.Kind]uint64
}

func (g *group) begin() {
	if g.txn == nil {
		db, _ := g.f.store.current()
		g.txn = db.Txn(true)
	}
}

func (g *group) apply(l *raft.Log) *Result {
	g.last = max(g.last, l.Index)
	if l.Type != raft.LogCommand {
		// Configuration entries (if raft hands them to us) change no state.
		return &Result{Index: l.Index}
	}
	start := time.Now()
	var t MessageType
	if len(l.Data) > 0 {
		t = MessageType(l.Data[0])
	}
	g.begin()
	res, evs, dirty := g.f.applyCommand(g.txn, l)
	switch {
	case res.Err == nil:
		g.done = append(g.done, l)
		g.events = append(g.events, evs...)
		for _, ev := range evs {
			if g.bumped == nil {
				g.bumped = map[resource.Kind]uint64{}
			}
			g.bumped[ev.Kind] = max(g.bumped[ev.Kind], ev.Index)
		}
	case dirty:
		g.rollback()
	}
	if errors.Is(res.Err, ErrUnknownCommand) && t&IgnoreUnknownTypeFlag != 0 {
		g.f.logger.Warn("skipping unknown command type marked ignorable", "type", uint8(t), "index", l.Index)
		res.Err = nil
	}
	if g.f.OnApply != nil {
		g.f.OnApply(t, time.Since(start), res.Err)
	}
	return res
}

// rollback drops the shared transaction's changes and re-applies the
// entries that succeeded in it.
func (g *group) rollback() {
	g.txn.Abort()
	g.txn = nil
	g.begin()
	for _, l := range g.done {
		if res, _, _ := g.f.applyCommand(g.txn, l); res.Err != nil {
			// Impossible unless Apply is not deterministic.
			g.f.logger.Error("BUG: entry failed when replayed after a rollback", "index", l.Index, "error", res.Err)
		}
	}
}

func (g *group) commit() {
	if g.txn != nil {
		// In kind order (deterministic, though the result is the same).
		for _, k := range slices.Sorted(maps.Keys(g.bumped)) {
			if err := bumpIndex(g.txn, k, g.bumped[k]); err != nil {
				// Only a broken schema fails an insert.
				g.f.logger.Error("BUG: cannot record a kind's index", "kind", k, "error", err)
			}
		}
		g.txn.Commit()
		g.f.events.Append(g.events)
	}
	g.f.advance(g.last)
}

func (f *FSM) advance(index uint64) {
	if index > f.applied.Load() {
		f.applied.Store(index)
	}
}

// applyCommand runs one log entry's command in txn. dirty reports that it
// may have changed txn although it failed: the caller must roll back.
// Apply must never take the node down: a panic here is a bug, reported as
// the entry's error.
func (f *FSM) applyCommand(txn *memdb.Txn, l *raft.Log) (res *Result, evs []resource.Event, dirty bool) {
	if len(l.Data) == 0 {
		return &Result{Index: l.Index, Err: fmt.Errorf("%w: empty log entry", ErrBadPayload)}, nil, false
	}
	t, payload, index := MessageType(l.Data[0]), l.Data[1:], l.Index
	w := &writer{txn: txn, index: index}
	defer func() {
		if p := recover(); p != nil {
			f.logger.Error("BUG: panic while applying log entry", "index", index, "type", t, "panic", p)
			res = &Result{Index: index, Err: fmt.Errorf("internal error applying %s at index %d: %v", t, index, p)}
			evs, dirty = nil, true
		}
	}()
	var err error
	if t == BatchRequestType {
		err = w.batch(payload)
	} else {
		err = w.op(t, payload)
	}
	if err == nil {
		err = w.recomputeHosts()
	}
	if err != nil {
		return &Result{Index: index, Err: err}, nil, w.wrote
	}
	return &Result{Index: index, Objects: w.objects, ItemErrors: w.itemErrs}, w.events, false
}

// writer accumulates the effects of one command inside a transaction.
type writer struct {
	txn     *memdb.Txn
	index   uint64
	objects []*resource.Object
	events  []resource.Event
	// touched hosts get their allocation recomputed before commit.
	touched map[string]bool
	// itemErrs are per-item outcomes of place and report commands.
	itemErrs []error
	// wrote: txn was changed (a failure after that needs a rollback).
	wrote bool
}

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

func (w *writer) lookup(kind resource.Kind, name string, cas uint64) (*resource.Object, error) {
	if _, ok := resource.Lookup(kind); !ok {
		return nil, resource.Errorf("kind", "unknown kind %q", kind)
	}
	cur, err := getTxn(w.txn, nil, kind, name)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	if cas != 0 && cur.ModifyIndex != cas {
		return nil, fmt.Errorf("%s %q: %w: it is %d, the request expected %d (re-read the object and retry)",
			kind, name, ErrCASMismatch, cur.ModifyIndex, cas)
	}
	return cur, nil
}

func (w *writer) put(o *resource.Object, evType string) error {
	w.wrote = true
	if err := w.txn.Insert(tableObjects, o); err != nil {
		return fmt.Errorf("fsm: insert %s: %w", o, err)
	}
	// The kind's index is recorded at commit, from the events.
	w.objects = append(w.objects, o)
	w.events = append(w.events, resource.Event{Index: w.index, Type: evType, Kind: o.Kind, Name: o.Name, Object: o})
	return nil
}

func (w *writer) create(req *CreateRequest) error {
	if _, ok := resource.Lookup(req.Kind); !ok {
		return resource.Errorf("kind", "unknown kind %q", req.Kind)
	}
	if err := resource.ValidateMeta(req.Name, req.Labels); err != nil {
		return err
	}
	if req.ID == "" {
		return resource.Errorf("id", "must be set by the proposer")
	}
	spec, err := resource.NormalizeSpec(req.Kind, req.Spec)
	if err != nil {
		return err
	}
	if spec, err = resource.ReviseSpec(req.Kind, nil, spec); err != nil {
		return err
	}
	if _, err := req.Time.UTC().MarshalJSON(); err != nil {
		return resource.Errorf("time", "is out of range: %v", err)
	}
	status, err := resource.InitialStatus(req.Kind, req.Time)
	if err != nil {
		return err
	}
	if status, err = w.ownAllocation(req.Kind, req.Name, status); err != nil {
		return err
	}
	if req.Kind == resource.KindVM {
		// With no host at all, say so from the start, as the scheduler
		// would (so that it has nothing to rewrite).
		if raw, err := w.txn.First(tableObjects, indexKind, kindPrefix(resource.KindHost)); err == nil && raw == nil {
			st := resource.VMStatus{Phase: resource.PhasePending, Reason: resource.ReasonNoHosts, Since: req.Time.UTC()}
			if status, err = json.Marshal(&st); err != nil {
				return err
			}
		}
	}
	if cur, err := getTxn(w.txn, nil, req.Kind, req.Name); err != nil {
		return err
	} else if cur != nil {
		return fmt.Errorf("%s %q: %w (pick another name, or update the existing one)", req.Kind, req.Name, ErrExists)
	}
	if raw, err := w.txn.First(tableObjects, indexUID, req.ID); err != nil {
		return fmt.Errorf("fsm: lookup id: %w", err)
	} else if raw != nil {
		return fmt.Errorf("object id %q: %w", req.ID, ErrExists)
	}
	return w.put(&resource.Object{
		Kind:        req.Kind,
		Name:        req.Name,
		ID:          req.ID,
		Labels:      cloneLabels(req.Labels),
		CreateIndex: w.index,
		ModifyIndex: w.index,
		Spec:        spec,
		Status:      status,
	}, resource.EventCreated)
}

func (w *writer) update(req *UpdateRequest) error {
	if err := resource.ValidateLabels(req.Labels); err != nil {
		return err
	}
	cur, err := w.lookup(req.Kind, req.Name, req.CAS)
	if err != nil {
		return err
	}
	spec, err := resource.NormalizeSpec(req.Kind, req.Spec)
	if err != nil {
		return err
	}
	if spec, err = resource.ReviseSpec(req.Kind, cur.Spec, spec); err != nil {
		return err
	}
	if err := w.recheckPlacedVM(cur, spec); err != nil {
		return err
	}
	o := cur.Copy()
	o.Labels = cloneLabels(req.Labels)
	o.Spec = spec
	o.ModifyIndex = w.index
	return w.put(o, resource.EventUpdated)
}

func (w *writer) status(req *StatusRequest) error {
	cur, err := w.lookup(req.Kind, req.Name, req.CAS)
	if err != nil {
		return err
	}
	status, err := resource.NormalizeStatus(req.Kind, req.Status)
	if err != nil {
		return err
	}
	if status, err = w.ownAllocation(cur.Kind, cur.Name, status); err != nil {
		return err
	}
	if err := w.validVMHost(cur.Kind, status); err != nil {
		return err
	}
	w.touchVMHost(cur)
	o := cur.Copy()
	o.Status = status
	o.ModifyIndex = w.index
	w.touchVMHost(o)
	return w.put(o, resource.EventUpdated)
}

// touchVMHost marks the host a VM object is assigned to.
func (w *writer) touchVMHost(o *resource.Object) {
	if o.Kind != resource.KindVM {
		return
	}
	if st, err := resource.DecodeStatus[resource.VMStatus](o); err == nil {
		w.touch(st.Host)
	}
}

// recheckPlacedVM refuses a spec change that would overcommit the host a
// VM is placed on.
func (w *writer) recheckPlacedVM(cur *resource.Object, spec json.RawMessage) error {
	if cur.Kind != resource.KindVM {
		return nil
	}
	st, err := resource.DecodeStatus[resource.VMStatus](cur)
	if err != nil || st.Host == "" {
		return nil
	}
	var ns resource.VMSpec
	if err := json.Unmarshal(spec, &ns); err != nil {
		return fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	w.touch(st.Host)
	_, hspec, hst, err := w.host(st.Host)
	if errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	old, err := resource.DecodeSpec[resource.VMSpec](cur)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	alloc, err := allocatedTxn(w.txn, st.Host)
	if err != nil {
		return err
	}
	alloc.CPUs -= old.CPUs
	alloc.MemoryMiB -= old.MemoryMiB
	limit := Schedulable(hspec, hst)
	if (ns.CPUs > old.CPUs && alloc.CPUs+ns.CPUs > limit.CPUs) || (ns.MemoryMiB > old.MemoryMiB && alloc.MemoryMiB+ns.MemoryMiB > limit.MemoryMiB) {
		return fmt.Errorf("cannot resize vm %q on its host %q: %w", cur.Name, st.Host, ErrNoCapacity)
	}
	return nil
}

func (w *writer) delete(req *DeleteRequest) error {
	cur, err := w.lookup(req.Kind, req.Name, req.CAS)
	if err != nil {
		return err
	}
	if cur.Kind == resource.KindHost {
		if alloc, err := allocatedTxn(w.txn, cur.Name); err != nil {
			return err
		} else if alloc != (resource.Resources{}) {
			return fmt.Errorf("host %q: %w (%d CPUs, %s); delete or move them first", cur.Name, ErrHostBusy, alloc.CPUs, resource.FormatMiB(alloc.MemoryMiB))
		}
	}
	w.touchVMHost(cur)
	w.wrote = true
	if err := w.txn.Delete(tableObjects, cur); err != nil {
		return fmt.Errorf("fsm: delete %s: %w", cur, err)
	}
	w.objects = append(w.objects, cur)
	w.events = append(w.events, resource.Event{Index: w.index, Type: resource.EventDeleted, Kind: cur.Kind, Name: cur.Name, Object: cur})
	return nil
}

// ownAllocation sets a host status's allocated to the sum of its VMs.
func (w *writer) ownAllocation(kind resource.Kind, name string, status json.RawMessage) (json.RawMessage, error) {
	if kind != resource.KindHost {
		return status, nil
	}
	var hs resource.HostStatus
	if err := json.Unmarshal(status, &hs); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	alloc, err := allocatedTxn(w.txn, name)
	if err != nil {
		return nil, err
	}
	hs.Allocated = alloc
	return json.Marshal(&hs)
}

// validVMHost: status.host names a host or is empty.
func (w *writer) validVMHost(kind resource.Kind, status json.RawMessage) error {
	if kind != resource.KindVM {
		return nil
	}
	var st resource.VMStatus
	if err := json.Unmarshal(status, &st); err != nil {
		return fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if st.Host == "" {
		return nil
	}
	if err := resource.ValidateName(st.Host); err != nil {
		return resource.Errorf("status.host", "%v", err)
	}
	return nil
}
