package script

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// vmAction is a method that runs a VM action (POST /v1/vms/NAME/ACTION).
func vmAction(action string) method[*VM] {
	return func(th *starlark.Thread, v *VM, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
			return nil, err
		}
		return v.action(th, action)
	}
}

func (v *VM) action(th *starlark.Thread, action string) (starlark.Value, error) {
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	name := v.get().Name
	o, err := cl.Action(ctx, name, action)
	if err != nil {
		return nil, objectErr(resource.KindVM, name, err)
	}
	v.set(o)
	return v, nil
}

// vmStop: stop(force=False). A graceful stop asks the guest to shut down
// (ACPI power button, then power off after the worker's grace); force
// powers it off at once, and cuts short a graceful stop under way.
func vmStop(th *starlark.Thread, v *VM, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var force bool
	if err := starlark.UnpackArgs(name, args, kwargs, "force?", &force); err != nil {
		return nil, err
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	vm := v.get().Name
	o, err := cl.ActionWith(ctx, vm, client.ActionStop, &resource.VMActionRequest{Force: force})
	if err != nil {
		return nil, objectErr(resource.KindVM, vm, err)
	}
	v.set(o)
	return v, nil
}

func vmDelete(th *starlark.Thread, v *VM, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
		return nil, err
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	vm := v.get().Name
	o, err := cl.Delete(ctx, resource.KindVM, vm, nil)
	if err != nil {
		return nil, objectErr(resource.KindVM, vm, err)
	}
	v.set(o)
	return starlark.None, nil
}

// vmMigrate: migrate(host=None, timeout="120s") moves the VM to another
// host, cold: a VM that runs on a live host is stopped (gracefully) and
// waited for, moved (POST /v1/vms/NAME/migrate), then started again and
// waited for on its new host. A stopped VM stays stopped; a VM whose host
// is down or gone moves at once (the controllers allow it after their
// host-down grace) and starts there. A suspended VM is refused (its memory
// would be lost): resume or stop it first. If the move is refused after the
// VM was stopped for it, the VM is started again where it was and the
// error says so. host is a Host, a host name or None (the controllers pick
// the ready host with the most free memory).
func vmMigrate(th *starlark.Thread, v *VM, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var host starlark.Value = starlark.None
	timeout := durationArg(2 * time.Minute)
	if err := starlark.UnpackArgs(name, args, kwargs, "host?", &host, "timeout?", &timeout); err != nil {
		return nil, err
	}
	target, err := migrateTarget(name, host)
	if err != nil {
		return nil, err
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	vm := v.get().Name
	cur, _, err := cl.Get(ctx, resource.KindVM, vm, nil)
	if err != nil {
		return nil, objectErr(resource.KindVM, vm, err)
	}
	v.set(cur)
	spec, st := resource.VMStateOf(cur)
	if spec.Power == resource.PowerSuspended {
		return nil, fmt.Errorf("cannot migrate vm %q: it is suspended, and a cold migration would lose its memory; resume or stop it first", vm)
	}
	stopFirst := hostUp(ctx, cl, st.Host) && spec.Power == resource.PowerRunning &&
		st.Phase != resource.PhaseFailed && st.Phase != resource.PhaseLost
	if stopFirst {
		if _, err := v.action(th, client.ActionStop); err != nil {
			return nil, err
		}
		if _, err := v.wait(th, resource.PhaseStopped, time.Duration(timeout)); err != nil {
			return nil, fmt.Errorf("cannot migrate vm %q: stopping it: %w", vm, err)
		}
	}
	o, err := cl.ActionWith(ctx, vm, client.ActionMigrate, &resource.VMActionRequest{Host: target})
	if err != nil {
		err = objectErr(resource.KindVM, vm, err)
		if stopFirst {
			if _, serr := v.action(th, client.ActionStart); serr != nil {
				return nil, fmt.Errorf("%w; starting it again on %s also failed: %v", err, st.Host, serr)
			}
			return nil, fmt.Errorf("%w; it was started again on %s", err, st.Host)
		}
		return nil, err
	}
	v.set(o)
	if stopFirst {
		if _, err := v.action(th, client.ActionStart); err != nil {
			return nil, err
		}
	}
	if spec.Power == resource.PowerRunning {
		return v.wait(th, resource.PhaseRunning, time.Duration(timeout))
	}
	return v.wait(th, resource.PhaseStopped, time.Duration(timeout))
}

// migrateTarget is the host argument of vm.migrate as a name: "" (None)
// lets the controllers choose.
func migrateTarget(fn string, host starlark.Value) (string, error) {
	switch h := host.(type) {
	case starlark.NoneType:
		return "", nil
	case starlark.String:
		return string(h), nil
	case *Host:
		return h.get().Name, nil
	}
	return "", fmt.Errorf("%s: for parameter \"host\": got %s, want a host, a host name or None", fn, host.Type())
}

// hostUp reports whether the host is known to be up (ready or draining),
// so that a VM there is stopped before a cold migration; false when host
// is "" or cannot be read.
func hostUp(ctx context.Context, cl *client.Client, host string) bool {
	if host == "" {
		return false
	}
	ho, _, err := cl.Get(ctx, resource.KindHost, host, nil)
	if err != nil {
		return false
	}
	hs, err := resource.DecodeStatus[resource.HostStatus](ho)
	return err == nil && (hs.State == resource.HostReady || hs.State == resource.HostDraining)
}

func vmRefresh(th *starlark.Thread, v *VM, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
		return nil, err
	}
	return refresh(th, &v.object, resource.KindVM, v)
}

func hostRefresh(th *starlark.Thread, h *Host, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
		return nil, err
	}
	return refresh(th, &h.object, resource.KindHost, h)
}

