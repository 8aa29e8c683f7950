package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// Projects and quotas (issue 14). Every VM and volume belongs to a project
// (spec.project; empty is "default", which needs no object). A project
// object's status.usage is what its VMs (count, CPUs, memory) and volumes
// (size) hold: recomputed from the index of objects by project for every
// project an entry touched, before the entry commits. A quota is checked
// there too, so that concurrent creates never overshoot: an entry that
// raises a dimension of a project's usage above its limit fails as a
// whole. A limit below the current usage is allowed: it only refuses what
// would raise the usage further.

// ErrQuotaExceeded: an entry would take a project's usage over a limit
// (a *QuotaError says which).
var ErrQuotaExceeded = errors.New("quota exceeded")

// QuotaError is a refused raise of a project's usage: the limit (a spec
// field such as max_cpus) and its value, the usage before the entry and
// what the entry asked on top of it.
type QuotaError struct {
	Project string
	Limit   string
	Max     int64
	InUse   int64
	Asked   int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("project %s: %s %d exceeded: %d in use, %d asked", e.Project, e.Limit, e.Max, e.InUse, e.Asked)
}

// Unwrap makes errors.Is(err, ErrQuotaExceeded) true.
func (e *QuotaError) Unwrap() error { return ErrQuotaExceeded }

// indexProject indexes VMs and volumes by (kind, project).
const indexProject = "project"

// projectIndexes are the project indexes of the objects table.
func projectIndexes() map[string]*memdb.IndexSchema {
	return map[string]*memdb.IndexSchema{
		indexProject: {Name: indexProject, AllowMissing: true, Indexer: projectIndexer{}},
	}
}

// specProject is the project of a VM's or volume's spec ("default" when
// it names none). A spec without the key is not decoded.
func specProject(spec []byte) string {
	if !bytes.Contains(spec, []byte(`"project"`)) {
		return resource.DefaultProject
	}
	var s struct {
		Project string `json:"project"`
	}
	_ = json.Unmarshal(spec, &s)
	return resource.ProjectOf(s.Project)
}

// hasProject reports whether objects of kind belong to a project.
func hasProject(kind resource.Kind) bool {
	return kind == resource.KindVM || kind == resource.KindVolume
}

type projectIndexer struct{}

var _ memdb.Indexer = projectIndexer{}

func (projectIndexer) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*resource.Object)
	if !ok {
		return false, nil, fmt.Errorf("fsm: index: unexpected %T", raw)
	}
	if !hasProject(o.Kind) {
		return false, nil, nil
	}
	p := specProject(o.Spec)
	if p == resource.DefaultProject {
		// Not indexed: most VMs are in it, and an index entry costs
		// every write of each; projectMembersUnsorted scans the kind
		// for it (when the default project's own object is written).
		return false, nil, nil
	}
	return true, []byte(string(o.Kind) + "\x00" + p + "\x00"), nil
}

// FromArgs takes (kind, project).
func (projectIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("fsm: project index takes a kind and a project")
	}
	k, ok1 := args[0].(resource.Kind)
	p, ok2 := args[1].(string)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("fsm: project index takes a resource.Kind and a string, not %T, %T", args[0], args[1])
	}
	return []byte(string(k) + "\x00" + p + "\x00"), nil
}

// projectMembersUnsorted lists the objects of kind in project, in index
// order (sums need no order).
func projectMembersUnsorted(txn *memdb.Txn, kind resource.Kind, project string) ([]*resource.Object, error) {
	if project == resource.DefaultProject {
		// The default project's members are not indexed: every object
		// of the kind that names no other project.
		it, err := txn.Get(tableObjects, indexKind, kindPrefix(kind))
		if err != nil {
			return nil, err
		}
		var out []*resource.Object
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if o := raw.(*resource.Object); specProject(o.Spec) == resource.DefaultProject {
				out = append(out, o)
			}
		}
		return out, nil
	}
	it, err := txn.Get(tableObjects, indexProject, kind, project)
	if err != nil {
		return nil, err
	}
	var out []*resource.Object
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*resource.Object))
	}
	return out, nil
}

