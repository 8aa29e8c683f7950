//go:build libvirt_dlopen

package libvirt

// The opt-in QEMU test (make test-qemu, KUMOI_TEST_QEMU=1): the
// conformance suite and a real boot on qemu:///system under TCG, with a
// kernel and an initramfs built from Debian packages by test/qemu
// (scripts/install-qemu-deps.sh installs them and starts libvirtd).

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/conformance"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/test/qemu"
)

// qemuEnv is a guest (test/qemu builds it) and where its consoles go.
type qemuEnv struct {
	*qemu.Guest
	uri     string
	storage string // the pool's directory ("": the driver's default)
	logDir  string
	restart string // command that restarts libvirtd, if given
}

func setupQEMU(t *testing.T) *qemuEnv {
	t.Helper()
	qemu.Require(t)
	e := &qemuEnv{Guest: qemu.NewGuest(t), uri: os.Getenv("KUMOI_TEST_QEMU_URI"),
		restart: os.Getenv("KUMOI_TEST_QEMU_RESTART_LIBVIRTD")}
	e.logDir = filepath.Join(e.Dir, "console")
	if e.uri == "" {
		e.uri = "qemu:///system"
	}
	if err := os.Mkdir(e.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *qemuEnv) driver(t *testing.T, buf *syncBuffer) *Driver {
	t.Helper()
	opts := Options{
		URI: e.uri, DomainType: "qemu", // TCG: no KVM needed
		ConsoleLogDir: e.logDir, Host: "qemu-" + t.Name(),
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: time.Second,
		StorageDir: e.storage,
	}
	if buf != nil {
		opts.ObservationLog = buf
	}
	d, err := New(opts)
	if err != nil {
		t.Fatalf("libvirt: %v", err)
	}
	if err := d.Health(context.Background()); err != nil {
		d.Close()
		t.Fatalf("%s: %v (is libvirtd running? scripts/install-qemu-deps.sh starts it)", e.uri, err)
	}
	return d
}

func (e *qemuEnv) boot() hypervisor.Boot {
	return hypervisor.Boot{Kernel: e.Kernel, Initrd: e.Initrd, Cmdline: e.Cmdline}
}

func TestQEMUConformance(t *testing.T) {
	e := setupQEMU(t)
	// The suite defines nat and isolated networks (bridges, dnsmasq,
	// firewall rules): they live with a libvirtd of the test's own in a
	// network namespace it creates, never on the system's daemon.
	daemon := qemu.StartNetDaemonT(t)
	e.uri = daemon.URI
	e.storage = filepath.Join(e.Dir, "pool") // e.Dir is world-readable: QEMU reads its disks
	if err := os.Mkdir(e.storage, 0o755); err != nil {
		t.Fatal(err)
	}
	h := testHooks()
	h.Crash = func(t *testing.T, d hypervisor.Driver, name string) {
		pid, err := daemon.QEMUPid(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	h.GuestReady = func(t *testing.T, d hypervisor.Driver, name string) {
		e.waitConsole(t, name, qemu.GuestUp, 2*time.Minute)
	}
	h.BackingImage = func(t *testing.T, d hypervisor.Driver) string {
		// A real overlay needs a real image: libvirt reads its header.
		path := filepath.Join(t.TempDir(), "base.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", path, "16M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create %s: %v: %s", path, err, out)
		}
		return path
	}
	h.Boot = e.boot()
	h.CPUs, h.MemoryMiB = 1, 128
	h.Timeout = 60 * time.Second
	h.Parallel = 2
	conformance.Run(t, func(t *testing.T) hypervisor.Driver {
		buf := new(syncBuffer)
		d := e.driver(t, buf)
		logs.Store(d, buf)
		t.Cleanup(func() { logs.Delete(d) })
		return d
	}, h)
}

// waitConsole waits until a domain's console log contains want.
func (e *qemuEnv) waitConsole(t *testing.T, name, want string, timeout time.Duration) {
	t.Helper()
	path := filepath.Join(e.logDir, name+".log")
	testcluster.WaitFor(t, timeout, fmt.Sprintf("%q on the console of %s", want, name), func() (bool, error) {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(want)) {
			return true, nil
		}
		return false, fmt.Errorf("the console has no %q:\n%s", want, b)
	})
}

// TestQEMUBootAndGracefulShutdown boots the kernel and initramfs, sees the
// guest's console say it is up, and shuts it down through ACPI: the guest
// powers itself off (reason shutdown), it is not destroyed.
func TestQEMUBootAndGracefulShutdown(t *testing.T) {
	e := setupQEMU(t)
	d := e.driver(t, nil)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	spec := hypervisor.DomainSpec{Name: fmt.Sprintf("kumoi-qemu-boot-%d", os.Getpid()), VMID: "qemu-boot", Epoch: 1,
		CPUs: 1, MemoryMiB: 128, Boot: e.boot()}
	if err := d.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = d.Destroy(context.Background(), spec.Name)
		_ = d.Undefine(context.Background(), spec.Name)
	}()
	start := time.Now()
	if err := d.Start(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	e.waitConsole(t, spec.Name, qemu.GuestUp, 2*time.Minute)
	t.Logf("guest up %v after Start (TCG)", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := d.Shutdown(ctx, spec.Name, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("Shutdown returned after %v", time.Since(start).Round(time.Millisecond))
	in, err := d.Get(ctx, spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != hypervisor.StateShutoff || in.Reason != hypervisor.StopShutdown {
		t.Fatalf("after Shutdown: %+v; want shutoff (shutdown): the guest should have powered off on ACPI", in)
	}
	e.waitConsole(t, spec.Name, qemu.GuestPoweroff, 10*time.Second)
}

// TestQEMUMissingImage: starting a domain whose disk image does not exist
// fails with libvirt's error (the worker reports it as the VM's reason).
func TestQEMUMissingImage(t *testing.T) {
	e := setupQEMU(t)
	d := e.driver(t, nil)
	defer d.Close()
	ctx := context.Background()
	spec := hypervisor.DomainSpec{Name: fmt.Sprintf("kumoi-qemu-noimg-%d", os.Getpid()), VMID: "noimg", Epoch: 1,
		CPUs: 1, MemoryMiB: 64, Boot: hypervisor.Boot{Image: filepath.Join(e.Dir, "missing.qcow2")}}
	if err := d.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Undefine(context.Background(), spec.Name) }()
	err := d.Start(ctx, spec.Name)
	if err == nil {
		t.Fatal("started a domain whose image does not exist")
	}
	if !strings.Contains(err.Error(), "missing.qcow2") {
		t.Fatalf("error %q does not name the image", err)
	}
	t.Logf("start error: %v", err)
}

// TestQEMUReconnectAfterDaemonRestart restarts libvirtd under a running
// guest: the driver notices, reconnects, says resync, and still sees the
// guest running with its tag. Needs KUMOI_TEST_QEMU_RESTART_LIBVIRTD (a
// shell command; make test-qemu sets it).
func TestQEMUReconnectAfterDaemonRestart(t *testing.T) {
	e := setupQEMU(t)
	if e.restart == "" {
		t.Skip("set KUMOI_TEST_QEMU_RESTART_LIBVIRTD to a command that restarts libvirtd")
	}
	d := e.driver(t, nil)
	defer d.Close()
	rec := make(chan hypervisor.Event, 1024)
	go func() {
		for ev := range d.Events() {
			select {
			case rec <- ev:
			default:
			}
		}
		close(rec)
	}()
	ctx := context.Background()
	spec := hypervisor.DomainSpec{Name: fmt.Sprintf("kumoi-qemu-reconn-%d", os.Getpid()), VMID: "reconn", Epoch: 9,
		CPUs: 1, MemoryMiB: 128, Boot: e.boot()}
	if err := d.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = d.Destroy(context.Background(), spec.Name)
		_ = d.Undefine(context.Background(), spec.Name)
	}()
	if err := d.Start(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", e.restart).CombinedOutput()
	if err != nil {
		t.Fatalf("restart libvirtd: %v\n%s", err, out)
	}
	deadline := time.After(60 * time.Second)
	for resync := false; !resync; {
		select {
		case ev, ok := <-rec:
			if !ok {
				t.Fatal("events closed")
			}
			resync = ev.Kind == hypervisor.EventResync
		case <-deadline:
			t.Fatal("no resync event after libvirtd restart")
		}
	}
	var in hypervisor.DomainInfo
	testcluster.WaitFor(t, 30*time.Second, "the domain to be readable after the reconnect", func() (bool, error) {
		in, err = d.Get(ctx, spec.Name)
		return err == nil, err
	})
	if err != nil || in.State != hypervisor.StateRunning || in.VMID != spec.VMID || in.Epoch != spec.Epoch {
		t.Fatalf("after reconnect: %+v, %v; want running, tagged", in, err)
	}
	// Events flow on the new connection. The old daemon may still accept
	// a connection while it shuts down: the driver then loses that one
	// too and says resync again, and an event in between may be lost
	// (that is what resync means). Then start and destroy once more.
	for attempt := 1; ; attempt++ {
		if err := d.Destroy(ctx, spec.Name); err != nil {
			t.Fatal(err)
		}
		var seen []string
		got := ""
		timeout := time.After(30 * time.Second)
		for got == "" {
			select {
			case ev := <-rec:
				seen = append(seen, fmt.Sprintf("%s %s %s", ev.Kind, ev.Domain, ev.Reason))
				switch {
				case ev.Domain == spec.Name && ev.Kind == hypervisor.EventStopped:
					got = "stopped"
				case ev.Kind == hypervisor.EventResync:
					got = "resync"
				}
			case <-timeout:
				t.Fatalf("no stopped event on the new connection within 30s after the destroy (attempt %d); events: %q", attempt, seen)
			}
		}
		if got == "stopped" {
			return
		}
		if attempt == 3 {
			t.Fatalf("resync instead of the stopped event %d times: the connection keeps being replaced; events: %q", attempt, seen)
		}
		t.Logf("a resync came instead of the stopped event (the connection was replaced again: %q); starting and destroying again", seen)
		if err := d.Start(ctx, spec.Name); err != nil {
			t.Fatal(err)
		}
	}
}
