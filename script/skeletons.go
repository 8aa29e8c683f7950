package script

import (
	"context"
	"errors"
	"fmt"

	"go.starlark.net/starlark"

	"github.com/kumoi/kumoi/skel"
)

// skelCall is one parallel skeleton call: the function, the items and the
// options, unpacked and frozen.
type skelCall struct {
	name  string
	run   *run
	ctx   context.Context
	fn    starlark.Callable
	items []starlark.Value
	opts  skel.Options
	// parallel: the calls overlap, so what they share and return is frozen.
	parallel bool
}

// unpackSkel reads fn, xs, the extra parameters and workers= and
// fail_fast=, and freezes what the calls will share: the items, the
// function's closure and default values and, when the calls run in
// parallel, the global variables of the module that defined it.
func unpackSkel(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, parallel bool, extra ...any) (*skelCall, error) {
	var (
		fn       starlark.Callable
		xs       starlark.Iterable
		workers  = DefaultWorkers
		failFast bool
	)
	pairs := append([]any{"fn", &fn, "xs", &xs}, extra...)
	pairs = append(pairs, "workers?", &workers, "fail_fast?", &failFast)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, pairs...); err != nil {
		return nil, err
	}
	if workers < 1 || workers > MaxWorkers {
		return nil, fmt.Errorf("%s: for parameter \"workers\": must be between 1 and %d (got %d)", b.Name(), MaxWorkers, workers)
	}
	r, ctx := runOf(th)
	if r == nil {
		return nil, fmt.Errorf("%s: not running in a script session", b.Name())
	}
	c := &skelCall{name: b.Name(), run: r, ctx: ctx, fn: fn, opts: skel.Options{Workers: workers, FailFast: failFast}, parallel: parallel}
	// The items are copied into a Go slice: charged to the memory
	// budget first (range(10**9) is one small value).
	known := int64(starlark.Len(xs))
	if err := charge(th, mul(known, sizeElem)); err != nil {
		return nil, err
	}
	it := xs.Iterate()
	defer it.Done()
	var x starlark.Value
	for it.Next(&x) {
		if known < 0 {
			if err := charge(th, sizeElem); err != nil {
				return nil, err
			}
		}
		c.items = append(c.items, frozen(x))
	}
	fn.Freeze()
	if f, ok := fn.(*starlark.Function); ok && parallel {
		for _, g := range f.Globals() {
			g.Freeze()
		}
	}
	return c, nil
}

// call runs the function on its own Starlark thread; a Starlark error
// comes back as an *Error with its backtrace.
func (c *skelCall) call(ctx context.Context, args ...starlark.Value) (starlark.Value, error) {
	th, done := c.run.newThread(ctx, c.name)
	defer done()
	v, err := starlark.Call(th, c.fn, args, nil)
	if err != nil {
		return nil, newError(err, nil, nil)
	}
	if c.parallel {
		v.Freeze()
	}
	return v, nil
}

// abortErr turns the error of a skeleton run into the script's error: the
// failure that aborted a fail-fast run, or the reason it was stopped.
func (c *skelCall) abortErr(err error) error {
	var ff *skel.FailFastError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ff):
		item, _ := ff.Item.(starlark.Value)
		what := "?"
		if item != nil {
			what = item.String()
		}
		msg := ff.Err.Error()
		var se *Error
		if errors.As(ff.Err, &se) {
			msg = se.Msg
		}
		return fmt.Errorf("%s: item %d (%s) failed, so the others were abandoned (fail_fast=True): %s", c.name, ff.Index, what, msg)
	case c.ctx.Err() != nil:
		return fmt.Errorf("%s: stopped: %s", c.name, stopReason(c.ctx))
	}
	return fmt.Errorf("%s: %w", c.name, err)
}

