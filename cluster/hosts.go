package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/scheduler"
)

// workers returns every worker ever seen, with its gossip status.
func (t *memberTable) workers() []member {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []member
	for _, m := range t.members {
		if m.meta.Role == RoleWorker {
			out = append(out, *m)
		}
	}
	return out
}

// hostsLoop turns gossip membership into Host objects through Raft: a
// worker that is alive is ready, one that failed is down, one that left is
// left. Only the leader writes; gossip only feeds it.
func (c *Controller) hostsLoop(ctx context.Context) {
	leaderSince := time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		wait := c.members.waitCh()
		// A new leader learns the whole pool in its first push-pull;
		// until then it does not declare unknown hosts down.
		c.syncHosts(ctx, time.Since(leaderSince) > 5*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-wait:
		case <-t.C:
		}
	}
}

func (c *Controller) syncHosts(ctx context.Context, markUnknown bool) {
	st := c.fsm.State()
	seen := map[string]bool{}
	for _, m := range c.members.workers() {
		seen[m.meta.ID] = true
		var wm workerGossipMeta
		_ = json.Unmarshal(m.raw, &wm)
		want := fsm.HostStateRequest{
			Name: m.meta.ID, State: resource.HostReady, Address: m.addr, Driver: wm.Driver,
			Capacity: resource.Resources{CPUs: wm.CPUs, MemoryMiB: wm.MemoryMiB},
			Labels:   wm.Labels,
		}
		switch m.status {
		case "alive", "suspect":
			if !wm.Ready {
				// A (re)joining worker first removes the domains that
				// are no longer its own; until then it takes nothing.
				if cur, _ := st.Get(nil, resource.KindHost, want.Name); cur == nil {
					continue
				}
				want.State, want.Reason = resource.HostDown, "the worker is reconciling after joining"
			} else if cur, _ := st.Get(nil, resource.KindHost, want.Name); cur != nil {
				if spec, err := resource.DecodeSpec[resource.HostSpec](cur); err == nil && spec.Unschedulable {
					want.State, want.Reason = resource.HostDraining, "drained: takes no new VMs (kumoi host enable "+want.Name+")"
				}
			}
		case "dead":
			want.State, want.Reason = resource.HostDown, "the worker stopped answering gossip probes"
		case "left":
			want.State, want.Reason = resource.HostLeft, "the worker left the pool"
		}
		c.proposeHostState(ctx, st, want)
	}
	if !markUnknown {
		return
	}
	hosts, err := st.List(nil, resource.KindHost, nil)
	if err != nil {
		return
	}
	for _, h := range hosts {
		if seen[h.Name] {
			continue
		}
		hs, err := resource.DecodeStatus[resource.HostStatus](h)
		if err != nil || hs.State != resource.HostReady {
			continue
		}
		want := fsm.HostStateRequest{Name: h.Name, State: resource.HostDown, Address: hs.Address,
			Capacity: hs.Capacity, Driver: hs.Driver, Reason: "the worker is not in the gossip pool"}
		c.proposeHostState(ctx, st, want)
	}
}

// proposeHostState writes want unless the host already looks like that.
func (c *Controller) proposeHostState(ctx context.Context, st *fsm.Store, want fsm.HostStateRequest) {
	if cur, _ := st.Get(nil, resource.KindHost, want.Name); cur != nil {
		hs, err := resource.DecodeStatus[resource.HostStatus](cur)
		if err == nil && hs.State == want.State && hs.Address == want.Address && hs.Capacity == want.Capacity &&
			hs.Driver == want.Driver && hs.Reason == want.Reason {
			return
		}
	} else if want.State != resource.HostReady {
		return // never create a host just to say it is gone
	}
	want.Time = time.Now().UTC()
	want.ID = uuid.NewString()
	res, err := c.Apply(ctx, fsm.HostStateRequestType, &want)
	if err == nil && res.Err != nil {
		err = res.Err
	}
	if err != nil {
		if ctx.Err() == nil {
			c.logger.Warn("could not record host state", "host", want.Name, "state", want.State, "error", err)
		}
		return
	}
	c.logger.Info("host state", "host", want.Name, "state", want.State, "reason", want.Reason)
}

