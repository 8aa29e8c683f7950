package hypervisor_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kumoi/kumoi/hypervisor"
)

func TestImageDirResolve(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "images")
	must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	write(t, filepath.Join(dir, "disk.qcow2"))
	write(t, filepath.Join(dir, "sub", "vmlinuz"))
	write(t, filepath.Join(base, "secret"))
	must(t, os.Symlink(filepath.Join(base, "secret"), filepath.Join(dir, "out")))
	must(t, os.Symlink("sub/vmlinuz", filepath.Join(dir, "in")))
	must(t, os.Symlink("/etc", filepath.Join(dir, "etc")))
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	if l, err := net.Listen("unix", filepath.Join(dir, "sock")); err == nil {
		defer l.Close()
	}
	d, err := hypervisor.NewImageDir(dir)
	must(t, err)
	real, err := filepath.EvalSymlinks(dir)
	must(t, err)

	for _, tc := range []struct {
		p, want, err string
	}{
		{p: "disk.qcow2", want: filepath.Join(real, "disk.qcow2")},
		{p: "sub/vmlinuz", want: filepath.Join(real, "sub", "vmlinuz")},
		{p: "./sub//vmlinuz", want: filepath.Join(real, "sub", "vmlinuz")},
		{p: filepath.Join(dir, "disk.qcow2"), want: filepath.Join(real, "disk.qcow2")},
		{p: "in", want: filepath.Join(real, "sub", "vmlinuz")},
		{p: "/etc/shadow", err: `boot.image "/etc/shadow" is outside this host's image directory ` + dir + " (--image-dir)"},
		{p: dir + "x/disk.qcow2", err: "is outside this host's image directory"},
		{p: "../secret", err: `holds a ".." component`},
		{p: dir + "/sub/../disk.qcow2", err: `holds a ".." component`},
		{p: "out", err: "leads by a symbolic link to " + filepath.Join(base, "secret")},
		{p: "etc/passwd", err: "outside this host's image directory"},
		{p: "fifo", err: "is not a regular file (a FIFO)"},
		{p: "sub", err: "is not a regular file (a directory)"},
		{p: ".", err: "is not a regular file (a directory)"},
		{p: "missing.img", err: "does not exist in this host's image directory"},
		{p: "a\x00b", err: "NUL, control character"},
		{p: "a\nb", err: "NUL, control character"},
		{p: "bad\xffutf8", err: "invalid UTF-8"},
		{p: "", err: "is empty"},
		{p: strings.Repeat("a", 5000), err: "at most 4096"},
	} {
		got, err := d.Resolve("image", tc.p)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.p, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("%q resolved to %q, want %q", tc.p, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, hypervisor.ErrBootPath)):
			t.Errorf("%q: got %q, %v; want an error with %q", tc.p, got, err, tc.err)
		}
	}
	if _, err := d.Resolve("image", "sock"); err == nil || !strings.Contains(err.Error(), "a socket") {
		t.Errorf("socket: %v", err)
	}
	if _, err := os.Stat("/dev/null"); err == nil {
		dev, err := hypervisor.NewImageDir("/dev")
		must(t, err)
		if _, err := dev.Resolve("image", "null"); err == nil || !strings.Contains(err.Error(), "a character device") {
			t.Errorf("/dev/null: %v", err)
		}
	}
	b, err := d.ResolveBoot(hypervisor.Boot{Image: "disk.qcow2", Kernel: "sub/vmlinuz", Cmdline: "x"})
	must(t, err)
	if b.Image != filepath.Join(real, "disk.qcow2") || b.Kernel != filepath.Join(real, "sub", "vmlinuz") || b.Cmdline != "x" || b.Initrd != "" {
		t.Errorf("ResolveBoot: %+v", b)
	}
	if _, err := d.ResolveBoot(hypervisor.Boot{Kernel: "sub/vmlinuz", Initrd: "/etc/passwd"}); err == nil || !strings.Contains(err.Error(), "boot.initrd") {
		t.Errorf("ResolveBoot with a bad initrd: %v", err)
	}

	// A missing image directory refuses every path, and says so.
	none, err := hypervisor.NewImageDir(filepath.Join(base, "none"))
	must(t, err)
	if _, err := none.Resolve("kernel", "vmlinuz"); err == nil || !strings.Contains(err.Error(), "image directory") {
		t.Errorf("missing dir: %v", err)
	}
	if _, err := hypervisor.NewImageDir("images"); err == nil {
		t.Error("a relative --image-dir was accepted")
	}
	if d, err := hypervisor.NewImageDir(""); err != nil || d.Dir() != hypervisor.DefaultImageDir {
		t.Errorf("default: %v %v", d.Dir(), err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p string) {
	t.Helper()
	must(t, os.WriteFile(p, []byte("x"), 0o644))
}
