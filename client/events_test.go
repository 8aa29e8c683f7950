package client_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// eventPuller pulls events from a sequence one at a time.
type eventPuller struct {
	pull   func() (resource.Event, error, bool)
	cancel context.CancelFunc
}

// pullEvents turns seq into a puller. The sequence's context must be
// cancelled by cancel, which the cleanup calls before stopping it.
func pullEvents(tb testing.TB, cancel context.CancelFunc, seq iter.Seq2[resource.Event, error]) *eventPuller {
	pull, stop := iter.Pull2(seq)
	tb.Cleanup(func() { cancel(); stop() })
	return &eventPuller{pull: pull, cancel: cancel}
}

// next pulls one event, failing the test after a deadline.
func next(tb testing.TB, p *eventPuller) resource.Event {
	tb.Helper()
	type res struct {
		ev  resource.Event
		err error
		ok  bool
	}
	ch := make(chan res, 1)
	go func() {
		ev, err, ok := p.pull()
		ch <- res{ev, err, ok}
	}()
	var r res
	select {
	case r = <-ch:
	case <-time.After(10 * time.Second):
		p.cancel()
		<-ch // the pull must end before the cleanup may stop the sequence
		tb.Fatal("timed out waiting for an event")
	}
	if !r.ok || r.err != nil {
		tb.Fatalf("event stream ended: ok=%v err=%v", r.ok, r.err)
	}
	return r.ev
}

func TestEventsResumeAfterReconnect(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// The fake cuts every stream after two events.
	s.StreamLimit.Store(2)
	const n = 7
	for i := range n {
		mustCreate(t, c, fmt.Sprintf("vm-%d", i), nil)
	}
	pull := pullEvents(t, cancel, c.Events(ctx, 0, resource.KindVM))
	for i := range n {
		ev := next(t, pull)
		if ev.Type != resource.EventCreated || ev.Name != fmt.Sprintf("vm-%d", i) || ev.Index != uint64(i+1) {
			t.Fatalf("event %d = %+v; want created vm-%d at index %d", i, ev, i, i+1)
		}
		if ev.Object == nil || ev.Object.Name != ev.Name {
			t.Fatalf("event %d carries object %+v", i, ev.Object)
		}
	}
	// Events that happen later arrive on the (re)connected stream.
	if _, err := c.Delete(ctx, resource.KindVM, "vm-0", nil); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, pull); ev.Type != resource.EventDeleted || ev.Name != "vm-0" || ev.Index != n+1 {
		t.Fatalf("event = %+v; want deleted vm-0", ev)
	}

	var conns int
	for _, r := range s.Requests() {
		if r.Path == "/v1/events" {
			conns++
			if r.Query.Get("kind") != "vm" {
				t.Errorf("events request %s: want kind=vm", r.RawQuery)
			}
		}
	}
	if conns < 4 {
		t.Errorf("%d event connections; want reconnects", conns)
	}
}

func TestEventsSurviveDroppedConnections(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	pull := pullEvents(t, cancel, c.Events(ctx, 0))
	mustCreate(t, c, "a", nil)
	if ev := next(t, pull); ev.Name != "a" {
		t.Fatalf("event = %+v", ev)
	}
	s.CloseClientConnections()
	s.Unavailable.Store(2) // and the controller has no leader for a moment
	s.Put(t, resource.KindHost, "h1", nil, resource.HostSpec{}, nil)
	if ev := next(t, pull); ev.Kind != resource.KindHost || ev.Name != "h1" || ev.Index != 2 {
		t.Fatalf("event = %+v; want host h1 at index 2", ev)
	}
}

func TestEventsMultipleKindsFilteredByClient(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	s.Put(t, resource.KindHost, "h1", nil, resource.HostSpec{}, nil)
	mustCreate(t, c, "a", nil)
	pull := pullEvents(t, cancel, c.Events(ctx, 0, resource.KindHost, resource.KindVM))
	s.Put(t, resource.KindHost, "h2", nil, resource.HostSpec{}, nil)
	for _, want := range []string{"host/h1", "vm/a", "host/h2"} {
		if ev := next(t, pull); string(ev.Kind)+"/"+ev.Name != want {
			t.Fatalf("event = %+v; want %s", ev, want)
		}
	}
	for _, r := range s.Requests() {
		if r.Path == "/v1/events" && strings.Join(r.Query["kind"], ",") != "host,vm" {
			t.Errorf("events request %s: want kind=host&kind=vm", r.RawQuery)
		}
	}
}

