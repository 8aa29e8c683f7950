package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// The ACL endpoints, /v1/acl/... (docs/api.md "ACLs", docs/security.md).
// Lists answer a JSON array with X-Kumoi-Index, as the object lists do.

// aclRoute routes /v1/acl/{rest...}.
func (a *httpAPI) aclRoute(parts []string) (string, apiHandler) {
	switch {
	case len(parts) == 1 && parts[0] == "bootstrap":
		return "/v1/acl/bootstrap", a.methods(methodHandler{http.MethodPost, a.aclBootstrap})
	case len(parts) == 1 && parts[0] == "policies":
		return "/v1/acl/policies", a.methods(
			methodHandler{http.MethodGet, a.aclPolicyList},
			methodHandler{http.MethodPost, a.aclPolicyWrite("", true)},
		)
	case len(parts) == 2 && parts[0] == "policies" && parts[1] != "":
		name := parts[1]
		return "/v1/acl/policies/{name}", a.methods(
			methodHandler{http.MethodGet, a.aclPolicyGet(name)},
			methodHandler{http.MethodPut, a.aclPolicyWrite(name, false)},
			methodHandler{http.MethodDelete, a.aclPolicyDelete(name)},
		)
	case len(parts) == 1 && parts[0] == "tokens":
		return "/v1/acl/tokens", a.methods(
			methodHandler{http.MethodGet, a.aclTokenList},
			methodHandler{http.MethodPost, a.aclTokenCreate},
		)
	case len(parts) == 2 && parts[0] == "tokens" && parts[1] != "":
		id := parts[1]
		return "/v1/acl/tokens/{accessor_id}", a.methods(
			methodHandler{http.MethodGet, a.aclTokenGet(id)},
			methodHandler{http.MethodDelete, a.aclTokenDelete(id)},
		)
	case len(parts) == 2 && parts[0] == "token" && parts[1] == "self":
		return "/v1/acl/token/self", a.methods(methodHandler{http.MethodGet, a.aclTokenSelf})
	}
	return "other", func(w http.ResponseWriter, r *http.Request) error {
		return &apiError{status: http.StatusNotFound, code: resource.CodeNotFound,
			msg: fmt.Sprintf("no such endpoint %s %s; the ACL endpoints are /v1/acl/bootstrap, /v1/acl/policies[/{name}], /v1/acl/tokens[/{accessor_id}] and /v1/acl/token/self (see docs/api.md)", r.Method, r.URL.Path)}
	}
}

// aclApply proposes an ACL command and maps its ACL-specific errors.
func (a *httpAPI) aclApply(r *http.Request, t fsm.MessageType, req any) (*fsm.Result, error) {
	res, err := a.propose(r.Context(), t, req)
	switch {
	case errors.Is(err, fsm.ErrACLBootstrapped):
		return nil, &apiError{status: http.StatusConflict, code: resource.CodeConflict, msg: err.Error()}
	case errors.Is(err, fsm.ErrNotFound):
		return nil, &apiError{status: http.StatusNotFound, code: resource.CodeNotFound, msg: err.Error()}
	}
	return res, err
}

func setIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set(headerIndex, strconv.FormatUint(max(index, 1), 10))
}

// aclBootstrap: POST /v1/acl/bootstrap (no token) → the management token,
// with its secret, once; later 409 conflict.
func (a *httpAPI) aclBootstrap(w http.ResponseWriter, r *http.Request) error {
	if _, err := apiQuery(r); err != nil {
		return err
	}
	return a.onLeader(w, r, nil, func() error {
		if a.b.FSM().State().ACLBootstrapped(nil) {
			return &apiError{status: http.StatusConflict, code: resource.CodeConflict, msg: fsm.ErrACLBootstrapped.Error()}
		}
		secret := resource.NewACLSecret()
		req := &fsm.ACLBootstrapRequest{Time: time.Now().UTC(), AccessorID: resource.NewACLSecret(),
			SecretHash: resource.HashACLSecret(secret), Name: "Bootstrap Token"}
		res, err := a.aclApply(r, fsm.ACLBootstrapRequestType, req)
		if err != nil {
			return err
		}
		e := a.b.FSM().State().ACLToken(nil, req.AccessorID)
		if e == nil {
			return fmt.Errorf("the bootstrap token vanished after it was stored")
		}
		tok := e.Public()
		tok.SecretID = secret
		setIndex(w, res.Index)
		return writeJSON(w, http.StatusOK, tok)
	})
}

