package api

import (
	"net/http"

	"net/http/pprof"
	"strings"

	"github.com/kumoi/kumoi/resource"
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

// requireAdmin is nil when the caller's token grants cluster:admin (or
// when ACLs are off: a dev cluster's profiles are its operator's).
func (a *httpAPI) requireAdmin(r *http.Request) error {
	return a.allow(r, resource.KindCluster, resource.AccessAdmin, "", nil)
}
