package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

func objectPath(info *resource.KindInfo, name string) string {
	return "/v1/" + info.Plural + "/" + url.PathEscape(name)
}

func filterSelector(objs []*resource.Object, sel resource.Selector) []*resource.Object {
	if len(sel) == 0 {
		return objs
	}
	out := objs[:0:0]
	for _, o := range objs {
		if sel.Matches(o.Labels) {
			out = append(out, o)
		}
	}
	return out
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
			return writeJSON(w, http.StatusOK, objs)
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
			return writeJSON(w, http.StatusOK, obj)
		})
	}
}

// propose proposes a command through the backend and folds the command's
// business error (Result.Err) into the returned error; the result comes
// back whenever the command was applied, even with a business error.
func (a *httpAPI) propose(ctx context.Context, t fsm.MessageType, req any) (*fsm.Result, error) {
	res, err := a.b.Apply(ctx, t, req)
	switch {
	case err != nil:
		return nil, err
	case res == nil:
		return nil, fmt.Errorf("apply %s: no result from the state machine", t)
	case res.Err != nil:
		return res, res.Err
	}
	return res, nil
}

// apply proposes a command and returns its single object; business errors
// come back as the error.
func (a *httpAPI) apply(ctx context.Context, t fsm.MessageType, req any) (*fsm.Result, *resource.Object, error) {
	start := time.Now()
	res, err := a.propose(ctx, t, req)
	if res != nil {
		a.m.observeRaftApply(time.Since(start))
	}
	if err != nil {
		return nil, nil, err
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
	return writeJSON(w, status, o)
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
			if info.Kind == resource.KindVM {
				if err := a.checkBootPlaced(spec, name); err != nil {
					return err
				}
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
