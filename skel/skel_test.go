package skel_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/skel"
)

// The tests in this file do not run in parallel: some of them count the
// process's goroutines.

var errBoom = errors.New("boom")

// noLeak fails the test if the process does not get back to at most
// before goroutines.
func noLeak(tb testing.TB, before int) {
	tb.Helper()
	testcluster.WaitFor(tb, 10*time.Second, "the goroutines to end", func() (bool, error) {
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			return false, fmt.Errorf("%d goroutines, want at most %d:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return true, nil
	})
}

// recv receives from ch or fails the test after a deadline.
func recv[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		tb.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func ints(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// peak tracks how many calls run at once.
type peak struct{ running, max atomic.Int64 }

func (p *peak) enter() {
	cur := p.running.Add(1)
	for {
		m := p.max.Load()
		if cur <= m || p.max.CompareAndSwap(m, cur) {
			return
		}
	}
}

func (p *peak) leave() { p.running.Add(-1) }

func TestMapOrderAndValues(t *testing.T) {
	items := ints(1000)
	rs, err := skel.Map(context.Background(), items, func(_ context.Context, i int) (string, error) {
		for range i % 7 { // finish out of order
			runtime.Gosched()
		}
		return fmt.Sprint(i * i), nil
	}, skel.Options{Workers: 8})
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	if len(rs) != len(items) {
		t.Fatalf("%d results, want %d", len(rs), len(items))
	}
	for i, r := range rs {
		if r.Index != i || r.Item != i || r.Value != fmt.Sprint(i*i) || r.Err != nil || !r.OK() {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
}

func TestEmptyInput(t *testing.T) {
	ctx := context.Background()
	called := false
	opts := skel.Options{Progress: func(int, int) { called = true }}
	for _, items := range [][]int{nil, {}} {
		rs, err := skel.Map(ctx, items, func(context.Context, int) (int, error) { called = true; return 0, nil }, opts)
		if err != nil || rs == nil || len(rs) != 0 {
			t.Errorf("Map(%v) = %v, %v; want an empty slice", items, rs, err)
		}
		fe, err := skel.ForEach(ctx, items, func(context.Context, int) error { called = true; return nil }, opts)
		if err != nil || len(fe) != 0 {
			t.Errorf("ForEach(%v) = %v, %v", items, fe, err)
		}
		kept, failed, err := skel.Filter(ctx, items, func(context.Context, int) (bool, error) { called = true; return true, nil }, opts)
		if err != nil || kept == nil || len(kept) != 0 || failed == nil || len(failed) != 0 {
			t.Errorf("Filter(%v) = %v, %v, %v; want empty slices", items, kept, failed, err)
		}
		acc, rrs, err := skel.Reduce(ctx, items, 42, func(context.Context, int, int) (int, error) { called = true; return 0, nil }, opts)
		if err != nil || acc != 42 || len(rrs) != 0 {
			t.Errorf("Reduce(%v) = %d, %v, %v; want the initial value", items, acc, rrs, err)
		}
		macc, mrs, err := skel.MapReduce(ctx, items, func(context.Context, int) (int, error) { called = true; return 0, nil },
			"x", func(string, int) string { called = true; return "" }, opts)
		if err != nil || macc != "x" || len(mrs) != 0 {
			t.Errorf("MapReduce(%v) = %q, %v, %v; want the initial value", items, macc, mrs, err)
		}
	}
	if called {
		t.Error("a function or Progress was called for empty input")
	}
}

func TestInjectedFailures(t *testing.T) {
	ctx := context.Background()
	items := ints(100)
	fails := func(i int) bool { return i%7 == 3 }
	fn := func(_ context.Context, i int) (int, error) {
		if fails(i) {
			return -1, fmt.Errorf("item %d: %w", i, errBoom)
		}
		return 2 * i, nil
	}
	rs, err := skel.Map(ctx, items, fn, skel.Options{Workers: 5})
	if err != nil {
		t.Fatalf("Map: %v; want nil (failure-oblivious)", err)
	}
	var wantFailed, wantOK []int
	for _, i := range items {
		if fails(i) {
			wantFailed = append(wantFailed, i)
		} else {
			wantOK = append(wantOK, i)
		}
	}
	indexes := func(rs []skel.Result[int, int]) []int {
		var out []int
		for _, r := range rs {
			out = append(out, r.Index)
		}
		return out
	}
	failed, ok := skel.Failures(rs), skel.Successes(rs)
	if !slices.Equal(indexes(failed), wantFailed) || !slices.Equal(indexes(ok), wantOK) {
		t.Fatalf("failures %v, successes %v", indexes(failed), indexes(ok))
	}
	for _, r := range failed {
		if !errors.Is(r.Err, errBoom) || r.Item != r.Index || r.Value != -1 || r.OK() {
			t.Errorf("failed result %+v", r)
		}
	}
	for _, r := range ok {
		if r.Value != 2*r.Index {
			t.Errorf("result %+v", r)
		}
	}

	// The other skeletons record the same failures and go on.
	fe, err := skel.ForEach(ctx, items, func(ctx context.Context, i int) error { _, err := fn(ctx, i); return err }, skel.Options{Workers: 3})
	if err != nil || len(skel.Failures(fe)) != len(wantFailed) {
		t.Errorf("ForEach: %d failures, %v", len(skel.Failures(fe)), err)
	}
	kept, ffailed, err := skel.Filter(ctx, items, func(ctx context.Context, i int) (bool, error) {
		_, err := fn(ctx, i)
		return i%2 == 0, err
	}, skel.Options{})
	var wantKept []int
	for _, i := range wantOK {
		if i%2 == 0 {
			wantKept = append(wantKept, i)
		}
	}
	if err != nil || !slices.Equal(kept, wantKept) || len(ffailed) != len(wantFailed) || ffailed[0].Index != wantFailed[0] {
		t.Errorf("Filter = %v, %v, %v", kept, ffailed, err)
	}
	sum, rrs, err := skel.Reduce(ctx, items, 0, func(ctx context.Context, acc, i int) (int, error) {
		v, err := fn(ctx, i)
		return acc + v + 1000000, err // a failing item's acc is dropped
	}, skel.Options{})
	wantSum := 0
	for _, i := range wantOK {
		wantSum += 2*i + 1000000
	}
	if err != nil || sum != wantSum || len(skel.Failures(rrs)) != len(wantFailed) {
		t.Errorf("Reduce = %d, %d failures, %v; want %d", sum, len(skel.Failures(rrs)), err, wantSum)
	}
	msum, mrs, err := skel.MapReduce(ctx, items, fn, 0, func(acc, v int) int { return acc + v + 1000000 }, skel.Options{Workers: 7})
	if err != nil || msum != wantSum || len(skel.Failures(mrs)) != len(wantFailed) {
		t.Errorf("MapReduce = %d, %v; want %d", msum, err, wantSum)
	}
}

func TestBoundedConcurrency(t *testing.T) {
	for _, tc := range []struct{ workers, want int }{{1, 1}, {3, 3}, {16, 16}, {0, skel.DefaultWorkers}, {-5, skel.DefaultWorkers}} {
		t.Run(fmt.Sprint(tc.workers), func(t *testing.T) {
			const n = 60
			var (
				p       peak
				arrived atomic.Int64
				started = make(chan int, n)
				gate    = make(chan struct{})
			)
			done := make(chan error, 1)
			go func() {
				_, err := skel.Map(context.Background(), ints(n), func(_ context.Context, i int) (int, error) {
					p.enter()
					defer p.leave()
					// The first wave blocks until the test has seen it whole:
					// a call beyond the limit would raise the peak.
					if arrived.Add(1) <= int64(tc.want) {
						started <- i
						<-gate
					}
					return i, nil
				}, skel.Options{Workers: tc.workers})
				done <- err
			}()
			for range tc.want {
				recv(t, started, "the first wave of calls")
			}
			close(gate)
			if err := recv(t, done, "Map"); err != nil {
				t.Fatal(err)
			}
			if got := p.max.Load(); got != int64(tc.want) {
				t.Fatalf("at most %d calls ran at once, want %d", got, tc.want)
			}
		})
	}
}

func TestOneWorkerIsSequential(t *testing.T) {
	var (
		p     peak
		mu    sync.Mutex
		order []int
	)
	_, err := skel.ForEach(context.Background(), ints(50), func(_ context.Context, i int) error {
		p.enter()
		defer p.leave()
		mu.Lock()
		order = append(order, i)
		mu.Unlock()
		runtime.Gosched()
		return nil
	}, skel.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order, ints(50)) || p.max.Load() != 1 {
		t.Fatalf("order %v, peak %d; want input order, one at a time", order, p.max.Load())
	}
}

func TestCancelMidRun(t *testing.T) {
	before := runtime.NumGoroutine()
	const n, workers, cancelAt = 100, 2, 10
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ran [n]atomic.Bool
	rs, err := skel.Map(ctx, ints(n), func(callCtx context.Context, i int) (int, error) {
		ran[i].Store(true)
		switch {
		case i == cancelAt:
			cancel()
		case i > cancelAt:
			// Items are claimed in order, so the other workers can be at
			// most one item each past cancelAt; holding them there until
			// the cancel makes "nothing starts after it" deterministic
			// (otherwise a fast worker could legally race far ahead of
			// the one that cancels).
			<-callCtx.Done()
		}
		return i, nil
	}, skel.Options{Workers: workers})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	skippedN := 0
	for i, r := range rs {
		switch {
		case ran[i].Load() && r.Err != nil:
			t.Errorf("item %d ran but has error %v", i, r.Err)
		case !ran[i].Load() && !errors.Is(r.Err, skel.ErrSkipped):
			t.Errorf("item %d never ran but has error %v, want ErrSkipped", i, r.Err)
		case i >= cancelAt+workers && ran[i].Load():
			t.Errorf("item %d ran after the cancel", i)
		}
		if errors.Is(r.Err, skel.ErrSkipped) {
			skippedN++
			if r.Item != i || r.Index != i {
				t.Errorf("skipped result %+v lost its item", r)
			}
		}
	}
	if skippedN < n-cancelAt-workers {
		t.Errorf("%d items skipped, want at least %d", skippedN, n-cancelAt-workers)
	}
	noLeak(t, before)
}

func TestCancelWhileCallsBlock(t *testing.T) {
	before := runtime.NumGoroutine()
	const n, workers = 40, 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan int, n)
	type out struct {
		rs  []skel.Result[int, struct{}]
		err error
	}
	done := make(chan out, 1)
	go func() {
		rs, err := skel.ForEach(ctx, ints(n), func(ctx context.Context, i int) error {
			started <- i
			<-ctx.Done()
			return ctx.Err()
		}, skel.Options{Workers: workers})
		done <- out{rs, err}
	}()
	var first []int
	for range workers {
		first = append(first, recv(t, started, "the first calls"))
	}
	cancel()
	o := recv(t, done, "ForEach after cancel")
	if !errors.Is(o.err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", o.err)
	}
	for i, r := range o.rs {
		if slices.Contains(first, i) {
			if !errors.Is(r.Err, context.Canceled) {
				t.Errorf("running item %d: %v, want its own context.Canceled", i, r.Err)
			}
		} else if !errors.Is(r.Err, skel.ErrSkipped) {
			t.Errorf("item %d: %v, want ErrSkipped", i, r.Err)
		}
	}
	if len(started) != 0 {
		t.Errorf("%d more calls started after the cancel", len(started))
	}
	noLeak(t, before)
}

func TestCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var calls atomic.Int64
	rs, err := skel.Map(ctx, ints(10), func(context.Context, int) (int, error) { calls.Add(1); return 0, nil }, skel.Options{})
	if !errors.Is(err, context.Canceled) || calls.Load() != 0 || len(skel.Failures(rs)) != 10 || !errors.Is(rs[9].Err, skel.ErrSkipped) {
		t.Fatalf("Map on a cancelled ctx = %d failures, %d calls, %v", len(skel.Failures(rs)), calls.Load(), err)
	}
	acc, rrs, err := skel.Reduce(ctx, ints(10), 7, func(context.Context, int, int) (int, error) { calls.Add(1); return 0, nil }, skel.Options{})
	if !errors.Is(err, context.Canceled) || acc != 7 || calls.Load() != 0 || !errors.Is(rrs[0].Err, skel.ErrSkipped) {
		t.Fatalf("Reduce on a cancelled ctx = %d, %v, %d calls", acc, err, calls.Load())
	}
}

func TestFailFast(t *testing.T) {
	t.Run("sequential", func(t *testing.T) {
		var calls atomic.Int64
		rs, err := skel.Map(context.Background(), ints(10), func(_ context.Context, i int) (int, error) {
			calls.Add(1)
			if i == 3 {
				return 0, errBoom
			}
			return i, nil
		}, skel.Options{Workers: 1, FailFast: true})
		var ff *skel.FailFastError
		if !errors.As(err, &ff) || ff.Index != 3 || ff.Item != 3 || !errors.Is(err, errBoom) {
			t.Fatalf("err = %#v, want a FailFastError for item 3", err)
		}
		if !strings.Contains(err.Error(), "item 3") || !strings.Contains(err.Error(), "boom") {
			t.Errorf("message %q", err)
		}
		for i, r := range rs {
			switch {
			case i < 3 && (r.Err != nil || r.Value != i):
				t.Errorf("item %d: %+v", i, r)
			case i == 3 && !errors.Is(r.Err, errBoom):
				t.Errorf("item 3: %v", r.Err)
			case i > 3 && !errors.Is(r.Err, skel.ErrSkipped):
				t.Errorf("item %d: %v, want ErrSkipped", i, r.Err)
			}
		}
		if calls.Load() != 4 {
			t.Errorf("%d calls, want 4", calls.Load())
		}
	})

	t.Run("cancels running calls", func(t *testing.T) {
		before := runtime.NumGoroutine()
		zeroStarted := make(chan struct{})
		rs, err := skel.Map(context.Background(), ints(50), func(ctx context.Context, i int) (int, error) {
			switch i {
			case 0:
				close(zeroStarted)
			case 1:
				<-zeroStarted
				return 0, errBoom
			}
			<-ctx.Done() // the others run until the abort
			return 0, ctx.Err()
		}, skel.Options{Workers: 4, FailFast: true})
		var ff *skel.FailFastError
		if !errors.As(err, &ff) || ff.Index != 1 || !errors.Is(ff, errBoom) {
			t.Fatalf("err = %v, want a FailFastError for item 1", err)
		}
		if !errors.Is(rs[0].Err, context.Canceled) || !errors.Is(rs[1].Err, errBoom) {
			t.Errorf("items 0, 1: %v, %v", rs[0].Err, rs[1].Err)
		}
		for _, r := range rs[2:4] { // started or not, depending on timing
			if !errors.Is(r.Err, context.Canceled) && !errors.Is(r.Err, skel.ErrSkipped) {
				t.Errorf("item %d: %v", r.Index, r.Err)
			}
		}
		for _, r := range rs[4:] {
			if !errors.Is(r.Err, skel.ErrSkipped) {
				t.Errorf("item %d: %v, want ErrSkipped", r.Index, r.Err)
			}
		}
		noLeak(t, before)
	})

	t.Run("caller cancel wins", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := skel.Map(ctx, ints(20), func(ctx context.Context, i int) (int, error) {
			if i == 0 {
				cancel()
				return 0, ctx.Err() // a failure caused by the caller's cancel
			}
			return i, nil
		}, skel.Options{Workers: 1, FailFast: true})
		var ff *skel.FailFastError
		if errors.As(err, &ff) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})

	t.Run("filter", func(t *testing.T) {
		kept, failed, err := skel.Filter(context.Background(), ints(10), func(_ context.Context, i int) (bool, error) {
			if i == 5 {
				return false, errBoom
			}
			return true, nil
		}, skel.Options{Workers: 1, FailFast: true})
		if !errors.Is(err, errBoom) || !slices.Equal(kept, ints(5)) || len(failed) != 5 || failed[0].Index != 5 || !errors.Is(failed[1].Err, skel.ErrSkipped) {
			t.Fatalf("Filter = %v, %v, %v", kept, failed, err)
		}
	})

	t.Run("reduce", func(t *testing.T) {
		acc, rs, err := skel.Reduce(context.Background(), ints(10), 0, func(_ context.Context, acc, i int) (int, error) {
			if i == 4 {
				return 999, errBoom
			}
			return acc + i, nil
		}, skel.Options{FailFast: true})
		var ff *skel.FailFastError
		if !errors.As(err, &ff) || ff.Index != 4 || acc != 0+1+2+3 || !errors.Is(rs[5].Err, skel.ErrSkipped) || rs[3].Err != nil {
			t.Fatalf("Reduce = %d, %v", acc, err)
		}
	})

	t.Run("mapreduce", func(t *testing.T) {
		acc, rs, err := skel.MapReduce(context.Background(), ints(10), func(_ context.Context, i int) (int, error) {
			if i == 2 {
				return 0, errBoom
			}
			return i, nil
		}, 0, func(acc, v int) int { return acc + v }, skel.Options{Workers: 1, FailFast: true})
		if !errors.Is(err, errBoom) || acc != 0+1 || !errors.Is(rs[3].Err, skel.ErrSkipped) {
			t.Fatalf("MapReduce = %d, %v", acc, err)
		}
	})
}

func TestProgress(t *testing.T) {
	const n = 200
	var (
		inside    atomic.Bool
		seen      []int
		wantTotal = n
	)
	progress := func(done, total int) {
		if !inside.CompareAndSwap(false, true) {
			t.Error("Progress called concurrently")
		}
		defer inside.Store(false)
		if total != wantTotal {
			t.Errorf("total %d, want %d", total, wantTotal)
		}
		seen = append(seen, done)
		runtime.Gosched()
	}
	_, err := skel.Map(context.Background(), ints(n), func(_ context.Context, i int) (int, error) {
		if i%10 == 0 {
			return 0, errBoom // failures count as finished too
		}
		return i, nil
	}, skel.Options{Workers: 8, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, ints(n + 1)[1:]) {
		t.Fatalf("progress reported %v, want 1..%d", seen, n)
	}

	// Skipped items are not reported.
	seen = nil
	_, err = skel.ForEach(context.Background(), ints(n), func(_ context.Context, i int) error {
		if i == 9 {
			return errBoom
		}
		return nil
	}, skel.Options{Workers: 1, FailFast: true, Progress: progress})
	if !errors.Is(err, errBoom) || !slices.Equal(seen, ints(11)[1:]) {
		t.Fatalf("fail-fast progress %v, %v; want 1..10", seen, err)
	}

	seen, wantTotal = nil, 5
	_, _, err = skel.Reduce(context.Background(), ints(5), 0, func(_ context.Context, acc, i int) (int, error) {
		return acc + i, nil
	}, skel.Options{Progress: progress})
	if err != nil || !slices.Equal(seen, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("Reduce progress %v, %v", seen, err)
	}
}

func TestPanicsAreRecorded(t *testing.T) {
	before := runtime.NumGoroutine()
	rs, err := skel.Map(context.Background(), ints(20), func(_ context.Context, i int) (int, error) {
		switch i {
		case 5:
			panic("kaboom")
		case 6:
			panic(fmt.Errorf("wrapped: %w", errBoom))
		case 7:
			zero := i - 7
			_ = i / zero // a runtime error
		}
		return i, nil
	}, skel.Options{Workers: 4})
	if err != nil {
		t.Fatalf("err = %v, want nil: a panic is an item failure", err)
	}
	var pe *skel.PanicError
	if !errors.As(rs[5].Err, &pe) || pe.Value != "kaboom" || len(pe.Stack) == 0 || rs[5].Err.Error() != "panic: kaboom" {
		t.Errorf("item 5: %#v", rs[5].Err)
	}
	if !errors.Is(rs[6].Err, errBoom) {
		t.Errorf("item 6: %v, want it to match the error it panicked with", rs[6].Err)
	}
	if !errors.As(rs[7].Err, &pe) || !strings.Contains(rs[7].Err.Error(), "divide by zero") {
		t.Errorf("item 7: %v", rs[7].Err)
	}
	if len(skel.Failures(rs)) != 3 {
		t.Errorf("%d failures, want 3", len(skel.Failures(rs)))
	}

	// With fail-fast, a panic aborts like any failure.
	_, err = skel.ForEach(context.Background(), ints(20), func(_ context.Context, i int) error {
		if i == 2 {
			panic("stop")
		}
		return nil
	}, skel.Options{Workers: 1, FailFast: true})
	var ff *skel.FailFastError
	if !errors.As(err, &ff) || ff.Index != 2 || !errors.As(err, &pe) {
		t.Errorf("fail-fast panic: %v", err)
	}

	acc, rrs, err := skel.Reduce(context.Background(), ints(5), 0, func(_ context.Context, acc, i int) (int, error) {
		if i == 1 {
			panic("in fold")
		}
		return acc + i, nil
	}, skel.Options{})
	if err != nil || acc != 0+2+3+4 || !errors.As(rrs[1].Err, &pe) {
		t.Errorf("Reduce with a panic = %d, %v, %v", acc, rrs[1].Err, err)
	}

	macc, mrs, err := skel.MapReduce(context.Background(), ints(5), func(_ context.Context, i int) (int, error) { return i, nil },
		0, func(acc, v int) int {
			if v == 3 {
				panic("in reduce")
			}
			return acc + v
		}, skel.Options{})
	if err != nil || macc != 0+1+2+4 || !errors.As(mrs[3].Err, &pe) || mrs[3].Value != 3 {
		t.Errorf("MapReduce with a panicking reduce = %d, %+v, %v", macc, mrs[3], err)
	}
	_, _, err = skel.MapReduce(context.Background(), ints(5), func(_ context.Context, i int) (int, error) { return i, nil },
		0, func(acc, v int) int {
			if v == 3 {
				panic("in reduce")
			}
			return acc + v
		}, skel.Options{FailFast: true})
	if !errors.As(err, &ff) || ff.Index != 3 {
		t.Errorf("fail-fast MapReduce with a panicking reduce: %v", err)
	}
	noLeak(t, before)
}

func TestReduceIsSequentialInOrder(t *testing.T) {
	var p peak
	acc, rs, err := skel.Reduce(context.Background(), []string{"a", "b", "c", "d"}, "", func(_ context.Context, acc, s string) (string, error) {
		p.enter()
		defer p.leave()
		return acc + s, nil
	}, skel.Options{Workers: 8})
	if err != nil || acc != "abcd" || len(skel.Successes(rs)) != 4 || p.max.Load() != 1 {
		t.Fatalf("Reduce = %q, %v, peak %d", acc, err, p.max.Load())
	}
}

func TestReduceCancelMidRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	acc, rs, err := skel.Reduce(ctx, ints(10), 0, func(_ context.Context, acc, i int) (int, error) {
		if i == 4 {
			cancel()
		}
		return acc + i, nil
	}, skel.Options{})
	if !errors.Is(err, context.Canceled) || acc != 0+1+2+3+4 || rs[4].Err != nil || !errors.Is(rs[5].Err, skel.ErrSkipped) {
		t.Fatalf("Reduce = %d, %v, item 5 %v", acc, err, rs[5].Err)
	}
}

func TestMapReduceAbortedKeepsPartialFold(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	acc, _, err := skel.MapReduce(ctx, ints(10), func(_ context.Context, i int) (int, error) {
		if i == 3 {
			cancel()
		}
		return i, nil
	}, 0, func(acc, v int) int { return acc + v }, skel.Options{Workers: 1})
	if !errors.Is(err, context.Canceled) || acc != 0+1+2+3 {
		t.Fatalf("MapReduce = %d, %v; want 6 and context.Canceled", acc, err)
	}
}

func TestConcurrentStress(t *testing.T) {
	// For the race detector: many items, many workers, shared results.
	var total atomic.Int64
	rs, err := skel.Map(context.Background(), ints(5000), func(_ context.Context, i int) (int, error) {
		total.Add(int64(i))
		return i, nil
	}, skel.Options{Workers: 64, Progress: func(int, int) {}})
	if err != nil || len(skel.Successes(rs)) != 5000 || total.Load() != 5000*4999/2 {
		t.Fatalf("%d successes, total %d, %v", len(skel.Successes(rs)), total.Load(), err)
	}
}

func BenchmarkMap10000(b *testing.B) {
	items := ints(10000)
	ctx := context.Background()
	fn := func(_ context.Context, i int) (int, error) { return i * 2, nil }
	for b.Loop() {
		if _, err := skel.Map(ctx, items, fn, skel.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
