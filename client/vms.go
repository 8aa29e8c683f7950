package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kumoi/kumoi/resource"
)

// VM is a typed view of a VM object: the object as the API returned it,
// with its spec and status decoded.
type VM struct {
	// Object is the object as read: kind, name, id, labels, indexes, and
	// the spec and status as JSON. VMs.Update writes Object.Labels and
	// Spec, with compare-and-set on Object.ModifyIndex.
	Object *resource.Object
	Spec   resource.VMSpec
	Status resource.VMStatus
}

// Name returns the VM's name.
func (v *VM) Name() string { return v.Object.Name }

// Phase returns the VM's status phase (resource.Phase*).
func (v *VM) Phase() string { return v.Status.Phase }

// NewVM decodes a VM object into its typed view. It fails when o is not a
// VM or its spec or status cannot be decoded.
func NewVM(o *resource.Object) (*VM, error) {
	spec, st, err := decodeObject[resource.VMSpec, resource.VMStatus](o, resource.KindVM)
	if err != nil {
		return nil, err
	}
	return &VM{Object: o, Spec: *spec, Status: *st}, nil
}

// VMs is the typed API of the virtual machines; get it from Client.VMs.
// Its methods are thin layers over the generic verbs (Create, Get, List,
// Update, Delete, Action) with the same errors and retries.
type VMs struct{ c *Client }

// VMs returns the typed API of the virtual machines.
func (c *Client) VMs() *VMs { return &VMs{c: c} }

// Create makes a new VM (POST /v1/vms). Omitted spec fields get the
// server's defaults (power running, ha none); labels may be nil. It fails
// with ErrAlreadyExists when the name is taken and with an error matching
// resource.ErrInvalid, naming the field, when the spec is wrong.
func (v *VMs) Create(ctx context.Context, name string, spec resource.VMSpec, labels map[string]string) (*VM, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("create vm %q: encode spec: %w", name, err)
	}
	o, err := v.c.Create(ctx, resource.KindVM, resource.CreateRequest{Name: name, Labels: labels, Spec: raw})
	if err != nil {
		return nil, err
	}
	return NewVM(o)
}

// Get reads one VM. It fails with ErrNotFound when there is none. opts may
// be nil; with opts.WaitIndex it is a blocking read (see Wait for the usual
// loop).
func (v *VMs) Get(ctx context.Context, name string, opts *QueryOptions) (*VM, *QueryMeta, error) {
	return getAs(ctx, v.c, resource.KindVM, name, opts, NewVM)
}

// List reads the VMs that match opts (a label selector, a host), sorted by
// name; opts may be nil. The slice is empty, never nil, when none match.
func (v *VMs) List(ctx context.Context, opts *QueryOptions) ([]*VM, *QueryMeta, error) {
	objs, meta, err := v.c.List(ctx, resource.KindVM, opts)
	if err != nil {
		return nil, nil, err
	}
	vms, err := decodeAll(objs, NewVM)
	return vms, meta, err
}

// Update writes vm.Object.Labels and vm.Spec (PUT /v1/vms/{name}) and
// returns the VM after the write. It is a compare-and-set on
// vm.Object.ModifyIndex: when the VM changed since it was read, it fails
// with ErrCASMismatch and writes nothing (set ModifyIndex to 0 to
// overwrite whatever is there). Modify does the read-change-write loop.
// Spec fields this client does not know (a newer server's) are kept as
// they were read.
func (v *VMs) Update(ctx context.Context, vm *VM) (*VM, error) {
	if vm == nil || vm.Object == nil {
		return nil, fmt.Errorf("update vm: the VM has no object; get it with VMs.Get first")
	}
	next, err := encodeSpec(vm.Object, vm.Spec)
	if err != nil {
		return nil, err
	}
	o, err := v.c.Update(ctx, resource.KindVM, vm.Object.Name, next, &WriteOptions{CAS: vm.Object.ModifyIndex})
	if err != nil {
		return nil, err
	}
	return NewVM(o)
}

