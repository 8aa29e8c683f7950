package script

import (
	"fmt"
	"strings"

	"go.starlark.net/syntax"
)

// reservedPrefix begins the names of the built-ins boundFile calls; a
// script may not use such names (it could rebind them).
const reservedPrefix = "__kumoi"

// boundFile rewrites f in place so that the operations that can allocate
// much in one step charge the run's memory budget first (membudget.go):
//
//	x * y        → __kumoi_op("*", x, y)     (also + % |)
//	x += y       → x += __kumoi_aug("+", x, y) (also *= %= |=)
//	[e for …]    → [__kumoi_elem(e) for …]   (also dict comprehensions)
//	d[k] = v     → d[k] = __kumoi_elem(v)
//	x.join       → __kumoi_attr(x, "join")   (the methods of methodCharges)
//	def f(): …   → def f(): __kumoi_depth(); … (also lambdas: the call
//	               depth is bounded, MaxCallDepth)
//
// It fails when the script uses a reserved name.
func boundFile(f *syntax.File) error {
	var bad *syntax.Ident
	syntax.Walk(f, func(n syntax.Node) bool {
		if id, ok := n.(*syntax.Ident); ok && bad == nil && strings.HasPrefix(id.Name, reservedPrefix) {
			bad = id
		}
		return bad == nil
	})
	if bad != nil {
		return syntax.Error{Pos: bad.NamePos, Msg: fmt.Sprintf("names starting with %s are reserved (%s)", reservedPrefix, bad.Name)}
	}
	return rwStmts(f.Stmts)
}

// boundExpr is boundFile for a lone expression.
func boundExpr(e syntax.Expr) (syntax.Expr, error) {
	var bad *syntax.Ident
	syntax.Walk(e, func(n syntax.Node) bool {
		if id, ok := n.(*syntax.Ident); ok && bad == nil && strings.HasPrefix(id.Name, reservedPrefix) {
			bad = id
		}
		return bad == nil
	})
	if bad != nil {
		return nil, syntax.Error{Pos: bad.NamePos, Msg: fmt.Sprintf("names starting with %s are reserved (%s)", reservedPrefix, bad.Name)}
	}
	return rwExpr(e), nil
}

func rwStmts(ss []syntax.Stmt) error {
	for _, s := range ss {
		if err := rwStmt(s); err != nil {
			return err
		}
	}
	return nil
}

func rwStmt(s syntax.Stmt) error {
	switch s := s.(type) {
	case *syntax.AssignStmt:
		return rwAssign(s)
	case *syntax.DefStmt:
		for i, p := range s.Params {
			s.Params[i] = rwParam(p)
		}
		if err := rwStmts(s.Body); err != nil {
			return err
		}
		// The call depth is checked first thing (after a docstring).
		at := 0
		if len(s.Body) > 0 {
			if es, ok := s.Body[0].(*syntax.ExprStmt); ok {
				if lit, ok := es.X.(*syntax.Literal); ok && lit.Token == syntax.STRING {
					at = 1
				}
			}
		}
		check := &syntax.ExprStmt{X: call("__kumoi_depth", s.Def)}
		s.Body = append(s.Body[:at:at], append([]syntax.Stmt{check}, s.Body[at:]...)...)
	case *syntax.ExprStmt:
		s.X = rwExpr(s.X)
	case *syntax.ForStmt:
		rwTarget(s.Vars)
		s.X = rwExpr(s.X)
		return rwStmts(s.Body)
	case *syntax.WhileStmt:
		s.Cond = rwExpr(s.Cond)
		return rwStmts(s.Body)
	case *syntax.IfStmt:
		s.Cond = rwExpr(s.Cond)
		if err := rwStmts(s.True); err != nil {
			return err
		}
		return rwStmts(s.False)
	case *syntax.ReturnStmt:
		if s.Result != nil {
			s.Result = rwExpr(s.Result)
		}
	}
	return nil
}

// rwParam rewrites a parameter's default value (x=default).
func rwParam(p syntax.Expr) syntax.Expr {
	if b, ok := p.(*syntax.BinaryExpr); ok && b.Op == syntax.EQ {
		b.Y = rwExpr(b.Y)
		return b
	}
	return p
}

