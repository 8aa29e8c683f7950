package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Authentication and authorization (docs/security.md).
//
// Every route names what it needs (routeNeed): a kind and an access level.
// The check happens where the request is served: a request this node
// forwards to the leader is checked by the leader (the forward keeps the
// Authorization header), so that a token just created is known where the
// decision is made. The coarse check (authorize: may the token have this
// access on some objects of the kind) runs when the request is about to be
// served here (onLeader, read, and the handlers that serve locally);
// handlers then check the objects themselves (labels, a node token's
// host) with allowObject and friends.

// routeNeed is what a route needs of the caller's token.
type routeNeed struct {
	// none: the route needs no token (GET /v1/status, POST
	// /v1/acl/bootstrap).
	none bool
	// any: any valid token (GET /v1/acl/token/self, GET /v1/events:
	// the stream is filtered to what the token may read).
	any    bool
	kind   resource.Kind
	access string
	// name is the object the URL names, if any (for messages).
	name string
}

// authState is the per-request state of authentication, in the request's
// context: the route's need and, once resolved, the caller's identity.
type authState struct {
	need routeNeed
	// unset: a framed request's, made with its context (fwdstream.go),
	// which withAuth fills in instead of making a new one.
	unset    bool
	resolved bool
	id       *resource.ACLIdentity
	err      error
}

type authKey struct{}

func authOf(ctx context.Context) *authState {
	st, _ := ctx.Value(authKey{}).(*authState)
	return st
}

// withAuth attaches a fresh authState for the route's need to r (or sets
// the need of the unset one a framed request was made with: no copy of
// the request).
func withAuth(r *http.Request, need routeNeed) *http.Request {
	if st := authOf(r.Context()); st != nil && st.unset {
		*st = authState{need: need}
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), authKey{}, &authState{need: need}))
}

// withUnsetAuth is ctx with an unset authState, for withAuth to fill in.
func withUnsetAuth(ctx context.Context) context.Context {
	return context.WithValue(ctx, authKey{}, &authState{unset: true})
}

// accessorOf is the accessor ID of the request's token ("" with ACLs
// off or without a token): what the FSM records on the writes.
func accessorOf(ctx context.Context) string {
	if st := authOf(ctx); st != nil && st.resolved {
		return st.id.Accessor()
	}
	return ""
}

// bearer is the secret the request carries: Authorization: Bearer, or
// X-Kumoi-Token.
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(tok)
		}
		if tok, ok := strings.CutPrefix(h, "bearer "); ok {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get(resource.HeaderToken))
}

func unauthenticated(format string, args ...any) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: resource.CodeUnauthenticated, msg: fmt.Sprintf(format, args...)}
}

func denied(err error) *apiError {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, resource.ErrPermissionDenied.Error()+": ")
	return &apiError{status: http.StatusForbidden, code: resource.CodePermissionDenied, msg: msg}
}

// identify resolves the request's token (once): nil identity and nil
// error with ACLs off.
func (a *httpAPI) identify(r *http.Request) (*resource.ACLIdentity, error) {
	st := authOf(r.Context())
	if st == nil || st.unset {
		// Not through ServeHTTP (cannot happen): refuse.
		return nil, unauthenticated("request without authentication state")
	}
	if !st.resolved {
		st.id, st.err = a.resolve(r)
		st.resolved = st.err == nil
	}
	return st.id, st.err
}

