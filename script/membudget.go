package script

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unicode"

	starjson "go.starlark.net/lib/json"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/kumoi/kumoi/resource"
)

// Memory budget. go.starlark.net counts steps, not memory: `[0] *
// 100000000` is one step that allocates 1.6 GB, and the interpreter has no
// hook to refuse it. So Kumoi bounds what it can see: before a script
// runs, its syntax tree is rewritten (boundFile) so that every operation
// that can allocate much in one step goes through a built-in that first
// charges the run's budget with the size of what it is about to make, and
// refuses when the budget would be exceeded:
//
//   - the binary operators * + % | (repetition, concatenation, string
//     formatting, union; also big-integer products) and their augmented
//     forms (+= *= |=);
//   - the elements a list or dict comprehension adds, and d[k] = v;
//   - the built-ins that materialise an iterable (list, tuple, sorted,
//     reversed, enumerate, zip, dict, set) or make text of a value (str,
//     repr), and getattr;
//   - the methods that grow a collection or make a string or list from one
//     (append, extend, insert, join, replace, split, update, items, …) and
//     json.encode/decode/indent.
//
// The charge is cumulative over a run (garbage is not given back), so it
// bounds the memory one handler call can hold. It is an estimate of the
// bytes of the values made (16 per list element, the bytes of a string,
// and so on), not the Go heap; values a Kumoi built-in returns (vms(),
// events) are bounded by the cluster, not charged.

// Defaults of Env.MaxAlloc.
const (
	// DefaultMaxAlloc bounds what one run of a script may allocate
	// through the operations Kumoi accounts for (kumoi run, the shell).
	DefaultMaxAlloc = 1 << 30
	// DefaultPolicyMaxAlloc is the memory budget of one policy handler
	// call (and of its top level): policies run inside the leader.
	DefaultPolicyMaxAlloc = 64 << 20
)

// ErrMemoryLimit: the script would have allocated more than Env.MaxAlloc.
var ErrMemoryLimit = errors.New("memory budget exceeded")

// allocBudget is the memory allowance of a run, shared by its threads.
type allocBudget struct {
	max  int64
	used atomic.Int64
}

// Estimated sizes (bytes) of what a value holds, per element.
const (
	sizeElem     = 16 // an interface value in a list or tuple
	sizeDictItem = 64 // a hash table entry (key, value, hash, links)
	sizeSetItem  = 48
	sizeTuple    = 40 // a small tuple's header, for enumerate/zip pairs
	sizeString   = 16 // a string header (the bytes are counted apart)
)

// charge takes n bytes from the budget of th's run, or stops the run with
// ErrMemoryLimit when they do not fit. Threads outside a run (tests) are
// not limited.
func charge(th *starlark.Thread, n int64) error {
	r, _ := runOf(th)
	if r == nil || r.alloc == nil || n <= 0 {
		return nil
	}
	b := r.alloc
	if n > b.max || b.used.Add(n) > b.max {
		msg := fmt.Sprintf("memory budget of %s exceeded", formatBytes(b.max))
		r.cancel(&limitError{msg: msg, sentinel: ErrMemoryLimit})
		return fmt.Errorf("%s (this operation would allocate about %s more, after %s)", msg, formatBytes(n), formatBytes(min(b.used.Load(), b.max)))
	}
	return nil
}

func formatBytes(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return resource.FormatMiB(n >> 20)
	}
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// mul is a*b, saturated (sizes only grow to refuse).
func mul(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > (1<<62)/b {
		return 1 << 62
	}
	return a * b
}

// sizeOf estimates the bytes a value holds at its top level (its
// elements are counted by their own size when they were made).
func sizeOf(v starlark.Value) int64 {
	switch v := v.(type) {
	case starlark.String:
		return int64(len(v)) + sizeString
	case starlark.Bytes:
		return int64(len(v)) + sizeString
	case *starlark.List:
		return mul(int64(v.Len()), sizeElem)
	case starlark.Tuple:
		return mul(int64(len(v)), sizeElem)
	case *starlark.Dict:
		return mul(int64(v.Len()), sizeDictItem)
	case *starlark.Set:
		return mul(int64(v.Len()), sizeSetItem)
	case starlark.Int:
		if _, small := v.Int64(); small {
			return 0
		}
		return int64(v.BigInt().BitLen()/8) + 16
	}
	return 0
}

