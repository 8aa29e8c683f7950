package resource

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"unicode/utf8"
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

// FuzzCheckExactScanner: the byte scanner CheckExact uses on well-formed
// input finds exactly what the token checker finds (the same first error,
// or none), for request shapes and for any shape.
func FuzzCheckExactScanner(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","labels":{"k":"v"},"spec":{"cpus":1,"memory_mib":1}}`,
		`{"name":"a","NAME":"b"}`,
		`{"\u212aind":"vm"}`,
		`{"na\u006de":"a","name":"b"}`,
		`{"spec":{"boot":{"zzz":1}}}`,
		`{"spec":{"disks":[{"size_gib":1},{"size_gib":1,"size_gib":2}]}}`,
		`[1,{"a":[{}]}]`,
		` { "labels" : { "a" : "1" , "b" : [ true , null , -1.5e3 ] , "a" : 2 } } `,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"a":18}`,
		`{"":1}`,
		`"str\"ing"`,
	} {
		f.Add([]byte(s))
	}
	types := []reflect.Type{reflect.TypeFor[CreateRequest](), reflect.TypeFor[VMSpec](), nil}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || !utf8.Valid(data) {
			return // CheckExact refuses these before it scans
		}
		for _, typ := range types {
			s := exactScanner{data: data}
			fast := s.value(typ, "spec")
			slow := checkExactTokens(data, typ, "spec")
			if fmt.Sprint(fast) != fmt.Sprint(slow) {
				t.Fatalf("%q as %v: scanner says %v, tokens say %v", data, typ, fast, slow)
			}
		}
	})
}
