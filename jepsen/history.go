package jepsen

import (
	"math"
	"sync"
	"time"
)

// Status is how an operation ended.
type Status string

// Operation outcomes. An Unknown write may or may not have taken effect
// (timeout, broken connection, 503 without Retry-After): the checker lets
// it take effect at any time after its invocation, or never.
const (
	StatusOK      Status = "ok"
	StatusFail    Status = "fail"
	StatusUnknown Status = "unknown"
)

// Op is one operation of a history. Times are nanoseconds since the start
// of the run; an Unknown operation's Return is math.MaxInt64 (+∞) for the
// checker, and its real end is in Ended.
type Op struct {
	Process int    `json:"process"`
	Kind    string `json:"kind"` // read, write, cas, create, list
	Key     string `json:"key,omitempty"`
	Input   Value  `json:"input"`
	Output  Value  `json:"output"`
	Status  Status `json:"status"`
	Error   string `json:"error,omitempty"`
	Invoke  int64  `json:"invoke_ns"`
	Return  int64  `json:"return_ns"`
	Ended   int64  `json:"ended_ns"`
}

// Value is the argument or result of an operation.
type Value struct {
	Value string `json:"value,omitempty"`
	Old   string `json:"old,omitempty"` // cas: the value the write was based on
}

// History records operations from concurrent clients.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewHistory starts a history at start.
func NewHistory(start time.Time) *History { return &History{start: start} }

// Now is the time since the start of the history, in nanoseconds.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records op (its Invoke must be set) as ending now with status.
func (h *History) Add(op Op, st Status, err error) {
	op.Ended = h.Now()
	op.Return = op.Ended
	op.Status = st
	if st == StatusUnknown {
		op.Return = math.MaxInt64
	}
	if err != nil {
		op.Error = err.Error()
	}
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of the operations recorded so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Counts are the numbers of operations by outcome.
type Counts struct {
	OK      int `json:"ok"`
	Fail    int `json:"fail"`
	Unknown int `json:"unknown"`
}

// Count counts ops by status.
func Count(ops []Op) Counts {
	var c Counts
	for _, op := range ops {
		switch op.Status {
		case StatusOK:
			c.OK++
		case StatusFail:
			c.Fail++
		case StatusUnknown:
			c.Unknown++
		}
	}
	return c
}