func refresh(th *starlark.Thread, o *object, kind resource.Kind, self starlark.Value) (starlark.Value, error) {
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	name := o.get().Name
	cur, _, err := cl.Get(ctx, kind, name, nil)
	if err != nil {
		return nil, objectErr(kind, name, err)
	}
	o.set(cur)
	return self, nil
}

// Phases a script may wait for: the VM phases and "deleted".
var waitPhases = []string{
	resource.PhasePending, resource.PhaseScheduled, resource.PhaseStarting, resource.PhaseRunning,
	resource.PhaseSuspended, resource.PhaseStopping, resource.PhaseStopped, resource.PhaseMigrating,
	resource.PhaseFailed, resource.PhaseLost, "deleted",
}

// blockingWait is how long one blocking read waits for a change.
const blockingWait = 30 * time.Second

// vmWait: wait(phase, timeout="60s") waits until the VM is in phase and
// returns it; "deleted" waits until it is gone (and returns None).
func vmWait(th *starlark.Thread, v *VM, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var phase string
	timeout := durationArg(time.Minute)
	if err := starlark.UnpackArgs(name, args, kwargs, "phase", &phase, "timeout?", &timeout); err != nil {
		return nil, err
	}
	if !slices.Contains(waitPhases, phase) {
		return nil, fmt.Errorf("%s: for parameter \"phase\": %q is not a VM phase; use one of %s", name, phase, strings.Join(waitPhases, ", "))
	}
	return v.wait(th, phase, time.Duration(timeout))
}

func (v *VM) wait(th *starlark.Thread, want string, timeout time.Duration) (starlark.Value, error) {
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	name := v.get().Name
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	o, meta, err := cl.Get(wctx, resource.KindVM, name, nil)
	var last *resource.VMStatus
	for {
		switch {
		case client.IsNotFound(err) && want == "deleted":
			return starlark.None, nil
		case client.IsNotFound(err):
			return nil, fmt.Errorf("vm %q was deleted while waiting for it to be %s", name, want)
		case err != nil && wctx.Err() != nil && ctx.Err() == nil:
			still := ": the controllers did not answer in that time"
			if last != nil {
				still = fmt.Sprintf(": it is still %s%s", last.Phase, reasonSuffix(last))
			}
			return nil, fmt.Errorf("vm %q is not %s after %s%s", name, want, timeout, still)
		case err != nil:
			return nil, err
		}
		v.set(o)
		_, st := resource.VMStateOf(o)
		last = st
		switch {
		case st.Phase == want:
			return v, nil
		case st.Phase == resource.PhaseFailed && want != "deleted":
			return nil, fmt.Errorf("vm %q failed while waiting for it to be %s: %s", name, want, cmp.Or(st.Reason, "no reason given"))
		case st.Phase == resource.PhaseLost && want != "deleted":
			return nil, fmt.Errorf("vm %q is lost while waiting for it to be %s: %s", name, want, cmp.Or(st.Reason, "its host is gone"))
		}
		index := o.ModifyIndex
		if meta != nil && meta.Index > index {
			index = meta.Index
		}
		o, meta, err = cl.Get(wctx, resource.KindVM, name, &client.QueryOptions{WaitIndex: index, WaitTime: blockingWait})
	}
}

func reasonSuffix(st *resource.VMStatus) string {
	if st.Reason == "" {
		return ""
	}
	return " (" + st.Reason + ")"
}

// hostVMs: host.vms() lists the VMs placed on the host.
func hostVMs(th *starlark.Thread, h *Host, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
		return nil, err
	}
	return listObjects(th, resource.KindVM, &client.QueryOptions{Host: h.get().Name})
}

// updateObject is a read-modify-write of an object (its labels and spec)
// with compare-and-set (client.Modify), retried when the object changed in
// between: change returns the object to write (nil: nothing to write; the
// object is returned as read).
func updateObject(th *starlark.Thread, kind resource.Kind, name string, change func(cur *resource.Object) (*resource.Object, error)) (*resource.Object, error) {
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	o, err := cl.Modify(ctx, kind, name, change)
	switch {
	case errors.Is(err, client.ErrCASMismatch):
		return nil, fmt.Errorf("%s %q kept changing while it was being updated (%d attempts); nothing was written", kind, name, client.ModifyAttempts)
	case err != nil:
		return nil, objectErr(kind, name, err)
	}
	return o, nil
}