var augOps = map[syntax.Token]string{syntax.PLUS_EQ: "+", syntax.STAR_EQ: "*", syntax.PERCENT_EQ: "%", syntax.PIPE_EQ: "|"}

func rwAssign(s *syntax.AssignStmt) error {
	s.RHS = rwExpr(s.RHS)
	if op, ok := augOps[s.Op]; ok {
		// x += y → x += __kumoi_aug("+", x, y): charged as x + y would
		// be (a list's += extends it in place: charged for y), then done
		// by the interpreter. The target is read twice, harmless without
		// calls; with calls only y is known, which bounds += and |= (they
		// add y) but not *= or %=.
		x := syntax.Expr(&syntax.Ident{NamePos: s.OpPos, Name: "None"})
		if !hasCall(s.LHS) {
			x = cloneTarget(s.LHS)
		} else if op == "*" || op == "%" {
			return syntax.Error{Pos: s.OpPos, Msg: fmt.Sprintf("%s= to a target with a call in it cannot be bounded; write it as a = a %s b", op, op)}
		}
		s.RHS = call("__kumoi_aug", s.OpPos, strLit(op, s.OpPos), x, s.RHS)
	} else if _, ok := s.LHS.(*syntax.IndexExpr); ok && s.Op == syntax.EQ {
		s.RHS = call("__kumoi_elem", s.OpPos, s.RHS)
	}
	rwTarget(s.LHS)
	return nil
}

// rwTarget rewrites the expressions inside an assignment target, not the
// target itself.
func rwTarget(e syntax.Expr) {
	switch e := e.(type) {
	case *syntax.IndexExpr:
		e.X = rwExpr(e.X)
		e.Y = rwExpr(e.Y)
	case *syntax.DotExpr:
		e.X = rwExpr(e.X)
	case *syntax.TupleExpr:
		for _, x := range e.List {
			rwTarget(x)
		}
	case *syntax.ListExpr:
		for _, x := range e.List {
			rwTarget(x)
		}
	case *syntax.ParenExpr:
		rwTarget(e.X)
	}
}

// cloneTarget copies an assignment target as an expression to read it.
func cloneTarget(e syntax.Expr) syntax.Expr {
	switch e := e.(type) {
	case *syntax.Ident:
		return &syntax.Ident{NamePos: e.NamePos, Name: e.Name}
	case *syntax.IndexExpr:
		return &syntax.IndexExpr{X: rwExpr(cloneTarget(e.X)), Lbrack: e.Lbrack, Y: rwExpr(cloneTarget(e.Y)), Rbrack: e.Rbrack}
	case *syntax.DotExpr:
		return &syntax.DotExpr{X: rwExpr(cloneTarget(e.X)), Dot: e.Dot, NamePos: e.NamePos, Name: &syntax.Ident{NamePos: e.Name.NamePos, Name: e.Name.Name}}
	case *syntax.ParenExpr:
		return &syntax.ParenExpr{Lparen: e.Lparen, X: cloneTarget(e.X), Rparen: e.Rparen}
	case *syntax.Literal:
		c := *e
		return &c
	case *syntax.BinaryExpr:
		return &syntax.BinaryExpr{OpPos: e.OpPos, Op: e.Op, X: cloneTarget(e.X), Y: cloneTarget(e.Y)}
	case *syntax.UnaryExpr:
		return &syntax.UnaryExpr{OpPos: e.OpPos, Op: e.Op, X: cloneTarget(e.X)}
	}
	return e // not reached for targets without calls (hasCall)
}

// hasCall reports whether evaluating e may have side effects (a call, a
// comprehension or lambda) or is of a kind cloneTarget does not copy.
func hasCall(e syntax.Expr) bool {
	simple := true
	syntax.Walk(e, func(n syntax.Node) bool {
		switch n.(type) {
		case nil, *syntax.Ident, *syntax.IndexExpr, *syntax.DotExpr, *syntax.ParenExpr, *syntax.Literal, *syntax.BinaryExpr, *syntax.UnaryExpr:
			return true
		}
		simple = false
		return false
	})
	return !simple
}

