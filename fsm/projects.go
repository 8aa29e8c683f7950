package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
	return true, []byte(string(o.Kind) + "\x00" + specProject(o.Spec) + "\x00"), nil
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
// index (not from the project's status).
func projectUsage(txn *memdb.Txn, project string) (resource.ProjectUsage, error) {
	var u resource.ProjectUsage
	vms, err := projectMembersUnsorted(txn, resource.KindVM, project)
	if err != nil {
		return u, err
	}
	for _, o := range vms {
		var s struct {
			CPUs      int64 `json:"cpus"`
			MemoryMiB int64 `json:"memory_mib"`
		}
		if json.Unmarshal(o.Spec, &s) != nil {
			continue
		}
		u.VMs++
		u.CPUs += s.CPUs
		u.MemoryMiB += s.MemoryMiB
	}
	vols, err := projectMembersUnsorted(txn, resource.KindVolume, project)
	if err != nil {
		return u, err
	}
	for _, o := range vols {
		var s struct {
			SizeMiB int64 `json:"size_mib"`
		}
		if json.Unmarshal(o.Spec, &s) != nil {
			continue
		}
		u.VolumeMiB += s.SizeMiB
	}
	return u, nil
}

// touchProject marks a project for a usage recompute; usage: the entry
// changed what belongs to it (its quotas are checked).
func (w *writer) touchProject(name string, usage bool) {
	if w.touchedProjects == nil {
		w.touchedProjects = map[string]bool{}
	}
	w.touchedProjects[name] = w.touchedProjects[name] || usage
}

// projectWrite marks the projects whose usage writing o (a VM or a
// volume) may change: its project and the one it had, unless its spec
// is unchanged.
func (w *writer) projectWrite(o *resource.Object) error {
	if !hasProject(o.Kind) {
		return nil
	}
	raw, err := w.txn.First(tableObjects, indexID, string(o.Kind), o.Name)
	if err != nil {
		return fmt.Errorf("fsm: lookup %s: %w", o, err)
	}
	if raw != nil {
		old := raw.(*resource.Object)
		if bytes.Equal(old.Spec, o.Spec) {
			return nil
		}
		w.touchProject(specProject(old.Spec), true)
	}
	w.touchProject(specProject(o.Spec), true)
	return nil
}

// projectDeleted marks the project of a deleted VM or volume.
func (w *writer) projectDeleted(o *resource.Object) {
	if hasProject(o.Kind) {
		w.touchProject(specProject(o.Spec), true)
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
	for _, name := range slices.Sorted(maps.Keys(w.touchedProjects)) {
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
		u, err := projectUsage(w.txn, name)
		if err != nil {
			return err
		}
		if w.touchedProjects[name] {
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
	w.touchedProjects = nil
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