// seqLen is the length of an iterable (-1: not known without iterating).
func seqLen(v starlark.Value) int64 { return int64(starlark.Len(v)) }

func intBits(v starlark.Value) int64 {
	if i, ok := v.(starlark.Int); ok {
		if _, small := i.Int64(); small {
			return 64
		}
		return int64(i.BigInt().BitLen())
	}
	return 0
}

// binopEstimate is the size of x op y, computed before the operation
// (-1: charge what it made, after).
func binopEstimate(op syntax.Token, x, y starlark.Value) int64 {
	switch op {
	case syntax.STAR:
		if n, ok := repeatCount(y); ok && isSeq(x) {
			return repeatSize(x, n)
		}
		if n, ok := repeatCount(x); ok && isSeq(y) {
			return repeatSize(y, n)
		}
		if bx, by := intBits(x), intBits(y); bx > 64 || by > 64 {
			return (bx+by)/8 + 16
		}
		return 0
	case syntax.PLUS:
		switch x.(type) {
		case starlark.String, starlark.Bytes, *starlark.List, starlark.Tuple:
			return sizeOf(x) + sizeOf(y)
		}
		if bx, by := intBits(x), intBits(y); bx > 64 || by > 64 {
			return max(bx, by)/8 + 16
		}
		return 0
	}
	return -1
}

func isSeq(v starlark.Value) bool {
	switch v.(type) {
	case starlark.String, starlark.Bytes, *starlark.List, starlark.Tuple:
		return true
	}
	return false
}

func repeatCount(v starlark.Value) (int64, bool) {
	i, ok := v.(starlark.Int)
	if !ok {
		return 0, false
	}
	n, small := i.Int64()
	if !small {
		return 1 << 62, true
	}
	return n, true
}

func repeatSize(v starlark.Value, n int64) int64 {
	switch v := v.(type) {
	case starlark.String:
		return mul(int64(len(v)), n) + sizeString
	case starlark.Bytes:
		return mul(int64(len(v)), n) + sizeString
	case *starlark.List:
		return mul(mul(int64(v.Len()), n), sizeElem)
	case starlark.Tuple:
		return mul(mul(int64(len(v)), n), sizeElem)
	}
	return 0
}

// opNames are the operators boundFile routes through __kumoi_op, by the
// name passed to it.
var opTokens = map[string]syntax.Token{"*": syntax.STAR, "+": syntax.PLUS, "%": syntax.PERCENT, "|": syntax.PIPE}

// kumoiOp: __kumoi_op(op, x, y) is x op y, charged.
func kumoiOp(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) != 3 || len(kwargs) != 0 {
		return nil, errors.New("__kumoi_op: want (op, x, y)")
	}
	name, _ := starlark.AsString(args[0])
	op, ok := opTokens[name]
	if !ok {
		return nil, fmt.Errorf("__kumoi_op: unknown operator %q", name)
	}
	x, y := args[1], args[2]
	est := binopEstimate(op, x, y)
	if s, ok := x.(starlark.String); ok && op == syntax.PERCENT {
		est = int64(len(s)) + textSize(y, remaining(th))
	}
	if err := charge(th, est); err != nil {
		return nil, err
	}
	z, err := starlark.Binary(op, x, y)
	if err != nil {
		return nil, err
	}
	if est < 0 {
		if err := charge(th, sizeOf(z)); err != nil {
			return nil, err
		}
	}
	return z, nil
}

