package resource

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// wantFieldError checks that err is a *FieldError for field whose message
// contains msg, and that it wraps ErrInvalid.
func wantFieldError(tb testing.TB, err error, field, msg string) {
	tb.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		tb.Fatalf("err = %v (%T); want *FieldError for %s", err, err, field)
	}
	if fe.Field != field || !strings.Contains(fe.Msg, msg) {
		tb.Errorf("err = %q; want field %q with message containing %q", err, field, msg)
	}
	if !errors.Is(err, ErrInvalid) {
		tb.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
		msg  string
	}{
		{"web", true, ""},
		{"web-1", true, ""},
		{"1", true, ""},
		{"a1b2", true, ""},
		{strings.Repeat("a", 63), true, ""},
		{strings.Repeat("a", 64), false, "is 64 characters long; the limit is 63"},
		{"", false, "must not be empty"},
		{"Web", false, "not a DNS label"},
		{"-web", false, "not a DNS label"},
		{"web-", false, "not a DNS label"},
		{"web_1", false, "not a DNS label"},
		{"web.example", false, "not a DNS label"},
		{"wéb", false, "not a DNS label"},
		{"a b", false, "not a DNS label"},
	} {
		err := ValidateName(tc.name)
		if tc.ok {
			if err != nil {
				t.Errorf("ValidateName(%q) = %v; want nil", tc.name, err)
			}
			continue
		}
		wantFieldError(t, err, "name", tc.msg)
	}
}

func TestValidateLabels(t *testing.T) {
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many["k"+strings.Repeat("x", i%10)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		field  string // "" = valid
		msg    string
	}{
		{"nil", nil, "", ""},
		{"simple", map[string]string{"app": "web", "tier": ""}, "", ""},
		{"dotted key", map[string]string{"kumoi.io/zone": "a", "A_b-c.d": "x y, z!"}, "", ""},
		{"long key", map[string]string{strings.Repeat("k", 63): "v"}, "", ""},
		{"long value", map[string]string{"k": strings.Repeat("v", 255)}, "", ""},
		{"key too long", map[string]string{strings.Repeat("k", 64): "v"}, "labels", "is invalid"},
		{"empty key", map[string]string{"": "v"}, "labels", "is invalid"},
		{"key with space", map[string]string{"a b": "v"}, "labels", "is invalid"},
		{"key ends with dot", map[string]string{"a.": "v"}, "labels", "is invalid"},
		{"value too long", map[string]string{"k": strings.Repeat("v", 256)}, "labels.k", "at most 255"},
		{"value with newline", map[string]string{"k": "a\nb"}, "labels.k", "printable"},
		{"too many", many, "labels", "the limit is 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateLabels(tc.labels)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("ValidateLabels = %v; want nil", err)
				}
				return
			}
			wantFieldError(t, err, tc.field, tc.msg)
		})
	}
	if err := ValidateMeta("Bad", nil); err == nil {
		t.Error("ValidateMeta accepted a bad name")
	}
	if err := ValidateMeta("ok", map[string]string{"": ""}); err == nil {
		t.Error("ValidateMeta accepted a bad label")
	}
}

