package script

import (
	"fmt"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/kumoi/kumoi/resource"
)

// Project is a project (quotas, issue 14) as a Starlark value: name,
// labels, index, spec, status, usage (struct vms, cpus, memory_mib,
// volume_mib: what its VMs and volumes hold, kept by the state machine),
// limits (struct max_vms, max_cpus, max_memory_mib, max_volume_mib; 0 is
// no limit), strategy, refresh(), delete() and set_labels().
type Project struct{ object }

var _ starlark.HasAttrs = (*Project)(nil)

func (p *Project) objectOf() *object { return &p.object }

func (p *Project) Type() string { return "project" }

func (p *Project) Hash() (uint32, error) { return starlark.String("project/" + p.get().Name).Hash() }

// CompareSameType makes values equal when they name the same object.
func (p *Project) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	return compareNames(op, p.get().Name, y.(*Project).get().Name)
}

func (p *Project) String() string {
	o := p.get()
	spec, st := resource.StateOf[resource.ProjectSpec, resource.ProjectStatus](o)
	return fmt.Sprintf("project(%q, vms=%s, cpus=%s)", o.Name, usedOf(st.Usage.VMs, spec.MaxVMs), usedOf(st.Usage.CPUs, spec.MaxCPUs))
}

// usedOf is "used/limit" ("-": no limit).
func usedOf(used, limit int64) string {
	if limit <= 0 {
		return fmt.Sprintf("%d/-", used)
	}
	return fmt.Sprintf("%d/%d", used, limit)
}

var (
	projectAttrs   = []string{"name", "labels", "index", "spec", "status", "usage", "limits", "strategy"}
	projectMethods = map[string]method[*Project]{
		"refresh":    kindRefresh[*Project](resource.KindProject),
		"delete":     kindDelete[*Project](resource.KindProject),
		"set_labels": setLabels[*Project](resource.KindProject),
	}
)

func (p *Project) AttrNames() []string { return attrNames(projectAttrs, projectMethods) }

func (p *Project) Attr(name string) (starlark.Value, error) {
	if m, ok := projectMethods[name]; ok {
		return bind("project", p, name, m), nil
	}
	o := p.get()
	if a := metaAttr(o, name); a != nil {
		return a, nil
	}
	spec, st := resource.StateOf[resource.ProjectSpec, resource.ProjectStatus](o)
	limits := func() starlark.Value {
		return structOf("project_limits", starlark.StringDict{
			"max_vms": starlark.MakeInt64(spec.MaxVMs), "max_cpus": starlark.MakeInt64(spec.MaxCPUs),
			"max_memory_mib": starlark.MakeInt64(spec.MaxMemoryMiB), "max_volume_mib": starlark.MakeInt64(spec.MaxVolumeMiB),
		})
	}
	usage := func() starlark.Value {
		u := st.Usage
		return structOf("project_usage", starlark.StringDict{
			"vms": starlark.MakeInt64(u.VMs), "cpus": starlark.MakeInt64(u.CPUs),
			"memory_mib": starlark.MakeInt64(u.MemoryMiB), "volume_mib": starlark.MakeInt64(u.VolumeMiB),
		})
	}
	switch name {
	case "usage":
		return usage(), nil
	case "limits":
		return limits(), nil
	case "strategy":
		return noneIfEmpty(spec.Strategy), nil
	case "spec":
		return structOf("project_spec", starlark.StringDict{
			"max_vms": starlark.MakeInt64(spec.MaxVMs), "max_cpus": starlark.MakeInt64(spec.MaxCPUs),
			"max_memory_mib": starlark.MakeInt64(spec.MaxMemoryMiB), "max_volume_mib": starlark.MakeInt64(spec.MaxVolumeMiB),
			"strategy": starlark.String(spec.Strategy),
		}), nil
	case "status":
		return structOf("project_status", starlark.StringDict{"usage": usage()}), nil
	}
	return nil, nil
}
