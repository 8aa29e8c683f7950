package hypervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// DefaultImageDir is where a worker's boot files (disk images, kernels,
// initrds) live unless --image-dir says otherwise.
const DefaultImageDir = "/var/lib/kumoi/images"

// ErrBootPath: a boot path names something the worker does not boot: a
// file outside its image directory (directly, by "..", or through a
// symbolic link), a device, FIFO, socket or directory, or nothing at all.
var ErrBootPath = errors.New("boot path refused")

// ImageDir is the one directory a worker boots files from. Boot paths in
// VM specs are not trusted: a relative name is looked up in the directory,
// an absolute path must lie inside it, and either must end, after every
// symbolic link is followed, at a regular file inside it.
type ImageDir struct {
	dir string // as configured, cleaned (absolute)
}

// NewImageDir returns the image directory dir (absolute; "" is
// DefaultImageDir). The directory need not exist yet: boot paths are
// resolved when a domain is defined.
func NewImageDir(dir string) (ImageDir, error) {
	if dir == "" {
		dir = DefaultImageDir
	}
	if !filepath.IsAbs(dir) {
		return ImageDir{}, fmt.Errorf("--image-dir %q must be an absolute path", dir)
	}
	if err := CheckBootPathSyntax(dir); err != nil {
		return ImageDir{}, fmt.Errorf("--image-dir %q: %w", dir, err)
	}
	return ImageDir{dir: filepath.Clean(dir)}, nil
}

// Dir returns the directory as configured (cleaned).
func (d ImageDir) Dir() string { return d.dir }

// MaxBootPathBytes bounds a boot path (PATH_MAX).
const MaxBootPathBytes = 4096

// CheckBootPathSyntax checks a boot path as text: not empty, at most
// MaxBootPathBytes, valid UTF-8 without NUL or control characters, and
// without ".." components. It touches no file.
func CheckBootPathSyntax(p string) error {
	switch {
	case p == "":
		return errors.New("is empty")
	case len(p) > MaxBootPathBytes:
		return fmt.Errorf("is %d bytes long; at most %d", len(p), MaxBootPathBytes)
	case strings.ContainsFunc(p, func(r rune) bool { return r == unicode.ReplacementChar || unicode.IsControl(r) }):
		return errors.New("holds a NUL, control character or invalid UTF-8")
	case hasDotDot(p):
		return errors.New(`holds a ".." component`)
	}
	return nil
}

func hasDotDot(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return true
		}
	}
	return false
}

// Resolve returns the real path of the boot file p (field names it in
// errors: "image", "kernel", "initrd"): p relative is looked up in the
// directory, p absolute must lie inside it; after following symbolic
// links it must still lie inside the directory (itself resolved) and be a
// regular file. Errors wrap ErrBootPath and say what is wrong.
func (d ImageDir) Resolve(field, p string) (string, error) {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: boot.%s %q %s", ErrBootPath, field, p, fmt.Sprintf(format, args...))
	}
	outside := func() error {
		return refuse("is outside this host's image directory %s (--image-dir)", d.dir)
	}
	if err := CheckBootPathSyntax(p); err != nil {
		return "", refuse("%v", err)
	}
	full := p
	if !filepath.IsAbs(p) {
		full = filepath.Join(d.dir, p)
	}
	full = filepath.Clean(full)
	if !within(full, d.dir) {
		return "", outside()
	}
	root, err := filepath.EvalSymlinks(d.dir)
	if err != nil {
		return "", refuse("cannot be read: this host's image directory %s (--image-dir): %v", d.dir, pathErr(err))
	}
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", refuse("does not exist in this host's image directory %s (--image-dir)", d.dir)
		}
		return "", refuse("cannot be read: %v", pathErr(err))
	}
	if !within(real, root) {
		return "", refuse("leads by a symbolic link to %s, outside this host's image directory %s (--image-dir)", real, d.dir)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", refuse("cannot be read: %v", pathErr(err))
	}
	if !fi.Mode().IsRegular() {
		return "", refuse("is not a regular file (%s)", fileKind(fi.Mode()))
	}
	return real, nil
}

// ResolveBoot resolves every path of b (Resolve) and returns b with the
// real paths.
func (d ImageDir) ResolveBoot(b Boot) (Boot, error) {
	for _, f := range []struct {
		name string
		p    *string
	}{{"image", &b.Image}, {"kernel", &b.Kernel}, {"initrd", &b.Initrd}} {
		if *f.p == "" {
			continue
		}
		real, err := d.Resolve(f.name, *f.p)
		if err != nil {
			return Boot{}, err
		}
		*f.p = real
	}
	return b, nil
}

// within reports whether the clean absolute path p is dir or inside it.
func within(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// pathErr is err without the path a *fs.PathError repeats.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return m.Type().String()
}
