package api

// Forwarding over a stream (issue 15, docs/api.md "Forwarding"): a
// follower sends the writes it forwards to the leader as framed requests
// over one persistent connection per leader, many in flight at once, and
// the leader answers each in a frame as its handler finishes. A write that
// went through a new HTTP/1.1 exchange per hop cost each side a request to
// parse and write, and a syscall each way per write; on a stream the
// frames queued while one is written go out in the next write.
//
// The connection is an HTTP/1.1 upgrade (POST forwardStreamPath,
// Upgrade: kumoi-forward/1, answered 101) on the API's own listener, so
// it has the API's TLS. Each request keeps its own headers, token
// included: the leader serves it through the same handler as any request
// (auth, validation, metrics), marked forwarded. A leader that does not
// answer 101 (a build without streams, during a rolling upgrade) is sent
// HTTP requests, as before, for streamRefusedFor.
//
// Frames: a 4-byte big-endian length, then the payload: a type byte and a
// uvarint id, then
//
//	request:  method, request URI, remote address, headers, body
//	response: status (0: the handler aborted), headers, body
//	cancel:   nothing (the follower's caller went away)
//
// where a string or body is a uvarint length and its bytes, and headers
// are a uvarint count of name/value pairs.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
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
)

const (
	forwardStreamPath  = "/v1/internal/forward-stream"
	forwardStreamProto = "kumoi-forward/1"
	// headerStreamFrom names the follower that opens a stream (for logs;
	// the requests on it carry headerForwarded each).
	headerStreamFrom = "X-Kumoi-Stream-From"

	frameRequest  = 1
	frameResponse = 2
	frameCancel   = 3

	// statusAborted in a response frame: the leader's handler aborted
	// (http.ErrAbortHandler); the follower aborts its answer too.
	statusAborted = 0

	// maxRequestFrame bounds a request frame: a body within the API's
	// default cap and its headers. Larger requests go over HTTP.
	maxRequestFrame = DefaultMaxBodyBytes + DefaultMaxHeaderBytes + 4096
	// maxResponseFrame bounds a response frame; the leader aborts an
	// answer that would be larger (writes answer with one object).
	maxResponseFrame = 64 << 20
	// maxStreamInflight bounds the requests a leader serves at once on
	// one stream; it reads no more frames until one is answered (so a
	// stream holds at most this many request bodies).
	maxStreamInflight = 1024
)

// streamRefusedFor is how long a follower sends plain HTTP requests to a
// leader that did not accept a stream (a variable for tests).
var streamRefusedFor = 30 * time.Second

// streamWriteTimeout bounds one write of queued frames: a peer that stops
// reading for that long is cut off (its requests fail as a broken
// connection would).
var streamWriteTimeout = 30 * time.Second

// errStreamRefused: the leader does not speak the stream protocol.
var errStreamRefused = errors.New("the leader does not accept forwarding streams")

// --- frames ---

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendHeaders(b []byte, h http.Header) []byte {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	b = binary.AppendUvarint(b, uint64(n))
	for k, vs := range h {
		for _, v := range vs {
			b = appendString(b, k)
			b = appendString(b, v)
		}
	}
	return b
}

// beginFrame starts a frame of type t and id in b (the length is set by
// endFrame).
func beginFrame(b []byte, t byte, id uint64) []byte {
	b = append(b, 0, 0, 0, 0, t)
	return binary.AppendUvarint(b, id)
}

func endFrame(b []byte) []byte {
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// frameDecoder reads the fields of one frame's payload; the first error
// sticks, and every later read returns a zero value.
type frameDecoder struct {
	b   []byte
	err error
}

func (d *frameDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("malformed frame: bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *frameDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("malformed frame: a field of %d bytes in %d", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *frameDecoder) str() string { return string(d.bytes()) }

func (d *frameDecoder) headers() http.Header {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b))/2 { // each pair takes two bytes at least
		d.err = fmt.Errorf("malformed frame: %d headers in %d bytes", n, len(d.b))
		return nil
	}
	h := make(http.Header, n)
	for range n {
		k, v := d.str(), d.str()
		if d.err != nil {
			return nil
		}
		h[k] = append(h[k], v)
	}
	return h
}

// frame is one decoded frame.
type frame struct {
	typ    byte
	id     uint64
	method string // request
	uri    string // request
	remote string // request
	status int    // response
	header http.Header
	body   []byte
}

// decodeFrame decodes a frame's payload (after its length). The body
// shares p.
func decodeFrame(p []byte) (*frame, error) {
	if len(p) < 1 {
		return nil, errors.New("malformed frame: empty")
	}
	f := &frame{typ: p[0]}
	d := &frameDecoder{b: p[1:]}
	f.id = d.uvarint()
	switch f.typ {
	case frameRequest:
		f.method, f.uri, f.remote = d.str(), d.str(), d.str()
		f.header = d.headers()
		f.body = d.bytes()
	case frameResponse:
		st := d.uvarint()
		if st > 999 {
			return nil, fmt.Errorf("malformed frame: status %d", st)
		}
		f.status = int(st)
		f.header = d.headers()
		f.body = d.bytes()
	case frameCancel:
	default:
		return nil, fmt.Errorf("malformed frame: unknown type %d", f.typ)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("malformed frame: %d bytes after its fields", len(d.b))
	}
	return f, nil
}

// readFrame reads one frame's payload (at most max bytes).
func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if uint64(size) > uint64(max) {
		return nil, fmt.Errorf("a frame of %d bytes, over the limit of %d", size, max)
	}
	p := make([]byte, size)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	return p, nil
}

