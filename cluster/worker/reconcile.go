package worker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/fenceguard"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// reconcileLoop: wait for a change (assignments, a driver event, a tick,
// a finished shutdown), then converge.
func (w *Worker) reconcileLoop(ctx context.Context) {
	events := w.drv.Events()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	changes := make(chan uint64, 1)
	// The watcher keeps a blocking query open on this host's VMs; a short
	// wait keeps quorum contact fresh for fencing.
	go w.watchAssignments(ctx, changes)
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case _, ok := <-events:
			if !ok {
				events = nil
			}
		case <-tick.C:
		case <-w.kick:
		}
		w.converge(ctx)
	}
}

// watchAssignments sends the index of every change of the VMs placed on
// this host (a blocking query that waits at most a third of fence-after).
func (w *Worker) watchAssignments(ctx context.Context, changes chan<- uint64) {
	var index uint64
	for ctx.Err() == nil {
		c := w.client()
		if c == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		_, meta, err := c.List(ctx, resource.KindVM, &client.QueryOptions{Host: w.cfg.NodeID, WaitIndex: index, WaitTime: w.cfg.FenceAfter / 3})
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if meta.Index != index {
			index = meta.Index
			select {
			case changes <- index:
			default:
			}
		}
	}
}

// errNoControllers: gossip shows no alive controller to ask.
var errNoControllers = errors.New("no controller is alive in the gossip pool")

// desired is what one pass read from the controllers.
type desired struct {
	host      *resource.HostStatus // nil: no host object yet (or undecodable)
	hostIndex uint64               // the host object's modify index
	hostObj   *resource.Object     // the host object (nil: none)
	vms       []*resource.Object   // the VMs placed on this host
}

// converge is one pass: read what the controllers want, fence if they
// cannot be reached or say this host is gone, remove the domains that are
// no longer this host's, converge every VM placed here, say ready after the
// first pass, and report what changed.
func (w *Worker) converge(ctx context.Context) {
	c := w.client()
	start, proof := time.Now(), fenceguard.Now()
	want, err := w.readDesired(ctx, c)
	if err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) && (ae.StatusCode == 401 || ae.StatusCode == 403) && ae.Message != w.authErr {
			// Said once per refusal: a worker whose token is refused
			// reads nothing, and fences its VMs as if cut off.
			w.authErr = ae.Message
			w.logger.Error("the API refused this worker's token; give it a node token for this host (--token or KUMOI_TOKEN, docs/security.md)", "error", err)
		}
		// No linearizable read: no quorum contact. The guard hears that
		// the worker lives, with no proof.
		w.renewGuard(0)
		if !w.lastContact.IsZero() && time.Since(w.lastContact) > w.cfg.FenceAfter && !w.fenced {
			w.logger.Warn("no controller quorum for longer than fence-after: stopping every Kumoi VM on this host", "fence_after", w.cfg.FenceAfter, "error", err)
			w.fence(ctx)
		}
		return
	}
	w.lastContact, w.passProof = start, proof
	if w.fenced {
		w.logger.Info("controller quorum reachable again; resuming reconciliation")
		w.fenced = false
	}
	hs := want.host
	// Starting a domain needs the host ready (or draining) in this pass,
	// and a fence guard (if any) that holds this proof of it: a domain
	// never runs unguarded.
	w.mayStart = hs != nil && (hs.State == resource.HostReady || hs.State == resource.HostDraining)
	if w.mayStart {
		w.mayStart = w.renewGuard(proof)
	} else {
		w.renewGuard(0)
	}
	if w.ready && hs != nil && (hs.State == resource.HostReady || hs.State == resource.HostDraining) {
		// Ready since this worker said so (a restarted worker's first
		// reads may still show the host ready from before the restart,
		// and the controllers then mark it down until it has reconciled:
		// that is no reason to fence).
		w.readyIndex = max(w.readyIndex, want.hostIndex)
	}
	// Gone after a read that showed it ready: compared by Raft index (the
	// host object changed after that read), never by the leader's clock
	// against this host's.
	if hs != nil && w.readyIndex != 0 && (hs.State == resource.HostDown || hs.State == resource.HostLeft) && want.hostIndex > w.readyIndex {
		// The controllers marked this host gone after it was ready: its
		// VMs may be restarted elsewhere once the grace ends. Stop them
		// here first, and start nothing until it is ready again.
		if !w.fenced {
			w.logger.Warn("the controllers marked this host "+hs.State+": stopping every Kumoi VM on it", "reason", hs.Reason)
			w.fence(ctx)
		}
		return
	}
	doms, err := w.drv.List(ctx)
	if err != nil {
		w.logger.Warn("cannot list domains", "error", err)
		return
	}
	w.loadGuardFence() // after the listing: see loadGuardFence
	w.noteForeign(ctx, doms)
	w.forgetMigrations(ctx, want.vms)
	staleGone := w.removeStale(ctx, doms, want.vms)
	// Networks and volumes before the VMs: their domains are defined on
	// them.
	w.res = w.readResources(ctx, c, want.hostObj, want.vms)
	w.convergeResources(ctx, w.res, want.vms, staleGone)
	reports := w.convergeVMs(ctx, doms, want.vms)
	if !w.ready {
		w.ready = true
		if err := w.advertise(ctx, true); err != nil {
			w.logger.Warn("cannot advertise readiness", "error", err)
		} else {
			w.logger.Info("reconciled; host is ready")
		}
	}
	rctx, cancel := w.fenceBudget(ctx)
	defer cancel()
	w.sendReports(rctx, c, reports, w.res.reports)
	w.sendMigrationEvents(rctx, c)
}

