package resource

import (
	"errors"
	"strings"
	"testing"
)

func TestCompileHostExpr(t *testing.T) {
	h := &HostAttrs{Name: "h1", Driver: "sim", State: HostReady, Labels: map[string]string{"zone": "b"},
		CapacityCPUs: 8, CapacityMemoryMiB: 8192, FreeCPUs: 5, FreeMemoryMiB: 6000, AllocatedCPUs: 3, AllocatedMemoryMiB: 2192, VMCount: 2}
	cases := []struct {
		src     string
		boolean bool
		err     string // substring of the compile error
		match   bool
		rank    float64
	}{
		{src: `host.labels.zone == "b" && host.free_memory_mib > 4096`, boolean: true, match: true},
		{src: `host.labels.zone == "a" || host.vm_count > 5`, boolean: true, match: false},
		{src: `host.labels["rack"] == ""`, boolean: true, match: true}, // an absent label is ""
		{src: `"zone" in host.labels and host.driver == "sim" and host.state == "ready"`, boolean: true, match: true},
		{src: `host.name matches "^h[0-9]+$" && hasPrefix(host.name, "h")`, boolean: true, match: true},
		{src: `host.capacity_cpus == 8 && host.capacity_memory_mib == 8192 && host.free_cpus == 5 && host.allocated_memory_mib == 2192`, boolean: true, match: true},
		{src: `-host.allocated_cpus`, rank: -3},
		{src: `host.free_memory_mib / 1024`, rank: 6000.0 / 1024},
		{src: `host.labels.zone == "b" ? 10 : 0`, rank: 10},
		{src: `max(host.free_cpus, 7)`, rank: 7},
		{src: `host.labels.zone == "b" && hots.free_cpus > 1`, boolean: true, err: "line 1, column 28: unknown name hots"},
		{src: "host.free_cpus > 1 &&\n  host.nope", boolean: true, err: "line 2, column 8: type resource.HostAttrs has no field nope"},
		{src: `host.free_cpus + 1`, boolean: true, err: "must be a boolean expression"},
		{src: `host.name`, err: "must be a numeric expression"},
		{src: `1 +`, boolean: true, err: "line 1, column 3"},
		{src: `now() != nil`, boolean: true, err: "unknown name now"},
		{src: `len(keys(host.labels)) > 0`, boolean: true, err: "unknown name keys"},
		{src: `len(repeat("x", 1000000000)) > 0`, boolean: true, err: "unknown name repeat"},
		{src: `any([1, 2], # > 1)`, boolean: true, err: "closures and predicates are not allowed"},
		{src: `len(1..1000000000) > 0`, boolean: true, err: "range operator"},
		{src: `let a = host.name + host.name; let b = a + a; len(b + b) > 0`, boolean: true, err: "let is not allowed"},
		{src: ``, boolean: true, err: "is empty"},
		{src: strings.Repeat(" ", MaxExprLen) + "true", boolean: true, err: "the limit is 4096"},
		{src: strings.Repeat("1 + ", 600) + "1", err: "exceeds maximum"},
	}
	for _, tc := range cases {
		e, err := CompileHostExpr(tc.src, tc.boolean)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%.60q: error %v, want %q", tc.src, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.src, err)
			continue
		}
		if tc.boolean {
			if got := e.Match(h); got != tc.match {
				t.Errorf("%q on %+v = %t, want %t", tc.src, h, got, tc.match)
			}
		} else if got := e.Rank(h); got != tc.rank {
			t.Errorf("%q on %+v = %g, want %g", tc.src, h, got, tc.rank)
		}
	}
	// Run-time errors (an integer modulo by zero) do not satisfy, and
	// rank 0.
	e, err := CompileHostExpr(`host.free_cpus % (host.vm_count - 2) == 0`, true)
	if err != nil {
		t.Fatal(err)
	}
	if e.Match(h) {
		t.Error("a failing expression matched")
	}
	r, err := CompileHostExpr(`host.free_cpus % (host.vm_count - 2)`, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Rank(h); got != 0 {
		t.Errorf("failing rank = %g", got)
	}
}

func TestHostExprTerms(t *testing.T) {
	e, err := CompileHostExpr(`host.labels.zone == "b" && (host.free_cpus > 1 || host.vm_count < 3) and host.driver == "sim"`, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`host.labels.zone == "b"`, `host.free_cpus > 1 || host.vm_count < 3`, `host.driver == "sim"`}
	if got := e.Terms(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Terms() = %q, want %q", got, want)
	}
}

func TestVMSpecExpressionsAreValidatedOnRequest(t *testing.T) {
	for _, tc := range []struct{ spec, field, msg string }{
		{`{"cpus":1,"memory_mib":64,"requirements":"host.labels.zone == \"b\" && host.fre > 1"}`, "spec.requirements", "line 1, column 33"},
		{`{"cpus":1,"memory_mib":64,"requirements":"host.free_cpus"}`, "spec.requirements", "must be a boolean expression"},
		{`{"cpus":1,"memory_mib":64,"rank":"host.name"}`, "spec.rank", "must be a numeric expression"},
		{`{"cpus":1,"memory_mib":64,"rank":"-host.allocated_cpus","requirements":"true"}`, "", ""},
	} {
		_, err := NormalizeRequestSpec(KindVM, []byte(tc.spec))
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.spec, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
			t.Errorf("%s: error %v, want a FieldError on %s saying %q", tc.spec, err, tc.field, tc.msg)
		}
	}
	// The state machine (Validate only) does not compile: an entry
	// logged before a rule changes still applies.
	if _, err := NormalizeSpec(KindVM, []byte(`{"cpus":1,"memory_mib":64,"requirements":"host.nope"}`)); err != nil {
		t.Errorf("NormalizeSpec compiled the expression: %v", err)
	}
}

func TestExprCacheBounded(t *testing.T) {
	c := NewExprCache(2)
	for _, src := range []string{"true", "false", "1 > 0", "true"} {
		if _, err := c.Compile(src, true); err != nil {
			t.Fatal(err)
		}
		if c.Len() > 2 {
			t.Fatalf("cache holds %d", c.Len())
		}
	}
	a, _ := c.Compile("true", true)
	b, _ := c.Compile("true", true)
	if a != b {
		t.Error("a cached expression was compiled again")
	}
	if _, err := c.Compile("1", true); err == nil {
		t.Error("a numeric requirement compiled")
	}
}
