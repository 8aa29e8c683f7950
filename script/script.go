package script

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/kumoi/kumoi/client"
)

// Defaults of Env.
const (
	// DefaultMaxSteps bounds a script's Starlark steps (a step is about one
	// bytecode instruction; a tight loop runs some tens of millions a
	// second). Waiting in a built-in costs no steps.
	DefaultMaxSteps = 100_000_000
	// DefaultTimeout bounds a script's wall-clock time.
	DefaultTimeout = 10 * time.Minute
	// DefaultWorkers is how many items a parallel skeleton works on at once.
	DefaultWorkers = 16
	// MaxWorkers bounds workers= of the parallel skeletons: each worker is
	// a goroutine and a Starlark thread, with its share of the run's
	// steps; more only adds load on the cluster.
	MaxWorkers = 64
)

// Env is what scripts run against and the limits they run under.
type Env struct {
	// Client talks to the cluster. The cluster built-ins fail without it.
	Client *client.Client
	// Out receives print() output (nil: discarded).
	Out io.Writer
	// MaxSteps bounds the Starlark steps of one run, counted over all its
	// threads, parallel skeletons included (0: DefaultMaxSteps).
	MaxSteps uint64
	// Timeout bounds the wall-clock time of one run (0: DefaultTimeout;
	// negative: none, the caller's context only).
	Timeout time.Duration
	// MaxAlloc bounds the bytes one run may allocate through the
	// operations that can allocate much in one step (repetition,
	// concatenation, materialising an iterable, …; membudget.go), counted
	// over all its threads (0: DefaultMaxAlloc). A run that would exceed
	// it stops with ErrMemoryLimit.
	MaxAlloc int64
}

func (e Env) maxAlloc() int64 {
	if e.MaxAlloc <= 0 {
		return DefaultMaxAlloc
	}
	return e.MaxAlloc
}

func (e Env) maxSteps() uint64 {
	if e.MaxSteps == 0 {
		return DefaultMaxSteps
	}
	return e.MaxSteps
}

func (e Env) timeout() time.Duration {
	if e.Timeout == 0 {
		return DefaultTimeout
	}
	return e.Timeout
}

// fileOptions are the Starlark dialect of Kumoi scripts: while loops,
// top-level if/for/while, reassignable globals, sets and recursion.
var fileOptions = &syntax.FileOptions{
	Set:             true,
	While:           true,
	TopLevelControl: true,
	GlobalReassign:  true,
	Recursion:       true,
}

// Session is a set of global variables that a sequence of runs share:
// one script file (kumoi run), one snippet (kumoi run -e) or the
// statements typed into the shell one after another. Each Exec or
// ExecChunk is one run, under the limits of Env. A Session runs one thing
// at a time; its methods may be called from any goroutine.
type Session struct {
	env     Env
	mu      sync.Mutex // one run at a time; guards globals
	globals starlark.StringDict
	cur     atomic.Pointer[run] // the run in progress, for attribute reads
}

// NewSession returns a session whose globals are the built-ins and argv
// (a list of strings).
func NewSession(env Env, argv []string) *Session {
	s := &Session{env: env, globals: Builtins()}
	for name, v := range boundBuiltins() {
		s.globals[name] = v
	}
	args := make([]starlark.Value, len(argv))
	for i, a := range argv {
		args[i] = starlark.String(a)
	}
	s.globals["argv"] = starlark.NewList(args)
	return s
}

// Exec runs a script file or snippet in the session. It returns the value
// of src when src is a single expression (None otherwise), so that
// `kumoi run -e 'vms()'` can print it. Errors are *Error.
func (s *Session) Exec(ctx context.Context, filename string, src []byte) (starlark.Value, error) {
	f, err := fileOptions.Parse(filename, src, 0)
	if err != nil {
		return nil, newError(err, nil, src)
	}
	return s.execFile(ctx, f, src)
}

// ReadChunk reads one statement for the shell, calling readline for each
// line it needs (a def, if, for or while continues until a blank line or
// a dedent; a line with an open bracket continues until it is closed). It
// returns the statement and the source it read. When readline fails before
// any input (io.EOF, an interrupt) its error comes back as is; the end of
// input inside a statement ends it. A syntax error is an *Error.
func (s *Session) ReadChunk(filename string, readline func() ([]byte, error)) (*syntax.File, []byte, error) {
	var (
		src     []byte
		readErr error // what readline failed with, io.EOF included
	)
	read := func() ([]byte, error) {
		if readErr != nil {
			return nil, readErr
		}
		line, err := readline()
		if errors.Is(err, io.EOF) && (len(line) > 0 || !blank(src)) {
			// End of input inside a statement: a blank line ends a
			// block; an open bracket is reported by the parser.
			line, err = append(line, '\n'), nil
			defer func() { readErr = io.EOF }()
		}
		if err != nil {
			readErr = err
			return nil, err
		}
		src = append(src, line...)
		return line, nil
	}
	f, err := fileOptions.ParseCompoundStmt(filename, read)
	if err != nil {
		if readErr != nil && (blank(src) || !errors.Is(readErr, io.EOF)) {
			return nil, src, readErr // end of input, or an interrupt
		}
		return nil, src, newError(err, nil, src)
	}
	return f, src, nil
}