// setLabels: set_labels(labels) merges labels into the object's: a key
// whose value is None is removed. It writes only when something changes
// (a read-modify-write with compare-and-set) and returns the object.
func setLabels[T interface {
	starlark.Value
	objectOf() *object
}](kind resource.Kind) method[T] {
	return func(th *starlark.Thread, recv T, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var d *starlark.Dict
		if err := starlark.UnpackArgs(name, args, kwargs, "labels", &d); err != nil {
			return nil, err
		}
		set, del := map[string]string{}, map[string]bool{}
		for _, kv := range d.Items() {
			k, ok := starlark.AsString(kv[0])
			if !ok {
				return nil, fmt.Errorf("%s: for parameter \"labels\": key %s is not a string", name, kv[0])
			}
			switch v := kv[1].(type) {
			case starlark.String:
				set[k] = string(v)
			case starlark.NoneType:
				del[k] = true
			default:
				return nil, fmt.Errorf("%s: for parameter \"labels\": the value of %q is a %s; want a string, or None to remove the label", name, k, v.Type())
			}
		}
		obj := recv.objectOf()
		o, err := updateObject(th, kind, obj.get().Name, func(cur *resource.Object) (*resource.Object, error) {
			labels := maps.Clone(cur.Labels)
			if labels == nil {
				labels = map[string]string{}
			}
			maps.Copy(labels, set)
			for k := range del {
				delete(labels, k)
			}
			if maps.Equal(labels, cur.Labels) || (len(labels) == 0 && len(cur.Labels) == 0) {
				return nil, nil
			}
			if err := resource.ValidateLabels(labels); err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			next := cur.Copy()
			next.Labels = labels
			return next, nil
		})
		if err != nil {
			return nil, err
		}
		obj.set(o)
		return recv, nil
	}
}

// objectErr says `vm "web" not found` for a missing object.
func objectErr(kind resource.Kind, name string, err error) error {
	if client.IsNotFound(err) {
		return fmt.Errorf("%s %q not found", kind, name)
	}
	return err
}

// durationArg unpacks a duration: a string such as "90s" or "2m", or a
// number of seconds.
type durationArg time.Duration

func (d *durationArg) Unpack(v starlark.Value) error {
	switch x := v.(type) {
	case starlark.String:
		dur, err := time.ParseDuration(string(x))
		if err != nil {
			return fmt.Errorf("%q is not a duration; write e.g. \"30s\", \"5m\" or a number of seconds", string(x))
		}
		if dur < 0 {
			return fmt.Errorf("%q is negative", string(x))
		}
		*d = durationArg(dur)
		return nil
	case starlark.Int, starlark.Float:
		f, _ := starlark.AsFloat(x)
		if f < 0 || math.IsNaN(f) || f > float64(math.MaxInt64)/float64(time.Second) {
			return fmt.Errorf("%s seconds is not a valid duration", x)
		}
		*d = durationArg(f * float64(time.Second))
		return nil
	}
	return fmt.Errorf("got %s, want a duration such as \"30s\" or a number of seconds", v.Type())
}

// memoryArg unpacks a memory size: a string such as "512MiB" or "2GiB", or
// a number of MiB.
type memoryArg int64

func (m *memoryArg) Unpack(v starlark.Value) error {
	switch x := v.(type) {
	case starlark.String:
		mib, err := resource.ParseMemoryMiB(string(x))
		if err != nil {
			return err
		}
		*m = memoryArg(mib)
		return nil
	case starlark.Int:
		n, ok := x.Int64()
		if !ok || n < 1 {
			return fmt.Errorf("%s MiB is not a memory size; write e.g. \"512MiB\" or \"2GiB\"", x)
		}
		*m = memoryArg(n)
		return nil
	}
	return fmt.Errorf("got %s, want a size such as \"512MiB\" or \"2GiB\" (or a number of MiB)", v.Type())
}

// labelsArg unpacks a dict of string labels.
type labelsArg map[string]string

func (l *labelsArg) Unpack(v starlark.Value) error {
	d, ok := v.(*starlark.Dict)
	if !ok {
		return fmt.Errorf("got %s, want a dict of strings such as {\"tier\": \"web\"}", v.Type())
	}
	out := make(map[string]string, d.Len())
	for _, kv := range d.Items() {
		k, ok1 := starlark.AsString(kv[0])
		val, ok2 := starlark.AsString(kv[1])
		if !ok1 || !ok2 {
			return fmt.Errorf("label %s: %s: keys and values must be strings", kv[0], kv[1])
		}
		out[k] = val
	}
	if err := resource.ValidateLabels(out); err != nil {
		var fe *resource.FieldError
		if errors.As(err, &fe) {
			return errors.New(fe.Msg)
		}
		return err
	}
	*l = out
	return nil
}