// readDesired reads the host, then its VMs (both linearizable): a VM is
// started only if the host was ready before the assignments were read, and
// a host that is ready cannot be evacuated (the FSM checks), so no VM
// handed to another host is started here. An error means no quorum
// contact.
func (w *Worker) readDesired(ctx context.Context, c *client.Client) (desired, error) {
	var d desired
	if c == nil {
		return d, errNoControllers
	}
	rctx, cancel := context.WithTimeout(ctx, w.cfg.FenceAfter/2)
	defer cancel()
	host, _, err := c.Get(rctx, resource.KindHost, w.cfg.NodeID, nil)
	if err != nil && !client.IsNotFound(err) {
		return d, err
	}
	if err == nil {
		if hs, derr := resource.DecodeStatus[resource.HostStatus](host); derr == nil {
			d.host, d.hostIndex, d.hostObj = hs, host.ModifyIndex, host
		}
	}
	if d.vms, _, err = c.List(rctx, resource.KindVM, &client.QueryOptions{Host: w.cfg.NodeID}); err != nil {
		return d, err
	}
	return d, nil
}

// removeStale destroys and undefines the Kumoi domains (of this worker's
// cluster) that are no longer this host's, before anything is started. The controllers freed their
// reservation when they were deleted or moved and may have placed other
// VMs in it (the chaos harness caught a host over capacity when starts
// came first). If one cannot be removed, nothing is started this pass (and
// it returns false).
func (w *Worker) removeStale(ctx context.Context, doms []hypervisor.DomainInfo, vms []*resource.Object) bool {
	mine, ok := map[string]bool{}, true
	for _, o := range vms {
		if st, err := resource.DecodeStatus[resource.VMStatus](o); err == nil && (st.Host == w.cfg.NodeID || w.migratingTo(st)) {
			// A VM migrating here: its domain is prepared or arriving.
			mine[hypervisor.DomainName(o.Name)] = true
		}
	}
	for _, d := range doms {
		if !d.Kumoi || mine[d.Name] || w.isForeign(d) {
			continue
		}
		w.logger.Info("destroying a domain that is no longer assigned to this host", "domain", d.Name, "epoch", d.Epoch)
		if !w.removeDomain(ctx, d) {
			w.mayStart = false
			ok = false
		}
	}
	return ok
}

