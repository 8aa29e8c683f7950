package script

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

// syncBuffer is a bytes.Buffer safe for print() from parallel threads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runScript runs src without a cluster and returns what it printed.
func runScript(t *testing.T, env Env, src string, argv ...string) (string, error) {
	t.Helper()
	out := &syncBuffer{}
	env.Out = out
	err := Run(context.Background(), env, "test.star", []byte(src), argv)
	return out.String(), err
}

func wantError(t *testing.T, err error, parts ...string) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", parts)
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error %T %v is not a *script.Error", err, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error\n%s\nlacks %q", err, p)
		}
	}
	return se
}

func TestPrintAndArgv(t *testing.T) {
	out, err := runScript(t, Env{}, `
print("args:", argv, len(argv))
print(json.encode({"a": [1, 2]}))
`, "x", "--y")
	if err != nil {
		t.Fatal(err)
	}
	if want := "args: [\"x\", \"--y\"] 2\n{\"a\":[1,2]}\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func TestSyntaxErrorShowsLine(t *testing.T) {
	_, err := runScript(t, Env{}, "x = 1\ny = (2 +\nprint(x y)\n")
	se := wantError(t, err, "test.star:3:10: got identifier, want ','", "    print(x y)\n             ^")
	if se.Pos.Line != 3 || se.Backtrace != "" {
		t.Errorf("Pos %v, backtrace %q", se.Pos, se.Backtrace)
	}
	_, err = runScript(t, Env{}, "x = 1\nprint(undefined_thing)\n")
	wantError(t, err, "test.star:2:7: undefined: undefined_thing", "    print(undefined_thing)\n          ^")
}

func TestRuntimeErrorBacktrace(t *testing.T) {
	_, err := runScript(t, Env{}, `
def inner(x):
    return x / 0

def outer():
    return inner(1)

outer()
`)
	se := wantError(t, err, "Traceback (most recent call last):", "test.star:8:6: in <toplevel>",
		"test.star:6:17: in outer", "test.star:3:14: in inner", "Error: floating-point division by zero")
	if se.Pos.Line != 3 {
		t.Errorf("Pos = %v, want line 3", se.Pos)
	}
	_, err = runScript(t, Env{}, "fail(\"boom\")\n")
	wantError(t, err, "test.star:1:5: in <expr>", "Error: fail: boom")
}

func TestWrongArgumentTypesNameTheParameter(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`create_vm("web", cpus="two")`, "create_vm: for parameter \"cpus\": got string, want int"},
		{`create_vm("web", memory=[1])`, `create_vm: for parameter "memory": got list, want a size such as "512MiB"`},
		{`create_vm("web", memory="lots")`, `create_vm: for parameter "memory": memory size "lots" is not understood`},
		{`create_vm("web", labels={"a": 1})`, "create_vm: for parameter \"labels\": label \"a\": 1: keys and values must be strings"},
		{`create_vm("Web!")`, "create_vm: for parameter \"name\": \"Web!\" is not a DNS label"},
		{`create_vm("web", ha="always")`, `create_vm: for parameter "ha": "always" is not an HA policy`},
		{`create_vm()`, "create_vm: missing argument for name"},
		{`vms(selector=3)`, "vms: for parameter \"selector\": got int, want string"},
		{`vms("=x")`, "vms: for parameter \"selector\": label selector term"},
		{`sleep("soon")`, `sleep: for parameter duration: "soon" is not a duration`},
		{`wait_until(lambda: True, timeout=[])`, "wait_until: for parameter \"timeout\": got list, want a duration"},
		{`pmap(1, [])`, "pmap: for parameter fn: got int, want callable"},
		{`pmap(len, 3)`, "pmap: for parameter xs: got int, want iterable"},
		{`pmap(len, [], workers=0)`, "pmap: for parameter \"workers\": must be between 1 and 64 (got 0)"},
		{`events(kinds=["vm.exploded"])`, `events: for parameter "kinds": element 0: "vm.exploded" is not an event type`},
		{`events(kinds=["disk"])`, `"disk" is not a kind`},
		{`vm("x")`, "vm: not connected to a cluster"},
	} {
		_, err := runScript(t, Env{}, tc.src)
		wantError(t, err, tc.want, "test.star:1:")
	}
}

