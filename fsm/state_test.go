package fsm_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	"pgregory.net/rapid"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Tests of blocking queries, watches and the event buffer. Nothing here
// sleeps to wait for a condition: goroutines report on channels and every
// wait has a deadline (waitLimit) that only a broken build reaches.

const waitLimit = 10 * time.Second

type bqResult struct {
	idx uint64
	err error
	// ctxDone reports whether the context had ended when BlockingQuery
	// returned.
	ctxDone bool
}

// blockingList starts BlockingQuery(ctx, minIndex) over List(kind) +
// Index(kind) in a goroutine. calls receives once per run of the query
// (after the read); the result arrives on the returned channel.
func blockingList(ctx context.Context, s *fsm.Store, kind resource.Kind, minIndex uint64) (calls <-chan uint64, result <-chan bqResult) {
	callCh := make(chan uint64, 100)
	resCh := make(chan bqResult, 1)
	go func() {
		idx, err := s.BlockingQuery(ctx, minIndex, func(ws memdb.WatchSet) (uint64, error) {
			// The index is read before the data, so a write between the
			// two is seen again on the next run, never lost.
			i := s.Index(kind)
			if _, err := s.List(ws, kind, nil); err != nil {
				return 0, err
			}
			callCh <- i
			return i, nil
		})
		resCh <- bqResult{idx: idx, err: err, ctxDone: ctx.Err() != nil}
	}()
	return callCh, resCh
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
	}
	panic("unreachable")
}

func notYet[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s happened too early: %+v", what, v)
	default:
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestBlockingQueryReturnsAtOnce(t *testing.T) {
	f := fsm.TestFSM(t)
	fsm.TestCreate(t, f, 4, vm, "a", nil)
	for _, min := range []uint64{0, 1, 3} {
		t.Run(fmt.Sprint("min=", min), func(t *testing.T) {
			calls, res := blockingList(context.Background(), f.State(), vm, min)
			r := recv(t, res, "BlockingQuery with index 4 > min")
			if r.idx != 4 || r.err != nil {
				t.Errorf("BlockingQuery = %d, %v; want 4, nil", r.idx, r.err)
			}
			if n := len(calls); n != 1 {
				t.Errorf("query ran %d times, want 1", n)
			}
		})
	}
	t.Run("min=0 on an empty kind", func(t *testing.T) {
		_, res := blockingList(context.Background(), f.State(), host, 0)
		if r := recv(t, res, "BlockingQuery with min 0"); r.idx != 0 || r.err != nil {
			t.Errorf("BlockingQuery = %+v", r)
		}
	})
}

func TestBlockingQueryQueryError(t *testing.T) {
	f := fsm.TestFSM(t)
	boom := errors.New("boom")
	idx, err := f.State().BlockingQuery(context.Background(), 5, func(memdb.WatchSet) (uint64, error) { return 3, boom })
	if idx != 3 || !errors.Is(err, boom) {
		t.Errorf("BlockingQuery = %d, %v; want 3, boom", idx, err)
	}
}

func TestBlockingQueryWakesOnWrite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, f *fsm.FSM, index uint64)
	}{
		{"create", func(t *testing.T, f *fsm.FSM, i uint64) { fsm.TestCreate(t, f, i, vm, "new", nil) }},
		{"update", func(t *testing.T, f *fsm.FSM, i uint64) {
			fsm.TestMustApply(t, f, i, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Spec: raw(vmSpec2)})
		}},
		{"status", func(t *testing.T, f *fsm.FSM, i uint64) {
			fsm.TestMustApply(t, f, i, fsm.StatusRequestType, &fsm.StatusRequest{Kind: vm, Name: "a", Status: raw(`{"phase":"running"}`)})
		}},
		{"delete", func(t *testing.T, f *fsm.FSM, i uint64) {
			fsm.TestMustApply(t, f, i, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a"})
		}},
		{"batch", func(t *testing.T, f *fsm.FSM, i uint64) {
			fsm.TestMustApply(t, f, i, fsm.BatchRequestType, batchOf(t,
				fsm.CreateRequestType, createReq(host, "h9", "id-h9", nil, `{}`),
				fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "b"}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.TestFSM(t)
			seed(t, f) // vm index 2, host index 3
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			calls, res := blockingList(ctx, f.State(), vm, 2)
			if i := recv(t, calls, "the first run of the query"); i != 2 {
				t.Fatalf("first run saw index %d, want 2", i)
			}
			notYet(t, res, "BlockingQuery's return before any write")
			tc.write(t, f, 7)
			r := recv(t, res, "BlockingQuery's wake-up after the write")
			if r.idx != 7 || r.err != nil || r.ctxDone {
				t.Errorf("BlockingQuery = %+v, want index 7 before the deadline", r)
			}
		})
	}
}