// frameWriter writes the frames queued on out to conn, many per write:
// what was queued while a write went out goes in the next. It returns
// when done closes, when out is closed (once what it held is written), or
// when a write fails (then fail is called).
func frameWriter(conn net.Conn, out <-chan outFrame, done <-chan struct{}, fail func(error)) {
	bw := bufio.NewWriterSize(conn, 64<<10)
	write := func(f outFrame) error {
		if f.sent != nil {
			f.sent.Store(true)
		}
		_, err := bw.Write(f.b)
		if f.pool && cap(f.b) <= 64<<10 {
			frameBufs.Put(&f.b)
		}
		return err
	}
	for {
		var f outFrame
		var ok bool
		select {
		case f, ok = <-out:
			if !ok {
				return
			}
		case <-done:
			return
		}
		err := write(f)
		for more := len(out); err == nil && more > 0; more-- {
			err = write(<-out)
		}
		if err == nil {
			_ = conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			err = bw.Flush()
		}
		if err != nil {
			fail(err)
			return
		}
	}
}

// outFrame is a frame queued for writing; sent, if set, is set once the
// frame is handed to the connection. pool: b goes back to frameBufs.
type outFrame struct {
	b    []byte
	sent *atomic.Bool
	pool bool
}

var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// --- the follower's side ---

// fwdStreams holds a follower's stream to the leader.
type fwdStreams struct {
	a *httpAPI

	mu      sync.Mutex
	cur     *fwdStream
	refused map[string]time.Time // leader address → until when not to try
	closed  bool

	opened atomic.Int64 // streams opened (tests)
}

// stream returns the open stream to addr, opening one (and closing one to
// another address) if needed. errStreamRefused: use HTTP.
func (p *fwdStreams) stream(ctx context.Context, addr string) (*fwdStream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errStreamRefused
	}
	if s := p.cur; s != nil {
		if s.addr == addr && s.client == p.a.client && s.broken() == nil {
			return s, nil
		}
		s.fail(errors.New("the leader changed"))
		p.cur = nil
	}
	if until, ok := p.refused[addr]; ok {
		if time.Now().Before(until) {
			return nil, errStreamRefused
		}
		delete(p.refused, addr)
	}
	s, err := p.a.dialStream(ctx, addr)
	if errors.Is(err, errStreamRefused) {
		if p.refused == nil {
			p.refused = map[string]time.Time{}
		}
		p.refused[addr] = time.Now().Add(streamRefusedFor)
		p.a.log.Info("the leader does not accept forwarding streams; forwarding over HTTP", "leader", addr, "retry_in", streamRefusedFor)
	}
	if err != nil {
		return nil, err
	}
	p.cur = s
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
		p.cur.fail(errors.New("this controller is shutting down"))
		p.cur = nil
	}
}

// dialStream connects to the leader at addr the way the forward client
// does (its dialer, so its local address, and its TLS configuration) and
// asks for a stream.
func (a *httpAPI) dialStream(ctx context.Context, addr string) (*fwdStream, error) {
	tr, ok := a.client.Transport.(*http.Transport)
	if !ok || tr.DialContext == nil {
		return nil, errStreamRefused // a client we cannot take apart: HTTP
	}
	// As long as the forward client's dial may take (the TCP connect
	// alone has that too): callers wait behind it.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := tr.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	ok = false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	if dl, has := ctx.Deadline(); has {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if cfg := tr.TLSClientConfig; cfg != nil {
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		cfg.NextProtos = []string{"http/1.1"} // the upgrade is HTTP/1.1's
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
		}
		conn = tc
	}
	req := "POST " + forwardStreamPath + " HTTP/1.1\r\nHost: " + addr +
		"\r\nConnection: Upgrade\r\nUpgrade: " + forwardStreamProto +
		"\r\n" + headerStreamFrom + ": " + a.b.NodeID() +
		"\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("stream upgrade: %w", err)}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), forwardStreamProto) {
		return nil, errStreamRefused
	}
	stop()
	_ = conn.SetDeadline(time.Time{})
	ok = true
	s := &fwdStream{
		addr:   addr,
		client: a.client,
		conn:   conn,
		out:    make(chan outFrame, 4096),
		calls:  map[uint64]*fwdCall{},
		done:   make(chan struct{}),
	}
	a.m.forwardStreamsAdd(streamToLeader, 1)
	s.onClose = func() { a.m.forwardStreamsAdd(streamToLeader, -1) }
	go frameWriter(conn, s.out, s.done, func(err error) { s.fail(fmt.Errorf("writing to the leader: %w", err)) })
	go s.readLoop(br)
	return s, nil
}

