package api

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// debugPprof serves Go's runtime profiles under /debug/pprof/ to callers
// with cluster:admin (docs/api.md, "GET /debug/pprof/").
func (a *httpAPI) debugPprof(w http.ResponseWriter, r *http.Request) error {
	if err := a.requireAdmin(r); err != nil {
		return err
	}
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r) // the index, and named profiles (heap, goroutine, ...)
	}
	return nil
}

// requireAdmin is nil when the caller's token grants cluster:admin.
//
// TODO(acl): a stub until the ACL authorizer lands (issue 12, H1): it
// refuses everyone, so that profiles (which expose memory contents and
// command lines) are never served without authorization.
func (a *httpAPI) requireAdmin(r *http.Request) error {
	return &apiError{
		status: http.StatusForbidden, code: "permission_denied",
		msg: r.URL.Path + " needs a token with cluster:admin",
	}
}
