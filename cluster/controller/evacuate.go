package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

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
			res, err := c.Propose(ctx, fsm.EvacuateRequestType, &req)
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
