// Package libvirtd runs libvirt daemons of a test's (or a chaos run's)
// own: one per simulated hypervisor host, each serving libvirt's test
// driver on a unix socket in its own directory. Domains defined through
// such a daemon live in the daemon, not in the worker that defined them,
// so they outlive the worker exactly as QEMU guests do under a real
// libvirtd: what the fencing tests (docs/ha.md) need.
//
// A daemon has no TCP listener and no driver modules (LIBVIRT_DRIVER_DIR
// names an empty directory: no QEMU, no networks, no storage), so it talks
// to nothing outside its socket.
package libvirtd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Daemon is a running libvirtd of our own.
type Daemon struct {
	Dir string // its sockets, config and logs
	URI string // test+unix:///default?socket=...

	cmd    *exec.Cmd
	exited chan struct{}
	hold   *exec.Cmd
	stdin  io.WriteCloser
}

// Programs the daemons need, with the Debian package of each.
var Programs = []struct{ Name, Package, Path string }{
	{"libvirtd", "libvirt-daemon", "/usr/sbin/libvirtd"},
	{"virsh", "libvirt-clients", "/usr/bin/virsh"},
}

// Missing says which program (and its package) is not installed, or "".
func Missing() string {
	for _, p := range Programs {
		if _, err := exec.LookPath(p.Name); err == nil {
			continue
		}
		if _, err := os.Stat(p.Path); err == nil {
			continue
		}
		return fmt.Sprintf("%s is not installed (Debian package %s; make deps installs it)", p.Name, p.Package)
	}
	return ""
}

func libvirtdPath() string {
	if p, err := exec.LookPath("libvirtd"); err == nil {
		return p
	}
	return "/usr/sbin/libvirtd"
}

// Start starts a daemon in a new directory under parent ("" for the
// system's temporary directory; a unix socket's path is limited to 107
// bytes, so keep parent short) and waits until it answers. Close stops
// it and removes its directory.
func Start(ctx context.Context, parent string) (*Daemon, error) {
	if m := Missing(); m != "" {
		return nil, errors.New(m)
	}
	dir, err := os.MkdirTemp(parent, "kumoi-libvirtd-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Dir: dir, URI: "test+unix:///default?socket=" + filepath.Join(dir, "libvirt-sock"), exited: make(chan struct{})}
	if err := d.start(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start(ctx context.Context) error {
	drivers := filepath.Join(d.Dir, "no-drivers")
	if err := os.Mkdir(drivers, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(d.Dir, "libvirtd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`unix_sock_dir = %q
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:%s"
`, d.Dir, filepath.Join(d.Dir, "libvirtd.log"))), 0o600); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(d.Dir, "libvirtd.out"))
	if err != nil {
		return err
	}
	cmd := exec.Command(libvirtdPath(), "--config", conf, "--pid-file", filepath.Join(d.Dir, "libvirtd.pid"))
	cmd.Env = append(os.Environ(), "LIBVIRT_DRIVER_DIR="+drivers)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start libvirtd: %w", err)
	}
	d.cmd = cmd
	go func() { _ = cmd.Wait(); out.Close(); close(d.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("libvirtd exited: %v: %s", cmd.ProcessState, d.Logs())
		default:
		}
		_, err := Virsh(ctx, d.URI, "list", "--all")
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("libvirtd does not answer on %s: %w", d.URI, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Hold the test driver's state: the test driver forgets its domains
	// when its last connection closes, and an interactive virsh keeps its
	// connection open until its input ends.
	hold := exec.Command("virsh", "-q", "-c", d.URI)
	stdin, err := hold.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := hold.StdoutPipe()
	if err != nil {
		return err
	}
	hold.Stderr = io.Discard
	hold.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := hold.Start(); err != nil {
		return err
	}
	d.hold, d.stdin = hold, stdin
	// virsh connects before it reads its first command: once it echoes,
	// the connection is held.
	if _, err := io.WriteString(stdin, "echo kumoi-held\n"); err != nil {
		return err
	}
	held := make(chan error, 1)
	go func() {
		r := bufio.NewScanner(stdout)
		for r.Scan() {
			if strings.Contains(r.Text(), "kumoi-held") {
				held <- nil
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		held <- fmt.Errorf("the holding virsh ended: %v", r.Err())
	}()
	select {
	case err := <-held:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("the holding virsh did not connect within 10s")
	}
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Pause stops the daemon (SIGSTOP): every libvirt call to it hangs, and
// the test driver's domains are frozen with it.
func (d *Daemon) Pause() error { return d.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused daemon (SIGCONT).
func (d *Daemon) Resume() error { return d.cmd.Process.Signal(syscall.SIGCONT) }

// Exited is closed when the daemon has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Logs returns the daemon's own output and log (for a failed test).
func (d *Daemon) Logs() string {
	var b strings.Builder
	for _, f := range []string{"libvirtd.out", "libvirtd.log"} {
		if s, err := os.ReadFile(filepath.Join(d.Dir, f)); err == nil && len(s) > 0 {
			fmt.Fprintf(&b, "%s:\n%s\n", f, s)
		}
	}
	return b.String()
}

// Close kills the daemon and removes its directory.
func (d *Daemon) Close() {
	if d.stdin != nil {
		d.stdin.Close()
	}
	if d.hold != nil {
		_ = d.hold.Process.Kill()
		_ = d.hold.Wait()
	}
	if d.cmd != nil {
		_ = d.cmd.Process.Signal(syscall.SIGCONT)
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	os.RemoveAll(d.Dir)
}

// Virsh runs virsh against uri (10 s at most) and returns its output.
func Virsh(ctx context.Context, uri string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", uri}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("virsh %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// DomState is a domain's state as virsh reports it ("" if it is not
// defined).
func (d *Daemon) DomState(ctx context.Context, name string) (string, error) {
	out, err := Virsh(ctx, d.URI, "list", "--all", "--name")
	if err != nil {
		return "", err
	}
	if !slices.Contains(strings.Fields(out), name) {
		return "", nil
	}
	st, err := Virsh(ctx, d.URI, "domstate", name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(st), nil
}

// Active lists the names of the running (or paused) domains.
func (d *Daemon) Active(ctx context.Context) ([]string, error) {
	out, err := Virsh(ctx, d.URI, "list", "--name")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}
