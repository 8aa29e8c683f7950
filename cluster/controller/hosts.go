package controller

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// hostsLoop turns gossip membership into Host objects through Raft: a
// worker that is alive is ready, one that failed is down, one that left is
// left. Only the leader writes; gossip only feeds it.
func (c *Controller) hostsLoop(ctx context.Context) {
	leaderSince := time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		wait := c.members.Changed()
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
	for _, m := range c.members.Workers() {
		seen[m.Meta.ID] = true
		want := fsm.HostStateRequest{
			Name: m.Meta.ID, State: resource.HostReady, Address: m.Addr, Driver: m.Meta.Driver,
			Capacity: resource.Resources{CPUs: m.Meta.CPUs, MemoryMiB: m.Meta.MemoryMiB},
			Labels:   m.Meta.Labels,
			// The worker's domains of another cluster, left alone.
			ForeignDomains: foreignNames(m.Meta.Foreign), ForeignDomainCount: max(m.Meta.ForeignCount, len(foreignNames(m.Meta.Foreign))),
		}
		switch m.Status {
		case membership.StatusAlive, membership.StatusSuspect:
			if !m.Meta.Ready {
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
		case membership.StatusDead:
			want.State, want.Reason = resource.HostDown, "the worker stopped answering gossip probes"
		case membership.StatusLeft:
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
			Capacity: hs.Capacity, Driver: hs.Driver, Reason: "the worker is not in the gossip pool",
			ForeignDomains: hs.ForeignDomains, ForeignDomainCount: hs.ForeignDomainCount}
		c.proposeHostState(ctx, st, want)
	}
}

// foreignNames is a worker's advertised list of foreign domains as the
// host status may hold it (at most resource.MaxForeignDomains names; gossip
// metadata from a misbehaving agent is not trusted to be small).
func foreignNames(names []string) []string {
	var out []string
	for _, n := range names {
		if len(out) == resource.MaxForeignDomains {
			break
		}
		if n != "" && len(n) <= 253 {
			out = append(out, n)
		}
	}
	return out
}

// proposeHostState writes want unless the host already looks like that.
func (c *Controller) proposeHostState(ctx context.Context, st *fsm.Store, want fsm.HostStateRequest) {
	if (len(want.ForeignDomains) > 0 || want.ForeignDomainCount > 0) && c.checkProtocol(fsm.HostStateRequestType, &want) != nil {
		// Some controller cannot apply the foreign-domain fields yet (a
		// rolling upgrade): record the host's state without them.
		want.ForeignDomains, want.ForeignDomainCount = nil, 0
	}
	if cur, _ := st.Get(nil, resource.KindHost, want.Name); cur != nil {
		hs, err := resource.DecodeStatus[resource.HostStatus](cur)
		if err == nil && hs.State == want.State && hs.Address == want.Address && hs.Capacity == want.Capacity &&
			hs.Driver == want.Driver && hs.Reason == want.Reason &&
			slices.Equal(hs.ForeignDomains, want.ForeignDomains) && hs.ForeignDomainCount == want.ForeignDomainCount {
			return
		}
	} else if want.State != resource.HostReady {
		return // never create a host just to say it is gone
	}
	want.Time = time.Now().UTC()
	want.ID = uuid.NewString()
	if _, err := c.Propose(ctx, fsm.HostStateRequestType, &want); err != nil {
		if ctx.Err() == nil {
			c.logger.Warn("could not record host state", "host", want.Name, "state", want.State, "error", err)
		}
		return
	}
	c.logger.Info("host state", "host", want.Name, "state", want.State, "reason", want.Reason)
}
