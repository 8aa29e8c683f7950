package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/tlsutil"
	"github.com/kumoi/kumoi/resource"
)

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := tlsutil.CreateCA(ca); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		role tlsutil.Role
		id   string
	}{{tlsutil.RoleServer, "c1"}, {tlsutil.RoleClient, "ops"}} {
		if err := tlsutil.CreateCert(c.role, ca, c.id, nil, nil, filepath.Join(dir, c.id)); err != nil {
			t.Fatal(err)
		}
	}
	srvCfg, err := tlsutil.Files{CA: ca + ".pem", Cert: filepath.Join(dir, "c1.pem"), Key: filepath.Join(dir, "c1-key.pem")}.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	peer := make(chan string, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := ""
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		peer <- cn
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"node_id":"c1"}`))
	}))
	srv.TLS = srvCfg
	srv.StartTLS()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")

	cfg, err := client.TLSConfigFromFiles(ca+".pem", filepath.Join(dir, "ops.pem"), filepath.Join(dir, "ops-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// A bare address means https with TLS.
	c, err := client.New(client.Config{Addrs: []string{addr}, TLS: cfg, Timeout: 5 * time.Second, RetryDeadline: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Addrs()[0]; got != "https://"+addr {
		t.Errorf("address %q", got)
	}
	ctx := context.Background()
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("status over TLS: %v", err)
	}
	if cn := <-peer; cn != "client.ops" {
		t.Errorf("the server saw client certificate %q", cn)
	}

	// The environment: the CA alone verifies the server, no client cert.
	t.Setenv(client.EnvCACert, ca+".pem")
	t.Setenv(client.EnvClientCert, "")
	t.Setenv(client.EnvClientKey, "")
	envCfg, err := client.TLSConfigFromEnv()
	if err != nil || envCfg == nil {
		t.Fatalf("from env: %v %v", envCfg, err)
	}
	c2, _ := client.New(client.Config{Addrs: []string{"https://" + addr}, TLS: envCfg, Timeout: 5 * time.Second, RetryDeadline: -1})
	if _, err := c2.Status(ctx); err != nil {
		t.Fatalf("status with the CA only: %v", err)
	}
	if cn := <-peer; cn != "" {
		t.Errorf("the server saw client certificate %q", cn)
	}

	// Without the CA the server is not trusted.
	c3, _ := client.New(client.Config{Addrs: []string{"https://" + addr}, Timeout: 5 * time.Second, RetryDeadline: -1})
	if _, err := c3.Status(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("status without the CA: %v", err)
	}
	// A write whose TLS handshake fails was never applied: the server
	// processed nothing (client.NotApplied), and the server saw nothing.
	_, err = c3.Create(ctx, "vm", resource.CreateRequest{Name: "x", Spec: []byte(`{"cpus":1,"memory_mib":64}`)})
	if err == nil || !client.NotApplied(err) {
		t.Errorf("create over a refused TLS handshake: %v, NotApplied = %t; want an error that was never applied", err, client.NotApplied(err))
	}
	select {
	case cn := <-peer:
		t.Errorf("the server handled a request after a refused handshake (client %q)", cn)
	default:
	}
	// A caller's own HTTP client gets the TLS configuration.
	c4, _ := client.New(client.Config{Addrs: []string{addr}, TLS: cfg, HTTPClient: &http.Client{Transport: &http.Transport{}}, Timeout: 5 * time.Second, RetryDeadline: -1})
	if _, err := c4.Status(ctx); err != nil {
		t.Fatalf("status with an own HTTP client: %v", err)
	}
	<-peer

	if cfg, err := client.TLSConfigFromFiles("", "", ""); cfg != nil || err != nil {
		t.Errorf("no files: %v %v", cfg, err)
	}
	if _, err := client.TLSConfigFromFiles(ca+".pem", filepath.Join(dir, "ops.pem"), ""); err == nil {
		t.Error("a client certificate without its key was accepted")
	}
	if _, err := client.TLSConfigFromFiles(filepath.Join(dir, "ops-key.pem"), "", ""); err == nil {
		t.Error("a key file taken for a CA")
	}
}
