package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/scheduler"
)

// Draining hosts (kumoi host drain --migrate; docs/api.md, "Drain").
//
// The drain loop moves the VMs off every host whose spec has
// unschedulable and drain.migrate (log protocol 9): at most
// DrainInFlight migrations at a time per host, each to the host
// scheduler.MigrationTargetFor picks (requirements, affinity, capacity;
// the state machine checks them again, and its quotas), live when the VM
// runs and both hosts' workers take live migrations, by restart when
// only that is possible, cold when the VM does not run. Why a VM could
// not move (no target, a refusal, a failed migration) is its blocker,
// kept in memory for GET /v1/hosts/{name}/drain; a VM whose migration
// failed is tried again after a pause, up to drainMaxAttempts times in a
// leadership, then left with its blocker.

// DrainInFlight is how many migrations the drain loop keeps under way
// per host.
const DrainInFlight = 2

const (
	drainInterval    = 250 * time.Millisecond
	drainRetryAfter  = 10 * time.Second
	drainMaxAttempts = 3
)

// drainVM is what the drain loop remembers of one VM of a draining host.
type drainVM struct {
	blocker   string    // why it cannot move now ("" : none known)
	migration uint64    // the migration this loop started (its Raft index)
	target    string    // where it went
	mode      string    // how
	attempts  int       // migrations started
	next      time.Time // no new attempt before (monotonic)
}

// drainState is the drain loop's memory: host → VM → state. It lives as
// long as the controller (the loop clears it when leadership starts).
type drainState struct {
	mu    sync.Mutex
	hosts map[string]map[string]*drainVM
	moved map[string]int // host → VMs that left it while it drained
}

// DrainStatus returns, for a host this leader drains, why the VMs it
// could not move cannot move (by VM name) and how many VMs left the host
// since this leader began draining it; ok is false when this node does
// not drain the host (it is not the leader, or the host does not drain).
func (c *Controller) DrainStatus(host string) (blockers map[string]string, moved int, ok bool) {
	c.drain.mu.Lock()
	defer c.drain.mu.Unlock()
	vms, ok := c.drain.hosts[host]
	if !ok {
		return nil, 0, false
	}
	out := map[string]string{}
	for name, d := range vms {
		if d.blocker != "" {
			out[name] = d.blocker
		}
	}
	return out, c.drain.moved[host], true
}

// DrainBlockers is DrainStatus's blockers (nil: not drained here).
func (c *Controller) DrainBlockers(host string) map[string]string {
	b, _, _ := c.DrainStatus(host)
	return b
}

// PlacementStrategy is the cluster's default placement strategy
// (--placement-strategy; "" is spread): what a rebalance moves toward.
func (c *Controller) PlacementStrategy() string { return c.cfg.PlacementStrategy }

// drainLoop moves the VMs off draining hosts (above).
func (c *Controller) drainLoop(ctx context.Context) {
	c.drain.mu.Lock()
	c.drain.hosts = map[string]map[string]*drainVM{}
	c.drain.moved = map[string]int{}
	c.drain.mu.Unlock()
	defer func() {
		c.drain.mu.Lock()
		c.drain.hosts, c.drain.moved = nil, nil
		c.drain.mu.Unlock()
	}()
	t := time.NewTicker(drainInterval)
	defer t.Stop()
	warned := false
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
		draining := map[string]bool{}
		for _, h := range hosts {
			spec, err := resource.DecodeSpec[resource.HostSpec](h)
			if err != nil || !spec.Unschedulable || spec.Drain == nil || !spec.Drain.Migrate {
				continue
			}
			if err := c.checkProtocol(fsm.MigrateRequestType, &fsm.MigrateRequest{Mode: resource.MigrationLive}); err != nil {
				if !warned {
					warned = true
					c.logger.Warn("not draining hosts: migrations need log protocol 9", "host", h.Name, "error", err)
				}
				break
			}
			draining[h.Name] = true
			c.drainHost(ctx, h.Name)
		}
		c.drain.mu.Lock()
		for name := range c.drain.hosts {
			if !draining[name] {
				delete(c.drain.hosts, name)
				delete(c.drain.moved, name)
			}
		}
		c.drain.mu.Unlock()
	}
}

