package skel

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// DefaultWorkers is the concurrency when Options.Workers <= 0.
const DefaultWorkers = 16

// ErrSkipped is the error of an item that never ran: the run was aborted
// (Options.FailFast) or its context was done before the item's turn came.
var ErrSkipped = errors.New("skipped: the run was aborted or cancelled before this item started")

// Options tune a skeleton. The zero value runs up to DefaultWorkers calls at
// once, failure-oblivious, without progress reports.
type Options struct {
	// Workers is the most calls that run at once; <= 0 means
	// DefaultWorkers. Reduce ignores it: a fold is sequential.
	Workers int
	// FailFast aborts the run at the first failure: the context passed to
	// the calls still running is cancelled, the items not started yet get
	// ErrSkipped, and the skeleton returns a *FailFastError.
	FailFast bool
	// Progress, if not nil, is called after each item's call returned,
	// with the number of calls returned so far and the number of items.
	// Calls are serialised (never concurrent), and done counts up by one
	// each time; items that never ran are not reported, so done may stop
	// short of total when the run is aborted. It runs while the other
	// workers wait to report, so it should be quick, and must not panic.
	Progress func(done, total int)
}

func (o Options) workers() int {
	if o.Workers <= 0 {
		return DefaultWorkers
	}
	return o.Workers
}

// Result is the outcome of one item: its position in the input, the item,
// the value its call returned and the call's error. Err is ErrSkipped for
// an item that never ran and a *PanicError for a call that panicked.
type Result[T, R any] struct {
	Index int
	Item  T
	Value R
	Err   error
}

// OK reports whether the item's call succeeded.
func (r Result[T, R]) OK() bool { return r.Err == nil }

// FailFastError is returned by a skeleton run with Options.FailFast when an
// item failed: the first failure, in the order the calls returned.
type FailFastError struct {
	Index int   // the failed item's position in the input
	Item  any   // the failed item
	Err   error // its error
}

func (e *FailFastError) Error() string {
	return fmt.Sprintf("item %d failed, so the run was aborted (fail-fast): %v", e.Index, e.Err)
}

// Unwrap returns the item's error.
func (e *FailFastError) Unwrap() error { return e.Err }

// PanicError is the error recorded for an item whose function panicked.
type PanicError struct {
	Value any    // what the function panicked with
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value when it is an error, so that errors.Is
// and errors.As see through a panic(err).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// protect calls fn(ctx, item), turning a panic into a *PanicError.
func protect[T, R any](ctx context.Context, fn func(context.Context, T) (R, error), item T) (v R, err error) {
	defer func() {
		if p := recover(); p != nil {
			var zero R
			v, err = zero, &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	return fn(ctx, item)
}

// skipped returns one ErrSkipped result per item, to be filled in.
func skipped[T, R any](items []T) []Result[T, R] {
	rs := make([]Result[T, R], len(items))
	for i, it := range items {
		rs[i] = Result[T, R]{Index: i, Item: it, Err: ErrSkipped}
	}
	return rs
}

// tracker counts finished calls, reports progress and records the first
// failure of a fail-fast run. Its methods are called concurrently.
type tracker struct {
	parent   context.Context
	cancel   context.CancelFunc // cancels the calls' context
	total    int
	failFast bool
	progress func(done, total int)

	mu   sync.Mutex
	done int
	ff   *FailFastError
}

func (t *tracker) finished(index int, item any, err error) {
	if t.progress == nil && (err == nil || !t.failFast) {
		return // nothing to report or record
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// A failure caused by the caller cancelling is not a fail-fast
	// abort: the run ends with ctx.Err() instead.
	if err != nil && t.failFast && t.ff == nil && t.parent.Err() == nil {
		t.ff = &FailFastError{Index: index, Item: item, Err: err}
		t.cancel()
	}
	t.done++
	if t.progress != nil {
		t.progress(t.done, t.total)
	}
}

// err is the error of a run that has ended.
func (t *tracker) err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ff != nil {
		return t.ff
	}
	return t.parent.Err()
}

// Map calls fn on every item, at most opts.Workers at once, and returns one
// result per item in input order. The error is nil when the run completed,
// even if items failed; see the package documentation.
func Map[T, R any](ctx context.Context, items []T, fn func(context.Context, T) (R, error), opts Options) ([]Result[T, R], error) {
	rs := skipped[T, R](items)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := &tracker{parent: ctx, cancel: cancel, total: len(items), failFast: opts.FailFast, progress: opts.Progress}
	var (
		next atomic.Int64 // the next item to start
		wg   sync.WaitGroup
	)
	for range min(opts.workers(), len(items)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(items) || runCtx.Err() != nil {
					return
				}
				v, err := protect(runCtx, fn, items[i])
				rs[i].Value, rs[i].Err = v, err
				var item any // boxed only when needed: it allocates
				if err != nil && opts.FailFast {
					item = items[i]
				}
				t.finished(i, item, err)
			}
		})
	}
	wg.Wait()
	return rs, t.err()
}

