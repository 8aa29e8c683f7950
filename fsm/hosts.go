package fsm

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kumoi/kumoi/resource"
)

// HostStateRequest records a host's membership state, creating the host
// object when it first joins. The allocation is the FSM's own and is kept.
type HostStateRequest struct {
	Time     time.Time          `json:"time"`
	Name     string             `json:"name"`
	ID       string             `json:"id"` // used when the host is created
	Labels   map[string]string  `json:"labels,omitempty"`
	State    string             `json:"state"`
	Address  string             `json:"address,omitempty"`
	Capacity resource.Resources `json:"capacity"`
	Driver   string             `json:"driver,omitempty"`
	Reason   string             `json:"reason,omitempty"`
	// ForeignDomains and ForeignDomainCount are the host's Kumoi domains
	// of another cluster, as its worker last advertised them (optional:
	// sent only when there are some).
	ForeignDomains     []string `json:"foreign_domains,omitempty"`
	ForeignDomainCount int      `json:"foreign_domain_count,omitempty"`
	// Protocol 5: the worker's published --fence-after (0: it publishes
	// none) and the proposing controller's --host-down-grace (always set
	// in this format: it is what marks a protocol 5 entry). Applied in
	// this format, a host-state command records them and the Raft index
	// at which the state changed (status.state_index).
	FenceAfterMS int64 `json:"fence_after_ms,omitempty"`
	DownGraceMS  int64 `json:"down_grace_ms,omitempty"`
	// Protocol 6: the worker's --image-dir as it advertises it (empty:
	// none advertised; the host's status then names none).
	ImageDir string `json:"image_dir,omitempty"`
	// Protocol 9: the migration modes the worker advertises (live,
	// restart), sorted; empty: none (an older worker).
	MigrationModes []string `json:"migration_modes,omitempty"`
}

// MaxImageDirBytes bounds a host's published image directory.
const MaxImageDirBytes = 1024

// UsesTiming reports whether the request is in the protocol 5 format.
func (r *HostStateRequest) UsesTiming() bool { return r.DownGraceMS != 0 || r.FenceAfterMS != 0 }

// MaxTimingMS bounds the published fence-after and grace (a day).
const MaxTimingMS = 24 * 3600 * 1000

// cloneStrings copies s (nil for an empty one, as JSON reads it back).
func cloneStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

// checkMigrationModes: known modes, sorted, each once.
func checkMigrationModes(modes []string) error {
	for i, m := range modes {
		if m != resource.MigrationLive && m != resource.MigrationRestart {
			return resource.Errorf("migration_modes", "%q is not a migration mode (live, restart)", m)
		}
		if i > 0 && modes[i-1] >= m {
			return resource.Errorf("migration_modes", "must be sorted and each mode named once (got %q)", modes)
		}
	}
	return nil
}

var hostStates = map[string]bool{
	resource.HostReady: true, resource.HostDown: true, resource.HostLeft: true, resource.HostDraining: true,
}