// drainHost starts the next migrations off one draining host.
func (c *Controller) drainHost(ctx context.Context, host string) {
	st := c.fsm.State()
	vms, err := st.VMsOnHost(nil, host)
	if err != nil {
		return
	}
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	var from *resource.HostStatus
	if ho, err := st.Get(nil, resource.KindHost, host); err == nil && ho != nil {
		from, _ = resource.DecodeStatus[resource.HostStatus](ho)
	}
	c.drain.mu.Lock()
	known := c.drain.hosts[host]
	if known == nil {
		known = map[string]*drainVM{}
		c.drain.hosts[host] = known
	}
	present := map[string]bool{}
	inFlight := 0
	type todo struct {
		name  string
		modes []string
		d     *drainVM
	}
	var next []todo
	now := time.Now()
	for _, o := range vms {
		present[o.Name] = true
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		vs, err2 := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil || err2 != nil {
			continue
		}
		d := known[o.Name]
		if d == nil {
			d = &drainVM{}
			known[o.Name] = d
		}
		if vs.Migration != nil {
			inFlight++
			d.blocker = ""
			continue
		}
		if d.migration != 0 {
			// The migration this loop started ended without moving
			// the VM: failed or aborted.
			d.blocker = fmt.Sprintf("its %s migration to %s ended without moving it", modeName(d.mode), d.target)
			if vs.Reason != "" {
				d.blocker += ": " + vs.Reason
			}
			d.migration, d.next = 0, now.Add(drainRetryAfter)
		}
		if d.attempts >= drainMaxAttempts && d.blocker != "" {
			continue // given up in this leadership; its blocker stays
		}
		if now.Before(d.next) {
			continue
		}
		var modes []string
		running := vs.Phase == resource.PhaseRunning && spec.Power == resource.PowerRunning
		switch {
		case running && from != nil:
			for _, m := range []string{resource.MigrationLive, resource.MigrationRestart} {
				if from.CanMigrate(m) {
					modes = append(modes, m)
				}
			}
			if len(modes) == 0 {
				d.blocker = fmt.Sprintf("it runs, and the worker of host %s takes part in no migration (it offers none; an older worker?)", host)
				continue
			}
		default:
			modes = []string{""}
		}
		next = append(next, todo{name: o.Name, modes: modes, d: d})
	}
	for name := range known {
		if !present[name] {
			delete(known, name)
			c.drain.moved[host]++
		}
	}
	c.drain.mu.Unlock()

	started := 0
	for _, td := range next {
		if inFlight+started >= DrainInFlight || ctx.Err() != nil {
			return
		}
		mode, target, id, err := c.drainOne(ctx, td.name, td.modes)
		c.drain.mu.Lock()
		if err != nil {
			td.d.blocker = err.Error()
			td.d.next = time.Now().Add(drainInterval * 4)
		} else {
			td.d.blocker = ""
			td.d.attempts++
			if mode != "" {
				td.d.migration, td.d.target, td.d.mode = id, target, mode
				started++
			}
			c.logger.Info("draining host: moving VM", "host", host, "vm", td.name, "to", target, "mode", modeName(mode))
		}
		c.drain.mu.Unlock()
	}
}

// drainOne moves one VM with the first of modes that finds a target.
func (c *Controller) drainOne(ctx context.Context, vm string, modes []string) (mode, target string, id uint64, err error) {
	var errs []string
	for _, mode := range modes {
		target, err := scheduler.MigrationTargetFor(c.fsm.State(), vm, mode, time.Now(), c.cfg.HostDownGrace)
		if err == nil {
			req := &fsm.MigrateRequest{Time: time.Now().UTC(), VM: vm, Host: target, Grace: c.cfg.HostDownGrace, PhaseOnly: true, Mode: mode}
			var res *fsm.Result
			if res, err = c.Propose(ctx, fsm.MigrateRequestType, req); err == nil {
				return mode, target, res.Index, nil
			}
		}
		if ctx.Err() != nil {
			return "", "", 0, ctx.Err()
		}
		errs = append(errs, fmt.Sprintf("%s: %v", modeName(mode), err))
	}
	return "", "", 0, errors.New(strings.Join(errs, "; "))
}

// modeName names a migration mode ("" is cold).
func modeName(mode string) string {
	if mode == "" {
		return "cold"
	}
	return mode
}
