package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// Reconnect backoff of an event stream.
const (
	minStreamBackoff = 100 * time.Millisecond
	maxStreamBackoff = 5 * time.Second
)

// Events streams the changes after index since (GET /v1/events), of the
// given kinds (all kinds when none are given), in index order:
//
//	for ev, err := range c.Events(ctx, meta.Index, resource.KindVM) {
//		if err != nil {
//			return err
//		}
//		...
//	}
//
// Pass since = 0 to replay every event the controllers still retain, or the
// QueryMeta.Index of a List to follow the changes after it.
//
// The stream survives controller failures: on a transport error, a 503, a
// stream silent for longer than Config.EventIdleTimeout (controllers send
// heartbeats, which are not yielded) or the server closing the stream (as a
// leader does when it steps down) it reconnects, to the next controller and
// with backoff, and resumes after the last event it delivered, without gaps
// or duplicates, also when one index carries several events. When the
// server no longer has the events asked for it delivers an event of type
// resource.EventReset: re-list the objects; the stream then continues after
// the reset's Index.
//
// The sequence ends when the consumer stops, or after yielding one error:
// ctx.Err() once ctx is done, or a permanent error such as a 400 for an
// unknown kind.
func (c *Client) Events(ctx context.Context, since uint64, kinds ...resource.Kind) iter.Seq2[resource.Event, error] {
	return func(yield func(resource.Event, error) bool) {
		s := &eventStream{c: c, last: since, kinds: kinds}
		backoff := minStreamBackoff
		for {
			delivered, err := s.run(ctx, yield)
			if errors.Is(err, errStopped) {
				return
			}
			if ctx.Err() != nil {
				yield(resource.Event{}, ctx.Err())
				return
			}
			if !transient(err) {
				yield(resource.Event{}, err)
				return
			}
			if delivered {
				backoff = minStreamBackoff
			}
			if sleep(ctx, backoff) != nil {
				yield(resource.Event{}, ctx.Err())
				return
			}
			backoff = min(2*backoff, maxStreamBackoff)
		}
	}
}

// eventStream is the resume position of an Events sequence. One Raft index
// may carry several events, so the position is the last index delivered and
// how many of its events were delivered: a reconnect asks for the events
// after last-1 and skips those.
type eventStream struct {
	c      *Client
	kinds  []resource.Kind
	last   uint64 // index of the last event delivered
	seenAt int    // events with index == last already delivered
}

// run reads one connection's worth of events. It reports whether it
// delivered any, and why it ended (errStopped: the consumer stopped).
func (s *eventStream) run(ctx context.Context, yield func(resource.Event, error) bool) (bool, error) {
	from, skip := s.last, 0
	if s.seenAt > 0 && s.last > 0 {
		from, skip = s.last-1, s.seenAt
	}
	q := url.Values{}
	q.Set("index", strconv.FormatUint(from, 10))
	for _, k := range s.kinds {
		q.Add("kind", string(k))
	}
	// A stream that stays silent longer than the heartbeat period is dead
	// (a paused or partitioned controller): cancel it and reconnect.
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(s.c.idleTimeout, func() { cancel(errStreamIdle) })
	defer idle.Stop()
	resp, err := s.c.do(sctx, &request{method: http.MethodGet, path: "/v1/events", query: q, idempotent: true, stream: true})
	if err != nil {
		return false, streamErr(sctx, err)
	}
	defer resp.Body.Close()

	delivered := false
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		idle.Reset(s.c.idleTimeout)
		if len(line) > 0 && !isBlank(line) {
			var ev resource.Event
			if jerr := json.Unmarshal(line, &ev); jerr != nil {
				return delivered, &malformedEventError{err: jerr}
			}
			if !s.admit(ev, &skip) {
				continue
			}
			delivered = true
			if !yield(ev, nil) {
				return delivered, errStopped
			}
		}
		if err != nil {
			if err == io.EOF {
				return delivered, errStreamEnded
			}
			return delivered, streamErr(sctx, err)
		}
	}
}

// admit moves the stream's position past ev and reports whether ev is to
// be delivered: not a heartbeat, not one delivered before the reconnect
// (*skip counts those still to come at the resume index), and of a kind
// asked for.
func (s *eventStream) admit(ev resource.Event, skip *int) bool {
	switch {
	case ev.Type == eventHeartbeat:
		// The stream has reached ev.Index: every event up to it was
		// delivered whole.
		if ev.Index >= s.last {
			s.last, s.seenAt, *skip = ev.Index, 0, 0
		}
		return false
	case ev.Type == resource.EventReset:
		s.last, s.seenAt, *skip = ev.Index, 0, 0
	case ev.Index < s.last || (ev.Index == s.last && *skip > 0):
		// Already delivered before the reconnect.
		if ev.Index == s.last {
			*skip--
		}
		return false
	case ev.Index == s.last:
		s.seenAt++
	default:
		s.last, s.seenAt, *skip = ev.Index, 1, 0
	}
	// The server filters kinds too; this is a safety net.
	return ev.Type == resource.EventReset || len(s.kinds) == 0 || slices.Contains(s.kinds, ev.Kind)
}

// eventHeartbeat is the type of the keep-alive lines of an idle stream.
const eventHeartbeat = "heartbeat"

var (
	errStreamEnded = errors.New("event stream closed by the server")
	errStreamIdle  = errors.New("event stream silent for too long")
)

// streamErr reports the idle watchdog as the cause of a broken stream.
func streamErr(sctx context.Context, err error) error {
	if cause := context.Cause(sctx); errors.Is(cause, errStreamIdle) {
		return cause
	}
	return err
}

// malformedEventError is a line of the stream that is not an event: a
// server bug that reconnecting would only repeat.
type malformedEventError struct{ err error }

func (e *malformedEventError) Error() string {
	return fmt.Sprintf("GET /v1/events: malformed event: %v", e.err)
}

func (e *malformedEventError) Unwrap() error { return e.err }

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// transient reports whether an event stream should reconnect after err.
func transient(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode >= 500
	}
	var bad *malformedEventError
	return !errors.As(err, &bad)
}
