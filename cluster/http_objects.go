package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// readParams are the consistency and blocking parameters of a read.
type readParams struct {
	stale bool          // answer from local state, on any node
	index uint64        // block until the answer's index exceeds this
	wait  time.Duration // for at most this long (when index > 0)
}

func parseStale(q url.Values) (bool, error) {
	if !q.Has("stale") {
		return false, nil
	}
	v := q.Get("stale")
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badArg("stale", "stale must be true or false (or given without a value), not %q", v)
	}
	return b, nil
}

func (a *httpAPI) parseRead(q url.Values) (readParams, error) {
	var p readParams
	var err error
	if p.stale, err = parseStale(q); err != nil {
		return p, err
	}
	if q.Has("index") {
		if p.index, err = strconv.ParseUint(q.Get("index"), 10, 64); err != nil {
			return p, badArg("index", "index must be a non-negative integer (an X-Kumoi-Index value), not %q", q.Get("index"))
		}
	}
	p.wait = a.defWait
	if q.Has("wait") {
		if p.wait, err = a.parseWait(q.Get("wait")); err != nil {
			return p, err
		}
	}
	return p, nil
}

// parseWait reads a Go duration ("30s", "5m") or plain seconds ("30"),
// capped at a.maxWait.
func (a *httpAPI) parseWait(s string) (time.Duration, error) {
	bad := badArg("wait", "wait must be a positive duration such as 30s or 5m, or plain seconds such as 30 (at most %s), not %q", a.maxWait, s)
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, bad
		}
		if f > a.maxWait.Seconds() {
			return a.maxWait, nil
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d <= 0 {
		return 0, bad
	}
	return min(d, a.maxWait), nil
}

func parseCAS(q url.Values) (uint64, error) {
	if !q.Has("cas") {
		return 0, nil
	}
	n, err := strconv.ParseUint(q.Get("cas"), 10, 64)
	if err != nil || n == 0 {
		return 0, badArg("cas", "cas must be a positive integer, the modify_index the object must still have, not %q", q.Get("cas"))
	}
	return n, nil
}

// onLeader runs fn if this node leads and forwards the request (with body)
// to the leader otherwise. fn returning an ErrNotLeader before it wrote
// anything (leadership moved mid-request; nothing was proposed) forwards
// once too.
func (a *httpAPI) onLeader(w http.ResponseWriter, r *http.Request, body []byte, fn func() error) error {
	if !a.b.IsLeader() {
		return a.forward(w, r, body)
	}
	err := fn()
	if isNotLeader(err) {
		return a.forward(w, r, body)
	}
	return err
}

// read serves a read with the consistency p asks for: linearizable on the
// leader (forwarding if needed), or from local state with ?stale.
func (a *httpAPI) read(w http.ResponseWriter, r *http.Request, p readParams, serve func() error) error {
	if p.stale || a.unsafe {
		return serve()
	}
	return a.onLeader(w, r, nil, func() error {
		if err := a.b.ConsistentRead(r.Context()); err != nil {
			return err
		}
		return serve()
	})
}

