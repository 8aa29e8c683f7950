package client

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/kumoi/kumoi/resource"
)

// Policy is a typed view of a policy object: an event-driven Starlark
// script stored in the cluster and run by the leader.
type Policy struct {
	Object *resource.Object
	Spec   resource.PolicySpec
	Status resource.PolicyStatus
}

// Name returns the policy's name.
func (p *Policy) Name() string { return p.Object.Name }

// Loaded reports whether the leader has loaded the policy's current
// version (it is then active, disabled, or in error).
func (p *Policy) Loaded() bool {
	return p.Status.Version == p.Spec.Version && p.Status.State != resource.PolicyPending && p.Status.State != ""
}

// NewPolicy decodes a policy object into its typed view.
func NewPolicy(o *resource.Object) (*Policy, error) {
	spec, st, err := decodeObject[resource.PolicySpec, resource.PolicyStatus](o, resource.KindPolicy)
	if err != nil {
		return nil, err
	}
	return &Policy{Object: o, Spec: *spec, Status: *st}, nil
}

// Policies is the typed API of policies; get it from Client.Policies.
type Policies struct{ c *Client }

// Policies returns the typed API of policies.
func (c *Client) Policies() *Policies { return &Policies{c: c} }

// Get reads one policy (ErrNotFound when there is none); opts may be nil.
func (p *Policies) Get(ctx context.Context, name string, opts *QueryOptions) (*Policy, *QueryMeta, error) {
	return getAs(ctx, p.c, resource.KindPolicy, name, opts, NewPolicy)
}

// List reads the policies that match opts.Selector, sorted by name.
func (p *Policies) List(ctx context.Context, opts *QueryOptions) ([]*Policy, *QueryMeta, error) {
	objs, meta, err := p.c.List(ctx, resource.KindPolicy, opts)
	if err != nil {
		return nil, nil, err
	}
	pols, err := decodeAll(objs, NewPolicy)
	if err != nil {
		return nil, nil, err
	}
	return pols, meta, nil
}

// ApplyResult says what Apply did.
type ApplyResult string

// Outcomes of Apply.
const (
	PolicyCreated   ApplyResult = "created"
	PolicyUpdated   ApplyResult = "updated"
	PolicyUnchanged ApplyResult = "unchanged"
)

// Apply stores spec as policy name: it creates the policy, or replaces the
// spec of an existing one (keeping its labels) with compare-and-set,
// retried when the policy changed in between. The cluster counts versions
// (spec.version): a change of source, limits or disabled makes a new one,
// which the leader loads and runs from then on. spec.Version is ignored.
func (p *Policies) Apply(ctx context.Context, name string, spec resource.PolicySpec) (*Policy, ApplyResult, error) {
	spec.Version = 0
	if err := checkName(resource.KindPolicy, name); err != nil {
		return nil, "", err
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, "", err
	}
	_, _, err = p.Get(ctx, name, nil)
	switch {
	case errors.Is(err, ErrNotFound):
		o, err := p.c.Create(ctx, resource.KindPolicy, resource.CreateRequest{Name: name, Spec: raw})
		if err == nil {
			pol, err := NewPolicy(o)
			return pol, PolicyCreated, err
		}
		if !errors.Is(err, ErrConflict) {
			return nil, "", err
		}
		// Created meanwhile (or by an earlier attempt): update it.
	case err != nil:
		return nil, "", err
	}
	result := PolicyUnchanged
	o, err := p.c.Modify(ctx, resource.KindPolicy, name, func(cur *resource.Object) (*resource.Object, error) {
		old, err := resource.DecodeSpec[resource.PolicySpec](cur)
		if err != nil {
			return nil, err
		}
		next := spec
		next.Version = old.Version
		next.Default()
		if next == *old {
			result = PolicyUnchanged
			return nil, nil
		}
		result = PolicyUpdated
		if cur.Spec, err = json.Marshal(next); err != nil {
			return nil, err
		}
		return cur, nil
	})
	if err != nil {
		return nil, "", err
	}
	pol, err := NewPolicy(o)
	return pol, result, err
}

// Delete removes a policy; the leader stops running it.
func (p *Policies) Delete(ctx context.Context, name string) error {
	_, err := p.c.Delete(ctx, resource.KindPolicy, name, nil)
	return err
}
