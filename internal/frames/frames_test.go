package frames

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	h := http.Header{"Authorization": {"Bearer x"}, "X-Many": {"a", "b"}, "Content-Type": {"application/json"}, "X-Kumoi-Index": {"7"}}
	b := AppendRequest(nil, 7, "PUT", "/v1/vms/a%2Fb?cas=3", "127.0.0.9:1234", h, []byte(`{"x":1}`))
	f, err := Decode(b[4:])
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != Request || f.ID != 7 || f.Method != "PUT" || f.URI != "/v1/vms/a%2Fb?cas=3" || f.Remote != "127.0.0.9:1234" ||
		!reflect.DeepEqual(f.Header, h) || string(f.Body) != `{"x":1}` {
		t.Fatalf("decoded %+v", f)
	}
	if n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3]); n != len(b)-4 {
		t.Fatalf("length prefix %d, payload %d", n, len(b)-4)
	}

	// The values share one array: appending to one leaves the others.
	f.Header["Content-Type"] = append(f.Header["Content-Type"], "x")
	if f.Header.Get("X-Kumoi-Index") != "7" || len(f.Header["X-Many"]) != 2 || f.Header["X-Many"][1] != "b" {
		t.Fatalf("after an append: %v", f.Header)
	}

	resp := AppendResponse(nil, 1<<40, 201, http.Header{"Location": {"/v1/vms/x"}}, []byte("ok"))
	f, err = Decode(resp[4:])
	if err != nil || f.Type != Response || f.ID != 1<<40 || f.Status != 201 || f.Header.Get("Location") != "/v1/vms/x" || string(f.Body) != "ok" {
		t.Fatalf("response %+v %v", f, err)
	}

	// Malformed frames are errors, never panics.
	for _, p := range [][]byte{
		nil, {9, 0}, {Request}, {Request, 0, 200}, {Response, 0, 0xe8, 0x07, 0, 0},
		{Cancel, 0, 1}, {Request, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if f, err := Decode(p); err == nil {
			t.Errorf("%x decoded: %+v", p, f)
		}
	}
	// A frame over the limit is refused before it is read.
	big := bufio.NewReader(bytes.NewReader([]byte{0x7f, 0, 0, 0}))
	if _, err := Read(big, 1<<20); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("oversized frame: %v", err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(AppendRequest(nil, 1, "POST", "/v1/vms", "", http.Header{"A": {"b"}}, []byte("{}"))[4:])
	f.Add(AppendResponse(nil, 2, 200, http.Header{"Content-Type": {"application/json", "x"}, "X-Kumoi-Index": {"9"}, "Y": {"true"}}, nil)[4:])
	f.Add([]byte{Cancel, 5})
	f.Add([]byte{Response, 1, 200, 1, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		fr, err := Decode(p)
		if err != nil {
			return
		}
		if fr.Type != Request && fr.Type != Response && fr.Type != Cancel {
			t.Fatalf("type %d decoded", fr.Type)
		}
		if fr.Status > 999 {
			t.Fatalf("status %d", fr.Status)
		}
		// What decodes re-encodes to a frame that decodes the same.
		var again []byte
		switch fr.Type {
		case Request:
			again = AppendRequest(nil, fr.ID, fr.Method, fr.URI, fr.Remote, fr.Header, fr.Body)
		case Response:
			again = AppendResponse(nil, fr.ID, fr.Status, fr.Header, fr.Body)
		default:
			again = End(Begin(nil, Cancel, fr.ID))
		}
		fr2, err := Decode(again[4:])
		if err != nil || fr2.ID != fr.ID || fr2.Method != fr.Method || fr2.URI != fr.URI || fr2.Status != fr.Status || !bytes.Equal(fr2.Body, fr.Body) ||
			!reflect.DeepEqual(fr2.Header, fr.Header) {
			t.Fatalf("re-encoded %+v as %+v (%v)", fr, fr2, err)
		}
	})
}

// server is a minimal stream server: it answers each request frame with
// answer (nil: never; empty: close the connection), and records the
// frames it reads.
type server struct {
	*httptest.Server
	got chan *Frame
}

func newServer(t *testing.T, upgrade bool, answer func(*Frame) []byte) *server {
	s := &server{got: make(chan *Frame, 64)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !upgrade || r.URL.Path != ClientPath || r.Header.Get("Upgrade") != Proto {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + Proto + "\r\n\r\n")
		brw.Flush()
		for {
			p, err := Read(brw.Reader, 1<<20)
			if err != nil {
				return
			}
			f, err := Decode(p)
			if err != nil {
				return
			}
			s.got <- f
			if f.Type == Request {
				switch b := answer(f); {
				case b == nil:
				case len(b) == 0:
					return
				default:
					conn.Write(b)
				}
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) addr() string { return strings.TrimPrefix(s.URL, "http://") }

func TestConnDo(t *testing.T) {
	s := newServer(t, true, func(f *Frame) []byte {
		return AppendResponse(nil, f.ID, 201, http.Header{"X-Uri": {f.URI}}, f.Body)
	})
	closed := make(chan struct{})
	c, err := Dial(context.Background(), s.addr(), DialConfig{Path: ClientPath, From: "t", OnClose: func() { close(closed) }})
	if err != nil {
		t.Fatal(err)
	}
	// Many in flight at once, each answered with its own.
	errs := make(chan error, 32)
	for i := range 32 {
		go func() {
			uri := "/v1/vms/" + string(rune('a'+i%26))
			resp, _, err := c.Do(context.Background(), func(b []byte, id uint64) []byte {
				return AppendRequest(b, id, "POST", uri, "", nil, []byte(uri))
			})
			if err == nil && (resp.Status != 201 || resp.Header.Get("X-Uri") != uri || string(resp.Body) != uri) {
				err = errors.New("wrong answer " + resp.Header.Get("X-Uri") + " for " + uri)
			}
			errs <- err
		}()
	}
	for range 32 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	c.Fail(errors.New("done"))
	<-closed
	if _, sent, err := c.Do(context.Background(), func(b []byte, id uint64) []byte { return b }); err == nil || sent {
		t.Fatalf("a call on a failed stream: sent %v, %v", sent, err)
	}
}

func TestConnCancel(t *testing.T) {
	s := newServer(t, true, func(*Frame) []byte { return nil }) // never answers
	c, err := Dial(context.Background(), s.addr(), DialConfig{Path: ClientPath})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Fail(errors.New("done"))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		f := <-s.got
		if f.Type != Request {
			t.Errorf("first frame of type %d", f.Type)
		}
		cancel()
	}()
	_, sent, err := c.Do(ctx, func(b []byte, id uint64) []byte { return AppendRequest(b, id, "POST", "/x", "", nil, nil) })
	if !errors.Is(err, context.Canceled) || !sent {
		t.Fatalf("cancelled call: sent %v, %v", sent, err)
	}
	select {
	case f := <-s.got:
		if f.Type != Cancel {
			t.Fatalf("frame of type %d after the cancel", f.Type)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server was not told of the cancel")
	}
}

func TestConnBreaks(t *testing.T) {
	srv := newServer(t, true, func(*Frame) []byte {
		return []byte{} // the connection breaks with the call sent
	})
	c, err := Dial(context.Background(), srv.addr(), DialConfig{Path: ClientPath})
	if err != nil {
		t.Fatal(err)
	}
	_, sent, err := c.Do(context.Background(), func(b []byte, id uint64) []byte { return AppendRequest(b, id, "POST", "/x", "", nil, nil) })
	if err == nil || !sent || c.Err() == nil {
		t.Fatalf("broken stream: sent %v, %v, Err %v", sent, err, c.Err())
	}
}

func TestDialRefusedAndUnreachable(t *testing.T) {
	s := newServer(t, false, nil)
	if _, err := Dial(context.Background(), s.addr(), DialConfig{Path: ClientPath}); !errors.Is(err, ErrRefused) {
		t.Fatalf("a server without streams: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = Dial(context.Background(), addr, DialConfig{Path: ClientPath})
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("nobody listening: %v", err)
	}
}

// TestCarries: what goes on a stream, for both sides (the SDK's transport
// and a follower's forwarding).
func TestCarries(t *testing.T) {
	for _, c := range []struct {
		method, path string
		n            int64
		want         bool
	}{
		{"POST", "/v1/vms", 200, true},
		{"PUT", "/v1/vms/a", 0, true},
		{"DELETE", "/v1/vms/a", 0, true},
		{"POST", "/v1/vms", MaxBody, true},
		{"POST", "/v1/vms", MaxBody + 1, false},
		{"POST", "/v1/vms", -1, false}, // a body of unknown length
		{"GET", "/v1/vms", 0, false},
		{"PATCH", "/v1/vms/a", 10, false},
		{"PUT", "/v1/operator/snapshot", 100, false},
	} {
		if got := Carries(c.method, c.path, c.n); got != c.want {
			t.Errorf("Carries(%s %s, %d) = %v", c.method, c.path, c.n, got)
		}
	}
}

// deadlineConn records the order of SetWriteDeadline and Write calls.
type deadlineConn struct {
	net.Conn
	mu  sync.Mutex
	log []string
}

func (c *deadlineConn) record(s string) {
	c.mu.Lock()
	c.log = append(c.log, s)
	c.mu.Unlock()
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	c.record("write")
	return len(b), nil
}

func (c *deadlineConn) SetWriteDeadline(time.Time) error {
	c.record("deadline")
	return nil
}

func (c *deadlineConn) calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// TestWriterDeadlineFirst: every batch sets its write deadline before its
// first write, a frame larger than the writer's buffer included (bufio
// writes that one to the connection at once): with the deadline set only
// before the flush, such a frame after an idle stream went out under the
// deadline of the last batch, long passed, and failed.
func TestWriterDeadlineFirst(t *testing.T) {
	c := &deadlineConn{}
	out := make(chan Out)
	done := make(chan struct{})
	defer close(done)
	go Writer(c, out, done, func(err error) { t.Errorf("writer failed: %v", err) })
	waitCalls := func(n int) []string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if got := c.calls(); len(got) >= n {
				return got
			}
			runtime.Gosched()
		}
		t.Fatalf("calls %v, want %d", c.calls(), n)
		return nil
	}
	out <- Out{B: make([]byte, 100)}
	if got := waitCalls(2); !slices.Equal(got, []string{"deadline", "write"}) {
		t.Fatalf("small frame: calls %v, want deadline then write", got)
	}
	out <- Out{B: make([]byte, 100<<10)}
	if got := waitCalls(4); !slices.Equal(got[2:], []string{"deadline", "write"}) {
		t.Fatalf("large frame: calls %v, want deadline then write", got)
	}
}
