package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

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

// filterKeep keeps the objects keep keeps (nil: all).
func filterKeep(objs []*resource.Object, keep func(*resource.Object) bool) []*resource.Object {
	if keep == nil {
		return objs
	}
	out := objs[:0:0]
	for _, o := range objs {
		if keep(o) {
			out = append(out, o)
		}
	}
	return out
}

// listPage is a list's ?limit and ?next.
type listPage struct {
	limit int
	start string // the name to start at ("": the first)
}

func parsePage(q url.Values) (listPage, error) {
	p := listPage{limit: resource.MaxListLimit}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > resource.MaxListLimit {
			return p, badArg("limit", "limit must be an integer between 1 and %d, not %q", resource.MaxListLimit, q.Get("limit"))
		}
		p.limit = n
	}
	if q.Has("next") {
		b, err := base64.RawURLEncoding.DecodeString(q.Get("next"))
		if err != nil || resource.ValidateName(string(b)) != nil {
			return p, badArg("next", "next must be the token of an %s header, not %q", resource.HeaderNext, q.Get("next"))
		}
		p.start = string(b)
	}
	return p, nil
}

// page cuts objs (in name order) to p, and returns the token of the next
// page ("" when this is the last).
func (p listPage) page(objs []*resource.Object) ([]*resource.Object, string) {
	if p.start != "" {
		objs = objs[sort.Search(len(objs), func(i int) bool { return objs[i].Name >= p.start }):]
	}
	if len(objs) <= p.limit {
		return objs, ""
	}
	return objs[:p.limit], pageToken(objs[p.limit].Name)
}

// pageToken is the X-Kumoi-Next token of a page that starts at name ("":
// none).
func pageToken(name string) string {
	if name == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(name))
}

// list: GET /v1/{plural}[?selector=][&stale][&index=N&wait=D][&limit=N][&next=T]
func (a *httpAPI) list(info *resource.KindInfo) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q, err := apiQuery(r, "selector", "stale", "index", "wait", "host", "limit", "next")
		if err != nil {
			return err
		}
		pg, err := parsePage(q)
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
			var next string
			keep := a.visibleFilter(r)
			idx, err := a.blockingQuery(w, r, p, func(ws memdb.WatchSet) (uint64, error) {
				var idx uint64
				if host != "" {
					// The host's VMs and those migrating to it: what
					// its worker reads.
					objs, idx, err = st.VMsForHostWithIndex(ws, host)
					objs = filterKeep(filterSelector(objs, sel), keep)
					objs, next = pg.page(objs)
				} else {
					// Read only up to the page's end.
					var name string
					objs, name, idx, err = st.ListPageWithIndex(ws, info.Kind, sel, pg.start, pg.limit, keep)
					next = pageToken(name)
				}
				return idx, err
			})
			if err != nil {
				return err
			}
			if objs == nil {
				objs = []*resource.Object{}
			}
			if next != "" {
				w.Header().Set(resource.HeaderNext, next)
			}
			a.setReadHeaders(w, p, idx)
			return writeObjectsJSON(w, http.StatusOK, objs)
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
			if obj != nil {
				if err := a.allowObject(r, obj, resource.AccessRead); err != nil {
					return err
				}
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
	// The caller's accessor goes with the command (auth.go).
	t, req, err := withAccessor(ctx, t, req)
	if err != nil {
		return nil, err
	}
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
	b, err := o.AppendJSON(make([]byte, 0, 512))
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return writeJSONBytes(w, status, b)
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
			if err := resource.ValidateRequestMeta(req.Name, req.Labels); err != nil {
				return err
			}
			spec, err := resource.NormalizeRequestSpec(info.Kind, req.Spec)
			if err != nil {
				return err
			}
			if err := a.allowWrite(r, info.Kind, req.Name, req.Labels, spec); err != nil {
				return err
			}
			if info.Kind == resource.KindImage {
				if err := a.checkImageFile(spec); err != nil {
					return err
				}
			}
			res, obj, err := a.apply(r.Context(), fsm.CreateRequestType, &fsm.CreateRequest{
				Time:   time.Now().UTC(),
				Kind:   info.Kind,
				Name:   req.Name,
				ID:     resource.NewObjectID(), // time-ordered: local inserts in the uid index
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
			if err := resource.ValidateRequestLabels(req.Labels); err != nil {
				return err
			}
			spec, err := resource.NormalizeRequestSpec(info.Kind, req.Spec)
			if err != nil {
				return err
			}
			// Labels before and after must be the caller's to write.
			cur, err := a.b.FSM().State().Get(nil, info.Kind, name)
			if err != nil {
				return err
			}
			if cur != nil {
				if err := a.allowObject(r, cur, resource.AccessWrite); err != nil {
					return err
				}
			}
			if err := a.allowWrite(r, info.Kind, name, req.Labels, spec); err != nil {
				return err
			}
			cas := a.casFor(r, info.Kind, resource.AccessWrite, cas, cur)
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
			cur, err := a.b.FSM().State().Get(nil, info.Kind, name)
			if err != nil {
				return err
			}
			if cur != nil {
				if err := a.allowObject(r, cur, resource.AccessWrite); err != nil {
					return err
				}
			}
			cas := a.casFor(r, info.Kind, resource.AccessWrite, cas, cur)
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
