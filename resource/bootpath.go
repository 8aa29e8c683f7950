package resource

import (
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxBootPathBytes bounds spec.boot.image, kernel and initrd (PATH_MAX).
const MaxBootPathBytes = 4096

// checkBootPath checks a boot path as text (field: "image", "kernel",
// "initrd"). A relative name is looked up in the image directory of the
// host the VM runs on (its worker's --image-dir); an absolute path must
// lie inside that directory, which only the host knows for sure (the
// worker resolves every path, symbolic links included, before it defines
// a domain). Here: at most MaxBootPathBytes of valid UTF-8, no NUL or
// control characters, no ".." component.
func checkBootPath(field, p string) error {
	f := "spec.boot." + field
	switch {
	case len(p) > MaxBootPathBytes:
		return Errorf(f, "is %d bytes long; at most %d", len(p), MaxBootPathBytes)
	case !utf8.ValidString(p):
		return Errorf(f, "is not valid UTF-8")
	case strings.ContainsFunc(p, unicode.IsControl):
		return Errorf(f, "holds a NUL or control character (%q)", p)
	case hasDotDot(p):
		return Errorf(f, `must not hold a ".." component (got %q): give a name in the hosts' image directory (--image-dir), e.g. "debian.qcow2"`, p)
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

// BootPathOutside returns the first absolute boot path of b that does not
// lie inside imageDir (a host's status.image_dir), and the field that
// holds it ("image", "kernel", "initrd"); "" when there is none. Relative
// names are inside by definition; an empty imageDir (a worker that does
// not publish one) knows nothing to refuse.
func BootPathOutside(b *Boot, imageDir string) (field, p string) {
	if b == nil || imageDir == "" {
		return "", ""
	}
	dir := path.Clean(imageDir)
	for _, fp := range [][2]string{{"image", b.Image}, {"kernel", b.Kernel}, {"initrd", b.Initrd}} {
		if !strings.HasPrefix(fp[1], "/") {
			continue
		}
		c := path.Clean(fp[1])
		if dir != "/" && c != dir && !strings.HasPrefix(c, dir+"/") {
			return fp[0], fp[1]
		}
	}
	return "", ""
}
