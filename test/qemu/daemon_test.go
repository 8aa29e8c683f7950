package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
)

// mountedHere lists the mount points of this process's namespace under dir.
func mountedHere(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, dir) {
			out = append(out, l)
		}
	}
	return out
}

// TestQEMUSecondDaemon: the second libvirtd runs a QEMU guest of its own
// that the system's libvirtd does not see (and the reverse), mounts
// nothing in the system's namespace, answers through a VirshShell, and
// Close leaves nothing behind even when the daemon was killed under its
// running guest (QEMU outlives libvirtd).
func TestQEMUSecondDaemon(t *testing.T) {
	Require(t)
	g := NewGuest(t)
	ctx := context.Background()
	d, err := StartDaemon(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			d.Close()
		}
	}()
	if m := mountedHere(t, d.Dir); len(m) > 0 {
		t.Fatalf("the second daemon's directories are mounted in the system's namespace:\n%s", strings.Join(m, "\n"))
	}
	name := "kumoi-qemud-probe-" + suffix(t)
	xml := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type><kernel>%s</kernel><initrd>%s</initrd><cmdline>%s</cmdline></os>
<on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>
<devices><serial type='pty'/><console type='pty'><target type='serial'/></console></devices></domain>`, name, g.Kernel, g.Initrd, g.Cmdline)
	xmlPath := filepath.Join(g.Dir, "probe.xml")
	if err := os.WriteFile(xmlPath, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Virsh(ctx, d.URI, "define", xmlPath); err != nil {
		t.Fatal(err)
	}
	if _, err := Virsh(ctx, d.URI, "start", name); err != nil {
		t.Fatalf("%v\n%s", err, d.Logs())
	}
	waitDomState(t, d.Host, name, "running", 30*time.Second)
	pid, err := d.QEMUPid(name)
	if err != nil || !isQEMU(pid) {
		t.Fatalf("QEMU pid of %s on the second daemon: %d, %v (alive: %v)", name, pid, err, isQEMU(pid))
	}
	// The system daemon knows nothing of it, and the second daemon
	// nothing of the system's domains.
	if st, err := System.DomState(ctx, name); err != nil || st != "" {
		t.Fatalf("the system's libvirtd sees %s: %q, %v", name, st, err)
	}
	if _, err := os.Stat(filepath.Join(System.RunDir, "qemu", name+".pid")); !os.IsNotExist(err) {
		t.Fatalf("a pid file of the second daemon's domain in the system's run directory: %v", err)
	}
	sysAll, err := Virsh(ctx, System.URI, "list", "--all", "--name")
	if err != nil {
		t.Fatal(err)
	}
	own, err := Virsh(ctx, d.URI, "list", "--all", "--name")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(own); !slices.Equal(got, []string{name}) {
		t.Fatalf("the second daemon lists %q, want only %s (the system's: %q)", got, name, strings.Fields(sysAll))
	}

	// A VirshShell sees it, in milliseconds, and says so when the
	// daemon is gone.
	sh, err := NewVirshShell(d.URI)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	for i := 0; i < 3; i++ {
		start := time.Now()
		names, err := sh.Active(10 * time.Second)
		if err != nil || !slices.Equal(names, []string{name}) {
			t.Fatalf("virsh shell list: %q, %v; want [%s]", names, err, name)
		}
		t.Logf("virsh shell list: %v", time.Since(start).Round(time.Microsecond))
	}
	// Kill libvirtd under its running guest: Close must still end the
	// guest's QEMU and leave nothing.
	if err := syscall.Kill(d.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	if !isQEMU(pid) {
		t.Fatalf("QEMU %d ended with libvirtd: the check below would prove nothing", pid)
	}
	testcluster.WaitFor(t, 20*time.Second, "the virsh shell to report the dead daemon", func() (bool, error) {
		names, err := sh.Active(5 * time.Second)
		if err == nil {
			return false, fmt.Errorf("virsh shell list after libvirtd was killed: %q, no error", names)
		}
		t.Logf("virsh shell after libvirtd was killed: %v", err)
		return true, nil
	})
	closed = true
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if isQEMU(pid) {
		t.Fatalf("QEMU %d still runs after Close", pid)
	}
	if _, err := os.Stat(d.Dir); !os.IsNotExist(err) {
		t.Fatalf("%s is still there after Close: %v", d.Dir, err)
	}
}
