package resource

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// HostAttrs are the attributes of a host that a VM's requirements and
// rank expressions read, as `host.<name>` (docs/scheduling.md). CPUs and
// memory are the schedulable amounts (capacity scaled by overcommit).
type HostAttrs struct {
	Name               string            `expr:"name"`
	Driver             string            `expr:"driver"`
	State              string            `expr:"state"`
	Labels             map[string]string `expr:"labels"`
	CapacityCPUs       int64             `expr:"capacity_cpus"`
	CapacityMemoryMiB  int64             `expr:"capacity_memory_mib"`
	FreeCPUs           int64             `expr:"free_cpus"`
	FreeMemoryMiB      int64             `expr:"free_memory_mib"`
	AllocatedCPUs      int64             `expr:"allocated_cpus"`
	AllocatedMemoryMiB int64             `expr:"allocated_memory_mib"`
	VMCount            int64             `expr:"vm_count"`
}

// HostEnv is the environment of the expressions: one variable, host.
type HostEnv struct {
	Host *HostAttrs `expr:"host"`
}

// NewHostAttrs fills the attributes from a host's labels, state, driver,
// schedulable capacity, allocation and VM count.
func NewHostAttrs(name string, labels map[string]string, st *HostStatus, total Resources, vms int) HostAttrs {
	return HostAttrs{
		Name: name, Driver: st.Driver, State: st.State, Labels: labels,
		CapacityCPUs: int64(total.CPUs), CapacityMemoryMiB: total.MemoryMiB,
		FreeCPUs: int64(total.CPUs - st.Allocated.CPUs), FreeMemoryMiB: total.MemoryMiB - st.Allocated.MemoryMiB,
		AllocatedCPUs: int64(st.Allocated.CPUs), AllocatedMemoryMiB: st.Allocated.MemoryMiB,
		VMCount: int64(vms),
	}
}

// Builtins the expressions may call: pure, deterministic and of a cost
// bounded by their arguments' lengths. Everything else (now, date,
// duration: the clock; keys, values: map order; repeat; the predicates
// that loop: all, any, filter, map...) is disabled, as are the range
// operator, closures and let (so a value's size is bounded by the
// expression's length).
var exprBuiltins = []string{
	"len", "abs", "ceil", "floor", "round", "int", "float", "string",
	"trim", "trimPrefix", "trimSuffix", "upper", "lower", "hasPrefix", "hasSuffix",
	"indexOf", "lastIndexOf", "max", "min",
}

// MaxExprNodes bounds the syntax tree of an expression.
const MaxExprNodes = 512

// HostExpr is a compiled requirements or rank expression.
type HostExpr struct {
	Source  string
	program *vm.Program
}

// exprGuard refuses the syntax that loops or allocates without bound.
type exprGuard struct{ err *file.Error }

func (g *exprGuard) Visit(n *ast.Node) {
	if g.err != nil {
		return
	}
	var msg string
	switch x := (*n).(type) {
	case *ast.BinaryNode:
		if x.Operator == ".." {
			msg = "the range operator .. is not allowed"
		}
	case *ast.PredicateNode, *ast.PointerNode:
		msg = "closures and predicates are not allowed"
	case *ast.VariableDeclaratorNode:
		// A variable reused doubles a string at each let: without
		// them, a value grows at most with the expression's length.
		msg = "let is not allowed"
	}
	if msg != "" {
		g.err = &file.Error{Location: (*n).Location(), Message: msg}
	}
}

func exprOptions(boolean bool) []expr.Option {
	ops := []expr.Option{expr.Env(HostEnv{}), expr.DisableAllBuiltins(), expr.MaxNodes(MaxExprNodes)}
	for _, b := range exprBuiltins {
		ops = append(ops, expr.EnableBuiltin(b))
	}
	if boolean {
		ops = append(ops, expr.AsBool())
	} else {
		ops = append(ops, expr.AsFloat64())
	}
	return ops
}

