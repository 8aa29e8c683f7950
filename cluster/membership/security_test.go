package membership

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/kumoi/kumoi/cluster/membership/membershiptest"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// Gossip tests bind 127.0.74.x (no other test uses that range).

func key(b byte, n int) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune('a'+b)), n)))
}

func TestParseKeys(t *testing.T) {
	k16, k24, k32 := key(0, 16), key(1, 24), key(2, 32)
	keys, err := ParseKeys([]string{k32 + "," + k16, " " + k24 + " ", k16, ""})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || len(keys[0]) != 32 || len(keys[1]) != 16 || len(keys[2]) != 24 {
		t.Fatalf("keys = %d %v, want 32, 16, 24 bytes in order, the duplicate dropped", len(keys), keys)
	}
	if keys, err := ParseKeys(nil); err != nil || len(keys) != 0 {
		t.Fatalf("no keys: %v %v", keys, err)
	}
	for _, bad := range []string{"not base64!", key(0, 15), key(0, 33)} {
		_, err := ParseKeys([]string{k16, bad})
		if err == nil || !strings.Contains(err.Error(), "key 2") || strings.Contains(err.Error(), bad) {
			t.Errorf("ParseKeys(%q): err = %v, want one naming key 2 and not its text", bad, err)
		}
	}
	if err := (Security{Keys: [][]byte{[]byte("short")}}).Validate(); err == nil {
		t.Fatal("Validate took a 5-byte key")
	}
}

func TestGenerateKey(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateKey()
	keys, err := ParseKeys([]string{a})
	if err != nil || len(keys) != 1 || len(keys[0]) != 32 {
		t.Fatalf("GenerateKey() = %q: %v %v, want base64 of 32 bytes", a, keys, err)
	}
	if a == b {
		t.Fatal("two keys are the same")
	}
}

