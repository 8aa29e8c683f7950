package driverutil

import (
	"fmt"
	"sync"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
)

// DefaultQueueLimit is how many undelivered events a Queue keeps before it
// drops them all for one EventResync.
const DefaultQueueLimit = 16384

// Queue decouples a driver from the consumer of its events: Push never
// blocks, and a goroutine feeds the channel C in order. When more than limit
// events wait, the queue drops them all and queues one EventResync, which
// tells the consumer to List instead.
type Queue struct {
	out  chan hypervisor.Event
	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	buf     []hypervisor.Event
	gen     uint64 // bumped whenever buf is cleared
	limit   int
	dropped int
	closed  bool
}

// NewQueue starts a queue. limit <= 0 means DefaultQueueLimit.
func NewQueue(limit int) *Queue {
	if limit <= 0 {
		limit = DefaultQueueLimit
	}
	q := &Queue{
		out:   make(chan hypervisor.Event),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		limit: limit,
	}
	q.wg.Add(1)
	go q.run()
	return q
}

// C is the consumer's channel; it is closed by Close.
func (q *Queue) C() <-chan hypervisor.Event { return q.out }

// Push queues e. It never blocks; after Close it drops e.
func (q *Queue) Push(e hypervisor.Event) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if len(q.buf) >= q.limit {
		q.dropped += len(q.buf)
		q.buf = append(q.buf[:0], hypervisor.Event{
			Time:   time.Now(),
			Kind:   hypervisor.EventResync,
			Reason: fmt.Sprintf("event queue overflow: %d events dropped", q.dropped),
		})
		q.gen++
	}
	q.buf = append(q.buf, e)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Dropped is how many events overflow has discarded so far.
func (q *Queue) Dropped() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// Close stops delivery and closes C. Events still queued are discarded.
func (q *Queue) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.buf = nil
	q.mu.Unlock()
	close(q.done)
	q.wg.Wait()
}

func (q *Queue) run() {
	defer q.wg.Done()
	defer close(q.out)
	for {
		q.mu.Lock()
		if len(q.buf) == 0 {
			q.mu.Unlock()
			select {
			case <-q.wake:
				continue
			case <-q.done:
				return
			}
		}
		e, gen := q.buf[0], q.gen
		q.mu.Unlock()
		select {
		case q.out <- e:
			q.mu.Lock()
			if q.gen == gen && len(q.buf) > 0 {
				q.buf[0] = hypervisor.Event{}
				q.buf = q.buf[1:]
			}
			q.mu.Unlock()
		case <-q.done:
			return
		}
	}
}
