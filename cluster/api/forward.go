package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kumoi/kumoi/internal/frames"
	"github.com/kumoi/kumoi/resource"
)

// watchLeader calls giveUp when a node other than id has led for
// forwardGrace, unless answered closes first.
func (a *httpAPI) watchLeader(id string, changed <-chan struct{}, answered <-chan struct{}, giveUp func()) {
	lc := a.b.(interface{ LeaderChanged() <-chan struct{} })
	for {
		select {
		case <-changed:
		case <-answered:
			return
		}
		changed = lc.LeaderChanged() // the next change
		if lid, _ := a.b.Leader(); lid == id {
			continue
		}
		t := time.NewTimer(forwardGrace)
		select {
		case <-t.C:
			if lid, _ := a.b.Leader(); lid != id {
				giveUp()
				return
			}
		case <-answered:
			t.Stop()
			return
		}
	}
}

// errLeaderMoved cancels a forwarded request when the leader changed and
// the old one has not answered for forwardGrace since.
var errLeaderMoved = errors.New("the leader changed")

// forwardGrace is how long a forwarded request may still wait for the
// leader it was sent to once another leads (a variable for tests).
var forwardGrace = 2 * time.Second

// hopHeaders are connection-level headers a proxy must not pass on
// (RFC 9110 section 7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// copyEndToEnd copies the end-to-end headers of src into dst.
func copyEndToEnd(dst, src http.Header) {
	var named []string // the fields Connection names, hop-by-hop too
	for _, v := range src.Values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				named = append(named, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	for k, vs := range src {
		if !slices.Contains(hopHeaders, k) && !slices.Contains(named, k) {
			dst[k] = append(dst[k][:0:0], vs...)
		}
	}
}

// forwardBufs holds the buffers forward copies answers through (a 32 KiB
// allocation per forwarded write, zeroed each time, was 3% of a
// follower's CPU at 128 writers).
var forwardBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// forward sends r (with the buffered body) to the leader and copies the
// leader's answer back verbatim, flushing as it goes so that streams (event
// streams, long blocking queries) pass straight through. It returns an error
// only when nothing has been written: no leader is known, the leader cannot
// be reached, or r was itself forwarded here (no second hop, so no loops).
func (a *httpAPI) forward(w http.ResponseWriter, r *http.Request, body []byte) error {
	self := a.b.NodeID()
	// Taken before the leader is read: a change after it is seen.
	var changed <-chan struct{}
	if lc, ok := a.b.(interface{ LeaderChanged() <-chan struct{} }); ok {
		changed = lc.LeaderChanged()
	}
	if by := r.Header.Get(headerForwarded); by != "" {
		return noLeader(fmt.Sprintf("controller %s forwarded this request to %s as the leader, but %s is not the leader; leadership is changing, retry shortly", by, self, self))
	}
	id, addr := a.b.Leader()
	switch {
	case id == "" || id == self:
		return noLeader(resource.ErrNoLeader.Error())
	case addr == "":
		return noLeader(fmt.Sprintf("the leader is %s, but this controller does not know its API address yet; retry shortly", id))
	}
	// If another node leads before the leader answered, the request is
	// cancelled forwardGrace later: a partitioned old leader would never
	// answer on its kept-alive connection, and the client would wait for
	// its whole timeout. (A live one answers within the grace: a transfer
	// it was asked for, a write it lost the leadership for.) A change that
	// leaves id the leader (re-elected) cancels nothing. outcome settles,
	// once, whether the answer (1) or the cancellation (2) came first.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	var outcome atomic.Int32
	answered := make(chan struct{})
	if changed != nil {
		go a.watchLeader(id, changed, answered, func() {
			if outcome.CompareAndSwap(0, 2) {
				cancel(errLeaderMoved)
			}
		})
	}
	// Writes go over the stream to the leader (fwdstream.go) unless it
	// does not take streams.
	if streamable(r, body) {
		s, err := a.fwd.stream(ctx, addr)
		if err == nil {
			resp, sent, err := s.Do(ctx, func(b []byte, sid uint64) []byte { return a.streamRequest(b, sid, r, body) })
			first := outcome.CompareAndSwap(0, 1)
			close(answered)
			if err == nil && !first {
				err = context.Cause(ctx) // cancelled as the answer came: nothing is relayed
			}
			if err != nil {
				return a.forwardFailed(ctx, r, id, addr, err, !sent)
			}
			a.m.forwardedInc()
			if resp.Status == frames.StatusAborted {
				// The leader's handler broke its answer: break ours.
				panic(http.ErrAbortHandler)
			}
			copyEndToEnd(w.Header(), resp.Header)
			w.WriteHeader(resp.Status)
			writeOwned(w, resp.Body) // the frame's, read into its own buffer
			return nil
		}
		if !errors.Is(err, frames.ErrRefused) {
			outcome.CompareAndSwap(0, 1)
			close(answered)
			return a.forwardFailed(ctx, r, id, addr, err, true)
		}
	}
	u := url.URL{Scheme: forwardScheme(a.client), Host: addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	var rd io.Reader = http.NoBody
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("forward to the leader: %w", err)
	}
	forwardHeaders(out.Header, r, self)
	resp, err := a.client.Do(out)
	first := outcome.CompareAndSwap(0, 1)
	close(answered)
	if err == nil && !first {
		// Cancelled just as the headers came: nothing is relayed.
		resp.Body.Close()
		err = context.Cause(ctx)
	}
	if err != nil {
		var op *net.OpError
		unsent := errors.As(err, &op) && op.Op == "dial"
		return a.forwardFailed(ctx, r, id, addr, err, unsent)
	}
	defer resp.Body.Close()
	a.m.forwardedInc()

	copyEndToEnd(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	// How long the leader takes is the leader's business (a blocking
	// query, a stream); our server's write timeout must not cut it.
	_ = rc.SetWriteDeadline(time.Time{})
	_ = rc.Flush()
	bp := forwardBufs.Get().(*[]byte)
	defer forwardBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client went away
			}
			_ = rc.Flush()
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The leader went away mid-answer: break the connection
			// so that the client sees a truncated response, not a
			// complete one.
			a.log.Warn("leader connection broke while forwarding", "leader", id, "path", r.URL.Path, "error", rerr)
			panic(http.ErrAbortHandler)
		}
	}
}

