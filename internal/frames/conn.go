package frames

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DialConfig says how Dial opens a stream.
type DialConfig struct {
	// Dial connects (a net.Dialer's DialContext, or an http.Transport's).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS, if set, is the TLS configuration (the connection is plain TCP
	// otherwise).
	TLS *tls.Config
	// Path is the upgrade request's path (Path or ClientPath).
	Path string
	// From is sent as HeaderFrom ("": not sent).
	From string
	// OnClose, if set, is called once, when the stream breaks or closes.
	OnClose func()
}

// Dial opens a stream to the server at addr ("host:port"). ctx bounds the
// connect, the TLS handshake and the upgrade. A failure before the
// upgrade was sent is a *net.OpError with Op "dial"; a server that does
// not answer 101 is ErrRefused.
func Dial(ctx context.Context, addr string, cfg DialConfig) (*Conn, error) {
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	ok := false
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
	if cfg.TLS != nil {
		tc := cfg.TLS.Clone()
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc.NextProtos = []string{"http/1.1"} // the upgrade is HTTP/1.1's
		c := tls.Client(conn, tc)
		if err := c.HandshakeContext(ctx); err != nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
		}
		conn = c
	}
	req := "POST " + cfg.Path + " HTTP/1.1\r\nHost: " + addr +
		"\r\nConnection: Upgrade\r\nUpgrade: " + Proto + "\r\n"
	if cfg.From != "" {
		req += HeaderFrom + ": " + cfg.From + "\r\n"
	}
	req += "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n"
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
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), Proto) {
		return nil, ErrRefused
	}
	stop()
	_ = conn.SetDeadline(time.Time{})
	ok = true
	s := &Conn{
		Addr:    addr,
		conn:    conn,
		out:     make(chan Out, 4096),
		calls:   map[uint64]*call{},
		done:    make(chan struct{}),
		onClose: cfg.OnClose,
	}
	go Writer(conn, s.out, s.done, func(err error) { s.Fail(fmt.Errorf("writing to %s: %w", addr, err)) })
	go s.readLoop(br)
	return s, nil
}

// Conn is the calling side of one stream. It is safe for concurrent use.
type Conn struct {
	Addr string
	conn net.Conn
	out  chan Out

	mu    sync.Mutex
	calls map[uint64]*call
	next  uint64
	err   error
	done  chan struct{} // closed with err set

	onClose func()
}

// call is a request in flight.
type call struct {
	done chan struct{}
	sent atomic.Bool // handed to the connection: it may have reached the server
	resp *Frame
	err  error
}

// Err is why the stream broke, or nil while it works.
func (s *Conn) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Fail breaks the stream: its connection is closed and every call in
// flight ends with err.
func (s *Conn) Fail(err error) {
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

func (s *Conn) readLoop(br *bufio.Reader) {
	for {
		p, err := Read(br, MaxResponse)
		if err != nil {
			s.Fail(fmt.Errorf("the connection to %s broke: %w", s.Addr, err))
			return
		}
		f, err := Decode(p)
		if err == nil && f.Type != Response {
			err = fmt.Errorf("a frame of type %d from %s", f.Type, s.Addr)
		}
		if err != nil {
			s.Fail(err)
			return
		}
		s.mu.Lock()
		c := s.calls[f.ID]
		delete(s.calls, f.ID)
		s.mu.Unlock()
		if c != nil {
			c.resp = f
			close(c.done)
		}
	}
}

// Do sends the request frame build appends (to an empty buffer) for its
// id and waits for the answer. sent says whether any of the request may
// have reached the server (when err is set). When ctx ends first, the
// server is told (a cancel frame: its handler's context ends).
func (s *Conn) Do(ctx context.Context, build func(b []byte, id uint64) []byte) (resp *Frame, sent bool, err error) {
	c := &call{done: make(chan struct{})}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil, false, s.err
	}
	id := s.next
	s.next++
	s.calls[id] = c
	s.mu.Unlock()
	f := Out{B: build(GetBuf(), id), Sent: &c.sent, Pool: true}
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
			// Tell the server (best effort: its handler's context ends).
			select {
			case s.out <- Out{B: End(Begin(nil, Cancel, id))}:
			default:
			}
		}
		return nil, true, ctx.Err()
	}
}

// forget drops call id; false if it had already ended.
func (s *Conn) forget(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.calls[id]
	delete(s.calls, id)
	return ok
}