func TestNormalizeSpec(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kind  Kind
		raw   string
		want  string // canonical JSON, when valid
		field string
		msg   string
	}{
		{"vm defaults", KindVM, `{"cpus":2,"memory_mib":512}`,
			`{"cpus":2,"memory_mib":512,"power":"running","ha":"none"}`, "", ""},
		{"vm explicit", KindVM, `{"cpus":1,"memory_mib":1,"power":"stopped","ha":"restart"}`,
			`{"cpus":1,"memory_mib":1,"power":"stopped","ha":"restart"}`, "", ""},
		{"vm max", KindVM, `{"cpus":1024,"memory_mib":67108864}`,
			`{"cpus":1024,"memory_mib":67108864,"power":"running","ha":"none"}`, "", ""},
		{"host defaults", KindHost, `{}`, `{"cpu_overcommit":1,"memory_overcommit":1}`, "", ""},
		{"host drain", KindHost, `{"unschedulable":true,"cpu_overcommit":4}`,
			`{"unschedulable":true,"cpu_overcommit":4,"memory_overcommit":1}`, "", ""},

		{"unknown field", KindVM, `{"cpus":1,"memory_mib":1,"foo":1}`, "", "spec.foo", "unknown field"},
		{"cpus 0", KindVM, `{"cpus":0,"memory_mib":512}`, "", "spec.cpus", "must be at least 1 (got 0)"},
		{"cpus missing", KindVM, `{"memory_mib":512}`, "", "spec.cpus", "at least 1"},
		{"cpus too many", KindVM, `{"cpus":1025,"memory_mib":512}`, "", "spec.cpus", "at most 1024"},
		{"cpus negative", KindVM, `{"cpus":-1,"memory_mib":512}`, "", "spec.cpus", "at least 1"},
		{"memory 0", KindVM, `{"cpus":1,"memory_mib":0}`, "", "spec.memory_mib", "at least 1 MiB"},
		{"memory too big", KindVM, `{"cpus":1,"memory_mib":67108865}`, "", "spec.memory_mib", "at most"},
		{"cpus wrong type", KindVM, `{"cpus":"two","memory_mib":1}`, "", "spec.cpus", "must be an integer, not JSON string"},
		{"cpus fractional", KindVM, `{"cpus":1.5,"memory_mib":1}`, "", "spec.cpus", "must be an integer"},
		{"power wrong type", KindVM, `{"cpus":1,"memory_mib":1,"power":true}`, "", "spec.power", "must be a string"},
		{"bad power", KindVM, `{"cpus":1,"memory_mib":1,"power":"on"}`, "", "spec.power", "running, stopped, suspended"},
		{"bad ha", KindVM, `{"cpus":1,"memory_mib":1,"ha":"always"}`, "", "spec.ha", "restart or none"},
		{"not an object", KindVM, `[1]`, "", "spec", "must be an object"},
		{"malformed", KindVM, `{"cpus":`, "", "spec", "malformed JSON"},
		{"trailing data", KindVM, `{"cpus":1,"memory_mib":1} {}`, "", "spec", "unexpected data"},
		{"null", KindVM, `null`, "", "spec", "is required"},
		{"empty", KindVM, ``, "", "spec", "is required"},
		{"host overcommit", KindHost, `{"cpu_overcommit":0.5}`, "", "spec.cpu_overcommit", "between 1 and 64"},
		{"host memory overcommit", KindHost, `{"memory_overcommit":65}`, "", "spec.memory_overcommit", "between 1 and 64"},
		{"unknown kind", "gadget", `{}`, "", "kind", `unknown kind "gadget"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeSpec(tc.kind, json.RawMessage(tc.raw))
			if tc.field == "" {
				if err != nil {
					t.Fatalf("NormalizeSpec = %v", err)
				}
				if string(got) != tc.want {
					t.Errorf("NormalizeSpec = %s\nwant %s", got, tc.want)
				}
				// Canonical output is a fixed point.
				again, err := NormalizeSpec(tc.kind, got)
				if err != nil || string(again) != string(got) {
					t.Errorf("NormalizeSpec(canonical) = %s, %v", again, err)
				}
				return
			}
			wantFieldError(t, err, tc.field, tc.msg)
		})
	}
}

func TestNormalizeStatusAndInitialStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	raw, err := InitialStatus(KindVM, now)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"phase":"pending","reason":"waiting for placement","since":"2026-01-02T02:04:05Z"}`
	if string(raw) != want {
		t.Errorf("InitialStatus(vm) = %s\nwant %s", raw, want)
	}
	if raw, err = InitialStatus(KindHost, now); err != nil || !strings.Contains(string(raw), `"state":"down"`) {
		t.Errorf("InitialStatus(host) = %s, %v", raw, err)
	}
	if _, err := InitialStatus("gadget", now); err == nil {
		t.Error("InitialStatus(unknown kind) succeeded")
	}

	got, err := NormalizeStatus(KindVM, json.RawMessage(`{"phase":"running","host":"h1","epoch":7}`))
	if err != nil || string(got) != `{"phase":"running","host":"h1","epoch":7}` {
		t.Errorf("NormalizeStatus = %s, %v", got, err)
	}
	_, err = NormalizeStatus(KindVM, json.RawMessage(`{"phase":"running","colour":"red"}`))
	wantFieldError(t, err, "status.colour", "unknown field")
	_, err = NormalizeStatus(KindHost, json.RawMessage(`{"capacity":{"cpus":"many"}}`))
	wantFieldError(t, err, "status.capacity.cpus", "must be an integer")
	_, err = NormalizeStatus(KindHost, nil)
	wantFieldError(t, err, "status", "is required")
}

func TestParseMemoryMiB(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"512", 512, ""},
		{"512MiB", 512, ""},
		{"512mib", 512, ""},
		{" 512 MiB ", 512, ""},
		{"512M", 512, ""},
		{"2GiB", 2048, ""},
		{"2G", 2048, ""},
		{"1.5GiB", 1536, ""},
		{"1TiB", 1 << 20, ""},
		{"1T", 1 << 20, ""},
		{"1024KiB", 1, ""},
		{"1KiB", 1, ""}, // rounded up
		{"1.1", 2, ""},  // rounded up
		{"1GB", 954, ""},
		{"1MB", 1, ""},
		{"1TB", 953675, ""},
		{"0", 0, ""},
		{"64TiB", 64 << 20, ""},
		{"", 0, "empty"},
		{"  ", 0, "empty"},
		{"lots", 0, "not understood"},
		{"-1G", 0, "not understood"},
		{"1.5.2G", 0, "not understood"},
		{"GiB", 0, "not understood"},
		{"inf", 0, "not understood"},
		{"NaN", 0, "not understood"},
		{"1PiB", 0, "not understood"},
		{"100000TiB", 0, "too large"},
	} {
		got, err := ParseMemoryMiB(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMemoryMiB(%q) = %d, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseMemoryMiB(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestFormatMiB(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0MiB"},
		{1, "1MiB"},
		{512, "512MiB"},
		{1023, "1023MiB"},
		{1024, "1GiB"},
		{1536, "1.5GiB"},
		{2048, "2GiB"},
		{1000 * 1024, "1000GiB"},
		{1 << 20, "1TiB"},
		{3 << 19, "1.5TiB"},
		{64 << 20, "64TiB"},
	} {
		if got := FormatMiB(tc.in); got != tc.want {
			t.Errorf("FormatMiB(%d) = %q; want %q", tc.in, got, tc.want)
		}
	}
	// Whatever FormatMiB prints of a round size, ParseMemoryMiB reads back.
	for _, mib := range []int64{1, 512, 1024, 1536, 2048, 3 << 19, 64 << 20} {
		if back, err := ParseMemoryMiB(FormatMiB(mib)); err != nil || back != mib {
			t.Errorf("ParseMemoryMiB(FormatMiB(%d)) = %d, %v", mib, back, err)
		}
	}
}

func TestSelector(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front", "empty": ""}
	for _, tc := range []struct {
		sel   string
		canon string
		match bool
		err   string
	}{
		{"", "", true, ""},
		{" , ", "", true, ""},
		{"app=web", "app=web", true, ""},
		{"app==web", "app=web", true, ""},
		{" app = web ", "app=web", true, ""},
		{"app=db", "app=db", false, ""},
		{"app!=db", "app!=db", true, ""},
		{"app!=web", "app!=web", false, ""},
		{"zone!=a", "zone!=a", true, ""}, // absent label differs from any value
		{"app", "app", true, ""},
		{"zone", "zone", false, ""},
		{"!zone", "!zone", true, ""},
		{"!app", "!app", false, ""},
		{"empty=", "empty=", true, ""},
		{"app=web,tier=front", "app=web,tier=front", true, ""},
		{"app=web,tier!=front", "app=web,tier!=front", false, ""},
		{"app=web,!zone,tier", "app=web,!zone,tier", true, ""},
		{"kumoi.io/zone=a", "kumoi.io/zone=a", false, ""},
		{"=web", "", false, "key must be a label key"},
		{"!", "", false, "key must be a label key"},
		{"a b=c", "", false, `term "a b=c"`},
		{"app=web,-x", "", false, `term "-x"`},
	} {
		sel, err := ParseSelector(tc.sel)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSelector(%q) = %v, %v; want error containing %q", tc.sel, sel, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", tc.sel, err)
			continue
		}
		if got := sel.String(); got != tc.canon {
			t.Errorf("ParseSelector(%q).String() = %q; want %q", tc.sel, got, tc.canon)
		}
		if got := sel.Matches(labels); got != tc.match {
			t.Errorf("ParseSelector(%q).Matches(%v) = %v; want %v", tc.sel, labels, got, tc.match)
		}
		// The canonical form parses to the same selector.
		again, err := ParseSelector(sel.String())
		if err != nil || again.String() != sel.String() {
			t.Errorf("ParseSelector(%q) = %v, %v; not a fixed point", sel.String(), again, err)
		}
	}
	if !(Selector(nil)).Matches(nil) {
		t.Error("the empty selector must match no labels")
	}
}