// blockingQuery runs query once, or — with ?index — until the index it
// returns exceeds p.index or p.wait (plus up to 1/16 jitter) passes. The
// returned index is at least 1, so that it can always be passed back.
func (a *httpAPI) blockingQuery(w http.ResponseWriter, r *http.Request, p readParams, query func(ws memdb.WatchSet) (uint64, error)) (uint64, error) {
	ctx := r.Context()
	if p.index > 0 {
		wait := p.wait
		if j := int64(wait / 16); j > 0 {
			wait += time.Duration(rand.Int64N(j))
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
		// The server's write timeout must not cut a long wait short.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + time.Minute))
	}
	first := true
	idx, err := a.b.FSM().State().BlockingQuery(ctx, p.index, func(ws memdb.WatchSet) (uint64, error) {
		idx, err := query(ws)
		if first && err == nil && p.index > 0 && idx <= p.index && a.onBlock != nil {
			a.onBlock()
		}
		first = false
		return idx, err
	})
	return max(idx, 1), err
}

// setReadHeaders sets X-Kumoi-Index and the consistency headers of a read.
func (a *httpAPI) setReadHeaders(w http.ResponseWriter, p readParams, index uint64) {
	h := w.Header()
	h.Set(headerIndex, strconv.FormatUint(index, 10))
	if !p.stale || a.b.IsLeader() {
		h.Set(headerKnownLeader, "true")
		h.Set(headerLastContact, "0")
		return
	}
	id, _ := a.b.Leader()
	h.Set(headerKnownLeader, strconv.FormatBool(id != ""))
	if ms := a.b.Status().LastContactMS; ms >= 0 {
		h.Set(headerLastContact, strconv.FormatInt(ms, 10))
	}
}

func objectPath(info *resource.KindInfo, name string) string {
	return "/v1/" + info.Plural + "/" + url.PathEscape(name)
}

// list: GET /v1/{plural}[?selector=][&stale][&index=N&wait=D]
func (a *httpAPI) list(info *resource.KindInfo) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q, err := apiQuery(r, "selector", "stale", "index", "wait", "host")
		if err != nil {
			return err
		}
		host := q.Get("host")
		if host != "" && info.Kind != resource.KindVM {
			return badArg("host", "only VMs can be listed by host")
		}
		sel, err := resource.ParseSelector(q.Get("selector"))
		if err != nil {
			return badArg("selector", "%v", err)
		}
		p, err := a.parseRead(q)
		if err != nil {
			return err
		}
		return a.read(w, r, p, func() error {
			st := a.b.FSM().State()
			var objs []*resource.Object
			idx, err := a.blockingQuery(w, r, p, func(ws memdb.WatchSet) (uint64, error) {
				var idx uint64
				if host != "" {
					objs, idx, err = st.VMsOnHostWithIndex(ws, host)
					objs = filterSelector(objs, sel)
				} else {
					objs, idx, err = st.ListWithIndex(ws, info.Kind, sel)
				}
				return idx, err
			})
			if err != nil {
				return err
			}
			if objs == nil {
				objs = []*resource.Object{}
			}
			a.setReadHeaders(w, p, idx)
			return apiWriteJSON(w, http.StatusOK, objs)
		})
	}
}

// get: GET /v1/{plural}/{name}[?stale][&index=N&wait=D]
func (a *httpAPI) get(info *resource.KindInfo, name string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q, err := apiQuery(r, "stale", "index", "wait")
		if err != nil {
			return err
		}
		if err := resource.ValidateName(name); err != nil {
			return err
		}
		p, err := a.parseRead(q)
		if err != nil {
			return err
		}
		return a.read(w, r, p, func() error {
			st := a.b.FSM().State()
			var obj *resource.Object
			idx, err := a.blockingQuery(w, r, p, func(ws memdb.WatchSet) (uint64, error) {
				var idx uint64
				var err error
				obj, idx, err = st.GetWithIndex(ws, info.Kind, name)
				if obj != nil {
					idx = obj.ModifyIndex
				}
				return idx, err
			})
			if err != nil {
				return err
			}
			a.setReadHeaders(w, p, idx)
			if obj == nil {
				return &apiError{
					status: http.StatusNotFound, code: resource.CodeNotFound,
					msg: fmt.Sprintf("%s %q not found", info.Kind, name),
				}
			}
			return apiWriteJSON(w, http.StatusOK, obj)
		})
	}
}

// apply proposes a command and returns its single object; business errors
// come back as the error.
func (a *httpAPI) apply(ctx context.Context, t fsm.MessageType, req any) (*fsm.Result, *resource.Object, error) {
	start := time.Now()
	res, err := a.b.Apply(ctx, t, req)
	if err != nil {
		return nil, nil, err
	}
	a.m.observeRaftApply(time.Since(start))
	if res == nil {
		return nil, nil, fmt.Errorf("apply %s: no result from the state machine", t)
	}
	if res.Err != nil {
		return nil, nil, res.Err
	}
	// The command's own object comes first; hosts whose allocation the
	// command changed follow it.
	if len(res.Objects) == 0 {
		return nil, nil, fmt.Errorf("apply %s: the state machine returned no object", t)
	}
	return res, res.Objects[0], nil
}

func writeObject(w http.ResponseWriter, status int, index uint64, o *resource.Object) error {
	w.Header().Set(headerIndex, strconv.FormatUint(index, 10))
	return apiWriteJSON(w, status, o)
}