// convergeVMs converges every VM placed here and returns the reports that
// changed.
func (w *Worker) convergeVMs(ctx context.Context, doms []hypervisor.DomainInfo, vms []*resource.Object) []resource.VMReport {
	byName := map[string]hypervisor.DomainInfo{}
	for _, d := range doms {
		byName[d.Name] = d
	}
	var reports []resource.VMReport
	for vm := range w.waiting {
		if !slices.ContainsFunc(vms, func(o *resource.Object) bool { return o.Name == vm }) {
			delete(w.waiting, vm)
		}
	}
	for key := range w.unsure {
		if vm, ok := strings.CutPrefix(key, resKey(resource.KindVM, "")); ok &&
			!slices.ContainsFunc(vms, func(o *resource.Object) bool { return o.Name == vm }) {
			delete(w.unsure, key) // no longer this host's to report
		}
	}
	for _, o := range vms {
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		st, err2 := resource.DecodeStatus[resource.VMStatus](o)
		switch {
		case err != nil || err2 != nil:
			continue
		case w.migratingTo(st):
			w.targetMigration(ctx, o, spec, st)
			continue
		case st.Host != w.cfg.NodeID:
			continue
		case w.migratingFrom(st):
			// Not converged while it migrates (its domain pauses, then
			// leaves), and not reported: a report that it is not
			// running would end the migration.
			w.sourceMigration(ctx, o, st)
			continue
		case w.outgoing(o.Name):
			continue // a cancelled migration is still ending
		}
		d, exists := byName[hypervisor.DomainName(o.Name)]
		if r, ok := w.convergeVM(ctx, o, spec, st, d, exists); ok {
			reports = append(reports, r)
		}
	}
	return reports
}

// maxResourceReports bounds the resource states in one report request
// (the API takes at most 4096).
const maxResourceReports = 1024

// sendReports reports to the controllers, in one request, the VM reports
// and the network, image and volume states that changed, and remembers
// what they recorded (a report refused, e.g. for a stale epoch, is not
// remembered).
func (w *Worker) sendReports(ctx context.Context, c *client.Client, reports []resource.VMReport, resources []resource.ResourceReport) {
	if len(reports) == 0 && len(resources) == 0 {
		return
	}
	// A bounded request: the states left out are sent in the next
	// passes (they are not recorded until sent).
	resources = resources[:min(len(resources), maxResourceReports)]
	res, delivered, err := w.report(ctx, c, resource.ReportRequest{Reports: reports, Resources: resources})
	if err != nil {
		w.logger.Debug("report failed", "error", err)
		return
	}
	for i, r := range res.Results {
		if i >= len(reports) {
			break
		}
		if r.Error != nil {
			w.logger.Debug("report refused", "vm", reports[i].VM, "phase", reports[i].Phase, "error", r.Error.Message)
			continue
		}
		w.logger.Debug("reported", "vm", reports[i].VM, "phase", reports[i].Phase, "reason", reports[i].Reason, "set_power", reports[i].SetPower, "epoch", reports[i].Epoch)
		w.reported[reports[i].VM] = reports[i]
	}
	w.recordResources(resources, res.ResourceResults, delivered)
}

// fenceBudget bounds a call of the pass that talks to the controllers
// (its reports) by the pass's fence deadline: the start of its last
// successful read plus fence-after (monotonic). A pass blocked on
// controllers that are cut off would otherwise keep this host's domains
// running past that deadline, since fencing is decided when a pass
// begins (the chaos harness caught a report blocking for 7 s: docs/jepsen.md,
// found so far 7). What a cancelled report carried is sent again next pass.
func (w *Worker) fenceBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	if w.lastContact.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, w.lastContact.Add(w.cfg.FenceAfter))
}

// proofFresh: the pass's reads (its proof that the host is ready) are
// younger than fence-after, so a guard holding that proof has not fenced.
// A worker paused in the middle of a pass for longer than that starts
// nothing on the strength of reads from before the pause.
func (w *Worker) proofFresh() bool {
	return fenceguard.Now()-w.passProof < w.cfg.FenceAfter
}
