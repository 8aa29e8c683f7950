package fenceguard

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/internal/tlsutil"
	"github.com/kumoi/kumoi/resource"
)

// TestGuardTLS: a guard with the worker's certificate reads the host from
// a controller that serves HTTPS, presenting its worker certificate.
func TestGuardTLS(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := tlsutil.CreateCA(ca); err != nil {
		t.Fatal(err)
	}
	mk := func(role tlsutil.Role, id string) tlsutil.Files {
		out := filepath.Join(dir, id)
		if err := tlsutil.CreateCert(role, ca, id, nil, nil, out); err != nil {
			t.Fatal(err)
		}
		return tlsutil.Files{CA: tlsutil.CertPath(ca), Cert: tlsutil.CertPath(out), Key: tlsutil.KeyPath(out)}
	}
	srvCfg, err := mk(tlsutil.RoleServer, "c1").ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	var others, fromWorker atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 && tlsutil.HasRole(r.TLS.PeerCertificates[0], tlsutil.RoleWorker) {
			fromWorker.Add(1)
		} else {
			others.Add(1)
		}
		st, _ := json.Marshal(resource.HostStatus{State: resource.HostReady})
		o := resource.Object{Kind: resource.KindHost, Name: "hv1", ID: "h-1", Status: st}
		o.ModifyIndex = 10
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(o)
	}))
	srv.TLS = srvCfg
	srv.StartTLS()
	t.Cleanup(srv.Close)

	cliCfg, err := mk(tlsutil.RoleWorker, "hv1").ClientConfigFor(tlsutil.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	gdir := filepath.Join(dir, "data")
	if err := os.MkdirAll(gdir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(gdir, "cluster_id"), []byte(testCluster+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	drv := sim.New(sim.Options{Host: "hv1"})
	t.Cleanup(func() { drv.Close() })
	g, err := New(Config{Dir: gdir, NodeID: "hv1", Driver: drv, FenceAfter: fenceAfter, Controllers: []string{srv.URL}, TLS: cliCfg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testcluster.WaitFor(t, 5*time.Second, "the guard to read the host over TLS with its worker certificate", func() (bool, error) {
		return fromWorker.Load() >= 2, nil
	})
	if n := others.Load(); n != 0 {
		t.Errorf("%d reads without the worker certificate", n)
	}
}
