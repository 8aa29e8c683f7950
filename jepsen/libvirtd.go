package jepsen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kumoi/kumoi/internal/libvirtd"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// DriverLibvirtd is the worker driver whose workers run libvirt (`kumoi
// agent --worker --hypervisor libvirt`) against a libvirt daemon of their
// own, one per worker host.
const DriverLibvirtd = "libvirtd"

// LibvirtdWorkerPrefix names the workers of the libvirtd mode: lv-1,
// lv-2, … .
const LibvirtdWorkerPrefix = "lv-"

// FenceGuardPidFile is the file in a libvirt worker's data directory where
// its fence guard (`kumoi fence-guard`, started detached by the worker: it
// survives the worker) writes its pid. The harness's cleanup stops it.
const FenceGuardPidFile = "fence-guard.pid"

// libvirtdWorkers are the daemons and data directories of a run's
// libvirtd-backed workers, all under one short directory of the system's
// temporary directory (unix socket paths are limited to 107 bytes).
type libvirtdWorkers struct {
	base     string
	daemons  []*libvirtd.Daemon // by worker index
	hosts    []string
	dataDirs []string
}

// start starts n daemons, and a worker on each: `kumoi agent --worker
// --hypervisor libvirt --libvirt-uri <its daemon> --data-dir <its own
// directory>` (after the cluster's worker arguments), named lv-1, lv-2, … .
func (l *libvirtdWorkers) start(ctx context.Context, cl *testcluster.Cluster, n int, logf func(string, ...any)) error {
	if m := libvirtd.Missing(); m != "" {
		return fmt.Errorf("--worker-driver %s: %s", DriverLibvirtd, m)
	}
	base, err := os.MkdirTemp("", "kj-")
	if err != nil {
		return err
	}
	l.base = base
	for i := 1; i <= n; i++ {
		d, err := libvirtd.Start(ctx, base)
		if err != nil {
			return fmt.Errorf("libvirtd for worker %d: %w", i, err)
		}
		// The test driver starts with a domain of its own, "test": not
		// a VM of the run, so gone before the worker looks.
		for _, cmd := range []string{"destroy", "undefine"} {
			if _, err := libvirtd.Virsh(ctx, d.URI, cmd, "test"); err != nil {
				d.Close()
				return fmt.Errorf("libvirtd for worker %d: remove the test driver's own domain: %w", i, err)
			}
		}
		host := LibvirtdWorkerPrefix + strconv.Itoa(i)
		dataDir := filepath.Join(base, host)
		if err := os.Mkdir(dataDir, 0o700); err != nil {
			d.Close()
			return err
		}
		l.daemons, l.hosts, l.dataDirs = append(l.daemons, d), append(l.hosts, host), append(l.dataDirs, dataDir)
		var werr error
		if err := fatal(func() {
			if w := cl.AddWorker(host, "--hypervisor", "libvirt", "--libvirt-uri", d.URI, "--data-dir", dataDir); w != i-1 {
				werr = fmt.Errorf("worker %s got index %d, want %d", host, w, i-1)
			}
		}); err != nil {
			return err
		}
		if werr != nil {
			return werr
		}
		logf("jepsen: worker %s on libvirtd %s (pid %d), data dir %s", host, d.URI, d.Pid(), dataDir)
	}
	return nil
}

// targets are the daemons for the poller.
func (l *libvirtdWorkers) targets() []DaemonTarget {
	var out []DaemonTarget
	for i, d := range l.daemons {
		out = append(out, DaemonTarget{Host: l.hosts[i], URI: d.URI})
	}
	return out
}

// close stops what outlives the workers (killed before): each worker's
// fence guard (by its pid file), then the daemons, keeping each daemon's
// log as logDir/<host>.libvirtd.log; it removes the base directory. It
// returns notes about what went wrong.
func (l *libvirtdWorkers) close(logDir string) []string {
	var notes []string
	for _, dir := range l.dataDirs {
		if err := stopFenceGuard(dir); err != nil {
			notes = append(notes, err.Error())
		}
	}
	for i, d := range l.daemons {
		if logs := d.Logs(); logs != "" && logDir != "" {
			if err := os.MkdirAll(logDir, 0o755); err == nil {
				_ = os.WriteFile(filepath.Join(logDir, l.hosts[i]+".libvirtd.log"), []byte(logs), 0o644)
			}
		}
		d.Close()
	}
	if l.base != "" {
		if err := os.RemoveAll(l.base); err != nil {
			notes = append(notes, "removing "+l.base+": "+err.Error())
		}
	}
	*l = libvirtdWorkers{}
	return notes
}

// stopFenceGuard stops the fence guard whose pid is in dir's
// FenceGuardPidFile, if any: SIGTERM (and SIGCONT, should it be
// stopped), then SIGKILL after 5 s. A missing file is not an error.
func stopFenceGuard(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, FenceGuardPidFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fence guard of %s: %w", dir, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("fence guard of %s: bad pid file %q", dir, b)
	}
	if !fenceGuardProcess(pid, dir) {
		return nil // gone, or the pid was reused by another process
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGCONT)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if processGone(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("fence guard of %s (pid %d) did not exit within 5s of SIGTERM: killed", dir, pid)
}

// processGone reports whether pid has exited (a zombie that its parent,
// maybe an init that does not reap, has not waited for counts as gone).
func processGone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state …: the state follows the last ')'.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z'
	}
	return false
}

// fenceGuardProcess reports whether pid runs a command line that names
// dir (the guard's data directory), so that a reused pid is left alone.
// Where /proc cannot tell, it says yes.
func fenceGuardProcess(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	return strings.Contains(string(b), dir)
}
