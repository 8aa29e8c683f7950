//go:build libvirt_dlopen

package libvirt

// The opt-in QEMU test (make test-qemu, KUMOI_TEST_QEMU=1): the
// conformance suite and a real boot on qemu:///system under TCG, with a
// kernel and an initramfs built here from Debian packages
// (scripts/install-qemu-deps.sh installs them and starts libvirtd).

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/conformance"
	"github.com/kumoi/kumoi/internal/testcluster"
)

const guestUp = "KUMOI-GUEST-UP"

// guestInit is the initramfs's /init: busybox, a console line saying the
// guest is up, and a power-button watcher so that an ACPI shutdown request
// powers the guest off (a guest that ignored it would be destroyed after
// Shutdown's grace).
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m" || echo "KUMOI-GUEST: insmod $m failed"; done
for ev in /sys/class/input/event*; do echo "KUMOI-GUEST: input $ev: $(cat $ev/device/name)"; done
for ev in /sys/class/input/event*; do
  if [ "$(cat "$ev/device/name")" = "Power Button" ]; then
    (head -c 1 "/dev/input/$(basename "$ev")" >/dev/null; echo KUMOI-GUEST-POWEROFF; poweroff -f) &
  fi
done
sleep 1
echo ` + guestUp + `
while true; do sleep 3600; done
`

type qemuEnv struct {
	dir     string // world-readable: the qemu user reads the kernel and initrd
	kernel  string
	initrd  string
	uri     string
	logDir  string
	restart string // command that restarts libvirtd, if given
}

func setupQEMU(t *testing.T) *qemuEnv {
	t.Helper()
	if os.Getenv("KUMOI_TEST_QEMU") != "1" {
		t.Skip("set KUMOI_TEST_QEMU=1 (make test-qemu) to boot real guests on qemu:///system")
	}
	kernel, modules := findKernel(t)
	busybox := os.Getenv("KUMOI_TEST_BUSYBOX")
	if busybox == "" {
		busybox = "/bin/busybox"
	}
	if err := mustBeStatic(busybox); err != nil {
		t.Fatalf("%v: install busybox-static (scripts/install-qemu-deps.sh)", err)
	}
	dir, err := os.MkdirTemp("", "kumoi-qemu-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("KUMOI_TEST_QEMU_KEEP") == "" {
		t.Cleanup(func() { os.RemoveAll(dir) })
	} else {
		t.Logf("keeping %s", dir)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &qemuEnv{dir: dir, uri: os.Getenv("KUMOI_TEST_QEMU_URI"), logDir: filepath.Join(dir, "console"),
		restart: os.Getenv("KUMOI_TEST_QEMU_RESTART_LIBVIRTD")}
	if e.uri == "" {
		e.uri = "qemu:///system"
	}
	if err := os.Mkdir(e.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.kernel = filepath.Join(dir, "vmlinuz")
	if err := copyFile(kernel, e.kernel); err != nil {
		t.Fatal(err)
	}
	e.initrd = filepath.Join(dir, "initramfs.cpio.gz")
	if err := buildInitramfs(e.initrd, busybox, modules); err != nil {
		t.Fatal(err)
	}
	return e
}

// findKernel returns a Debian kernel image and the modules (button, evdev)
// the guest needs for its power button: KUMOI_TEST_KERNEL, else the newest
// in /boot, else one unpacked by scripts/install-qemu-deps.sh.
func findKernel(t *testing.T) (kernel string, modules []string) {
	t.Helper()
	roots := []string{"/"}
	if d := os.Getenv("KUMOI_TEST_KERNEL_ROOT"); d != "" {
		roots = append([]string{d}, roots...)
	}
	roots = append(roots, "/var/lib/kumoi-test-qemu/kernel")
	for _, root := range roots {
		ks, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
		if k := os.Getenv("KUMOI_TEST_KERNEL"); k != "" {
			ks = []string{k}
		}
		if len(ks) == 0 {
			continue
		}
		sort.Strings(ks)
		kernel = ks[len(ks)-1]
		ver := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
		for _, m := range []string{"drivers/acpi/button.ko", "drivers/input/evdev.ko"} {
			p := filepath.Join(root, "lib/modules", ver, "kernel", m)
			if _, err := os.Stat(p); err == nil {
				modules = append(modules, p)
			}
		}
		return kernel, modules
	}
	t.Fatal("no kernel image: install one (scripts/install-qemu-deps.sh unpacks linux-image-amd64) or set KUMOI_TEST_KERNEL")
	return "", nil
}

func mustBeStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("busybox %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox %s is dynamically linked", path)
		}
	}
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// buildInitramfs writes a gzipped newc cpio archive: /init, a static
// busybox, the given kernel modules and /dev/console.
func buildInitramfs(out, busybox string, modules []string) error {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	var cpio bytes.Buffer
	w := &cpioWriter{w: &cpio, ino: 1}
	for _, d := range []string{"bin", "dev", "proc", "sys", "modules", "sbin", "usr", "usr/bin", "usr/sbin", "tmp"} {
		w.entry(d, syscall.S_IFDIR|0o755, 0, 0, nil)
	}
	w.entry("dev/console", syscall.S_IFCHR|0o600, 5, 1, nil)
	w.entry("init", syscall.S_IFREG|0o755, 0, 0, []byte(guestInit))
	w.entry("bin/busybox", syscall.S_IFREG|0o755, 0, 0, bb)
	for _, m := range modules {
		b, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		w.entry("modules/"+filepath.Base(m), syscall.S_IFREG|0o644, 0, 0, b)
	}
	w.entry("TRAILER!!!", 0, 0, 0, nil)

	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	if _, err := zw.Write(cpio.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type cpioWriter struct {
	w   *bytes.Buffer
	ino int
}

func (c *cpioWriter) entry(name string, mode uint32, rdevMajor, rdevMinor int, data []byte) {
	c.ino++
	fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.w.WriteString(name)
	c.w.WriteByte(0)
	c.pad()
	c.w.Write(data)
	c.pad()
}

func (c *cpioWriter) pad() {
	for c.w.Len()%4 != 0 {
		c.w.WriteByte(0)
	}
}

func (e *qemuEnv) driver(t *testing.T, buf *syncBuffer) *Driver {
	t.Helper()
	opts := Options{
		URI: e.uri, DomainType: "qemu", // TCG: no KVM needed
		ConsoleLogDir: e.logDir, Host: "qemu-" + t.Name(),
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: time.Second,
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
	return hypervisor.Boot{Kernel: e.kernel, Initrd: e.initrd, Cmdline: "console=ttyS0 panic=-1 quiet"}
}

// qemuPID reads the pid libvirt recorded for a running QEMU domain.
func qemuPID(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join("/run/libvirt/qemu", name+".pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func TestQEMUConformance(t *testing.T) {
	e := setupQEMU(t)
	h := testHooks()
	h.Crash = func(t *testing.T, d hypervisor.Driver, name string) {
		pid, err := qemuPID(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	h.GuestReady = func(t *testing.T, d hypervisor.Driver, name string) {
		e.waitConsole(t, name, guestUp, 2*time.Minute)
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
	e.waitConsole(t, spec.Name, guestUp, 2*time.Minute)
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
	e.waitConsole(t, spec.Name, "KUMOI-GUEST-POWEROFF", 10*time.Second)
}

// TestQEMUMissingImage: starting a domain whose disk image does not exist
// fails with libvirt's error (the worker reports it as the VM's reason).
func TestQEMUMissingImage(t *testing.T) {
	e := setupQEMU(t)
	d := e.driver(t, nil)
	defer d.Close()
	ctx := context.Background()
	spec := hypervisor.DomainSpec{Name: fmt.Sprintf("kumoi-qemu-noimg-%d", os.Getpid()), VMID: "noimg", Epoch: 1,
		CPUs: 1, MemoryMiB: 64, Boot: hypervisor.Boot{Image: filepath.Join(e.dir, "missing.qcow2")}}
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
	// Events flow on the new connection.
	if err := d.Destroy(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev := <-rec:
			if ev.Domain == spec.Name && ev.Kind == hypervisor.EventStopped {
				return
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no stopped event on the new connection")
		}
	}
}