// projectMembers lists the objects of kind in project, in name order.
func projectMembers(txn *memdb.Txn, kind resource.Kind, project string) ([]*resource.Object, error) {
	out, err := projectMembersUnsorted(txn, kind, project)
	slices.SortFunc(out, func(a, b *resource.Object) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// ProjectUsage computes what project's VMs and volumes hold, from the
// index (not from the project's status): O(the project's members), for a
// project's own write and the checks of the tests; every other write
// moves the usage by what it changed (usageDelta).
func projectUsage(txn *memdb.Txn, project string) (resource.ProjectUsage, error) {
	var u resource.ProjectUsage
	for _, kind := range []resource.Kind{resource.KindVM, resource.KindVolume} {
		members, err := projectMembersUnsorted(txn, kind, project)
		if err != nil {
			return u, err
		}
		for _, o := range members {
			u = addUsage(u, usageOf(o), 1)
		}
	}
	return u, nil
}

// addUsage is a + sign × b.
func addUsage(a, b resource.ProjectUsage, sign int64) resource.ProjectUsage {
	return resource.ProjectUsage{
		VMs:       a.VMs + sign*b.VMs,
		CPUs:      a.CPUs + sign*b.CPUs,
		MemoryMiB: a.MemoryMiB + sign*b.MemoryMiB,
		VolumeMiB: a.VolumeMiB + sign*b.VolumeMiB,
	}
}

// usageOf is what a VM or a volume counts towards its project's usage
// (nothing if its spec does not decode).
func usageOf(o *resource.Object) resource.ProjectUsage {
	switch o.Kind {
	case resource.KindVM:
		var s struct {
			CPUs      int64 `json:"cpus"`
			MemoryMiB int64 `json:"memory_mib"`
		}
		if json.Unmarshal(o.Spec, &s) != nil {
			return resource.ProjectUsage{}
		}
		return resource.ProjectUsage{VMs: 1, CPUs: s.CPUs, MemoryMiB: s.MemoryMiB}
	case resource.KindVolume:
		var s struct {
			SizeMiB int64 `json:"size_mib"`
		}
		if json.Unmarshal(o.Spec, &s) != nil {
			return resource.ProjectUsage{}
		}
		return resource.ProjectUsage{VolumeMiB: s.SizeMiB}
	}
	return resource.ProjectUsage{}
}

// usageMove is one change of a project's usage by an entry: sign × what
// o counts (usageOf), worked out at commit and only if the project has
// an object (most VMs are in "default", which usually has none).
type usageMove struct {
	project string
	o       *resource.Object
	sign    int64
}

// recountProject marks a project whose usage is counted again from its
// members at commit rather than moved by the entry's changes: the
// project's own object was written (created: VMs may already name
// "default"; its status written: the state machine's fields are its own).
func (w *writer) recountProject(name string) {
	if !slices.Contains(w.recountProjects, name) {
		w.recountProjects = append(w.recountProjects, name)
	}
}

// moveUsage records that sign × o's usage moves its project's in this
// entry (the project's quotas are checked at commit).
func (w *writer) moveUsage(o *resource.Object, sign int64) {
	w.usageMoves = append(w.usageMoves, usageMove{project: specProject(o.Spec), o: o, sign: sign})
}

// projectOld returns the stored version of o (a VM or a volume about to
// be written) whose spec differs from o's, or nil: what projectWritten
// takes back from its project's usage.
func (w *writer) projectOld(o *resource.Object) (old *resource.Object, changed bool, err error) {
	if !hasProject(o.Kind) {
		return nil, false, nil
	}
	raw, err := w.txn.First(tableObjects, indexID, string(o.Kind), o.Name)
	if err != nil {
		return nil, false, fmt.Errorf("fsm: lookup %s: %w", o, err)
	}
	if raw == nil {
		return nil, true, nil
	}
	old = raw.(*resource.Object)
	if bytes.Equal(old.Spec, o.Spec) {
		return nil, false, nil
	}
	return old, true, nil
}

// projectWritten moves the usage of the projects that writing o changed
// (projectOld said so): the one old was in, and o's.
func (w *writer) projectWritten(old, o *resource.Object) {
	if old != nil {
		w.moveUsage(old, -1)
	}
	w.moveUsage(o, 1)
}

// projectDeleted moves the usage of the project of a deleted VM or
// volume.
func (w *writer) projectDeleted(o *resource.Object) {
	if hasProject(o.Kind) {
		w.moveUsage(o, -1)
	}
}

// checkProjectRef refuses a VM or volume spec that names a project with
// no object (except "default").
func (w *writer) checkProjectRef(kind resource.Kind, spec json.RawMessage) error {
	if !hasProject(kind) {
		return nil
	}
	p := specProject(spec)
	if p == resource.DefaultProject {
		return nil
	}
	o, err := getTxn(w.txn, nil, resource.KindProject, p)
	if err != nil {
		return err
	}
	if o == nil {
		return resource.Errorf("spec.project", "no project %s: create it first", p)
	}
	return nil
}

// checkProjectDelete refuses to delete a project that VMs or volumes
// belong to (the default project's object may go: it only lifts the
// default project's quotas).
func (w *writer) checkProjectDelete(cur *resource.Object) error {
	if cur.Kind != resource.KindProject || cur.Name == resource.DefaultProject {
		return nil
	}
	vms, err := projectMembers(w.txn, resource.KindVM, cur.Name)
	if err != nil {
		return err
	}
	vols, err := projectMembers(w.txn, resource.KindVolume, cur.Name)
	if err != nil {
		return err
	}
	if len(vms) == 0 && len(vols) == 0 {
		return nil
	}
	names := func(os []*resource.Object) []string {
		out := make([]string, len(os))
		for i, o := range os {
			out[i] = o.Name
		}
		return out
	}
	var what string
	switch {
	case len(vms) > 0 && len(vols) > 0:
		what = usersMessage("vm", names(vms)) + " and " + usersMessage("volume", names(vols))
	case len(vms) > 0:
		what = usersMessage("vm", names(vms))
	default:
		what = usersMessage("volume", names(vols))
	}
	return fmt.Errorf("project %s is used by %s: %w: delete them or move them to another project first", cur.Name, what, ErrInUse)
}

// recomputeProjects writes the usage of every touched project that has an
// object, in name order, and refuses an entry that raised a dimension of
// a project's usage above its limit.
func (w *writer) recomputeProjects() error {
	if len(w.usageMoves) == 0 && len(w.recountProjects) == 0 {
		return nil
	}
	// The projects touched, in name order; the moves grouped by project
	// (the order of a project's moves does not change their sum).
	var buf [4]string
	names := buf[:0]
	for _, m := range w.usageMoves {
		names = append(names, m.project)
	}
	names = append(names, w.recountProjects...)
	slices.Sort(names)
	names = slices.Compact(names)
	moves := w.usageMoves
	if len(names) > 1 {
		slices.SortStableFunc(moves, func(a, b usageMove) int { return strings.Compare(a.project, b.project) })
	}
	for _, name := range names {
		var mine []usageMove // this project's moves (moves is in name order)
		for len(moves) > 0 && moves[0].project < name {
			moves = moves[1:]
		}
		n := 0
		for n < len(moves) && moves[n].project == name {
			n++
		}
		mine, moves = moves[:n], moves[n:]
		o, err := getTxn(w.txn, nil, resource.KindProject, name)
		if err != nil {
			return err
		}
		if o == nil {
			continue
		}
		spec, st, err := decodeState[resource.ProjectSpec, resource.ProjectStatus](o)
		if err != nil {
			return err
		}
		// The usage before this entry plus what it changed; counted
		// from the members when the project itself was written.
		u := st.Usage
		for _, m := range mine {
			u = addUsage(u, usageOf(m.o), m.sign)
		}
		if slices.Contains(w.recountProjects, name) {
			if u, err = projectUsage(w.txn, name); err != nil {
				return err
			}
		} else if checkApplyCaches {
			if v, err := projectUsage(w.txn, name); err != nil || v != u {
				panic(fmt.Sprintf("fsm: project %q: usage moved to %+v, counted %+v (%v)", name, u, v, err))
			}
		}
		if len(mine) > 0 { // the entry changed what belongs to it
			if err := checkQuota(name, spec, st.Usage, u); err != nil {
				return err
			}
		}
		if u == st.Usage {
			continue
		}
		nst := *st
		nst.Usage = u
		if err := w.putStatus(o, &nst); err != nil {
			return err
		}
	}
	w.usageMoves, w.recountProjects = nil, nil
	return nil
}

// checkQuota refuses a usage (was -> now) that raises a dimension above
// its limit (0: none).
func checkQuota(project string, spec *resource.ProjectSpec, was, now resource.ProjectUsage) error {
	for _, q := range []struct {
		limit         string
		max, was, now int64
	}{
		{"max_vms", spec.MaxVMs, was.VMs, now.VMs},
		{"max_cpus", spec.MaxCPUs, was.CPUs, now.CPUs},
		{"max_memory_mib", spec.MaxMemoryMiB, was.MemoryMiB, now.MemoryMiB},
		{"max_volume_mib", spec.MaxVolumeMiB, was.VolumeMiB, now.VolumeMiB},
	} {
		if q.max > 0 && q.now > q.was && q.now > q.max {
			return &QuotaError{Project: project, Limit: q.limit, Max: q.max, InUse: q.was, Asked: q.now - q.was}
		}
	}
	return nil
}
