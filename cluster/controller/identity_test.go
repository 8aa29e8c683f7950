package controller

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/internal/testcluster"
)

// TestClusterIdentity: the first leader gives a new cluster its identity;
// every controller learns the same one, from the replicated state, and
// shows it in its status.
func TestClusterIdentity(t *testing.T) {
	ic := newInmemCluster(t, 3)
	var id string
	testcluster.WaitFor(t, 10*time.Second, "every controller to know the cluster identity", func() (bool, error) {
		id = ic.ctrls[0].ClusterID()
		for _, c := range ic.ctrls {
			if got := c.ClusterID(); got == "" || got != id || c.FSM().State().ClusterID(nil) != id {
				return false, nil
			}
		}
		return true, nil
	})
	for _, c := range ic.ctrls {
		if st := c.Status(); st.ClusterID != id {
			t.Fatalf("%s: status cluster_id %q, want %q", c.NodeID(), st.ClusterID, id)
		}
	}
}

func TestClusterIDFile(t *testing.T) {
	dir := t.TempDir()
	if id, err := readClusterID(dir); err != nil || id != "" {
		t.Fatalf("empty data dir: %q, %v", id, err)
	}
	const id = "0f1e2d3c-4b5a-4697-8877-665544332211"
	if err := writeClusterID(dir, id); err != nil {
		t.Fatal(err)
	}
	if got, err := readClusterID(dir); err != nil || got != id {
		t.Fatalf("read back %q, %v; want %s", got, err, id)
	}
	if err := os.WriteFile(filepath.Join(dir, clusterIDFile), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readClusterID(dir); err == nil {
		t.Fatal("a corrupt cluster_id file was accepted")
	}
}

// newTestStreamLayer listens on 127.0.0.1 with the given cluster identity.
func newTestStreamLayer(t *testing.T, id string) *streamLayer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newStreamLayer(ln, net.ParseIP("127.0.0.1"), func() string { return id }, nil, hclog.NewNullLogger())
	t.Cleanup(func() { l.Close() })
	return l
}

// acceptAll hands on every connection l accepts.
func acceptAll(l *streamLayer) <-chan net.Conn {
	ch := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	return ch
}

// accepted returns the next accepted connection, or nil within d.
func accepted(ch <-chan net.Conn, d time.Duration) net.Conn {
	select {
	case c := <-ch:
		return c
	case <-time.After(d):
		return nil
	}
}

// TestStreamLayerClusterHandshake: Raft connections between nodes of the
// same cluster (or a node that knows none yet) go through and carry data;
// between two clusters both sides refuse, naming both identities; a
// connection without a greeting (an older build) is accepted as it is.
func TestStreamLayerClusterHandshake(t *testing.T) {
	const a, b = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
	server := newTestStreamLayer(t, a)
	addr := server.Addr().String()
	incoming := acceptAll(server)

	for _, id := range []string{a, ""} {
		c, err := newTestStreamLayer(t, id).Dial(raft.ServerAddress(addr), time.Second)
		if err != nil {
			t.Fatalf("dial from cluster %q: %v", id, err)
		}
		in := accepted(incoming, 5*time.Second)
		if in == nil {
			t.Fatalf("the server did not accept a peer of cluster %q", id)
		}
		if _, err := c.Write([]byte{0, 42}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(in, buf); err != nil || buf[0] != 0 || buf[1] != 42 {
			t.Fatalf("data after the greeting: %v %v", buf, err)
		}
		c.Close()
		in.Close()
	}

	_, err := newTestStreamLayer(t, b).Dial(raft.ServerAddress(addr), time.Second)
	if !errors.Is(err, ErrOtherClusterPeer) || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
		t.Fatalf("dial from another cluster: %v, want ErrOtherClusterPeer naming both ids", err)
	}
	if in := accepted(incoming, 300*time.Millisecond); in != nil {
		t.Fatal("the server handed raft a connection from another cluster")
	}

	// An older node: no greeting, a raft RPC byte first.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte{1, 7}); err != nil {
		t.Fatal(err)
	}
	in := accepted(incoming, 5*time.Second)
	if in == nil {
		t.Fatal("a connection without a greeting was not accepted")
	}
	got, err := bufio.NewReader(in).Peek(2)
	if err != nil || got[0] != 1 || got[1] != 7 {
		t.Fatalf("first bytes of a connection without greeting: %v %v", got, err)
	}
	in.Close()
}

// TestMarkNodeInStore: a Raft store remembers the node that took part in
// Raft with it, so that a node restarted on its own (intact) data
// directory before it ever had Raft state is told apart from a node whose
// data directory was wiped (a new store), replaced (another node's store)
// or whose start was refused (its store was never marked).
func TestMarkNodeInStore(t *testing.T) {
	const a, b = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
	store := raft.NewInmemStore()
	if storeIsOwn(store, a) {
		t.Fatal("a new store is some node's own")
	}
	if err := markStore(store, a); err != nil {
		t.Fatal(err)
	}
	if !storeIsOwn(store, a) || storeIsOwn(store, b) {
		t.Fatalf("after marking it for a: own for a %t, for b %t; want true, false", storeIsOwn(store, a), storeIsOwn(store, b))
	}
	if has, err := raft.HasExistingState(store, store, raft.NewInmemSnapshotStore()); err != nil || has {
		t.Fatalf("the mark made the store look like Raft state: %t %v", has, err)
	}
}
