package resource

import (
	"bytes"
	"encoding/json"
	"testing"
)

func checkAppendJSON(t *testing.T, o *Object) {
	t.Helper()
	want, werr := json.Marshal(o)
	got, gerr := o.AppendJSON(nil)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%+v: json.Marshal error %v, AppendJSON error %v", o, werr, gerr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON differs from json.Marshal:\n got %s\nwant %s", got, want)
	}
	list := []*Object{o, nil, o}
	want, werr = json.Marshal(list)
	got, gerr = AppendObjectsJSON([]byte("x"), list)
	if werr == nil && (gerr != nil || !bytes.Equal(got[1:], want)) {
		t.Fatalf("AppendObjectsJSON differs from json.Marshal:\n got %s\nwant %s (%v)", got, want, gerr)
	}
}

// TestObjectAppendJSON: the hand-written encoding is json.Marshal's,
// for objects whose fields take the fast path and for those that do not.
func TestObjectAppendJSON(t *testing.T) {
	base := func() *Object {
		return &Object{Kind: KindVM, Name: "web-1", ID: "0b6c1c5e-1d7e-4b59-9a53-0d4d2b1a9e11",
			Labels: map[string]string{"tier": "web", "app": "shop", "a.b/c": "x-y_z"}, CreateIndex: 12, ModifyIndex: 1 << 40,
			Spec:   json.RawMessage(`{"cpus":1,"memory_mib":64,"power":"running","ha":"none"}`),
			Status: json.RawMessage(`{"phase":"pending","reason":"waiting for placement","since":"2026-12-03T12:56:16.752004866Z"}`)}
	}
	for name, change := range map[string]func(o *Object){
		"plain":               func(*Object) {},
		"modified by":         func(o *Object) { o.ModifiedBy = "3f1c" },
		"nil labels":          func(o *Object) { o.Labels = nil },
		"empty labels":        func(o *Object) { o.Labels = map[string]string{} },
		"label to escape":     func(o *Object) { o.Labels["note"] = "a \"quoted\" <b> & \\ \n é \u2028" },
		"name to escape":      func(o *Object) { o.Name = "x<y>&z" },
		"nil spec and status": func(o *Object) { o.Spec, o.Status = nil, nil },
		"null status":         func(o *Object) { o.Status = json.RawMessage(`null`) },
		"spec with spaces":    func(o *Object) { o.Spec = json.RawMessage(`{ "cpus" : 1 }`) },
		"spaces in strings":   func(o *Object) { o.Spec = json.RawMessage(`{"requirements":"zone == \"z1\" || x","rank":"a\\"}`) },
		"space after escape":  func(o *Object) { o.Spec = json.RawMessage(`{"a":"\\","b" :1}`) },
		"spec with html":      func(o *Object) { o.Spec = json.RawMessage(`{"requirements":"a<b && c>d"}`) },
		"spec with u2028":     func(o *Object) { o.Spec = json.RawMessage("{\"x\":\"a\u2028b\u2192c\"}") },
		"spec array":          func(o *Object) { o.Spec = json.RawMessage(`[1,2,{"a":"b"}]`) },
		"spec number":         func(o *Object) { o.Spec = json.RawMessage(`12.5e3`) },
		"spec string":         func(o *Object) { o.Spec = json.RawMessage(`"s"`) },
		"empty spec":          func(o *Object) { o.Spec = json.RawMessage{} },
		"invalid status":      func(o *Object) { o.Status = json.RawMessage(`{"a" 1}`) },
		"escaped in raw":      func(o *Object) { o.Status = json.RawMessage(`{"r":"a\"b\\c\u00e9"}`) },
	} {
		t.Run(name, func(t *testing.T) {
			o := base()
			change(o)
			checkAppendJSON(t, o)
		})
	}
	if b, err := AppendObjectsJSON(nil, nil); err != nil || string(b) != "null" {
		t.Fatalf("AppendObjectsJSON(nil) = %s, %v", b, err)
	}
	if b, err := AppendObjectsJSON(nil, []*Object{}); err != nil || string(b) != "[]" {
		t.Fatalf("AppendObjectsJSON(empty) = %s, %v", b, err)
	}
}

// FuzzObjectAppendJSON: for any strings and any valid (or nil) spec and
// status, AppendJSON is json.Marshal.
func FuzzObjectAppendJSON(f *testing.F) {
	f.Add("vm", "a", "id", "k", "v", "", `{"cpus":1}`, `{"phase":"pending"}`, uint64(1), uint64(2))
	f.Add("host", "h<1>", "i&d", "k\"", "v\u2028", "me", `{ "a" : [1, 2] }`, `null`, uint64(0), uint64(1<<63))
	f.Add("x", "", "", "", "", "", "", "", uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, kind, name, id, k, v, by, spec, status string, ci, mi uint64) {
		o := &Object{Kind: Kind(kind), Name: name, ID: id, Labels: map[string]string{k: v, "z": v + k},
			CreateIndex: ci, ModifyIndex: mi, ModifiedBy: by}
		if spec != "" {
			if !json.Valid([]byte(spec)) {
				return
			}
			o.Spec = json.RawMessage(spec)
		}
		if status != "" {
			if !json.Valid([]byte(status)) {
				return
			}
			o.Status = json.RawMessage(status)
		}
		checkAppendJSON(t, o)
	})
}

// BenchmarkObjectsJSON: a list answer of 1,000 VMs, as the API encodes
// it, against json.Marshal.
func BenchmarkObjectsJSON(b *testing.B) {
	objs := make([]*Object, 1000)
	for i := range objs {
		objs[i] = &Object{Kind: KindVM, Name: "web-" + string(rune('a'+i%26)), ID: "0b6c1c5e-1d7e-4b59-9a53-0d4d2b1a9e11",
			Labels: map[string]string{"tier": "web", "rack": "r07"}, CreateIndex: uint64(i), ModifyIndex: uint64(2 * i),
			Spec:   json.RawMessage(`{"cpus":1,"memory_mib":512,"power":"running","ha":"restart","requirements":"zone == \"z1\""}`),
			Status: json.RawMessage(`{"phase":"running","host":"sim-0042","epoch":1234,"since":"2026-12-03T12:56:16.752004866Z"}`)}
	}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(objs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := AppendObjectsJSON(make([]byte, 0, 64+400*len(objs)), objs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
