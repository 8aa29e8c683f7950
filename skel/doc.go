// Package skel provides parallel skeletons: Map, ForEach, Filter, Reduce and
// MapReduce over a slice, with bounded concurrency, context cancellation,
// progress callbacks and failure-oblivious results. They are how Kumoi code
// and scripts act on many hosts or VMs at once ("stop every VM labelled
// tier=batch, 8 at a time") instead of looping over them one by one.
//
// # Failure-oblivious results
//
// A skeleton runs its function once per item and returns one Result per
// item, in input order, whatever order the calls finished in. An item whose
// call failed does not stop the others: its Result carries the item and the
// error, and Failures and Successes split the results. The returned error
// says whether the run itself completed:
//
//   - nil: every item ran (some may have failed; look at the results);
//   - ctx.Err(): ctx was done before the run ended; the items that had not
//     started by then were not run and have the error ErrSkipped;
//   - *FailFastError: Options.FailFast was set and an item failed; the
//     context passed to the calls still running was cancelled and the items
//     not started yet have ErrSkipped.
//
// A panic in a function is recovered and recorded as that item's error (a
// *PanicError carrying the panic value and the stack); it never crashes the
// caller.
//
// # Concurrency
//
// At most Options.Workers calls run at once (16 when Workers <= 0); items
// are started in input order. Workers: 1 runs the items one after another,
// in order. Every skeleton returns only after all the calls it started have
// returned, so it leaves no goroutine behind. Reduce is a sequential fold
// and runs one call at a time whatever Workers says.
//
// The package depends on the standard library only; it knows nothing of
// Kumoi's objects. It must not start work it does not wait for.
package skel