func (w *writer) hostState(req *HostStateRequest) error {
	if err := resource.ValidateName(req.Name); err != nil {
		return err
	}
	if _, err := req.Time.UTC().MarshalJSON(); err != nil {
		return resource.Errorf("time", "is out of range: %v", err)
	}
	if !hostStates[req.State] {
		return resource.Errorf("state", "%q is not a host state (ready, down, left, draining)", req.State)
	}
	if req.Capacity.CPUs < 0 || req.Capacity.MemoryMiB < 0 || req.Capacity.CPUs > resource.MaxHostCPUs || req.Capacity.MemoryMiB > resource.MaxHostMemoryMiB {
		return resource.Errorf("capacity", "must be between 0 and %d CPUs and %d MiB", resource.MaxHostCPUs, resource.MaxHostMemoryMiB)
	}
	if len(req.ForeignDomains) > resource.MaxForeignDomains {
		return resource.Errorf("foreign_domains", "names %d domains; at most %d", len(req.ForeignDomains), resource.MaxForeignDomains)
	}
	for _, n := range req.ForeignDomains {
		if n == "" || len(n) > 253 {
			return resource.Errorf("foreign_domains", "%q is not a domain name", n)
		}
	}
	if req.ForeignDomainCount < len(req.ForeignDomains) {
		return resource.Errorf("foreign_domain_count", "is %d, fewer than the %d domains named", req.ForeignDomainCount, len(req.ForeignDomains))
	}
	timing := req.UsesTiming()
	if timing && (req.DownGraceMS <= 0 || req.DownGraceMS > MaxTimingMS) {
		return resource.Errorf("down_grace_ms", "must be between 1 and %d (got %d)", MaxTimingMS, req.DownGraceMS)
	}
	if req.FenceAfterMS < 0 || req.FenceAfterMS > MaxTimingMS {
		return resource.Errorf("fence_after_ms", "must be between 0 and %d (got %d)", MaxTimingMS, req.FenceAfterMS)
	}
	if d := req.ImageDir; d != "" && (len(d) > MaxImageDirBytes || d[0] != '/' || !utf8.ValidString(d) || strings.ContainsFunc(d, unicode.IsControl)) {
		return resource.Errorf("image_dir", "must be an absolute path of at most %d bytes without control characters (got %q)", MaxImageDirBytes, d)
	}
	if err := checkMigrationModes(req.MigrationModes); err != nil {
		return err
	}
	cur, err := getTxn(w.txn, nil, resource.KindHost, req.Name)
	if err != nil {
		return err
	}
	if cur == nil {
		if err := resource.ValidateLabels(req.Labels); err != nil {
			return err
		}
		spec, err := resource.NormalizeSpec(resource.KindHost, json.RawMessage(`{}`))
		if err != nil {
			return err
		}
		if req.ID == "" {
			return resource.Errorf("id", "must be set by the proposer")
		}
		if raw, err := w.txn.First(tableObjects, indexUID, req.ID); err != nil {
			return fmt.Errorf("fsm: lookup id: %w", err)
		} else if raw != nil {
			return fmt.Errorf("object id %q: %w", req.ID, ErrExists)
		}
		alloc, err := allocatedTxn(w.txn, req.Name)
		if err != nil {
			return err
		}
		hs := &resource.HostStatus{
			State: req.State, Address: req.Address, Capacity: req.Capacity, Allocated: alloc,
			Driver: req.Driver, Reason: req.Reason, Since: req.Time.UTC(),
			ForeignDomains: cloneStrings(req.ForeignDomains), ForeignDomainCount: req.ForeignDomainCount,
			ImageDir: req.ImageDir, MigrationModes: cloneStrings(req.MigrationModes),
		}
		if timing {
			hs.StateIndex, hs.FenceAfterMS, hs.DownGraceMS = w.index, req.FenceAfterMS, req.DownGraceMS
		}
		st, err := json.Marshal(hs)
		if err != nil {
			return err
		}
		return w.put(&resource.Object{
			Kind: resource.KindHost, Name: req.Name, ID: req.ID, Labels: cloneLabels(req.Labels),
			CreateIndex: w.index, ModifyIndex: w.index, Spec: spec, Status: st,
		}, resource.EventCreated)
	}
	_, _, st, err := w.host(req.Name)
	if err != nil {
		return err
	}
	nst := *st
	if nst.State != req.State {
		nst.Since = req.Time.UTC()
		// An entry of the older format changes the state without
		// naming the index: the period is unnamed until the next one
		// of this format (a replica of protocol 4 records none).
		nst.StateIndex = 0
		if timing {
			nst.StateIndex = w.index
		}
	}
	if timing {
		if nst.StateIndex == 0 {
			// The first entry of this format for a host recorded
			// before it: its state holds at least since now.
			nst.StateIndex = w.index
		}
		nst.FenceAfterMS, nst.DownGraceMS = req.FenceAfterMS, req.DownGraceMS
	}
	nst.State, nst.Address, nst.Capacity, nst.Driver, nst.Reason = req.State, req.Address, req.Capacity, req.Driver, req.Reason
	nst.ForeignDomains, nst.ForeignDomainCount = cloneStrings(req.ForeignDomains), req.ForeignDomainCount
	nst.ImageDir = req.ImageDir
	nst.MigrationModes = cloneStrings(req.MigrationModes)
	if nst.SameObservation(st) {
		return nil
	}
	raw, err := json.Marshal(&nst)
	if err != nil {
		return err
	}
	n := cur.Copy()
	n.Status = raw
	n.ModifyIndex = w.index
	return w.put(n, resource.EventUpdated)
}

