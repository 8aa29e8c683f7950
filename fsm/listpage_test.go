package fsm_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// TestListPageMatchesList: walking a kind in pages (any limit, from any
// start, with a selector and a keep filter) gives exactly the objects List
// gives, in the same order, each once, never one of another kind (the VMs
// sit between hosts and volumes in the index), and every page's next is
// the first object of the page after it.
func TestListPageMatchesList(t *testing.T) {
	f := fsm.New(fsm.Config{})
	idx := uint64(0)
	create := func(kind resource.Kind, name string, labels map[string]string, spec string) {
		idx++
		fsm.TestMustApply(t, f, idx, fsm.CreateRequestType, &fsm.CreateRequest{Time: fsm.TestTime, Kind: kind, Name: name,
			ID: fsm.TestID(idx), Labels: labels, Spec: json.RawMessage(spec)})
	}
	for _, n := range []string{"a", "vm-z", "z"} {
		create(resource.KindVolume, n, nil, `{"size_mib":1}`)
	}
	for i := range 40 {
		create(resource.KindVM, fmt.Sprintf("v%d", i), map[string]string{"tier": []string{"web", "db"}[i%2]}, `{"cpus":1,"memory_mib":64}`)
	}
	st := f.State()
	rapid.Check(t, func(t *rapid.T) {
		sel := resource.Selector(nil)
		if rapid.Bool().Draw(t, "selector") {
			sel, _ = resource.ParseSelector("tier=web")
		}
		var keep func(*resource.Object) bool
		if rapid.Bool().Draw(t, "keep") {
			keep = func(o *resource.Object) bool { return len(o.Name)%2 == 0 } // v10..v39 have 3 bytes
		}
		limit := rapid.IntRange(1, 50).Draw(t, "limit")
		start := rapid.SampledFrom([]string{"", "a", "v1", "v15", "v3", "v39", "v4", "vm", "w"}).Draw(t, "start")
		all, err := st.List(nil, resource.KindVM, sel)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, o := range all {
			if o.Name >= start && (keep == nil || keep(o)) {
				want = append(want, o.Name)
			}
		}
		var got []string
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatalf("more than 100 pages")
			}
			page, next, _, err := st.ListPageWithIndex(nil, resource.KindVM, sel, start, limit, keep)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > limit || next != "" && len(page) != limit {
				t.Fatalf("page of %d (limit %d), next %q", len(page), limit, next)
			}
			for _, o := range page {
				if o.Kind != resource.KindVM {
					t.Fatalf("a %s in a list of VMs", o.Kind)
				}
				got = append(got, o.Name)
			}
			if next == "" {
				break
			}
			start = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("pages gave %v, List %v", got, want)
		}
	})
}
