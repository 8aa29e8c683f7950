package qemu

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// EnvEnable must be "1" for the QEMU tests to run (make test-qemu sets
// it); without it they skip: they need root, QEMU and a running libvirtd.
const EnvEnable = "KUMOI_TEST_QEMU"

// Require skips the test unless KUMOI_TEST_QEMU=1.
func Require(tb testing.TB) {
	tb.Helper()
	if os.Getenv(EnvEnable) != "1" {
		tb.Skip("set KUMOI_TEST_QEMU=1 (make test-qemu, as root) to boot real guests under QEMU")
	}
}

// GuestUp is the line the guest's /init prints on its console once it is
// up.
const GuestUp = "KUMOI-GUEST-UP"

// GuestPoweroff is the line it prints when it heard the ACPI power button
// and powers off.
const GuestPoweroff = "KUMOI-GUEST-POWEROFF"

// guestInit is the initramfs's /init: busybox, a console line saying the
// guest is up, and a power-button watcher so that an ACPI shutdown request
// powers the guest off (a guest that ignored it would be destroyed after
// the shutdown's grace).
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m" || echo "KUMOI-GUEST: insmod $m failed"; done
for ev in /sys/class/input/event*; do echo "KUMOI-GUEST: input $ev: $(cat $ev/device/name)"; done
for ev in /sys/class/input/event*; do
  if [ "$(cat "$ev/device/name")" = "Power Button" ]; then
    (head -c 1 "/dev/input/$(basename "$ev")" >/dev/null; echo ` + GuestPoweroff + `; poweroff -f) &
  fi
done
sleep 1
echo ` + GuestUp + `
while true; do sleep 3600; done
`

// Guest is what a test guest boots: a Debian kernel and an initramfs of a
// static busybox, in a world-readable directory (QEMU runs as the
// libvirt-qemu user and reads them).
type Guest struct {
	Dir     string
	Kernel  string
	Initrd  string
	Cmdline string
}

// NewGuest builds a guest in a new directory, removed after the test
// unless KUMOI_TEST_QEMU_KEEP is set. The kernel is KUMOI_TEST_KERNEL,
// else the newest in KUMOI_TEST_KERNEL_ROOT/boot, /boot, or the one
// scripts/install-qemu-deps.sh unpacked; busybox is KUMOI_TEST_BUSYBOX or
// /bin/busybox, and must be static.
func NewGuest(tb testing.TB) *Guest {
	tb.Helper()
	kernel, modules := findKernel(tb)
	busybox := os.Getenv("KUMOI_TEST_BUSYBOX")
	if busybox == "" {
		busybox = "/bin/busybox"
	}
	if err := mustBeStatic(busybox); err != nil {
		tb.Fatalf("%v: install busybox-static (scripts/install-qemu-deps.sh)", err)
	}
	dir, err := os.MkdirTemp("", "kumoi-qemu-")
	if err != nil {
		tb.Fatal(err)
	}
	if os.Getenv("KUMOI_TEST_QEMU_KEEP") == "" {
		tb.Cleanup(func() { os.RemoveAll(dir) })
	} else {
		tb.Logf("keeping %s", dir)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	g := &Guest{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initramfs.cpio.gz"),
		Cmdline: "console=ttyS0 panic=-1 quiet"}
	if err := copyFile(kernel, g.Kernel); err != nil {
		tb.Fatal(err)
	}
	if err := buildInitramfs(g.Initrd, busybox, guestInit, modules, nil); err != nil {
		tb.Fatal(err)
	}
	return g
}

// findKernel returns a Debian kernel image and the modules (button, evdev)
// the guest needs for its power button.
func findKernel(tb testing.TB) (kernel string, modules []string) {
	tb.Helper()
	kernel, root, ver := findKernelRoot(tb)
	for _, m := range []string{"drivers/acpi/button.ko", "drivers/input/evdev.ko"} {
		p := filepath.Join(root, "lib/modules", ver, "kernel", m)
		if _, err := os.Stat(p); err == nil {
			modules = append(modules, p)
		}
	}
	return kernel, modules
}

// findKernelRoot returns a Debian kernel image, the root its modules are
// under (root/lib/modules/ver) and its version.
func findKernelRoot(tb testing.TB) (kernel, root, ver string) {
	tb.Helper()
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
		return kernel, root, strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	}
	tb.Fatal("no kernel image: install one (scripts/install-qemu-deps.sh unpacks linux-image-amd64) or set KUMOI_TEST_KERNEL")
	return "", "", ""
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
// busybox, the given kernel modules (in /modules, and their file names in
// that order in /modules/order), more files (path: content, executable)
// and /dev/console.
func buildInitramfs(out, busybox, init string, modules []string, files map[string]string) error {
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
	w.entry("init", syscall.S_IFREG|0o755, 0, 0, []byte(init))
	w.entry("bin/busybox", syscall.S_IFREG|0o755, 0, 0, bb)
	var order strings.Builder
	for _, m := range modules {
		b, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		w.entry("modules/"+filepath.Base(m), syscall.S_IFREG|0o644, 0, 0, b)
		fmt.Fprintln(&order, filepath.Base(m))
	}
	w.entry("modules/order", syscall.S_IFREG|0o644, 0, 0, []byte(order.String()))
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		w.entry(name, syscall.S_IFREG|0o755, 0, 0, []byte(files[name]))
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
