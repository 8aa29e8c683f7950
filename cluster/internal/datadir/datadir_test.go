package datadir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadWriteUUID(t *testing.T) {
	dir := t.TempDir()
	if id, err := ReadUUID(dir, "x_id", "thing id", "fix it"); err != nil || id != "" {
		t.Fatalf("missing file: %q, %v", id, err)
	}
	if id, err := ReadUUID("", "x_id", "thing id", "fix it"); err != nil || id != "" {
		t.Fatalf("no dir: %q, %v", id, err)
	}
	const id = "0f1e2d3c-4b5a-4697-8877-665544332211"
	if err := WriteSync(dir, "x_id", id); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadUUID(dir, "x_id", "thing id", "fix it"); err != nil || got != id {
		t.Fatalf("read back %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x_id.tmp")); !os.IsNotExist(err) {
		t.Fatalf("the temporary file was left: %v", err)
	}
	for _, bad := range []string{"garbage\n", "", "{" + id + "}"} {
		if err := os.WriteFile(filepath.Join(dir, "x_id"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ReadUUID(dir, "x_id", "thing id", "fix it")
		if err == nil || !strings.Contains(err.Error(), "not a thing id") || !strings.Contains(err.Error(), "fix it") {
			t.Fatalf("content %q: %v, want an error naming what and the fix", bad, err)
		}
	}
	if err := WriteSync(filepath.Join(dir, "missing"), "x_id", id); err == nil {
		t.Fatal("WriteSync into a missing directory succeeded")
	}
}
