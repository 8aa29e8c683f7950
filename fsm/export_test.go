package fsm

import "testing"

// RegisterPanicApplierForTest registers, for the rest of the test, an
// applier of message type mt whose command decodes any payload and panics
// when applied: a stand-in for a bug in an applier.
func RegisterPanicApplierForTest(t testing.TB, mt MessageType) {
	t.Helper()
	if _, ok := appliers[mt]; ok || mt == BatchRequestType {
		t.Fatalf("message type %d is a real command", mt)
	}
	appliers[mt] = func([]byte) (func(*writer) error, error) {
		return func(*writer) error { panic("boom") }, nil
	}
	t.Cleanup(func() { delete(appliers, mt) })
}

// The fsm tests check every hit of the writer's caches (applycache.go).
func init() { checkApplyCaches = true }

// NoCacheChecksForTest turns the checks of checkApplyCaches off for the
// rest of a benchmark: they recompute what the caches and the projects'
// moved usage save.
func NoCacheChecksForTest(tb testing.TB) {
	checkApplyCaches = false
	tb.Cleanup(func() { checkApplyCaches = true })
}
