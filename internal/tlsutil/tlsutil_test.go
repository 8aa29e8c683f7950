package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pki makes a CA in dir/NAME and returns its prefix.
func pki(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := CreateCA(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func cert(t *testing.T, role Role, ca, id string, out string, ips []net.IP, dns []string) Files {
	t.Helper()
	if err := CreateCert(role, ca, id, ips, dns, out); err != nil {
		t.Fatal(err)
	}
	return Files{CA: CertPath(ca), Cert: CertPath(out), Key: KeyPath(out)}
}

func parse(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCreateFiles(t *testing.T) {
	dir := t.TempDir()
	ca := pki(t, dir, "ca")
	f := cert(t, RoleServer, ca, "c1", filepath.Join(dir, "c1"), []net.IP{net.ParseIP("10.1.2.3")}, []string{"c1.example"})
	for _, p := range []string{KeyPath(ca), f.Key} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, st.Mode().Perm())
		}
	}
	c := parse(t, f.Cert)
	if c.Subject.CommonName != "server.c1" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	if !HasRole(c, RoleServer) || HasRole(c, RoleWorker) || RoleOf(c) != RoleServer {
		t.Errorf("roles of %v", c.DNSNames)
	}
	for _, name := range []string{"localhost", "c1.example"} {
		if err := c.VerifyHostname(name); err != nil {
			t.Error(err)
		}
	}
	for _, ip := range []string{"127.0.0.1", "::1", "10.1.2.3"} {
		if err := c.VerifyHostname(ip); err != nil {
			t.Error(err)
		}
	}
	if err := c.VerifyHostname("10.9.9.9"); err == nil {
		t.Error("valid for an address it was not made for")
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", c.PublicKey)
	}
	w := cert(t, RoleWorker, ca, "h1", filepath.Join(dir, "h1"), nil, nil)
	wc := parse(t, w.Cert)
	if RoleOf(wc) != RoleWorker || wc.Subject.CommonName != "worker.h1" || len(wc.IPAddresses) != 0 {
		t.Errorf("worker cert: %v %v %v", wc.DNSNames, wc.Subject.CommonName, wc.IPAddresses)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}

	// Nothing is overwritten.
	if err := CreateCA(ca); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateCA over a CA: %v", err)
	}
	if err := CreateCert(RoleServer, ca, "c1", nil, nil, filepath.Join(dir, "c1")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateCert over a cert: %v", err)
	}
	if err := CreateCert(RoleWorker, ca, "h2", []net.IP{net.ParseIP("10.0.0.1")}, nil, filepath.Join(dir, "h2")); err == nil {
		t.Error("a worker certificate took an address")
	}
	if err := CreateCert("admin", ca, "x", nil, nil, filepath.Join(dir, "x")); err == nil {
		t.Error("an unknown role was accepted")
	}
}

func TestFilesAllOrNone(t *testing.T) {
	dir := t.TempDir()
	ca := pki(t, dir, "ca")
	f := cert(t, RoleServer, ca, "c1", filepath.Join(dir, "c1"), nil, nil)
	for _, bad := range []Files{{CA: f.CA}, {Cert: f.Cert, Key: f.Key}, {CA: f.CA, Cert: f.Cert}} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "together") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	// A certificate of another CA under this CA is refused at load.
	other := pki(t, dir, "other")
	o := cert(t, RoleServer, other, "c9", filepath.Join(dir, "c9"), nil, nil)
	if err := (Files{CA: f.CA, Cert: o.Cert, Key: o.Key}).Validate(); err == nil {
		t.Error("a certificate of another CA loaded")
	}
	if err := (Files{CA: f.CA, Cert: f.Cert, Key: o.Key}).Validate(); err == nil {
		t.Error("a certificate with another's key loaded")
	}
}

// serve runs a TLS listener with cfg that completes handshakes and echoes
// one byte; it returns its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() != nil {
					return
				}
				b := make([]byte, 1)
				if _, err := io.ReadFull(c, b); err == nil {
					_, _ = c.Write(b)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// force presents pair whatever CAs the server asks for (Go's client
// otherwise sends no certificate the server's CAs did not sign).
func force(pair tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
}

// roundTrip dials addr with cfg and exchanges a byte (with TLS 1.3 a
// refused client certificate shows only at the first read).
func roundTrip(addr string, cfg *tls.Config) error {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, 1))
	return err
}

