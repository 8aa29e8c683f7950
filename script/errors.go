package script

import (
	"errors"
	"fmt"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Sentinel errors. A script stopped by a limit fails with an *Error that
// matches one of them under errors.Is.
var (
	// ErrStepLimit: the script ran more steps than Env.MaxSteps.
	ErrStepLimit = errors.New("step limit exceeded")
	// ErrTimeLimit: the script ran longer than Env.Timeout.
	ErrTimeLimit = errors.New("time limit exceeded")
	// ErrInterrupted: the caller's context was cancelled (Ctrl-C).
	ErrInterrupted = errors.New("interrupted")
	// ErrPolicy: a policy script that does not declare what a policy must
	// (its events list and its on_event function).
	ErrPolicy = errors.New("invalid policy")
)

// limitError is the cause of a script stopped by a limit.
type limitError struct {
	msg      string // "step limit of 1000 exceeded"
	sentinel error
}

func (e *limitError) Error() string { return e.msg }
func (e *limitError) Unwrap() error { return e.sentinel }

// Error is a script that failed: a syntax error, a Starlark error raised
// while it ran (by fail(), a wrong argument, a built-in whose cluster call
// failed) or a limit that stopped it.
type Error struct {
	// Msg is the error on one line, e.g. "script stopped: step limit of
	// 1000 exceeded" or `cannot suspend vm "web": ...`.
	Msg string
	// Pos is where it happened: the offending token of a syntax error, or
	// the innermost Starlark frame of a run-time error.
	Pos syntax.Position
	// Backtrace is the Starlark call stack of a run-time error,
	// "Traceback (most recent call last):\n  file.star:3:5: in <toplevel>\n…",
	// and empty for a syntax error.
	Backtrace string
	// Line is the offending source line of a syntax error, with a caret
	// under the column on a second line; empty when the source is not
	// known or for a run-time error.
	Line string

	cause error
}

// Error returns the whole report: for a run-time error the backtrace and
// then "Error: <Msg>"; for a syntax error "file:line:col: <Msg>" and the
// offending line.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Backtrace != "":
		b.WriteString(e.Backtrace)
		b.WriteString("Error: ")
		b.WriteString(e.Msg)
	case e.Pos.IsValid():
		b.WriteString(e.Pos.String())
		b.WriteString(": ")
		b.WriteString(e.Msg)
	default:
		b.WriteString(e.Msg)
	}
	if e.Line != "" {
		b.WriteString("\n")
		b.WriteString(e.Line)
	}
	return b.String()
}

// Unwrap returns the underlying error: a limit sentinel, a
// *starlark.EvalError, syntax.Error, resolve.ErrorList or an SDK error.
func (e *Error) Unwrap() error { return e.cause }

// newError turns an error of the interpreter into an *Error. stop, if
// not nil, is the limit that cancelled the script; src is the source, for
// syntax errors.
func newError(err error, stop error, src []byte) *Error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) && stop == nil {
		return se
	}
	out := &Error{Msg: err.Error(), cause: err}
	var (
		ee   *starlark.EvalError
		syn  syntax.Error
		synp *syntax.Error
		rl   resolve.ErrorList
	)
	switch {
	case errors.As(err, &ee):
		out.Msg = ee.Msg
		stack := ee.CallStack
		if n := len(stack); n > 0 && stack[n-1].Pos.Filename() == "<builtin>" {
			if name := stack[n-1].Name; !isHiddenBuiltin(name) {
				out.Msg = name + ": " + trimBuiltinPrefix(name, ee.Msg)
			}
			stack = stack[:n-1]
		}
		if n := len(stack); n > 0 {
			out.Pos = stack[n-1].Pos
		}
		out.Backtrace = backtrace(stack)
	case errors.As(err, &syn):
		out.Msg, out.Pos = syn.Msg, syn.Pos
	case errors.As(err, &synp):
		out.Msg, out.Pos = synp.Msg, synp.Pos
	case errors.As(err, &rl) && len(rl) > 0:
		out.Msg, out.Pos = rl[0].Msg, rl[0].Pos
		if len(rl) > 1 {
			out.Msg += fmt.Sprintf(" (and %d more errors)", len(rl)-1)
		}
	}
	if out.Backtrace == "" && strings.HasPrefix(out.Msg, "got newline") && out.Pos.Col == 1 && out.Pos.Line > 1 {
		// The parser reports a missing token at the start of the next
		// line; show the end of the line that lacks it.
		out.Pos = endOfLine(src, out.Pos)
	}
	if stop != nil {
		out.Msg = "script stopped: " + stop.Error()
		out.cause = stop
	}
	out.Msg = TruncateText(out.Msg, MaxErrorText)
	if out.Backtrace == "" && out.Pos.IsValid() {
		out.Line = sourceLine(src, out.Pos)
	}
	return out
}

// trimBuiltinPrefix drops a leading "name: " that a built-in put in its
// own message, since the report names the built-in already.
func trimBuiltinPrefix(name, msg string) string {
	return strings.TrimPrefix(msg, name+": ")
}

// endOfLine returns the position just after the end of the line before
// pos (pos when src does not have it).
func endOfLine(src []byte, pos syntax.Position) syntax.Position {
	lines := strings.Split(string(src), "\n")
	if len(src) == 0 || int(pos.Line) > len(lines)+1 || pos.Line < 2 {
		return pos
	}
	prev := strings.TrimRight(lines[pos.Line-2], "\r")
	pos.Line, pos.Col = pos.Line-1, int32(len(prev)+1)
	return pos
}

// sourceLine returns line pos.Line of src, indented, with a caret under
// pos.Col on the next line ("" when src does not have that line).
func sourceLine(src []byte, pos syntax.Position) string {
	if len(src) == 0 || pos.Line < 1 {
		return ""
	}
	lines := strings.Split(string(src), "\n")
	if int(pos.Line) > len(lines) {
		return ""
	}
	line := strings.TrimRight(lines[pos.Line-1], "\r")
	col := int(pos.Col)
	if col < 1 {
		col = 1
	}
	// Keep tabs in the padding so that the caret lines up.
	pad := make([]byte, 0, col)
	for i := 0; i < col-1 && i < len(line); i++ {
		if line[i] == '\t' {
			pad = append(pad, '\t')
		} else {
			pad = append(pad, ' ')
		}
	}
	return "    " + line + "\n    " + string(pad) + "^"
}