// Modify reads the VM, lets change edit its Spec and Object.Labels, and
// writes them back with compare-and-set, reading and changing again when
// the VM changed in between (a worker reporting its phase), up to
// ModifyAttempts times. When change leaves the spec and labels as they
// were, nothing is written and the VM is returned as read. An error from
// change is returned as is, with nothing written.
func (v *VMs) Modify(ctx context.Context, name string, change func(vm *VM) error) (*VM, error) {
	o, err := v.c.Modify(ctx, resource.KindVM, name, func(cur *resource.Object) (*resource.Object, error) {
		vm, err := NewVM(cur)
		if err != nil {
			return nil, err
		}
		// Encoded the same way as the result, to compare like with like.
		unchanged, err := encodeSpec(cur, vm.Spec)
		if err != nil {
			return nil, err
		}
		before := unchanged.Spec
		labels := maps.Clone(cur.Labels)
		if err := change(vm); err != nil {
			return nil, err
		}
		next, err := encodeSpec(vm.Object, vm.Spec)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(before, next.Spec) && maps.Equal(labels, next.Labels) {
			return nil, nil
		}
		return next, nil
	})
	if err != nil {
		return nil, err
	}
	return NewVM(o)
}

// Delete removes a VM and returns it as it was; its worker destroys the
// guest. It fails with ErrNotFound when there is none and, with opts.CAS,
// with ErrCASMismatch when the VM changed since. opts may be nil.
func (v *VMs) Delete(ctx context.Context, name string, opts *WriteOptions) (*VM, error) {
	o, err := v.c.Delete(ctx, resource.KindVM, name, opts)
	if err != nil {
		return nil, err
	}
	return NewVM(o)
}

func (v *VMs) action(ctx context.Context, name, action string) (*VM, error) {
	o, err := v.c.Action(ctx, name, action)
	if err != nil {
		return nil, err
	}
	return NewVM(o)
}

// Start sets the VM's power to running (POST /v1/vms/{name}/start): its
// worker boots it. A failed or lost VM is sent back to placement, to be
// placed anew on any host. It returns the VM right after the change; use
// Wait to see it running. Like every action it is safe to repeat: a VM that
// already is to run is returned unchanged.
func (v *VMs) Start(ctx context.Context, name string) (*VM, error) {
	return v.action(ctx, name, ActionStart)
}

// Stop sets the VM's power to stopped (POST /v1/vms/{name}/stop), in any
// phase. Its worker asks the guest to power off (ACPI) and destroys the
// domain if it has not powered off after the worker's shutdown grace (10s
// by default); with force it powers the domain off at once (pulls the
// plug), which also cuts short a graceful stop under way. The VM keeps its
// host and its reservation there, and Start boots it again. Use Wait(ctx,
// name, resource.PhaseStopped) to see it stopped.
func (v *VMs) Stop(ctx context.Context, name string, force bool) (*VM, error) {
	o, err := v.c.ActionWith(ctx, name, ActionStop, &resource.VMActionRequest{Force: force})
	if err != nil {
		return nil, err
	}
	return NewVM(o)
}

// Migrate moves a VM that is not running to another host (POST
// /v1/vms/{name}/migrate; a cold migration): host "" lets the controllers
// pick the ready host with the most free memory. The VM must be stopped,
// failed or lost, or its host down for the controllers' host-down grace;
// otherwise it is refused with a 409 (ErrConflict) that says so. The VM
// gets a new placement epoch on the new host and keeps its desired power;
// the old host's worker removes its domain. See the script method
// vm.migrate for the stop-move-start sequence. A migrate is not resent
// after an attempt whose outcome is unknown.
func (v *VMs) Migrate(ctx context.Context, name, host string) (*VM, error) {
	return v.MigrateWith(ctx, name, MigrateOptions{Host: host})
}

// MigrateOptions say how a VM moves: to Host (empty: the scheduler
// picks), Live (a running VM keeps running: memory, and disks that are
// not shared, are copied while it runs) or Restart (a running VM is shut
// down and started on the target); without either only a VM that runs
// nowhere moves. Abort cancels the migration under way.
type MigrateOptions struct {
	Host    string
	Live    bool
	Restart bool
	Abort   bool
}