// TestBlockingQueryIgnoresOtherKinds: writes to other kinds or failed
// entries may wake the watch (memdb watches are coarse), but BlockingQuery
// must not return until its own kind's index passes minIndex.
func TestBlockingQueryIgnoresOtherKinds(t *testing.T) {
	f := fsm.TestFSM(t)
	seed(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	calls, res := blockingList(ctx, f.State(), vm, 2)
	recv(t, calls, "the first run of the query")
	fsm.TestCreate(t, f, 5, host, "h2", nil)
	fsm.TestMustApply(t, f, 6, fsm.StatusRequestType, &fsm.StatusRequest{Kind: host, Name: "h1", Status: raw(`{"state":"ready"}`)})
	fsm.TestApply(t, f, 7, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a", CAS: 99}) // fails
	fsm.TestApplyLog(t, f, entry(8, 0xe3, "{}"))                                                    // skipped
	fsm.TestCreate(t, f, 9, vm, "c", nil)
	r := recv(t, res, "BlockingQuery's wake-up")
	if r.idx != 9 || r.err != nil {
		t.Errorf("BlockingQuery = %+v, want 9: it must not return for writes to other kinds", r)
	}
}

func TestBlockingQueryDeadline(t *testing.T) {
	f := fsm.TestFSM(t)
	seed(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, res := blockingList(ctx, f.State(), vm, 2)
	r := recv(t, res, "BlockingQuery to give up at the context deadline")
	if r.idx != 2 || r.err != nil || !r.ctxDone {
		t.Errorf("BlockingQuery = %+v, want the unchanged index 2, no error, at the deadline", r)
	}
	// A cancelled context ends the wait the same way.
	ctx2, cancel2 := context.WithCancel(context.Background())
	calls, res2 := blockingList(ctx2, f.State(), vm, 2)
	recv(t, calls, "the first run")
	cancel2()
	if r := recv(t, res2, "BlockingQuery to return on cancel"); r.idx != 2 || r.err != nil {
		t.Errorf("BlockingQuery after cancel = %+v", r)
	}
}

func TestBlockingQueryWakesOnRestore(t *testing.T) {
	// The snapshot to restore: vm index 12.
	src := fsm.TestFSM(t)
	fsm.TestCreate(t, src, 12, vm, "z", nil)
	snap := fsm.TestPersist(t, src)

	f := fsm.TestFSM(t)
	seed(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	calls, res := blockingList(ctx, f.State(), vm, 2)
	recv(t, calls, "the first run of the query")
	abandon := f.State().AbandonCh()
	restore(t, f, snap)
	if !isClosed(abandon) {
		t.Errorf("Restore did not close the old abandon channel")
	}
	if isClosed(f.State().AbandonCh()) {
		t.Errorf("the new store's abandon channel is already closed")
	}
	r := recv(t, res, "BlockingQuery's wake-up after Restore")
	if r.idx != 12 || r.err != nil || r.ctxDone {
		t.Errorf("BlockingQuery = %+v, want 12 (the restored index) before the deadline", r)
	}
}

// TestBlockingQueryRestoreBetweenReadAndWatch: a Restore that lands after a
// query has read the old store but before BlockingQuery starts watching must
// still wake it. Store.Watch fetches the abandon channel only when it starts
// to wait (state.go, Store.Watch: ws.Add(s.AbandonCh())), so it gets the
// *new* store's channel, while the query's watch channels belong to the old,
// never again written, store: the reader sleeps until its deadline although
// the state it read is gone.
func TestBlockingQueryRestoreBetweenReadAndWatch(t *testing.T) {
	src := fsm.TestFSM(t)
	fsm.TestCreate(t, src, 12, vm, "z", nil)
	snap := fsm.TestPersist(t, src)

	f := fsm.TestFSM(t)
	seed(t, f)
	s := f.State()
	const deadline = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	first := true
	start := time.Now()
	idx, err := s.BlockingQuery(ctx, 2, func(ws memdb.WatchSet) (uint64, error) {
		i := s.Index(vm)
		_, err := s.List(ws, vm, nil)
		if first {
			first = false
			restore(t, f, snap) // lands after the read, before the watch
		}
		return i, err
	})
	if err != nil || idx != 12 || ctx.Err() != nil {
		t.Errorf("BlockingQuery = %d, %v after %v (deadline %v); want 12 at once: the restore was missed",
			idx, err, time.Since(start).Round(time.Millisecond), deadline)
	}
}

func TestWatch(t *testing.T) {
	f := fsm.TestFSM(t)
	seed(t, f)
	s := f.State()

	// Get's watch fires when that object changes.
	ws := memdb.NewWatchSet()
	if _, err := s.Get(ws, vm, "a"); err != nil {
		t.Fatal(err)
	}
	fired := make(chan bool, 1)
	go func() { fired <- s.Watch(context.Background(), ws) }()
	fsm.TestMustApply(t, f, 4, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Spec: raw(vmSpec2)})
	if !recv(t, fired, "Watch on vm/a to fire") {
		t.Errorf("Watch returned false for a fired watch")
	}

	// A Get of an absent object fires when it is created.
	ws = memdb.NewWatchSet()
	if o, _ := s.Get(ws, vm, "later"); o != nil {
		t.Fatal("vm/later exists")
	}
	go func() { fired <- s.Watch(context.Background(), ws) }()
	fsm.TestCreate(t, f, 5, vm, "later", nil)
	if !recv(t, fired, "Watch on absent vm/later to fire") {
		t.Errorf("Watch returned false")
	}

	// Watch returns false when the context ends first.
	ws = memdb.NewWatchSet()
	s.Get(ws, vm, "a")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { fired <- s.Watch(ctx, ws) }()
	cancel()
	if recv(t, fired, "Watch to return on cancel") {
		t.Errorf("Watch returned true for a cancelled context")
	}

	// And true when the store is restored (the abandon channel is taken
	// before the read, as Watch's doc asks).
	ws = memdb.NewWatchSet()
	ws.Add(s.AbandonCh())
	s.Get(ws, vm, "a")
	go func() { fired <- s.Watch(context.Background(), ws) }()
	restore(t, f, fsm.TestPersist(t, fsm.TestFSM(t)))
	if !recv(t, fired, "Watch to return on Restore") {
		t.Errorf("Watch returned false on restore")
	}
}

// ---- EventBuffer ----

func ev(index uint64, name string) resource.Event {
	return resource.Event{Index: index, Type: resource.EventCreated, Kind: vm, Name: name}
}

func evNames(evs []resource.Event) string {
	s := ""
	for _, e := range evs {
		s += fmt.Sprintf("%d%s ", e.Index, e.Name)
	}
	return s
}

func TestEventBufferSince(t *testing.T) {
	b := fsm.NewEventBuffer(16)
	evs, reset, floor, wait := b.Since(0, 0)
	if len(evs) != 0 || reset || floor != 0 || wait == nil || isClosed(wait) {
		t.Fatalf("empty buffer: %v %v %d closed=%v", evs, reset, floor, isClosed(wait))
	}
	b.Append([]resource.Event{ev(3, "a"), ev(3, "b"), ev(5, "c"), ev(9, "d")})
	if !isClosed(wait) {
		t.Errorf("Append did not close the wait channel")
	}
	for _, tc := range []struct {
		after uint64
		max   int
		want  string
	}{
		{0, 0, "3a 3b 5c 9d "},
		{2, 0, "3a 3b 5c 9d "},
		{3, 0, "5c 9d "},
		{4, 0, "5c 9d "},
		{5, 1, "9d "},
		{9, 0, ""},
		{100, 0, ""},
		{0, -1, "3a 3b 5c 9d "},
		{3, 1, "5c "},
	} {
		evs, reset, floor, _ := b.Since(tc.after, tc.max)
		if got := evNames(evs); got != tc.want || reset || floor != 0 {
			t.Errorf("Since(%d, %d) = %q reset=%v floor=%d, want %q", tc.after, tc.max, got, reset, floor, tc.want)
		}
	}
	_, _, _, wait = b.Since(9, 0)
	b.Append(nil)
	if isClosed(wait) {
		t.Errorf("appending nothing woke the readers")
	}
	b.Append([]resource.Event{ev(10, "e")})
	if !isClosed(wait) {
		t.Errorf("Append did not close the wait channel")
	}
}

// TestEventBufferSinceMaxKeepsIndexWhole: one log entry (a batch) can produce
// several events with the same index. Readers resume with after = the last
// index they saw, so Since(after, max) must not cut an index's events in two:
// the rest of that index would be skipped for ever (events.go, Since: the
// loop stops at max regardless of index boundaries).
func TestEventBufferSinceMaxKeepsIndexWhole(t *testing.T) {
	b := fsm.NewEventBuffer(16)
	b.Append([]resource.Event{ev(5, "a"), ev(5, "b"), ev(5, "c"), ev(6, "d")})
	var seen []resource.Event
	after := uint64(0)
	for range 10 {
		evs, reset, _, _ := b.Since(after, 2)
		if reset {
			t.Fatal("unexpected reset")
		}
		if len(evs) == 0 {
			break
		}
		seen = append(seen, evs...)
		after = evs[len(evs)-1].Index
	}
	if got := evNames(seen); got != "5a 5b 5c 6d " {
		t.Errorf("a reader paging with max=2 saw %q, want every event: \"5a 5b 5c 6d \"", got)
	}
}

func TestEventBufferOverflow(t *testing.T) {
	b := fsm.NewEventBuffer(4)
	b.Append([]resource.Event{ev(1, "a"), ev(2, "b"), ev(3, "c")})
	b.Append([]resource.Event{ev(4, "d"), ev(5, "e"), ev(6, "f")}) // drops 1 and 2
	for _, tc := range []struct {
		after     uint64
		reset     bool
		want      string
		wantFloor uint64
	}{
		{0, true, "", 2},
		{1, true, "", 2},
		{2, false, "3c 4d 5e 6f ", 2},
		{4, false, "5e 6f ", 2},
	} {
		evs, reset, floor, _ := b.Since(tc.after, 0)
		if reset != tc.reset || floor != tc.wantFloor || evNames(evs) != tc.want {
			t.Errorf("Since(%d) = %q reset=%v floor=%d, want %q reset=%v floor=%d",
				tc.after, evNames(evs), reset, floor, tc.want, tc.reset, tc.wantFloor)
		}
	}
	// Dropping part of a multi-event index: the reader that saw nothing of
	// it must reset; the floor is that index.
	b.Append([]resource.Event{ev(7, "g"), ev(7, "h"), ev(7, "i"), ev(7, "j"), ev(8, "k")})
	if evs, reset, floor, _ := b.Since(6, 0); !reset || floor != 7 || len(evs) != 0 {
		t.Errorf("Since(6) after overflow inside index 7 = %q reset=%v floor=%d, want a reset at 7", evNames(evs), reset, floor)
	}
	if evs, reset, _, _ := b.Since(7, 0); reset || evNames(evs) != "8k " {
		t.Errorf("Since(7) = %q reset=%v", evNames(evs), reset)
	}
}

func TestEventBufferReset(t *testing.T) {
	b := fsm.NewEventBuffer(8)
	b.Append([]resource.Event{ev(1, "a"), ev(2, "b")})
	_, _, _, wait := b.Since(2, 0)
	b.Reset(10)
	if !isClosed(wait) {
		t.Errorf("Reset did not wake the readers")
	}
	for _, after := range []uint64{0, 2, 9} {
		if evs, reset, floor, _ := b.Since(after, 0); !reset || floor != 10 || len(evs) != 0 {
			t.Errorf("Since(%d) after Reset(10) = %v reset=%v floor=%d, want a reset at 10", after, evs, reset, floor)
		}
	}
	if evs, reset, _, _ := b.Since(10, 0); reset || len(evs) != 0 {
		t.Errorf("Since(10) after Reset(10) = %v reset=%v", evs, reset)
	}
	b.Append([]resource.Event{ev(11, "c")})
	if evs, reset, _, _ := b.Since(10, 0); reset || evNames(evs) != "11c " {
		t.Errorf("Since(10) = %q reset=%v", evNames(evs), reset)
	}
}

// TestNewEventBufferZeroSize: NewEventBuffer is exported; a size of 0 must
// not make Append divide by zero (events.go, at(): (b.start+i)%len(b.ring)).
func TestNewEventBufferZeroSize(t *testing.T) {
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("NewEventBuffer(0).Append panicked: %v", p)
		}
	}()
	b := fsm.NewEventBuffer(0)
	b.Append([]resource.Event{ev(1, "a")})
	b.Since(0, 0)
}

func TestFSMEventBufferSize(t *testing.T) {
	f := fsm.New(fsm.Config{EventBufferSize: 2})
	for i := uint64(1); i <= 3; i++ {
		fsm.TestCreate(t, f, i, vm, fmt.Sprint("v", i), nil)
	}
	if _, reset, floor, _ := f.Events().Since(0, 0); !reset || floor != 1 {
		t.Errorf("Since(0) with a 2-event buffer after 3 events: reset=%v floor=%d, want a reset at 1", reset, floor)
	}
	if evs, _, _, _ := f.Events().Since(1, 0); len(evs) != 2 {
		t.Errorf("Since(1) = %d events, want 2", len(evs))
	}
}

func TestRestoreResetsEvents(t *testing.T) {
	src := fsm.TestFSM(t)
	fsm.TestCreate(t, src, 5, vm, "z", nil)
	snap := fsm.TestPersist(t, src)

	f := fsm.TestFSM(t)
	seed(t, f)
	_, _, _, wait := f.Events().Since(3, 0)
	restore(t, f, snap)
	if !isClosed(wait) {
		t.Errorf("Restore did not wake event readers")
	}
	if _, reset, floor, _ := f.Events().Since(3, 0); !reset || floor != 5 {
		t.Errorf("Since(3) after a restore at 5: reset=%v floor=%d, want a reset at 5", reset, floor)
	}
	fsm.TestCreate(t, f, 6, vm, "y", nil)
	if evs, reset, _, _ := f.Events().Since(5, 0); reset || eventSummary(evs) != "6:created:vm/y" {
		t.Errorf("Since(5) = %s reset=%v", eventSummary(evs), reset)
	}
}

// TestConcurrentReadersAndWriter runs readers (Get, List, Index,
// BlockingQuery, events, Digest, Snapshot) against a writer that applies and
// restores, for the race detector.
func TestConcurrentReadersAndWriter(t *testing.T) {
	f := fsm.TestFSM(t)
	snap := fsm.TestPersist(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	s := f.State()
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var min uint64
			for ctx.Err() == nil {
				switch r {
				case 0:
					s.Get(nil, vm, "a")
					s.List(nil, vm, nil)
					_ = s.Digest()
				case 1:
					idx, _ := s.BlockingQuery(ctx, min, func(ws memdb.WatchSet) (uint64, error) {
						i := s.Index(vm)
						_, err := s.List(ws, vm, nil)
						return i, err
					})
					min = idx
				case 2:
					_, _, _, wait := f.Events().Since(f.AppliedIndex(), 10)
					select {
					case <-wait:
					case <-ctx.Done():
					}
				case 3:
					if sn, err := f.Snapshot(); err == nil {
						sn.Persist(&fsm.TestSink{})
					}
				}
			}
		}()
	}
	for i := uint64(1); i <= 300; i++ {
		switch {
		case i%100 == 0:
			restore(t, f, snap)
		case i%3 == 0:
			fsm.TestApply(t, f, i, fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "a"})
		default:
			fsm.TestApply(t, f, i, fsm.CreateRequestType, createReq(vm, "a", fmt.Sprint("id", i), nil, vmSpec1))
		}
	}
	cancel()
	wg.Wait()
}