// CompileHostExpr compiles and type-checks src: a requirements expression
// (boolean) or a rank (numeric). The error says where: "line 1, column
// 14: unknown name hots".
func CompileHostExpr(src string, boolean bool) (*HostExpr, error) {
	if len(src) > MaxExprLen {
		return nil, fmt.Errorf("is %d bytes long; the limit is %d", len(src), MaxExprLen)
	}
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("is empty")
	}
	// The guard reads the parsed tree, before the optimizer folds
	// constants (which would evaluate a constant range at compile time).
	tree, err := parser.ParseWithConfig(src, &conf.Config{MaxNodes: MaxExprNodes, Disabled: map[string]bool{}})
	if err != nil {
		return nil, exprError(err, boolean)
	}
	g := &exprGuard{}
	ast.Walk(&tree.Node, g)
	if g.err != nil {
		return nil, exprError(g.err.Bind(file.NewSource(src)), boolean)
	}
	p, err := expr.Compile(src, exprOptions(boolean)...)
	if err != nil {
		return nil, exprError(err, boolean)
	}
	return &HostExpr{Source: src, program: p}, nil
}

func exprError(err error, boolean bool) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fmt.Errorf("line %d, column %d: %s", fe.Line, fe.Column+1, fe.Message)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "expected ") {
		if boolean {
			return fmt.Errorf("must be a boolean expression (%s)", msg)
		}
		return fmt.Errorf("must be a numeric expression (%s)", msg)
	}
	return errors.New(msg)
}

// Match evaluates a requirements expression on h: an expression that
// fails at run time (a division by zero) is not satisfied.
func (e *HostExpr) Match(h *HostAttrs) bool {
	out, err := expr.Run(e.program, HostEnv{Host: h})
	b, ok := out.(bool)
	return err == nil && ok && b
}

// Rank evaluates a rank expression on h (0 if it fails at run time).
func (e *HostExpr) Rank(h *HostAttrs) float64 {
	out, err := expr.Run(e.program, HostEnv{Host: h})
	if err != nil {
		return 0
	}
	switch v := out.(type) {
	case float64:
		if v != v { // NaN sorts nowhere: treat it as 0
			return 0
		}
		return v
	case int:
		return float64(v)
	}
	return 0
}

// Terms splits a requirements expression into its top-level && terms
// (printed back from the syntax tree), to name the one no host
// satisfies.
func (e *HostExpr) Terms() []string {
	var out []string
	var walk func(n ast.Node)
	walk = func(n ast.Node) {
		if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
			walk(b.Left)
			walk(b.Right)
			return
		}
		out = append(out, n.String())
	}
	walk(e.program.Node())
	return out
}

// ExprCache holds compiled expressions by source (and kind), at most
// max of them: when full it is emptied (a cheap, deterministic bound).
type ExprCache struct {
	mu  sync.Mutex
	max int
	m   map[exprKey]exprEntry
}

type exprKey struct {
	src     string
	boolean bool
}

type exprEntry struct {
	e   *HostExpr
	err error
}

// NewExprCache returns a cache of at most max compiled expressions.
func NewExprCache(max int) *ExprCache {
	return &ExprCache{max: max, m: map[exprKey]exprEntry{}}
}

// Compile is CompileHostExpr, cached.
func (c *ExprCache) Compile(src string, boolean bool) (*HostExpr, error) {
	k := exprKey{src, boolean}
	c.mu.Lock()
	defer c.mu.Unlock()
	if en, ok := c.m[k]; ok {
		return en.e, en.err
	}
	e, err := CompileHostExpr(src, boolean)
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = exprEntry{e, err}
	return e, err
}

// Len is the number of cached expressions.
func (c *ExprCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// validateExprs compiles the VM's requirements and rank (ValidateRequest).
func (s *VMSpec) validateExprs() error {
	if s.Requirements != "" {
		if _, err := CompileHostExpr(s.Requirements, true); err != nil {
			return Errorf("spec.requirements", "%s", err)
		}
	}
	if s.Rank != "" {
		if _, err := CompileHostExpr(s.Rank, false); err != nil {
			return Errorf("spec.rank", "%s", err)
		}
	}
	return nil
}
