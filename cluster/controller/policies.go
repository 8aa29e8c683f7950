package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/script"
)

// Policy runner: the leader runs every stored policy (kind "policy") on the
// events it declares, one goroutine per policy, each reading the FSM's
// event buffer from the policy's checkpoint (status.last_index). Handler
// errors, limits and panics are recorded in the policy's status and never
// stop the runner, the other policies or the leader. A new leader resumes
// each policy after its last checkpoint, so delivery is at least once.

// Tuning of the policy runner.
const (
	// policyCheckpointEvery bounds how often a busy policy's status is
	// written (each write is a Raft entry).
	policyCheckpointEvery = time.Second
	// policyIdleCheckpoint: a policy that handled nothing still moves
	// its checkpoint this often, so that a new leader does not rescan (or
	// lose from its buffer) a long stretch of unrelated events.
	policyIdleCheckpoint = 30 * time.Second
	// policyPage is how many stream events are read at once.
	policyPage = 512
)

// policiesLoop (leader only) keeps one runner per policy, restarting a
// runner when its policy's spec version changes.
func (c *Controller) policiesLoop(ctx context.Context) {
	type running struct {
		version uint64
		by      string // the accessor it runs as (ACLs on)
		cancel  context.CancelFunc
		done    chan struct{}
	}
	runners := map[string]*running{}
	defer func() {
		for _, r := range runners {
			r.cancel()
			<-r.done
		}
	}()
	st := c.fsm.State()
	for ctx.Err() == nil {
		ws := memdb.NewWatchSet()
		st.IndexWatch(ws, resource.KindPolicy)
		if c.cfg.ACL {
			// A policy whose token is deleted stops (policyRights).
			st.IndexWatch(ws, fsm.EventKindACLToken)
		}
		objs, err := st.List(ws, resource.KindPolicy, nil)
		if err != nil {
			c.logger.Error("policies: cannot list", "error", err)
			objs = nil
		}
		seen := map[string]bool{}
		for _, o := range objs {
			spec, err := resource.DecodeSpec[resource.PolicySpec](o)
			if err != nil {
				continue
			}
			seen[o.Name] = true
			// A policy runs with the rights of the token that stored
			// it last: another token storing it restarts it.
			by := ""
			if c.cfg.ACL {
				by = o.ModifiedBy
				if st.ACLToken(nil, by) == nil {
					by = "(deleted) " + by
				}
			}
			if r := runners[o.Name]; r != nil && r.version == spec.Version && r.by == by {
				continue
			} else if r != nil {
				r.cancel()
				<-r.done
			}
			rctx, cancel := context.WithCancel(ctx)
			r := &running{version: spec.Version, by: by, cancel: cancel, done: make(chan struct{})}
			runners[o.Name] = r
			go func(name string) {
				defer close(r.done)
				c.runPolicy(rctx, name)
			}(o.Name)
		}
		for name, r := range runners {
			if !seen[name] {
				r.cancel()
				<-r.done
				delete(runners, name)
			}
		}
		if !st.Watch(ctx, ws) {
			return
		}
	}
}

// policyRun is one version of one policy, running on this leader.
type policyRun struct {
	c       *Controller
	name    string
	version uint64
	logger  hclog.Logger
	out     *lineBuffer

	status     resource.PolicyStatus
	dirty      bool
	lastWrite  time.Time
	lastWrote  uint64 // status.LastIndex at the last write
	pendingErr bool   // an error not yet written
	errLog     logLimiter
}

