package jepsen

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// The placement workload's project quota, hard anti-affinity groups and
// live migrations (issue 14): the quota poller and the checks of those
// rules.

// PlacementQuotaPollInterval is how often the quota poller reads the
// run's VMs and project, from Setup to the final list.
var PlacementQuotaPollInterval = 500 * time.Millisecond

// quotaReadTimeout bounds one read of the quota poller.
const quotaReadTimeout = 2 * time.Second

// quotaOver is a read of the quota poller that found the project over its
// max_vms quota: the VMs of the project in a linearizable list, or the
// project's own status.usage.
type quotaOver struct {
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Listed int64     `json:"listed"`
	Usage  int64     `json:"usage_vms"` // -1: the project read failed
}

// quotaReads is what the quota poller read, bounded: counters, the reads
// that found the project over quota (at most maxPerType kept) and the
// VMs it saw live-migrated.
type quotaReads struct {
	Reads     int         `json:"reads"`
	Failed    int         `json:"failed"`
	MaxListed int64       `json:"max_listed"`
	MaxUsage  int64       `json:"max_usage_vms"`
	Over      []quotaOver `json:"over,omitempty"`
	OverCount int         `json:"over_count"`
	// Migrated maps "vm@epoch" to the host the VM arrived on and its
	// reason ("live-migrated from h1", "moved from h1 (shut down there;
	// starts here)"): the moves by migration the reads saw (the reason
	// stays until the VM's next change).
	Migrated map[string]string `json:"migrated,omitempty"`
	// Stayed maps "vm: reason" to the VM's host for the reasons of
	// migrations that ended without moving it ("the migration to h2
	// failed (…); the VM stays on h1", or aborted), as the reads saw them.
	Stayed map[string]string `json:"stayed,omitempty"`
}

// quotaPoller reads, every PlacementQuotaPollInterval, the run's VMs (a
// linearizable list by the run's label) and its project (status.usage).
type quotaPoller struct {
	c       *client.Client
	project string
	runID   string
	stop    chan struct{}
	done    chan struct{}

	mu    sync.Mutex
	reads quotaReads
	max   int64 // the project's max_vms, as last read
}

func startQuotaPoller(c *client.Client, project, runID string) *quotaPoller {
	q := &quotaPoller{c: c, project: project, runID: runID, stop: make(chan struct{}), done: make(chan struct{}),
		reads: quotaReads{Migrated: map[string]string{}, Stayed: map[string]string{}}}
	go q.loop()
	return q
}

func (q *quotaPoller) loop() {
	defer close(q.done)
	tick := time.NewTicker(PlacementQuotaPollInterval)
	defer tick.Stop()
	for {
		q.read()
		select {
		case <-q.stop:
			return
		case <-tick.C:
		}
	}
}

func (q *quotaPoller) read() {
	ctx, cancel := context.WithTimeout(context.Background(), quotaReadTimeout)
	defer cancel()
	start := time.Now()
	objs, _, err := q.c.List(ctx, resource.KindVM, &client.QueryOptions{Selector: PlacementLabel + "=" + q.runID})
	if err != nil {
		q.mu.Lock()
		q.reads.Reads++
		q.reads.Failed++
		q.mu.Unlock()
		return
	}
	var listed int64
	migrated, stayed := map[string]string{}, map[string]string{}
	for _, o := range objs {
		vm, err := client.NewVM(o)
		if err != nil {
			continue
		}
		if resource.ProjectOf(vm.Spec.Project) == q.project {
			listed++
		}
		if r := vm.Status.Reason; movedReason(r) && vm.Status.Host != "" {
			migrated[fmt.Sprintf("%s@%d", o.Name, vm.Status.Epoch)] = fmt.Sprintf("on %s: %s", vm.Status.Host, r)
		}
		if r := vm.Status.Reason; strings.HasPrefix(r, "the migration to ") && strings.Contains(r, "stays on") && len(stayed) < 200 {
			stayed[o.Name+": "+r] = vm.Status.Host
		}
	}
	usage := int64(-1)
	proj, _, perr := q.c.Projects().Get(ctx, q.project, nil)
	end := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reads.Reads++
	if perr != nil {
		q.reads.Failed++
	} else {
		usage, q.max = proj.Status.Usage.VMs, proj.Spec.MaxVMs
	}
	q.reads.MaxListed, q.reads.MaxUsage = max(q.reads.MaxListed, listed), max(q.reads.MaxUsage, usage)
	maps.Copy(q.reads.Migrated, migrated)
	if len(q.reads.Stayed) < 1000 {
		maps.Copy(q.reads.Stayed, stayed)
	}
	if q.max > 0 && (listed > q.max || usage > q.max) {
		q.reads.OverCount++
		if len(q.reads.Over) < maxPerType {
			q.reads.Over = append(q.reads.Over, quotaOver{Start: start, End: end, Listed: listed, Usage: usage})
		}
	}
}

