package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/scheduler"
)

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
		case resource.ActionStart, resource.ActionStop, resource.ActionSuspend, resource.ActionResume, resource.ActionReboot, resource.ActionMigrate:
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
		case opts.Force && action != resource.ActionStop:
			return badArg("force", "applies to stop only, not %s", action)
		case opts.Host != "" && action != resource.ActionMigrate:
			return badArg("host", "applies to migrate only, not %s", action)
		case opts.Live && action != resource.ActionMigrate:
			return badArg("live", "applies to migrate only, not %s", action)
		case opts.Restart && action != resource.ActionMigrate:
			return badArg("restart", "applies to migrate only, not %s", action)
		case opts.Abort && action != resource.ActionMigrate:
			return badArg("abort", "applies to migrate only, not %s", action)
		case opts.Live && opts.Restart:
			return badArg("restart", "and live exclude each other: a live migration keeps the guest running, a restart shuts it down")
		case opts.Abort && (opts.Live || opts.Restart || opts.Host != ""):
			return badArg("abort", "takes no other option: it cancels the migration under way")
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
			if cur, err := a.b.FSM().State().Get(nil, resource.KindVM, name); err != nil {
				return err
			} else if cur != nil {
				if err := a.allowObject(r, cur, resource.AccessPower); err != nil {
					return err
				}
			}
			if action == resource.ActionMigrate {
				res, err = a.migrate(r, name, opts)
			} else {
				res, err = a.propose(r.Context(), fsm.ActionRequestType, &fsm.ActionRequest{Time: time.Now().UTC(), VM: name, Action: action, Force: opts.Force})
			}
			if err != nil {
				return err
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

// migrate proposes a fsm.MigrateRequest (on the leader), with the target
// host the scheduler picks when none is given (scheduler.MigrationTarget).
// With live or restart a running VM moves too (protocol 9); abort cancels
// the migration under way.
func (a *httpAPI) migrate(r *http.Request, name string, opts resource.VMActionRequest) (*fsm.Result, error) {
	host, mode := opts.Host, ""
	switch {
	case opts.Live:
		mode = resource.MigrationLive
	case opts.Restart:
		mode = resource.MigrationRestart
	}
	if opts.Abort {
		return a.propose(r.Context(), fsm.MigrateRequestType, &fsm.MigrateRequest{Time: time.Now().UTC(), VM: name, Abort: true})
	}
	if host != "" {
		// An unknown target is a bad argument, not a missing VM (404).
		if ho, err := a.b.FSM().State().Get(nil, resource.KindHost, host); err != nil {
			return nil, err
		} else if ho == nil {
			return nil, badArg("host", "there is no host %q; see kumoi host list", host)
		}
	}
	if host == "" {
		var err error
		if host, err = scheduler.MigrationTargetFor(a.b.FSM().State(), name, mode, time.Now(), a.hostDownGrace); err != nil {
			return nil, err
		}
	}
	if err := a.checkMigrateBoot(name, host); err != nil {
		return nil, err
	}
	req := &fsm.MigrateRequest{Time: time.Now().UTC(), VM: name, Host: host, Grace: a.hostDownGrace, PhaseOnly: true, Mode: mode}
	res, err := a.propose(r.Context(), fsm.MigrateRequestType, req)
	if errors.Is(err, resource.ErrUpgradeRequired) && mode == "" {
		// Some controller does not speak protocol 5 yet: the older rule
		// (a host down for the grace by this node's clock). A live or
		// restart migration needs protocol 9 whatever the rule.
		req.PhaseOnly = false
		res, err = a.propose(r.Context(), fsm.MigrateRequestType, req)
	}
	return res, err
}
