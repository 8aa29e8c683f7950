package script

import (
	"context"
	"errors"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/resource"
)

// heapAllocs is the bytes the Go heap has allocated in all
// (runtime/metrics), to measure what a script made.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestPolicyMemoryBudget is issue 12's defect: a handler `x = [0] *
// 100000000` with max_steps 1000 took the leader to 1.8 GB before any
// limit fired. It now fails at once with "memory budget exceeded", and
// the process allocates next to nothing meanwhile.
func TestPolicyMemoryBudget(t *testing.T) {
	ctx := context.Background()
	p, err := LoadPolicy(ctx, "hog", "events = [\"vm.failed\"]\n\ndef on_event(ev):\n    x = [0] * 100000000\n    print(len(x))\n", Env{MaxSteps: 1000})
	if err != nil {
		t.Fatal(err)
	}
	before := heapAllocs()
	err = p.Handle(ctx, Event{Type: "vm.failed", Index: 1, Kind: resource.KindVM, Name: "web", Object: vmObject("web", "failed")})
	grew := heapAllocs() - before
	if !errors.Is(err, ErrMemoryLimit) || !strings.Contains(err.Error(), "script stopped: memory budget of 64MiB exceeded") || !strings.Contains(err.Error(), "hog.star:4:") {
		t.Fatalf("Handle: %v; want the memory budget exceeded, at hog.star:4", err)
	}
	if grew > 16<<20 {
		t.Errorf("the heap allocated %d MiB while the handler ran; want next to nothing", grew>>20)
	}
	// The same at the top level of the policy.
	before = heapAllocs()
	_, err = LoadPolicy(ctx, "top", "x = [0] * 100000000\nevents = [\"vm\"]\ndef on_event(ev):\n    pass\n", Env{})
	if grew := heapAllocs() - before; !errors.Is(err, ErrMemoryLimit) || grew > 16<<20 {
		t.Errorf("top level: %v, %d MiB allocated", err, grew>>20)
	}
}

