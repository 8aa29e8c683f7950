package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// downSeen is when this leader first saw a host in its current down or
// left period: a monotonic time of this process, never compared with
// another machine's clock.
type downSeen struct {
	state      string
	stateIndex uint64
	since      time.Time // status.since, which names the period before protocol 5
	at         time.Time // time.Now() (monotonic) when first seen
	warned     bool      // the fence-after misconfiguration was logged
}

// evacuateLoop moves the VMs off hosts that this leader has seen down (or
// left) for at least the host-down grace: ha=restart VMs go back to
// pending (and the scheduler places them elsewhere), the others become
// lost. The grace is measured on this process's monotonic clock from when
// it first saw the host's current down period, and starts again at every
// change of leader (a new leader waits a full grace: conservative).
//
// With every server at protocol 5 the evacuation carries the period
// (status.state_index) and the measured duration, and the state machine
// refuses it unless that period is still current, the measure reaches
// the published grace and the worker's published fence-after is below
// it. With --fence-command the host is fenced first (fence.go) and the
// evacuation requires that the command succeeded for the period. Before
// protocol 5 the older entry (the grace against status.since) is proposed
// once the monotonic measure has passed too.
func (c *Controller) evacuateLoop(ctx context.Context) {
	// The loop wakes when a host changes (so that a down period is seen,
	// and its grace starts, when it is applied here), when the first
	// grace runs out, and at least every evacuatePoll (retries: a fence
	// command, a failed proposal).
	//
	// A round reads every host, and host objects change with every
	// placement (their allocation), so rounds are at least
	// evacuateMinInterval apart: a down period's grace starts at most that
	// late.
	const evacuatePoll = 250 * time.Millisecond
	const evacuateMinInterval = 50 * time.Millisecond
	st := c.fsm.State()
	seen := map[string]*downSeen{}
	fencer := &fencer{c: c, hosts: map[string]*fenceRun{}}
	defer fencer.wait()
	for {
		round := time.Now()
		ws := memdb.NewWatchSet()
		ws.Add(st.AbandonCh())
		st.IndexWatch(ws, resource.KindHost)
		wait := evacuatePoll
		hosts, err := st.List(nil, resource.KindHost, nil)
		present := map[string]bool{}
		for _, h := range hosts {
			present[h.Name] = true
			hs, err := resource.DecodeStatus[resource.HostStatus](h)
			if err != nil || (hs.State != resource.HostDown && hs.State != resource.HostLeft) {
				delete(seen, h.Name)
				continue
			}
			d := seen[h.Name]
			if d == nil || d.state != hs.State || d.stateIndex != hs.StateIndex || !d.since.Equal(hs.Since) {
				d = &downSeen{state: hs.State, stateIndex: hs.StateIndex, since: hs.Since, at: time.Now()}
				seen[h.Name] = d
			}
			c.evacuateHost(ctx, h, hs, d, fencer)
			if left := c.downGrace(hs) - time.Since(d.at); left > 0 {
				wait = min(wait, left)
			}
		}
		for name := range seen {
			if !present[name] && err == nil {
				delete(seen, name)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		_ = ws.WatchCtx(wctx)
		cancel()
		if rest := evacuateMinInterval - time.Since(round); rest > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(rest):
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// downGrace is how long this leader waits before it evacuates a down
// host: its own grace, or the longer one the host's status publishes.
func (c *Controller) downGrace(hs *resource.HostStatus) time.Duration {
	return max(c.cfg.HostDownGrace, time.Duration(hs.DownGraceMS)*time.Millisecond)
}

// evacuateHost evacuates (or first fences) one down or left host if this
// leader has seen it so for the grace.
func (c *Controller) evacuateHost(ctx context.Context, h *resource.Object, hs *resource.HostStatus, d *downSeen, fencer *fencer) {
	grace := c.downGrace(hs)
	downFor := time.Since(d.at)
	if downFor < grace || !c.needsEvacuation(h.Name) {
		return
	}
	req := fsm.EvacuateRequest{Time: time.Now().UTC(), Host: h.Name, Grace: c.cfg.HostDownGrace,
		Reason: fmt.Sprintf("host %s is %s", h.Name, hs.State)}
	v5 := c.checkProtocol(fsm.EvacuateRequestType, &fsm.EvacuateRequest{StateIndex: 1}) == nil
	switch {
	case v5 && (hs.StateIndex == 0 || hs.DownGraceMS == 0):
		return // the hosts loop has not written the host in the new format yet
	case hs.FenceAfterMS > 0 && hs.FenceAfterMS >= grace.Milliseconds():
		if !d.warned {
			d.warned = true
			c.logger.Error("not evacuating a down host: "+fenceAfterNote(hs.FenceAfterMS, grace.Milliseconds()),
				"host", h.Name, "state", hs.State, "fence_after", time.Duration(hs.FenceAfterMS)*time.Millisecond, "host_down_grace", grace)
		}
		return
	case c.cfg.FenceCommand != "" && !v5:
		if !d.warned {
			d.warned = true
			c.logger.Warn("not evacuating a down host: recording its fencing needs log protocol 5, which some controller does not speak yet; upgrade it (docs/upgrade.md)",
				"host", h.Name, "state", hs.State)
		}
		return
	case c.cfg.FenceCommand != "" && !hs.Fence.Succeeded(hs.StateIndex):
		fencer.ensure(ctx, h, hs)
		return
	}
	if v5 {
		req.StateIndex, req.DownForMS, req.FenceRequired = hs.StateIndex, downFor.Milliseconds(), c.cfg.FenceCommand != ""
		if req.FenceRequired {
			req.Reason += " and was fenced"
		}
	}
	res, err := c.Propose(ctx, fsm.EvacuateRequestType, &req)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, fsm.ErrWrongPhase) {
			c.logger.Warn("evacuation failed", "host", h.Name, "error", err)
		} else if ctx.Err() == nil {
			c.logger.Debug("evacuation refused", "host", h.Name, "error", err)
		}
		return
	}
	c.metrics.evacuations.Inc()
	c.metrics.evacuated.Add(float64(len(res.Objects)))
	c.logger.Info("evacuated host", "host", h.Name, "vms", len(res.Objects), "down_for", downFor, "state_index", req.StateIndex, "fenced", req.FenceRequired)
}

// needsEvacuation: some VM on host is to be restarted elsewhere or is not
// yet marked lost.
func (c *Controller) needsEvacuation(host string) bool {
	// A migration to the host ends only with its evacuation.
	if in, err := c.fsm.State().VMsMigratingTo(nil, host); err == nil && len(in) > 0 {
		return true
	}
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

// fenceRun is the fencing of one host by this leader.
type fenceRun struct {
	stateIndex uint64
	running    bool
	attempts   int
	next       time.Time // no new attempt before (monotonic)
}

// fencer runs the controllers' --fence-command for down hosts, one run at
// a time per host, and records each run through Raft. It lives as long as
// one leadership (the evacuate loop).
type fencer struct {
	c     *Controller
	mu    sync.Mutex
	hosts map[string]*fenceRun
	wg    sync.WaitGroup
}

// wait waits for the runs in flight (their context is the loop's, so
// they are killed when leadership ends).
func (f *fencer) wait() { f.wg.Wait() }

// ensure starts a run of the fence command for the host's current down
// period unless one runs or the backoff after a failure has not passed.
func (f *fencer) ensure(ctx context.Context, h *resource.Object, hs *resource.HostStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.hosts[h.Name]
	if r != nil && r.running {
		return
	}
	if r == nil || r.stateIndex != hs.StateIndex {
		r = &fenceRun{stateIndex: hs.StateIndex}
		if hs.Fence != nil && hs.Fence.StateIndex == hs.StateIndex {
			r.attempts = hs.Fence.Attempts // a previous leader's attempts count
		}
		f.hosts[h.Name] = r
	}
	if time.Now().Before(r.next) {
		return
	}
	r.running = true
	r.attempts++
	attempt := r.attempts
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		ok := f.c.fenceHost(ctx, h, hs.StateIndex, attempt, f.backoff(attempt))
		f.mu.Lock()
		defer f.mu.Unlock()
		r.running = false
		if !ok {
			r.next = time.Now().Add(f.backoff(attempt))
		}
	}()
}

// backoff is the wait after failed attempt n: FenceRetryMin doubling up to
// FenceRetryMax.
func (f *fencer) backoff(n int) time.Duration {
	d := f.c.cfg.FenceRetryMin
	for i := 1; i < n && d < f.c.cfg.FenceRetryMax; i++ {
		d *= 2
	}
	return min(d, f.c.cfg.FenceRetryMax)
}
