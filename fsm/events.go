package fsm

import (
	"sort"
	"sync"

	"github.com/kumoi/kumoi/resource"
)

// EventBuffer keeps the most recent events in a ring so that /v1/events
// readers can resume by index. It is derived from applied log entries and is
// not replicated: after a restore (or once events fall out of the ring) a
// reader that asks for older events is told to reset.
type EventBuffer struct {
	mu     sync.Mutex
	ring   []resource.Event
	start  int // position of the oldest event
	n      int // number of events held
	floor  uint64
	notify chan struct{}
}

// NewEventBuffer returns a buffer holding up to size events (at least 1).
func NewEventBuffer(size int) *EventBuffer {
	size = max(size, 1)
	return &EventBuffer{ring: make([]resource.Event, size), notify: make(chan struct{})}
}

func (b *EventBuffer) at(i int) *resource.Event { return &b.ring[(b.start+i)%len(b.ring)] }

// Append adds events (in index order) and wakes waiting readers.
func (b *EventBuffer) Append(evs []resource.Event) {
	if len(evs) == 0 {
		return
	}
	b.mu.Lock()
	for _, ev := range evs {
		if b.n == len(b.ring) {
			b.floor = b.at(0).Index
			b.start = (b.start + 1) % len(b.ring)
			b.n--
		}
		*b.at(b.n) = ev
		b.n++
	}
	ch := b.notify
	b.notify = make(chan struct{})
	b.mu.Unlock()
	close(ch)
}

// Reset drops every event; readers asking for anything at or before index
// are told to reset. Used after a snapshot restore.
func (b *EventBuffer) Reset(index uint64) {
	b.mu.Lock()
	b.start, b.n, b.floor = 0, 0, index
	clear(b.ring)
	ch := b.notify
	b.notify = make(chan struct{})
	b.mu.Unlock()
	close(ch)
}

// Since returns up to max events with Index > after (more when the last
// index has more events: an index's events are returned together). reset is true when
// events after `after` are no longer all retained: the reader must re-list
// and resume from floor. wait is closed when new events arrive.
func (b *EventBuffer) Since(after uint64, max int) (evs []resource.Event, reset bool, floor uint64, wait <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if after < b.floor {
		return nil, true, b.floor, b.notify
	}
	i := sort.Search(b.n, func(i int) bool { return b.at(i).Index > after })
	for ; i < b.n; i++ {
		ev := b.at(i)
		// Never split one index's events (a batch) across pages: a
		// reader resumes with "after = last index seen".
		if max > 0 && len(evs) >= max && ev.Index != evs[len(evs)-1].Index {
			break
		}
		evs = append(evs, *ev)
	}
	return evs, false, b.floor, b.notify
}
