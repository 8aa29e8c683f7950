package membership

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// Certificate roles, as the DNS names that mark them (internal/tlsutil
// makes the certificates: server.kumoi for controllers, worker.kumoi for
// workers, client.kumoi for operators).
const (
	CertRoleServer = "server"
	CertRoleWorker = "worker"
)

// gossipRoles are the roles a gossip peer's certificate may carry: every
// agent gossips, no operator's client certificate does.
var gossipRoles = []string{CertRoleServer, CertRoleWorker}

// HasCertRole reports whether cert carries role (the DNS name
// "<role>.kumoi").
func HasCertRole(cert *x509.Certificate, role string) bool {
	return cert != nil && slices.Contains(cert.DNSNames, role+".kumoi")
}

// tlsHandshakeTimeout bounds the handshake of an incoming gossip stream.
const tlsHandshakeTimeout = 5 * time.Second

// ErrPeerCertificate: a peer's certificate is not from the cluster CA, or
// lacks the role it needs.
var ErrPeerCertificate = errors.New("the peer's certificate is refused")

// verifyPeer returns a tls.Config VerifyConnection that checks the peer's
// chain against roots, whatever address was dialed, and that its leaf
// carries one of roles. Key usages are not checked: the role is what
// matters (a worker's certificate serves its gossip streams too).
func verifyPeer(roots *x509.CertPool, roles []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: the peer presented no certificate", ErrPeerCertificate)
		}
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("%w: %q is not signed by the cluster CA: %v", ErrPeerCertificate, leaf.Subject.CommonName, err)
		}
		for _, r := range roles {
			if HasCertRole(leaf, r) {
				return nil
			}
		}
		return fmt.Errorf("%w: %q carries none of the roles %v (its names: %v)", ErrPeerCertificate, leaf.Subject.CommonName, roles, leaf.DNSNames)
	}
}

// clientConfig is cfg for dialing a peer that must present a certificate
// of the cluster CA with one of roles: the check is ours, by role, not
// by the dialed address (a worker's certificate names no address).
func clientConfig(cfg *tls.Config, roles []string) *tls.Config {
	c := cfg.Clone()
	c.InsecureSkipVerify = true // replaced by VerifyConnection below
	c.VerifyPeerCertificate = nil
	c.VerifyConnection = verifyPeer(cfg.RootCAs, roles)
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// serverConfig is cfg for accepting a peer that must present a
// certificate of the cluster CA with one of roles.
func serverConfig(cfg *tls.Config, roles []string) *tls.Config {
	c := cfg.Clone()
	c.ClientAuth = tls.RequireAnyClientCert // checked by VerifyConnection
	c.VerifyPeerCertificate = nil
	c.VerifyConnection = verifyPeer(cfg.ClientCAs, roles)
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// VerifyPeerRole dials addr (from local, if set) with TLS within timeout
// and checks that the peer presents a certificate of the CA in
// cfg.RootCAs carrying one of roles; it presents cfg's certificate. It
// sends nothing after the handshake. It returns the peer's certificate.
// Controllers use it before they make a gossip member a Raft voter (its
// Raft address, role server) or a host (its gossip address, role worker
// or server).
func VerifyPeerRole(addr string, local net.IP, cfg *tls.Config, timeout time.Duration, roles ...string) (*x509.Certificate, error) {
	if cfg == nil || cfg.RootCAs == nil {
		return nil, errors.New("no TLS configuration with a CA pool to check the peer with")
	}
	d := net.Dialer{Timeout: timeout}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(timeout))
	c := tls.Client(raw, clientConfig(cfg, roles))
	if err := c.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	_ = c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// tlsTransport is the agent's gossip transport when it has TLS files: its
// TCP streams (push/pull, fallback probes) are TLS with certificates of
// the cluster CA on both ends, carrying the server or worker role; its
// UDP packets are memberlist's own (encrypted by the keyring, if any).
type tlsTransport struct {
	*boundTransport
	server, client *tls.Config
	logger         hclog.Logger

	streams  chan net.Conn
	done     chan struct{}
	shutOnce sync.Once

	refusedMu sync.Mutex
	refused   map[string]time.Time // peer IP → when a refusal was last logged
}

func newTLSTransport(bt *boundTransport, sec Security, logger hclog.Logger) *tlsTransport {
	t := &tlsTransport{
		boundTransport: bt,
		server:         serverConfig(sec.ServerTLS, gossipRoles),
		client:         clientConfig(sec.ClientTLS, gossipRoles),
		logger:         logger,
		streams:        make(chan net.Conn),
		done:           make(chan struct{}),
		refused:        map[string]time.Time{},
	}
	go t.acceptLoop()
	return t
}

// StreamCh delivers incoming streams whose TLS handshake succeeded.
func (t *tlsTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *tlsTransport) acceptLoop() {
	in := t.NetTransport.StreamCh()
	for {
		select {
		case <-t.done:
			return
		case c := <-in:
			go t.handshake(c)
		}
	}
}

// handshake runs the server side of an incoming stream's handshake,
// within tlsHandshakeTimeout, and hands the stream to memberlist; a
// failure is logged (once per peer address in 30 s) and the stream
// dropped.
func (t *tlsTransport) handshake(raw net.Conn) {
	_ = raw.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	c := tls.Server(raw, t.server)
	if err := c.Handshake(); err != nil {
		t.logRefusal(raw.RemoteAddr(), err)
		_ = raw.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	select {
	case t.streams <- c:
	case <-t.done:
		_ = c.Close()
	}
}

func (t *tlsTransport) logRefusal(addr net.Addr, err error) {
	host := addr.String()
	if h, _, e := net.SplitHostPort(host); e == nil {
		host = h
	}
	t.refusedMu.Lock()
	last, seen := t.refused[host]
	log := !seen || time.Since(last) > 30*time.Second
	if log {
		t.refused[host] = time.Now()
	}
	t.refusedMu.Unlock()
	if log {
		t.logger.Warn("refusing a gossip stream: TLS handshake failed (a peer without a certificate of this cluster's CA, or without the server or worker role?)",
			"peer", addr.String(), "error", err)
	}
}

func (t *tlsTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout dials a peer's stream and runs the client side of
// the handshake within timeout.
func (t *tlsTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	raw, err := t.boundTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = tlsHandshakeTimeout
	}
	_ = raw.SetDeadline(time.Now().Add(timeout))
	c := tls.Client(raw, t.client)
	if err := c.Handshake(); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("gossip TLS handshake with %s: %w", a.String(), err)
	}
	_ = raw.SetDeadline(time.Time{})
	return c, nil
}

// Shutdown stops delivering streams and shuts the NetTransport down.
func (t *tlsTransport) Shutdown() error {
	t.shutOnce.Do(func() { close(t.done) })
	return t.NetTransport.Shutdown()
}