// runPolicy runs the policy's current version until ctx is done (leadership
// lost, the policy changed or was deleted). It never panics.
func (c *Controller) runPolicy(ctx context.Context, name string) {
	logger := c.logger.Named("policy").With("policy", name)
	defer func() {
		if v := recover(); v != nil {
			logger.Error("policy runner panicked; it stops until the policy changes or leadership moves", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	o, err := c.fsm.State().Get(nil, resource.KindPolicy, name)
	if err != nil || o == nil {
		return
	}
	spec, err := resource.DecodeSpec[resource.PolicySpec](o)
	if err != nil {
		return
	}
	prev, _ := resource.DecodeStatus[resource.PolicyStatus](o)
	r := &policyRun{c: c, name: name, version: spec.Version, logger: logger, out: newLineBuffer(logger), errLog: logLimiter{every: policyLogEvery}}
	r.status = resource.PolicyStatus{Version: spec.Version, Node: c.cfg.NodeID, Since: time.Now().UTC()}
	// Where to start: after the checkpoint of this same version (a new
	// leader resumes), else after the write that made this version (its
	// status still belongs to the old one, as only a run of this version
	// writes its status).
	after := o.ModifyIndex
	if prev != nil && prev.Version == spec.Version && prev.LastIndex > 0 {
		after = prev.LastIndex
		r.status.Handled, r.status.Failed = prev.Handled, prev.Failed
		r.status.RecentErrors, r.status.RecentOutput = prev.RecentErrors, prev.RecentOutput
		r.status.Missed = prev.Missed
	}
	r.status.LastIndex = after

	if spec.Disabled {
		r.status.State = resource.PolicyDisabled
		r.write(ctx, true)
		return
	}
	var cl *client.Client
	var accessor string
	if c.cfg.ACL {
		var why string
		accessor, why = c.policyRights(o)
		if why != "" {
			r.status.State, r.status.Error = resource.PolicyBroken, why
			logger.Warn("policy has no rights", "reason", why)
			r.write(ctx, true)
			return
		}
		cl, err = c.policyClientAs(accessor)
	} else {
		cl, err = c.policyClient()
	}
	if err != nil {
		r.status.State, r.status.Error = resource.PolicyBroken, "cannot reach the API: "+err.Error()
		r.write(ctx, true)
		return
	}
	env := script.Env{Client: cl, Out: r.out, MaxSteps: spec.MaxSteps, Timeout: spec.TimeoutDuration()}
	p, err := script.LoadPolicy(ctx, name, spec.Source, env)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		msg := script.TruncateText(err.Error(), script.MaxErrorText)
		r.status.State, r.status.Error = resource.PolicyBroken, msg
		logger.Warn("policy does not load", "version", spec.Version, "error", msg)
		r.write(ctx, true)
		return
	}
	r.status.State, r.status.Events = resource.PolicyActive, p.Kinds()
	logger.Info("policy running", "version", spec.Version, "events", strings.Join(p.Kinds(), ","), "after", after)
	r.write(ctx, true)

	mapper := script.NewEventMapper()
	buf := c.fsm.Events()
	for ctx.Err() == nil {
		evs, reset, floor, wait := buf.Since(after, policyPage)
		if reset {
			// The buffer no longer holds every event after our
			// checkpoint (a restart from a snapshot, or a long outage).
			r.status.Missed = fmt.Sprintf("events between index %d and %d were no longer retained and were not delivered (at %s)",
				after+1, floor, time.Now().UTC().Format(time.RFC3339))
			logger.Warn("policy missed events", "after", after, "floor", floor)
			mapper.Events(resource.Event{Type: resource.EventReset})
			after = floor
			r.status.LastIndex = after
			r.dirty, r.pendingErr = true, true
			continue
		}
		// With ACLs, a policy sees only the events its token may read.
		var id *resource.ACLIdentity
		if c.cfg.ACL {
			if e := c.fsm.State().ACLToken(nil, accessor); e != nil {
				id = c.fsm.State().ACLIdentity(e)
			}
		}
		for _, ev := range evs {
			if ctx.Err() != nil {
				return // not handled: the next leader delivers it
			}
			visible := !c.cfg.ACL || id != nil && id.AllowEvent(&ev) == nil
			if ev.Kind != resource.KindPolicy && visible { // never a policy's own writes
				for _, sev := range mapper.Events(ev) {
					if p.Wants(sev.Type) {
						r.handle(ctx, p, sev)
					}
				}
			}
			after = ev.Index
			r.status.LastIndex = after
		}
		r.write(ctx, false)
		if len(evs) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-wait:
		case <-time.After(policyCheckpointEvery):
		}
	}
}

// handle delivers one event, recording the outcome.
func (r *policyRun) handle(ctx context.Context, p *script.Policy, ev script.Event) {
	err := p.Handle(ctx, ev)
	if ctx.Err() != nil && errors.Is(err, script.ErrInterrupted) {
		return // leadership lost mid-call: the next leader redelivers it
	}
	r.status.Handled++
	r.dirty = true
	if err == nil {
		return
	}
	r.status.Failed++
	r.pendingErr = true
	// Bounded: the status goes through Raft, the log is the leader's.
	msg := script.TruncateText(err.Error(), script.MaxErrorText)
	r.errLog.log(r.logger, hclog.Warn, "policy handler failed", "event", ev.Type, "object", string(ev.Kind)+"/"+ev.Name, "index", ev.Index, "error", msg)
	r.status.RecentErrors = append(r.status.RecentErrors, resource.PolicyFailure{
		Time: time.Now().UTC(), Index: ev.Index, Event: ev.Type + " " + string(ev.Kind) + "/" + ev.Name, Message: msg,
	})
	if n := len(r.status.RecentErrors); n > resource.MaxPolicyRecentErrors {
		r.status.RecentErrors = r.status.RecentErrors[n-resource.MaxPolicyRecentErrors:]
	}
}

// write stores the run's status through Raft when it is due: now, after
// an error, at most every policyCheckpointEvery while busy, and every
// policyIdleCheckpoint while the checkpoint only moves.
func (r *policyRun) write(ctx context.Context, now bool) {
	if lines := r.out.take(); len(lines) > 0 {
		r.status.RecentOutput = append(r.status.RecentOutput, lines...)
		if n := len(r.status.RecentOutput); n > resource.MaxPolicyRecentOutput {
			r.status.RecentOutput = r.status.RecentOutput[n-resource.MaxPolicyRecentOutput:]
		}
		r.dirty = true
	}
	since := time.Since(r.lastWrite)
	switch {
	case now:
	case (r.dirty || r.pendingErr) && since >= policyCheckpointEvery:
	case r.status.LastIndex != r.lastWrote && since >= policyIdleCheckpoint:
	default:
		return
	}
	raw, err := json.Marshal(&r.status)
	if err != nil {
		return
	}
	// The policy may have changed meanwhile: write only to the version
	// this run loaded (a stale write would clobber the new run's status).
	o, err := r.c.fsm.State().Get(nil, resource.KindPolicy, r.name)
	if err != nil || o == nil {
		return
	}
	if spec, err := resource.DecodeSpec[resource.PolicySpec](o); err != nil || spec.Version != r.version {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = r.c.Propose(wctx, fsm.StatusRequestType, &fsm.StatusRequest{
		Time: time.Now().UTC(), Kind: resource.KindPolicy, Name: r.name, CAS: o.ModifyIndex, Status: raw,
	})
	if err == nil {
		r.dirty, r.pendingErr = false, false
		r.lastWrite, r.lastWrote = time.Now(), r.status.LastIndex
		return
	}
	if ctx.Err() == nil && !errors.Is(err, fsm.ErrCASMismatch) {
		r.logger.Debug("cannot write policy status", "error", err)
	}
}

// policyClient is the API client policies use: this controller's own API
// (the leader's, so writes are not forwarded).
func (c *Controller) policyClient() (*client.Client, error) {
	c.policyClientOnce.Do(func() {
		c.policyCl, c.policyClErr = client.New(client.Config{Addrs: []string{c.cfg.APIURL(c.cfg.APIAddr())}, TLS: c.PeerTLSConfig()})
	})
	return c.policyCl, c.policyClErr
}

// lineBuffer collects a policy's print() output: each line is logged and
// kept until take.
type lineBuffer struct {
	logger hclog.Logger
	limit  logLimiter // policyOutputBurst logged lines per policyLogEvery
	mu     sync.Mutex
	part   []byte
	lines  []string
}

func newLineBuffer(logger hclog.Logger) *lineBuffer {
	return &lineBuffer{logger: logger, limit: logLimiter{every: policyLogEvery, burst: policyOutputBurst}}
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.part = append(b.part, p...)
	for {
		i := bytes.IndexByte(b.part, '\n')
		if i < 0 {
			break
		}
		line := string(b.part[:i])
		b.part = b.part[i+1:]
		if len(line) > resource.MaxPolicyOutputLineLen {
			line = line[:resource.MaxPolicyOutputLineLen] + "…"
		}
		b.limit.log(b.logger, hclog.Info, "policy output", "line", line)
		b.lines = append(b.lines, line)
		if n := len(b.lines); n > resource.MaxPolicyRecentOutput {
			b.lines = b.lines[n-resource.MaxPolicyRecentOutput:]
		}
	}
	if len(b.part) > resource.MaxPolicyOutputLineLen {
		b.part = b.part[:0] // a huge line without a newline: drop it
	}
	return len(p), nil
}

func (b *lineBuffer) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.lines
	b.lines = nil
	return out
}