func rwExpr(e syntax.Expr) syntax.Expr {
	switch e := e.(type) {
	case nil:
		return nil
	case *syntax.BinaryExpr:
		e.X, e.Y = rwExpr(e.X), rwExpr(e.Y)
		switch e.Op {
		case syntax.STAR:
			return call("__kumoi_op", e.OpPos, strLit("*", e.OpPos), e.X, e.Y)
		case syntax.PLUS:
			return call("__kumoi_op", e.OpPos, strLit("+", e.OpPos), e.X, e.Y)
		case syntax.PERCENT:
			return call("__kumoi_op", e.OpPos, strLit("%", e.OpPos), e.X, e.Y)
		case syntax.PIPE:
			return call("__kumoi_op", e.OpPos, strLit("|", e.OpPos), e.X, e.Y)
		}
		return e
	case *syntax.UnaryExpr:
		e.X = rwExpr(e.X)
		return e
	case *syntax.CallExpr:
		e.Fn = rwExpr(e.Fn)
		for i, a := range e.Args {
			if b, ok := a.(*syntax.BinaryExpr); ok && b.Op == syntax.EQ {
				b.Y = rwExpr(b.Y) // name=value
				continue
			}
			e.Args[i] = rwExpr(a)
		}
		return e
	case *syntax.Comprehension:
		for _, c := range e.Clauses {
			switch c := c.(type) {
			case *syntax.ForClause:
				rwTarget(c.Vars)
				c.X = rwExpr(c.X)
			case *syntax.IfClause:
				c.Cond = rwExpr(c.Cond)
			}
		}
		if de, ok := e.Body.(*syntax.DictEntry); ok {
			de.Key = rwExpr(de.Key)
			de.Value = call("__kumoi_elem", de.Colon, rwExpr(de.Value))
		} else {
			e.Body = call("__kumoi_elem", e.Lbrack, rwExpr(e.Body))
		}
		return e
	case *syntax.CondExpr:
		e.Cond, e.True, e.False = rwExpr(e.Cond), rwExpr(e.True), rwExpr(e.False)
		return e
	case *syntax.DictExpr:
		for _, x := range e.List {
			de := x.(*syntax.DictEntry)
			de.Key, de.Value = rwExpr(de.Key), rwExpr(de.Value)
		}
		return e
	case *syntax.DotExpr:
		e.X = rwExpr(e.X)
		if _, ok := methodCharges[e.Name.Name]; ok {
			return call("__kumoi_attr", e.Dot, e.X, strLit(e.Name.Name, e.NamePos))
		}
		return e
	case *syntax.IndexExpr:
		e.X, e.Y = rwExpr(e.X), rwExpr(e.Y)
		return e
	case *syntax.LambdaExpr:
		for i, p := range e.Params {
			e.Params[i] = rwParam(p)
		}
		// __kumoi_depth() is False: the body is the value.
		e.Body = &syntax.BinaryExpr{OpPos: e.Lambda, Op: syntax.OR, X: call("__kumoi_depth", e.Lambda), Y: rwExpr(e.Body)}
		return e
	case *syntax.ListExpr:
		for i, x := range e.List {
			e.List[i] = rwExpr(x)
		}
		return e
	case *syntax.TupleExpr:
		for i, x := range e.List {
			e.List[i] = rwExpr(x)
		}
		return e
	case *syntax.ParenExpr:
		e.X = rwExpr(e.X)
		return e
	case *syntax.SliceExpr:
		e.X, e.Lo, e.Hi, e.Step = rwExpr(e.X), rwExpr(e.Lo), rwExpr(e.Hi), rwExpr(e.Step)
		return e
	}
	return e
}

// call is fn(args...) placed at pos (where errors point).
func call(fn string, pos syntax.Position, args ...syntax.Expr) syntax.Expr {
	return &syntax.CallExpr{Fn: &syntax.Ident{NamePos: pos, Name: fn}, Lparen: pos, Args: args, Rparen: pos}
}

func strLit(s string, pos syntax.Position) syntax.Expr {
	return &syntax.Literal{Token: syntax.STRING, TokenPos: pos, Raw: fmt.Sprintf("%q", s), Value: s}
}
