package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// eventsBatch bounds how many events one pass over the buffer copies.
const eventsBatch = 256

// events: GET /v1/events[?index=N][&kind=K...][&stale]
//
// An NDJSON stream of resource.Event, one per line, starting after index N
// (without ?index: after the current latest index, i.e. only new events).
func (a *httpAPI) events(w http.ResponseWriter, r *http.Request) error {
	q, err := apiQuery(r, "index", "kind*", "stale")
	if err != nil {
		return err
	}
	release, err := a.streams.acquire()
	if err != nil {
		return err
	}
	defer release()
	stale, err := parseStale(q)
	if err != nil {
		return err
	}
	var after uint64
	hasIndex := q.Has("index")
	if hasIndex {
		if after, err = strconv.ParseUint(q.Get("index"), 10, 64); err != nil {
			return badArg("index", "index must be a non-negative integer (the index of the last event you saw), not %q", q.Get("index"))
		}
	}
	kinds, err := parseKinds(q["kind"])
	if err != nil {
		return err
	}
	stream := func() error {
		if !hasIndex {
			after = a.b.FSM().State().LatestIndex()
		}
		return a.streamEvents(w, r, stale, after, kinds)
	}
	if stale {
		if err := a.authorize(r); err != nil {
			return err
		}
		return stream()
	}
	return a.onLeader(w, r, nil, func() error {
		if err := a.b.ConsistentRead(r.Context()); err != nil {
			return err
		}
		return stream()
	})
}

// parseKinds reads ?kind= values (repeated or comma-separated, singular
// or plural). nil means every kind.
func parseKinds(vals []string) (map[resource.Kind]bool, error) {
	var kinds map[resource.Kind]bool
	for _, v := range vals {
		for k := range strings.SplitSeq(v, ",") {
			k = strings.TrimSpace(k)
			info, ok := resource.Lookup(resource.Kind(k))
			if !ok {
				info, ok = resource.LookupPlural(k)
			}
			if !ok {
				var names []string
				for _, i := range resource.Kinds() {
					names = append(names, string(i.Kind))
				}
				return nil, badArg("kind", "unknown kind %q; the kinds are %s", k, strings.Join(names, ", "))
			}
			if kinds == nil {
				kinds = map[resource.Kind]bool{}
			}
			kinds[info.Kind] = true
		}
	}
	return kinds, nil
}

// streamEvents writes events after `after` until the client goes away. A
// non-stale stream also ends when this node stops leading, so that the
// client reconnects (to the new leader) with the last index it saw.
func (a *httpAPI) streamEvents(w http.ResponseWriter, r *http.Request, stale bool, after uint64, kinds map[resource.Kind]bool) error {
	buf := a.b.FSM().Events()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // streams are long
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(headerIndex, strconv.FormatUint(after, 10))
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil
	}
	enc := json.NewEncoder(w)
	id, _ := a.identify(r) // authorized before the stream began
	heartbeat := time.NewTicker(a.heartbeat)
	defer heartbeat.Stop()
	ctx := r.Context()
	for {
		evs, reset, floor, wait := nextEvents(buf, after)
		switch {
		case reset:
			if enc.Encode(resource.Event{Index: floor, Type: resource.EventReset}) != nil {
				return nil
			}
			after = floor
		case len(evs) > 0:
			for i := range evs {
				if kinds != nil && !kinds[evs[i].Kind] || a.acl && !eventVisible(id, &evs[i]) {
					continue
				}
				if enc.Encode(&evs[i]) != nil {
					return nil
				}
			}
			after = evs[len(evs)-1].Index
		default:
			select {
			case <-ctx.Done():
				return nil
			case <-wait:
				continue
			case <-heartbeat.C:
				if !stale && !a.b.IsLeader() || a.tokenGone(r) {
					return nil
				}
				if enc.Encode(resource.Event{Index: after, Type: resource.EventHeartbeat}) != nil {
					return nil
				}
			}
		}
		if rc.Flush() != nil {
			return nil
		}
	}
}

// nextEvents returns the retained events after `after`, ending on a whole
// log entry: one entry (a batch) may carry several events with the same
// index, and resuming after that index must not skip the rest of them.
func nextEvents(buf *fsm.EventBuffer, after uint64) (evs []resource.Event, reset bool, floor uint64, wait <-chan struct{}) {
	evs, reset, floor, wait = buf.Since(after, eventsBatch)
	if len(evs) < eventsBatch {
		return evs, reset, floor, wait
	}
	last := evs[len(evs)-1].Index
	i := len(evs)
	for i > 0 && evs[i-1].Index == last {
		i--
	}
	if i > 0 {
		return evs[:i], reset, floor, wait
	}
	// One entry with more events than a batch: take everything (the
	// buffer appends each entry's events at once, so the answer ends on
	// an entry boundary).
	return buf.Since(after, 0)
}