func TestObjectCopy(t *testing.T) {
	o := &Object{
		Kind: KindVM, Name: "web", ID: "id-1", Labels: map[string]string{"app": "web"},
		CreateIndex: 3, ModifyIndex: 7,
		Spec:   json.RawMessage(`{"cpus":1,"memory_mib":512}`),
		Status: json.RawMessage(`{"phase":"pending"}`),
	}
	c := o.Copy()
	if !c.Equal(o) || !o.Equal(c) {
		t.Fatalf("Copy = %+v; want equal to %+v", c, o)
	}
	c.Labels["app"] = "db"
	c.Labels["new"] = "x"
	c.Spec[2] = 'X'
	c.Status[2] = 'X'
	c.ModifyIndex = 8
	if o.Labels["app"] != "web" || len(o.Labels) != 1 || string(o.Spec) != `{"cpus":1,"memory_mib":512}` ||
		string(o.Status) != `{"phase":"pending"}` || o.ModifyIndex != 7 {
		t.Errorf("changing the copy changed the original: %+v", o)
	}
	if c.Equal(o) {
		t.Error("Equal reports a changed copy as equal")
	}

	if (*Object)(nil).Copy() != nil {
		t.Error("nil.Copy() != nil")
	}
	if e := (&Object{Kind: KindVM, Name: "x"}).Copy(); e.Labels == nil {
		t.Error("Copy leaves Labels nil; want an empty map")
	}
	var nilObj *Object
	if !nilObj.Equal(nil) || nilObj.Equal(o) || o.Equal(nil) {
		t.Error("Equal mishandles nil")
	}
	if o.String() != "vm/web" {
		t.Errorf("String() = %q", o.String())
	}
}