func (a *httpAPI) resolve(r *http.Request) (*resource.ACLIdentity, error) {
	secret := bearer(r)
	actAs := r.Header.Get(resource.HeaderActAs)
	state := a.b.FSM().State()
	if !a.acl {
		// ACLs are off: no token is looked at, and writes record no
		// accessor.
		return nil, nil
	}
	if a.internalSecret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(a.internalSecret)) == 1 {
		// This controller's policy runner, acting for the token that
		// stored the policy.
		if actAs == "" {
			return nil, unauthenticated("the controller's internal token needs %s", resource.HeaderActAs)
		}
		e := state.ACLToken(nil, actAs)
		if e == nil {
			return nil, unauthenticated("the token (accessor %s) that stored this policy no longer exists: the policy has no rights; store it again with a valid token", actAs)
		}
		return state.ACLIdentity(e), nil
	}
	if actAs != "" {
		return nil, unauthenticated("%s is only accepted from the controller itself", resource.HeaderActAs)
	}
	if secret == "" {
		if !state.ACLBootstrapped(nil) {
			return nil, unauthenticated("ACLs are enabled but not bootstrapped: run `kumoi acl bootstrap` (or start the controllers with --acl-initial-management), then send the token")
		}
		return nil, unauthenticated("this request needs an ACL token: send Authorization: Bearer <secret> (kumoi --token or KUMOI_TOKEN)")
	}
	e := state.ACLTokenBySecret(secret)
	if e == nil {
		return nil, unauthenticated("the ACL token is not known to this cluster (deleted, mistyped, or from another cluster)")
	}
	return state.ACLIdentity(e), nil
}

// authorize makes the route's coarse check where the request is served.
func (a *httpAPI) authorize(r *http.Request) error {
	st := authOf(r.Context())
	if st != nil && st.need.none {
		return nil
	}
	id, err := a.identify(r)
	if err != nil || !a.acl {
		return err
	}
	if st == nil || st.need.any {
		return nil
	}
	if err := id.AllowSome(st.need.kind, st.need.access); err != nil {
		if st.need.name != "" {
			if oerr := id.Allow(st.need.kind, st.need.access, st.need.name, nil); oerr != nil {
				err = oerr // names the object
			}
		}
		return denied(err)
	}
	return nil
}

// allow checks access on kind (name "": the kind as a whole).
func (a *httpAPI) allow(r *http.Request, kind resource.Kind, access, name string, labels map[string]string) error {
	if !a.acl {
		return nil
	}
	id, err := a.identify(r)
	if err != nil {
		return err
	}
	if err := id.Allow(kind, access, name, labels); err != nil {
		return denied(err)
	}
	return nil
}

// allowWrite is allow of a write of kind/name with these labels and
// spec, whose ACL labels (resource.ACLLabels: a copy of the labels) are
// made only for a token whose rules read them.
func (a *httpAPI) allowWrite(r *http.Request, kind resource.Kind, name string, labels map[string]string, spec json.RawMessage) error {
	if !a.acl {
		return nil // (and no labels copied for nothing)
	}
	if id, err := a.identify(r); err == nil && id.IsManagement() {
		return nil // allowed whatever the labels: none copied
	}
	return a.allow(r, kind, resource.AccessWrite, name, resource.ACLLabels(kind, name, labels, spec))
}

// allowObject checks access on a stored object.
func (a *httpAPI) allowObject(r *http.Request, o *resource.Object, access string) error {
	if !a.acl {
		return nil
	}
	id, err := a.identify(r)
	if err != nil {
		return err
	}
	if err := id.AllowObject(o, access); err != nil {
		return denied(err)
	}
	return nil
}

// allowReport checks that the caller may post host's report: a node
// token for that host, or host:admin.
func (a *httpAPI) allowReport(r *http.Request, host string) error {
	if !a.acl {
		return nil
	}
	id, err := a.identify(r)
	if err != nil {
		return err
	}
	var labels map[string]string
	if o, _ := a.b.FSM().State().Get(nil, resource.KindHost, host); o != nil {
		labels = o.Labels
	}
	if err := id.AllowReport(host, labels); err != nil {
		return denied(err)
	}
	return nil
}

// visibleFilter says which objects the caller may read: nil when it may
// read them all (ACLs off, a management token, or no identity, which the
// read's own check has refused already).
func (a *httpAPI) visibleFilter(r *http.Request) func(*resource.Object) bool {
	if !a.acl {
		return nil
	}
	id, err := a.identify(r)
	if err != nil || id.IsManagement() {
		return nil
	}
	return func(o *resource.Object) bool { return id.AllowObject(o, resource.AccessRead) == nil }
}