// fwdStream is a follower's stream to one leader.
type fwdStream struct {
	addr   string
	client *http.Client // whose dialer and TLS configuration it was opened with
	conn   net.Conn
	out    chan outFrame

	mu    sync.Mutex
	calls map[uint64]*fwdCall
	next  uint64
	err   error
	done  chan struct{} // closed with err set

	onClose func() // called once, when the stream breaks
}

// fwdCall is a request in flight on a stream.
type fwdCall struct {
	done chan struct{}
	sent atomic.Bool // handed to the connection: it may have reached the leader
	resp *frame
	err  error
}

func (s *fwdStream) broken() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// fail breaks the stream: its connection is closed and every call in
// flight ends with err.
func (s *fwdStream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	close(s.done)
	s.conn.Close()
	if s.onClose != nil {
		s.onClose()
	}
	for id, c := range s.calls {
		c.err = err
		close(c.done)
		delete(s.calls, id)
	}
}

func (s *fwdStream) readLoop(br *bufio.Reader) {
	for {
		p, err := readFrame(br, maxResponseFrame)
		if err != nil {
			s.fail(fmt.Errorf("the connection to the leader broke: %w", err))
			return
		}
		f, err := decodeFrame(p)
		if err == nil && f.typ != frameResponse {
			err = fmt.Errorf("a frame of type %d from the leader", f.typ)
		}
		if err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		c := s.calls[f.id]
		delete(s.calls, f.id)
		s.mu.Unlock()
		if c != nil {
			c.resp = f
			close(c.done)
		}
	}
}

// do sends the request frame build makes for its id and waits for the
// answer. sent says whether any of the request may have reached the
// leader (when err is set).
func (s *fwdStream) do(ctx context.Context, build func(b []byte, id uint64) []byte) (resp *frame, sent bool, err error) {
	c := &fwdCall{done: make(chan struct{})}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil, false, s.err
	}
	id := s.next
	s.next++
	s.calls[id] = c
	s.mu.Unlock()
	bp := frameBufs.Get().(*[]byte)
	f := outFrame{b: build((*bp)[:0], id), sent: &c.sent, pool: true}
	select {
	case s.out <- f:
	case <-c.done:
		return nil, c.sent.Load(), c.err
	case <-ctx.Done():
		s.forget(id)
		return nil, false, ctx.Err()
	}
	select {
	case <-c.done:
		if c.err != nil {
			return nil, c.sent.Load(), c.err
		}
		return c.resp, true, nil
	case <-ctx.Done():
		if s.forget(id) {
			// Tell the leader (best effort: its handler's context ends).
			select {
			case s.out <- outFrame{b: endFrame(beginFrame(nil, frameCancel, id))}:
			default:
			}
		}
		return nil, true, ctx.Err()
	}
}

// forget drops call id; false if it had already ended.
func (s *fwdStream) forget(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.calls[id]
	delete(s.calls, id)
	return ok
}

// streamable says whether r (with its buffered body) is forwarded on a
// stream: a write with a bounded answer. Reads (blocking queries, event
// streams) and snapshots stream their answers and go over HTTP.
func streamable(r *http.Request, body []byte) bool {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return len(body) <= DefaultMaxBodyBytes && !strings.HasPrefix(r.URL.Path, "/v1/operator/snapshot")
}

// streamRequest appends r's request frame, with id and the buffered body,
// to b: as forward would send it over HTTP (end-to-end headers, marked
// forwarded by this node, X-Forwarded-For).
func (a *httpAPI) streamRequest(b []byte, id uint64, r *http.Request, body []byte) []byte {
	b = beginFrame(b, frameRequest, id)
	b = appendString(b, r.Method)
	b = appendString(b, r.URL.RequestURI())
	b = appendString(b, r.RemoteAddr)
	h := make(http.Header, len(r.Header)+2)
	forwardHeaders(h, r, a.b.NodeID())
	b = appendHeaders(b, h)
	b = binary.AppendUvarint(b, uint64(len(body)))
	b = append(b, body...)
	return endFrame(b)
}

// --- the leader's side ---

