package fsm

import (
	"errors"
	"fmt"
	"runtime/debug"
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

	maxProto int // the highest log protocol this FSM applies (protocol.go)

	// counts: the objects per kind (counts.go); nil until first needed.
	counts kindCounts

	halt   atomic.Pointer[HaltError] // the entry that halted the FSM (halt.go)
	haltCh chan struct{}             // closed when halt is set

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
	// MaxProtocol limits the log protocol this FSM applies (default and
	// at most ProtocolVersion): with a lower one it behaves as a build of
	// that protocol would, and halts on a later message type. For tests
	// of rolling upgrades.
	MaxProtocol int
}

// New returns an FSM with an empty store.
func New(cfg Config) *FSM {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.EventBufferSize <= 0 {
		cfg.EventBufferSize = 16384
	}
	if cfg.MaxProtocol <= 0 || cfg.MaxProtocol > ProtocolVersion {
		cfg.MaxProtocol = ProtocolVersion
	}
	return &FSM{
		store:    NewStore(),
		events:   NewEventBuffer(cfg.EventBufferSize),
		logger:   cfg.Logger.Named("fsm"),
		haltCh:   make(chan struct{}),
		maxProto: cfg.MaxProtocol,
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
// succeed again with the same effects). An entry the FSM cannot understand
// halts it (halt.go): the entries before it stay applied, it and the rest
// are not.
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
	done   []doneEntry // entries applied in txn, for a replay
	events []resource.Event
	// delta is what events create minus delete, per kind (objectCount).
	delta kindCounts
	last  uint64
	// bumped is the index of the last change to each kind in txn: the
	// index table is written once per kind at commit, not per write.
	bumped map[resource.Kind]uint64
	// w is the writer of each entry in turn (applyCommand resets it): one
	// allocation per batch instead of one per entry.
	w writer
}

// doneEntry is an entry that succeeded in a group's transaction: the
// whole entry, or (create set) one create of a creates-bin entry, whose
// create-bin payload create is (a slice of the entry's data).
type doneEntry struct {
	l      *raft.Log
	create []byte
}

func (g *group) begin() {
	if g.txn == nil {
		db, _ := g.f.store.current()
		g.txn = db.Txn(true)
	}
}

func (g *group) apply(l *raft.Log) *Result {
	f := g.f
	if he := f.halt.Load(); he != nil {
		return &Result{Index: l.Index, Err: notApplied(l.Index, he)}
	}
	if l.Type != raft.LogCommand {
		// Configuration entries (if raft hands them to us) change no state.
		g.last = max(g.last, l.Index)
		return &Result{Index: l.Index}
	}
	start := time.Now()
	if len(l.Data) == 0 {
		return g.halt(l.Index, 0, fmt.Errorf("%w: empty log entry", ErrBadPayload), start)
	}
	t, payload := MessageType(l.Data[0]), l.Data[1:]
	if t == CreatesBinRequestType {
		if err := checkProtocol(t, f.maxProto); err != nil {
			return g.halt(l.Index, t, err, start)
		}
		return g.applyCreates(l, payload, start)
	}
	run, err := decode(t, payload, f.maxProto)
	switch {
	case errors.Is(err, ErrUnknownCommand) && t&IgnoreUnknownTypeFlag != 0:
		f.logger.Warn("skipping unknown command type marked ignorable", "type", uint8(t), "index", l.Index)
		g.last = max(g.last, l.Index)
		if f.OnApply != nil {
			f.OnApply(t, time.Since(start), nil)
		}
		return &Result{Index: l.Index}
	case err != nil:
		return g.halt(l.Index, t, err, start)
	}
	g.begin()
	res, evs, dirty, panicked := f.applyCommand(&g.w, g.txn, l.Index, t, run, g.objectCount)
	if panicked != nil {
		g.rollback()
		return g.halt(l.Index, t, panicked, start)
	}
	g.last = max(g.last, l.Index)
	switch {
	case res.Err == nil:
		g.done = append(g.done, doneEntry{l: l})
		g.applied(evs)
	case dirty:
		g.rollback()
	}
	if f.OnApply != nil {
		f.OnApply(metricType(t, payload), time.Since(start), res.Err)
	}
	return res
}

// applied records in g what an entry (or a create of a creates-bin
// entry) that succeeded made: its events, and with them the kinds' counts
// and indexes.
func (g *group) applied(evs []resource.Event) {
	g.events = append(g.events, evs...)
	if g.delta == nil {
		g.delta = kindCounts{}
	}
	g.delta.add(evs)
	for _, ev := range evs {
		if g.bumped == nil {
			g.bumped = map[resource.Kind]uint64{}
		}
		g.bumped[ev.Kind] = max(g.bumped[ev.Kind], ev.Index)
	}
}

// halt halts the FSM at entry index, which it cannot apply (cause), and
// returns the entry's Result. The entry has left nothing in g.txn.
func (g *group) halt(index uint64, t MessageType, cause error, start time.Time) *Result {
	err := g.f.haltAt(&HaltError{Index: index, Type: t, Cause: cause})
	if g.f.OnApply != nil {
		g.f.OnApply(t, time.Since(start), err)
	}
	return &Result{Index: index, Err: err}
}

// rollback drops the shared transaction's changes and re-applies the
// entries that succeeded in it.
func (g *group) rollback() {
	g.txn.Abort()
	g.txn = nil
	g.begin()
	for _, d := range g.done {
		l := d.l
		t, payload := MessageType(l.Data[0]), l.Data[1:]
		var run func(*writer) error
		var err error
		if d.create != nil {
			t = CreateBinRequestType
			run, err = decodeCreateBin(d.create)
		} else {
			run, err = decode(t, payload, g.f.maxProto)
		}
		if err != nil {
			// Impossible: it decoded the first time.
			g.f.logger.Error("BUG: entry no longer decodes when replayed after a rollback", "index", l.Index, "error", err)
			continue
		}
		if res, _, _, p := g.f.applyCommand(new(writer), g.txn, l.Index, t, run, nil); res.Err != nil || p != nil {
			// Impossible unless Apply is not deterministic.
			g.f.logger.Error("BUG: entry failed when replayed after a rollback", "index", l.Index, "error", res.Err)
		}
	}
}

func (g *group) commit() {
	if g.txn != nil {
		// In kind order (deterministic, though the result is the same).
		for _, k := range sortedKeys(g.bumped) {
			if err := bumpIndex(g.txn, k, g.bumped[k]); err != nil {
				// Only a broken schema fails an insert.
				g.f.logger.Error("BUG: cannot record a kind's index", "kind", k, "error", err)
			}
		}
		g.txn.Commit()
		if g.f.counts != nil {
			g.f.counts.add(g.events)
		}
		g.f.events.Append(g.events)
	}
	g.f.advance(g.last)
}

func (f *FSM) advance(index uint64) {
	if index > f.applied.Load() {
		f.applied.Store(index)
	}
}

// applyCommand runs one decoded log entry's command in txn. dirty reports
// that it may have changed txn although it failed: the caller must roll
// back. A panic in an applier is a bug: it is returned in panicked (txn
// may be dirty), and the caller halts the FSM.
//
// count, when set, counts a kind's objects for the cap on creates (nil: no
// cap, for replays after a rollback). w is the writer to run it with, reset
// here: nothing may keep it after the command (what the command made, its
// objects and events, is handed on in the results, not the writer).
func (f *FSM) applyCommand(w *writer, txn *memdb.Txn, index uint64, t MessageType, run func(*writer) error, count func(*writer, resource.Kind) int) (res *Result, evs []resource.Event, dirty bool, panicked error) {
	*w = writer{txn: txn, index: index, caches: f.store.caches, count: count}
	defer func() {
		if p := recover(); p != nil {
			f.logger.Error("BUG: panic while applying log entry", "index", index, "type", t, "panic", p, "stack", string(debug.Stack()))
			res, evs, dirty = nil, nil, true
			panicked = fmt.Errorf("%w: internal error applying %s at index %d: %v", ErrApplyPanic, t, index, p)
		}
	}()
	err := run(w)
	if err == nil {
		err = w.recomputeDevices()
	}
	if err == nil {
		err = w.recomputeProjects()
	}
	if err == nil {
		err = w.recomputeHosts()
	}
	if err != nil {
		return &Result{Index: index, Err: err}, nil, w.wrote, nil
	}
	return &Result{Index: index, Objects: w.objects, ItemErrors: w.itemErrs, ResourceErrors: w.resErrs}, w.events, false, nil
}
