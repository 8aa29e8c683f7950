package resource

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestPolicySpecValidate(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		field string // "" = valid
	}{
		{`{"source":"events=[]"}`, ""},
		{`{"source":""}`, "spec.source"},
		{`{"source":"x","timeout":"soon"}`, "spec.timeout"},
		{`{"source":"x","timeout":"1ms"}`, "spec.timeout"},
		{`{"source":"x","timeout":"2h"}`, "spec.timeout"},
		{`{"source":"x","max_steps":2000000000}`, "spec.max_steps"},
		{`{"source":"x","bogus":1}`, "spec.bogus"},
		{`{"source":"` + strings.Repeat("a", MaxPolicySourceBytes+1) + `"}`, "spec.source"},
	} {
		raw, err := NormalizeSpec(KindPolicy, json.RawMessage(tc.spec))
		var fe *FieldError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%.60s: %v", tc.spec, err)
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("%.60s: %v, want an error on %s", tc.spec, err, tc.field)
		case tc.field == "" && !strings.Contains(string(raw), `"timeout":"30s"`):
			t.Errorf("%.60s: defaults not filled: %s", tc.spec, raw)
		}
	}
}

// TestPolicyVersions: the version is the cluster's: 1 on create whatever
// the client sent, +1 on a change of anything else, kept otherwise.
func TestPolicyVersions(t *testing.T) {
	norm := func(s string) json.RawMessage {
		raw, err := NormalizeSpec(KindPolicy, json.RawMessage(s))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	version := func(raw json.RawMessage) uint64 {
		var s PolicySpec
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		return s.Version
	}
	v1, err := ReviseSpec(KindPolicy, nil, norm(`{"source":"a","version":7}`))
	if err != nil || version(v1) != 1 {
		t.Fatalf("create: %s %v, want version 1", v1, err)
	}
	same, _ := ReviseSpec(KindPolicy, v1, norm(`{"source":"a","version":99}`))
	if version(same) != 1 {
		t.Errorf("same spec: version %d, want 1", version(same))
	}
	v2, _ := ReviseSpec(KindPolicy, v1, norm(`{"source":"b"}`))
	v3, _ := ReviseSpec(KindPolicy, v2, norm(`{"source":"b","disabled":true}`))
	v4, _ := ReviseSpec(KindPolicy, v3, norm(`{"source":"b","disabled":true,"timeout":"1m"}`))
	if version(v2) != 2 || version(v3) != 3 || version(v4) != 4 {
		t.Errorf("versions %d %d %d, want 2 3 4", version(v2), version(v3), version(v4))
	}
	// Other kinds are left alone.
	vm := json.RawMessage(`{"cpus":1,"memory_mib":1}`)
	if got, _ := ReviseSpec(KindVM, nil, vm); string(got) != string(vm) {
		t.Errorf("vm spec revised: %s", got)
	}
}