// ForEach calls fn on every item, at most opts.Workers at once, and returns
// one result per item in input order, as Map does.
func ForEach[T any](ctx context.Context, items []T, fn func(context.Context, T) error, opts Options) ([]Result[T, struct{}], error) {
	return Map(ctx, items, func(ctx context.Context, it T) (struct{}, error) {
		return struct{}{}, fn(ctx, it)
	}, opts)
}

// Filter calls pred on every item, at most opts.Workers at once, and
// returns the items for which it returned true, in input order. failed
// holds the items whose call failed and those that never ran (ErrSkipped);
// they are not in kept. The error is as for Map.
func Filter[T any](ctx context.Context, items []T, pred func(context.Context, T) (bool, error), opts Options) (kept []T, failed []Result[T, bool], err error) {
	rs, err := Map(ctx, items, pred, opts)
	kept = []T{}
	for _, r := range rs {
		if r.OK() && r.Value {
			kept = append(kept, r.Item)
		}
	}
	return kept, Failures(rs), err
}

// Reduce folds the items in input order, one call at a time: acc =
// fn(ctx, acc, item), starting from initial. It is failure-oblivious: an
// item whose call fails is recorded in its result and left out of the fold
// (acc stays as it was) and the fold goes on; with opts.FailFast it stops
// there instead, the later items get ErrSkipped and the error is a
// *FailFastError. When ctx is done the items not folded yet get ErrSkipped
// and the error is ctx.Err(). The accumulator returned is the fold of the
// items that succeeded. opts.Workers is ignored.
func Reduce[T, A any](ctx context.Context, items []T, initial A, fn func(context.Context, A, T) (A, error), opts Options) (A, []Result[T, struct{}], error) {
	rs := skipped[T, struct{}](items)
	acc := initial
	for i, it := range items {
		if err := ctx.Err(); err != nil {
			return acc, rs, err
		}
		next, err := protect(ctx, func(ctx context.Context, it T) (A, error) { return fn(ctx, acc, it) }, it)
		rs[i].Err = err
		if err == nil {
			acc = next
		}
		if opts.Progress != nil {
			opts.Progress(i+1, len(items))
		}
		if err != nil && opts.FailFast && ctx.Err() == nil {
			return acc, rs, &FailFastError{Index: i, Item: it, Err: err}
		}
	}
	return acc, rs, ctx.Err()
}

// MapReduce calls mapFn on every item in parallel, as Map does, then folds
// the values of the items that succeeded, in input order, with reduceFn,
// starting from initial. reduceFn runs on the caller's goroutine, one call
// at a time; it should be a quick, pure combination. A panic in reduceFn is
// recovered and recorded as that item's error, and the item is left out of
// the fold (with opts.FailFast the fold stops there and the error is a
// *FailFastError). When the map phase was aborted the accumulator folds the
// items that did succeed, and the error says why the run is incomplete.
func MapReduce[T, R, A any](ctx context.Context, items []T, mapFn func(context.Context, T) (R, error), initial A, reduceFn func(A, R) A, opts Options) (A, []Result[T, R], error) {
	rs, err := Map(ctx, items, mapFn, opts)
	acc := initial
	for i := range rs {
		if !rs[i].OK() {
			continue
		}
		next, perr := protect(ctx, func(_ context.Context, v R) (A, error) { return reduceFn(acc, v), nil }, rs[i].Value)
		if perr != nil {
			rs[i].Err = perr
			if opts.FailFast && err == nil {
				return acc, rs, &FailFastError{Index: i, Item: rs[i].Item, Err: perr}
			}
			continue
		}
		acc = next
	}
	return acc, rs, err
}

// Failures returns the results whose item failed or never ran, in order.
// The slice is empty, never nil, when there are none.
func Failures[T, R any](rs []Result[T, R]) []Result[T, R] {
	out := []Result[T, R]{}
	for _, r := range rs {
		if !r.OK() {
			out = append(out, r)
		}
	}
	return out
}

// Successes returns the results whose item succeeded, in order. The slice
// is empty, never nil, when there are none.
func Successes[T, R any](rs []Result[T, R]) []Result[T, R] {
	out := []Result[T, R]{}
	for _, r := range rs {
		if r.OK() {
			out = append(out, r)
		}
	}
	return out
}
