package script

import (
	"context"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/resource"
)

// fuzzCallees are what FuzzBuiltinArgs calls: Kumoi's built-ins, the
// Starlark built-ins Kumoi wraps (membudget.go), the json module's
// functions, and the methods of a VM, a host and a few core values.
func fuzzCallees(tb testing.TB, env Env) []string {
	var out []string
	for name := range Builtins() {
		if name != "json" {
			out = append(out, name)
		}
	}
	for name := range boundBuiltins() {
		out = append(out, name)
	}
	out = append(out, "json.encode", "json.decode", "json.indent")
	sess := NewSession(env, nil)
	for _, recv := range []string{`vm("web-1")`, `host("h1")`, `"a,b"`, `[1, 2]`, `{"k": 1}`} {
		v, err := sess.Exec(context.Background(), "dir.star", []byte("dir("+recv+")"))
		if err != nil {
			tb.Fatalf("dir(%s): %v", recv, err)
		}
		for i := range v.(*starlark.List).Len() {
			name, _ := starlark.AsString(v.(*starlark.List).Index(i))
			out = append(out, recv+"."+name)
		}
	}
	sort.Strings(out)
	return out
}

// FuzzBuiltinArgs calls each built-in (and each method of the values
// they return) with fuzzed arguments: the argument list is Starlark text
// from the fuzzer, the callee is picked by a fuzzed index, and the call
// runs against a fake API (internal/testapi) under small limits. Whatever
// the arguments, the call returns or fails: it never panics.
func FuzzBuiltinArgs(f *testing.F) {
	api := testapi.New(f)
	spec := resource.VMSpec{CPUs: 1, MemoryMiB: 128, Power: resource.PowerRunning, HA: resource.HANone}
	api.Put(f, resource.KindVM, "web-1", map[string]string{"tier": "web"}, spec, resource.VMStatus{Phase: resource.PhaseRunning, Host: "h1", Epoch: 1})
	api.Put(f, resource.KindVM, "db-1", nil, spec, resource.VMStatus{Phase: resource.PhaseStopped, Host: "h1", Epoch: 1})
	api.Put(f, resource.KindHost, "h1", nil, resource.HostSpec{CPUOvercommit: 1, MemoryOvercommit: 1},
		resource.HostStatus{State: resource.HostReady, Capacity: resource.Resources{CPUs: 8, MemoryMiB: 8192}})
	cl, err := client.New(client.Config{Addrs: []string{api.URL}})
	if err != nil {
		f.Fatal(err)
	}
	env := Env{Client: cl, Out: io.Discard, MaxSteps: 20_000, Timeout: 500 * time.Millisecond, MaxAlloc: 8 << 20}
	callees := fuzzCallees(f, env)
	for i, args := range []string{
		``, `"web-1"`, `"tier=web"`, `1`, `-1`, `None`, `[]`, `{}`, `"x" * 1000`, `lambda v: v`, `lambda v: v, [1, 2, 3]`,
		`lambda v: v, [1, 2, 3], workers=0`, `lambda v: v, [1], workers=1000000`, `fail_fast=True`, `cpus=1, memory="1GiB"`,
		`"a", cpus=-1, memory_mib=1`, `lambda: True, timeout="1ms"`, `"0.001s"`, `"-1s"`, `since=1 << 70`, `*[1, 2]`, `**{"a": 1}`,
		`"\x00"`, `"web-1", 1, 2, 3, 4`, `labels={"a": None}`, `{"a": "b" * 300}`, `"vm.failed"`, `1.5`, `1e308`, `range(1 << 40)`,
	} {
		f.Add(uint16(i*7), args)
	}
	f.Fuzz(func(t *testing.T, pick uint16, args string) {
		if len(args) > 2000 || strings.ContainsAny(args, "\n\r") {
			return
		}
		callee := callees[int(pick)%len(callees)]
		src := "r = " + callee + "(" + args + ")\n"
		sess := NewSession(env, nil)
		_, _ = sess.Exec(context.Background(), "fuzz.star", []byte(src))
	})
}