// kumoiAug: __kumoi_aug(op, x, y) charges x op= y (x is None when the
// target could not be read twice) and returns y.
func kumoiAug(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) != 3 || len(kwargs) != 0 {
		return nil, errors.New("__kumoi_aug: want (op, x, y)")
	}
	name, _ := starlark.AsString(args[0])
	op, ok := opTokens[name]
	if !ok {
		return nil, fmt.Errorf("__kumoi_aug: unknown operator %q", name)
	}
	x, y := args[1], args[2]
	var est int64
	switch x.(type) {
	case starlark.NoneType:
		est = 2 * sizeOf(y) // in place, by y (a string: at least that)
	case *starlark.List:
		if op == syntax.PLUS {
			est = 2 * sizeOf(y) // extended in place, by y
			break
		}
		est = binopEstimate(op, x, y)
	default:
		est = binopEstimate(op, x, y)
		if s, ok := x.(starlark.String); ok && op == syntax.PERCENT {
			est = int64(len(s)) + textSize(y, remaining(th))
		}
		if est < 0 {
			est = sizeOf(x) + sizeOf(y) // |: about its operands
		}
	}
	if err := charge(th, est); err != nil {
		return nil, err
	}
	return y, nil
}

// MaxCallDepth bounds the depth of Starlark calls (recursion): each is
// a Go call of the interpreter, and a Go stack overflow ends the process.
const MaxCallDepth = 1000

// kumoiDepth: __kumoi_depth() fails past MaxCallDepth; else False.
func kumoiDepth(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	// Each Starlark call is two frames here: the function and this
	// built-in.
	if th.CallStackDepth() > MaxCallDepth+1 {
		return nil, fmt.Errorf("call depth limit of %d exceeded (infinite recursion?)", MaxCallDepth)
	}
	return starlark.False, nil
}

// kumoiElem: __kumoi_elem(v) charges one element added to a list or a
// dict (a comprehension, d[k] = v) and returns v.
func kumoiElem(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) != 1 || len(kwargs) != 0 {
		return nil, errors.New("__kumoi_elem: want one value")
	}
	if err := charge(th, sizeDictItem); err != nil {
		return nil, err
	}
	return args[0], nil
}

// kumoiAttr: __kumoi_attr(x, name) is x.name, with the methods that
// allocate wrapped so that they charge first.
func kumoiAttr(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) != 2 || len(kwargs) != 0 {
		return nil, errors.New("__kumoi_attr: want (x, name)")
	}
	name, _ := starlark.AsString(args[1])
	return boundAttr(args[0], name)
}

func boundAttr(x starlark.Value, name string) (starlark.Value, error) {
	ha, ok := x.(starlark.HasAttrs)
	if !ok {
		return nil, fmt.Errorf("%s has no .%s field or method", x.Type(), name)
	}
	v, err := ha.Attr(name)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("%s has no .%s field or method", x.Type(), name)
	}
	b, isBuiltin := v.(*starlark.Builtin)
	if !isBuiltin {
		return v, nil
	}
	switch x.(type) {
	case starlark.String, starlark.Bytes, *starlark.List, *starlark.Dict, *starlark.Set:
	default:
		if x != starlark.Value(starjson.Module) {
			return v, nil
		}
	}
	est, ok := methodCharges[name]
	if !ok {
		return v, nil
	}
	return starlark.NewBuiltin(name, func(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		pre := est(th, x, args, kwargs)
		if err := charge(th, pre); err != nil {
			return nil, err
		}
		z, err := b.CallInternal(th, args, kwargs)
		if err != nil {
			return nil, err
		}
		if pre < 0 {
			if err := charge(th, sizeOf(z)); err != nil {
				return nil, err
			}
		}
		return z, nil
	}), nil
}

// walks are the wrapped built-ins that walk an iterable argument.
var walks = map[string]bool{"list": true, "tuple": true, "sorted": true, "reversed": true, "enumerate": true,
	"zip": true, "dict": true, "set": true, "min": true, "max": true, "all": true, "any": true}

// cancelArgs charges nothing (min, max, all, any make nothing): they
// are wrapped only to stop walking with the run.
func cancelArgs(*starlark.Thread, starlark.Value, starlark.Tuple, []starlark.Tuple) int64 { return 0 }

