// Package datadir holds the small files an agent keeps in its data
// directory (its cluster's identity, its own): read back strictly, written
// durably. It is internal to the cluster/ role packages.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/uuid"
)

// ReadUUID reads the UUID in dir/name: "" (and no error) when dir is ""
// or the file does not exist. A file that holds anything else is an error
// naming it, what it should hold, and fix (what the operator can do).
func ReadUUID(dir, name, what, fix string) (string, error) {
	if dir == "" {
		return "", nil
	}
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the %s: %w", what, err)
	}
	id := strings.TrimSpace(string(b))
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return "", fmt.Errorf("%s holds %q, not a %s (a UUID); %s", path, id, what, fix)
	}
	return id, nil
}

// WriteSync writes value (and a newline) to dir/name durably: aside,
// synced, renamed into place, and the directory synced. dir must exist.
func WriteSync(dir, name, value string) error {
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.WriteString(value + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	_ = SyncDir(dir)
	return nil
}

// SyncDir makes the entries created, renamed or removed in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Lock takes an exclusive lock on path (created if missing) without
// waiting: an error when another process holds it. Closing the file
// releases it.
func Lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