func blank(b []byte) bool { return len(bytes.TrimSpace(b)) == 0 }

// ExecChunk runs a statement that ReadChunk returned. An expression
// statement's value is returned (and stored in the global "_"); other
// statements return None.
func (s *Session) ExecChunk(ctx context.Context, f *syntax.File, src []byte) (starlark.Value, error) {
	return s.execFile(ctx, f, src)
}

func (s *Session) execFile(ctx context.Context, f *syntax.File, src []byte) (starlark.Value, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v starlark.Value = starlark.None
	expr := soleExpr(f)
	var err error
	if expr != nil {
		expr, err = boundExpr(expr)
	} else {
		err = boundFile(f)
	}
	if err != nil {
		return nil, newError(err, nil, src)
	}
	r := s.newRun(ctx)
	defer r.finish()
	if expr != nil {
		// An expression: evaluate it against the globals for its value.
		v, err = starlark.EvalExprOptions(f.Options, r.thread, expr, s.globals)
		if err == nil {
			s.globals["_"] = v
		}
	} else {
		err = starlark.ExecREPLChunk(f, r.thread, s.globals)
	}
	if err != nil || r.stopped() != nil {
		if err == nil {
			err = r.stopped()
		}
		return nil, newError(err, r.stopped(), src)
	}
	return v, nil
}

func soleExpr(f *syntax.File) syntax.Expr {
	if len(f.Stmts) == 1 {
		if stmt, ok := f.Stmts[0].(*syntax.ExprStmt); ok {
			return stmt.X
		}
	}
	return nil
}

// Global returns the value of a global variable (nil if there is none),
// for the shell's completion.
func (s *Session) Global(name string) starlark.Value {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.globals[name]
}

// GlobalNames returns the names of the session's globals, built-ins
// included, sorted.
func (s *Session) GlobalNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := s.globals.Keys()
	sort.Strings(names)
	return names
}

// Complete returns the completions of the identifier or attribute path
// that prefix ends with: "v" → the globals, built-ins and keywords
// starting with v; "web.st" →
// the attributes of the global web starting with st ("web.start",
// "web.state", …). Attributes are completed only after a global name,
// whose value is not computed again.
func (s *Session) Complete(prefix string) []string {
	head, word := splitWord(prefix)
	var out []string
	if obj, attr, ok := strings.Cut(word, "."); ok {
		if strings.Contains(attr, ".") {
			return nil
		}
		v, isAttrs := s.Global(obj).(starlark.HasAttrs)
		if !isAttrs {
			return nil
		}
		for _, n := range v.AttrNames() {
			if strings.HasPrefix(n, attr) {
				out = append(out, head+obj+"."+n)
			}
		}
		return out
	}
	for _, n := range append(s.GlobalNames(), BuiltinNames()...) {
		if strings.HasPrefix(n, word) && !strings.HasPrefix(n, "_") && !slices.Contains(out, head+n) {
			out = append(out, head+n)
		}
	}
	for _, kw := range keywords {
		if word != "" && strings.HasPrefix(kw, word) && !slices.Contains(out, head+kw) {
			out = append(out, head+kw)
		}
	}
	sort.Strings(out)
	return out
}

var keywords = []string{"and", "break", "continue", "def", "elif", "else", "for", "if", "in", "lambda", "load", "not", "or", "pass", "return", "while", "True", "False", "None"}

// splitWord splits line into what precedes the last identifier-or-dotted
// word and that word.
func splitWord(line string) (head, word string) {
	i := len(line)
	for i > 0 {
		c := line[i-1]
		if c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			i--
			continue
		}
		break
	}
	return line[:i], line[i:]
}

// Run runs a script file with argv under env's limits: NewSession and
// Exec in one call.
func Run(ctx context.Context, env Env, filename string, src []byte, argv []string) error {
	_, err := NewSession(env, argv).Exec(ctx, filename, src)
	return err
}

// run is one execution: the main thread, its context and the step budget
// shared by every thread it starts.
type run struct {
	sess          *Session
	env           Env
	ctx           context.Context
	cancel        context.CancelCauseFunc
	steps         *budget
	alloc         *allocBudget
	thread        *starlark.Thread
	cancelTimeout context.CancelFunc
	printMu       sync.Mutex // print() from parallel threads
}

// Thread-local keys.
const (
	localRun = "kumoi.run"
	localCtx = "context" // the name go.starlark.net/repl uses
)

