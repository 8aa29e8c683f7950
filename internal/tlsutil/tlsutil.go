// Package tlsutil makes Kumoi's certificates and the TLS configurations
// of its listeners and clients.
//
// A cluster has one CA of its own (CreateCA). Every certificate it signs
// (CreateCert) carries a role as a DNS name: server certificates
// "server.kumoi", worker certificates "worker.kumoi", client certificates
// "client.kumoi". Controllers talking to each other (Raft, forwarding) and
// workers talking to controllers check that the peer's certificate is
// signed by the cluster CA and carries the server role, whatever address
// they dialed: the way Consul's verify_server_hostname checks
// "server.<datacenter>.<domain>". Server certificates are also valid for
// localhost, 127.0.0.1, ::1 and the addresses and names given when they
// are made, so that an operator's CLI can check the controller it dials
// by address.
//
// Keys are ECDSA P-256; key files are written 0600. TLS 1.2 is the
// minimum version (Go negotiates 1.3 when both ends have it).
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"slices"
	"time"
)

// Role is what a certificate may be used for in a Kumoi cluster.
type Role string

// The roles.
const (
	RoleServer Role = "server" // controllers: the API, Raft, forwarding
	RoleWorker Role = "worker" // workers and their fence guards: API clients
	RoleClient Role = "client" // operators, the CLI, SDK programs
)

// DNSName is the DNS SAN that marks a certificate of role r:
// "server.kumoi", "worker.kumoi" or "client.kumoi".
func (r Role) DNSName() string { return string(r) + ".kumoi" }

// Valid says whether r is one of the roles.
func (r Role) Valid() bool { return r == RoleServer || r == RoleWorker || r == RoleClient }

// Validity of what CreateCA and CreateCert make.
const (
	DefaultCAValidity   = 5 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
)

// MinVersion is the oldest TLS version Kumoi speaks.
const MinVersion = tls.VersionTLS12

// CertPath and KeyPath are the files a prefix names: PREFIX.pem and
// PREFIX-key.pem.
func CertPath(prefix string) string { return prefix + ".pem" }

// KeyPath is PREFIX-key.pem.
func KeyPath(prefix string) string { return prefix + "-key.pem" }

// CreateCA makes a new CA and writes PREFIX.pem (its certificate) and
// PREFIX-key.pem (its key, mode 0600). It refuses to overwrite either
// file (an error wrapping fs.ErrExist).
func CreateCA(outPrefix string) error {
	return CreateCAValid(outPrefix, DefaultCAValidity)
}

// CreateCAValid is CreateCA with a validity period.
func CreateCAValid(outPrefix string, validity time.Duration) error {
	if err := refuseExisting(outPrefix); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Kumoi CA " + serial.Text(16)[:8], Organization: []string{"Kumoi"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	return writePair(outPrefix, der, key)
}

// CreateCert makes a certificate of role for nodeID, signed by the CA at
// caPrefix (PREFIX.pem, PREFIX-key.pem), valid for DefaultCertValidity, and
// writes OUT.pem and OUT-key.pem (0600). Its common name is
// "<role>.<nodeID>" and its DNS SANs start with the role's (Role.DNSName).
// A server certificate is also valid for localhost, 127.0.0.1, ::1 and
// ips and dns; only servers take ips and dns. It refuses to overwrite
// either file (an error wrapping fs.ErrExist).
func CreateCert(role Role, caPrefix, nodeID string, ips []net.IP, dns []string, outPrefix string) error {
	return CreateCertValid(role, caPrefix, nodeID, ips, dns, outPrefix, DefaultCertValidity)
}

