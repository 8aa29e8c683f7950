package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/kumoi/kumoi/resource"
)

// The ACL objects as the API sends them (docs/security.md). They are the
// types of package resource.

// ACLRule grants one access level on one kind, optionally only on the
// objects whose labels match Selector (resource.ParseSelector syntax).
// Its text form is "KIND:ACCESS[:SELECTOR]", e.g. "vm:write:team=web".
type ACLRule = resource.ACLRule

// ACLPolicy is a named set of rules that tokens refer to.
type ACLPolicy = resource.ACLPolicy

// ACLToken is a token as the API shows it. SecretID, the value to send as
// Config.Token, is set only in the answers of Bootstrap and
// ACLTokens.Create: the cluster stores only its hash.
type ACLToken = resource.ACLToken

// Token types.
const (
	// ACLTokenManagement may do everything (the bootstrap token is one).
	ACLTokenManagement = resource.TokenManagement
	// ACLTokenClient may do what its policies grant.
	ACLTokenClient = resource.TokenClient
	// ACLTokenNode is a worker's: it may report on its host and read what
	// the worker needs, nothing else.
	ACLTokenNode = resource.TokenNode
)

// ACLTokenRequest is the body of ACLTokens.Create. Type "" means client.
type ACLTokenRequest struct {
	Name     string   `json:"name,omitempty"`
	Type     string   `json:"type,omitempty"`
	Policies []string `json:"policies,omitempty"`
	Node     string   `json:"node,omitempty"`
}

// ACL is the API of ACL tokens and policies; get it from Client.ACL.
type ACL struct{ c *Client }

// ACL returns the API of ACL tokens and policies.
func (c *Client) ACL() *ACL { return &ACL{c: c} }