// textOfArgs estimates the text that str, repr, print, format, % and
// json.encode make of their arguments (textSize), before they make it.
func textOfArgs(th *starlark.Thread, recv starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple) int64 {
	limit := remaining(th)
	n := textSize(recv, limit)
	for _, a := range args {
		n += textSize(a, limit-n)
	}
	for _, kv := range kwargs {
		n += textSize(kv[1], limit-n)
	}
	return n
}

// remaining is what is left of th's run's budget (a large number outside
// a run).
func remaining(th *starlark.Thread) int64 {
	if r, _ := runOf(th); r != nil && r.alloc != nil {
		return max(r.alloc.max-r.alloc.used.Load(), 0)
	}
	return 1 << 40
}

// textSize estimates the length of the text of v (str, repr, JSON),
// walking it but giving up as soon as it passes limit: a value that
// shares itself (a = [a, a] forty times) has an exponential text, and a
// range a long one, without being large.
func textSize(v starlark.Value, limit int64) int64 {
	var n int64
	var walk func(v starlark.Value)
	walk = func(v starlark.Value) {
		if n > limit {
			return
		}
		switch v := v.(type) {
		case nil:
		case starlark.String:
			n += int64(len(v)) + 2
		case starlark.Bytes:
			n += 4*int64(len(v)) + 3
		case starlark.Int:
			if _, small := v.Int64(); small {
				n += 20
			} else {
				n += int64(v.BigInt().BitLen()/3) + 2
			}
		case starlark.Indexable: // list, tuple, range
			n += 2
			for i := range v.Len() {
				if n > limit {
					return
				}
				n += 2
				walk(v.Index(i))
			}
		case starlark.IterableMapping: // dict
			n += 2
			for _, kv := range v.Items() {
				if n > limit {
					return
				}
				n += 4
				walk(kv[0])
				walk(kv[1])
			}
		case starlark.Iterable: // set, other iterables
			if l := starlark.Len(v); l >= 0 {
				n += 2 + 3*int64(l)
			}
			if n <= limit {
				it := v.Iterate()
				var x starlark.Value
				for n <= limit && it.Next(&x) {
					walk(x)
				}
				it.Done()
			}
		default:
			n += 24
		}
	}
	walk(v)
	return n
}

// cancellable returns it wrapped so that iterating it stops once th's run
// is stopped (a limit, an interrupt): a built-in that walks an iterable
// in one step (all(range(1 << 60))) would not see the cancellation.
func cancellable(th *starlark.Thread, it starlark.Iterable) starlark.Iterable {
	_, ctx := runOf(th)
	if ctx.Done() == nil {
		return it
	}
	return &stopIterable{Iterable: it, ctx: ctx}
}

type stopIterable struct {
	starlark.Iterable
	ctx context.Context
}

func (s *stopIterable) Iterate() starlark.Iterator {
	return &stopIterator{Iterator: s.Iterable.Iterate(), ctx: s.ctx}
}

type stopIterator struct {
	starlark.Iterator
	ctx context.Context
	n   int
}

func (s *stopIterator) Next(p *starlark.Value) bool {
	if s.n++; s.n%1024 == 0 && s.ctx.Err() != nil {
		return false
	}
	return s.Iterator.Next(p)
}

// after: charge the result's size once made (bounded by what exists).
func after(*starlark.Thread, starlark.Value, starlark.Tuple, []starlark.Tuple) int64 { return -1 }

func argLen(i int, per int64) func(*starlark.Thread, starlark.Value, starlark.Tuple, []starlark.Tuple) int64 {
	return func(_ *starlark.Thread, _ starlark.Value, args starlark.Tuple, _ []starlark.Tuple) int64 {
		if i >= len(args) {
			return 0
		}
		if n := seqLen(args[i]); n >= 0 {
			return mul(n, per)
		}
		return -1
	}
}