// Stop stops the reads (waiting for the one in flight) and returns what
// they found.
func (q *quotaPoller) Stop() quotaReads {
	if q == nil {
		return quotaReads{}
	}
	select {
	case <-q.stop:
	default:
		close(q.stop)
	}
	<-q.done
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.reads
}

// groupsOf maps each VM of a hard anti-affine group (from the creates'
// input) to its group.
func (h placementOps) groupsOf() map[string]string {
	g := map[string]string{}
	for name, op := range h.creates {
		if grp := inputField(op.Input.Value, "group"); grp != "" {
			g[name] = grp
		}
	}
	return g
}

// checkAntiAffinity: no two members of one hard anti-affine group active
// on the same host at overlapping times (from the intervals: the workers'
// own logs). Like the capacity check, it counts a domain until its stop
// line, so a member's domain that outlived the member's removal from the
// host and overlaps the next member there is flagged too.
func (p *Placement) checkAntiAffinity(chk *Check, ivs []Interval, h placementOps) {
	groups := h.groupsOf()
	byGroupHost := map[string][]Interval{} // group + "@" + host
	for _, iv := range ivs {
		if g := groups[iv.VM]; g != "" {
			k := g + "@" + iv.Host
			byGroupHost[k] = append(byGroupHost[k], iv)
		}
	}
	n := 0
	for _, k := range slices.Sorted(maps.Keys(byGroupHost)) {
		list := byGroupHost[k]
		for i := range list {
			for j := i + 1; j < len(list); j++ {
				a, b := list[i], list[j]
				if a.VM == b.VM || !a.Start.Before(b.End) || !b.Start.Before(a.End) {
					continue
				}
				if n++; n > maxPerType {
					continue
				}
				chk.add(Anomaly{Type: "anti-affinity", Key: groups[a.VM], Detail: fmt.Sprintf(
					"VMs %s and %s of hard anti-affine group %s were active on host %s at once for %s: %s epoch %d from %s to %s (%s), %s epoch %d from %s to %s (%s)",
					a.VM, b.VM, groups[a.VM], a.Host, overlap(a, b), a.VM, a.Epoch, p.at(a.Start), p.at(a.End), a.ClosedBy,
					b.VM, b.Epoch, p.at(b.Start), p.at(b.End), b.ClosedBy), Ops: h.of(a.VM, b.VM)})
			}
		}
	}
	if n > maxPerType {
		chk.add(Anomaly{Type: "anti-affinity", Detail: fmt.Sprintf("%d more overlapping pairs of members (intervals.json)", n-maxPerType)})
	}
}

