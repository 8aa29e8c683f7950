package script

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// Live migration, drains and rebalancing in scripts (docs/scripting.md).

// vmMigrateWith: migrate(host=None, live=False, restart=False,
// abort=False, wait=False, timeout="120s"). Without live, restart or abort
// it is the cold move of vmMigrate (stop, move, start; it always waits).
// live moves a running VM while it keeps running, restart shuts it down
// and starts it on the target; both return once the migration has begun,
// or with wait=True once it has ended: the VM when it moved, an error
// saying why when it stayed. abort=True cancels the migration under way
// (wait=True: until it has ended, whichever way).
func vmMigrateWith(th *starlark.Thread, v *VM, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var host starlark.Value = starlark.None
	var live, restart, abort, wait bool
	timeout := durationArg(2 * time.Minute)
	if err := starlark.UnpackArgs(name, args, kwargs, "host?", &host, "live?", &live, "restart?", &restart,
		"abort?", &abort, "wait?", &wait, "timeout?", &timeout); err != nil {
		return nil, err
	}
	switch {
	case live && restart:
		return nil, fmt.Errorf("%s: live and restart exclude each other: a live migration keeps the guest running, a restart shuts it down", name)
	case abort && (live || restart || host != starlark.None):
		return nil, fmt.Errorf("%s: abort takes no host, live or restart: it cancels the migration under way", name)
	case abort:
		return v.abortMigration(th, wait, time.Duration(timeout))
	case !live && !restart:
		return vmMigrate(th, v, name, starlark.Tuple{host}, []starlark.Tuple{{starlark.String("timeout"), starlark.String(time.Duration(timeout).String())}})
	}
	target, err := migrateTarget(name, host)
	if err != nil {
		return nil, err
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	vmName := v.get().Name
	vm, err := cl.VMs().MigrateWith(ctx, vmName, client.MigrateOptions{Host: target, Live: live, Restart: restart})
	if err != nil {
		return nil, objectErr(resource.KindVM, vmName, err)
	}
	v.set(vm.Object)
	if !wait || vm.Status.Migration == nil {
		return v, nil
	}
	return v.waitMigration(th, vm.Status.Migration, false, time.Duration(timeout))
}

// vmAbortMigration: abort_migration(wait=False, timeout="120s") is
// migrate(abort=True).
func vmAbortMigration(th *starlark.Thread, v *VM, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var wait bool
	timeout := durationArg(2 * time.Minute)
	if err := starlark.UnpackArgs(name, args, kwargs, "wait?", &wait, "timeout?", &timeout); err != nil {
		return nil, err
	}
	return v.abortMigration(th, wait, time.Duration(timeout))
}

func (v *VM) abortMigration(th *starlark.Thread, wait bool, timeout time.Duration) (starlark.Value, error) {
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	name := v.get().Name
	vm, err := cl.VMs().MigrateWith(ctx, name, client.MigrateOptions{Abort: true})
	if err != nil {
		return nil, objectErr(resource.KindVM, name, err)
	}
	v.set(vm.Object)
	if !wait || vm.Status.Migration == nil {
		return v, nil
	}
	return v.waitMigration(th, vm.Status.Migration, true, timeout)
}

// waitMigration waits until the migration m has ended: the VM when it
// moved to m.Target (or, with aborted, whichever way it ended), an error
// saying why it stayed otherwise.
func (v *VM) waitMigration(th *starlark.Thread, m *resource.VMMigration, aborted bool, timeout time.Duration) (starlark.Value, error) {
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	name := v.get().Name
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	o := v.get()
	index := o.ModifyIndex
	for {
		_, st := resource.VMStateOf(o)
		if cur := st.Migration; cur == nil || cur.ID != m.ID {
			if st.Host == m.Target || aborted {
				return v, nil
			}
			return nil, fmt.Errorf("vm %q stayed on %s: %s", name, st.Host, cmp.Or(st.Reason, "the migration ended without moving it"))
		}
		next, meta, err := cl.Get(wctx, resource.KindVM, name, &client.QueryOptions{WaitIndex: index, WaitTime: blockingWait})
		switch {
		case client.IsNotFound(err):
			return nil, fmt.Errorf("vm %q was deleted while it migrated", name)
		case err != nil && wctx.Err() != nil && ctx.Err() == nil:
			return nil, fmt.Errorf("vm %q is still migrating %s to %s after %s (%s)", name, m.Mode, m.Target, timeout, st.Migration.State)
		case err != nil:
			return nil, err
		}
		index = max(index, next.ModifyIndex)
		if meta != nil {
			index = max(index, meta.Index)
		}
		o = next
		v.set(o)
	}
}

// drainPoll is how often host.drain(wait=True) reads the drain status;
// drainSettle how many reads in a row must show only VMs that cannot move
// before it gives up.
var (
	drainPoll   = time.Second
	drainSettle = 3
)

// hostDrain: drain(migrate=False, wait=False, timeout="10m") marks the
// host unschedulable; migrate=True also asks the leader to move its VMs
// off (spec.drain.migrate); wait=True (with migrate) returns once the host
// holds no VM, and fails listing the VMs that cannot move and why when
// only those are left.
func hostDrain(th *starlark.Thread, h *Host, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var migrate, wait bool
	timeout := durationArg(10 * time.Minute)
	if err := starlark.UnpackArgs(name, args, kwargs, "migrate?", &migrate, "wait?", &wait, "timeout?", &timeout); err != nil {
		return nil, err
	}
	if wait && !migrate {
		return nil, fmt.Errorf("%s: wait needs migrate=True: without it the VMs stay on the host", name)
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	host := h.get().Name
	hv, err := cl.Hosts().DrainWith(ctx, host, client.DrainOptions{Migrate: migrate})
	if err != nil {
		return nil, objectErr(resource.KindHost, host, err)
	}
	h.set(hv.Object)
	if !wait {
		return h, nil
	}
	wctx, cancel := context.WithTimeout(ctx, time.Duration(timeout))
	defer cancel()
	stuck := 0
	for {
		ds, err := cl.Hosts().DrainStatus(wctx, host)
		switch {
		case err != nil && wctx.Err() != nil && ctx.Err() == nil:
			return nil, fmt.Errorf("host %q still holds VMs after %s", host, time.Duration(timeout))
		case err != nil:
			return nil, objectErr(resource.KindHost, host, err)
		}
		if ds.VMsLeft == 0 {
			return h, nil
		}
		if len(ds.Migrating) == 0 && len(ds.Blocked) >= ds.VMsLeft {
			if stuck++; stuck >= drainSettle {
				var why []string
				for _, b := range ds.Blocked {
					why = append(why, b.VM+": "+b.Reason)
				}
				return nil, fmt.Errorf("host %q still holds %d VMs that cannot move: %s", host, ds.VMsLeft, strings.Join(why, "; "))
			}
		} else {
			stuck = 0
		}
		select {
		case <-wctx.Done():
		case <-time.After(drainPoll):
		}
	}
}

// hostEnable: enable() makes the host schedulable again and ends a drain
// with migrate.
func hostEnable(th *starlark.Thread, h *Host, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
		return nil, err
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	host := h.get().Name
	hv, err := cl.Hosts().Enable(ctx, host)
	if err != nil {
		return nil, objectErr(resource.KindHost, host, err)
	}
	h.set(hv.Object)
	return h, nil
}

// rebalanceBuiltin: rebalance(dry_run=True, max=5) returns the moves that
// bring the cluster toward its placement strategy (structs vm, source,
// target, mode, reason, error: the API's from and to, renamed since from
// is reserved in Starlark) and, with dry_run=False, starts them.
func rebalanceBuiltin(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	dryRun, n := true, 5
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "dry_run?", &dryRun, "max?", &n); err != nil {
		return nil, err
	}
	if n < 1 || n > 100 {
		return nil, fmt.Errorf("%s: for parameter \"max\": %d is not between 1 and 100", b.Name(), n)
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	res, err := cl.Hosts().Rebalance(ctx, client.RebalanceOptions{DryRun: dryRun, Max: n})
	if err != nil {
		return nil, err
	}
	out := make([]starlark.Value, len(res.Moves))
	for i, m := range res.Moves {
		out[i] = structOf("move", starlark.StringDict{
			"vm": starlark.String(m.VM), "source": starlark.String(m.From), "target": starlark.String(m.To),
			"mode": starlark.String(m.Mode), "reason": starlark.String(m.Reason), "error": starlark.String(m.Error),
		})
	}
	return starlark.NewList(out), nil
}