func fixed(n int64) func(*starlark.Thread, starlark.Value, starlark.Tuple, []starlark.Tuple) int64 {
	return func(*starlark.Thread, starlark.Value, starlark.Tuple, []starlark.Tuple) int64 { return n }
}

// methodCharges estimate, before the call, what a method makes (-1:
// charge its result after).
var methodCharges = map[string]func(th *starlark.Thread, recv starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple) int64{
	// list
	"append": fixed(sizeElem * 2), // amortised growth
	"insert": fixed(sizeElem * 2),
	"extend": argLen(0, sizeElem*2),
	// dict, set
	"update":     argLen(0, sizeDictItem),
	"setdefault": fixed(sizeDictItem),
	"items": func(_ *starlark.Thread, r starlark.Value, _ starlark.Tuple, _ []starlark.Tuple) int64 {
		return mul(seqLen(r), sizeElem+sizeTuple)
	},
	"keys": func(_ *starlark.Thread, r starlark.Value, _ starlark.Tuple, _ []starlark.Tuple) int64 {
		return mul(seqLen(r), sizeElem)
	},
	"values": func(_ *starlark.Thread, r starlark.Value, _ starlark.Tuple, _ []starlark.Tuple) int64 {
		return mul(seqLen(r), sizeElem)
	},
	"add":   fixed(sizeSetItem),
	"union": argLen(0, sizeSetItem),
	// strings
	"join":       joinEstimate,
	"replace":    replaceEstimate,
	"split":      splitEstimate,
	"rsplit":     splitEstimate,
	"splitlines": splitEstimate,
	"format":     textOfArgs,
	"upper":      after, "lower": after, "title": after, "capitalize": after, "swapcase": after,
	// json
	"encode": textOfArgs,
	"indent": textOfArgs,
	"decode": func(_ *starlark.Thread, _ starlark.Value, args starlark.Tuple, _ []starlark.Tuple) int64 {
		if len(args) > 0 {
			if s, ok := starlark.AsString(args[0]); ok {
				return mul(int64(len(s)), 8)
			}
		}
		return 0
	},
}

func joinEstimate(th *starlark.Thread, recv starlark.Value, args starlark.Tuple, _ []starlark.Tuple) int64 {
	sep, _ := starlark.AsString(recv)
	if len(args) != 1 {
		return 0
	}
	seq, ok := args[0].(starlark.Indexable)
	if !ok {
		return -1
	}
	n := int64(seq.Len())
	total := mul(n, int64(len(sep)))
	limit := remaining(th)
	for i := range seq.Len() {
		s, ok := starlark.AsString(seq.Index(i))
		if !ok || total > limit {
			break // join fails there, or the budget does
		}
		total += int64(len(s))
	}
	return total + sizeString
}

func replaceEstimate(_ *starlark.Thread, recv starlark.Value, args starlark.Tuple, _ []starlark.Tuple) int64 {
	s, _ := starlark.AsString(recv)
	if len(args) < 2 {
		return 0
	}
	old, ok1 := starlark.AsString(args[0])
	repl, ok2 := starlark.AsString(args[1])
	if !ok1 || !ok2 {
		return 0
	}
	var n int64
	if old == "" {
		n = int64(len(s)) + 1
	} else {
		n = int64(strings.Count(s, old))
	}
	if len(args) > 2 {
		if c, ok := args[2].(starlark.Int); ok {
			if k, small := c.Int64(); small && k >= 0 && k < n {
				n = k
			}
		}
	}
	return int64(len(s)) + mul(n, int64(max(len(repl)-len(old), 0))) + sizeString
}

func splitEstimate(_ *starlark.Thread, recv starlark.Value, _ starlark.Tuple, _ []starlark.Tuple) int64 {
	s, ok := starlark.AsString(recv)
	if !ok {
		return 0
	}
	// At most one part per byte, each a string header in a list.
	parts := int64(strings.Count(s, "\n") + 1)
	if f := countFields(s); int64(f) > parts {
		parts = int64(f)
	}
	return mul(parts, sizeElem+sizeString)
}

