package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/cluster/membership/membershiptest"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// These tests bind 127.0.75.x (no other test uses that range).

// newCertController starts a lone leader on raft's in-memory transport
// with gossip security sec (gossip itself disabled: the tests feed its
// member table).
func newCertController(t *testing.T, sec membership.Security) *Controller {
	t.Helper()
	addr, tr := raft.NewInmemTransport("inmem-cert-0")
	c, err := New(Config{
		NodeID: "c0", InMemory: true, Transport: tr, DisableGossip: true,
		BootstrapServers: []raft.Server{{Suffrage: raft.Voter, ID: "c0", Address: addr}},
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		GossipSecurity: sec,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	testcluster.WaitFor(t, 5*time.Second, "a ready leader", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.ConsistentRead(ctx) == nil, nil
	})
	return c
}

// serveTLS accepts TLS connections on addr with cfg (nil: plain TCP),
// completes their handshake and closes them, until the test ends.
func serveTLS(t *testing.T, addr string, cfg *tls.Config) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
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
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if cfg != nil {
					_ = tls.Server(c, cfg).Handshake()
				}
			}()
		}
	}()
}

func member(t *testing.T, name, ip string, port int, m membership.Meta) *memberlist.Node {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &memberlist.Node{Name: name, Addr: net.ParseIP(ip), Port: uint16(port), Meta: b}
}

// TestRaftCertificateAdmission: with TLS, a controller member becomes a
// raft server only if its Raft address presents a server certificate of
// the cluster CA: a worker's certificate, one of another CA, or nothing
// listening are refused (and the refusal is remembered for a while);
// the verdict of a good one is remembered for its address.
func TestRaftCertificateAdmission(t *testing.T) {
	ca, other := membershiptest.NewCA(t), membershiptest.NewCA(t)
	srv, cli := ca.Configs(t, "server", "c0")
	c := &Controller{cfg: Config{BindIP: "127.0.0.1", GossipSecurity: membership.Security{ServerTLS: srv, ClientTLS: cli}}, logger: hclog.NewNullLogger()}

	good, _ := ca.Configs(t, "server", "c1")
	worker, _ := ca.Configs(t, "worker", "c2")
	foreign, _ := other.Configs(t, "server", "c3")
	serveTLS(t, "127.0.75.1:7401", good)
	serveTLS(t, "127.0.75.2:7401", worker)
	serveTLS(t, "127.0.75.3:7401", foreign)
	serveTLS(t, "127.0.75.5:7401", nil) // speaks no TLS
	ctrl := func(id, raftAddr string) membership.Member {
		return membership.Member{Name: id, Status: membership.StatusAlive, Meta: membership.Meta{ID: id, Role: membership.RoleController, Raft: raftAddr}}
	}
	if err := c.raftCertOK(ctrl("c1", "127.0.75.1:7401")); err != nil {
		t.Fatalf("a server certificate of the cluster CA was refused: %v", err)
	}
	for _, m := range []membership.Member{
		ctrl("c2", "127.0.75.2:7401"), // a worker's certificate
		ctrl("c3", "127.0.75.3:7401"), // another CA's
	} {
		if err := c.raftCertOK(m); !errors.Is(err, membership.ErrPeerCertificate) {
			t.Errorf("%s: err = %v, want a refused certificate", m.Meta.ID, err)
		}
	}
	for _, m := range []membership.Member{
		ctrl("c4", "127.0.75.4:7401"), // nothing listens
		ctrl("c5", "127.0.75.5:7401"), // no TLS
		ctrl("c6", ""),                // no raft address
	} {
		if err := c.raftCertOK(m); err == nil {
			t.Errorf("%s was admitted", m.Meta.ID)
		}
	}
	// A controller that impersonates c1 at another address is checked
	// there.
	if err := c.raftCertOK(ctrl("c1", "127.0.75.2:7401")); !errors.Is(err, membership.ErrPeerCertificate) {
		t.Errorf("c1 moved to a worker's address: err = %v, want a refused certificate", err)
	}
	if done, err := c.peerCertErr("raft/c2"); !done || err == nil {
		t.Fatalf("the refusal of c2 is not remembered: %v %v", done, err)
	}

	// Without TLS, every member passes (today's behaviour; the agent
	// warns at start).
	plain := &Controller{cfg: Config{BindIP: "127.0.0.1"}, logger: hclog.NewNullLogger()}
	if err := plain.raftCertOK(ctrl("c4", "127.0.75.4:7401")); err != nil {
		t.Fatalf("without TLS: %v", err)
	}
	if !plain.workerCertOK(membership.Member{Name: "h", Addr: "127.0.75.4:7402"}) {
		t.Fatal("without TLS a worker was refused")
	}
}

// TestWorkerCertificateAdmission: with TLS, the leader makes a worker
// member a host only if its gossip address presents a certificate of the
// cluster CA with the worker (or server) role; members with a client
// certificate, one of another CA, or no TLS never become hosts.
func TestWorkerCertificateAdmission(t *testing.T) {
	ca, other := membershiptest.NewCA(t), membershiptest.NewCA(t)
	srv, cli := ca.Configs(t, "server", "c0")
	c := newCertController(t, membership.Security{ServerTLS: srv, ClientTLS: cli})

	type peer struct {
		name, ip string
		cfg      *tls.Config
		ok       bool
	}
	cfg := func(ca *membershiptest.CA, role, node string) *tls.Config {
		s, _ := ca.Configs(t, role, node)
		return s
	}
	peers := []peer{
		{"h-worker", "127.0.75.11", cfg(ca, "worker", "h-worker"), true},
		{"h-server", "127.0.75.12", cfg(ca, "server", "h-server"), true}, // a controller's own worker
		{"h-client", "127.0.75.13", cfg(ca, "client", "h-client"), false},
		{"h-foreign", "127.0.75.14", cfg(other, "worker", "h-foreign"), false},
		{"h-plain", "127.0.75.15", nil, false},
	}
	for _, p := range peers {
		serveTLS(t, p.ip+":7402", p.cfg)
		c.members.Set(member(t, p.name, p.ip, 7402, membership.Meta{ID: p.name, Role: membership.RoleWorker, CPUs: 2, MemoryMiB: 1024, Driver: "sim", Ready: true}), membership.StatusAlive)
	}
	hostState := func(name string) string {
		o, _ := c.FSM().State().Get(nil, resource.KindHost, name)
		if o == nil {
			return ""
		}
		st, err := resource.DecodeStatus[resource.HostStatus](o)
		if err != nil {
			return "?"
		}
		return st.State
	}
	testcluster.WaitFor(t, 10*time.Second, "the certified workers to be ready hosts and the others checked", func() (bool, error) {
		for _, p := range peers {
			if p.ok && hostState(p.name) != resource.HostReady {
				return false, fmt.Errorf("%s is %q", p.name, hostState(p.name))
			}
			if done, _ := c.peerCertErr("worker/" + p.name); !done {
				return false, fmt.Errorf("%s not checked yet", p.name)
			}
		}
		return true, nil
	})
	c.syncHosts(context.Background(), true)
	for _, p := range peers {
		if p.ok {
			continue
		}
		if st := hostState(p.name); st != "" {
			t.Errorf("%s is a host (%s)", p.name, st)
		}
		if _, err := c.peerCertErr("worker/" + p.name); err == nil {
			t.Errorf("%s: no refusal recorded", p.name)
		}
	}
}