// EvacuateRequest takes the VMs off a down or left host: VMs with
// ha=restart go back to pending (to be placed elsewhere with a new epoch),
// the others become lost.
//
// In the protocol 5 format (StateIndex set) nothing compares two
// machines' clocks: the leader measured on its own monotonic clock that it
// has seen the host in its current state (the period that began at
// StateIndex) for DownForMS, and the state machine refuses the entry
// unless that period is still the host's current one, lasted at least the
// grace the host status publishes (and Grace), the worker's published
// fence-after is below that grace, and, when FenceRequired, the
// controllers' --fence-command succeeded for that period.
//
// In the older format the grace is checked against status.since and Time
// (wall clocks of two machines); such entries still apply as before.
type EvacuateRequest struct {
	Time   time.Time     `json:"time"`
	Host   string        `json:"host"`
	Grace  time.Duration `json:"grace"`
	Reason string        `json:"reason"`

	StateIndex    uint64 `json:"state_index,omitempty"`
	DownForMS     int64  `json:"down_for_ms,omitempty"`
	FenceRequired bool   `json:"fence_required,omitempty"`
}

// UsesStateIndex reports whether the request is in the protocol 5 format.
func (r *EvacuateRequest) UsesStateIndex() bool {
	return r.StateIndex != 0 || r.DownForMS != 0 || r.FenceRequired
}

func (w *writer) evacuate(req *EvacuateRequest) error {
	_, _, hst, err := w.host(req.Host)
	if err != nil {
		return err
	}
	if hst.State != resource.HostDown && hst.State != resource.HostLeft {
		return fmt.Errorf("host %q is %s: %w (only a down or left host is evacuated)", req.Host, hst.State, ErrWrongPhase)
	}
	if req.UsesStateIndex() {
		if err := checkEvacuation(req, hst); err != nil {
			return err
		}
	} else if req.Time.Sub(hst.Since) < req.Grace {
		return fmt.Errorf("host %q has been %s for %s, less than the grace of %s: %w",
			req.Host, hst.State, req.Time.Sub(hst.Since), req.Grace, ErrWrongPhase)
	}
	it, err := w.txn.Get(tableObjects, indexVMHost, req.Host)
	if err != nil {
		return err
	}
	var vms []*resource.Object
	for raw := it.Next(); raw != nil; raw = it.Next() {
		vms = append(vms, raw.(*resource.Object))
	}
	for _, o := range vms {
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil {
			continue
		}
		st, err := resource.DecodeStatus[resource.VMStatus](o)
		if err != nil {
			continue
		}
		var nst resource.VMStatus
		if t := w.handoverTarget(spec, st); t != "" {
			// A live migration from the host had begun: the guest may
			// have reached its target (the source's hypervisor goes on
			// when its worker dies). The VM goes there, and nowhere
			// else: the target's worker keeps the arrival if it runs
			// (else starts the VM afresh), so no third host can start
			// it while the arrival runs.
			nst = resource.VMStatus{Phase: resource.PhaseScheduled, Host: t, Epoch: w.index, Since: req.Time.UTC(), Restarts: st.Restarts,
				Reason: req.Reason + "; its live migration to " + t + " had begun, so it continues there"}
		} else if spec.HA == resource.HARestart {
			nst = resource.VMStatus{Phase: resource.PhasePending, Reason: req.Reason + "; waiting to be placed elsewhere", Since: req.Time.UTC()}
		} else {
			if st.Phase == resource.PhaseLost {
				continue
			}
			nst = *st
			// A migration from the host ends with it (its target's
			// reservation is freed; what arrived there is removed).
			nst.Phase, nst.Reason, nst.Since, nst.Migration = resource.PhaseLost, req.Reason, req.Time.UTC(), nil
		}
		if err := w.putVMStatus(o, st, &nst); err != nil {
			return err
		}
	}
	// Migrations to the host end; their VMs stay on their sources.
	return w.endMigrationsTo(req.Host, "the target was evacuated ("+req.Reason+")", req.Time)
}

// handoverTarget is where an evacuated VM goes at once rather than back
// to pending: the target of its live migration, when the source had begun
// it (state ready or aborting), the VM is to be restarted (ha restart), it
// has no volume on the evacuated host's storage (a copy that may not have
// finished is no disk to boot), and the target is ready. "" otherwise.
func (w *writer) handoverTarget(spec *resource.VMSpec, st *resource.VMStatus) string {
	m := st.Migration
	if m == nil || m.Mode != resource.MigrationLive || m.State == resource.MigrationPreparing || spec.HA != resource.HARestart {
		return ""
	}
	for _, d := range spec.Disks {
		if _, _, vst, err := w.volume(d.Volume); err != nil || (vst != nil && vst.Host == st.Host) {
			return ""
		}
	}
	_, _, hst, err := w.host(m.Target)
	if err != nil || hst.State != resource.HostReady {
		return ""
	}
	return m.Target
}

