package controller

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
		// until then it does not declare unknown hosts down. Without
		// gossip (DisableGossip: tests and benchmarks that propose host
		// states themselves) nothing is known of any worker, so no host
		// is declared down for being unknown.
		c.syncHosts(ctx, !c.cfg.DisableGossip && time.Since(leaderSince) > 5*time.Second)
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
			FenceAfterMS:   min(max(m.Meta.FenceAfterMS, 0), fsm.MaxTimingMS),
			ImageDir:       imageDirOf(m.Meta.ImageDir),
			MigrationModes: migrationModesOf(m.Meta.Migrate),
		}
		switch m.Status {
		case membership.StatusAlive, membership.StatusSuspect:
			if !c.workerCertOK(m) {
				continue // with TLS: not a host until its certificate is checked (gossip.go)
			}
			if !m.Meta.Ready {
				// A (re)joining worker first removes the domains that
				// are no longer its own; until then it takes nothing.
				if cur, _ := st.Get(nil, resource.KindHost, want.Name); cur == nil {
					continue
				}
				want.State, want.Reason = resource.HostDown, "the worker is reconciling after joining"
			}
			// Ready, or draining when its spec says so:
			// proposeHostState decides under hostSpecMu.
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
			ForeignDomains: hs.ForeignDomains, ForeignDomainCount: hs.ForeignDomainCount, FenceAfterMS: hs.FenceAfterMS,
			ImageDir: hs.ImageDir, MigrationModes: hs.MigrationModes}
		c.proposeHostState(ctx, st, want)
	}
}

// migrationModesOf is the migration modes a worker advertises as the
// host status may hold them: the known ones, sorted, each once (gossip
// metadata is not trusted).
func migrationModesOf(modes []string) []string {
	var out []string
	for _, m := range []string{resource.MigrationLive, resource.MigrationRestart} {
		if slices.Contains(modes, m) {
			out = append(out, m)
		}
	}
	return out
}

