package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/internal/tlsutil"
	"github.com/kumoi/kumoi/resource"
)

// TLS agents bind 127.0.0.91-95 with the default ports.

// testPKI makes a CA in dir/NAME and certificates signed by it.
func testPKI(t *testing.T, dir, name string) func(role tlsutil.Role, id string, ips ...net.IP) tlsutil.Files {
	t.Helper()
	ca := filepath.Join(dir, name)
	if err := tlsutil.CreateCA(ca); err != nil {
		t.Fatal(err)
	}
	return func(role tlsutil.Role, id string, ips ...net.IP) tlsutil.Files {
		t.Helper()
		out := filepath.Join(dir, name+"-"+id)
		if err := tlsutil.CreateCert(role, ca, id, ips, nil, out); err != nil {
			t.Fatal(err)
		}
		return tlsutil.Files{CA: tlsutil.CertPath(ca), Cert: tlsutil.CertPath(out), Key: tlsutil.KeyPath(out)}
	}
}

func startTLSAgent(t *testing.T, id, ip string, files tlsutil.Files, expect int, logs io.Writer, join ...string) *Agent {
	t.Helper()
	a, err := Start(controller.Config{
		NodeID: id, DataDir: t.TempDir(), BindIP: ip, BootstrapExpect: expect, Join: join, TLS: files,
		Logger: hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Info, Output: io.MultiWriter(newTestWriter(t), logs)}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	return a
}

// TestTLSCluster: three controllers with TLS. The API serves HTTPS only
// (plain HTTP gets 400); a write through a follower is forwarded to the
// leader over TLS; a worker with a worker certificate reports; a
// controller with a certificate from another CA never joins Raft, and a
// Raft connection without a server certificate of the cluster's CA is
// refused at the handshake and logged.
func TestTLSCluster(t *testing.T) {
	dir := t.TempDir()
	issue := testPKI(t, dir, "ca")
	ips := []string{"127.0.0.91", "127.0.0.92", "127.0.0.93"}
	seed := "127.0.0.91:7402"
	var logs syncBuffer
	var agents []*Agent
	for i, ip := range ips {
		id := "t" + string(rune('1'+i))
		agents = append(agents, startTLSAgent(t, id, ip, issue(tlsutil.RoleServer, id, net.ParseIP(ip)), 3, &logs, seed))
	}
	for _, a := range agents {
		if !strings.HasPrefix(a.APIURL(), "https://") {
			t.Fatalf("API URL %s", a.APIURL())
		}
	}
	ops := issue(tlsutil.RoleClient, "ops")
	opsTLS, err := client.TLSConfigFromFiles(ops.CA, ops.Cert, ops.Key)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: opsTLS}}
	cluster := func(a *Agent) resource.Cluster {
		var c resource.Cluster
		resp, err := hc.Get(a.APIURL() + "/v1/cluster")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&c)
			resp.Body.Close()
		}
		return c
	}
	testcluster.WaitFor(t, 20*time.Second, "a leader and 3 voters over TLS", func() (bool, error) {
		s := cluster(agents[0]).Servers
		return len(s) == 3 && s[0].Voter && s[1].Voter && s[2].Voter, nil
	})

	// Plain HTTP to the API is refused.
	resp, err := http.Get("http://" + agents[0].APIAddr() + "/v1/status")
	if err != nil {
		t.Fatalf("plain HTTP: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
		t.Fatalf("plain HTTP to the TLS API: %s %q", resp.Status, body)
	}
	// An HTTPS client that does not trust the CA does not get through.
	if _, err := http.Get(agents[0].APIURL() + "/v1/status"); err == nil {
		t.Fatal("a client without the CA trusted the API")
	}

	// A write through a follower is forwarded to the leader (which
	// serves HTTPS only).
	var follower *Agent
	for _, a := range agents {
		if !a.Controller().IsLeader() {
			follower = a
			break
		}
	}
	code := 0
	testcluster.WaitFor(t, 10*time.Second, "a create through a follower", func() (bool, error) {
		resp, err := hc.Post(follower.APIURL()+"/v1/vms", "application/json",
			bytes.NewBufferString(`{"name":"web","spec":{"cpus":1,"memory_mib":128}}`))
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		code = resp.StatusCode
		return code != http.StatusServiceUnavailable, nil
	})
	if code != http.StatusCreated {
		t.Fatalf("create via follower over TLS: %d", code)
	}

	// A worker with a worker certificate reports to the controllers.
	w, err := worker.Start(worker.Config{
		NodeID: "tlsh1", BindIP: "127.0.0.94", Join: []string{seed},
		Driver: sim.New(sim.Options{Host: "tlsh1", CPUs: 4, MemoryMiB: 4096}), DriverName: "sim",
		TLS:    issue(tlsutil.RoleWorker, "tlsh1"),
		Logger: hclog.New(&hclog.LoggerOptions{Name: "tlsh1", Level: hclog.Info, Output: io.MultiWriter(newTestWriter(t), &logs)}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Shutdown(context.Background()) })
	api, err := client.New(client.Config{Addrs: []string{agents[0].APIAddr(), agents[1].APIAddr()}, TLS: opsTLS})
	if err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 20*time.Second, "the TLS worker's host to be ready", func() (bool, error) {
		return hostState(t, api, "tlsh1") == resource.HostReady, nil
	})

	// A controller whose certificate is from another CA.
	foreign := testPKI(t, dir, "other")(tlsutil.RoleServer, "t9", net.ParseIP("127.0.0.95"))
	startTLSAgent(t, "t9", "127.0.0.95", foreign, 0, &logs, seed)
	testcluster.WaitFor(t, 10*time.Second, "t9 in the gossip pool", func() (bool, error) {
		for _, m := range cluster(agents[0]).Members {
			if m.Name == "t9" {
				return true, nil
			}
		}
		return false, nil
	})

	// Its Raft connections are refused at the handshake: with its own
	// certificate (whatever it trusts), with a worker certificate of the
	// cluster's CA, and without TLS.
	leaderRaft := ""
	for _, s := range cluster(agents[0]).Servers {
		if s.Leader {
			leaderRaft = s.Address
		}
	}
	if leaderRaft == "" {
		t.Fatal("no leader")
	}
	pair, err := tls.LoadX509KeyPair(foreign.Cert, foreign.Key)
	if err != nil {
		t.Fatal(err)
	}
	wrk := issue(tlsutil.RoleWorker, "tlsh2")
	wpair, err := tls.LoadX509KeyPair(wrk.Cert, wrk.Key)
	if err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]tls.Certificate{"another CA's server certificate": pair, "a worker certificate": wpair} {
		cfg := &tls.Config{
			InsecureSkipVerify: true, // an attacker trusts anything
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &cert, nil
			},
		}
		if err := raftGreeting(leaderRaft, cfg); err == nil {
			t.Errorf("raft over TLS with %s was accepted", name)
		}
	}
	if err := raftGreeting(leaderRaft, nil); err == nil {
		t.Error("raft without TLS was accepted")
	}
	testcluster.WaitFor(t, 5*time.Second, "the leader to log the refused raft peer", func() (bool, error) {
		return strings.Contains(logs.String(), "refusing a raft peer: the TLS handshake failed"), nil
	})
	// A server certificate of the cluster's CA gets the greeting back.
	ok := issue(tlsutil.RoleServer, "probe")
	okCfg, err := ok.ClientConfigFor(tlsutil.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	if err := raftGreeting(leaderRaft, okCfg); err != nil {
		t.Errorf("raft over TLS with a server certificate of the CA: %v", err)
	}

	// The leader-side check: a controller of the cluster proves its
	// role; t9 does not.
	peerCfg := agents[0].Controller().PeerTLSConfig()
	if err := tlsutil.VerifyPeer(leaderRaft, peerCfg, tlsutil.RoleServer); err != nil {
		t.Errorf("VerifyPeer of the leader: %v", err)
	}
	if err := tlsutil.VerifyPeer("127.0.0.95:7400", peerCfg, tlsutil.RoleServer); err == nil {
		t.Error("VerifyPeer passed t9")
	}

	// t9 cannot even ask the controllers whether its id is free (their
	// API certificates are not its CA's), so it never advertises its
	// Raft address; the cluster keeps its quorum and never lists it.
	testcluster.WaitFor(t, 15*time.Second, "t9 to fail to reach the controllers over TLS", func() (bool, error) {
		l := logs.String()
		i := strings.Index(l, "new node: waiting to reach a controller of the cluster")
		return i >= 0 && strings.Contains(l[i:], "certificate"), nil
	})
	for _, a := range agents {
		for _, s := range cluster(a).Servers {
			if s.ID == "t9" {
				t.Fatalf("t9 is in the raft configuration: %+v", cluster(a).Servers)
			}
		}
	}
	if _, err := api.Create(context.Background(), resource.KindVM, resource.CreateRequest{Name: "db", Spec: []byte(`{"cpus":1,"memory_mib":128}`)}); err != nil {
		t.Fatalf("write after t9 tried to join: %v", err)
	}
}

// raftGreeting opens a Raft connection to addr (over TLS with cfg) and
// exchanges Kumoi's greeting; an error when the peer refused it.
func raftGreeting(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 2 * time.Second}
	var c net.Conn
	var err error
	if cfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, cfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("KUMOI-RAFT/1 \n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}
