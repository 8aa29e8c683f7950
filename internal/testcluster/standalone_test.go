package testcluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStandalone(t *testing.T) {
	var logs []string
	s := NewStandalone("x", func(format string, args ...any) { logs = append(logs, format) })
	var order []int
	s.Cleanup(func() { order = append(order, 1) })
	s.Cleanup(func() { order = append(order, 2); s.Fatalf("cleanup fails") })
	dir := s.TempDir()

	err := func() (err error) {
		defer Recover(&err)
		s.Fatalf("boom %d", 7)
		return nil
	}()
	if err == nil || err.Error() != "boom 7" || !s.Failed() {
		t.Fatalf("Recover: err = %v, Failed = %v", err, s.Failed())
	}
	s.Close()
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Errorf("cleanups ran in order %v, want [2 1]", order)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("TempDir %s not removed: %v", dir, err)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "cleanup") {
		t.Errorf("the failing cleanup was not logged: %q", logs)
	}

	keep := filepath.Join(t.TempDir(), "keep")
	k := NewStandalone("y", nil)
	k.KeepDir = keep
	if got := k.TempDir(); got != keep {
		t.Errorf("TempDir = %s, want KeepDir %s", got, keep)
	}
	k.Close()
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("KeepDir removed: %v", err)
	}
}
