package api

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-memdb"
)

// readParams are the consistency and blocking parameters of a read.
type readParams struct {
	stale bool          // answer from local state, on any node
	index uint64        // block until the answer's index exceeds this
	wait  time.Duration // for at most this long (when index > 0)
}

func parseStale(q url.Values) (bool, error) {
	if !q.Has("stale") {
		return false, nil
	}
	v := q.Get("stale")
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badArg("stale", "stale must be true or false (or given without a value), not %q", v)
	}
	return b, nil
}

func (a *httpAPI) parseRead(q url.Values) (readParams, error) {
	var p readParams
	var err error
	if p.stale, err = parseStale(q); err != nil {
		return p, err
	}
	if q.Has("index") {
		if p.index, err = strconv.ParseUint(q.Get("index"), 10, 64); err != nil {
			return p, badArg("index", "index must be a non-negative integer (an X-Kumoi-Index value), not %q", q.Get("index"))
		}
	}
	p.wait = a.defWait
	if q.Has("wait") {
		if p.wait, err = a.parseWait(q.Get("wait")); err != nil {
			return p, err
		}
	}
	return p, nil
}

// parseWait reads a Go duration ("30s", "5m") or plain seconds ("30"),
// capped at a.maxWait.
func (a *httpAPI) parseWait(s string) (time.Duration, error) {
	bad := badArg("wait", "wait must be a positive duration such as 30s or 5m, or plain seconds such as 30 (at most %s), not %q", a.maxWait, s)
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, bad
		}
		if f > a.maxWait.Seconds() {
			return a.maxWait, nil
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d <= 0 {
		return 0, bad
	}
	return min(d, a.maxWait), nil
}

func parseCAS(q url.Values) (uint64, error) {
	if !q.Has("cas") {
		return 0, nil
	}
	n, err := strconv.ParseUint(q.Get("cas"), 10, 64)
	if err != nil || n == 0 {
		return 0, badArg("cas", "cas must be a positive integer, the modify_index the object must still have, not %q", q.Get("cas"))
	}
	return n, nil
}

// onLeader runs fn if this node leads and forwards the request (with body)
// to the leader otherwise. fn returning an ErrNotLeader before it wrote
// anything (leadership moved mid-request; nothing was proposed) forwards
// once too.
func (a *httpAPI) onLeader(w http.ResponseWriter, r *http.Request, body []byte, fn func() error) error {
	if !a.b.IsLeader() {
		return a.forward(w, r, body)
	}
	// Served here: checked here (auth.go).
	if err := a.authorize(r); err != nil {
		return err
	}
	err := fn()
	if isNotLeader(err) {
		return a.forward(w, r, body)
	}
	return err
}

// read serves a read with the consistency p asks for: linearizable on the
// leader (forwarding if needed), or from local state with ?stale.
func (a *httpAPI) read(w http.ResponseWriter, r *http.Request, p readParams, serve func() error) error {
	if p.index > 0 {
		release, err := a.blocking.acquire()
		if err != nil {
			return err
		}
		defer release()
	}
	if p.stale || a.unsafe {
		if err := a.authorize(r); err != nil {
			return err
		}
		return serve()
	}
	return a.onLeader(w, r, nil, func() error {
		if err := a.b.ConsistentRead(r.Context()); err != nil {
			return err
		}
		return serve()
	})
}

// blockingQuery runs query once, or — with ?index — until the index it
// returns exceeds p.index or p.wait (plus up to 1/16 jitter) passes. The
// returned index is at least 1, so that it can always be passed back.
func (a *httpAPI) blockingQuery(w http.ResponseWriter, r *http.Request, p readParams, query func(ws memdb.WatchSet) (uint64, error)) (uint64, error) {
	ctx := r.Context()
	if p.index > 0 {
		wait := p.wait
		if j := int64(wait / 16); j > 0 {
			wait += time.Duration(rand.Int64N(j))
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
		// The server's write timeout must not cut a long wait short.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + time.Minute))
	}
	first := true
	idx, err := a.b.FSM().State().BlockingQuery(ctx, p.index, func(ws memdb.WatchSet) (uint64, error) {
		idx, err := query(ws)
		if first && err == nil && p.index > 0 && idx <= p.index && a.onBlock != nil {
			a.onBlock()
		}
		first = false
		return idx, err
	})
	return max(idx, 1), err
}

// setReadHeaders sets X-Kumoi-Index and the consistency headers of a read.
func (a *httpAPI) setReadHeaders(w http.ResponseWriter, p readParams, index uint64) {
	h := w.Header()
	h.Set(headerIndex, strconv.FormatUint(index, 10))
	if !p.stale || a.b.IsLeader() {
		h.Set(headerKnownLeader, "true")
		h.Set(headerLastContact, "0")
		return
	}
	id, _ := a.b.Leader()
	h.Set(headerKnownLeader, strconv.FormatBool(id != ""))
	if ms := a.b.Status().LastContactMS; ms >= 0 {
		h.Set(headerLastContact, strconv.FormatInt(ms, 10))
	}
}