// TestMemoryBudget: every way Kumoi knows to allocate much in few steps
// is charged before it allocates; ordinary code runs as before.
func TestMemoryBudget(t *testing.T) {
	const budget = 4 << 20
	env := Env{MaxAlloc: budget, MaxSteps: 1 << 40}
	hogs := map[string]string{
		"list repeat":     "x = [0] * 100000000",
		"list repeat rev": "x = 100000000 * [0]",
		"string repeat":   `x = "x" * 100000000`,
		"tuple repeat":    "x = (1, 2) * 100000000",
		"doubling +":      "s = 'x'\nfor i in range(40):\n    s = s + s",
		"doubling +=":     "s = 'x'\nfor i in range(40):\n    s += s",
		"list +=":         "l = [0]\nfor i in range(40):\n    l += l",
		"index +=":        "d = {'k': [0]}\nfor i in range(40):\n    d['k'] += d['k']",
		"call target +=":  "d = {'k': [0]}\ndef f():\n    return d\nfor i in range(40):\n    f()['k'] += f()['k']",
		"extend":          "l = [0]\nfor i in range(40):\n    l.extend(l)",
		"extend range":    "l = []\nl.extend(range(100000000))",
		"append loop":     "l = []\nfor i in range(100000000):\n    l.append(i)",
		"list(range)":     "x = list(range(100000000))",
		"tuple(range)":    "x = tuple(range(100000000))",
		"sorted(range)":   "x = sorted(range(100000000))",
		"reversed(range)": "x = reversed(range(100000000))",
		"enumerate":       "x = enumerate(range(100000000))",
		"zip":             "x = zip(range(100000000), range(100000000))",
		"dict(zip)":       "x = dict([(1, 2)] * 1000000)",
		"comprehension":   "x = [i for i in range(100000000)]",
		"dict compr":      "x = {i: i for i in range(100000000)}",
		"dict store":      "d = {}\nfor i in range(100000000):\n    d[i] = i",
		"join":            `x = "-".join(["abcdefgh"] * 1000000)`,
		"replace":         `x = ("a" * 1000).replace("", "b" * 100000)`,
		"split":           `x = ("a " * 1000000).split()`,
		"bigint square":   "x = 1 << 500\nfor i in range(40):\n    x = x * x",
		"format doubling": "s = 'x'\nfor i in range(40):\n    s = '%s%s' % (s, s)",
		"getattr":         "l = []\ngetattr(l, 'extend')(range(100000000))",
		"str":             "s = 'x'\nfor i in range(40):\n    s = str([s, s])",
		"json":            "s = 'x'\nfor i in range(40):\n    s = json.encode([s, s])",
		"lambda":          "f = lambda n: [0] * n\nf(100000000)",
		"default":         "def f(x = [0] * 100000000):\n    pass",
		"pmap":            "pmap(lambda i: [0] * 1000000, range(64), workers=8)",
		"pmap items":      "pmap(lambda i: i, range(100000000))",
		"json range":      "json.encode(range(1 << 40))",
		"failures":        "x = successes(range(1 << 40))",
		"json nested":     "json.encode([1, [range(1 << 40)]])",
		"shared str":      "a = [0]\nfor i in range(40):\n    a = [a, a]\ns = str(a)",
		"shared print":    "a = [0]\nfor i in range(40):\n    a = [a, a]\nprint(a)",
		"shared format":   "a = [0]\nfor i in range(40):\n    a = [a, a]\ns = '%s' % (a,)",
		"shared .format":  "a = [0]\nfor i in range(40):\n    a = [a, a]\ns = '{}'.format(a)",
		"shared json":     "a = [0]\nfor i in range(40):\n    a = [a, a]\ns = json.encode(a)",
	}
	for name, src := range hogs {
		t.Run(name, func(t *testing.T) {
			before := heapAllocs()
			_, err := runScript(t, env, src+"\n")
			grew := heapAllocs() - before
			if !errors.Is(err, ErrMemoryLimit) || !strings.Contains(err.Error(), "memory budget of 4MiB exceeded") {
				t.Fatalf("%v; want the memory budget exceeded", err)
			}
			if grew > 64<<20 {
				t.Errorf("the heap allocated %d MiB; the budget is 4 MiB", grew>>20)
			}
		})
	}

	fine := `
a = [1, 2] * 2
b = [1]
alias = b
b += [2]
s = "a"
s += "b"
s *= 2
n = 3
n += 4
n *= 2
d = {"k": [1]}
d["k"] += [2]
d["j"] = 5
u = {1: 2} | {3: 4}
st = set([1, 2])
st |= set([3])
t = (1,) + (2,)
sq = [i * i for i in range(5)]
dc = {str(i): i for i in range(3)}
j = ",".join(["x", "y"])
r = "aXa".replace("X", "yy")
sp = "a b  c".split()
l = []
l.append(1)
l.extend([2, 3])
l.insert(0, 0)
f = "%d-%s" % (7, "z")
big = (1 << 100) * (1 << 100)
print(a, alias, s, n, d, u, st, t, sq, dc, j, r, sp, l, f, big == 1 << 200, sorted([3, 1, 2]), list(range(3)), getattr("ab", "upper")(), zip([1], [2]), enumerate("ab".elems()))
`
	out, err := runScript(t, env, fine)
	if err != nil {
		t.Fatal(err)
	}
	want := `[1, 2, 1, 2] [1, 2] abab 14 {"k": [1, 2], "j": 5} {1: 2, 3: 4} set([1, 2, 3]) (1, 2) [0, 1, 4, 9, 16] {"0": 0, "1": 1, "2": 2} x,y ayya ["a", "b", "c"] [0, 1, 2, 3] 7-z True [1, 2, 3] [0, 1, 2] AB [(1, 2)] [(0, "a"), (1, "b")]` + "\n"
	if out != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}

	for src, msg := range map[string]string{
		"__kumoi_op = 1\n":                        "names starting with __kumoi are reserved (__kumoi_op)",
		"def f():\n    return [1]\nf()[0] *= 2\n": "*= to a target with a call in it cannot be bounded",
		"x = 1 + 'a'\n":                           `unknown binary op: int + string`,
		"x = None\nx.join\n":                      "NoneType has no .join field or method",
	} {
		_, err := runScript(t, env, src)
		e := wantError(t, err, msg)
		if !strings.Contains(src, "__kumoi") && strings.Contains(e.Msg, "__kumoi") {
			t.Errorf("%q: the error names a hidden built-in: %v", src, e)
		}
	}
}