// Bootstrap enables the ACL system's management token: it returns a new
// management token with its secret. It works once per cluster (and needs
// no token); later calls fail with ErrConflict.
func (a *ACL) Bootstrap(ctx context.Context) (*ACLToken, error) {
	var out ACLToken
	// Not idempotent: a resent bootstrap that was applied answers 409 and
	// the secret would be lost.
	r := &request{method: "POST", path: "/v1/acl/bootstrap", body: []byte("{}")}
	if _, err := a.c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Self returns the token the client sends (without its secret): who am I.
// Without a token it fails with ErrUnauthenticated.
func (a *ACL) Self(ctx context.Context) (*ACLToken, error) {
	var out ACLToken
	r := &request{method: "GET", path: "/v1/acl/token/self", idempotent: true}
	if _, err := a.c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Policies returns the API of ACL policies.
func (a *ACL) Policies() *ACLPolicies { return &ACLPolicies{c: a.c} }

// Tokens returns the API of ACL tokens.
func (a *ACL) Tokens() *ACLTokens { return &ACLTokens{c: a.c} }

// ACLPolicies is the API of ACL policies; get it from ACL.Policies.
type ACLPolicies struct{ c *Client }

func aclPolicyPath(name string) string { return "/v1/acl/policies/" + url.PathEscape(name) }

// Create stores a new policy (p's indexes are ignored). It fails with
// ErrAlreadyExists when the name is taken.
func (p *ACLPolicies) Create(ctx context.Context, pol *ACLPolicy) (*ACLPolicy, error) {
	if pol == nil || pol.Name == "" {
		return nil, fmt.Errorf("ACL policy name is empty")
	}
	return p.write(ctx, "POST", "/v1/acl/policies", pol)
}

// Update replaces the description and the rules of the policy named
// pol.Name. It fails with ErrNotFound when there is none.
func (p *ACLPolicies) Update(ctx context.Context, pol *ACLPolicy) (*ACLPolicy, error) {
	if pol == nil || pol.Name == "" {
		return nil, fmt.Errorf("ACL policy name is empty")
	}
	return p.write(ctx, "PUT", aclPolicyPath(pol.Name), pol)
}

func (p *ACLPolicies) write(ctx context.Context, method, path string, pol *ACLPolicy) (*ACLPolicy, error) {
	in := *pol
	in.CreateIndex, in.ModifyIndex = 0, 0
	if in.Rules == nil {
		in.Rules = []ACLRule{}
	}
	body, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("ACL policy %q: encode request: %w", pol.Name, err)
	}
	var out ACLPolicy
	r := &request{method: method, path: path, body: body}
	if _, err := p.c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Get reads one policy (ErrNotFound when there is none); opts may be nil.
func (p *ACLPolicies) Get(ctx context.Context, name string, opts *QueryOptions) (*ACLPolicy, *QueryMeta, error) {
	if name == "" {
		return nil, nil, fmt.Errorf("ACL policy name is empty")
	}
	var out ACLPolicy
	r := &request{method: "GET", path: aclPolicyPath(name), query: opts.values(),
		idempotent: true, wait: opts.waitTime()}
	meta, err := p.c.call(ctx, r, &out)
	if err != nil {
		return nil, meta, err
	}
	return &out, meta, nil
}

// List reads all policies. The slice is empty, never nil, when there are
// none.
func (p *ACLPolicies) List(ctx context.Context, opts *QueryOptions) ([]*ACLPolicy, *QueryMeta, error) {
	return listACL[*ACLPolicy](ctx, p.c, "/v1/acl/policies", opts)
}

// Delete removes a policy. Tokens that name it lose what it granted.
func (p *ACLPolicies) Delete(ctx context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("ACL policy name is empty")
	}
	r := &request{method: "DELETE", path: aclPolicyPath(name)}
	_, err := p.c.call(ctx, r, nil)
	return err
}

// ACLTokens is the API of ACL tokens; get it from ACL.Tokens.
type ACLTokens struct{ c *Client }

func aclTokenPath(accessor string) string { return "/v1/acl/tokens/" + url.PathEscape(accessor) }

// Create makes a new token and returns it with its secret, which the
// cluster does not keep: this is the only time it is shown.
func (t *ACLTokens) Create(ctx context.Context, req ACLTokenRequest) (*ACLToken, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("ACL token: encode request: %w", err)
	}
	var out ACLToken
	// Not idempotent: a resent create would make a second token.
	r := &request{method: "POST", path: "/v1/acl/tokens", body: body}
	if _, err := t.c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Get reads one token by its accessor ID, without its secret (ErrNotFound
// when there is none); opts may be nil.
func (t *ACLTokens) Get(ctx context.Context, accessor string, opts *QueryOptions) (*ACLToken, *QueryMeta, error) {
	if accessor == "" {
		return nil, nil, fmt.Errorf("ACL token accessor ID is empty")
	}
	var out ACLToken
	r := &request{method: "GET", path: aclTokenPath(accessor), query: opts.values(),
		idempotent: true, wait: opts.waitTime()}
	meta, err := t.c.call(ctx, r, &out)
	if err != nil {
		return nil, meta, err
	}
	return &out, meta, nil
}

// List reads all tokens, without their secrets. The slice is empty, never
// nil, when there are none.
func (t *ACLTokens) List(ctx context.Context, opts *QueryOptions) ([]*ACLToken, *QueryMeta, error) {
	return listACL[*ACLToken](ctx, t.c, "/v1/acl/tokens", opts)
}

// Delete revokes a token: its secret stops working at once.
func (t *ACLTokens) Delete(ctx context.Context, accessor string) error {
	if accessor == "" {
		return fmt.Errorf("ACL token accessor ID is empty")
	}
	r := &request{method: "DELETE", path: aclTokenPath(accessor)}
	_, err := t.c.call(ctx, r, nil)
	return err
}

// listACL reads an ACL collection. It takes both list shapes: a JSON
// array, or an object {"items": [...], "index": N}.
func listACL[X any](ctx context.Context, c *Client, path string, opts *QueryOptions) ([]X, *QueryMeta, error) {
	var raw json.RawMessage
	r := &request{method: "GET", path: path, query: opts.values(), idempotent: true, wait: opts.waitTime()}
	meta, err := c.call(ctx, r, &raw)
	if err != nil {
		return nil, nil, err
	}
	var out []X
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '{' {
		var page struct {
			Items []X    `json:"items"`
			Index uint64 `json:"index"`
		}
		if err := json.Unmarshal(trimmed, &page); err != nil {
			return nil, nil, fmt.Errorf("%s: decode answer: %w", r, err)
		}
		out = page.Items
		if meta.Index == 0 {
			meta.Index = page.Index
		}
	} else if err := json.Unmarshal(raw, &out); err != nil {
		return nil, nil, fmt.Errorf("%s: decode answer: %w", r, err)
	}
	if out == nil {
		out = []X{}
	}
	return out, meta, nil
}