// aclRead serves an ACL read with the consistency ?stale asks for.
func (a *httpAPI) aclRead(w http.ResponseWriter, r *http.Request, serve func() error) error {
	q, err := apiQuery(r, "stale")
	if err != nil {
		return err
	}
	p := readParams{}
	if p.stale, err = parseStale(q); err != nil {
		return err
	}
	return a.read(w, r, p, serve)
}

func (a *httpAPI) aclPolicyList(w http.ResponseWriter, r *http.Request) error {
	return a.aclRead(w, r, func() error {
		st := a.b.FSM().State()
		out := []*resource.ACLPolicy{}
		out = append(out, st.ACLPolicies(nil)...)
		setIndex(w, st.Index(fsm.EventKindACLPolicy))
		return writeJSON(w, http.StatusOK, out)
	})
}

func (a *httpAPI) aclPolicyGet(name string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		return a.aclRead(w, r, func() error {
			p := a.b.FSM().State().ACLPolicy(nil, name)
			if p == nil {
				return &apiError{status: http.StatusNotFound, code: resource.CodeNotFound, msg: fmt.Sprintf("no ACL policy %q", name)}
			}
			setIndex(w, p.ModifyIndex)
			return writeJSON(w, http.StatusOK, p)
		})
	}
}

// aclPolicyWrite: POST /v1/acl/policies (create) and PUT
// /v1/acl/policies/{name}[?cas=N] (create or replace), with a
// resource.ACLPolicy (its indexes are accepted and ignored).
func (a *httpAPI) aclPolicyWrite(name string, create bool) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q, err := apiQuery(r, "cas")
		if err != nil {
			return err
		}
		cas, err := parseCAS(q)
		if err != nil {
			return err
		}
		body, err := a.readBody(w, r)
		if err != nil {
			return err
		}
		return a.onLeader(w, r, body, func() error {
			var p resource.ACLPolicy
			if err := decodeBody(body, &p); err != nil {
				return err
			}
			switch {
			case !create && p.Name == "":
				p.Name = name
			case !create && p.Name != name:
				return badArg("name", "name is %q but the URL names %q; policies cannot be renamed", p.Name, name)
			}
			p.CreateIndex, p.ModifyIndex = 0, 0
			if err := p.Validate(); err != nil {
				return err
			}
			res, err := a.aclApply(r, fsm.ACLPolicyUpsertRequestType, &fsm.ACLPolicyUpsertRequest{
				Time: time.Now().UTC(), Policy: p, Create: create, CAS: cas,
			})
			if err != nil {
				return err
			}
			stored := a.b.FSM().State().ACLPolicy(nil, p.Name)
			if stored == nil {
				return fmt.Errorf("ACL policy %q vanished after it was stored", p.Name)
			}
			setIndex(w, res.Index)
			if create {
				w.Header().Set("Location", "/v1/acl/policies/"+url.PathEscape(p.Name))
			}
			return writeJSON(w, http.StatusOK, stored)
		})
	}
}

func (a *httpAPI) aclPolicyDelete(name string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := apiQuery(r); err != nil {
			return err
		}
		return a.onLeader(w, r, nil, func() error {
			p := a.b.FSM().State().ACLPolicy(nil, name)
			res, err := a.aclApply(r, fsm.ACLPolicyDeleteRequestType, &fsm.ACLPolicyDeleteRequest{Time: time.Now().UTC(), Name: name})
			if err != nil {
				return err
			}
			setIndex(w, res.Index)
			return writeJSON(w, http.StatusOK, p)
		})
	}
}