// startNode starts an agent's gossip on ip:7402 with sec.
func startNode(t *testing.T, name, ip string, sec Security) *memberlist.Memberlist {
	t.Helper()
	d, err := NewDelegate(Meta{ID: name, Role: RoleWorker}, NewTable(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ml, err := Create(Options{Name: name, BindIP: ip, Port: DefaultGossipPort, Security: sec}, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	return ml
}

func mustKeys(t *testing.T, s ...string) [][]byte {
	t.Helper()
	k, err := ParseKeys(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEncryptedGossip: agents with the key join each other; one with
// another key, or none, cannot join; and the rotation of docs/gossip.md
// works step by step: an agent that has the new key second still talks
// to one that only has the old key, one that sends with the new key
// talks to every agent that has it, whatever its place.
func TestEncryptedGossip(t *testing.T) {
	k1, k2 := key(3, 32), key(4, 32)
	a := startNode(t, "a", "127.0.74.1", Security{Keys: mustKeys(t, k1)})
	b := startNode(t, "b", "127.0.74.2", Security{Keys: mustKeys(t, k1, k2)}) // step 1: new key added second
	if _, err := b.Join([]string{"127.0.74.1:7402"}); err != nil {
		t.Fatalf("an agent with the key (and a second one) cannot join: %v", err)
	}
	c := startNode(t, "c", "127.0.74.3", Security{Keys: mustKeys(t, k2, k1)}) // step 2: new key first
	if _, err := c.Join([]string{"127.0.74.2:7402"}); err != nil {
		t.Fatalf("an agent sending with the new key cannot join one that has it second: %v", err)
	}
	if n, err := c.Join([]string{"127.0.74.1:7402"}); err == nil || n != 0 {
		t.Fatalf("an agent sending with a key the peer lacks joined it (%d, %v): rotation must add the key everywhere first", n, err)
	}
	for _, tc := range []struct {
		name, ip string
		sec      Security
	}{
		{"other-key", "127.0.74.4", Security{Keys: mustKeys(t, k2)}},
		{"no-key", "127.0.74.5", Security{}},
	} {
		x := startNode(t, tc.name, tc.ip, tc.sec)
		if n, err := x.Join([]string{"127.0.74.1:7402"}); err == nil || n != 0 {
			t.Errorf("%s joined an encrypted pool (%d, %v)", tc.name, n, err)
		}
	}
	if n := a.NumMembers(); n > 3 {
		t.Fatalf("a sees %d members: %v, want a, b (and c through b) only", n, a.Members())
	}
	for _, m := range a.Members() {
		if m.Name == "other-key" || m.Name == "no-key" {
			t.Fatalf("a let %s in", m.Name)
		}
	}
}

// TestTLSGossipStreams: agents with certificates of the cluster CA and
// the server or worker role join each other; one whose certificate is
// from another CA, a client certificate, or no TLS at all cannot join;
// VerifyPeerRole tells the roles apart.
func TestTLSGossipStreams(t *testing.T) {
	ca, other := membershiptest.NewCA(t), membershiptest.NewCA(t)
	sec := func(ca *membershiptest.CA, role, node string) Security {
		s, c := ca.Configs(t, role, node)
		return Security{ServerTLS: s, ClientTLS: c}
	}
	a := startNode(t, "a", "127.0.74.11", sec(ca, "server", "a"))
	w := startNode(t, "w", "127.0.74.12", sec(ca, "worker", "w"))
	if _, err := w.Join([]string{"127.0.74.11:7402"}); err != nil {
		t.Fatalf("a worker with a certificate of the cluster CA cannot join: %v", err)
	}
	for _, tc := range []struct {
		name, ip string
		sec      Security
	}{
		{"other-ca", "127.0.74.13", sec(other, "server", "x")},
		{"client-cert", "127.0.74.14", sec(ca, "client", "op")},
		{"plain", "127.0.74.15", Security{}},
	} {
		x := startNode(t, tc.name, tc.ip, tc.sec)
		if n, err := x.Join([]string{"127.0.74.11:7402"}); err == nil || n != 0 {
			t.Errorf("%s joined a TLS pool (%d, %v)", tc.name, n, err)
		}
		if n, err := x.Join([]string{"127.0.74.12:7402"}); err == nil || n != 0 {
			t.Errorf("%s joined a TLS pool through the worker (%d, %v)", tc.name, n, err)
		}
	}
	testcluster.WaitFor(t, 5*time.Second, "a to see a and w only", func() (bool, error) {
		names := memberNames(a)
		return names == "a,w", fmt.Errorf("a sees %s", names)
	})

	_, client := ca.Configs(t, "server", "leader")
	if c, err := VerifyPeerRole("127.0.74.12:7402", nil, client, time.Second, CertRoleWorker, CertRoleServer); err != nil || c.Subject.CommonName != "worker.w" {
		t.Fatalf("VerifyPeerRole(worker) = %v, %v", c, err)
	}
	if _, err := VerifyPeerRole("127.0.74.12:7402", nil, client, time.Second, CertRoleServer); !errors.Is(err, ErrPeerCertificate) {
		t.Fatalf("a worker's certificate passed for a server's: %v", err)
	}
	_, otherClient := other.Configs(t, "server", "x")
	if _, err := VerifyPeerRole("127.0.74.11:7402", nil, otherClient, time.Second, CertRoleServer); !errors.Is(err, ErrPeerCertificate) {
		t.Fatalf("a certificate of another CA passed: %v", err)
	}
	if _, err := VerifyPeerRole("127.0.74.11:7402", nil, &tls.Config{}, time.Second, CertRoleServer); err == nil {
		t.Fatal("VerifyPeerRole without a CA pool passed")
	}
}

func memberNames(ml *memberlist.Memberlist) string {
	var names []string
	for _, m := range ml.Members() {
		names = append(names, m.Name)
	}
	if len(names) == 2 && names[0] > names[1] {
		names[0], names[1] = names[1], names[0]
	}
	return strings.Join(names, ",")
}