// evacuateLoop moves the VMs off hosts that have been down for longer than
// the host-down grace: ha=restart VMs go back to pending (and the scheduler
// places them elsewhere), the others become lost. The FSM re-checks the
// grace against the host's status.since, so a wrong clock here cannot
// evacuate early by more than the controllers' clock skew.
func (c *Controller) evacuateLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hosts, err := c.fsm.State().List(nil, resource.KindHost, nil)
		if err != nil {
			continue
		}
		for _, h := range hosts {
			hs, err := resource.DecodeStatus[resource.HostStatus](h)
			if err != nil || (hs.State != resource.HostDown && hs.State != resource.HostLeft) {
				continue
			}
			if time.Since(hs.Since) < c.cfg.HostDownGrace || !c.needsEvacuation(h.Name) {
				continue
			}
			req := fsm.EvacuateRequest{Time: time.Now().UTC(), Host: h.Name, Grace: c.cfg.HostDownGrace,
				Reason: fmt.Sprintf("host %s is %s", h.Name, hs.State)}
			res, err := c.Apply(ctx, fsm.EvacuateRequestType, &req)
			if err == nil && res.Err != nil {
				err = res.Err
			}
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, fsm.ErrWrongPhase) {
					c.logger.Warn("evacuation failed", "host", h.Name, "error", err)
				}
				continue
			}
			c.logger.Info("evacuated host", "host", h.Name, "vms", len(res.Objects))
		}
	}
}

// needsEvacuation: some VM on host is to be restarted elsewhere or is not
// yet marked lost.
func (c *Controller) needsEvacuation(host string) bool {
	vms, err := c.fsm.State().VMsOnHost(nil, host)
	if err != nil {
		return false
	}
	for _, o := range vms {
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		st, err2 := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil || err2 != nil {
			continue
		}
		if spec.HA == resource.HARestart || st.Phase != resource.PhaseLost {
			return true
		}
	}
	return false
}

// schedulerLoop places pending VMs on ready hosts whenever either changes:
// it watches the set of pending VMs and the hosts (not every VM write:
// workers' status reports do not wake it), plans at most every
// schedulerMinInterval so that a burst of creates is placed in a few large
// plans, and re-plans every schedulerRetryInterval in case a plan failed.
func (c *Controller) schedulerLoop(ctx context.Context) {
	const (
		schedulerMinInterval   = 50 * time.Millisecond
		schedulerRetryInterval = 5 * time.Second
	)
	st := c.fsm.State()
	cache := scheduler.NewCache()
	full := true
	interval := schedulerMinInterval
	var lastHostIdx uint64
	for {
		ws := memdb.NewWatchSet()
		ws.Add(st.AbandonCh())
		st.IndexWatch(ws, resource.KindHost)
		if err := st.WatchPhase(ws, resource.PhasePending); err != nil {
			return
		}
		// A round that placed nothing (every host full, or none) backs
		// off up to a second: new VMs then only get their reason, and
		// re-reading a large pending set every 50ms would cost the
		// writes their CPU. Placing, or a host change, resets it.
		hostIdx := st.Index(resource.KindHost)
		if c.scheduleOnce(ctx, cache, full) > 0 || hostIdx != lastHostIdx {
			interval = schedulerMinInterval
		} else {
			interval = min(2*interval, time.Second)
		}
		lastHostIdx = hostIdx
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		wctx, cancel := context.WithTimeout(ctx, schedulerRetryInterval)
		full = ws.WatchCtx(wctx) != nil // the periodic round re-plans everything
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// scheduleOnce plans one round and returns how many VMs it placed.
func (c *Controller) scheduleOnce(ctx context.Context, cache *scheduler.Cache, full bool) (placed int) {
	hosts, vms, err := scheduler.FromState(c.fsm.State(), cache, full)
	if err != nil || len(vms) == 0 {
		return 0
	}
	plan := scheduler.Plan(hosts, vms)
	for len(plan.Placements)+len(plan.Unplaced) > 0 {
		chunk := fsm.PlaceRequest{Time: time.Now().UTC()}
		n := min(len(plan.Placements), fsm.MaxBatchOps)
		chunk.Placements, plan.Placements = plan.Placements[:n], plan.Placements[n:]
		m := min(len(plan.Unplaced), fsm.MaxBatchOps-n)
		chunk.Unplaced, plan.Unplaced = plan.Unplaced[:m], plan.Unplaced[m:]
		res, err := c.Apply(ctx, fsm.PlaceRequestType, &chunk)
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Warn("placement plan failed", "error", err)
			}
			return
		}
		ok := 0
		for i, e := range res.ItemErrors {
			if e == nil {
				ok++
			} else {
				c.logger.Debug("placement rejected at apply time", "vm", chunk.Placements[i].VM, "host", chunk.Placements[i].Host, "error", e)
			}
		}
		if ok > 0 {
			c.logger.Debug("placed VMs", "placed", ok, "rejected", len(chunk.Placements)-ok)
		}
		placed += ok
	}
	return placed
}
