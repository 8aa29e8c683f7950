package qemu

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Console lines of the heartbeat guest (NewHeartbeatGuest), which the
// live-migration test follows from one host to the other.
const (
	// GuestBoot: printed once per boot with a random boot id; a second
	// one would be a reboot.
	GuestBoot = "KUMOI-GUEST-BOOT"
	// GuestBeat: "KUMOI-BEAT <n>", n counting up from 1, every ~200 ms.
	GuestBeat = "KUMOI-BEAT"
	// GuestDiskMark: the guest wrote "KUMOI-DISK-MARK <boot id>" at the
	// start of its first virtio disk (raw, no filesystem) and synced.
	GuestDiskMark = "KUMOI-GUEST-DISK"
	// DiskMarkPrefix starts what the guest writes on its disk.
	DiskMarkPrefix = "KUMOI-DISK-MARK"
)

// heartbeatGuestInit is the /init of the heartbeat guest: the virtio
// modules, a boot id, a mark on its first virtio disk if it has one, then
// a counter on the console every 200 ms for ever.
const heartbeatGuestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod "/modules/$m" || echo "KUMOI-GUEST: insmod $m failed"; done
boot="$(cat /proc/sys/kernel/random/uuid)"
echo ` + GuestBoot + ` "$boot"
for i in $(seq 1 30); do [ -b /dev/vda ] && break; sleep 0.1; done
if [ -b /dev/vda ]; then
  if echo "` + DiskMarkPrefix + ` $boot" | dd of=/dev/vda conv=fsync 2>/dev/null; then echo ` + GuestDiskMark + ` "$boot"; fi
fi
echo ` + GuestUp + `
i=0
while true; do i=$((i+1)); echo "` + GuestBeat + ` $i"; usleep 200000; done
`

// NewHeartbeatGuest builds the heartbeat guest (like NewGuest, with
// heartbeatGuestInit and the virtio disk modules).
func NewHeartbeatGuest(tb testing.TB) *Guest {
	tb.Helper()
	kernel, root, ver := findKernelRoot(tb)
	modules, err := moduleClosure(filepath.Join(root, "lib/modules", ver), []string{"virtio_pci", "virtio_blk"})
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
	g := &Guest{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initramfs-beat.cpio.gz"),
		Cmdline: "console=ttyS0 panic=-1 quiet"}
	if err := copyFile(kernel, g.Kernel); err != nil {
		tb.Fatal(err)
	}
	if err := buildInitramfs(g.Initrd, busybox, heartbeatGuestInit, modules, nil); err != nil {
		tb.Fatal(err)
	}
	return g
}

var beatLine = regexp.MustCompile(`(?m)^` + GuestBeat + ` ([0-9]+)\r?$`)

// Beats are the heartbeat counters in a console's text, in order (whole
// lines only: a line cut by a migration's switch-over is left out).
func Beats(console string) []int {
	console = console[:strings.LastIndexByte(console, '\n')+1] // no unfinished line
	var out []int
	for _, m := range beatLine.FindAllStringSubmatch(console, -1) {
		if n, err := strconv.Atoi(m[1]); err == nil {
			out = append(out, n)
		}
	}
	return out
}