// TestPropertyEventBuffer checks EventBuffer against a model that keeps
// every event: after random appends (several events may share an index)
// and resets, Since(after, 0) returns exactly the retained events after
// `after`, or a reset when some of them are gone; Since(after, max) returns
// a prefix of that.
func TestPropertyEventBuffer(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		size := rapid.IntRange(1, 8).Draw(t, "size")
		b := fsm.NewEventBuffer(size)
		var all []resource.Event // every event since the last reset
		var floor, index uint64
		t.Repeat(map[string]func(*rapid.T){
			"append": func(t *rapid.T) {
				var evs []resource.Event
				for range rapid.IntRange(0, 4).Draw(t, "entries") {
					index += rapid.Uint64Range(1, 3).Draw(t, "gap")
					for range rapid.IntRange(1, 3).Draw(t, "events") {
						evs = append(evs, ev(index, fmt.Sprint(len(all)+len(evs))))
					}
				}
				_, _, _, wait := b.Since(index, 0)
				b.Append(evs)
				if len(evs) > 0 != isClosed(wait) {
					t.Fatalf("appending %d events: wait closed = %v", len(evs), isClosed(wait))
				}
				all = append(all, evs...)
				if drop := len(all) - size; drop > 0 {
					floor = all[drop-1].Index
					all = all[drop:]
				}
			},
			"reset": func(t *rapid.T) {
				index += rapid.Uint64Range(0, 3).Draw(t, "gap")
				b.Reset(index)
				all, floor = nil, index
			},
			"": func(t *rapid.T) {
				for after := uint64(0); after <= index+1; after++ {
					evs, reset, gotFloor, _ := b.Since(after, 0)
					if after < floor {
						if !reset || gotFloor != floor || len(evs) != 0 {
							t.Fatalf("Since(%d): reset=%v floor=%d %v, want a reset at %d", after, reset, gotFloor, evNames(evs), floor)
						}
						continue
					}
					var want []resource.Event
					for _, e := range all {
						if e.Index > after {
							want = append(want, e)
						}
					}
					if reset || gotFloor != floor || evNames(evs) != evNames(want) {
						t.Fatalf("Since(%d) = %q reset=%v floor=%d, want %q floor=%d", after, evNames(evs), reset, gotFloor, evNames(want), floor)
					}
					m := rapid.IntRange(1, 4).Draw(t, "max")
					part, _, _, _ := b.Since(after, m)
					// At least max events (or all), and a prefix of the full
					// answer. Whether it may run past max to end on an index
					// boundary: TestEventBufferSinceMaxKeepsIndexWhole.
					if len(part) < min(m, len(want)) || len(part) > len(want) || evNames(part) != evNames(want[:len(part)]) {
						t.Fatalf("Since(%d, %d) = %q, want a prefix of %q with at least %d events", after, m, evNames(part), evNames(want), m)
					}
				}
			},
		})
	})
}
