package api

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/scheduler"
)

// Draining and rebalancing (docs/api.md, "Drain and rebalance").
//
// GET /v1/hosts/{name}/drain is served on the leader: the VMs the drain
// loop could not move, and why, come from the leader's drain loop
// (controller.DrainStatus); a leader that does not drain the host (its
// spec does not ask for it, or the loop has not seen it yet) recomputes
// them with scheduler.MigrationTargetFor: what would stop each VM from
// moving now.
//
// POST /v1/rebalance computes moves with scheduler.RebalanceFromState
// toward the cluster's placement strategy and, unless dry_run, proposes
// them as the caller (with its accessor). It needs host:read and, for the
// VMs, vm:read for a dry run or vm:power to perform (on the whole kind:
// a rebalance may move any VM); a management token has both.

// Drainer is what a Backend offers to report a drain's progress;
// *controller.Controller implements it.
type Drainer interface {
	DrainStatus(host string) (blockers map[string]string, moved int, ok bool)
}

// StrategySource is what a Backend offers to name the cluster's placement
// strategy; *controller.Controller implements it.
type StrategySource interface {
	PlacementStrategy() string
}

// DrainStatus is the answer of GET /v1/hosts/{name}/drain.
type DrainStatus struct {
	Host     string `json:"host"`
	Draining bool   `json:"draining"` // spec.unschedulable
	Migrate  bool   `json:"migrate"`  // spec.drain.migrate: the leader moves the VMs off
	// VMsTotal is VMsLeft plus the VMs that left the host since the
	// current leader began draining it.
	VMsTotal  int              `json:"vms_total"`
	VMsLeft   int              `json:"vms_left"`
	Migrating []DrainMigrating `json:"migrating"`
	Blocked   []DrainBlocked   `json:"blocked"`
}

// DrainMigrating is a VM migrating off the host.
type DrainMigrating struct {
	VM     string `json:"vm"`
	Target string `json:"target"`
	Mode   string `json:"mode"`
	State  string `json:"state"`
}

// DrainBlocked is a VM that cannot move now, and why.
type DrainBlocked struct {
	VM     string `json:"vm"`
	Reason string `json:"reason"`
}

// RebalanceRequest is the body of POST /v1/rebalance.
type RebalanceRequest struct {
	DryRun bool `json:"dry_run"`
	Max    int  `json:"max"`
}

// RebalanceMove is one move of a rebalance; Error says why the state
// machine refused it (performed rebalances only).
type RebalanceMove struct {
	scheduler.Move
	Error string `json:"error,omitempty"`
}

// RebalanceResponse answers POST /v1/rebalance.
type RebalanceResponse struct {
	Moves     []RebalanceMove `json:"moves"`
	Performed bool            `json:"performed"`
}

// MaxRebalanceMoves bounds max.
const MaxRebalanceMoves = 100

// drainStatus: GET /v1/hosts/{name}/drain.
func (a *httpAPI) drainStatus(name string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := apiQuery(r); err != nil {
			return err
		}
		if err := resource.ValidateName(name); err != nil {
			return err
		}
		return a.onLeader(w, r, nil, func() error {
			if err := a.b.ConsistentRead(r.Context()); err != nil {
				return err
			}
			st := a.b.FSM().State()
			ho, err := st.Get(nil, resource.KindHost, name)
			if err != nil {
				return err
			}
			if ho == nil {
				return &apiError{status: http.StatusNotFound, code: resource.CodeNotFound, msg: fmt.Sprintf("host %q not found", name)}
			}
			if err := a.allowObject(r, ho, resource.AccessRead); err != nil {
				return err
			}
			spec, _ := resource.HostStateOf(ho)
			out := DrainStatus{Host: name, Draining: spec.Unschedulable, Migrate: spec.Drain != nil && spec.Drain.Migrate,
				Migrating: []DrainMigrating{}, Blocked: []DrainBlocked{}}
			vms, err := st.VMsOnHost(nil, name)
			if err != nil {
				return err
			}
			sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
			var blockers map[string]string
			moved, fromLoop := 0, false
			if d, ok := a.b.(Drainer); ok {
				blockers, moved, fromLoop = d.DrainStatus(name)
			}
			for _, o := range vms {
				vspec, vs := resource.VMStateOf(o)
				if m := vs.Migration; m != nil {
					out.Migrating = append(out.Migrating, DrainMigrating{VM: o.Name, Target: m.Target, Mode: m.Mode, State: m.State})
					continue
				}
				reason := blockers[o.Name]
				if !fromLoop {
					reason = a.migrationBlocker(o.Name, vspec, vs)
				}
				if reason != "" {
					out.Blocked = append(out.Blocked, DrainBlocked{VM: o.Name, Reason: reason})
				}
			}
			out.VMsLeft = len(vms)
			out.VMsTotal = len(vms) + moved
			a.setReadHeaders(w, readParams{}, a.b.FSM().AppliedIndex())
			return writeJSON(w, http.StatusOK, out)
		})
	}
}

