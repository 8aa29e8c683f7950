package jepsen

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestLibvirtHangNeedsLibvirtd: libvirt-hang is refused without daemons.
func TestLibvirtHangNeedsLibvirtd(t *testing.T) {
	for _, tc := range []struct {
		driver string
		ok     bool
	}{{"sim", false}, {"libvirt", false}, {DriverLibvirtd, true}} {
		cfg := Config{Workload: "placement", Nemeses: []string{"libvirt-hang", "worker-pause"}, Nodes: 3, Workers: 2, WorkerDriver: tc.driver}
		_, err := cfg.validate()
		if (err == nil) != tc.ok {
			t.Errorf("driver %s: validate = %v, want ok=%v", tc.driver, err, tc.ok)
		}
	}
}

// TestStopFenceGuard: the cleanup stops the process named by a data
// directory's fence-guard.pid (one whose command line names the
// directory), and a directory without the file is fine.
func TestStopFenceGuard(t *testing.T) {
	dir := t.TempDir()
	if err := stopFenceGuard(dir); err != nil {
		t.Fatalf("no pid file: %v", err)
	}
	// A stand-in guard: its command line names dir, as the real one's
	// --data-dir does.
	cmd := exec.Command("sh", "-c", "sleep 60", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	// Until it has exec'd, the child's command line is still this test's
	// (and stopFenceGuard would rightly leave it alone).
	deadline := time.Now().Add(5 * time.Second)
	for !fenceGuardProcess(cmd.Process.Pid, dir) {
		if time.Now().After(deadline) {
			t.Fatal("the stand-in guard never showed its command line")
		}
		time.Sleep(10 * time.Millisecond) // polling /proc with a deadline
	}
	if err := os.WriteFile(filepath.Join(dir, FenceGuardPidFile), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	go func() { _ = stopFenceGuard(dir) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the guard's process is still running 10s after stopFenceGuard")
	}
}
