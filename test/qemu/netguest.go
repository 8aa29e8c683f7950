package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// Console lines of the network-and-disk guest (NewNetGuest). It prints
// each once when it happens, then all of them again every 2 s while it
// idles, so that a reader that comes late still sees them.
const (
	// GuestIP: the address udhcpc got on eth0.
	GuestIP = "KUMOI-GUEST-IP"
	// GuestImage: the content of the file kumoi-image on /dev/vda's
	// filesystem (BuildDiskImage put it there).
	GuestImage = "KUMOI-GUEST-IMAGE"
	// GuestWrote: there was no file kumoi-marker on /dev/vda's
	// filesystem; the guest wrote one with this (random) value and synced.
	GuestWrote = "KUMOI-GUEST-WROTE"
	// GuestMarker: the value of the kumoi-marker a previous boot wrote.
	GuestMarker = "KUMOI-GUEST-MARKER"
	// GuestError: something failed (no DHCP lease, no disk, ...).
	GuestError = "KUMOI-GUEST-ERROR"
)

// netGuestInit is the /init of the network-and-disk guest: the modules in
// /modules/order, the power-button watcher of guestInit, a DHCP lease on
// eth0 (busybox udhcpc), then /dev/vda's ext2 filesystem: it reads
// kumoi-image and the marker a previous boot left, or writes one.
const netGuestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod "/modules/$m" || echo "KUMOI-GUEST: insmod $m failed"; done
for ev in /sys/class/input/event*; do
  if [ "$(cat "$ev/device/name")" = "Power Button" ]; then
    (head -c 1 "/dev/input/$(basename "$ev")" >/dev/null; echo ` + GuestPoweroff + `; poweroff -f) &
  fi
done
say() { echo "$*"; echo "$*" >>/tmp/status; }
ok=
for i in 1 2 3 4 5 6; do
  if udhcpc -i eth0 -n -q -t 4 -T 2 -s /bin/kumoi-dhcp; then ok=1; break; fi
done
[ -n "$ok" ] || say ` + GuestError + ` no DHCP lease on eth0
for i in $(seq 1 100); do [ -b /dev/vda ] && break; sleep 0.1; done
mkdir -p /mnt
if mount -t ext2 /dev/vda /mnt; then
  say ` + GuestImage + ` "$(cat /mnt/kumoi-image)"
  if [ -f /mnt/kumoi-marker ]; then
    say ` + GuestMarker + ` "$(cat /mnt/kumoi-marker)"
  else
    v="$(cat /proc/sys/kernel/random/uuid)"
    if echo "$v" >/mnt/kumoi-marker && sync; then say ` + GuestWrote + ` "$v"; else say ` + GuestError + ` cannot write the marker; fi
  fi
  umount /mnt || say ` + GuestError + ` cannot unmount /dev/vda
  sync
else
  say ` + GuestError + ` cannot mount /dev/vda
fi
echo ` + GuestUp + `
while true; do cat /tmp/status; sleep 2; done
`

// netGuestDHCPScript is udhcpc's script: on a lease it configures eth0
// and says the address.
const netGuestDHCPScript = `#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
  ip addr flush dev "$interface"
  ip addr add "$ip/${mask:-24}" dev "$interface"
  echo "` + GuestIP + ` $ip"; echo "` + GuestIP + ` $ip" >>/tmp/status ;;
