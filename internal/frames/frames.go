// Package frames is the wire format of Kumoi's request streams
// (docs/api.md "Request streams"): many HTTP requests in flight at once
// over one persistent connection, each in a frame, each answered in a
// frame as the server's handler finishes. Followers forward writes to the
// leader this way, and Go SDK clients configured with Stream send their
// writes to a controller this way.
//
// The connection is an HTTP/1.1 upgrade (POST Path, Upgrade: Proto,
// answered 101) on the API's own listener, so it has the API's TLS. Each
// request keeps its own headers (the token included): the server serves it
// through the same handler as any request.
//
// Frames: a 4-byte big-endian length, then the payload: a type byte and a
// uvarint id, then
//
//	request:  method, request URI, remote address, headers, body
//	response: status (0: the handler aborted), headers, body
//	cancel:   nothing (the caller went away)
//
// where a string or body is a uvarint length and its bytes, and headers
// are a uvarint count of name/value pairs.
package frames

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// Path is where a stream is opened (the same handler serves
	// ClientPath, the name documented for SDK clients).
	Path = "/v1/internal/forward-stream"
	// ClientPath is Path under the name documented for clients.
	ClientPath = "/v1/stream"
	// Proto is the Upgrade token.
	Proto = "kumoi-forward/1"
	// HeaderFrom names the node or client that opens a stream (for logs).
	HeaderFrom = "X-Kumoi-Stream-From"

	Request  = 1
	Response = 2
	Cancel   = 3

	// StatusAborted in a response frame: the server's handler aborted
	// (http.ErrAbortHandler); the caller aborts its answer too.
	StatusAborted = 0

	// MaxResponse bounds a response frame; a server aborts an answer that
	// would be larger (writes answer with one object).
	MaxResponse = 64 << 20
	// MaxBody is the largest request body sent on a stream (the
	// controllers' default body limit); larger requests go over HTTP.
	MaxBody = 1 << 20
)

// WriteMethod reports whether requests of method may go on a stream:
// writes, whose answers are bounded (a read's may be long or endless: a
// blocking query, an event stream).
func WriteMethod(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// Carries reports whether a request of method to path with a body of n
// bytes goes on a stream: a write within MaxBody, and not a snapshot
// restore (its body is a stream of its own).
func Carries(method, path string, n int64) bool {
	return WriteMethod(method) && n >= 0 && n <= MaxBody && !strings.HasPrefix(path, "/v1/operator/snapshot")
}

// WriteTimeout bounds one write of queued frames: a peer that stops
// reading for that long is cut off (its requests fail as a broken
// connection would). A variable for tests.
var WriteTimeout = 30 * time.Second

// ErrRefused: the server does not speak the stream protocol (an older
// build, or a proxy in between); send plain HTTP requests.
var ErrRefused = errors.New("the server does not accept request streams")

// AppendString appends s as a uvarint length and its bytes.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBytes appends p as a uvarint length and its bytes.
func AppendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// AppendHeaders appends h as a count of name/value pairs and the pairs.
func AppendHeaders(b []byte, h http.Header) []byte {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	b = binary.AppendUvarint(b, uint64(n))
	for k, vs := range h {
		for _, v := range vs {
			b = AppendString(b, k)
			b = AppendString(b, v)
		}
	}
	return b
}

// Begin starts a frame of type t and id in b (End sets its length).
func Begin(b []byte, t byte, id uint64) []byte {
	b = append(b, 0, 0, 0, 0, t)
	return binary.AppendUvarint(b, id)
}

// End sets the length of the frame b holds.
func End(b []byte) []byte {
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// AppendRequest appends a whole request frame to b.
func AppendRequest(b []byte, id uint64, method, uri, remote string, h http.Header, body []byte) []byte {
	b = Begin(b, Request, id)
	b = AppendString(b, method)
	b = AppendString(b, uri)
	b = AppendString(b, remote)
	b = AppendHeaders(b, h)
	return End(AppendBytes(b, body))
}

// AppendResponse appends a whole response frame to b.
func AppendResponse(b []byte, id uint64, status int, h http.Header, body []byte) []byte {
	b = Begin(b, Response, id)
	b = binary.AppendUvarint(b, uint64(status))
	b = AppendHeaders(b, h)
	return End(AppendBytes(b, body))
}

// decoder reads the fields of one frame's payload; the first error
// sticks, and every later read returns a zero value.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
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

func (d *decoder) bytes() []byte {
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

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) headers() http.Header {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b))/2 { // each pair takes two bytes at least
		d.err = fmt.Errorf("malformed frame: %d headers in %d bytes", n, len(d.b))
		return nil
	}
	h := make(http.Header, n)
	vals := make([]string, n) // one array for the values of all
	for i := range n {
		k, v := commonString(d.bytes()), commonString(d.bytes())
		if d.err != nil {
			return nil
		}
		if cur, ok := h[k]; ok {
			h[k] = append(cur, v)
			continue
		}
		vals[i] = v
		h[k] = vals[i : i+1 : i+1] // an append copies, as on its own
	}
	return h
}

