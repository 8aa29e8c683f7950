package resource_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/resource"
)

func TestBootPaths(t *testing.T) {
	for _, tc := range []struct {
		boot, err string
	}{
		{boot: `{"image":"debian.qcow2"}`},
		{boot: `{"image":"/var/lib/kumoi/images/debian.qcow2"}`},
		{boot: `{"kernel":"k/vmlinuz","initrd":"k/initrd.img"}`},
		{boot: `{"image":"../etc/shadow"}`, err: `spec.boot.image: must not hold a ".." component`},
		{boot: `{"image":"/var/lib/kumoi/images/../../../etc/shadow"}`, err: `".." component`},
		{boot: `{"kernel":"a\u0000b"}`, err: "spec.boot.kernel: has control character U+0000"},
		{boot: `{"kernel":"vmlinuz","initrd":"a\nb"}`, err: "spec.boot.initrd: has control character U+000A"},
		{boot: `{"image":"` + strings.Repeat("a", 5000) + `"}`, err: "the limit is 4096"},
	} {
		raw := json.RawMessage(`{"cpus":1,"memory_mib":1,"boot":` + tc.boot + `}`)
		_, err := resource.NormalizeRequestSpec(resource.KindVM, raw)
		// The state machine's check takes every path as text, as older
		// builds did for the entries they accepted.
		if _, ferr := resource.NormalizeSpec(resource.KindVM, raw); ferr != nil {
			t.Errorf("%.80s: NormalizeSpec (the state machine's) refused it: %v", tc.boot, ferr)
		}
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.boot, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%.80s: %v; want %q", tc.boot, err, tc.err)
		}
	}
	dir := "/var/lib/kumoi/images"
	for _, tc := range []struct {
		b           resource.Boot
		dir         string
		field, path string
	}{
		{b: resource.Boot{Image: "debian.qcow2"}, dir: dir},
		{b: resource.Boot{Image: dir + "/debian.qcow2"}, dir: dir},
		{b: resource.Boot{Image: dir + "/debian.qcow2"}, dir: dir + "/"},
		{b: resource.Boot{Kernel: dir + "/k", Initrd: "/etc/shadow"}, dir: dir, field: "initrd", path: "/etc/shadow"},
		{b: resource.Boot{Image: dir + "x/disk"}, dir: dir, field: "image", path: dir + "x/disk"},
		{b: resource.Boot{Image: "/etc/shadow"}, dir: ""},
		{b: resource.Boot{Image: "/etc/shadow"}, dir: "/"},
	} {
		f, p := resource.BootPathOutside(&tc.b, tc.dir)
		if f != tc.field || p != tc.path {
			t.Errorf("BootPathOutside(%+v, %q) = %q, %q; want %q, %q", tc.b, tc.dir, f, p, tc.field, tc.path)
		}
	}
}
