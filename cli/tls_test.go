package cli

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/tlsutil"
)

func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "tls", "ca")
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return runCLI(t, args...)
	}
	if out, errOut, code := run("tls", "ca", "create", "--out", ca); code != 0 || !strings.Contains(out, ca+".pem") {
		t.Fatalf("ca create: %d %q %q", code, out, errOut)
	}
	before, _ := os.ReadFile(ca + "-key.pem")
	if _, errOut, code := run("tls", "ca", "create", "--out", ca); code != 1 || !strings.Contains(errOut, "--force") {
		t.Errorf("ca create over a CA: exit %d, %q", code, errOut)
	}
	if after, _ := os.ReadFile(ca + "-key.pem"); string(after) != string(before) {
		t.Error("the CA key was overwritten without --force")
	}
	if _, errOut, code := run("tls", "ca", "create", "--out", ca, "--force"); code != 0 {
		t.Errorf("ca create --force: exit %d, %q", code, errOut)
	}
	if after, _ := os.ReadFile(ca + "-key.pem"); string(after) == string(before) {
		t.Error("--force did not replace the CA key")
	}

	c1 := filepath.Join(dir, "tls", "c1")
	if out, errOut, code := run("tls", "cert", "create", "--server", "--ca", ca, "--node-id", "c1", "--ip", "10.0.0.1",
		"--dns", "c1.example", "--days", "30", "--out", c1); code != 0 || !strings.Contains(out, c1+"-key.pem") {
		t.Fatalf("cert create: %d %q %q", code, out, errOut)
	}
	b, _ := os.ReadFile(c1 + ".pem")
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !tlsutil.HasRole(cert, tlsutil.RoleServer) || cert.VerifyHostname("10.0.0.1") != nil || cert.VerifyHostname("c1.example") != nil ||
		cert.VerifyHostname("127.0.0.1") != nil || cert.Subject.CommonName != "server.c1" {
		t.Errorf("server cert: %v %v %s", cert.DNSNames, cert.IPAddresses, cert.Subject.CommonName)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore).Hours() / 24; d < 29 || d > 31 {
		t.Errorf("--days 30 gave %.1f days", d)
	}
	if st, _ := os.Stat(c1 + "-key.pem"); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	if err := (tlsutil.Files{CA: ca + ".pem", Cert: c1 + ".pem", Key: c1 + "-key.pem"}).Validate(); err != nil {
		t.Error(err)
	}
	if _, errOut, code := run("tls", "cert", "create", "--worker", "--ca", ca, "--node-id", "h1", "--out", filepath.Join(dir, "h1")); code != 0 {
		t.Errorf("worker cert: %d %q", code, errOut)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--ca", ca, "--node-id", "x", "--out", filepath.Join(dir, "x")}, 2, "exactly one of --server"},
		{[]string{"--server", "--client", "--ca", ca, "--node-id", "x", "--out", filepath.Join(dir, "x")}, 2, "exactly one of --server"},
		{[]string{"--worker", "--ca", ca, "--node-id", "x", "--ip", "10.0.0.2", "--out", filepath.Join(dir, "x")}, 2, "for --server"},
		{[]string{"--server", "--ca", ca, "--node-id", "x", "--ip", "nope", "--out", filepath.Join(dir, "x")}, 2, "not an IP"},
		{[]string{"--server", "--ca", filepath.Join(dir, "none"), "--node-id", "x", "--out", filepath.Join(dir, "x")}, 2, "no CA key"},
		{[]string{"--server", "--ca", ca, "--node-id", "c1", "--out", c1}, 1, "--force"},
		{[]string{"--client", "--ca", ca, "--out", filepath.Join(dir, "x")}, 2, "node-id"},
	} {
		_, errOut, code := run(append([]string{"tls", "cert", "create"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("tls cert create %v: exit %d %q, want %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
}

// TestAgentTLSFlags: --tls-ca, --tls-cert and --tls-key go together, and
// must load; -dev takes none.
func TestAgentTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca, other := filepath.Join(dir, "ca"), filepath.Join(dir, "other")
	for _, p := range []string{ca, other} {
		if err := tlsutil.CreateCA(p); err != nil {
			t.Fatal(err)
		}
	}
	c1 := filepath.Join(dir, "c1")
	if err := tlsutil.CreateCert(tlsutil.RoleServer, other, "c1", nil, nil, c1); err != nil {
		t.Fatal(err)
	}
	base := []string{"agent", "--controller", "--node-id", "c1", "--data-dir", filepath.Join(dir, "data"), "--bind", "127.0.0.96"}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--tls-ca", ca + ".pem"}, "together"},
		{[]string{"--tls-cert", c1 + ".pem", "--tls-key", c1 + "-key.pem"}, "together"},
		{[]string{"--tls-ca", ca + ".pem", "--tls-cert", c1 + ".pem", "--tls-key", c1 + "-key.pem"}, "not valid under --tls-ca"},
		{[]string{"--tls-ca", ca + ".pem", "--tls-cert", c1 + ".pem", "--tls-key", ca + "-key.pem"}, "--tls-key"},
	} {
		_, errOut, code := runCLI(t, append(base, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.msg) {
			t.Errorf("agent %v: exit %d %q, want 2 and %q", tc.args, code, errOut, tc.msg)
		}
	}
	if _, errOut, code := runCLI(t, "agent", "-dev", "--tls-ca", ca+".pem"); code != 2 || !strings.Contains(errOut, "without TLS") {
		t.Errorf("agent -dev --tls-ca: exit %d %q", code, errOut)
	}
}