func (s *Session) newRun(parent context.Context) *run {
	r := &run{sess: s, env: s.env, steps: &budget{max: s.env.maxSteps()}, alloc: &allocBudget{max: s.env.maxAlloc()}}
	ctx, cancel := context.WithCancelCause(parent)
	r.cancel = cancel
	r.ctx = ctx
	if d := s.env.timeout(); d > 0 {
		r.ctx, r.cancelTimeout = context.WithTimeoutCause(ctx, d,
			&limitError{msg: "time limit of " + d.String() + " exceeded", sentinel: ErrTimeLimit})
	}
	r.thread, _ = r.newThread(r.ctx, "main")
	s.cur.Store(r)
	return r
}

// newThread makes a Starlark thread of r, cancelled when ctx is done and
// drawing its steps from r's budget. Call done when the thread has
// finished: it gives back the steps the thread did not use.
func (r *run) newThread(ctx context.Context, name string) (th *starlark.Thread, done func()) {
	th = &starlark.Thread{Name: name}
	th.Print = func(_ *starlark.Thread, msg string) {
		if r.env.Out != nil {
			r.printMu.Lock()
			fmt.Fprintln(r.env.Out, msg)
			r.printMu.Unlock()
		}
	}
	th.Load = func(*starlark.Thread, string) (starlark.StringDict, error) {
		return nil, errors.New("load() is not supported: put what you need in one file")
	}
	th.SetLocal(localRun, r)
	th.SetLocal(localCtx, ctx)
	release := r.steps.attach(th, func() {
		r.cancel(&limitError{msg: fmt.Sprintf("step limit of %d exceeded", r.steps.max), sentinel: ErrStepLimit})
	})
	stop := context.AfterFunc(ctx, func() { th.Cancel(stopReason(ctx)) })
	return th, func() { stop(); release() }
}

// stopReason says why ctx is done, for a cancelled thread.
func stopReason(ctx context.Context) string {
	cause := context.Cause(ctx)
	var le *limitError
	if errors.As(cause, &le) {
		return le.msg
	}
	if errors.Is(cause, context.Canceled) {
		return ErrInterrupted.Error()
	}
	return cause.Error()
}

// stopped returns the limit that stopped the run, ErrInterrupted when the
// caller cancelled it, nil while it may go on.
func (r *run) stopped() error {
	if r.ctx.Err() == nil {
		return nil
	}
	cause := context.Cause(r.ctx)
	var le *limitError
	if errors.As(cause, &le) {
		return le
	}
	if errors.Is(cause, context.Canceled) {
		return ErrInterrupted
	}
	return cause
}

func (r *run) finish() {
	r.sess.cur.CompareAndSwap(r, nil)
	if r.cancelTimeout != nil {
		r.cancelTimeout()
	}
	r.cancel(nil)
}

// runOf returns the run of a thread and the context its built-ins use.
func runOf(th *starlark.Thread) (*run, context.Context) {
	r, _ := th.Local(localRun).(*run)
	ctx, _ := th.Local(localCtx).(context.Context)
	if ctx == nil {
		ctx = context.Background()
	}
	return r, ctx
}

// clientOf returns the client of thread's run.
func clientOf(th *starlark.Thread) (*client.Client, context.Context, error) {
	r, ctx := runOf(th)
	if r == nil || r.env.Client == nil {
		return nil, ctx, errors.New("not connected to a cluster")
	}
	return r.env.Client, ctx, nil
}

// budget is the step allowance of a run, shared by its threads: each
// thread draws steps in quanta as it goes.
type budget struct {
	max  uint64
	used atomic.Uint64 // steps handed out to threads
}

const stepQuantum = 10_000

// take hands out up to n steps; 0 when the budget is spent.
func (b *budget) take(n uint64) uint64 {
	for {
		used := b.used.Load()
		if used >= b.max {
			return 0
		}
		got := min(n, b.max-used)
		if b.used.CompareAndSwap(used, used+got) {
			return got
		}
	}
}

// attach makes th draw its steps from b; exhausted is called when the
// budget is spent, before th is cancelled. release gives back the steps
// th drew but did not use; call it when th has finished.
func (b *budget) attach(th *starlark.Thread, exhausted func()) (release func()) {
	limit := th.ExecutionSteps() + b.take(stepQuantum)
	th.SetMaxExecutionSteps(max(limit, 1))
	th.OnMaxSteps = func(th *starlark.Thread) {
		if n := b.take(stepQuantum); n > 0 {
			limit += n
			th.SetMaxExecutionSteps(limit)
			return
		}
		exhausted()
		th.Cancel(fmt.Sprintf("step limit of %d exceeded", b.max))
	}
	return func() {
		if steps := th.ExecutionSteps(); steps < limit {
			b.used.Add(^(limit - steps - 1)) // subtract the unused steps
		}
	}
}

// frozen freezes v and returns it: values that cross goroutines must be
// frozen.
func frozen(v starlark.Value) starlark.Value {
	v.Freeze()
	return v
}