func TestStepLimit(t *testing.T) {
	start := time.Now()
	_, err := runScript(t, Env{MaxSteps: 100_000}, "def spin():\n    while True:\n        pass\n\nspin()\n")
	se := wantError(t, err, "Error: script stopped: step limit of 100000 exceeded", "test.star:5:5: in <toplevel>", "in spin")
	if !errors.Is(err, ErrStepLimit) || errors.Is(err, ErrTimeLimit) {
		t.Errorf("errors.Is(ErrStepLimit) false for %v", err)
	}
	if se.Msg != "script stopped: step limit of 100000 exceeded" {
		t.Errorf("Msg = %q", se.Msg)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
	// The budget is shared by the threads of a parallel skeleton.
	_, err = runScript(t, Env{MaxSteps: 200_000}, "def spin(x):\n    while True:\n        pass\n\npmap(spin, range(8), workers=8)\n")
	wantError(t, err, "script stopped: step limit of 200000 exceeded")
	if !errors.Is(err, ErrStepLimit) {
		t.Errorf("pmap: errors.Is(ErrStepLimit) false for %v", err)
	}
	// A script within the limit runs.
	if _, err := runScript(t, Env{MaxSteps: 100_000}, "x = [i*i for i in range(100)]\n"); err != nil {
		t.Error(err)
	}
}

func TestTimeLimit(t *testing.T) {
	_, err := runScript(t, Env{Timeout: 200 * time.Millisecond}, "x = 0\nwhile True:\n    x += 1\n")
	wantError(t, err, "script stopped: time limit of 200ms exceeded", "in <toplevel>")
	if !errors.Is(err, ErrTimeLimit) {
		t.Errorf("errors.Is(ErrTimeLimit) false for %v", err)
	}
	// A built-in that waits is stopped too.
	_, err = runScript(t, Env{Timeout: 200 * time.Millisecond}, "sleep(\"1h\")\n")
	wantError(t, err, "script stopped: time limit of 200ms exceeded")
	_, err = runScript(t, Env{Timeout: 200 * time.Millisecond}, "pmap(lambda x: sleep(3600), range(4))\n")
	wantError(t, err, "script stopped: time limit of 200ms exceeded")
}

func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := NewSession(Env{}, nil)
	done := make(chan error, 1)
	go func() {
		_, err := s.Exec(ctx, "i.star", []byte("while True:\n    pass\n"))
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		wantError(t, err, "script stopped: interrupted")
		if !errors.Is(err, ErrInterrupted) {
			t.Errorf("errors.Is(ErrInterrupted) false for %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the script was not stopped")
	}
}

func TestSkeletonsWithInjectedFailures(t *testing.T) {
	out, err := runScript(t, Env{}, `
def half(x):
    if x % 3 == 0:
        fail("no multiples of 3: %d" % x)
    return x // 2

r = pmap(half, range(1, 8), workers=3)
print(r)
print([f.item for f in failures(r)], [f.index for f in failures(r)])
print(successes(r))
print(failures(r)[0].error)
print("in half" in failures(r)[0].backtrace)
print(pfilter(lambda x: half(x) > 1, range(1, 8)))
print([f.item for f in pforeach(half, range(1, 8))])
print(pforeach(half, [1, 2]))
print(preduce(lambda acc, x: acc + half(x), range(1, 8), 0))
bad = []
print(preduce(lambda acc, x: acc + half(x), range(1, 8), 100, failed=bad), [f.item for f in bad])
print(preduce(lambda acc, x: acc + [x], ["a", "b", "c"], []))
print(pmap(lambda x: x, []))
`)
	if err != nil {
		t.Fatal(err)
	}
	want := `[0, 1, failure(item=3, error="fail: no multiples of 3: 3"), 2, 2, failure(item=6, error="fail: no multiples of 3: 6"), 3]
[3, 6] [2, 5]
[0, 1, 2, 2, 3]
fail: no multiples of 3: 3
True
[failure(item=3, error="fail: no multiples of 3: 3"), 4, 5, failure(item=6, error="fail: no multiples of 3: 6"), 7]
[3, 6]
[]
preduce: 2 of 7 items failed and were left out; the first: 3: fail: no multiples of 3: 3 (pass failed=[] to get them)
8
108 [3, 6]
["a", "b", "c"]
[]
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

func TestSkeletonFailFast(t *testing.T) {
	_, err := runScript(t, Env{}, `
def f(x):
    if x == 2:
        fail("two")
    return x

pmap(f, range(5), workers=1, fail_fast=True)
`)
	wantError(t, err, "Error: pmap: item 2 (2) failed, so the others were abandoned (fail_fast=True): fail: two", "test.star:7:5: in <toplevel>")
	_, err = runScript(t, Env{}, `pforeach(lambda x: 1 // x, [1, 0, 2], fail_fast=True)`)
	wantError(t, err, "pforeach: item 1 (0) failed", "floored division by zero")
}

func TestParallelValuesAreFrozen(t *testing.T) {
	// A function must not change what other calls see: the items and
	// the globals it could reach are frozen.
	out, err := runScript(t, Env{}, `
seen = []
def record(x):
    seen.append(x)
    return x
r = pmap(record, [1, 2])
print([f.error for f in r])
items = [[1], [2]]
r = pmap(lambda l: l.append(0), items)
print([f.error for f in r])
`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "frozen list") != 4 {
		t.Errorf("parallel calls mutated shared values:\n%s", out)
	}
	// A sequential fold may change its accumulator in place.
	out, err = runScript(t, Env{}, `
def count(acc, x):
    acc[x] = acc.get(x, 0) + 1
    return acc
print(preduce(count, ["a", "b", "a"], {}))
`)
	if err != nil || out != "{\"a\": 2, \"b\": 1}\n" {
		t.Errorf("preduce in place: %q, %v", out, err)
	}
}

func TestSessionChunksAndCompletion(t *testing.T) {
	s := NewSession(Env{}, nil)
	ctx := context.Background()
	lines := []string{"def sq(x):\n", "    return x * x\n", "\n", "sq(7)\n", "nums = [sq(i) for i in range(3)]\n", "nums\n"}
	readline := func() ([]byte, error) {
		if len(lines) == 0 {
			return nil, errors.New("EOF")
		}
		l := lines[0]
		lines = lines[1:]
		return []byte(l), nil
	}
	var got []string
	for range 4 {
		f, src, err := s.ReadChunk("<stdin>", readline)
		if err != nil {
			t.Fatalf("ReadChunk: %v (read %q)", err, src)
		}
		v, err := s.ExecChunk(ctx, f, src)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v.String())
	}
	if want := []string{"None", "49", "None", "[0, 1, 4]"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("values %q, want %q", got, want)
	}
	if v := s.Global("_"); v == nil || v.String() != "[0, 1, 4]" {
		t.Errorf("_ = %v", v)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"pm", []string{"pmap"}},
		{"x = cre", []string{"x = create_vm"}},
		{"nu", []string{"nums"}},
		{"nums.app", []string{"nums.append"}},
		{"print(nums.ex", []string{"print(nums.extend"}},
		{"wh", []string{"while"}},
		{"pri", []string{"print"}},
		{"nothing.x", nil},
	} {
		if got := s.Complete(tc.prefix); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("Complete(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	// A syntax error in a chunk shows the line.
	lines = []string{"1 +* 2\n"}
	_, _, err := s.ReadChunk("<stdin>", readline)
	wantError(t, err, "<stdin>:1:4: got '*', want primary expression", "    1 +* 2\n       ^")
}

func TestBuiltinNames(t *testing.T) {
	names := BuiltinNames()
	for _, want := range []string{"hosts", "vms", "host", "vm", "networks", "network", "images", "image", "volumes", "volume", "create_vm", "pmap", "pfilter", "preduce", "pforeach",
		"failures", "successes", "wait_until", "sleep", "events", "print", "json", "len"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("BuiltinNames lacks %q", want)
		}
	}
	if _, ok := Builtins()["json"].(starlark.HasAttrs); !ok {
		t.Error("json is not a module")
	}
}