// imageDirOf is a worker's advertised image directory as the host status
// may hold it: an absolute path of at most fsm.MaxImageDirBytes without
// control characters ("" otherwise: gossip metadata is not trusted).
func imageDirOf(d string) string {
	if d == "" || len(d) > fsm.MaxImageDirBytes || !strings.HasPrefix(d, "/") || !utf8.ValidString(d) || strings.ContainsFunc(d, unicode.IsControl) {
		return ""
	}
	return path.Clean(d)
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
// It adds the controllers' grace (protocol 5) and, to the reason, what
// the host's timing and fencing mean for its VMs (hostNotes).
func (c *Controller) proposeHostState(ctx context.Context, st *fsm.Store, want fsm.HostStateRequest) {
	want.DownGraceMS = c.cfg.HostDownGrace.Milliseconds()
	if want.DownGraceMS <= 0 || c.checkProtocol(fsm.HostStateRequestType, &fsm.HostStateRequest{DownGraceMS: 1}) != nil {
		// Some controller cannot apply the timing fields yet (a
		// rolling upgrade): the host's state without them.
		want.DownGraceMS, want.FenceAfterMS = 0, 0
	}
	if (len(want.ForeignDomains) > 0 || want.ForeignDomainCount > 0) && c.checkProtocol(fsm.HostStateRequestType, &fsm.HostStateRequest{ForeignDomainCount: 1}) != nil {
		// Some controller cannot apply the foreign-domain fields yet:
		// record the host's state without them.
		want.ForeignDomains, want.ForeignDomainCount = nil, 0
	}
	if want.ImageDir != "" && c.checkProtocol(fsm.HostStateRequestType, &fsm.HostStateRequest{ImageDir: "/"}) != nil {
		want.ImageDir = "" // some controller cannot apply it yet
	}
	if len(want.MigrationModes) > 0 && c.checkProtocol(fsm.HostStateRequestType, &fsm.HostStateRequest{MigrationModes: []string{resource.MigrationLive}}) != nil {
		want.MigrationModes = nil // some controller cannot apply it yet
	}
	// A host whose spec is unschedulable (kumoi host drain) is draining,
	// not ready. The spec is read, and the state proposed, under
	// hostSpecMu, which writes of a host's spec through this leader hold
	// too (Apply): a drain or an enable cannot land between this read and
	// this write, which would record the state of the spec before it (a
	// host enabled and seen ready, then set draining again by a round
	// that read the spec before the enable: TestForcedStopAndMigrate).
	c.hostSpecMu.Lock()
	defer c.hostSpecMu.Unlock()
	cur, _ := st.Get(nil, resource.KindHost, want.Name)
	if cur != nil && want.State == resource.HostReady {
		if spec, err := resource.DecodeSpec[resource.HostSpec](cur); err == nil && spec.Unschedulable {
			want.State, want.Reason = resource.HostDraining, "drained: takes no new VMs (kumoi host enable "+want.Name+")"
		}
	}
	if cur != nil {
		hs, err := resource.DecodeStatus[resource.HostStatus](cur)
		if err == nil {
			want.Reason = joinReason(want.Reason, hostNotes(hs, want.State, want.FenceAfterMS, want.DownGraceMS))
		}
		if err == nil && hs.State == want.State && hs.Address == want.Address && hs.Capacity == want.Capacity &&
			hs.Driver == want.Driver && hs.Reason == want.Reason &&
			slices.Equal(hs.ForeignDomains, want.ForeignDomains) && hs.ForeignDomainCount == want.ForeignDomainCount &&
			hs.FenceAfterMS == want.FenceAfterMS && hs.DownGraceMS == want.DownGraceMS && (want.DownGraceMS == 0 || hs.StateIndex != 0) &&
			hs.ImageDir == want.ImageDir && slices.Equal(hs.MigrationModes, want.MigrationModes) {
			return
		}
	} else if want.State != resource.HostReady {
		return // never create a host just to say it is gone
	} else {
		want.Reason = joinReason(want.Reason, hostNotes(&resource.HostStatus{}, want.State, want.FenceAfterMS, want.DownGraceMS))
	}
	want.Time = time.Now().UTC()
	want.ID = resource.NewObjectID()
	if _, err := c.Propose(ctx, fsm.HostStateRequestType, &want); err != nil {
		if ctx.Err() == nil {
			c.logger.Warn("could not record host state", "host", want.Name, "state", want.State, "error", err)
		}
		return
	}
	c.logger.Info("host state", "host", want.Name, "state", want.State, "reason", want.Reason)
}

// hostNotes is what the host's status adds to the reason of a host that
// is (or stays) in state: a worker fence-after that keeps its VMs from
// ever being moved, and the fencing of its current down period.
func hostNotes(hs *resource.HostStatus, state string, fenceAfterMS, graceMS int64) string {
	var notes []string
	if fenceAfterMS > 0 && graceMS > 0 && fenceAfterMS >= graceMS {
		notes = append(notes, fenceAfterNote(fenceAfterMS, graceMS))
	}
	if hs.State == state && (state == resource.HostDown || state == resource.HostLeft) &&
		hs.Fence != nil && hs.Fence.StateIndex == hs.StateIndex && hs.Fence.Reason != "" {
		notes = append(notes, hs.Fence.Reason)
	}
	return strings.Join(notes, "; ")
}

// fenceAfterNote says why a host whose worker fences too late is never
// evacuated.
func fenceAfterNote(fenceAfterMS, graceMS int64) string {
	return fmt.Sprintf("its VMs are never moved elsewhere: the worker's --fence-after (%s) is not below the controllers' --host-down-grace (%s); lower --fence-after or raise --host-down-grace",
		time.Duration(fenceAfterMS)*time.Millisecond, time.Duration(graceMS)*time.Millisecond)
}

func joinReason(reason, notes string) string {
	switch {
	case notes == "":
		return reason
	case reason == "":
		return notes
	}
	return reason + "; " + notes
}
