package testcluster

import (
	"crypto/rand"
	"fmt"
	"net/http"
)

// ManagementToken is the ACL management secret of every cluster this test
// binary starts: controllers get it as KUMOI_ACL_INITIAL_MANAGEMENT (the
// leader bootstraps ACLs with it), workers as KUMOI_TOKEN, and the clients
// of NewHTTPClient and ClientToken send it. A test that needs another
// token (none, read-only, a node's) makes its own with
// NewHTTPClientToken.
var ManagementToken = newSecret()

// newSecret returns a random UUID (version 4), the shape of Kumoi's ACL
// secrets.
func newSecret() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// nodeEnv is the environment every node starts with, before Options.Env
// (which may override it).
func nodeEnv() []string {
	return []string{
		"KUMOI_ACL_INITIAL_MANAGEMENT=" + ManagementToken,
		"KUMOI_TOKEN=" + ManagementToken,
	}
}

// CLIEnv is the environment for running the kumoi CLI against a test
// cluster: the caller's environment plus KUMOI_TOKEN.
func CLIEnv(env []string) []string {
	return append(env, "KUMOI_TOKEN="+ManagementToken)
}

// tokenTransport sends a bearer token on every request that has no
// Authorization header of its own.
type tokenTransport struct {
	base  http.RoundTripper
	token string
}

func (t *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.token != "" && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+t.token)
	}
	return t.base.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// underlying transport.
func (t *tokenTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