func TestKindsRegistry(t *testing.T) {
	if info, ok := Lookup(KindVM); !ok || info.Plural != "vms" {
		t.Errorf("Lookup(vm) = %+v, %v", info, ok)
	}
	if info, ok := LookupPlural("hosts"); !ok || info.Kind != KindHost {
		t.Errorf("LookupPlural(hosts) = %+v, %v", info, ok)
	}
	if _, ok := LookupPlural("gadgets"); ok {
		t.Error("LookupPlural(gadgets) found something")
	}
	ks := Kinds()
	var names []Kind
	for _, k := range ks {
		names = append(names, k.Kind)
	}
	if want := []Kind{KindHost, KindImage, KindNetwork, KindPolicy, KindProject, KindVM, KindVolume}; !reflect.DeepEqual(names, want) {
		t.Errorf("Kinds() = %v; want %v, sorted by name", names, want)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a kind twice did not panic")
		}
	}()
	Register(&KindInfo{Kind: KindVM, Plural: "vms"})
}

func TestDecodeSpecAndStatus(t *testing.T) {
	o := &Object{Kind: KindVM, Name: "web", Spec: json.RawMessage(`{"cpus":2,"memory_mib":1024,"power":"running","ha":"none"}`)}
	spec, err := DecodeSpec[VMSpec](o)
	if err != nil || spec.CPUs != 2 || spec.MemoryMiB != 1024 {
		t.Errorf("DecodeSpec = %+v, %v", spec, err)
	}
	st, err := DecodeStatus[VMStatus](o)
	if err != nil || st.Phase != "" {
		t.Errorf("DecodeStatus(empty) = %+v, %v; want zero status", st, err)
	}
	o.Status = json.RawMessage(`{"phase":`)
	if _, err := DecodeStatus[VMStatus](o); err == nil || !strings.Contains(err.Error(), "vm/web: decode status") {
		t.Errorf("DecodeStatus(malformed) = %v", err)
	}
}

