package script

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncateText(t *testing.T) {
	if got := TruncateText("short", 100); got != "short" {
		t.Errorf("short: %q", got)
	}
	long := strings.Repeat("é", 5000) // 10,000 bytes
	got := TruncateText(long, 4096)
	if len(got) > 4096 || !utf8.ValidString(got) || !strings.HasSuffix(got, " bytes truncated)") {
		t.Errorf("long: %d bytes, valid %v, ends %q", len(got), utf8.ValidString(got), got[len(got)-30:])
	}
	kept := strings.Index(got, "…")
	if want := "… (" + strconv.Itoa(len(long)-kept) + " bytes truncated)"; !strings.HasSuffix(got, want) {
		t.Errorf("marker %q, want %q", got[kept:], want)
	}
}

// TestRecursionBounded: infinite recursion stops at MaxCallDepth with a
// short report (the middle of the backtrace elided), and a huge fail()
// message is cut.
func TestRecursionBounded(t *testing.T) {
	_, err := runScript(t, Env{}, "def f(n):\n    return f(n + 1)\n\nf(0)\n")
	e := wantError(t, err, "call depth limit of 1000 exceeded (infinite recursion?)")
	if n := strings.Count(e.Backtrace, "\n"); n > 25 || !strings.Contains(e.Backtrace, "frames elided") || !strings.Contains(e.Backtrace, "test.star:2:13: in f") {
		t.Errorf("backtrace of %d lines:\n%s", n, e.Backtrace)
	}
	_, err = runScript(t, Env{}, "g = lambda n: g(n + 1)\ng(0)\n")
	wantError(t, err, "call depth limit of 1000 exceeded")
	_, err = runScript(t, Env{}, "fail('x' * 100000)\n")
	e = wantError(t, err, "bytes truncated)")
	if len(e.Msg) > MaxErrorText {
		t.Errorf("message of %d bytes", len(e.Msg))
	}
	// Depth 900 is fine, and a docstring stays the function's doc.
	if _, err := runScript(t, Env{}, "def d(n):\n    \"doc\"\n    return 0 if n == 0 else d(n - 1)\nd(900)\n"); err != nil {
		t.Error(err)
	}
}

func TestWorkersBounded(t *testing.T) {
	_, err := runScript(t, Env{}, "pmap(lambda x: x, [1], workers=65)\n")
	wantError(t, err, `for parameter "workers": must be between 1 and 64 (got 65)`)
	if _, err := runScript(t, Env{}, "pmap(lambda x: x, [1], workers=64)\n"); err != nil {
		t.Error(err)
	}
}