// serveStream takes over the connection of an upgrade request and serves
// the requests framed on it until the follower closes it or the server
// shuts down.
func (a *httpAPI) serveStream(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.EqualFold(r.Header.Get("Upgrade"), forwardStreamProto) {
		a.writeError(w, r, &apiError{status: http.StatusBadRequest, code: "invalid_argument",
			msg: fmt.Sprintf("%s is the controllers' forwarding stream: POST with Upgrade: %s", forwardStreamPath, forwardStreamProto)})
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
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + forwardStreamProto + "\r\n\r\n"); err != nil || brw.Flush() != nil {
		conn.Close()
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	s := &srvStream{
		a:        a,
		conn:     conn,
		from:     r.Header.Get(headerStreamFrom),
		upgrade:  r,
		out:      make(chan outFrame, 4096),
		done:     make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		inflight: map[uint64]context.CancelFunc{},
		slots:    make(chan struct{}, maxStreamInflight),
	}
	if !a.fwdServe.add(s) {
		conn.Close()
		cancel()
		return
	}
	defer a.fwdServe.remove(s)
	a.m.forwardStreamsAdd(streamFromFollowers, 1)
	defer a.m.forwardStreamsAdd(streamFromFollowers, -1)
	s.serve(brw.Reader)
}

// srvStream is the leader's side of one stream.
type srvStream struct {
	a       *httpAPI
	conn    net.Conn
	from    string
	upgrade *http.Request
	out     chan outFrame

	done     chan struct{} // closed when the connection is done with
	doneOnce sync.Once
	draining atomic.Bool // the server shuts down: finish what is in flight

	ctx    context.Context // the requests' parent: cancelled if the follower goes
	cancel context.CancelFunc

	mu       sync.Mutex
	inflight map[uint64]context.CancelFunc
	wg       sync.WaitGroup
	slots    chan struct{} // maxStreamInflight
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
		frameWriter(s.conn, s.out, s.done, func(err error) {
			s.a.log.Warn("forwarding stream: writing to the follower failed", "follower", s.from, "error", err)
			s.cancel()
			s.close()
		})
	}()
	var err error
	for {
		var p []byte
		if p, err = readFrame(br, maxRequestFrame); err != nil {
			break
		}
		var f *frame
		if f, err = decodeFrame(p); err != nil {
			break
		}
		switch f.typ {
		case frameRequest:
			s.slots <- struct{}{} // released when answered
			s.start(f)
		case frameCancel:
			s.mu.Lock()
			if c := s.inflight[f.id]; c != nil {
				c()
			}
			s.mu.Unlock()
		default:
			err = fmt.Errorf("a frame of type %d from the follower", f.typ)
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
	s.wg.Wait()
	close(s.out)
	<-written
	s.close()
}

// start serves request frame f in its own goroutine.
func (s *srvStream) start(f *frame) {
	u, err := url.ParseRequestURI(f.uri)
	ctx, cancel := context.WithCancel(s.ctx)
	s.mu.Lock()
	s.inflight[f.id] = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.inflight, f.id)
			s.mu.Unlock()
			cancel()
			<-s.slots
		}()
		rw := &streamResponse{header: http.Header{}}
		if err != nil {
			s.a.writeError(rw, s.upgrade, &apiError{status: http.StatusBadRequest, code: "invalid_argument",
				msg: fmt.Sprintf("forwarded request URI %q: %v", f.uri, err)})
		} else {
			var body io.ReadCloser = http.NoBody
			if len(f.body) > 0 {
				body = io.NopCloser(bytes.NewReader(f.body))
			}
			req := (&http.Request{
				Method:        f.method,
				URL:           u,
				Proto:         "HTTP/1.1",
				ProtoMajor:    1,
				ProtoMinor:    1,
				Header:        f.header,
				Body:          body,
				ContentLength: int64(len(f.body)),
				Host:          s.upgrade.Host,
				RemoteAddr:    s.upgrade.RemoteAddr,
				RequestURI:    f.uri,
				TLS:           s.upgrade.TLS,
			}).WithContext(ctx)
			s.a.serveFramed(rw, req)
		}
		status := rw.status
		if status == 0 && !rw.aborted {
			status = http.StatusOK
		}
		if rw.aborted || len(rw.body) > maxResponseFrame-64<<10 {
			status = statusAborted
			rw.header, rw.body = nil, nil
		}
		b := beginFrame(make([]byte, 0, 64+len(rw.body)+64*len(rw.header)), frameResponse, f.id)
		b = binary.AppendUvarint(b, uint64(status))
		b = appendHeaders(b, rw.header)
		b = binary.AppendUvarint(b, uint64(len(rw.body)))
		b = append(b, rw.body...)
		select {
		case s.out <- outFrame{b: endFrame(b)}:
		case <-s.done:
		}
	}()
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