// commonString is string(b), without an allocation for the header names
// and values every request and answer carries.
func commonString(b []byte) string {
	switch string(b) { // compared without a conversion
	case "Content-Type":
		return "Content-Type"
	case "application/json":
		return "application/json"
	case "X-Content-Type-Options":
		return "X-Content-Type-Options"
	case "nosniff":
		return "nosniff"
	case "X-Kumoi-Index":
		return "X-Kumoi-Index"
	case "X-Kumoi-Known-Leader":
		return "X-Kumoi-Known-Leader"
	case "X-Kumoi-Last-Contact":
		return "X-Kumoi-Last-Contact"
	case "X-Kumoi-Version":
		return "X-Kumoi-Version"
	case "X-Kumoi-Token":
		return "X-Kumoi-Token"
	case "X-Kumoi-Forwarded":
		return "X-Kumoi-Forwarded"
	case "Authorization":
		return "Authorization"
	case "User-Agent":
		return "User-Agent"
	case "Accept":
		return "Accept"
	case "true":
		return "true"
	case "false":
		return "false"
	}
	return string(b)
}

// Frame is one decoded frame.
type Frame struct {
	Type   byte
	ID     uint64
	Method string // request
	URI    string // request
	Remote string // request
	Status int    // response
	Header http.Header
	Body   []byte
}

// Decode decodes a frame's payload (after its length). The body shares p.
func Decode(p []byte) (*Frame, error) {
	if len(p) < 1 {
		return nil, errors.New("malformed frame: empty")
	}
	f := &Frame{Type: p[0]}
	d := &decoder{b: p[1:]}
	f.ID = d.uvarint()
	switch f.Type {
	case Request:
		f.Method, f.URI, f.Remote = d.str(), d.str(), d.str()
		f.Header = d.headers()
		f.Body = d.bytes()
	case Response:
		st := d.uvarint()
		if st > 999 {
			return nil, fmt.Errorf("malformed frame: status %d", st)
		}
		f.Status = int(st)
		f.Header = d.headers()
		f.Body = d.bytes()
	case Cancel:
	default:
		return nil, fmt.Errorf("malformed frame: unknown type %d", f.Type)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("malformed frame: %d bytes after its fields", len(d.b))
	}
	return f, nil
}

// Read reads one frame's payload (at most max bytes).
func Read(r *bufio.Reader, max int) ([]byte, error) {
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

// Out is a frame queued for writing; Sent, if set, is set once the frame
// is handed to the connection. Pool: B goes back to the buffer pool
// (GetBuf) once written.
type Out struct {
	B    []byte
	Sent *atomic.Bool
	Pool bool
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// GetBuf returns an empty buffer from the pool, for an Out with Pool set.
func GetBuf() []byte { return (*bufs.Get().(*[]byte))[:0] }

// Writer writes the frames queued on out to conn, many per write: what
// was queued while a write went out goes in the next. It returns when
// done closes, when out is closed (once what it held is written), or when
// a write fails (then fail is called).
func Writer(conn net.Conn, out <-chan Out, done <-chan struct{}, fail func(error)) {
	bw := bufio.NewWriterSize(conn, 64<<10)
	write := func(f Out) error {
		if f.Sent != nil {
			f.Sent.Store(true)
		}
		_, err := bw.Write(f.B)
		if f.Pool && cap(f.B) <= 64<<10 {
			b := f.B[:0]
			bufs.Put(&b)
		}
		return err
	}
	for {
		var f Out
		var ok bool
		select {
		case f, ok = <-out:
			if !ok {
				return
			}
		case <-done:
			return
		}
		// The deadline covers the whole batch, set before its first
		// write: a frame larger than the buffer goes to conn at once
		// (bufio), and an old deadline, passed while the stream was
		// idle, would fail it.
		_ = conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
		err := write(f)
		for more := len(out); err == nil && more > 0; more-- {
			err = write(<-out)
		}
		if err == nil && len(out) == 0 {
			// Let the goroutines about to queue a frame do so, and take
			// theirs in the same write: under load, answers finish a
			// few microseconds apart, and a write each cost the leader a
			// system call per request. Idle, nothing else runs and this
			// returns at once.
			runtime.Gosched()
			for more := len(out); err == nil && more > 0; more-- {
				err = write(<-out)
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			fail(err)
			return
		}
	}
}