func countFields(s string) int {
	n, in := 0, false
	for _, r := range s {
		if unicode.IsSpace(r) {
			in = false
		} else if !in {
			in, n = true, n+1
		}
	}
	return n
}

// boundBuiltins are Starlark's built-ins that make a value as large as an
// iterable, wrapped to charge it first; they shadow the originals.
func boundBuiltins() starlark.StringDict {
	wrap := func(name string, est func(*starlark.Thread, starlark.Value, starlark.Tuple, []starlark.Tuple) int64) *starlark.Builtin {
		orig := starlark.Universe[name].(*starlark.Builtin)
		return starlark.NewBuiltin(name, func(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			pre := est(th, nil, args, kwargs)
			if err := charge(th, pre); err != nil {
				return nil, err
			}
			// The iterable is walked in one step: stop with the run.
			cargs := args
			if walks[name] {
				cargs = make(starlark.Tuple, len(args))
				for i, a := range args {
					_, isMap := a.(starlark.IterableMapping)
					if it, ok := a.(starlark.Iterable); ok && !isMap && starlark.Len(a) > 1024 {
						a = cancellable(th, it)
					}
					cargs[i] = a
				}
			}
			z, err := orig.CallInternal(th, cargs, kwargs)
			if err != nil {
				return nil, err
			}
			if _, ctx := runOf(th); ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if pre < 0 {
				if err := charge(th, sizeOf(z)); err != nil {
					return nil, err
				}
			}
			return z, nil
		})
	}
	zipEst := func(_ *starlark.Thread, _ starlark.Value, args starlark.Tuple, _ []starlark.Tuple) int64 {
		var n int64 = -1
		for _, a := range args {
			if l := seqLen(a); l >= 0 && (n < 0 || l < n) {
				n = l
			}
		}
		if n < 0 {
			return -1
		}
		return mul(n, sizeElem+sizeTuple+mul(int64(len(args)), sizeElem))
	}
	d := starlark.StringDict{
		"list":      wrap("list", argLen(0, sizeElem)),
		"tuple":     wrap("tuple", argLen(0, sizeElem)),
		"sorted":    wrap("sorted", argLen(0, sizeElem)),
		"reversed":  wrap("reversed", argLen(0, sizeElem)),
		"enumerate": wrap("enumerate", argLen(0, sizeElem+sizeTuple+2*sizeElem)),
		"zip":       wrap("zip", zipEst),
		"dict":      wrap("dict", argLen(0, sizeDictItem)),
		"set":       wrap("set", argLen(0, sizeSetItem)),
		"str":       wrap("str", textOfArgs),
		"repr":      wrap("repr", textOfArgs),
		"print":     wrap("print", textOfArgs),
		"min":       wrap("min", cancelArgs),
		"max":       wrap("max", cancelArgs),
		"all":       wrap("all", cancelArgs),
		"any":       wrap("any", cancelArgs),
		"getattr": starlark.NewBuiltin("getattr", func(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var (
				x    starlark.Value
				name string
				def  starlark.Value
			)
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 2, &x, &name, &def); err != nil {
				return nil, err
			}
			v, err := boundAttr(x, name)
			if err != nil && def != nil {
				return def, nil
			}
			return v, err
		}),
		"__kumoi_op":    starlark.NewBuiltin("__kumoi_op", kumoiOp),
		"__kumoi_elem":  starlark.NewBuiltin("__kumoi_elem", kumoiElem),
		"__kumoi_aug":   starlark.NewBuiltin("__kumoi_aug", kumoiAug),
		"__kumoi_depth": starlark.NewBuiltin("__kumoi_depth", kumoiDepth),
		"__kumoi_attr":  starlark.NewBuiltin("__kumoi_attr", kumoiAttr),
	}
	return d
}

// isHiddenBuiltin: the built-ins boundFile calls, which error reports
// do not name.
func isHiddenBuiltin(name string) bool { return strings.HasPrefix(name, "__kumoi_") }
