package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kumoi/kumoi/fsm"
)

// Creates coalesced into one log entry (log protocol 12, fsm/creates.go).
// Each create was an entry of its own: Raft stored, sent, decoded and
// handed to the state machine one entry per create, on every server. The
// leader now proposes at most coalesceWindow entries of creates at a
// time; creates that arrive while they are in flight wait, and the next
// entry carries all of them (up to coalesceMaxItems or coalesceMaxBytes),
// as a database's group commit does. A create that finds no entry in
// flight is proposed at once, on its own, as before: one writer waits no
// longer than it did. Each create keeps its own outcome (the state
// machine applies each as if it were an entry of its own), and a failure
// of the entry (no longer the leader, shutting down) is every create's.

// coalesceWindow is how many entries of creates may be in flight at once
// (a variable for tests and measurements). One measured best on a 2-core
// machine at 128 writers (docs/benchmarks.md): +12% writes/s over one
// entry per create, where two gave +5% and four +3%; at 1 and 16 writers
// no change.
var coalesceWindow = 1

const (
	// coalesceMaxItems and coalesceMaxBytes bound one entry of creates
	// (fsm.MaxBatchOps is the state machine's bound).
	coalesceMaxItems = 1024
	coalesceMaxBytes = 1 << 20
)

// coalescer gathers the creates this leader proposes.
type coalescer struct {
	c        *Controller
	mu       sync.Mutex
	queue    []*proposal // waiting for an entry
	inflight int         // entries proposed and not yet answered
}

// proposal is one create waiting for its entry's outcome.
type proposal struct {
	data     []byte        // its create-bin entry
	deadline time.Time     // its caller's (the controller's apply timeout at most)
	done     chan struct{} // closed when res or err is set
	res      *fsm.Result
	err      error
}

// apply proposes data, a create-bin entry, and waits until it is applied
// here (or fails): Controller.Apply for creates once every server speaks
// protocol 12.
func (q *coalescer) apply(data []byte, timeout time.Duration) (*fsm.Result, error) {
	p := &proposal{data: data, deadline: time.Now().Add(timeout), done: make(chan struct{})}
	q.mu.Lock()
	q.queue = append(q.queue, p)
	batches := q.startLocked()
	q.mu.Unlock()
	for i := 1; i < len(batches); i++ {
		go q.propose(batches[i])
	}
	if len(batches) > 0 {
		q.propose(batches[0]) // p's entry, or one before it
	}
	select {
	case <-p.done:
		return p.res, p.err
	case <-q.c.shutdownCh:
		return nil, ErrShuttingDown
	}
}

// startLocked takes every entry that may be proposed now.
func (q *coalescer) startLocked() [][]*proposal {
	var out [][]*proposal
	for b := q.takeLocked(); b != nil; b = q.takeLocked() {
		out = append(out, b)
	}
	return out
}

// takeLocked returns the next entry's creates, when the queue has some
// and fewer than coalesceWindow entries are in flight (counting it in).
func (q *coalescer) takeLocked() []*proposal {
	if len(q.queue) == 0 || q.inflight >= coalesceWindow {
		return nil
	}
	n, size := 0, 0
	for n < len(q.queue) && n < coalesceMaxItems {
		size += len(q.queue[n].data)
		if n > 0 && size > coalesceMaxBytes {
			break
		}
		n++
	}
	batch := q.queue[:n:n]
	q.queue = q.queue[n:]
	if len(q.queue) == 0 {
		q.queue = nil // let the array go
	}
	q.inflight++
	return batch
}

// propose proposes batch as one entry (a lone create as itself), answers
// each of its creates, and starts the next entry if creates wait. A create
// whose caller's deadline passed while it waited is answered so, and not
// proposed (as Apply does with an expired context).
func (q *coalescer) propose(batch []*proposal) {
	now := time.Now()
	live := batch[:0:0]
	for _, p := range batch {
		if !p.deadline.After(now) {
			p.err = context.DeadlineExceeded
			close(p.done)
			continue
		}
		live = append(live, p)
	}
	batch = live
	var res *fsm.Result
	var err error
	if len(batch) > 0 {
		res, err = q.c.proposeEntry(batch)
	}
	for i, p := range batch {
		switch {
		case err != nil:
			p.err = err
		case len(batch) == 1:
			p.res = res
		case res.Subs == nil:
			// The entry halted the state machine: none was applied.
			p.res = &fsm.Result{Index: res.Index, Err: res.Err}
		default:
			p.res = res.Subs[i]
		}
		close(p.done)
	}
	q.mu.Lock()
	q.inflight--
	next := q.startLocked()
	q.mu.Unlock()
	for _, b := range next {
		go q.propose(b)
	}
}

// proposeEntry proposes batch's creates as one entry and returns its
// Result once applied here.
func (c *Controller) proposeEntry(batch []*proposal) (*fsm.Result, error) {
	data, deadline := batch[0].data, batch[0].deadline
	if len(batch) > 1 {
		entries := make([][]byte, len(batch))
		for i, p := range batch {
			entries[i] = p.data
			if p.deadline.Before(deadline) {
				deadline = p.deadline
			}
		}
		var err error
		if data, err = fsm.EncodeCreates(entries); err != nil {
			return nil, err
		}
	}
	f := c.raft.Apply(data, max(time.Until(deadline), time.Millisecond))
	if err := c.waitFuture(nil, f); err != nil {
		return nil, mapRaftError(err)
	}
	res, ok := f.Response().(*fsm.Result)
	switch {
	case !ok:
		return nil, fmt.Errorf("unexpected apply response %T", f.Response())
	case len(batch) > 1 && res.Subs != nil && len(res.Subs) != len(batch):
		return nil, fmt.Errorf("an entry of %d creates answered for %d", len(batch), len(res.Subs))
	}
	return res, nil
}
