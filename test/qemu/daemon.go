package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Host is a libvirt daemon with the QEMU driver: where to connect and
// where it keeps its runtime state (the QEMU pid files are in
// RunDir/qemu).
type Host struct {
	URI    string
	RunDir string
}

// System is the system's libvirtd (scripts/install-qemu-deps.sh starts
// it).
var System = Host{URI: "qemu:///system", RunDir: "/run/libvirt"}

// Virsh runs virsh against uri (15 s at most) and returns its output.
func Virsh(ctx context.Context, uri string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", uri}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("virsh -c %s %s: %v: %s", uri, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Active lists the names of the daemon's active (running or paused)
// domains: `virsh list`.
func (h Host) Active(ctx context.Context) ([]string, error) {
	out, err := Virsh(ctx, h.URI, "list", "--name")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// DomState is a domain's state as `virsh domstate` reports it ("" if the
// domain is not defined).
func (h Host) DomState(ctx context.Context, name string) (string, error) {
	out, err := Virsh(ctx, h.URI, "list", "--all", "--name")
	if err != nil {
		return "", err
	}
	if !slices.Contains(strings.Fields(out), name) {
		return "", nil
	}
	st, err := Virsh(ctx, h.URI, "domstate", name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(st), nil
}

// QEMUPid is the pid of a running domain's QEMU process, from the pid file
// libvirt keeps.
func (h Host) QEMUPid(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(h.RunDir, "qemu", name+".pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Remove destroys and undefines a domain, ignoring a domain that is not
// there (for cleanups).
func (h Host) Remove(name string) {
	ctx := context.Background()
	_, _ = Virsh(ctx, h.URI, "destroy", name)
	_, _ = Virsh(ctx, h.URI, "undefine", name, "--nvram")
	_, _ = Virsh(ctx, h.URI, "undefine", name)
}

// Daemon is a second privileged libvirtd with the QEMU driver on this
// machine, as if on a second hypervisor host. It runs as root in a private
// mount namespace (unshare --mount --propagation private) in which its own
// directories are bound over /run/libvirt, /var/lib/libvirt,
// /var/cache/libvirt, /var/log/libvirt and /etc/libvirt, so that its
// domains, pid files, monitor sockets, logs and persistent definitions are
// its own; nothing is mounted in the system's namespace. It listens only
// on its unix socket (Dir/sock/libvirt-sock), loads only the QEMU driver
// (no networks, firewall rules, storage pools or node devices), writes
// QEMU's output to files (no virtlogd), and uses no cgroups (which are
// named after the domain and would clash with the system daemon's). The
// system's libvirtd is not touched.
type Daemon struct {
	Host
	Dir   string // its state, config, socket and logs
	NetNS string // the network namespace it runs in ("" for the host's)

	cmd    *exec.Cmd
	exited chan struct{}
}

// boundDirs are the system paths the daemon gets its own copy of, and the
// subdirectory of Dir that is bound over each.
var boundDirs = []struct{ sys, own string }{
	{"/run/libvirt", "run"},
	{"/var/lib/libvirt", "lib"},
	{"/var/cache/libvirt", "cache"},
	{"/var/log/libvirt", "log"},
	{"/etc/libvirt", "etc"},
}

// daemonQEMUConf is the daemon's /etc/libvirt/qemu.conf.
const daemonQEMUConf = `# kumoi test/qemu: a second libvirtd on this machine
stdio_handler = "file"
cgroup_controllers = [ ]
dynamic_ownership = 0
security_driver = "none"
`

// daemonScript runs in the new mount namespace: bind the daemon's
// directories over the system's, then become libvirtd.
const daemonScript = `set -e
D="$1"
mount --bind "$D/run" /run/libvirt
mount --bind "$D/lib" /var/lib/libvirt
mount --bind "$D/cache" /var/cache/libvirt
mount --bind "$D/log" /var/log/libvirt
mount --bind "$D/etc" /etc/libvirt
if [ -e "$D/nokvm" ] && [ -e /dev/kvm ]; then mount --bind "$D/nokvm" /dev/kvm; fi
export LIBVIRT_DRIVER_DIR="$D/drivers"
exec /usr/sbin/libvirtd --config "$D/libvirtd.conf" --pid-file "$D/libvirtd.pid"
`

// DaemonOptions vary a second libvirtd (StartDaemonWith).
type DaemonOptions struct {
	// NetNS, if set, is a network namespace (ip netns) the daemon runs in
	// (ip netns exec), with its QEMU guests and what its network driver
	// starts (bridges, dnsmasq, firewall rules).
	NetNS string
	// Drivers are the connection drivers it loads besides the QEMU driver
	// ("network", "storage").
	Drivers []string
	// QEMUConf is its /etc/libvirt/qemu.conf ("" for daemonQEMUConf).
	QEMUConf string
	// NoKVM hides /dev/kvm from it (an empty file no one may open is
	// bound over it in its mount namespace): it offers only TCG (domain
	// type qemu), whatever the machine has.
	NoKVM bool
	// HostUUID is its host UUID (libvirtd.conf host_uuid; "" for the
	// machine's). Two daemons that migrate a domain between them need
	// different ones: libvirt refuses a migration to the same host.
	HostUUID string
}

// StartDaemon starts a second libvirtd in a new directory under parent (""
// for the system's temporary directory; unix socket paths are limited to
// 107 bytes) and waits until it answers. Close stops it, its domains
// and their QEMU processes, and removes the directory. It needs root.
func StartDaemon(ctx context.Context, parent string) (*Daemon, error) {
	return StartDaemonWith(ctx, parent, DaemonOptions{})
}

// StartDaemonWith is StartDaemon with options.
func StartDaemonWith(ctx context.Context, parent string, opts DaemonOptions) (*Daemon, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("a second privileged libvirtd needs root")
	}
	for _, b := range boundDirs {
		if st, err := os.Stat(b.sys); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%s is not a directory (install libvirt-daemon-system: scripts/install-qemu-deps.sh)", b.sys)
		}
	}
	var drivers []string
	for _, name := range append([]string{"qemu"}, opts.Drivers...) {
		so, _ := filepath.Glob("/usr/lib/*/libvirt/connection-driver/libvirt_driver_" + name + ".so")
		if len(so) == 0 {
			return nil, fmt.Errorf("libvirt's %s driver is not installed (scripts/install-qemu-deps.sh)", name)
		}
		drivers = append(drivers, so[0])
	}
	dir, err := os.MkdirTemp(parent, "kumoi-qemud-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Dir: dir, NetNS: opts.NetNS, exited: make(chan struct{})}
	d.URI = "qemu+unix:///system?socket=" + filepath.Join(dir, "sock", "libvirt-sock")
	d.RunDir = filepath.Join(dir, "run")
	conf := opts.QEMUConf
	if conf == "" {
		conf = daemonQEMUConf
	}
	if err := d.start(ctx, drivers, conf, opts.NoKVM, opts.HostUUID); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start(ctx context.Context, drivers []string, qemuConf string, noKVM bool, hostUUID string) error {
	// QEMU runs as libvirt-qemu and must reach its monitor socket and
	// logs under the bound directories.
	if err := os.Chmod(d.Dir, 0o755); err != nil {
		return err
	}
	for _, sub := range []string{"run", "lib", "cache", "log", "etc", "sock", "drivers"} {
		if err := os.Mkdir(filepath.Join(d.Dir, sub), 0o755); err != nil {
			return err
		}
	}
	if noKVM {
		if err := os.WriteFile(filepath.Join(d.Dir, "nokvm"), nil, 0); err != nil {
			return err
		}
	}
	for _, so := range drivers {
		if err := os.Symlink(so, filepath.Join(d.Dir, "drivers", filepath.Base(so))); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "etc", "qemu.conf"), []byte(qemuConf), 0o644); err != nil {
		return err
	}
	conf := filepath.Join(d.Dir, "libvirtd.conf")
	extra := ""
	if hostUUID != "" {
		extra = fmt.Sprintf("host_uuid = %q\n", hostUUID)
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`unix_sock_dir = %q
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:%s"
%s`, filepath.Join(d.Dir, "sock"), filepath.Join(d.Dir, "libvirtd.log"), extra)), 0o600); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(d.Dir, "libvirtd.out"))
	if err != nil {
		return err
	}
	// unshare execs sh, which execs libvirtd: one process throughout.
	args := []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", daemonScript, "sh", d.Dir}
	if d.NetNS != "" {
		// ip netns exec execs unshare in the namespace: still one process.
		args = append([]string{"ip", "netns", "exec", d.NetNS}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start libvirtd: %w", err)
	}
	d.cmd = cmd
	go func() { _ = cmd.Wait(); out.Close(); close(d.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("libvirtd exited: %v: %s", cmd.ProcessState, d.Logs())
		default:
		}
		_, err := Virsh(ctx, d.URI, "version")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("libvirtd does not answer on %s: %w\n%s", d.URI, err, d.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartDaemonT starts a daemon for a test (in /tmp) and closes it at the
// test's end.
func StartDaemonT(tb testing.TB) *Daemon {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := StartDaemon(ctx, "")
	if err != nil {
		tb.Fatalf("second libvirtd: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("second libvirtd's logs:\n%s", tail(d.Logs(), 4000))
		}
		if err := d.Close(); err != nil {
			tb.Errorf("second libvirtd: %v", err)
		}
	})
	return d
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Logs returns the daemon's output and log.
func (d *Daemon) Logs() string {
	var b strings.Builder
	for _, f := range []string{"libvirtd.out", "libvirtd.log"} {
		if s, err := os.ReadFile(filepath.Join(d.Dir, f)); err == nil && len(s) > 0 {
			fmt.Fprintf(&b, "%s:\n%s\n", f, s)
		}
	}
	return b.String()
}

// DomainReport is what the daemon has of a domain, for a failed test: its
// definition (live if it runs), its QEMU log, and the daemon's networks
// and volumes.
func (d *Daemon) DomainReport(dom string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	for _, args := range [][]string{{"dumpxml", dom}, {"net-list", "--all"}, {"pool-list", "--all"}, {"vol-list", "kumoi", "--details"}} {
		out, err := Virsh(ctx, d.URI, args...)
		if err != nil {
			out = err.Error()
		}
		fmt.Fprintf(&b, "virsh %s:\n%s\n", strings.Join(args, " "), strings.TrimSpace(out))
	}
	if log, err := os.ReadFile(filepath.Join(d.Dir, "log", "qemu", dom+".log")); err == nil {
		fmt.Fprintf(&b, "QEMU log of %s:\n%s\n", dom, tail(string(log), 4000))
	}
	return b.String()
}

// Close destroys the daemon's domains, stops it, kills any QEMU process it
// leaves (a pid file in its run directory), waits for them to end (its
// mount namespace ends with its last process) and removes its directory.
// It says what it could not clean up.
func (d *Daemon) Close() error {
	var errs []error
	if d.cmd != nil {
		_ = d.cmd.Process.Signal(syscall.SIGCONT)
		select {
		case <-d.exited:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if names, err := d.Active(ctx); err == nil {
				for _, n := range names {
					_, _ = Virsh(ctx, d.URI, "destroy", n)
				}
			}
			// A network's dnsmasq outlives libvirtd: stop the networks
			// (a daemon without the network driver has none).
			if out, err := Virsh(ctx, d.URI, "net-list", "--name"); err == nil {
				for _, n := range strings.Fields(out) {
					_, _ = Virsh(ctx, d.URI, "net-destroy", n)
				}
			}
			cancel()
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exited:
			case <-time.After(10 * time.Second):
				_ = d.cmd.Process.Kill()
				<-d.exited
			}
		}
	}
	// libvirtd does not take its QEMU processes down with it.
	pidFiles, _ := filepath.Glob(filepath.Join(d.RunDir, "qemu", "*.pid"))
	var left []int
	for _, f := range pidFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 || !isQEMU(pid) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		left = append(left, pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range left {
		for isQEMU(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if isQEMU(pid) {
			errs = append(errs, fmt.Errorf("QEMU process %d of %s did not end", pid, d.Dir))
		}
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// isQEMU reports whether pid is a live (not zombie) QEMU process.
func isQEMU(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return strings.Contains(s, "(qemu") && i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