// create: POST /v1/{plural} with a resource.CreateRequest.
func (a *httpAPI) create(info *resource.KindInfo) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := apiQuery(r); err != nil {
			return err
		}
		body, err := a.readBody(w, r)
		if err != nil {
			return err
		}
		return a.onLeader(w, r, body, func() error {
			var req resource.CreateRequest
			if err := decodeBody(body, &req); err != nil {
				return err
			}
			if err := resource.ValidateMeta(req.Name, req.Labels); err != nil {
				return err
			}
			spec, err := resource.NormalizeSpec(info.Kind, req.Spec)
			if err != nil {
				return err
			}
			res, obj, err := a.apply(r.Context(), fsm.CreateRequestType, &fsm.CreateRequest{
				Time:   time.Now().UTC(),
				Kind:   info.Kind,
				Name:   req.Name,
				ID:     uuid.NewString(),
				Labels: req.Labels,
				Spec:   spec,
			})
			if err != nil {
				return err
			}
			w.Header().Set("Location", objectPath(info, obj.Name))
			return writeObject(w, http.StatusCreated, res.Index, obj)
		})
	}
}

// update: PUT /v1/{plural}/{name}[?cas=N] with a resource.UpdateRequest.
func (a *httpAPI) update(info *resource.KindInfo, name string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q, err := apiQuery(r, "cas")
		if err != nil {
			return err
		}
		if err := resource.ValidateName(name); err != nil {
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
			var req resource.UpdateRequest
			if err := decodeBody(body, &req); err != nil {
				return err
			}
			if req.Kind != "" && req.Kind != info.Kind {
				return badArg("kind", "kind is %q but the URL names a %s; remove it or make it match", req.Kind, info.Kind)
			}
			if req.Name != "" && req.Name != name {
				return badArg("name", "name is %q but the URL names %q; objects cannot be renamed (create a new one and delete this one)", req.Name, name)
			}
			if err := resource.ValidateLabels(req.Labels); err != nil {
				return err
			}
			spec, err := resource.NormalizeSpec(info.Kind, req.Spec)
			if err != nil {
				return err
			}
			res, obj, err := a.apply(r.Context(), fsm.UpdateRequestType, &fsm.UpdateRequest{
				Time:   time.Now().UTC(),
				Kind:   info.Kind,
				Name:   name,
				CAS:    cas,
				Labels: req.Labels,
				Spec:   spec,
			})
			if err != nil {
				return err
			}
			return writeObject(w, http.StatusOK, res.Index, obj)
		})
	}
}

// delete: DELETE /v1/{plural}/{name}[?cas=N]. Any body is ignored.
func (a *httpAPI) delete(info *resource.KindInfo, name string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q, err := apiQuery(r, "cas")
		if err != nil {
			return err
		}
		if err := resource.ValidateName(name); err != nil {
			return err
		}
		cas, err := parseCAS(q)
		if err != nil {
			return err
		}
		return a.onLeader(w, r, nil, func() error {
			res, obj, err := a.apply(r.Context(), fsm.DeleteRequestType, &fsm.DeleteRequest{
				Time: time.Now().UTC(),
				Kind: info.Kind,
				Name: name,
				CAS:  cas,
			})
			if err != nil {
				return err
			}
			return writeObject(w, http.StatusOK, res.Index, obj)
		})
	}
}

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
		return apiWriteJSON(w, http.StatusOK, c)
	}
	if p.stale {
		return serve()
	}
	return a.onLeader(w, r, nil, serve)
}

// removeServerResponse is the body of DELETE /v1/cluster/servers/{id}.
// TODO: move to resource/api.go as resource.RemoveServerResponse.
type removeServerResponse struct {
	Removed string `json:"removed"`
	Index   uint64 `json:"index"`
}

// removeServer: DELETE /v1/cluster/servers/{id}
func (a *httpAPI) removeServer(id string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := apiQuery(r); err != nil {
			return err
		}
		return a.onLeader(w, r, nil, func() error {
			index, err := a.b.RemoveServer(r.Context(), id)
			if err != nil {
				if errors.Is(err, ErrUnknownServer) {
					return &apiError{
						status: http.StatusNotFound, code: resource.CodeNotFound,
						msg: fmt.Sprintf("server %q is not in the raft configuration; GET /v1/cluster lists the servers", id),
					}
				}
				return err
			}
			w.Header().Set(headerIndex, strconv.FormatUint(index, 10))
			return apiWriteJSON(w, http.StatusOK, removeServerResponse{Removed: id, Index: index})
		})
	}
}