// checkQuota: the project never held more than max_vms VMs — in any
// linearizable read of the quota poller (the listed VMs of the project,
// and its own status.usage), nor in the final list — every VM of the run
// is in the run's project, and once settled status.usage is what the
// listed VMs add up to.
func (p *Placement) checkQuota(chk *Check, h placementOps) {
	if p.project == "" {
		return // a run without the project (an older history)
	}
	for _, o := range p.quotaReads.Over {
		usage := fmt.Sprintf("status.usage.vms %d", o.Usage)
		if o.Usage < 0 {
			usage = "status.usage not read"
		}
		chk.add(Anomaly{Type: "quota", Key: p.project, Detail: fmt.Sprintf(
			"project %s has max_vms %d, but a linearizable read between %s and %s listed %d of its VMs (%s)",
			p.project, p.maxVMs, p.at(o.Start), p.at(o.End), o.Listed, usage)})
	}
	if more := p.quotaReads.OverCount - len(p.quotaReads.Over); more > 0 {
		chk.add(Anomaly{Type: "quota", Key: p.project, Detail: fmt.Sprintf("%d more reads found project %s over max_vms %d", more, p.project, p.maxVMs)})
	}
	var in []placedVM
	var elsewhere []string
	for _, v := range p.final {
		if v.Project == p.project {
			in = append(in, v)
		} else {
			elsewhere = append(elsewhere, fmt.Sprintf("%s (project %q)", v.Name, v.Project))
		}
	}
	if len(elsewhere) > 0 {
		sort.Strings(elsewhere)
		chk.add(Anomaly{Type: "quota", Key: p.project, Detail: fmt.Sprintf("%d VMs of the run are not in its project %s: %s", len(elsewhere), p.project, strings.Join(elsewhere, ", "))})
	}
	if p.maxVMs > 0 && int64(len(in)) > p.maxVMs {
		chk.add(Anomaly{Type: "quota", Key: p.project, Detail: fmt.Sprintf("the final list has %d VMs in project %s, max_vms %d", len(in), p.project, p.maxVMs)})
	}
	if p.finalUsage == nil || !p.settledOK {
		return
	}
	var want resource.ProjectUsage
	for _, v := range in {
		want.VMs++
		want.CPUs += v.CPUs
		want.MemoryMiB += v.MemoryMiB
	}
	got := *p.finalUsage
	if got.VMs != want.VMs || got.CPUs != want.CPUs || got.MemoryMiB != want.MemoryMiB {
		chk.add(Anomaly{Type: "quota", Key: p.project, Detail: fmt.Sprintf(
			"once settled, project %s's status.usage says %d VMs, %d CPUs, %d MiB, but its listed VMs add up to %d VMs, %d CPUs, %d MiB",
			p.project, got.VMs, got.CPUs, got.MemoryMiB, want.VMs, want.CPUs, want.MemoryMiB)})
	}
}

// migrateOps are the migrate operations of vm.
func (h placementOps) migrateOps(vm string) []Op {
	var out []Op
	for _, op := range h.byVM[vm] {
		if op.Kind == "migrate" {
			out = append(out, op)
		}
	}
	return out
}

// aroundMigration says, for a double run of vm, when its live migrations
// began (ok) or may have (unknown), relative to the history's start.
func (h placementOps) aroundMigration(vm string) string {
	var at []string
	for _, op := range h.migrateOps(vm) {
		if op.Status == StatusFail || strings.HasPrefix(op.Output.Value, "cold") {
			continue
		}
		at = append(at, fmt.Sprintf("%s invoked at %s (%s)", op.Status, time.Duration(op.Invoke).Round(time.Millisecond), op.Output.Value))
	}
	if len(at) == 0 {
		return ""
	}
	return "; around its live migration: " + strings.Join(at, ", ")
}