func TestDecodeStrictRoot(t *testing.T) {
	var req CreateRequest
	err := DecodeStrict([]byte(`{"name":"a","spec":{},"extra":1}`), &req, "")
	wantFieldError(t, err, "extra", "unknown field")
	err = DecodeStrict([]byte(`{"name":5}`), &req, "")
	wantFieldError(t, err, "name", "must be a string")
	err = DecodeStrict([]byte(``), &req, "")
	wantFieldError(t, err, "body", "is empty")
	err = DecodeStrict([]byte(`{"name":"a"} x`), &req, "")
	wantFieldError(t, err, "body", "unexpected data")
}

func TestStateOf(t *testing.T) {
	vm := &Object{Kind: KindVM, Name: "web",
		Spec:   json.RawMessage(`{"cpus":2,"memory_mib":512,"power":"running"}`),
		Status: json.RawMessage(`{"phase":"running","host":"hv-1"}`)}
	spec, st := VMStateOf(vm)
	if spec.CPUs != 2 || spec.MemoryMiB != 512 || spec.Power != PowerRunning || st.Phase != PhaseRunning || st.Host != "hv-1" {
		t.Errorf("VMStateOf = %+v, %+v", spec, st)
	}
	spec, st = VMStateOf(&Object{Kind: KindVM, Name: "bad", Spec: json.RawMessage(`[1]`), Status: json.RawMessage(`"x"`)})
	if !reflect.DeepEqual(*spec, VMSpec{}) || *st != (VMStatus{}) {
		t.Errorf("VMStateOf(undecodable) = %+v, %+v; want zero values", spec, st)
	}

	host := &Object{Kind: KindHost, Name: "hv-1",
		Spec:   json.RawMessage(`{"cpu_overcommit":4}`),
		Status: json.RawMessage(`{"state":"ready","capacity":{"cpus":8,"memory_mib":1024}}`)}
	hspec, hst := HostStateOf(host)
	if *hspec != (HostSpec{CPUOvercommit: 4, MemoryOvercommit: 1}) || hst.State != HostReady || hst.Capacity.CPUs != 8 {
		t.Errorf("HostStateOf = %+v, %+v", hspec, hst)
	}
	hspec, hst = HostStateOf(&Object{Kind: KindHost, Name: "bad", Spec: json.RawMessage(`nope`)})
	if *hspec != (HostSpec{CPUOvercommit: 1, MemoryOvercommit: 1}) || !hst.SameObservation(&HostStatus{}) {
		t.Errorf("HostStateOf(undecodable) = %+v, %+v; want the defaults and a zero status", hspec, hst)
	}
}
