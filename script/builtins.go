package script

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strings"
	"time"

	starjson "go.starlark.net/lib/json"
	"go.starlark.net/starlark"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// builtinFuncs are Kumoi's built-in functions, beside Starlark's own
// (print, len, sorted, fail, …).
var builtinFuncs = map[string]func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error){
	"hosts":      hostsBuiltin,
	"vms":        vmsBuiltin,
	"host":       hostBuiltin,
	"vm":         vmBuiltin,
	"networks":   listBuiltin(resource.KindNetwork),
	"network":    getBuiltin(resource.KindNetwork),
	"images":     listBuiltin(resource.KindImage),
	"image":      getBuiltin(resource.KindImage),
	"volumes":    listBuiltin(resource.KindVolume),
	"volume":     getBuiltin(resource.KindVolume),
	"projects":   listBuiltin(resource.KindProject),
	"project":    getBuiltin(resource.KindProject),
	"create_vm":  createVM,
	"pmap":       pmap,
	"pfilter":    pfilter,
	"preduce":    preduce,
	"pforeach":   pforeach,
	"failures":   failuresBuiltin,
	"successes":  successesBuiltin,
	"wait_until": waitUntil,
	"sleep":      sleepBuiltin,
	"events":     eventsBuiltin,
	"rebalance":  rebalanceBuiltin,
}

// Builtins returns a fresh dictionary of Kumoi's built-ins: the functions
// of the package documentation and the json module (json.encode,
// json.decode, json.indent).
func Builtins() starlark.StringDict {
	d := starlark.StringDict{"json": starjson.Module}
	for name, fn := range builtinFuncs {
		d[name] = starlark.NewBuiltin(name, fn)
	}
	return d
}

// BuiltinNames lists the names Builtins defines and Starlark's own
// built-ins (print, len, …), sorted: what the shell completes.
func BuiltinNames() []string {
	var out []string
	for n := range Builtins() {
		out = append(out, n)
	}
	for n := range starlark.Universe {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func sessionOf(th *starlark.Thread) *Session {
	if r, _ := runOf(th); r != nil {
		return r.sess
	}
	return nil
}

// listObjects lists objects of kind as a Starlark list of values.
func listObjects(th *starlark.Thread, kind resource.Kind, opts *client.QueryOptions) (starlark.Value, error) {
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	objs, _, err := cl.List(ctx, kind, opts)
	if err != nil {
		return nil, err
	}
	s := sessionOf(th)
	out := make([]starlark.Value, len(objs))
	for i, o := range objs {
		out[i] = newObject(s, o)
	}
	return starlark.NewList(out), nil
}

func listBuiltin(kind resource.Kind) func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
	return func(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var sel string
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "selector?", &sel); err != nil {
			return nil, err
		}
		if _, err := resource.ParseSelector(sel); err != nil {
			return nil, fmt.Errorf("%s: for parameter \"selector\": %v", b.Name(), err)
		}
		return listObjects(th, kind, &client.QueryOptions{Selector: sel})
	}
}

var (
	hostsBuiltin = listBuiltin(resource.KindHost)
	vmsBuiltin   = listBuiltin(resource.KindVM)
	hostBuiltin  = getBuiltin(resource.KindHost)
	vmBuiltin    = getBuiltin(resource.KindVM)
)

func getBuiltin(kind resource.Kind) func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
	return func(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name string
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name); err != nil {
			return nil, err
		}
		cl, ctx, err := clientOf(th)
		if err != nil {
			return nil, err
		}
		if err := resource.ValidateName(name); err != nil {
			return nil, fmt.Errorf("%s: for parameter \"name\": %q is not a %s name: use lower-case letters, digits and '-'", b.Name(), name, kind)
		}
		o, _, err := cl.Get(ctx, kind, name, nil)
		if err != nil {
			return nil, objectErr(kind, name, err)
		}
		return newObject(sessionOf(th), o), nil
	}
}

// createWaitTimeout bounds create_vm(wait=True).
const createWaitTimeout = 5 * time.Minute

// create_vm(name, cpus=1, memory="256MiB", labels={}, ha="none",
// networks=[], disks=[], project=None, wait=False). networks are "NETWORK" or
// "NETWORK:IP"; disks are {"image": IMAGE, "size": SIZE} or
// {"volume": VOLUME}.
func createVM(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		name     string
		cpus     = 1
		memory   = memoryArg(256)
		labels   labelsArg
		ha       = resource.HANone
		networks *starlark.List
		disks    *starlark.List
		project  string
		wait     bool
	)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "cpus?", &cpus, "memory?", &memory,
		"labels?", &labels, "ha?", &ha, "networks?", &networks, "disks?", &disks, "wait?", &wait, "project?", &project); err != nil {
		return nil, err
	}
	nics, err := nicsArg(b.Name(), networks)
	if err != nil {
		return nil, err
	}
	ds, err := disksArg(b.Name(), disks)
	if err != nil {
		return nil, err
	}
	if err := resource.ValidateName(name); err != nil {
		return nil, fmt.Errorf("%s: for parameter \"name\": %s", b.Name(), fieldMsg(err))
	}
	if ha != resource.HANone && ha != resource.HARestart {
		return nil, fmt.Errorf("%s: for parameter \"ha\": %q is not an HA policy; use \"none\" or \"restart\"", b.Name(), ha)
	}
	if project != "" {
		if err := resource.ValidateName(project); err != nil {
			return nil, fmt.Errorf("%s: for parameter \"project\": %s", b.Name(), fieldMsg(err))
		}
	}
	spec, err := json.Marshal(resource.VMSpec{CPUs: cpus, MemoryMiB: int64(memory), HA: ha, NICs: nics, Disks: ds, Project: project})
	if err != nil {
		return nil, err
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	o, err := cl.Create(ctx, resource.KindVM, resource.CreateRequest{Name: name, Labels: labels, Spec: spec})
	if errors.Is(err, client.ErrAlreadyExists) {
		return nil, fmt.Errorf("vm %q already exists; choose another name or delete it first", name)
	}
	if err != nil {
		return nil, err
	}
	v := newVM(sessionOf(th), o)
	if wait {
		return v.wait(th, resource.PhaseRunning, createWaitTimeout)
	}
	return v, nil
}