// forwardHeaders sets in dst the headers a request r forwarded by node
// self carries: r's end-to-end ones (not Content-Length, which comes from
// the buffered body), the forwarding node, and r's client in
// X-Forwarded-For.
func forwardHeaders(dst http.Header, r *http.Request, self string) {
	copyEndToEnd(dst, r.Header)
	dst.Del("Content-Length")
	dst.Set(headerForwarded, self)
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil && host != "" {
		dst.Add("X-Forwarded-For", host)
	}
}

// forwardFailed is the answer to a request whose forwarding to the leader
// id at addr failed with err; unsent: nothing of it reached the leader.
func (a *httpAPI) forwardFailed(ctx context.Context, r *http.Request, id, addr string, err error, unsent bool) error {
	if errors.Is(context.Cause(ctx), errLeaderMoved) && r.Context().Err() == nil {
		if r.Method == http.MethodGet || unsent {
			return noLeader(fmt.Sprintf("the leader changed while this request was forwarded to %s (%s); retry", id, addr))
		}
		return &apiError{status: http.StatusServiceUnavailable, code: resource.CodeUnavailable,
			msg: fmt.Sprintf("the leader changed while this write was forwarded to %s (%s): it may or may not have been applied (read before retrying)", id, addr)}
	}
	if ctx.Err() != nil {
		return ctx.Err() // the client gave up; nobody reads the answer
	}
	if unsent || r.Method == http.MethodGet {
		// Nothing reached the leader (or nothing would change): safe to
		// retry.
		return noLeader(fmt.Sprintf("cannot reach the leader %s at %s: %v; retry shortly", id, addr, err))
	}
	// The request may have reached the leader before the connection
	// broke: the write may or may not have been applied.
	return &apiError{status: http.StatusServiceUnavailable, code: resource.CodeUnavailable,
		msg: fmt.Sprintf("the connection to the leader %s broke while forwarding: %v; the write may or may not have been applied (read before retrying)", id, err)}
}
