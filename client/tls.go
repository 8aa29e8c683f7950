package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// Environment variables of TLSConfigFromEnv (the kumoi command's
// --ca-cert, --client-cert and --client-key).
const (
	EnvCACert     = "KUMOI_CACERT"
	EnvClientCert = "KUMOI_CLIENT_CERT"
	EnvClientKey  = "KUMOI_CLIENT_KEY"
)

// TLSConfigFromFiles makes the TLS configuration of a client: it trusts
// the CA certificate(s) in caFile (empty: the system's roots) and, if
// certFile and keyFile are given (both or neither), presents that client
// certificate. All three empty: nil, nil (plain HTTP). Errors name the
// files by the CLI's flags (--ca-cert, --client-cert, --client-key; the
// same as KUMOI_CACERT, KUMOI_CLIENT_CERT, KUMOI_CLIENT_KEY).
func TLSConfigFromFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs its key: give both --client-cert and --client-key (KUMOI_CLIENT_CERT, KUMOI_CLIENT_KEY) or neither")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--ca-cert %s: no PEM certificate in it", caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--client-cert %s / --client-key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// TLSConfigFromEnv is TLSConfigFromFiles with the files named by
// KUMOI_CACERT, KUMOI_CLIENT_CERT and KUMOI_CLIENT_KEY (none set: nil, nil).
func TLSConfigFromEnv() (*tls.Config, error) {
	return TLSConfigFromFiles(os.Getenv(EnvCACert), os.Getenv(EnvClientCert), os.Getenv(EnvClientKey))
}

// withTLS returns hc with cfg as its transport's TLS configuration, unless
// the transport has one already or is not an *http.Transport.
func withTLS(hc *http.Client, cfg *tls.Config) *http.Client {
	t, ok := hc.Transport.(*http.Transport)
	if hc.Transport == nil {
		t, ok = http.DefaultTransport.(*http.Transport), true
	}
	if !ok || t.TLSClientConfig != nil {
		return hc
	}
	t = t.Clone()
	t.TLSClientConfig = cfg
	c := *hc
	c.Transport = t
	return &c
}
