package resource

import (
	"bytes"
	"reflect"
	"testing"
)

func checkCreateDecode(t *testing.T, body string) {
	t.Helper()
	var want, got CreateRequest
	werr := DecodeStrict([]byte(body), &want, "")
	err := DecodeCreateRequest([]byte(body), &got)
	if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
		t.Fatalf("%q: error %v, DecodeStrict's %v", body, err, werr)
	}
	if err == nil && (got.Name != want.Name || !reflect.DeepEqual(got.Labels, want.Labels) || !bytes.Equal(got.Spec, want.Spec) ||
		(got.Labels == nil) != (want.Labels == nil)) {
		t.Fatalf("%q: decoded %+v (spec %s), DecodeStrict %+v (spec %s)", body, got, got.Spec, want, want.Spec)
	}
	// A request that held something before is replaced, whichever path.
	reused := CreateRequest{Name: "old", Labels: map[string]string{"old": "x"}, Spec: []byte(`{"old":1}`)}
	if rerr := DecodeCreateRequest([]byte(body), &reused); err == nil && (rerr != nil || !reflect.DeepEqual(reused, got)) {
		t.Fatalf("%q: into a used request %+v, %v; into a zero one %+v", body, reused, rerr, got)
	}
}

var createBodies = []string{
	`{"name":"web-1","labels":{"pad":"xxxx","app":"web"},"spec":{"cpus":1,"memory_mib":512}}`,
	` { "spec" : { "cpus" : 1 , "x" : [ "}" , "\"{" ] } , "name" : "a" } `,
	`{"name":"a","labels":{},"spec":{}}`,
	`{"name":"a","labels":null,"spec":{"a":{"b":[1,{"c":"d\\"}"}]}}}`,
	`{"name":"we\u0062","spec":{}}`,
	`{"name":"a","labels":{"k":"v\n"},"spec":{}}`,
	`{"name":"a","labels":{"k":"v","k":"w"},"spec":{}}`,
	`{"name":"a","name":"b","spec":{}}`,
	`{"name":"a","spec":null}`,
	`{"name":"a","spec":[1]}`,
	`{"name":"a","spec":"x"}`,
	`{"name":null,"spec":{}}`,
	`{"Name":"a","spec":{}}`,
	`{"name":"a","spec":{}} {}`,
	`{"name":"a","spec":{}`,
	`{"name":"a","bogus":1,"spec":{}}`,
	`{"name":"é","labels":{"ü":"ö"},"spec":{"k":"\u00e9"}}`,
	`{}`,
	`[]`,
	``,
	`{"name":1}`,
	`{"labels":{"a":1},"spec":{}}`,
}

func TestDecodeCreateRequest(t *testing.T) {
	for _, b := range createBodies {
		checkCreateDecode(t, b)
	}
	// The common body takes the fast path.
	var req CreateRequest
	if !decodeCreateFast([]byte(createBodies[0]), &req) || req.Name != "web-1" || req.Labels["app"] != "web" || string(req.Spec) != `{"cpus":1,"memory_mib":512}` {
		t.Fatalf("the common body did not take the fast path: %+v", req)
	}
}

func FuzzDecodeCreateRequest(f *testing.F) {
	for _, b := range createBodies {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		checkCreateDecode(t, body)
	})
}

// BenchmarkDecodeCreateRequest: bench-compare's create body, decoded as
// the leader does, against DecodeStrict.
func BenchmarkDecodeCreateRequest(b *testing.B) {
	body := []byte(`{"name":"w17-000123","labels":{"pad":"` + string(bytes.Repeat([]byte("x"), 120)) + `"},"spec":{"cpus":1,"memory_mib":64}}`)
	b.Run("strict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req CreateRequest
			if err := DecodeStrict(body, &req, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req CreateRequest
			if err := DecodeCreateRequest(body, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