// pmap(fn, xs, workers=16, fail_fast=False) returns [fn(x) for x in xs],
// computed in parallel; an x whose call failed yields a failure.
func pmap(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	c, err := unpackSkel(th, b, args, kwargs, true)
	if err != nil {
		return nil, err
	}
	results, err := skel.Map(c.ctx, c.items, func(ctx context.Context, x starlark.Value) (starlark.Value, error) {
		return c.call(ctx, x)
	}, c.opts)
	if err := c.abortErr(err); err != nil {
		return nil, err
	}
	out := make([]starlark.Value, len(results))
	for i, res := range results {
		if res.Err != nil {
			out[i] = newFailure(i, res.Item, res.Err)
		} else {
			out[i] = res.Value
		}
	}
	return starlark.NewList(out), nil
}

// indexed is an item with its position, so that pfilter can put failures
// where their items were.
type indexed struct {
	i int
	v starlark.Value
}

// pfilter(fn, xs, workers=16, fail_fast=False) returns the xs for which
// fn(x) is true, in order, computed in parallel; an x whose call failed
// yields a failure in its place.
func pfilter(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	c, err := unpackSkel(th, b, args, kwargs, true)
	if err != nil {
		return nil, err
	}
	items := make([]indexed, len(c.items))
	for i, x := range c.items {
		items[i] = indexed{i, x}
	}
	kept, failed, err := skel.Filter(c.ctx, items, func(ctx context.Context, x indexed) (bool, error) {
		v, err := c.call(ctx, x.v)
		if err != nil {
			return false, err
		}
		return bool(v.Truth()), nil
	}, c.opts)
	if err := c.abortErr(err); err != nil {
		return nil, err
	}
	slot := make([]starlark.Value, len(items))
	for _, k := range kept {
		slot[k.i] = k.v
	}
	for _, f := range failed {
		slot[f.Item.i] = newFailure(f.Item.i, f.Item.v, f.Err)
	}
	var out []starlark.Value
	for _, v := range slot {
		if v != nil {
			out = append(out, v)
		}
	}
	return starlark.NewList(out), nil
}

// pforeach(fn, xs, workers=16, fail_fast=False) calls fn(x) for every x in
// parallel and returns the failures (an empty list when all succeeded).
func pforeach(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	c, err := unpackSkel(th, b, args, kwargs, true)
	if err != nil {
		return nil, err
	}
	results, err := skel.ForEach(c.ctx, c.items, func(ctx context.Context, x starlark.Value) error {
		_, err := c.call(ctx, x)
		return err
	}, c.opts)
	if err := c.abortErr(err); err != nil {
		return nil, err
	}
	var out []starlark.Value
	for i, res := range results {
		if res.Err != nil {
			out = append(out, newFailure(i, res.Item, res.Err))
		}
	}
	return starlark.NewList(out), nil
}

// preduce(fn, xs, initial, failed=None, fail_fast=False) folds fn over xs:
// acc = fn(acc, x), one call at a time in input order (each on its own
// thread; as the calls never overlap, the accumulator and the globals are
// not frozen, and fn may change acc in place). An x whose call
// failed is left out (acc stays as it was); its failure is appended to
// the list failed when given, else reported with print.
func preduce(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		initial starlark.Value
		failed  *starlark.List
	)
	c, err := unpackSkel(th, b, args, kwargs, false, "initial", &initial, "failed?", &failed)
	if err != nil {
		return nil, err
	}
	acc, results, err := skel.Reduce(c.ctx, c.items, initial, func(ctx context.Context, acc starlark.Value, x starlark.Value) (starlark.Value, error) {
		return c.call(ctx, acc, x)
	}, c.opts)
	if err := c.abortErr(err); err != nil {
		return nil, err
	}
	var fails []*Failure
	for i, res := range results {
		if res.Err != nil {
			fails = append(fails, newFailure(i, res.Item, res.Err))
		}
	}
	switch {
	case failed != nil:
		for _, f := range fails {
			if err := failed.Append(f); err != nil {
				return nil, fmt.Errorf("%s: for parameter \"failed\": %v", b.Name(), err)
			}
		}
	case len(fails) > 0 && th.Print != nil:
		th.Print(th, fmt.Sprintf("%s: %d of %d items failed and were left out; the first: %s: %s (pass failed=[] to get them)",
			b.Name(), len(fails), len(c.items), fails[0].Item, fails[0].Err))
	}
	return acc, nil
}
