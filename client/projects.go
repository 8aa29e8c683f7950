package client

import (
	"context"
	"errors"

	"github.com/kumoi/kumoi/resource"
)

// Project is a typed view of a project object: its quotas (Spec) and
// what its VMs and volumes hold (Status.Usage, kept by the state machine).
type Project struct {
	Object *resource.Object
	Spec   resource.ProjectSpec
	Status resource.ProjectStatus
}

// Name returns the project's name.
func (p *Project) Name() string { return p.Object.Name }

// NewProject decodes a project object into its typed view.
func NewProject(o *resource.Object) (*Project, error) {
	spec, st, err := decodeObject[resource.ProjectSpec, resource.ProjectStatus](o, resource.KindProject)
	if err != nil {
		return nil, err
	}
	return &Project{Object: o, Spec: *spec, Status: *st}, nil
}

// Projects is the typed API of the projects (quotas); get it from
// Client.Projects. A write that would take a project over a quota fails
// with ErrQuotaExceeded (409).
type Projects struct {
	k typedKind[resource.ProjectSpec, resource.ProjectStatus, *Project]
}

// Projects returns the typed API of the projects.
func (c *Client) Projects() *Projects {
	return &Projects{k: typedKind[resource.ProjectSpec, resource.ProjectStatus, *Project]{c: c, kind: resource.KindProject, decode: NewProject}}
}

// Create makes a project (POST /v1/projects). A zero quota is no limit.
func (p *Projects) Create(ctx context.Context, name string, spec resource.ProjectSpec, labels map[string]string) (*Project, error) {
	return p.k.create(ctx, name, &spec, labels)
}

// Get reads one project; ErrNotFound when there is none.
func (p *Projects) Get(ctx context.Context, name string, opts *QueryOptions) (*Project, *QueryMeta, error) {
	return p.k.get(ctx, name, opts)
}

// List reads the projects that match opts, sorted by name.
func (p *Projects) List(ctx context.Context, opts *QueryOptions) ([]*Project, *QueryMeta, error) {
	return p.k.list(ctx, opts)
}

// Update writes proj.Object.Labels and proj.Spec with compare-and-set on
// proj.Object.ModifyIndex. A limit below the usage is allowed (it only
// blocks new usage).
func (p *Projects) Update(ctx context.Context, proj *Project) (*Project, error) {
	if proj == nil {
		return nil, errors.New("update project: nil project")
	}
	return p.k.update(ctx, proj.Object, &proj.Spec)
}

// Modify reads the project, lets change edit its Spec and Object.Labels,
// and writes them back with compare-and-set, retrying when it changed in
// between.
func (p *Projects) Modify(ctx context.Context, name string, change func(proj *Project) error) (*Project, error) {
	return p.k.modify(ctx, name, change, func(x *Project) (*resource.Object, *resource.ProjectSpec) { return x.Object, &x.Spec })
}

// Delete removes a project and returns it as it was. A project that VMs
// or volumes belong to is refused with a 409 (ErrConflict) naming them.
func (p *Projects) Delete(ctx context.Context, name string, opts *WriteOptions) (*Project, error) {
	return p.k.delete(ctx, name, opts)
}

// Usage is what a project's VMs and volumes hold, counted from the VMs
// and volumes the caller can read (for a project without an object, such
// as "default" before one is created; a project object's status.usage is
// the state machine's own count).
func (p *Projects) Usage(ctx context.Context, name string) (resource.ProjectUsage, error) {
	var u resource.ProjectUsage
	c := p.k.c
	vms, _, err := c.List(ctx, resource.KindVM, nil)
	if err != nil {
		return u, err
	}
	for _, o := range vms {
		s, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil || resource.ProjectOf(s.Project) != name {
			continue
		}
		u.VMs++
		u.CPUs += int64(s.CPUs)
		u.MemoryMiB += s.MemoryMiB
	}
	vols, _, err := c.List(ctx, resource.KindVolume, nil)
	if err != nil {
		return u, err
	}
	for _, o := range vols {
		s, err := resource.DecodeSpec[resource.VolumeSpec](o)
		if err != nil || resource.ProjectOf(s.Project) != name {
			continue
		}
		u.VolumeMiB += s.SizeMiB
	}
	return u, nil
}