// eventVisible reports whether the caller may see ev.
func eventVisible(id *resource.ACLIdentity, ev *resource.Event) bool {
	return id == nil || id.AllowEvent(ev) == nil
}

// casFor is the CAS a write by the caller must carry: cas as given, or —
// when only a selector rule grants the write, and the caller gave none —
// the modify index the labels were checked at, so that a concurrent
// relabel cannot slip between the check and the write (it gets 409
// cas_mismatch instead).
func (a *httpAPI) casFor(r *http.Request, kind resource.Kind, access string, cas uint64, cur *resource.Object) uint64 {
	if !a.acl || cas != 0 || cur == nil {
		return cas
	}
	id, err := a.identify(r)
	if err != nil || id.Allow(kind, access, "", nil) == nil {
		return cas // a rule for the whole kind: labels do not matter
	}
	return cur.ModifyIndex
}

// tokenGone reports whether the caller's token was deleted since the
// request began (a long event stream ends then).
func (a *httpAPI) tokenGone(r *http.Request) bool {
	if !a.acl {
		return false
	}
	id, err := a.identify(r)
	if err != nil || id == nil || id.Token == nil {
		return err != nil
	}
	return a.b.FSM().State().ACLToken(nil, id.Token.AccessorID) == nil
}

// withAccessor wraps a command with the caller's accessor.
func withAccessor(ctx context.Context, t fsm.MessageType, req any) (fsm.MessageType, any, error) {
	return fsm.WithAccessor(accessorOf(ctx), t, req)
}

// needOf is what the route (as route names it) needs for r.
func needOf(route string, r *http.Request) routeNeed {
	need := needOfRoute(route, r.Method)
	if strings.Contains(route, "/{name}") {
		if parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/"), "/"); len(parts) >= 2 {
			need.name = parts[1]
		}
	}
	return need
}

func needOfRoute(route, method string) routeNeed {
	route = strings.TrimSuffix(route, "?index")
	read := method == http.MethodGet || method == http.MethodHead
	level := func(kind resource.Kind) routeNeed {
		if read {
			return routeNeed{kind: kind, access: resource.AccessRead}
		}
		return routeNeed{kind: kind, access: resource.AccessWrite}
	}
	switch route {
	case "/v1/status", "/v1/acl/bootstrap", "other", "/ui":
		return routeNeed{none: true}
	case "/metrics", "/v1/cluster":
		return routeNeed{kind: resource.KindCluster, access: resource.AccessRead}
	case "/v1/cluster/servers/{id}", "/debug/pprof", "/v1/operator/snapshot", "/v1/operator/raft/transfer-leader",
		"/v1/agent/self", "/v1/agent/logs":
		return routeNeed{kind: resource.KindCluster, access: resource.AccessAdmin}
	case "/v1/events", "/v1/acl/token/self":
		return routeNeed{any: true}
	case "/v1/acl/policies", "/v1/acl/policies/{name}", "/v1/acl/tokens", "/v1/acl/tokens/{accessor_id}":
		return level(resource.KindACL)
	case "/v1/rebalance":
		// vm:read at least (a dry run); the handler asks vm:power and
		// host:read of a rebalance that migrates.
		return routeNeed{kind: resource.KindVM, access: resource.AccessRead}
	}
	rest, _ := strings.CutPrefix(route, "/v1/")
	plural, sub, _ := strings.Cut(rest, "/")
	info, ok := resource.LookupPlural(plural)
	if !ok {
		return routeNeed{none: true}
	}
	switch sub {
	case "{name}/{action}":
		return routeNeed{kind: info.Kind, access: resource.AccessPower}
	case "{name}/report", "{name}/migrations":
		// A node token for that host, or host:admin: the handler checks.
		return routeNeed{any: true}
	}
	return level(info.Kind)
}
