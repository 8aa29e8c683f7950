package api

import (
	"net/http"
	"strconv"

	"github.com/kumoi/kumoi/resource"
)

// agentSelf: GET /v1/agent/self, this controller's status and its agent's
// configuration with the secrets redacted (local: never forwarded).
func (a *httpAPI) agentSelf(w http.ResponseWriter, r *http.Request) error {
	if _, err := apiQuery(r); err != nil {
		return err
	}
	if err := a.authorize(r); err != nil {
		return err
	}
	cfg := a.agentConfig
	if cfg == nil {
		cfg = map[string]any{}
	}
	return writeJSON(w, http.StatusOK, resource.AgentSelf{Status: a.b.Status(), Config: cfg})
}

// agentLogs: GET /v1/agent/logs[?lines=N], the last lines this agent
// logged, oldest first, as text (local: never forwarded).
func (a *httpAPI) agentLogs(w http.ResponseWriter, r *http.Request) error {
	q, err := apiQuery(r, "lines")
	if err != nil {
		return err
	}
	n := 0
	if v := q.Get("lines"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			return badArg("lines", "lines must be a positive number of lines, not %q", v)
		}
	}
	if err := a.authorize(r); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(a.logs.Tail(n))
	return err
}