// MigrateWith moves a VM as opts say (POST /v1/vms/{name}/migrate). A
// live or restart migration returns once it has begun (the VM is then
// migrating, status.migration says how far it is); wait for the VM's
// status.host to change, or for status.migration to go (it failed or was
// aborted: status.reason says why). A migration whose outcome is unknown
// (a timeout, a lost leader) is not resent.
func (v *VMs) MigrateWith(ctx context.Context, name string, opts MigrateOptions) (*VM, error) {
	o, err := v.c.ActionWith(ctx, name, ActionMigrate, &resource.VMActionRequest{Host: opts.Host, Live: opts.Live, Restart: opts.Restart, Abort: opts.Abort})
	if err != nil {
		return nil, err
	}
	return NewVM(o)
}

// Suspend pauses a running VM (POST /v1/vms/{name}/suspend); the guest
// keeps its memory on the host. A VM that is not running is refused with a
// 409 (ErrConflict, code resource.CodeConflict) naming its phase.
func (v *VMs) Suspend(ctx context.Context, name string) (*VM, error) {
	return v.action(ctx, name, ActionSuspend)
}

// Resume continues a suspended VM (POST /v1/vms/{name}/resume). A VM that
// is not suspended is refused with a 409 (ErrConflict) naming its phase;
// use Start for a stopped one.
func (v *VMs) Resume(ctx context.Context, name string) (*VM, error) {
	return v.action(ctx, name, ActionResume)
}

// Reboot asks the worker to reboot a running VM (POST
// /v1/vms/{name}/reboot); it stays running. A VM that is not running is
// refused with a 409 (ErrConflict) naming its phase.
func (v *VMs) Reboot(ctx context.Context, name string) (*VM, error) {
	return v.action(ctx, name, ActionReboot)
}

// vmPhases are the phases a VM can be in.
var vmPhases = []string{
	resource.PhasePending, resource.PhaseScheduled, resource.PhaseStarting, resource.PhaseRunning,
	resource.PhaseSuspended, resource.PhaseStopping, resource.PhaseStopped, resource.PhaseMigrating,
	resource.PhaseFailed, resource.PhaseLost,
}

// VMFailedError is returned by VMs.Wait when the VM failed while it was
// waited for in another phase.
type VMFailedError struct {
	VM   *VM    // the VM as it was seen failed
	Want string // the phase that was waited for
}

func (e *VMFailedError) Error() string {
	reason := e.VM.Status.Reason
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Sprintf("vm %q failed while waiting for it to be %s: %s", e.VM.Name(), e.Want, reason)
}

// Wait blocks until the VM's status phase is phase and returns the VM
// then. It reads the VM with blocking queries (each one waits on the
// server until the state changes), so it neither polls nor sleeps.
//
// It fails with a *VMFailedError, carrying the VM, when the VM becomes
// failed while phase is another one; with ErrNotFound when the VM does not
// exist or is deleted; and with an error matching ctx.Err(), and the VM as
// last seen, when ctx is done first. A lost VM (its host went down) is
// waited on, since it can be started again. phase must be one of the
// resource.Phase* constants.
func (v *VMs) Wait(ctx context.Context, name, phase string) (*VM, error) {
	if !slices.Contains(vmPhases, phase) {
		return nil, fmt.Errorf("wait for vm %q: %q is not a VM phase; use one of %s", name, phase, strings.Join(vmPhases, ", "))
	}
	var (
		last  *VM
		index uint64
	)
	for {
		var opts *QueryOptions
		if index > 0 {
			opts = &QueryOptions{WaitIndex: index, WaitTime: blockingWait}
		}
		vm, meta, err := v.Get(ctx, name, opts)
		if ctx.Err() != nil {
			if last == nil {
				return nil, fmt.Errorf("wait for vm %q to be %s: %w", name, phase, ctx.Err())
			}
			return last, fmt.Errorf("vm %q is %s, not %s: %w", name, last.Phase(), phase, ctx.Err())
		}
		if err != nil {
			return nil, err
		}
		switch vm.Phase() {
		case phase:
			return vm, nil
		case resource.PhaseFailed:
			return vm, &VMFailedError{VM: vm, Want: phase}
		}
		last = vm
		// The next read waits for a change after what this one saw.
		index = max(index, vm.Object.ModifyIndex)
		if meta != nil {
			index = max(index, meta.Index)
		}
	}
}