func (a *httpAPI) aclTokenList(w http.ResponseWriter, r *http.Request) error {
	return a.aclRead(w, r, func() error {
		st := a.b.FSM().State()
		out := []*resource.ACLToken{}
		for _, e := range st.ACLTokens(nil) {
			out = append(out, e.Public())
		}
		setIndex(w, st.Index(fsm.EventKindACLToken))
		return writeJSON(w, http.StatusOK, out)
	})
}

func (a *httpAPI) aclTokenGet(accessor string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		return a.aclRead(w, r, func() error {
			e := a.b.FSM().State().ACLToken(nil, accessor)
			if e == nil {
				return &apiError{status: http.StatusNotFound, code: resource.CodeNotFound, msg: fmt.Sprintf("no ACL token with accessor %q", accessor)}
			}
			setIndex(w, e.ModifyIndex)
			return writeJSON(w, http.StatusOK, e.Public())
		})
	}
}

// aclTokenCreateRequest is the body of POST /v1/acl/tokens.
type aclTokenCreateRequest struct {
	Name     string   `json:"name,omitempty"`
	Type     string   `json:"type,omitempty"` // default client
	Policies []string `json:"policies,omitempty"`
	Node     string   `json:"node,omitempty"`
}

func (a *httpAPI) aclTokenCreate(w http.ResponseWriter, r *http.Request) error {
	if _, err := apiQuery(r); err != nil {
		return err
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	return a.onLeader(w, r, body, func() error {
		var req aclTokenCreateRequest
		if err := decodeBody(body, &req); err != nil {
			return err
		}
		if req.Type == "" {
			req.Type = resource.TokenClient
		}
		tok := resource.ACLToken{AccessorID: resource.NewACLSecret(), Name: req.Name, Type: req.Type, Policies: req.Policies, Node: req.Node}
		if err := tok.Validate(); err != nil {
			return err
		}
		secret := resource.NewACLSecret()
		res, err := a.aclApply(r, fsm.ACLTokenCreateRequestType, &fsm.ACLTokenCreateRequest{
			Time: time.Now().UTC(), Token: tok, SecretHash: resource.HashACLSecret(secret),
		})
		if err != nil {
			return err
		}
		e := a.b.FSM().State().ACLToken(nil, tok.AccessorID)
		if e == nil {
			return fmt.Errorf("ACL token %s vanished after it was stored", tok.AccessorID)
		}
		out := e.Public()
		out.SecretID = secret
		setIndex(w, res.Index)
		return writeJSON(w, http.StatusOK, out)
	})
}

func (a *httpAPI) aclTokenDelete(accessor string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := apiQuery(r); err != nil {
			return err
		}
		return a.onLeader(w, r, nil, func() error {
			var out *resource.ACLToken
			if e := a.b.FSM().State().ACLToken(nil, accessor); e != nil {
				out = e.Public()
			}
			res, err := a.aclApply(r, fsm.ACLTokenDeleteRequestType, &fsm.ACLTokenDeleteRequest{Time: time.Now().UTC(), AccessorID: accessor})
			if err != nil {
				return err
			}
			setIndex(w, res.Index)
			return writeJSON(w, http.StatusOK, out)
		})
	}
}

// aclTokenSelf: GET /v1/acl/token/self, the caller's own token (no
// secret), answered by the node that gets the request.
func (a *httpAPI) aclTokenSelf(w http.ResponseWriter, r *http.Request) error {
	if _, err := apiQuery(r, "stale"); err != nil {
		return err
	}
	if err := a.authorize(r); err != nil {
		return err
	}
	id, err := a.identify(r)
	if err != nil {
		return err
	}
	if !a.acl && bearer(r) != "" {
		// ACLs are off: the token is still looked up, for whoami.
		if e := a.b.FSM().State().ACLTokenBySecret(bearer(r)); e != nil {
			id = a.b.FSM().State().ACLIdentity(e)
		}
	}
	if id == nil || id.Token == nil {
		if bearer(r) == "" {
			return unauthenticated("send the token to look up: Authorization: Bearer <secret> (kumoi --token or KUMOI_TOKEN)")
		}
		return unauthenticated("the ACL token is not known to this cluster")
	}
	setIndex(w, id.Token.ModifyIndex)
	return writeJSON(w, http.StatusOK, id.Token)
}