func TestEventsBatchResumedMidIndex(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// Index 1 carries three events and index 2 two; the first stream
	// breaks after four events, in the middle of index 2.
	s.CreateBatch(t, resource.VMSpec{CPUs: 1, MemoryMiB: 1}, "a", "b", "c")
	s.CreateBatch(t, resource.VMSpec{CPUs: 1, MemoryMiB: 1}, "d", "e")
	s.StreamLimit.Store(4)
	pull := pullEvents(t, cancel, c.Events(ctx, 0))
	var got []string
	for range 5 {
		ev := next(t, pull)
		got = append(got, fmt.Sprintf("%d:%s", ev.Index, ev.Name))
	}
	if want := "1:a 1:b 1:c 2:d 2:e"; strings.Join(got, " ") != want {
		t.Fatalf("events = %v; want %s", got, want)
	}
	mustCreate(t, c, "f", nil)
	if ev := next(t, pull); ev.Name != "f" || ev.Index != 3 {
		t.Fatalf("event = %+v; want f at 3", ev)
	}
	var from []string
	for _, r := range s.Requests() {
		if r.Path == "/v1/events" {
			from = append(from, r.Query.Get("index"))
		}
	}
	// The second stream starts before index 2, whose events were not all
	// delivered, and skips the one that was.
	if strings.Join(from, ",") != "0,1" {
		t.Errorf("streams started at index %v; want 0, then 1", from)
	}
}

func TestEventsHeartbeatsAndIdleStreams(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := testapi.New(t)
	c, err := client.New(client.Config{Addrs: []string{s.URL}, EventIdleTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	conns := func() int { return countRequests(s, "GET", "/v1/events") }

	// A silent stream is taken for dead and reconnected.
	events := make(chan resource.Event, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range c.Events(ctx, 0) {
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	testcluster.WaitFor(t, 10*time.Second, "a reconnect of the silent stream", func() (bool, error) { return conns() >= 2, nil })

	// Heartbeats keep it alive, and are not delivered.
	s.Heartbeat.Store(int64(50 * time.Millisecond))
	s.CloseClientConnections()
	testcluster.WaitFor(t, 10*time.Second, "a stream with heartbeats", func() (bool, error) { return s.Heartbeats.Load() > 0, nil })
	before := conns()
	beats := s.Heartbeats.Load()
	testcluster.WaitFor(t, 10*time.Second, "heartbeats for twice the idle timeout", func() (bool, error) { return s.Heartbeats.Load() >= beats+12, nil })
	if n := conns(); n != before {
		t.Errorf("%d reconnects despite heartbeats", n-before)
	}
	mustCreate(t, c, "a", nil)
	select {
	case ev := <-events:
		if ev.Type != resource.EventCreated || ev.Name != "a" {
			t.Fatalf("event = %+v; want created a (heartbeats are not delivered)", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the event")
	}
}

func TestEventsReset(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	mustCreate(t, c, "a", nil)
	mustCreate(t, c, "b", nil)
	s.Compact()
	pull := pullEvents(t, cancel, c.Events(ctx, 0, resource.KindVM))
	if ev := next(t, pull); ev.Type != resource.EventReset || ev.Index != 2 {
		t.Fatalf("event = %+v; want reset at 2", ev)
	}
	mustCreate(t, c, "c", nil)
	if ev := next(t, pull); ev.Name != "c" || ev.Index != 3 {
		t.Fatalf("event = %+v; want c at 3", ev)
	}
}

func TestEventsStopOnCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())

	t.Run("connected", func(t *testing.T) {
		s := testapi.New(t)
		c := newClient(t, s.URL)
		pull := pullEvents(t, cancel, c.Events(ctx, 0))
		mustCreate(t, c, "a", nil)
		next(t, pull)
		cancel()
		_, err, ok := pull.pull()
		if !ok || !errors.Is(err, context.Canceled) {
			t.Fatalf("after cancel: ok=%v err=%v; want context.Canceled", ok, err)
		}
		if _, _, ok := pull.pull(); ok {
			t.Fatal("sequence continued after its error")
		}
	})

	t.Run("reconnecting", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		c := newClient(t, testapi.DeadAddr(t))
		var err error
		for _, e := range c.Events(ctx, 0) {
			err = e
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v; want context.DeadlineExceeded", err)
		}
	})

	t.Run("consumer breaks", func(t *testing.T) {
		s := testapi.New(t)
		c := newClient(t, s.URL)
		mustCreate(t, c, "a", nil)
		mustCreate(t, c, "b", nil)
		n := 0
		for _, err := range c.Events(context.Background(), 0) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == 1 {
				break
			}
		}
	})
}

func TestEventsPermanentError(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	c := newClient(t, s.URL)
	var got error
	for _, err := range c.Events(context.Background(), 0, "nosuchkind") {
		got = err
	}
	if !errors.Is(got, resource.ErrInvalid) {
		t.Fatalf("err = %v; want invalid argument", got)
	}
	var apiErr *client.APIError
	if !errors.As(got, &apiErr) || apiErr.Field != "kind" {
		t.Fatalf("err = %#v", got)
	}
}
