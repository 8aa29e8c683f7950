package api

// Forwarding over a stream (issue 15, docs/api.md "Request streams"): a
// follower sends the writes it forwards to the leader as framed requests
// (internal/frames) over one persistent connection per leader, many in
// flight at once, and the leader answers each in a frame as its handler
// finishes. A write that went through a new HTTP/1.1 exchange per hop
// cost each side a request to parse and write, and a syscall each way per
// write; on a stream the frames queued while one is written go out in the
// next write. Go SDK clients configured with Stream open the same streams
// to any controller (client/stream.go); a follower forwards their writes
// as any other.
//
// A leader that does not answer 101 (a build without streams, during a
// rolling upgrade) is sent HTTP requests, as before, for
// streamRefusedFor.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kumoi/kumoi/internal/frames"
)

const (
	// maxRequestFrame bounds a request frame: a body within the API's
	// default cap and its headers. Larger requests go over HTTP.
	maxRequestFrame = DefaultMaxBodyBytes + DefaultMaxHeaderBytes + 4096
	// maxStreamInflight bounds the requests a server serves at once on
	// one stream; it reads no more frames until one is answered (so a
	// stream holds at most this many request bodies).
	maxStreamInflight = 1024
)

// streamRefusedFor is how long a follower sends plain HTTP requests to a
// leader that did not accept a stream (a variable for tests).
var streamRefusedFor = 30 * time.Second

// --- the follower's side ---

// fwdStreams holds a follower's stream to the leader.
type fwdStreams struct {
	a *httpAPI

	mu      sync.Mutex
	cur     *frames.Conn
	client  *http.Client         // whose dialer and TLS configuration cur was opened with
	refused map[string]time.Time // leader address → until when not to try
	closed  bool

	opened atomic.Int64 // streams opened (tests)
}

// stream returns the open stream to addr, opening one (and closing one to
// another address) if needed. frames.ErrRefused: use HTTP.
func (p *fwdStreams) stream(ctx context.Context, addr string) (*frames.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, frames.ErrRefused
	}
	if s := p.cur; s != nil {
		if s.Addr == addr && p.client == p.a.client && s.Err() == nil {
			return s, nil
		}
		s.Fail(errors.New("the leader changed"))
		p.cur = nil
	}
	if until, ok := p.refused[addr]; ok {
		if time.Now().Before(until) {
			return nil, frames.ErrRefused
		}
		delete(p.refused, addr)
	}
	s, err := p.a.dialStream(ctx, addr)
	if errors.Is(err, frames.ErrRefused) {
		if p.refused == nil {
			p.refused = map[string]time.Time{}
		}
		p.refused[addr] = time.Now().Add(streamRefusedFor)
		p.a.log.Info("the leader does not accept forwarding streams; forwarding over HTTP", "leader", addr, "retry_in", streamRefusedFor)
	}
	if err != nil {
		return nil, err
	}
	p.cur, p.client = s, p.a.client
	p.opened.Add(1)
	p.a.log.Debug("forwarding stream open", "leader", addr)
	return s, nil
}

// close closes the stream, if any, and opens none after.
func (p *fwdStreams) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.cur != nil {
		p.cur.Fail(errors.New("this controller is shutting down"))
		p.cur = nil
	}
}

// dialStream connects to the leader at addr the way the forward client
// does (its dialer, so its local address, and its TLS configuration) and
// asks for a stream.
func (a *httpAPI) dialStream(ctx context.Context, addr string) (*frames.Conn, error) {
	tr, ok := a.client.Transport.(*http.Transport)
	if !ok || tr.DialContext == nil {
		return nil, frames.ErrRefused // a client we cannot take apart: HTTP
	}
	// As long as the forward client's dial may take (the TCP connect
	// alone has that too): callers wait behind it.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a.m.forwardStreamsAdd(streamToLeader, 1)
	s, err := frames.Dial(ctx, addr, frames.DialConfig{
		Dial: tr.DialContext, TLS: tr.TLSClientConfig, Path: frames.Path, From: a.b.NodeID(),
		OnClose: func() { a.m.forwardStreamsAdd(streamToLeader, -1) },
	})
	if err != nil {
		a.m.forwardStreamsAdd(streamToLeader, -1)
		return nil, err
	}
	return s, nil
}

