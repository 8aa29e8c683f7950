package resource

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeStrict: DecodeStrict never panics, and what it accepts
// encoding/json accepts too, with the same result (exactness only
// refuses more).
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","labels":{"k":"v"},"spec":{"cpus":1,"memory_mib":1}}`,
		`{"name":"a","NAME":"b"}`,
		`{"\u212aind":"vm"}`,
		`{"spec":{"boot":{"zzz":1}}}`,
		`{"labels":{"k":"\ud800"}}`,
		`[1,{"a":[{}]}]`,
		`{"name":"a","name":"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var strict CreateRequest
		if err := DecodeStrict(data, &strict, ""); err != nil {
			return
		}
		var loose CreateRequest
		if err := decodeTolerant(data, &loose, ""); err != nil {
			t.Fatalf("DecodeStrict accepted %q, encoding/json did not: %v", data, err)
		}
		if !reflect.DeepEqual(strict, loose) {
			a, _ := json.Marshal(strict)
			b, _ := json.Marshal(loose)
			t.Fatalf("%q: strict %s, tolerant %s", data, a, b)
		}
		if strict.Spec != nil {
			_, _ = NormalizeRequestSpec(KindVM, strict.Spec)
		}
	})
}
