package controller

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// ACLs on the controller side (docs/security.md): the leader bootstraps
// them with Config.ACLInitialManagement, and the policy runner calls the
// local API with this process's internal secret, acting as the accessor
// that stored each policy.

// InternalSecret is this process's secret for its own API calls (the
// policy runner's): the agent hands it to the API (api.Options), which
// accepts it only with X-Kumoi-Act-As. It is random, never stored, and
// never leaves the process.
func (c *Controller) InternalSecret() string { return c.internalSecret }

// aclBootstrapLoop (leader only) bootstraps ACLs with the configured
// initial management secret, if they are not bootstrapped yet. Any leader
// may do it; the first one applied wins and the others' are refused
// (fsm.ErrACLBootstrapped), so it is idempotent across leaders.
func (c *Controller) aclBootstrapLoop(ctx context.Context) {
	secret := c.cfg.ACLInitialManagement
	if !c.cfg.ACL || secret == "" {
		return
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		st := c.fsm.State()
		if st.ACLBootstrapped(nil) {
			if st.ACLTokenBySecret(secret) == nil {
				c.logger.Warn("ACLs were bootstrapped with another management token; the initial management secret is not a token of this cluster")
			}
			return
		}
		_, err := c.Propose(ctx, fsm.ACLBootstrapRequestType, &fsm.ACLBootstrapRequest{
			Time: time.Now().UTC(), AccessorID: uuid.NewString(),
			SecretHash: resource.HashACLSecret(secret), Name: "Initial Management Token",
		})
		switch {
		case err == nil:
			c.logger.Info("ACLs bootstrapped with the initial management token")
			continue
		case errors.Is(err, fsm.ErrACLBootstrapped):
			continue
		}
		c.logger.Warn("cannot bootstrap ACLs yet; retrying", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// actAsTransport sends every request with the internal secret and the
// accessor to act as.
type actAsTransport struct {
	base     http.RoundTripper
	secret   string
	accessor string
}

func (t *actAsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.secret)
	r.Header.Set(resource.HeaderActAs, t.accessor)
	return t.base.RoundTrip(r)
}

// policyClientAs is the API client of a policy stored by accessor, with
// ACLs on: it has that token's rights, no more.
func (c *Controller) policyClientAs(accessor string) (*client.Client, error) {
	hc := &http.Client{Transport: &actAsTransport{base: http.DefaultTransport, secret: c.internalSecret, accessor: accessor}}
	return client.New(client.Config{Addrs: []string{"http://" + c.cfg.APIAddr()}, HTTPClient: hc})
}

// policyRights checks, with ACLs on, that the policy o has a token to
// act as: the accessor that last stored it, still existing. It returns
// that accessor, or why the policy cannot run.
func (c *Controller) policyRights(o *resource.Object) (string, string) {
	if o.ModifiedBy == "" {
		return "", "the policy was stored without an ACL token (before ACLs were on?), so it has no rights: store it again with a token (it runs with that token's rights)"
	}
	if c.fsm.State().ACLToken(nil, o.ModifiedBy) == nil {
		return "", "the ACL token that stored this policy (accessor " + o.ModifiedBy + ") no longer exists, so the policy has no rights: store it again with a valid token"
	}
	return o.ModifiedBy, ""
}
