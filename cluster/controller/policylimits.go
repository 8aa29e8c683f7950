package controller

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// policyLogEvery is how often a policy may log the same kind of line
// (a handler error, a line of output): a handler failing on every event,
// or printing in a loop, must not flood the leader's log.
const policyLogEvery = 10 * time.Second

// policyOutputBurst is how many lines of a policy's output are logged
// per policyLogEvery (all are kept in its status.recent_output).
const policyOutputBurst = 20

// logLimiter lets burst lines (at least 1) through per interval and
// counts the others, which the next line that passes reports as
// "suppressed".
type logLimiter struct {
	every time.Duration
	burst int
	mu    sync.Mutex
	start time.Time // of the current interval
	n     int       // lines logged in it
	held  int       // lines suppressed since the last one logged
}

// allow reports whether a line may be logged now and how many were
// suppressed before it.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.start.IsZero() || now.Sub(l.start) >= l.every {
		l.start, l.n = now, 0
	}
	if l.n >= max(l.burst, 1) {
		l.held++
		return false, 0
	}
	l.n++
	suppressed, l.held = l.held, 0
	return true, suppressed
}

// log logs msg at level through l, adding "suppressed" when lines were
// held back since the last one.
func (l *logLimiter) log(logger hclog.Logger, level hclog.Level, msg string, args ...any) {
	ok, n := l.allow(time.Now())
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	logger.Log(level, msg, args...)
}
