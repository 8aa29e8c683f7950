package script

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"go.starlark.net/starlark"
)

// Bounds of error text: a policy's errors go into its status through
// Raft and into the leader's log, so a script cannot make them large.
const (
	// MaxErrorText bounds an error message (Error.Msg) and what a caller
	// stores of a whole report (TruncateText).
	MaxErrorText = 4096
	// backtraceHead and backtraceTail are the frames a long backtrace
	// keeps: the outermost and the innermost; the others are elided.
	backtraceHead = 5
	backtraceTail = 15
)

// TruncateText returns s cut to at most limit bytes (on a UTF-8 boundary)
// with a marker "… (N bytes truncated)" saying how much was cut; s itself
// when it fits. The result is at most limit bytes (limit ≥ 48).
func TruncateText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	const room = 48 // for the marker
	keep := max(limit-room, 0)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + fmt.Sprintf("… (%d bytes truncated)", len(s)-keep)
}

// backtrace formats a call stack, eliding the middle of a deep one
// (infinite recursion): "  ... 99980 frames elided ...".
func backtrace(stack starlark.CallStack) string {
	if len(stack) <= backtraceHead+backtraceTail {
		return stack.String()
	}
	var b strings.Builder
	b.WriteString(stack[:backtraceHead].String())
	fmt.Fprintf(&b, "  ... %d frames elided ...\n", len(stack)-backtraceHead-backtraceTail)
	for _, fr := range stack[len(stack)-backtraceTail:] {
		fmt.Fprintf(&b, "  %s: in %s\n", fr.Pos, fr.Name)
	}
	return b.String()
}