// checkEvacuation checks a protocol 5 evacuation against the host's status
// (which is down or left).
func checkEvacuation(req *EvacuateRequest, hst *resource.HostStatus) error {
	grace := time.Duration(hst.DownGraceMS) * time.Millisecond
	downFor := time.Duration(req.DownForMS) * time.Millisecond
	switch {
	case req.StateIndex == 0 || req.StateIndex != hst.StateIndex:
		return fmt.Errorf("host %q: the evacuation measured the %s period that began at index %d, but the current one began at %d: %w",
			req.Host, hst.State, req.StateIndex, hst.StateIndex, ErrWrongPhase)
	case hst.DownGraceMS <= 0:
		return fmt.Errorf("host %q publishes no down grace (status.down_grace_ms): %w", req.Host, ErrWrongPhase)
	case req.DownForMS < 0 || req.Grace < 0:
		return resource.Errorf("down_for_ms", "must not be negative")
	case downFor < grace || downFor < req.Grace:
		return fmt.Errorf("host %q has been seen %s for %s, less than the grace of %s: %w",
			req.Host, hst.State, downFor, max(grace, req.Grace), ErrWrongPhase)
	case hst.FenceAfterMS >= hst.DownGraceMS:
		return fmt.Errorf("host %q: its worker's --fence-after (%s) is not below the grace (%s), so its VMs may still run: %w",
			req.Host, time.Duration(hst.FenceAfterMS)*time.Millisecond, grace, ErrWrongPhase)
	case req.FenceRequired && !hst.Fence.Succeeded(hst.StateIndex):
		return fmt.Errorf("host %q: the fence command has not succeeded for its current %s period (index %d): %w",
			req.Host, hst.State, hst.StateIndex, ErrWrongPhase)
	}
	return nil
}

// HostFenceRequest records a run of the controllers' --fence-command on a
// host (protocol 5): its state (running, succeeded or failed) for the down
// period named by StateIndex. A record for an older period than the
// host's last one, or for a period the host has not reached, is refused.
type HostFenceRequest struct {
	Time  time.Time          `json:"time"`
	Host  string             `json:"host"`
	Fence resource.HostFence `json:"fence"`
}

var fenceStates = map[string]bool{resource.FenceRunning: true, resource.FenceSucceeded: true, resource.FenceFailed: true}

// MaxFenceAttempts bounds a fence record's attempts.
const MaxFenceAttempts = 1 << 30

func (w *writer) hostFence(req *HostFenceRequest) error {
	f := req.Fence
	switch {
	case !fenceStates[f.State]:
		return resource.Errorf("fence.state", "%q is not a fence state (running, succeeded, failed)", f.State)
	case f.Attempts < 1 || f.Attempts > MaxFenceAttempts:
		return resource.Errorf("fence.attempts", "must be between 1 and %d (got %d)", MaxFenceAttempts, f.Attempts)
	case len(f.Output) > resource.MaxFenceOutput:
		return resource.Errorf("fence.output", "is %d bytes; at most %d", len(f.Output), resource.MaxFenceOutput)
	case len(f.Reason) > 1024:
		return resource.Errorf("fence.reason", "is %d bytes; at most 1024", len(f.Reason))
	case f.StateIndex == 0:
		return resource.Errorf("fence.state_index", "must name the host's down period (its status.state_index)")
	}
	for i, t := range []time.Time{req.Time, f.StartedAt, f.FinishedAt} {
		if _, err := t.UTC().MarshalJSON(); err != nil {
			return resource.Errorf([]string{"time", "fence.started_at", "fence.finished_at"}[i], "is out of range: %v", err)
		}
	}
	cur, _, hst, err := w.host(req.Host)
	if err != nil {
		return err
	}
	if f.StateIndex > hst.StateIndex {
		return fmt.Errorf("host %q: the fence record names the period at index %d, after the host's current one (%d): %w",
			req.Host, f.StateIndex, hst.StateIndex, ErrWrongPhase)
	}
	if hst.Fence != nil && f.StateIndex < hst.Fence.StateIndex {
		return fmt.Errorf("host %q: the fence record names the period at index %d, before the one already recorded (%d): %w",
			req.Host, f.StateIndex, hst.Fence.StateIndex, ErrWrongPhase)
	}
	f.StartedAt, f.FinishedAt = f.StartedAt.UTC(), f.FinishedAt.UTC()
	nst := *hst
	nst.Fence = &f
	if nst.SameObservation(hst) {
		return nil
	}
	raw, err := json.Marshal(&nst)
	if err != nil {
		return err
	}
	n := cur.Copy()
	n.Status = raw
	n.ModifyIndex = w.index
	return w.put(n, resource.EventUpdated)
}