// migrationBlocker says why the VM could not move off its host now ("":
// it could), as the drain loop would try it: live, then restart, for a
// VM that runs; cold otherwise.
func (a *httpAPI) migrationBlocker(name string, spec *resource.VMSpec, vs *resource.VMStatus) string {
	modes := []string{""}
	if vs.Phase == resource.PhaseRunning && spec.Power == resource.PowerRunning {
		modes = []string{resource.MigrationLive, resource.MigrationRestart}
	}
	var why string
	for _, m := range modes {
		_, err := scheduler.MigrationTargetFor(a.b.FSM().State(), name, m, time.Now(), a.hostDownGrace)
		if err == nil {
			return ""
		}
		mode := m
		if mode == "" {
			mode = "cold"
		}
		if why != "" {
			why += "; "
		}
		why += mode + ": " + err.Error()
	}
	return why
}

// rebalance: POST /v1/rebalance {"dry_run":bool,"max":int}.
func (a *httpAPI) rebalance(w http.ResponseWriter, r *http.Request) error {
	if _, err := apiQuery(r); err != nil {
		return err
	}
	body, err := a.readOptionalBody(w, r)
	if err != nil {
		return err
	}
	var req RebalanceRequest
	if body != nil {
		if err := decodeBody(body, &req); err != nil {
			return err
		}
	}
	if req.Max < 0 || req.Max > MaxRebalanceMoves {
		return badArg("max", "must be between 1 and %d (got %d); omit it or give 0 for the default %d", MaxRebalanceMoves, req.Max, scheduler.DefaultRebalanceMax)
	}
	return a.onLeader(w, r, body, func() error {
		access := resource.AccessPower
		if req.DryRun {
			access = resource.AccessRead
		}
		if err := a.allow(r, resource.KindHost, resource.AccessRead, "", nil); err != nil {
			return err
		}
		if err := a.allow(r, resource.KindVM, access, "", nil); err != nil {
			return err
		}
		if err := a.b.ConsistentRead(r.Context()); err != nil {
			return err
		}
		strategy := ""
		if s, ok := a.b.(StrategySource); ok {
			strategy = s.PlacementStrategy()
		}
		moves, err := scheduler.RebalanceFromState(a.b.FSM().State(), scheduler.RebalanceOptions{Strategy: strategy, Max: req.Max})
		if err != nil {
			return err
		}
		out := RebalanceResponse{Moves: make([]RebalanceMove, 0, len(moves)), Performed: !req.DryRun}
		index := a.b.FSM().AppliedIndex()
		for _, m := range moves {
			rm := RebalanceMove{Move: m}
			if !req.DryRun {
				if res, err := a.proposeMove(r, m); err != nil {
					if isNotLeader(err) && len(out.Moves) == 0 {
						return err // nothing proposed yet: forward
					}
					rm.Error = err.Error()
				} else {
					index = max(index, res.Index)
				}
			}
			out.Moves = append(out.Moves, rm)
		}
		a.setReadHeaders(w, readParams{}, index)
		return writeJSON(w, http.StatusOK, out)
	})
}

// proposeMove proposes one rebalance move.
func (a *httpAPI) proposeMove(r *http.Request, m scheduler.Move) (*fsm.Result, error) {
	mode := ""
	if m.Mode == scheduler.MoveLive {
		mode = resource.MigrationLive
	}
	if err := a.checkMigrateBoot(m.VM, m.To); err != nil {
		return nil, err
	}
	req := &fsm.MigrateRequest{Time: time.Now().UTC(), VM: m.VM, Host: m.To, Grace: a.hostDownGrace, PhaseOnly: true, Mode: mode}
	res, err := a.propose(r.Context(), fsm.MigrateRequestType, req)
	if err == nil && res == nil {
		err = errors.New("no result from the state machine")
	}
	return res, err
}
