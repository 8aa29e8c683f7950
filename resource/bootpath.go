package resource

import (
	"path"
	"strings"
)

// Boot paths (spec.boot.image, kernel, initrd) are names in the image
// directory of the host the VM runs on (its worker's --image-dir) or
// absolute paths inside it, which only the host knows for sure: the
// worker resolves every path, symbolic links included, before it defines
// a domain. A request's paths are checked as text by
// VMSpec.ValidateRequest (length, characters, no ".." component); the
// state machine checks nothing of their text, so that every entry an
// older build accepted applies alike.

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
