package fenceguard

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DefaultQEMUPidDir is where libvirt's system QEMU driver keeps each
// running domain's pid file (<name>.pid).
const DefaultQEMUPidDir = "/run/libvirt/qemu"

// QEMUKiller returns a Config.Kill that SIGKILLs a domain's QEMU process
// from its pid file in dir, after checking that the process is that
// domain's QEMU (its command line names "guest=<name>"), so that a pid
// reused by another process is never killed. The guard fences with it
// first: it takes milliseconds where libvirt's destroy may take seconds,
// and it works when libvirtd hangs (QEMU guests run on without it).
func QEMUKiller(dir string) func(domain string) error {
	return func(domain string) error {
		b, err := os.ReadFile(filepath.Join(dir, domain+".pid"))
		if err != nil {
			return err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			return fmt.Errorf("bad pid file for %s: %q", domain, b)
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			return fmt.Errorf("process %d of %s: %w", pid, domain, err)
		}
		if !bytes.Contains(cmdline, []byte("guest="+domain)) {
			return fmt.Errorf("process %d is not %s's QEMU (pid reused?)", pid, domain)
		}
		return syscall.Kill(pid, syscall.SIGKILL)
	}
}