func TestMutualRoles(t *testing.T) {
	dir := t.TempDir()
	ca := pki(t, dir, "ca")
	srv := cert(t, RoleServer, ca, "c1", filepath.Join(dir, "c1"), nil, nil)
	peer := cert(t, RoleServer, ca, "c2", filepath.Join(dir, "c2"), nil, nil)
	wrk := cert(t, RoleWorker, ca, "h1", filepath.Join(dir, "h1"), nil, nil)
	other := pki(t, dir, "other")
	foreign := cert(t, RoleServer, other, "c9", filepath.Join(dir, "c9"), nil, nil)
	foreign.CA = srv.CA // it trusts this cluster's CA, but its own cert is another's

	mutual, err := srv.MutualServerConfig(RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, mutual)
	client := func(f Files) *tls.Config {
		t.Helper()
		c, err := f.ClientConfigFor(RoleServer)
		if err != nil {
			// A foreign cert does not load under this CA: build
			// the config by hand as an attacker would.
			pair, err2 := tls.LoadX509KeyPair(f.Cert, f.Key)
			if err2 != nil {
				t.Fatal(err, err2)
			}
			pool := x509.NewCertPool()
			b, _ := os.ReadFile(srv.CA)
			pool.AppendCertsFromPEM(b)
			return &tls.Config{GetClientCertificate: force(pair), RootCAs: pool, ServerName: RoleServer.DNSName()}
		}
		return c
	}
	if err := roundTrip(addr, client(peer)); err != nil {
		t.Fatalf("server peer refused: %v", err)
	}
	if err := roundTrip(addr, client(wrk)); err == nil {
		t.Error("a worker certificate was accepted where a server is required")
	}
	if err := roundTrip(addr, client(foreign)); err == nil {
		t.Error("a certificate from another CA was accepted")
	}
	// No certificate at all.
	nocert := client(peer).Clone()
	nocert.Certificates = nil
	if err := roundTrip(addr, nocert); err == nil {
		t.Error("a peer without a certificate was accepted")
	}

	// VerifyPeer: the listener of a server passes; a server whose
	// certificate is a worker's, or another CA's, does not.
	cc := client(peer)
	if err := VerifyPeer(addr, cc, RoleServer); err != nil {
		t.Errorf("VerifyPeer of a server: %v", err)
	}
	wrkSrv, err := wrk.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyPeer(serve(t, wrkSrv), cc, RoleServer); err == nil {
		t.Error("VerifyPeer passed a worker certificate for a server")
	}
	pair, _ := tls.LoadX509KeyPair(foreign.Cert, foreign.Key)
	foreignAddr := serve(t, &tls.Config{Certificates: []tls.Certificate{pair}})
	if err := VerifyPeer(foreignAddr, cc, RoleServer); err == nil {
		t.Error("VerifyPeer passed a server certificate of another CA")
	}
}

func TestServerConfigClientCertOptional(t *testing.T) {
	dir := t.TempDir()
	ca := pki(t, dir, "ca")
	srv := cert(t, RoleServer, ca, "c1", filepath.Join(dir, "c1"), nil, nil)
	cli := cert(t, RoleClient, ca, "ops", filepath.Join(dir, "ops"), nil, nil)
	sc, err := srv.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if sc.MinVersion < tls.VersionTLS12 {
		t.Errorf("MinVersion %x", sc.MinVersion)
	}
	addr := serve(t, sc)
	cc, err := cli.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	// Dialed by address: the server cert is valid for 127.0.0.1.
	if err := roundTrip(addr, cc); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	anon := cc.Clone()
	anon.Certificates = nil
	if err := roundTrip(addr, anon); err != nil {
		t.Fatalf("client without a certificate: %v", err)
	}
	// A client certificate of another CA is refused.
	other := pki(t, dir, "other")
	o := cert(t, RoleClient, other, "eve", filepath.Join(dir, "eve"), nil, nil)
	pair, _ := tls.LoadX509KeyPair(o.Cert, o.Key)
	bad := anon.Clone()
	bad.GetClientCertificate = force(pair)
	if err := roundTrip(addr, bad); err == nil {
		t.Error("a client certificate of another CA was accepted")
	}
	// TLS 1.1 is refused.
	old := anon.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if err := roundTrip(addr, old); err == nil {
		t.Error("TLS 1.1 was accepted")
	}
}