// CreateCertValid is CreateCert with a validity period.
func CreateCertValid(role Role, caPrefix, nodeID string, ips []net.IP, dns []string, outPrefix string, validity time.Duration) error {
	if !role.Valid() {
		return fmt.Errorf("certificate role %q: use server, worker or client", role)
	}
	if nodeID == "" {
		return errors.New("a certificate needs a node id (its common name is <role>.<node id>)")
	}
	if role != RoleServer && (len(ips) > 0 || len(dns) > 0) {
		return fmt.Errorf("only server certificates take addresses and names (a %s certificate is checked by its role, not its address)", role)
	}
	if validity <= 0 {
		return fmt.Errorf("validity %s must be positive", validity)
	}
	if err := refuseExisting(outPrefix); err != nil {
		return err
	}
	ca, caKey, err := loadCA(caPrefix)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: string(role) + "." + nodeID, Organization: []string{"Kumoi"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{role.DNSName()},
	}
	if role == RoleServer {
		// Controllers serve (API, Raft) and dial each other (Raft,
		// forwarding).
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.DNSNames = append(tmpl.DNSNames, "localhost")
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		for _, ip := range ips {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		}
		for _, n := range dns {
			if !slices.Contains(tmpl.DNSNames, n) {
				tmpl.DNSNames = append(tmpl.DNSNames, n)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	return writePair(outPrefix, der, key)
}

// HasRole says whether cert carries role r (its DNS SAN).
func HasRole(cert *x509.Certificate, r Role) bool {
	return cert != nil && slices.Contains(cert.DNSNames, r.DNSName())
}

// RoleOf is the role a certificate carries ("" if none).
func RoleOf(cert *x509.Certificate) Role {
	for _, r := range []Role{RoleServer, RoleWorker, RoleClient} {
		if HasRole(cert, r) {
			return r
		}
	}
	return ""
}

// Files names a node's TLS files: the cluster CA's certificate, the
// node's certificate and its key. The zero value means TLS is off.
type Files struct{ CA, Cert, Key string }

// Enabled says whether any file is given.
func (f Files) Enabled() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// Validate checks that all three files are given and that they load: the
// certificate matches the key and is signed by the CA.
func (f Files) Validate() error {
	_, _, err := f.load()
	return err
}

func (f Files) load() (*x509.CertPool, tls.Certificate, error) {
	var missing []string
	for _, p := range []struct{ flag, v string }{{"--tls-ca", f.CA}, {"--tls-cert", f.Cert}, {"--tls-key", f.Key}} {
		if p.v == "" {
			missing = append(missing, p.flag)
		}
	}
	if len(missing) > 0 {
		return nil, tls.Certificate{}, fmt.Errorf("TLS needs --tls-ca, --tls-cert and --tls-key together (missing %v)", missing)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("--tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, tls.Certificate{}, fmt.Errorf("--tls-ca %s: no PEM certificate in it", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", f.Cert, f.Key, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, tls.Certificate{}, fmt.Errorf("--tls-cert %s: %w", f.Cert, err)
		}
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("--tls-cert %s is not valid under --tls-ca %s: %w", f.Cert, f.CA, err)
	}
	return pool, cert, nil
}

// ServerConfig is for the API listener: it presents the node's
// certificate and verifies a client certificate if one is given.
func (f Files) ServerConfig() (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   MinVersion,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}, nil
}

// MutualServerConfig is for listeners only peers of one role may use
// (Raft: servers): the peer must present a certificate signed by the CA
// that carries requireRole, or the handshake fails.
func (f Files) MutualServerConfig(requireRole Role) (*tls.Config, error) {
	cfg, err := f.ServerConfig()
	if err != nil {
		return nil, err
	}
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.VerifyConnection = requirePeerRole(requireRole)
	return cfg, nil
}

// ClientConfig trusts the CA and presents the node's certificate. The
// server's certificate is checked against the address dialed; set
// ServerName to a role's DNSName (or use ClientConfigFor) to check the
// role instead.
func (f Files) ClientConfig() (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   MinVersion,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}, nil
}

// ClientConfigFor is ClientConfig for calls that must reach a peer of
// role r whatever its address: the peer's certificate must carry r
// (verify_server_hostname). Controllers and workers call controllers with
// ClientConfigFor(RoleServer).
func (f Files) ClientConfigFor(r Role) (*tls.Config, error) {
	cfg, err := f.ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.ServerName = r.DNSName()
	return cfg, nil
}

// requirePeerRole checks, after the chain is verified, that the peer's
// certificate carries r.
func requirePeerRole(r Role) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("tls: the peer presented no certificate; a %s certificate of this cluster's CA is required", r)
		}
		leaf := cs.PeerCertificates[0]
		if !HasRole(leaf, r) {
			return fmt.Errorf("tls: the peer's certificate %q has role %q, not %q (DNS name %s)", leaf.Subject.CommonName, RoleOf(leaf), r, r.DNSName())
		}
		return nil
	}
}

// VerifyPeer dials addr with cfg (a ClientConfig), completes a TLS
// handshake and checks that the peer presents a certificate signed by
// the CA that carries role r; it then closes the connection. Any Kumoi
// TLS listener of the peer will do: its API address is served from the
// start; its Raft address completes the handshake too, even before the
// node is admitted, and then closes the connection. The leader uses it
// before it makes a controller a voter.
func VerifyPeer(addr string, cfg *tls.Config, r Role) error {
	return VerifyPeerFrom(nil, addr, cfg, r)
}

// VerifyPeerFrom is VerifyPeer dialing from local (a node's --bind
// address; nil: any).
func VerifyPeerFrom(local net.IP, addr string, cfg *tls.Config, r Role) error {
	if cfg == nil {
		return errors.New("tls: VerifyPeer needs a TLS client configuration")
	}
	c := cfg.Clone()
	c.ServerName = r.DNSName()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	conn, err := tls.DialWithDialer(d, "tcp", addr, c)
	if err != nil {
		return fmt.Errorf("tls: %s did not prove it is a %s of this cluster: %w", addr, r, err)
	}
	defer conn.Close()
	if err := requirePeerRole(r)(conn.ConnectionState()); err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	return nil
}

func loadCA(prefix string) (*x509.Certificate, any, error) {
	pair, err := tls.LoadX509KeyPair(CertPath(prefix), KeyPath(prefix))
	if err != nil {
		return nil, nil, fmt.Errorf("load the CA %s / %s: %w", CertPath(prefix), KeyPath(prefix), err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("CA %s: %w", CertPath(prefix), err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("%s is not a CA certificate", CertPath(prefix))
	}
	return ca, pair.PrivateKey, nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func refuseExisting(prefix string) error {
	for _, p := range []string{CertPath(prefix), KeyPath(prefix)} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s: %w (remove it first, or use --force)", p, fs.ErrExist)
		}
	}
	return nil
}

func writePair(prefix string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// The key first: a certificate without its key is no use, a key
	// without its certificate is retried.
	if err := writeNew(KeyPath(prefix), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeNew(CertPath(prefix), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
