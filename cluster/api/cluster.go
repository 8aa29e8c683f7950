package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/kumoi/kumoi/resource"
)

// cluster: GET /v1/cluster[?stale]
func (a *httpAPI) cluster(w http.ResponseWriter, r *http.Request) error {
	q, err := apiQuery(r, "stale")
	if err != nil {
		return err
	}
	p := readParams{}
	if p.stale, err = parseStale(q); err != nil {
		return err
	}
	serve := func() error {
		c, err := a.b.Cluster(r.Context())
		if err != nil {
			return err
		}
		if c.Servers == nil {
			c.Servers = []resource.Server{}
		}
		if c.Members == nil {
			c.Members = []resource.Member{}
		}
		a.setReadHeaders(w, p, a.b.FSM().AppliedIndex())
		return writeJSON(w, http.StatusOK, c)
	}
	if p.stale {
		if err := a.authorize(r); err != nil {
			return err
		}
		return serve()
	}
	return a.onLeader(w, r, nil, serve)
}

// removeServer: DELETE /v1/cluster/servers/{id}
func (a *httpAPI) removeServer(id string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := apiQuery(r); err != nil {
			return err
		}
		return a.onLeader(w, r, nil, func() error {
			// Refuse to remove the only voter up front (the controller
			// checks again against the configuration it changes).
			if c, err := a.b.Cluster(r.Context()); err == nil {
				voters, voter := 0, false
				for _, s := range c.Servers {
					if s.Voter {
						voters++
						voter = voter || s.ID == id
					}
				}
				if voter && voters == 1 {
					return toAPIError(fmt.Errorf("cannot remove server %q: %w", id, resource.ErrLastVoter))
				}
			}
			index, err := a.b.RemoveServer(r.Context(), id)
			if err != nil {
				if errors.Is(err, resource.ErrUnknownServer) {
					return &apiError{
						status: http.StatusNotFound, code: resource.CodeNotFound,
						msg: fmt.Sprintf("server %q is not in the raft configuration; GET /v1/cluster lists the servers", id),
					}
				}
				return err
			}
			w.Header().Set(headerIndex, strconv.FormatUint(index, 10))
			return writeJSON(w, http.StatusOK, resource.RemoveServerResponse{Removed: id, Index: index})
		})
	}
}

// transferLeader: POST /v1/operator/raft/transfer-leader, body optional
// {"to": "<server id>"}: the leader hands leadership over and answers
// once the new leader won.
func (a *httpAPI) transferLeader(w http.ResponseWriter, r *http.Request) error {
	if _, err := apiQuery(r); err != nil {
		return err
	}
	body, err := a.readOptionalBody(w, r)
	if err != nil {
		return err
	}
	var req resource.TransferLeaderRequest
	if body != nil {
		if err := decodeBody(body, &req); err != nil {
			return err
		}
	}
	return a.onLeader(w, r, body, func() error {
		from := a.b.NodeID()
		to, err := a.b.TransferLeader(r.Context(), req.To)
		if errors.Is(err, resource.ErrUnknownServer) {
			return &apiError{
				status: http.StatusNotFound, code: resource.CodeNotFound, field: "to",
				msg: fmt.Sprintf("server %q is not in the raft configuration; GET /v1/cluster lists the servers", req.To),
			}
		}
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, resource.TransferLeaderResponse{From: from, To: to})
	})
}
