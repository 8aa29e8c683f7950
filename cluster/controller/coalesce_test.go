package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// entryTypes counts the types of the command entries of c's log in
// (from, to].
func entryTypes(t *testing.T, c *Controller, from, to uint64) map[fsm.MessageType]int {
	t.Helper()
	out := map[fsm.MessageType]int{}
	for i := from + 1; i <= to; i++ {
		var l raft.Log
		if err := c.parts.logs.GetLog(i, &l); err != nil {
			t.Fatalf("log entry %d: %v", i, err)
		}
		if l.Type == raft.LogCommand && len(l.Data) > 0 {
			out[fsm.MessageType(l.Data[0])]++
		}
	}
	return out
}

// TestCoalescedCreates: creates that arrive together are proposed in fewer
// entries than creates (creates-bin entries), each gets its own outcome
// (its object, or its error when another create of the same entry took
// the name), every replica applies them all, and a create alone is an
// entry of its own.
func TestCoalescedCreates(t *testing.T) {
	ic := newInmemCluster(t, 3)
	li := ic.leader(t)
	c := ic.ctrls[li]
	ctx := context.Background()
	before := c.raft.LastIndex()

	const n, dups = 300, 40
	start := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]*fsm.Result, n+dups)
	errs := make([]error, n+dups)
	for i := range n + dups {
		name := fmt.Sprintf("vm-%d", i)
		if i >= n {
			name = "dup" // all of these but one are refused
		}
		wg.Go(func() {
			<-start
			results[i], errs[i] = createVM(ctx, c, name)
		})
	}
	close(start)
	wg.Wait()

	won := 0
	for i := range n + dups {
		switch {
		case i < n && errs[i] != nil:
			t.Fatalf("create %d: %v", i, errs[i])
		case i < n:
			if o := results[i].Objects; len(o) != 1 || o[0].Name != fmt.Sprintf("vm-%d", i) || o[0].CreateIndex != results[i].Index {
				t.Fatalf("create %d answered with %+v at %d", i, o, results[i].Index)
			}
		case errs[i] == nil:
			won++
		case !errors.Is(errs[i], fsm.ErrExists):
			t.Fatalf("create %d of dup: %v, want exists", i, errs[i])
		}
	}
	if won != 1 {
		t.Fatalf("%d creates of dup succeeded, want 1", won)
	}
	after := c.raft.LastIndex()
	types := entryTypes(t, c, before, after)
	if types[fsm.CreatesBinRequestType] == 0 || int(after-before) >= n+dups {
		t.Fatalf("%d creates took %d entries (%v): none coalesced", n+dups, after-before, types)
	}
	t.Logf("%d creates in %d entries: %v", n+dups, after-before, types)

	// Every replica applies every create.
	for i, r := range ic.ctrls {
		testcluster.WaitFor(t, 5*time.Second, fmt.Sprintf("controller %d applies the creates", i), func() (bool, error) {
			return r.fsm.State().Count(resource.KindVM) == n+1, nil
		})
	}

	// A create alone is an entry of its own.
	last := c.raft.LastIndex()
	if _, err := createVM(ctx, c, "alone"); err != nil {
		t.Fatal(err)
	}
	if types := entryTypes(t, c, last, c.raft.LastIndex()); types[fsm.CreateBinRequestType] != 1 || types[fsm.CreatesBinRequestType] != 0 {
		t.Fatalf("a lone create was proposed as %v", types)
	}
}

// TestCoalescedCreatesNotLeader: creates waiting for an entry on a node
// that stops being the leader fail as a create on a follower does (not
// leader, or leadership lost: may or may not be applied), and every create
// acknowledged, before or during the step-down, is on the new leader.
func TestCoalescedCreatesNotLeader(t *testing.T) {
	ic := newInmemCluster(t, 3)
	li := ic.leader(t)
	c := ic.ctrls[li]
	ctx := context.Background()
	const first, n = 50, 150
	wave := func(from, to int, during func()) []error {
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, to-from)
		for i := from; i < to; i++ {
			wg.Go(func() {
				<-start
				_, errs[i-from] = createVM(ctx, c, fmt.Sprintf("vm-%d", i))
			})
		}
		close(start)
		if during != nil {
			during()
		}
		wg.Wait()
		return errs
	}
	// The first creates are acknowledged; the leader is cut off while
	// the others wait for their entries.
	for i, err := range wave(0, first, nil) {
		if err != nil {
			t.Fatalf("create %d before the step-down: %v", i, err)
		}
	}
	errs := wave(first, n, func() { ic.isolate(li) })
	ic.heal()
	nl := ic.leader(t)
	acked := first
	for i, err := range errs {
		switch {
		case err == nil:
			acked++
			if _, gerr := ic.ctrls[nl].fsm.State().Get(nil, resource.KindVM, fmt.Sprintf("vm-%d", first+i)); gerr != nil {
				t.Errorf("acknowledged create %d lost: %v", first+i, gerr)
			}
		case !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrLeadershipLost):
			t.Errorf("create %d: %v", first+i, err)
		}
	}
	for i := range first {
		if _, err := ic.ctrls[nl].fsm.State().Get(nil, resource.KindVM, fmt.Sprintf("vm-%d", i)); err != nil {
			t.Errorf("acknowledged create %d lost: %v", i, err)
		}
	}
	if got := ic.ctrls[nl].fsm.State().Count(resource.KindVM); got < acked || got > n {
		t.Fatalf("%d VMs after %d acknowledged creates of %d", got, acked, n)
	}
	t.Logf("%d of %d creates acknowledged across the step-down", acked, n)
}

// TestCoalescedCreatesExpired: a create whose deadline passed while it
// waited for its entry is answered so and never proposed.
func TestCoalescedCreatesExpired(t *testing.T) {
	ic := newInmemCluster(t, 3)
	c := ic.ctrls[ic.leader(t)]
	q := c.coalesce
	p := &proposal{data: fsm.EncodeCreateBin("", &fsm.CreateRequest{Kind: resource.KindVM, Name: "late", ID: "x"}),
		deadline: time.Now().Add(-time.Millisecond), done: make(chan struct{})}
	q.mu.Lock()
	q.inflight++ // as takeLocked counts it
	q.mu.Unlock()
	before := c.raft.LastIndex()
	q.propose([]*proposal{p})
	<-p.done
	if !errors.Is(p.err, context.DeadlineExceeded) || c.raft.LastIndex() != before {
		t.Fatalf("expired create: %v, log %d -> %d", p.err, before, c.raft.LastIndex())
	}
	if q.inflight != 0 {
		t.Fatalf("%d entries in flight after", q.inflight)
	}
}
