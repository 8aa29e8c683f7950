package api

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/tlsutil"
)

// TestHTTPForwardingTLS: with a TLS forward client a follower forwards to
// the leader's HTTPS API, presenting its certificate and requiring the
// leader's server certificate; a leader whose certificate is of another CA
// is not trusted (503, nothing written).
func TestHTTPForwardingTLS(t *testing.T) {
	dir := t.TempDir()
	for _, ca := range []string{"ca", "other"} {
		if err := tlsutil.CreateCA(filepath.Join(dir, ca)); err != nil {
			t.Fatal(err)
		}
	}
	files := func(caName string, role tlsutil.Role, id string) tlsutil.Files {
		ca := filepath.Join(dir, caName)
		out := filepath.Join(dir, caName+"-"+id)
		if err := tlsutil.CreateCert(role, ca, id, nil, nil, out); err != nil {
			t.Fatal(err)
		}
		return tlsutil.Files{CA: tlsutil.CertPath(ca), Cert: tlsutil.CertPath(out), Key: tlsutil.KeyPath(out)}
	}
	leaderFiles := files("ca", tlsutil.RoleServer, "c1")
	followerFiles := files("ca", tlsutil.RoleServer, "c2")
	srvCfg, err := leaderFiles.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	l := newHTTPEnv(t, "leader", httpEnvOpts{})
	tlsSrv := httptest.NewUnstartedServer(l.srv.Config.Handler)
	tlsSrv.TLS = srvCfg
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)

	f := newHTTPEnv(t, "follower", httpEnvOpts{})
	peer, err := followerFiles.ClientConfigFor(tlsutil.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	f.api.client = NewForwardClient("", peer)
	if forwardScheme(f.api.client) != "https" || forwardScheme(NewForwardClient("", nil)) != "http" {
		t.Fatal("forward scheme")
	}
	f.b.set(func(b *httpTestBackend) {
		b.leader, b.leaderID, b.leaderAddr = false, "leader", tlsSrv.Listener.Addr().String()
	})
	r := f.call(t, "POST", "/v1/vms", createBody("web"))
	wantStatus(t, r, http.StatusCreated)
	if got := recvWithin(t, l.forwardedBy, 5*time.Second, "a forwarded request at the leader"); got != "follower" {
		t.Fatalf("forwarded by %q", got)
	}
	if n := f.api.fwd.opened.Load(); n != 1 {
		t.Fatalf("%d forwarding streams opened, want the write on one over TLS", n)
	}

	// A forward client of another CA does not trust the leader.
	other := files("other", tlsutil.RoleServer, "c9")
	otherCfg, err := other.ClientConfigFor(tlsutil.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	f.api.client = NewForwardClient("", otherCfg)
	before := l.digest()
	r = f.call(t, "POST", "/v1/vms", createBody("db"))
	wantStatus(t, r, http.StatusServiceUnavailable)
	if l.digest() != before {
		t.Fatal("a write went through an untrusted forward")
	}
}