// streamable says whether r (with its buffered body) is forwarded on a
// stream: frames.Carries (a write with a bounded answer). Reads (blocking
// queries, event streams) and snapshots stream their answers and go over
// HTTP.
func streamable(r *http.Request, body []byte) bool {
	return frames.Carries(r.Method, r.URL.Path, int64(len(body)))
}

// A request frame (maxRequestFrame) has room for any body a stream
// carries.
const _ = uint(DefaultMaxBodyBytes - frames.MaxBody)

// streamRequest appends r's request frame, with id and the buffered body,
// to b: as forward would send it over HTTP (end-to-end headers, marked
// forwarded by this node, X-Forwarded-For).
func (a *httpAPI) streamRequest(b []byte, id uint64, r *http.Request, body []byte) []byte {
	h := make(http.Header, len(r.Header)+2)
	forwardHeaders(h, r, a.b.NodeID())
	return frames.AppendRequest(b, id, r.Method, r.URL.RequestURI(), r.RemoteAddr, h, body)
}

// --- the leader's side ---

// serveStream takes over the connection of an upgrade request and serves
// the requests framed on it until the follower closes it or the server
// shuts down.
func (a *httpAPI) serveStream(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.EqualFold(r.Header.Get("Upgrade"), frames.Proto) {
		a.writeError(w, r, &apiError{status: http.StatusBadRequest, code: "invalid_argument",
			msg: fmt.Sprintf("%s opens a request stream: POST with Upgrade: %s", r.URL.Path, frames.Proto)})
		return
	}
	if a.fwdServe.isDraining() {
		a.writeError(w, r, noLeader("this controller is shutting down"))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		a.writeError(w, r, fmt.Errorf("forwarding stream: %w", err))
		return
	}
	_ = conn.SetDeadline(time.Time{})
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + frames.Proto + "\r\n\r\n"); err != nil || brw.Flush() != nil {
		conn.Close()
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	s := &srvStream{
		a:        a,
		conn:     conn,
		from:     r.Header.Get(frames.HeaderFrom),
		upgrade:  r,
		out:      make(chan frames.Out, 4096),
		done:     make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		inflight: map[uint64]context.CancelFunc{},
		slots:    make(chan struct{}, maxStreamInflight),
		work:     make(chan streamTask),
	}
	if !a.fwdServe.add(s) {
		conn.Close()
		cancel()
		return
	}
	defer a.fwdServe.remove(s)
	side := streamFromFollowers
	if r.URL.Path == frames.ClientPath {
		side = streamFromClients
	}
	a.m.forwardStreamsAdd(side, 1)
	defer a.m.forwardStreamsAdd(side, -1)
	s.serve(brw.Reader)
}

// srvStream is the leader's side of one stream.
type srvStream struct {
	a       *httpAPI
	conn    net.Conn
	from    string
	upgrade *http.Request
	out     chan frames.Out

	done     chan struct{} // closed when the connection is done with
	doneOnce sync.Once
	draining atomic.Bool // the server shuts down: finish what is in flight

	ctx    context.Context // the requests' parent: cancelled if the follower goes
	cancel context.CancelFunc

	mu       sync.Mutex
	inflight map[uint64]context.CancelFunc
	wg       sync.WaitGroup
	slots    chan struct{}   // maxStreamInflight
	work     chan streamTask // idle workers wait here (start)
}

func (s *srvStream) close() {
	s.doneOnce.Do(func() {
		close(s.done)
		s.conn.Close()
	})
}

