package e2e

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// notifySocket is a systemd notification socket of the test's own: what
// the agents under it send, in order.
type notifySocket struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, msgs: make(chan string, 64)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return n
}

// next waits for the next message.
func (n *notifySocket) next(t *testing.T, what string) string {
	t.Helper()
	select {
	case m, ok := <-n.msgs:
		if !ok {
			t.Fatalf("waiting for %s: the socket closed", what)
		}
		return m
	case <-time.After(testcluster.Stretch(leaderTimeout)):
		t.Fatalf("no %s notification", what)
		return ""
	}
}

// TestSystemdNotify runs a controller and a worker as systemd runs a
// Type=notify unit (NOTIFY_SOCKET): each says READY=1 — the controller
// only once its API answers — and STOPPING=1 when stopped gracefully.
func TestSystemdNotify(t *testing.T) {
	ns := listenNotify(t)
	c := newCluster(t, testcluster.Options{Controllers: 1, Env: []string{"NOTIFY_SOCKET=" + ns.path}})
	m := ns.next(t, "the controller's READY")
	if !strings.Contains(m, "READY=1") || !strings.Contains(m, "STATUS=serving the API on "+c.URL(0)) {
		t.Fatalf("controller's first notification %q", m)
	}
	// Ready means serving: the API answers at once.
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var st resource.Status
	if err := testcluster.GetJSON(ctx, c.HTTPClient(), c.URL(0)+"/v1/status", &st); err != nil {
		t.Fatalf("ready, but GET /v1/status: %v", err)
	}
	c.WaitLeader(leaderTimeout)
	w := c.AddWorker("hv-1")
	if m := ns.next(t, "the worker's READY"); !strings.Contains(m, "READY=1") || !strings.Contains(m, "worker of host") {
		t.Fatalf("worker's first notification %q", m)
	}
	c.StopWorker(w)
	if m := ns.next(t, "the worker's STOPPING"); !strings.Contains(m, "STOPPING=1") {
		t.Fatalf("worker's notification on SIGTERM %q", m)
	}
	c.Stop(0)
	if m := ns.next(t, "the controller's STOPPING"); !strings.Contains(m, "STOPPING=1") {
		t.Fatalf("controller's notification on SIGTERM %q", m)
	}
}
