package cluster

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/scheduler"
)

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

// report: POST /v1/hosts/{name}/report with a resource.ReportRequest. Each
// report is checked on its own (host owns the VM, epoch is current) and the
// answer says, per VM, whether it was recorded.
func (a *httpAPI) report(host string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := apiQuery(r); err != nil {
			return err
		}
		if err := resource.ValidateName(host); err != nil {
			return err
		}
		body, err := a.readBody(w, r)
		if err != nil {
			return err
		}
		return a.onLeader(w, r, body, func() error {
			var req resource.ReportRequest
			if err := decodeBody(body, &req); err != nil {
				return err
			}
			if len(req.Reports) == 0 {
				return badArg("reports", "is empty; send at least one report")
			}
			if len(req.Reports) > fsm.MaxBatchOps {
				return badArg("reports", "has %d reports; the limit is %d", len(req.Reports), fsm.MaxBatchOps)
			}
			res, err := a.b.Apply(r.Context(), fsm.ReportRequestType, &fsm.ReportRequest{
				Time: time.Now().UTC(), Host: host, Reports: req.Reports,
			})
			if err != nil {
				return err
			}
			if res.Err != nil {
				return res.Err
			}
			out := resource.ReportResponse{Index: res.Index, Results: make([]resource.ReportResult, len(req.Reports))}
			for i, rep := range req.Reports {
				out.Results[i].VM = rep.VM
				if i < len(res.ItemErrors) && res.ItemErrors[i] != nil {
					e := toAPIError(res.ItemErrors[i])
					out.Results[i].Error = &resource.ErrorBody{Code: e.code, Message: e.msg, Field: e.field}
				}
			}
			w.Header().Set(headerIndex, strconv.FormatUint(res.Index, 10))
			return apiWriteJSON(w, http.StatusOK, out)
		})
	}
}

// vmAction: POST /v1/vms/{name}/{start|stop|suspend|resume|reboot|migrate}
// with an optional resource.VMActionRequest body → 200 + the VM; 409
// conflict (naming the phase) when the phase forbids it.
func (a *httpAPI) vmAction(name, action string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := apiQuery(r); err != nil {
			return err
		}
		if err := resource.ValidateName(name); err != nil {
			return err
		}
		switch action {
		case fsm.ActionStart, fsm.ActionStop, fsm.ActionSuspend, fsm.ActionResume, fsm.ActionReboot, actionMigrate:
		default:
			return &apiError{status: http.StatusNotFound, code: resource.CodeNotFound,
				msg: "unknown VM action " + strconv.Quote(action) + "; use start, stop, suspend, resume, reboot or migrate"}
		}
		body, err := a.readOptionalBody(w, r)
		if err != nil {
			return err
		}
		var opts resource.VMActionRequest
		if body != nil {
			if err := decodeBody(body, &opts); err != nil {
				return err
			}
		}
		switch {
		case opts.Force && action != fsm.ActionStop:
			return badArg("force", "applies to stop only, not %s", action)
		case opts.Host != "" && action != actionMigrate:
			return badArg("host", "applies to migrate only, not %s", action)
		case opts.Host != "":
			if err := resource.ValidateName(opts.Host); err != nil {
				return badArg("host", "%v", err)
			}
		}
		return a.onLeader(w, r, body, func() error {
			var (
				res *fsm.Result
				err error
			)
			if action == actionMigrate {
				res, err = a.migrate(r, name, opts.Host)
			} else {
				res, err = a.b.Apply(r.Context(), fsm.ActionRequestType, &fsm.ActionRequest{Time: time.Now().UTC(), VM: name, Action: action, Force: opts.Force})
			}
			if err != nil {
				return err
			}
			if res.Err != nil {
				return res.Err
			}
			o := (*resource.Object)(nil)
			if len(res.Objects) > 0 {
				o = res.Objects[0]
			} else if o, err = a.b.FSM().State().Get(nil, resource.KindVM, name); err != nil || o == nil {
				return fmt.Errorf("vm %q vanished after %s", name, action)
			}
			return writeObject(w, http.StatusOK, res.Index, o)
		})
	}
}

// actionMigrate is the VM action that moves a VM to another host (cold).
const actionMigrate = "migrate"

// migrate proposes a fsm.MigrateRequest (on the leader), picking the
// target host when none is given. The FSM checks everything again at apply
// time; the pick here only chooses.
func (a *httpAPI) migrate(r *http.Request, name, host string) (*fsm.Result, error) {
	if host != "" {
		// An unknown target is a bad argument, not a missing VM (404).
		if ho, err := a.b.FSM().State().Get(nil, resource.KindHost, host); err != nil {
			return nil, err
		} else if ho == nil {
			return nil, badArg("host", "there is no host %q; see kumoi host list", host)
		}
	}
	if host == "" {
		st := a.b.FSM().State()
		o, err := st.Get(nil, resource.KindVM, name)
		if err != nil {
			return nil, err
		}
		if o == nil {
			return nil, fmt.Errorf("vm %q: %w", name, fsm.ErrNotFound)
		}
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil {
			return nil, err
		}
		vs, err := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil {
			return nil, err
		}
		var from *resource.HostStatus
		if vs.Host != "" {
			if ho, err := st.Get(nil, resource.KindHost, vs.Host); err == nil && ho != nil {
				if from, err = resource.DecodeStatus[resource.HostStatus](ho); err != nil {
					return nil, err
				}
			}
		}
		// Say first why the VM cannot move at all (the FSM checks again).
		if err := fsm.CheckMigratable(name, spec, vs, from, time.Now(), a.hostDownGrace); err != nil {
			return nil, err
		}
		hosts, err := scheduler.HostsFromState(st)
		if err != nil {
			return nil, err
		}
		need := resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB}
		var why string
		if host, why = scheduler.PickHost(hosts, need, vs.Host); host == "" {
			return nil, fmt.Errorf("cannot migrate vm %q: %w: %s", name, fsm.ErrNoCapacity, why)
		}
	}
	return a.b.Apply(r.Context(), fsm.MigrateRequestType, &fsm.MigrateRequest{
		Time: time.Now().UTC(), VM: name, Host: host, Grace: a.hostDownGrace,
	})
}