esac
exit 0
`

// netGuestModules are the modules the guest loads (with what they depend
// on, unless built in): its power button, virtio PCI devices, the network
// card, the disk and the ext2 filesystem (the ext4 driver).
var netGuestModules = []string{"button", "evdev", "virtio_pci", "virtio_net", "virtio_blk", "crc32c_generic", "ext4"}

// NewNetGuest builds the network-and-disk guest (like NewGuest, with
// netGuestInit and its modules).
func NewNetGuest(tb testing.TB) *Guest {
	tb.Helper()
	kernel, root, ver := findKernelRoot(tb)
	modules, err := moduleClosure(filepath.Join(root, "lib/modules", ver), netGuestModules)
	if err != nil {
		tb.Fatalf("kernel %s: %v", kernel, err)
	}
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
	g := &Guest{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initramfs-net.cpio.gz"),
		Cmdline: "console=ttyS0 panic=-1 quiet"}
	if err := copyFile(kernel, g.Kernel); err != nil {
		tb.Fatal(err)
	}
	if err := buildInitramfs(g.Initrd, busybox, netGuestInit, modules, map[string]string{"bin/kumoi-dhcp": netGuestDHCPScript}); err != nil {
		tb.Fatal(err)
	}
	return g
}

// moduleClosure returns the files of the named modules under modDir
// (lib/modules/VERSION) and of the modules they depend on, each after its
// dependencies; built-in ones (modules.builtin) are left out. The
// dependencies are read from each module's .modinfo section, so that an
// unpacked kernel package (no depmod run, no modules.dep) does.
func moduleClosure(modDir string, names []string) ([]string, error) {
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[modName(l)] = true
		}
	}
	files := map[string]string{}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			files[modName(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []string
	done := map[string]bool{}
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if done[name] || builtin[name] {
			return nil
		}
		for _, p := range path {
			if p == name {
				return fmt.Errorf("module dependency cycle: %s", strings.Join(append(path, name), " -> "))
			}
		}
		f, ok := files[name]
		if !ok {
			return fmt.Errorf("module %s: neither in %s/kernel (uncompressed) nor built in", name, modDir)
		}
		deps, err := moduleDeps(f)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		done[name] = true
		out = append(out, f)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// modName is a module's name from its path: "kernel/net/core/failover.ko"
// -> "failover" (dashes are underscores).
func modName(p string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")
}

// moduleDeps reads the depends= entry of a module's .modinfo.
func moduleDeps(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", file, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section", file)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", file, err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// DiskImage is an image a test built for the guest's disk: an ext2
// filesystem holding the file kumoi-image (whose content is Token), as a
// file in a directory.
type DiskImage struct {
	Path   string
	Format string // "qcow2"
	SHA256 string
	Size   int64 // bytes of the file
	Token  string
}

// BuildDiskImage writes dir/name: a 64 MiB ext2 filesystem (mke2fs -d)
// holding kumoi-image = token, converted to qcow2 (qemu-img), readable by
// all (QEMU reads it as libvirt-qemu).
func BuildDiskImage(ctx context.Context, dir, name, token string) (*DiskImage, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp("", "kumoi-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	content := filepath.Join(tmp, "content")
	if err := os.Mkdir(content, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(content, "kumoi-image"), []byte(token+"\n"), 0o644); err != nil {
		return nil, err
	}
	raw := filepath.Join(tmp, "disk.raw")
	out := filepath.Join(dir, name)
	for _, c := range [][]string{
		{"mke2fs", "-q", "-F", "-t", "ext2", "-L", "kumoi", "-d", content, raw, "64M"},
		{"qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out},
	} {
		if b, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v: %s (scripts/install-qemu-deps.sh installs e2fsprogs and qemu-utils)", strings.Join(c, " "), err, bytes.TrimSpace(b))
		}
	}
	if err := os.Chmod(out, 0o644); err != nil {
		return nil, err
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, err
	}
	return &DiskImage{Path: out, Format: "qcow2", SHA256: hex.EncodeToString(h.Sum(nil)), Size: n, Token: token}, nil
}

// Console reads a running domain's serial console: the pty libvirt gives
// it (virsh ttyconsole), opened in raw mode (no echo back into the guest).
// QEMU drops what the guest writes while nobody has the pty open: the
// net guest repeats its lines for that reason.
type Console struct {
	dom  string
	f    *os.File
	mu   sync.Mutex
	text strings.Builder
	done chan struct{}
}

// OpenConsole opens domain dom's serial console on h and reads it in the
// background until Close.
func OpenConsole(ctx context.Context, h Host, dom string) (*Console, error) {
	out, err := Virsh(ctx, h.URI, "ttyconsole", dom)
	if err != nil {
		return nil, err
	}
	pty := strings.TrimSpace(out)
	if !strings.HasPrefix(pty, "/dev/pts/") {
		return nil, fmt.Errorf("domain %s: console %q is not a pty", dom, pty)
	}
	f, err := os.OpenFile(pty, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("domain %s: console: %w", dom, err)
	}
	if err := makeRaw(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("domain %s: console %s: %w", dom, pty, err)
	}
	c := &Console{dom: dom, f: f, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				c.mu.Lock()
				c.text.Write(buf[:n])
				c.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	return c, nil
}

// makeRaw puts a terminal in raw mode (cfmakeraw).
func makeRaw(f *os.File) error {
	var t syscall.Termios
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t))); e != 0 {
		return fmt.Errorf("TCGETS: %w", e)
	}
	t.Iflag &^= syscall.IGNBRK | syscall.BRKINT | syscall.PARMRK | syscall.ISTRIP | syscall.INLCR | syscall.IGNCR | syscall.ICRNL | syscall.IXON
	t.Oflag &^= syscall.OPOST
	t.Lflag &^= syscall.ECHO | syscall.ECHONL | syscall.ICANON | syscall.ISIG | syscall.IEXTEN
	t.Cflag &^= syscall.CSIZE | syscall.PARENB
	t.Cflag |= syscall.CS8
	t.Cc[syscall.VMIN], t.Cc[syscall.VTIME] = 1, 0
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCSETS, uintptr(unsafe.Pointer(&t))); e != 0 {
		return fmt.Errorf("TCSETS: %w", e)
	}
	return nil
}

// Text is what the console showed so far.
func (c *Console) Text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.text.String()
}

// Close stops reading.
func (c *Console) Close() {
	c.f.Close()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
}

var guestLine = regexp.MustCompile(`(KUMOI-GUEST-[A-Z]+)[ \t]+([^\r\n]*)`)

// Lines returns, for each KUMOI-GUEST-* tag the console showed with a
// value, the distinct values in the order seen.
func (c *Console) Lines() map[string][]string {
	m := map[string][]string{}
	for _, l := range guestLine.FindAllStringSubmatch(c.Text(), -1) {
		v := strings.TrimSpace(l[2])
		seen := false
		for _, x := range m[l[1]] {
			seen = seen || x == v
		}
		if !seen {
			m[l[1]] = append(m[l[1]], v)
		}
	}
	return m
}

// WaitLines waits until the console showed every one of tags (with a
// value), or an error line, for at most timeout, and returns Lines.
func (c *Console) WaitLines(tb testing.TB, timeout time.Duration, tags ...string) map[string][]string {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := c.Lines()
		if e := m[GuestError]; len(e) > 0 {
			tb.Fatalf("domain %s: the guest says: %s\nconsole:\n%s", c.dom, strings.Join(e, "; "), tail(c.Text(), 4000))
		}
		all := true
		for _, t := range tags {
			all = all && len(m[t]) > 0
		}
		if all {
			return m
		}
		if time.Now().After(deadline) {
			tb.Fatalf("domain %s: no %s on the console within %v; it showed:\n%s", c.dom, strings.Join(tags, ", "), timeout, tail(c.Text(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
