package testcluster

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI (CI set to anything but
// "", "0" or "false"). Deadlines are stretched there, and a missing binary
// fails the test instead of skipping it.
func InCI() bool {
	v := strings.ToLower(strings.TrimSpace(os.Getenv("CI")))
	return v != "" && v != "0" && v != "false"
}

// Stretch returns d, ×3 under CI, where machines are slower and busier.
func Stretch(d time.Duration) time.Duration {
	if InCI() {
		return 3 * d
	}
	return d
}

// PollInterval is how often the helpers of this package re-check a
// condition.
const PollInterval = 25 * time.Millisecond

// Poll calls cond every PollInterval until it returns true, or timeout
// (stretched under CI) passes, or ctx ends. On timeout it returns an error
// that carries the last error cond returned, so that the caller can say why
// the condition never held.
func Poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	timeout = Stretch(timeout)
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("not true after %s: %w", timeout, last)
			}
			return fmt.Errorf("not true after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// WaitFor polls cond like Poll and fails the test (tb.Fatalf) with what and
// the last error if it does not hold in time. Call it from the test's
// goroutine.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	tb.Helper()
	if err := Poll(context.Background(), timeout, cond); err != nil {
		tb.Fatalf("waiting for %s: %v", what, err)
	}
}
