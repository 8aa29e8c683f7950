package script

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/kumoi/kumoi/resource"
)

// Limits of one policy handler call when Env leaves them at 0.
const (
	DefaultPolicyMaxSteps = 1_000_000
	DefaultPolicyTimeout  = 30 * time.Second
)

// A policy's memory budget (Env.MaxAlloc) defaults to
// DefaultPolicyMaxAlloc: it runs inside the leader.

// Policy is a loaded policy script: the event types it declared and its
// on_event handler. Its global variables are frozen once the script's top
// level has run, so a handler cannot keep state between events (keep it in
// the cluster, e.g. in labels). Handle may be called from any goroutine;
// calls are serialised.
type Policy struct {
	name    string
	file    string
	matcher *Matcher
	handler *starlark.Function
	sess    *Session
}

// LoadPolicy compiles a policy script and runs its top level (under env's
// limits, DefaultPolicyMaxSteps and DefaultPolicyTimeout when 0). The
// script must define
//
//	events = ["vm.failed", "host.down"]   # patterns: see Matcher
//	def on_event(ev):
//	    ...
//
// Errors are *Error; a script without a valid events list or on_event
// function matches ErrPolicy.
func LoadPolicy(ctx context.Context, name, src string, env Env) (*Policy, error) {
	if env.MaxSteps == 0 {
		env.MaxSteps = DefaultPolicyMaxSteps
	}
	if env.Timeout == 0 {
		env.Timeout = DefaultPolicyTimeout
	}
	if env.MaxAlloc <= 0 {
		env.MaxAlloc = DefaultPolicyMaxAlloc
	}
	file := name
	if !strings.HasSuffix(file, ".star") {
		file += ".star"
	}
	p := &Policy{name: name, file: file, sess: NewSession(env, nil)}
	globals, err := p.sess.load(ctx, file, []byte(src))
	if err != nil {
		return nil, err
	}
	if p.matcher, err = policyEvents(file, globals); err != nil {
		return nil, err
	}
	if p.handler, err = policyHandler(file, globals); err != nil {
		return nil, err
	}
	return p, nil
}

// load runs a file's top level with the built-ins predeclared and returns
// its (frozen) globals.
func (s *Session) load(ctx context.Context, filename string, src []byte) (starlark.StringDict, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := fileOptions.Parse(filename, src, 0)
	if err == nil {
		err = boundFile(f)
	}
	if err != nil {
		return nil, newError(err, nil, src)
	}
	prog, err := starlark.FileProgram(f, s.globals.Has)
	if err != nil {
		return nil, newError(err, nil, src)
	}
	r := s.newRun(ctx)
	defer r.finish()
	globals, err := prog.Init(r.thread, s.globals)
	globals.Freeze()
	if err != nil || r.stopped() != nil {
		if err == nil {
			err = r.stopped()
		}
		return nil, newError(err, r.stopped(), src)
	}
	return globals, nil
}

func policyError(file, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Msg: file + ": " + msg, cause: fmt.Errorf("%w: %s", ErrPolicy, msg)}
}

const eventsExample = `events = ["vm.failed", "host.down"]`

func policyEvents(file string, globals starlark.StringDict) (*Matcher, error) {
	v, ok := globals["events"]
	if !ok {
		return nil, policyError(file, "no events list: declare the events the policy handles at the top level, e.g. %s", eventsExample)
	}
	seq, ok := v.(starlark.Indexable)
	if _, isStr := v.(starlark.String); !ok || isStr {
		return nil, policyError(file, "events is %s; it must be a list of event types, e.g. %s", v.Type(), eventsExample)
	}
	if seq.Len() == 0 {
		return nil, policyError(file, "events is empty: name at least one event type, e.g. %s", eventsExample)
	}
	patterns := make([]string, seq.Len())
	for i := range seq.Len() {
		s, ok := starlark.AsString(seq.Index(i))
		if !ok {
			return nil, policyError(file, "events[%d] is %s, not a string such as \"vm.failed\"", i, seq.Index(i).Type())
		}
		patterns[i] = s
	}
	m, err := NewMatcher(patterns)
	if err != nil {
		return nil, policyError(file, "events %v", err)
	}
	return m, nil
}

func policyHandler(file string, globals starlark.StringDict) (*starlark.Function, error) {
	v, ok := globals["on_event"]
	if !ok {
		return nil, policyError(file, "no on_event function: define def on_event(ev): at the top level; it is called with each event")
	}
	fn, ok := v.(*starlark.Function)
	if !ok {
		return nil, policyError(file, "on_event is %s; it must be a function: def on_event(ev):", v.Type())
	}
	// Positional parameters come first; count those without a default.
	positional := fn.NumParams() - fn.NumKwonlyParams()
	if fn.HasVarargs() {
		positional--
	}
	if fn.HasKwargs() {
		positional--
	}
	required := 0
	for i := range positional {
		if fn.ParamDefault(i) == nil {
			required++
		}
	}
	if (positional < 1 && !fn.HasVarargs()) || required > 1 {
		return nil, &Error{Msg: "on_event must take one argument, the event: def on_event(ev):", Pos: fn.Position(),
			cause: fmt.Errorf("%w: on_event takes %d positional parameters", ErrPolicy, positional)}
	}
	return fn, nil
}

// Name returns the policy's name.
func (p *Policy) Name() string { return p.name }

// Kinds returns the event patterns the policy declared, normalised
// ("vm.*" is "vm") and without duplicates, e.g. ["vm.failed", "host.down"].
func (p *Policy) Kinds() []string { return p.matcher.Patterns() }

// Wants reports whether the policy handles events of type typ
// ("vm.failed").
func (p *Policy) Wants(typ string) bool { return p.matcher.Match(typ) }

// ResourceKinds returns the kinds of object whose changes the policy needs,
// to pass to client.Events (nil: all kinds).
func (p *Policy) ResourceKinds() []resource.Kind { return p.matcher.ResourceKinds() }

// Handle calls on_event(ev) under the policy's limits, whether or not the
// policy Wants ev (the caller filters). It returns nil when the handler
// returned, else an *Error: the Starlark backtrace of an error the handler
// raised, or "script stopped: step limit of N exceeded" (ErrStepLimit),
// "script stopped: time limit of D exceeded" (ErrTimeLimit), or
// ErrInterrupted when ctx was cancelled. A panic in a built-in is
// recovered and returned as an error.
func (p *Policy) Handle(ctx context.Context, ev Event) (err error) {
	s := p.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.newRun(ctx)
	defer r.finish()
	defer func() {
		if v := recover(); v != nil {
			err = &Error{Msg: fmt.Sprintf("%s: on_event(%s) panicked: %v", p.file, ev.Type, v),
				cause: fmt.Errorf("panic: %v\n%s", v, debug.Stack())}
		}
	}()
	_, err = starlark.Call(r.thread, p.handler, starlark.Tuple{newEventValue(s, ev)}, nil)
	if err != nil || r.stopped() != nil {
		if err == nil {
			err = r.stopped()
		}
		return newError(err, r.stopped(), nil)
	}
	return nil
}
