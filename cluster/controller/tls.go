package controller

import (
	"crypto/tls"

	"github.com/kumoi/kumoi/internal/tlsutil"
)

// tlsConfigs are a controller's TLS configurations, loaded once at start
// (certificates are rotated by restarting the agents one at a time:
// docs/tls.md).
type tlsConfigs struct {
	// raftServer accepts Raft connections from peers that present a
	// server certificate of the CA.
	raftServer *tls.Config
	// peer dials other controllers (Raft, forwarding, status, the
	// policies' API client): it presents this node's certificate and
	// requires a server certificate of the CA, whatever address it dials.
	peer *tls.Config
}

// loadTLS loads f's configurations (nil, nil when TLS is off).
func loadTLS(f tlsutil.Files) (*tlsConfigs, error) {
	if !f.Enabled() {
		return nil, nil
	}
	srv, err := f.MutualServerConfig(tlsutil.RoleServer)
	if err != nil {
		return nil, err
	}
	peer, err := f.ClientConfigFor(tlsutil.RoleServer)
	if err != nil {
		return nil, err
	}
	return &tlsConfigs{raftServer: srv, peer: peer}, nil
}

// APIScheme is the scheme of the controllers' APIs: https with TLS.
func (c *Config) APIScheme() string {
	if c.TLS.Enabled() {
		return "https"
	}
	return "http"
}

// APIURL is the base URL of a controller's API at host:port.
func (c *Config) APIURL(hostport string) string { return c.APIScheme() + "://" + hostport }

// PeerTLSConfig is the TLS configuration this controller calls other
// controllers with (nil when TLS is off): it presents the node's server
// certificate and requires the peer's to carry the server role
// (tlsutil.ClientConfigFor). tlsutil.VerifyPeer takes it to check a
// peer before it is made a voter.
func (c *Controller) PeerTLSConfig() *tls.Config {
	if c.tls == nil {
		return nil
	}
	return c.tls.peer.Clone()
}
