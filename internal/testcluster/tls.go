package testcluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/kumoi/kumoi/internal/tlsutil"
)

// The test CA: one per test binary, made the first time a client or a TLS
// cluster needs it, so that NewHTTPClient's clients trust every TLS
// cluster this binary starts.
var testCA struct {
	once   sync.Once
	prefix string // CA files: prefix.pem, prefix-key.pem
	pool   *x509.CertPool
	err    error
}

// CAPrefix makes (once) and returns the test CA: CAPrefix()+".pem" is its
// certificate, CAPrefix()+"-key.pem" its key. It lives in a directory of
// the system's temporary directory named after this process.
func CAPrefix() (string, error) {
	testCA.once.Do(func() {
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("kumoi-testcluster-ca-%d", os.Getpid()))
		if testCA.err = os.MkdirAll(dir, 0o700); testCA.err != nil {
			return
		}
		testCA.prefix = filepath.Join(dir, "ca")
		if _, err := os.Stat(testCA.prefix + ".pem"); err != nil {
			if testCA.err = tlsutil.CreateCA(testCA.prefix); testCA.err != nil {
				return
			}
		}
		pem, err := os.ReadFile(testCA.prefix + ".pem")
		if err != nil {
			testCA.err = err
			return
		}
		testCA.pool = x509.NewCertPool()
		if !testCA.pool.AppendCertsFromPEM(pem) {
			testCA.err = fmt.Errorf("testcluster: %s.pem holds no certificate", testCA.prefix)
		}
	})
	return testCA.prefix, testCA.err
}

// RemoveCA removes the test CA's directory, if this process made one
// (Main does, after the tests; so does kumoi-jepsen at its end).
func RemoveCA() {
	if testCA.prefix != "" {
		_ = os.RemoveAll(filepath.Dir(testCA.prefix))
	}
}

// clientTLS is the TLS configuration of the harness's clients: it trusts
// the test CA (and presents no certificate: tokens authenticate).
func clientTLS() *tls.Config {
	if _, err := CAPrefix(); err != nil {
		panic(err) // a temporary directory that cannot be written
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: testCA.pool}
}

// TLSFiles makes a certificate of role for a node (id, ip) under dir,
// signed by the test CA (a server certificate valid for ip), and returns the files to give as --tls-ca,
// --tls-cert and --tls-key.
func TLSFiles(role tlsutil.Role, dir, id, ip string) (tlsutil.Files, error) {
	ca, err := CAPrefix()
	if err != nil {
		return tlsutil.Files{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tlsutil.Files{}, err
	}
	out := filepath.Join(dir, string(role)+"-"+id)
	f := tlsutil.Files{CA: ca + ".pem", Cert: out + ".pem", Key: out + "-key.pem"}
	if _, err := os.Stat(f.Cert); err == nil {
		return f, nil // made by an earlier start of this node
	}
	var ips []net.IP
	if role == tlsutil.RoleServer {
		ips = []net.IP{net.ParseIP(ip)}
	}
	return f, tlsutil.CreateCert(role, ca, id, ips, nil, out)
}

// tlsArgs are the --tls-* arguments of node n when the cluster runs with
// TLS (none otherwise).
func (c *Cluster) tlsArgs(n *node) []string {
	if !c.opts.TLS {
		return nil
	}
	role := tlsutil.RoleServer
	if n.worker {
		role = tlsutil.RoleWorker
	}
	f, err := TLSFiles(role, filepath.Join(c.dir, "tls"), n.id, n.ip)
	if err != nil {
		c.tb.Fatalf("testcluster: TLS files of %s: %v", n.id, err)
	}
	return []string{"--tls-ca", f.CA, "--tls-cert", f.Cert, "--tls-key", f.Key}
}

// scheme is the API's URL scheme.
func (c *Cluster) scheme() string {
	if c.opts.TLS {
		return "https://"
	}
	return "http://"
}
