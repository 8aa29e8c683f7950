package controller

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/internal/tlsutil"
)

func newTLSStreamLayer(t *testing.T, f tlsutil.Files, logs io.Writer) *streamLayer {
	t.Helper()
	tlsc, err := loadTLS(f)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newStreamLayerTLS(ln, net.ParseIP("127.0.0.1"), func() string { return "" }, nil,
		hclog.New(&hclog.LoggerOptions{Output: logs}), tlsc)
	t.Cleanup(func() { l.Close() })
	return l
}

// TestStreamLayerTLS: Raft over mutual TLS carries data between server
// certificates of one CA; a worker certificate of that CA, a server
// certificate of another CA and a plain TCP peer are refused, and the
// refusal is logged.
func TestStreamLayerTLS(t *testing.T) {
	dir := t.TempDir()
	mk := func(caName string, role tlsutil.Role, id string) tlsutil.Files {
		ca := filepath.Join(dir, caName)
		if _, err := os.Stat(tlsutil.CertPath(ca)); err != nil {
			if err := tlsutil.CreateCA(ca); err != nil {
				t.Fatal(err)
			}
		}
		out := filepath.Join(dir, caName+"-"+id)
		if err := tlsutil.CreateCert(role, ca, id, nil, nil, out); err != nil {
			t.Fatal(err)
		}
		return tlsutil.Files{CA: tlsutil.CertPath(ca), Cert: tlsutil.CertPath(out), Key: tlsutil.KeyPath(out)}
	}
	var logs lockedBuffer
	server := newTLSStreamLayer(t, mk("ca", tlsutil.RoleServer, "c1"), &logs)
	addr := raft.ServerAddress(server.Addr().String())
	incoming := acceptAll(server)

	c, err := newTLSStreamLayer(t, mk("ca", tlsutil.RoleServer, "c2"), io.Discard).Dial(addr, time.Second)
	if err != nil {
		t.Fatalf("dial with a server certificate: %v", err)
	}
	in := accepted(incoming, 5*time.Second)
	if in == nil {
		t.Fatal("the server did not accept a server certificate")
	}
	if _, err := c.Write([]byte{0, 42}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(in, buf); err != nil || buf[1] != 42 {
		t.Fatalf("data over TLS: %v %v", buf, err)
	}
	c.Close()
	in.Close()

	// A worker certificate of the CA: the server refuses it.
	if _, err := newTLSStreamLayer(t, mk("ca", tlsutil.RoleWorker, "h1"), io.Discard).Dial(addr, time.Second); err == nil {
		t.Error("raft with a worker certificate was accepted")
	}
	// Another CA: each side refuses the other.
	var otherLogs lockedBuffer
	if _, err := newTLSStreamLayer(t, mk("other", tlsutil.RoleServer, "c9"), &otherLogs).Dial(addr, time.Second); err == nil {
		t.Error("raft with another CA's certificate was accepted")
	}
	// Plain TCP.
	if _, err := newTestStreamLayer(t, "").Dial(addr, time.Second); err == nil {
		t.Error("raft without TLS was accepted")
	}
	if in := accepted(incoming, 200*time.Millisecond); in != nil {
		t.Fatal("a refused peer's connection reached raft")
	}
	if !strings.Contains(logs.String(), "refusing a raft peer: the TLS handshake failed") {
		t.Errorf("the refusal was not logged:\n%s", logs.String())
	}
	if !strings.Contains(otherLogs.String(), "unknown authority") {
		t.Errorf("the dialer did not log the unknown CA:\n%s", otherLogs.String())
	}

	// The controller's peer configuration checks the role whatever
	// address it dials (VerifyPeer, what the leader checks before it
	// adds a voter).
	peer, err := loadTLS(mk("ca", tlsutil.RoleServer, "c3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.VerifyPeer(string(addr), peer.peer, tlsutil.RoleServer); err != nil {
		t.Errorf("VerifyPeer of a raft listener: %v", err)
	}
	if tlsc, err := loadTLS(tlsutil.Files{}); tlsc != nil || err != nil {
		t.Errorf("loadTLS without files: %v %v", tlsc, err)
	}
}
