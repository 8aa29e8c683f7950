package membership

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// Security is how an agent's gossip is protected (docs/gossip.md). The
// zero value is today's plain gossip: anyone who reaches the port is a
// member.
type Security struct {
	// Keys is the gossip keyring: AES keys of 16, 24 or 32 bytes. The
	// first is the primary, used to encrypt what this agent sends; every
	// key is tried on what it receives, so keys rotate by rolling
	// restarts (add the new key second everywhere, then make it first,
	// then drop the old one). With keys, memberlist refuses unencrypted
	// packets and streams (GossipVerifyIncoming/Outgoing).
	Keys [][]byte

	// ServerTLS and ClientTLS, both or neither, make gossip streams (the
	// TCP push/pull of a join and of anti-entropy, fallback probes) TLS
	// streams with certificates of the cluster CA on both ends. Only
	// their CA pools (ClientCAs, RootCAs) and this agent's certificate
	// (Certificates or GetCertificate / GetClientCertificate) are used:
	// the peer's certificate is checked here, against those pools, and
	// must carry the server or the worker role (DNS name server.kumoi or
	// worker.kumoi), whatever address was dialed. UDP packets stay
	// memberlist's own, encrypted by the keyring.
	ServerTLS *tls.Config
	ClientTLS *tls.Config
}

// TLS reports whether gossip streams use TLS.
func (s Security) TLS() bool { return s.ServerTLS != nil && s.ClientTLS != nil }

// Validate checks the keys and that the TLS configurations come together
// and carry a CA pool and a certificate.
func (s Security) Validate() error {
	for i, k := range s.Keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("gossip key %d: %d bytes: %w (give base64 of 16, 24 or 32 bytes: kumoi operator gossip keygen)", i+1, len(k), err)
		}
	}
	if (s.ServerTLS == nil) != (s.ClientTLS == nil) {
		return errors.New("gossip TLS needs both a server and a client configuration")
	}
	if s.ServerTLS != nil {
		if s.ServerTLS.ClientCAs == nil {
			return errors.New("gossip TLS: the server configuration has no CA pool (ClientCAs) to check peers with")
		}
		if s.ClientTLS.RootCAs == nil {
			return errors.New("gossip TLS: the client configuration has no CA pool (RootCAs) to check peers with")
		}
		if len(s.ServerTLS.Certificates) == 0 && s.ServerTLS.GetCertificate == nil {
			return errors.New("gossip TLS: the server configuration has no certificate")
		}
		if len(s.ClientTLS.Certificates) == 0 && s.ClientTLS.GetClientCertificate == nil {
			return errors.New("gossip TLS: the client configuration has no certificate")
		}
	}
	return nil
}

// keyring builds memberlist's keyring from s.Keys (nil without keys).
func (s Security) keyring() (*memberlist.Keyring, error) {
	if len(s.Keys) == 0 {
		return nil, nil
	}
	kr, err := memberlist.NewKeyring(s.Keys[1:], s.Keys[0])
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	return kr, nil
}

// ParseKeys reads gossip keys as given to --encrypt (or KUMOI_GOSSIP_KEY):
// each value base64 (standard encoding) of 16, 24 or 32 bytes, several
// values or comma-separated lists of them, the first the primary.
// Duplicates are dropped. The error names the bad key by position, never
// its text.
func ParseKeys(values []string) ([][]byte, error) {
	var keys [][]byte
	n := 0
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			n++
			k, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("--encrypt key %d is not base64 (make one with: kumoi operator gossip keygen)", n)
			}
			if err := memberlist.ValidateKey(k); err != nil {
				return nil, fmt.Errorf("--encrypt key %d decodes to %d bytes: a gossip key is 16, 24 or 32 bytes (make one with: kumoi operator gossip keygen)", n, len(k))
			}
			dup := false
			for _, have := range keys {
				if string(have) == string(k) {
					dup = true
				}
			}
			if !dup {
				keys = append(keys, k)
			}
		}
	}
	return keys, nil
}

// GenerateKey returns a new random 32-byte gossip key (AES-256), base64.
func GenerateKey() (string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// WarnUnprotected logs, once per call, what an agent with s leaves open:
// without TLS, gossip and Raft are unauthenticated; without keys, gossip
// packets are plain. Agents call it once at start.
func WarnUnprotected(logger hclog.Logger, s Security) {
	switch {
	case !s.TLS() && len(s.Keys) == 0:
		logger.Warn("gossip and raft are unauthenticated and unencrypted: anyone who reaches the gossip port can join as a controller or a worker; " +
			"use --encrypt and --tls-ca/--tls-cert/--tls-key (docs/gossip.md, docs/security.md)")
	case !s.TLS():
		logger.Warn("gossip is encrypted (--encrypt) but raft and gossip peers are not authenticated by certificates; " +
			"use --tls-ca/--tls-cert/--tls-key (docs/gossip.md, docs/security.md)")
	case len(s.Keys) == 0:
		logger.Warn("gossip streams use TLS but gossip packets (UDP) are plain: anyone who reaches the gossip port can inject membership messages; " +
			"use --encrypt (docs/gossip.md)")
	}
}
