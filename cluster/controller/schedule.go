package controller

import (
	"context"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/scheduler"
)

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
	exprs := resource.NewExprCache(1024)
	full := true
	interval := schedulerMinInterval
	var lastHostIdx uint64
	for {
		ws := memdb.NewWatchSet()
		ws.Add(st.AbandonCh())
		st.IndexWatch(ws, resource.KindHost)
		// A network's address freed, or a volume's host: VMs that
		// waited on them may go now.
		st.IndexWatch(ws, resource.KindNetwork)
		st.IndexWatch(ws, resource.KindVolume)
		if err := st.WatchPhase(ws, resource.PhasePending); err != nil {
			return
		}
		// A round that placed nothing (every host full, or none) backs
		// off up to a second: new VMs then only get their reason, and
		// re-reading a large pending set every 50ms would cost the
		// writes their CPU. Placing, or a host change, resets it.
		hostIdx := st.Index(resource.KindHost)
		placed := c.scheduleOnce(ctx, cache, exprs, full)
		c.schedRounds.Add(1)
		if placed > 0 || hostIdx != lastHostIdx {
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

// SchedulerRounds is how many rounds the scheduler loop has finished since
// the controller started (it runs on the leader only): a new leader has
// read the whole pending set once when it is non-zero.
func (c *Controller) SchedulerRounds() uint64 { return c.schedRounds.Load() }

// scheduleOnce plans one round and returns how many VMs it placed.
func (c *Controller) scheduleOnce(ctx context.Context, cache *scheduler.Cache, exprs *resource.ExprCache, full bool) (placed int) {
	hosts, vms, err := scheduler.FromState(c.fsm.State(), cache, full)
	if err != nil || len(vms) == 0 {
		return 0
	}
	nets, err := scheduler.NetworksFromState(c.fsm.State())
	if err != nil {
		return 0
	}
	// Affinity groups' placed members, and the projects' strategies.
	groups, err := scheduler.GroupsFromState(c.fsm.State(), vms)
	if err != nil {
		return 0
	}
	strategies, err := scheduler.ProjectStrategies(c.fsm.State(), vms)
	if err != nil {
		return 0
	}
	plan := scheduler.PlanWith(hosts, vms, scheduler.Options{
		Networks: nets, Strategy: c.cfg.PlacementStrategy, ProjectStrategy: strategies, Groups: groups, Exprs: exprs,
	})
	for len(plan.Placements)+len(plan.Unplaced) > 0 {
		chunk := fsm.PlaceRequest{Time: time.Now().UTC()}
		n := min(len(plan.Placements), fsm.MaxBatchOps)
		chunk.Placements, plan.Placements = plan.Placements[:n], plan.Placements[n:]
		m := min(len(plan.Unplaced), fsm.MaxBatchOps-n)
		chunk.Unplaced, plan.Unplaced = plan.Unplaced[:m], plan.Unplaced[m:]
		res, err := c.Propose(ctx, fsm.PlaceRequestType, &chunk)
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
