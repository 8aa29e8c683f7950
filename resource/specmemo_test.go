package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

func init() { checkSpecMemo = true } // every memo hit in this package's tests is recomputed and compared

// TestSpecMemo: NormalizeSpec and NormalizeRequestSpec answer the same for
// a spec seen before (checkSpecMemo recomputes each hit), hand out copies
// the caller may change, never remember an error, and stay bounded.
func TestSpecMemo(t *testing.T) {
	raw := json.RawMessage(`{"cpus":3,"memory_mib":96}`)
	for name, f := range map[string]func(Kind, json.RawMessage) (json.RawMessage, error){
		"NormalizeSpec": NormalizeSpec, "NormalizeRequestSpec": NormalizeRequestSpec,
	} {
		first, err := f(KindVM, raw)
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Clone(first)
		first[0] = 'X' // the caller's copy
		again, err := f(KindVM, raw)
		if err != nil || !bytes.Equal(again, want) {
			t.Fatalf("%s again: %s, %v; want %s", name, again, err, want)
		}
		for range 2 {
			if _, err := f(KindVM, json.RawMessage(`{"cpus":-1,"memory_mib":96}`)); err == nil {
				t.Fatalf("%s accepted a negative cpus", name)
			}
		}
	}
	// A strict request rule is not skipped for a spec the log's rules took.
	dup := json.RawMessage(`{"cpus":1,"cpus":2,"memory_mib":64}`)
	if _, err := NormalizeSpec(KindVM, dup); err != nil {
		t.Fatalf("the log's rules take a duplicate key (the last wins): %v", err)
	}
	if _, err := NormalizeRequestSpec(KindVM, dup); err == nil {
		t.Fatal("a request with a duplicate key accepted after the log's rules took it")
	}
	for i := range specMemoEntries + 10 {
		if _, err := NormalizeSpec(KindVM, json.RawMessage(fmt.Sprintf(`{"cpus":1,"memory_mib":%d}`, 64+i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := logSpecs.n; n > specMemoEntries {
		t.Fatalf("the memo holds %d specs, over its bound %d", n, specMemoEntries)
	}
}