func fieldMsg(err error) string {
	var fe *resource.FieldError
	if errors.As(err, &fe) {
		return fe.Msg
	}
	return err.Error()
}

// failures(results) and successes(results).
func failuresBuiltin(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return splitResults(th, b, args, kwargs, true)
}

func successesBuiltin(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return splitResults(th, b, args, kwargs, false)
}

func splitResults(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, wantFailures bool) (starlark.Value, error) {
	var results starlark.Iterable
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "results", &results); err != nil {
		return nil, err
	}
	var out []starlark.Value
	it := cancellable(th, results).Iterate()
	defer it.Done()
	var x starlark.Value
	for it.Next(&x) {
		if _, failed := x.(*Failure); failed == wantFailures {
			if err := charge(th, sizeElem*2); err != nil {
				return nil, err
			}
			out = append(out, x)
		}
	}
	if _, ctx := runOf(th); ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return starlark.NewList(out), nil
}

// wait_until(fn, timeout="60s") calls fn until it returns a true value,
// which it returns; between calls it waits, 100ms at first, then longer up
// to 2s.
func waitUntil(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fn starlark.Callable
	timeout := durationArg(time.Minute)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "fn", &fn, "timeout?", &timeout); err != nil {
		return nil, err
	}
	_, ctx := runOf(th)
	deadline := time.Now().Add(time.Duration(timeout))
	pause := 100 * time.Millisecond
	for {
		v, err := starlark.Call(th, fn, nil, nil)
		if err != nil {
			return nil, err
		}
		if v.Truth() {
			return v, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("%s: the condition is still false after %s", b.Name(), time.Duration(timeout))
		}
		if err := sleepCtx(ctx, min(pause, left)); err != nil {
			return nil, err
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// sleep(duration)
func sleepBuiltin(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var d durationArg
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "duration", &d); err != nil {
		return nil, err
	}
	_, ctx := runOf(th)
	if err := sleepCtx(ctx, time.Duration(d)); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("stopped: %s", stopReason(ctx))
	case <-t.C:
		return nil
	}
}

// events(kinds=[], since=0) returns an iterable of the cluster's events.
func eventsBuiltin(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var kinds *starlark.List
	var since uint64
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "kinds?", &kinds, "since?", &since); err != nil {
		return nil, err
	}
	var filter []string
	if kinds != nil {
		for i := range kinds.Len() {
			s, ok := starlark.AsString(kinds.Index(i))
			if !ok {
				return nil, fmt.Errorf("%s: for parameter \"kinds\": element %d is %s, want a string such as \"vm\" or \"host.down\"", b.Name(), i, kinds.Index(i).Type())
			}
			filter = append(filter, s)
		}
	}
	m, err := NewMatcher(filter)
	if err != nil {
		return nil, fmt.Errorf("%s: for parameter \"kinds\": %v", b.Name(), err)
	}
	if _, _, err := clientOf(th); err != nil {
		return nil, err
	}
	return &eventStream{th: th, matcher: m, since: since}, nil
}

// eventStream is the iterable that events() returns. Iterating it follows
// the cluster's event stream from its index on, without end: break out of
// the loop (or let the time limit stop the script).
type eventStream struct {
	th      *starlark.Thread
	matcher *Matcher
	since   uint64
}

func (e *eventStream) String() string {
	return fmt.Sprintf("events(kinds=%s, since=%d)", e.matcher, e.since)
}
func (e *eventStream) Type() string          { return "events" }
func (e *eventStream) Freeze()               {}
func (e *eventStream) Truth() starlark.Bool  { return starlark.True }
func (e *eventStream) Hash() (uint32, error) { return 0, errors.New("unhashable type: events") }

func (e *eventStream) Iterate() starlark.Iterator {
	cl, ctx, _ := clientOf(e.th)
	next, stop := iter.Pull2(cl.Events(ctx, e.since, e.matcher.ResourceKinds()...))
	return &eventIter{stream: e, next: next, stop: stop, mapper: NewEventMapper()}
}

type eventIter struct {
	stream  *eventStream
	next    func() (resource.Event, error, bool)
	stop    func()
	mapper  *EventMapper
	pending []Event
}

func (it *eventIter) Next(p *starlark.Value) bool {
	s := sessionOf(it.stream.th)
	for {
		for len(it.pending) > 0 {
			ev := it.pending[0]
			it.pending = it.pending[1:]
			if it.stream.matcher.Match(ev.Type) {
				*p = newEventValue(s, ev)
				return true
			}
		}
		rev, err, ok := it.next()
		if !ok {
			return false
		}
		if err != nil {
			// Iterators cannot fail: stop the thread with the reason.
			it.stream.th.Cancel("events: " + strings.TrimSpace(err.Error()))
			return false
		}
		it.pending = it.mapper.Events(rev)
	}
}

func (it *eventIter) Done() { it.stop() }