func (s *srvStream) serve(br *bufio.Reader) {
	written := make(chan struct{})
	go func() {
		defer close(written)
		frames.Writer(s.conn, s.out, s.done, func(err error) {
			s.a.log.Warn("forwarding stream: writing to the follower failed", "follower", s.from, "error", err)
			s.cancel()
			s.close()
		})
	}()
	var err error
	for {
		var p []byte
		if p, err = frames.Read(br, maxRequestFrame); err != nil {
			break
		}
		var f *frames.Frame
		if f, err = frames.Decode(p); err != nil {
			break
		}
		switch f.Type {
		case frames.Request:
			s.slots <- struct{}{} // released when answered
			s.start(f)
		case frames.Cancel:
			s.mu.Lock()
			if c := s.inflight[f.ID]; c != nil {
				c()
			}
			s.mu.Unlock()
		default:
			err = fmt.Errorf("a frame of type %d from the follower", f.Type)
		}
		if err != nil {
			break
		}
	}
	if !s.draining.Load() {
		// The follower went away (or sent garbage): nobody reads the
		// answers of what is in flight.
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			s.a.log.Warn("forwarding stream ended", "follower", s.from, "error", err)
		}
		s.cancel()
	}
	// Every answer is queued (or dropped, if the connection is gone):
	// the writer sends what is left, then the connection closes.
	close(s.work) // idle workers end; busy ones after their request
	s.wg.Wait()
	close(s.out)
	<-written
	s.close()
}

// start serves request frame f in its own goroutine.
//
// The request runs on an idle worker of the stream if there is one, else
// on a new one. Workers live as long as the stream (at most
// maxStreamInflight of them, as many as were ever busy at once): a
// goroutine per request would start each on a small stack and grow it in
// the handler, every time.
func (s *srvStream) start(f *frames.Frame) {
	ctx, cancel := context.WithCancel(s.ctx)
	s.mu.Lock()
	s.inflight[f.ID] = cancel
	s.mu.Unlock()
	t := streamTask{f: f, ctx: ctx, cancel: cancel}
	select {
	case s.work <- t:
	default:
		s.wg.Add(1)
		go s.worker(t)
	}
}

// streamTask is a request frame to serve, with its context.
type streamTask struct {
	f      *frames.Frame
	ctx    context.Context
	cancel context.CancelFunc
}

// worker serves t, then the tasks start hands it, until the stream ends
// (serve closes work).
func (s *srvStream) worker(t streamTask) {
	defer s.wg.Done()
	for ok := true; ok; t, ok = <-s.work {
		s.serveTask(t)
	}
}

// serveTask serves one request frame and queues its answer.
func (s *srvStream) serveTask(t streamTask) {
	f, ctx, cancel := t.f, t.ctx, t.cancel
	u, err := url.ParseRequestURI(f.URI)
	defer func() {
		s.mu.Lock()
		delete(s.inflight, f.ID)
		s.mu.Unlock()
		cancel()
		<-s.slots
	}()
	rw := &streamResponse{header: http.Header{}}
	switch {
	case err != nil:
		s.a.writeError(rw, s.upgrade, &apiError{status: http.StatusBadRequest, code: "invalid_argument",
			msg: fmt.Sprintf("framed request URI %q: %v", f.URI, err)})
	case !frames.WriteMethod(f.Method):
		// A read's answer may be long or endless (a blocking query,
		// an event stream): streams carry writes.
		s.a.writeError(rw, s.upgrade, &apiError{status: http.StatusMethodNotAllowed, code: "invalid_argument",
			msg: fmt.Sprintf("a request stream carries POST, PUT and DELETE requests, not %s: send it as a plain HTTP request", f.Method)})
	default:
		var body io.ReadCloser = http.NoBody
		if len(f.Body) > 0 {
			body = newFrameBody(f.Body)
		}
		req := (&http.Request{
			Method:        f.Method,
			URL:           u,
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        f.Header,
			Body:          body,
			ContentLength: int64(len(f.Body)),
			Host:          s.upgrade.Host,
			RemoteAddr:    s.upgrade.RemoteAddr,
			RequestURI:    f.URI,
			TLS:           s.upgrade.TLS,
		}).WithContext(withUnsetAuth(ctx))
		s.a.serveFramed(rw, req)
	}
	status := rw.status
	if status == 0 && !rw.aborted {
		status = http.StatusOK
	}
	if rw.aborted || len(rw.body) > frames.MaxResponse-64<<10 {
		status = frames.StatusAborted
		rw.header, rw.body = nil, nil
	}
	b := frames.AppendResponse(frames.GetBuf(), f.ID, status, rw.header, rw.body)
	select {
	case s.out <- frames.Out{B: b, Pool: true}:
	case <-s.done:
	}
}

