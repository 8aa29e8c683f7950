package testcluster

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Standalone is a testing.TB for programs that are not tests (the chaos
// harness cmd/kumoi-jepsen), so that they can run a Cluster. Logs go to
// Logf; Errorf marks it failed; Fatalf, FailNow and the Skip methods panic
// with a *FatalError, which Recover turns back into an error. Cleanup
// functions run, last first, on Close.
//
// Only the methods a Cluster uses are implemented; the embedded nil TB
// makes any other one panic.
type Standalone struct {
	testing.TB // nil: methods not defined below are not supported

	// KeepDir, if set before the first TempDir call, is where TempDir
	// creates its directory, and Close leaves it in place (the caller
	// removes it), e.g. to keep the data directories of a failed run.
	KeepDir string

	name string
	logf func(format string, args ...any)

	mu       sync.Mutex
	failed   bool
	dir      string
	cleanups []func()
}

// FatalError is what Standalone's Fatalf (or Skipf) panics with.
type FatalError struct{ Msg string }

func (e *FatalError) Error() string { return e.Msg }

// NewStandalone returns a Standalone named name that logs with logf (nil:
// to stderr).
func NewStandalone(name string, logf func(format string, args ...any)) *Standalone {
	if logf == nil {
		logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	return &Standalone{name: name, logf: logf}
}

// Recover turns a *FatalError panic into *err. Use it deferred around code
// that calls Cluster methods: defer testcluster.Recover(&err).
func Recover(err *error) {
	r := recover()
	if r == nil {
		return
	}
	var fe *FatalError
	if e, ok := r.(error); ok && errors.As(e, &fe) {
		*err = fe
		return
	}
	panic(r)
}

// Name returns the name given to NewStandalone.
func (s *Standalone) Name() string { return s.name }

// Helper does nothing.
func (s *Standalone) Helper() {}

// Logf logs a line.
func (s *Standalone) Logf(format string, args ...any) { s.logf(format, args...) }

// Log logs its arguments.
func (s *Standalone) Log(args ...any) { s.logf("%s", fmt.Sprint(args...)) }

// Errorf logs and marks s failed.
func (s *Standalone) Errorf(format string, args ...any) {
	s.Fail()
	s.logf(format, args...)
}

// Error logs and marks s failed.
func (s *Standalone) Error(args ...any) { s.Errorf("%s", fmt.Sprint(args...)) }

// Fatalf marks s failed and panics with a *FatalError.
func (s *Standalone) Fatalf(format string, args ...any) {
	s.Fail()
	panic(&FatalError{Msg: fmt.Sprintf(format, args...)})
}

// Fatal is Fatalf with Sprint.
func (s *Standalone) Fatal(args ...any) { s.Fatalf("%s", fmt.Sprint(args...)) }

// Skipf panics with a *FatalError: a program cannot skip.
func (s *Standalone) Skipf(format string, args ...any) {
	panic(&FatalError{Msg: fmt.Sprintf(format, args...)})
}

// Skip is Skipf with Sprint.
func (s *Standalone) Skip(args ...any) { s.Skipf("%s", fmt.Sprint(args...)) }

// SkipNow panics with a *FatalError.
func (s *Standalone) SkipNow() { s.Skipf("skipped") }

// Fail marks s failed.
func (s *Standalone) Fail() {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
}

// FailNow marks s failed and panics with a *FatalError.
func (s *Standalone) FailNow() { s.Fatalf("failed") }

// Failed reports whether Errorf, Fail or Fatalf was called.
func (s *Standalone) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// TempDir returns a directory that Close removes (unless KeepDir is set).
func (s *Standalone) TempDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		if s.KeepDir != "" {
			if err := os.MkdirAll(s.KeepDir, 0o755); err != nil {
				panic(&FatalError{Msg: fmt.Sprintf("TempDir: %v", err)})
			}
			s.dir = s.KeepDir
			return s.dir
		}
		d, err := os.MkdirTemp("", "kumoi-standalone-")
		if err != nil {
			panic(&FatalError{Msg: fmt.Sprintf("TempDir: %v", err)})
		}
		s.dir = d
		s.cleanups = append(s.cleanups, func() { os.RemoveAll(d) })
	}
	return s.dir
}

// Cleanup registers f to run on Close.
func (s *Standalone) Cleanup(f func()) {
	s.mu.Lock()
	s.cleanups = append(s.cleanups, f)
	s.mu.Unlock()
}

// Close runs the cleanup functions, last registered first. A cleanup that
// calls Fatalf stops only itself.
func (s *Standalone) Close() {
	for {
		s.mu.Lock()
		n := len(s.cleanups)
		if n == 0 {
			s.mu.Unlock()
			return
		}
		f := s.cleanups[n-1]
		s.cleanups = s.cleanups[:n-1]
		s.mu.Unlock()
		func() {
			var err error
			defer func() {
				if err != nil {
					s.logf("cleanup: %v", err)
				}
			}()
			defer Recover(&err)
			f()
		}()
	}
}
