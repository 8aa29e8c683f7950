package skel_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kumoi/kumoi/skel"
)

// Stop a set of VMs, four at a time. One of them fails; the others go on,
// and the failure is reported with its item.
func ExampleForEach() {
	vms := []string{"web-1", "web-2", "db-1", "web-3"}
	stop := func(ctx context.Context, name string) error {
		if name == "db-1" {
			return errors.New("vm is migrating")
		}
		return nil // a real program would call the SDK here
	}
	rs, err := skel.ForEach(context.Background(), vms, stop, skel.Options{Workers: 4})
	if err != nil {
		fmt.Println("run aborted:", err)
		return
	}
	fmt.Println("stopped:", len(skel.Successes(rs)))
	for _, f := range skel.Failures(rs) {
		fmt.Printf("%s: %v\n", f.Item, f.Err)
	}
	// Output:
	// stopped: 3
	// db-1: vm is migrating
}

// Results come back in input order, whatever order the calls finish in.
func ExampleMap() {
	hosts := []string{"hv-1", "hv-2", "hv-3"}
	rs, err := skel.Map(context.Background(), hosts, func(_ context.Context, h string) (int, error) {
		return len(h) * 10, nil // e.g. the host's free memory
	}, skel.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range rs {
		fmt.Println(r.Index, r.Item, r.Value)
	}
	// Output:
	// 0 hv-1 40
	// 1 hv-2 40
	// 2 hv-3 40
}

// With FailFast the first failure cancels the calls still running and
// skips the items not started yet.
func ExampleMap_failFast() {
	items := []int{1, 2, 3, 4, 5}
	rs, err := skel.Map(context.Background(), items, func(_ context.Context, i int) (int, error) {
		if i == 3 {
			return 0, errors.New("host unreachable")
		}
		return i * i, nil
	}, skel.Options{Workers: 1, FailFast: true})
	fmt.Println(err)
	for _, r := range rs {
		fmt.Println(r.Item, r.Value, r.Err)
	}
	// Output:
	// item 2 failed, so the run was aborted (fail-fast): host unreachable
	// 1 1 <nil>
	// 2 4 <nil>
	// 3 0 host unreachable
	// 4 0 skipped: the run was aborted or cancelled before this item started
	// 5 0 skipped: the run was aborted or cancelled before this item started
}

// Keep the hosts that have room, checking them in parallel.
func ExampleFilter() {
	free := map[string]int{"hv-1": 512, "hv-2": 4096, "hv-3": 8192}
	hosts := []string{"hv-1", "hv-2", "hv-3", "hv-4"}
	kept, failed, err := skel.Filter(context.Background(), hosts, func(_ context.Context, h string) (bool, error) {
		mib, ok := free[h]
		if !ok {
			return false, fmt.Errorf("host %s is down", h)
		}
		return mib >= 2048, nil
	}, skel.Options{Workers: 2})
	fmt.Println(kept, err)
	for _, f := range failed {
		fmt.Println(f.Err)
	}
	// Output:
	// [hv-2 hv-3] <nil>
	// host hv-4 is down
}

// A fold in input order; a failing item is left out and recorded.
func ExampleReduce() {
	words := []string{"kumoi", "", "manages", "clouds"}
	sentence, rs, err := skel.Reduce(context.Background(), words, "", func(_ context.Context, acc, w string) (string, error) {
		if w == "" {
			return acc, errors.New("empty word")
		}
		return strings.TrimSpace(acc + " " + w), nil
	}, skel.Options{})
	fmt.Printf("%q %v\n", sentence, err)
	for _, f := range skel.Failures(rs) {
		fmt.Println(f.Index, f.Err)
	}
	// Output:
	// "kumoi manages clouds" <nil>
	// 1 empty word
}

// Sum the memory of VMs read in parallel; the VM that cannot be read is
// left out of the sum and reported.
func ExampleMapReduce() {
	memory := map[string]int{"a": 512, "b": 1024, "d": 256}
	names := []string{"a", "b", "c", "d"}
	total, rs, err := skel.MapReduce(context.Background(), names, func(_ context.Context, n string) (int, error) {
		mib, ok := memory[n]
		if !ok {
			return 0, fmt.Errorf("vm %q not found", n)
		}
		return mib, nil
	}, 0, func(acc, mib int) int { return acc + mib }, skel.Options{Workers: 8})
	fmt.Println(total, err)
	for _, f := range skel.Failures(rs) {
		fmt.Println(f.Err)
	}
	// Output:
	// 1792 <nil>
	// vm "c" not found
}