// serveFramed serves one request of a stream; a handler's abort
// (http.ErrAbortHandler) is the answer's.
func (a *httpAPI) serveFramed(rw *streamResponse, req *http.Request) {
	var h http.Handler = a
	if a.frameHandler != nil {
		h = a.frameHandler
	}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			rw.aborted = true
		}
	}()
	h.ServeHTTP(rw, req)
}

// streamResponse collects a framed request's answer.
type streamResponse struct {
	header  http.Header
	status  int
	body    []byte
	aborted bool
}

func (w *streamResponse) Header() http.Header { return w.header }

func (w *streamResponse) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *streamResponse) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = append(w.body, b...)
	return len(b), nil
}

// writeOwned is Write of a buffer the caller gives up: the first is kept
// as the body, not copied.
func (w *streamResponse) writeOwned(b []byte) {
	if w.body != nil {
		_, _ = w.Write(b)
		return
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = b
}

// frameBody is a framed request's body: a reader of the frame's bytes,
// which readOptionalBody takes as they are instead of reading a copy.
type frameBody struct {
	bytes.Reader
	b []byte
}

func newFrameBody(b []byte) *frameBody {
	fb := &frameBody{b: b}
	fb.Reset(b)
	return fb
}

func (*frameBody) Close() error { return nil }

// takeFrameBody returns body's bytes when it is a framed request's of at
// most max bytes of which nothing was read yet, and leaves its reader at
// the end; false: read it.
func takeFrameBody(body io.Reader, max int64) ([]byte, bool) {
	fb, ok := body.(*frameBody)
	if !ok || int64(len(fb.b)) > max || fb.Len() != len(fb.b) {
		return nil, false
	}
	fb.Reset(nil)
	return fb.b, true
}

// srvStreams are a leader's open streams.
type srvStreams struct {
	mu       sync.Mutex
	open     map[*srvStream]struct{}
	draining bool
}

func (ss *srvStreams) add(s *srvStream) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.draining {
		return false
	}
	if ss.open == nil {
		ss.open = map[*srvStream]struct{}{}
	}
	ss.open[s] = struct{}{}
	return true
}

func (ss *srvStreams) isDraining() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.draining
}

func (ss *srvStreams) remove(s *srvStream) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.open, s)
}

// drain stops reading new requests from every stream; what is in flight
// is answered, then the connections close.
func (ss *srvStreams) drain() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.draining = true
	for s := range ss.open {
		s.draining.Store(true)
		_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// closeAll cuts every stream: requests in flight are cancelled.
func (ss *srvStreams) closeAll() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.draining = true
	for s := range ss.open {
		s.cancel()
		s.close()
	}
}

// DrainStreams is called when the API server shuts down (NewServer
// registers it): the leader stops taking requests on its forwarding
// streams and closes each once its requests are answered.
func (a *httpAPI) DrainStreams() { a.fwdServe.drain() }

// Close closes the handler's forwarding streams, both ways: the
// follower's to the leader, and the leader's from followers. Call it once
// the API server has shut down.
func (a *httpAPI) Close() error {
	a.fwd.close()
	a.fwdServe.closeAll()
	return nil
}