// rulesNotes says what the quota, the groups and the migrations did.
func (p *Placement) rulesNotes(h placementOps) []string {
	var quotaRefused, grouped, groupedOK int
	groups := map[string]bool{}
	for _, op := range h.creates {
		if op.Output.Value == refusedQuota {
			quotaRefused++
		}
		if g := inputField(op.Input.Value, "group"); g != "" {
			grouped++
			if op.Status != StatusFail {
				groupedOK++
				groups[g] = true
			}
		}
	}
	var ok, cold, fail, unknown, affinity int
	failReasons := map[string]int{}
	for _, ops := range h.byVM {
		for _, op := range ops {
			if op.Kind != "migrate" {
				continue
			}
			switch op.Status {
			case StatusOK:
				if strings.HasPrefix(op.Output.Value, "cold") {
					cold++
				} else {
					ok++
				}
			case StatusUnknown:
				unknown++
			case StatusFail:
				fail++
				if op.Output.Value == refusedAffinity {
					affinity++
				} else {
					failReasons[refusalClass(op.Error)]++
				}
			}
		}
	}
	migrated := map[string]string{}
	maps.Copy(migrated, p.quotaReads.Migrated)
	for _, v := range p.final {
		if movedReason(v.Reason) {
			migrated[fmt.Sprintf("%s@%d", v.Name, v.Epoch)] = "on " + v.Host + ": " + v.Reason
		}
	}
	var moved []string
	for _, k := range slices.Sorted(maps.Keys(migrated)) {
		moved = append(moved, k+" "+migrated[k])
	}
	movedNote := fmt.Sprintf("%d VMs seen arrived on another host by migration (the quota poller's reads and the final list)", len(moved))
	if len(moved) > 0 {
		movedNote += ": " + strings.Join(moved[:min(len(moved), 10)], "; ")
		if len(moved) > 10 {
			movedNote += fmt.Sprintf("; %d more", len(moved)-10)
		}
	}
	mode := p.migrateMode
	if mode == "" {
		mode = resource.MigrationLive
	}
	stayed := map[string]int{}
	for k := range p.quotaReads.Stayed {
		_, r, _ := strings.Cut(k, ": ")
		stayed[refusalClass(r)]++
	}
	movedNote += fmt.Sprintf("; %d ended without moving the VM, as the reads saw them: %s", len(p.quotaReads.Stayed), countString(stayed))
	notes := []string{
		fmt.Sprintf("migrations: %d attempted; acknowledged %d begun (%s), %d cold (the VM ran nowhere); failed %d (refused by hard anti-affinity %d; other: %s); unknown %d",
			ok+cold+fail+unknown, ok, mode, cold, fail, affinity, countString(failReasons), unknown),
		movedNote,
	}
	if p.project != "" {
		r := p.quotaReads
		notes = append(notes,
			fmt.Sprintf("project %s, max_vms %d: %d creates refused by the quota (409 quota_exceeded); the quota poller read %d times (%d failed), at most %d VMs listed, status.usage at most %d VMs",
				p.project, p.maxVMs, quotaRefused, r.Reads, r.Failed, r.MaxListed, r.MaxUsage),
			fmt.Sprintf("hard anti-affine groups: %d creates named one (%d not refused, in %d groups)", grouped, groupedOK, len(groups)))
	}
	return notes
}

var (
	quotedRe = regexp.MustCompile(`"[^"]*"`)
	urlRe    = regexp.MustCompile(`https?://\S+`)
)

// refusalClass shortens a refused operation's error for counting: quoted
// names and URLs elided, without a leading vm "…": and cut at the first
// parenthesis or semicolon, at most 80 characters.
func refusalClass(e string) string {
	e = urlRe.ReplaceAllString(quotedRe.ReplaceAllString(e, `"…"`), "URL")
	e = strings.TrimPrefix(e, `vm "…": `)
	for _, sep := range []string{" (", "; "} {
		if i := strings.Index(e, sep); i > 0 {
			e = e[:i]
		}
	}
	if r := []rune(e); len(r) > 80 {
		e = string(r[:80]) + "…"
	}
	return e
}

// movedReason says whether a VM's reason is that of a migration that
// moved it here: live, or by restart.
func movedReason(r string) bool {
	return strings.HasPrefix(r, "live-migrated from ") || strings.HasPrefix(r, "moved from ")
}
