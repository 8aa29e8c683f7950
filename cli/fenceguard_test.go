package cli

import (
	"strings"
	"testing"
)

// TestFenceGuardUsage: the guard and a libvirt worker refuse what they
// cannot guard with, saying what to add; nothing starts.
func TestFenceGuardUsage(t *testing.T) {
	runCases(t, "http://127.0.0.1:1", []cliCase{
		{name: "no data dir", args: []string{"fence-guard", "--node-id", "hv1"}, code: 2, stderr: "--data-dir is required"},
		{name: "no node id", args: []string{"fence-guard", "--data-dir", t.TempDir()}, code: 2, stderr: "--node-id is required"},
		{name: "bad fence-after", args: []string{"fence-guard", "--data-dir", t.TempDir(), "--node-id", "hv1", "--fence-after", "0s"}, code: 2, stderr: "--fence-after must be positive"},
		{name: "arguments", args: []string{"fence-guard", "extra"}, code: 2, stderr: "takes no arguments"},
		{name: "libvirt worker without data dir", args: []string{"agent", "--worker", "--node-id", "hv1", "--hypervisor", "libvirt", "--libvirt-uri", "test+unix:///default?socket=/nonexistent"},
			code: 2, stderr: "--fence-guard spawn needs --data-dir"},
		{name: "bad guard mode", args: []string{"agent", "--worker", "--node-id", "hv1", "--hypervisor", "libvirt", "--fence-guard", "maybe", "--data-dir", t.TempDir()},
			code: 2, stderr: "--fence-guard \"maybe\""},
	})
}

// TestFenceGuardLongDir: a data directory too long for the guard's unix
// socket is refused, saying so.
func TestFenceGuardLongDir(t *testing.T) {
	long := t.TempDir() + "/" + strings.Repeat("d", 100)
	runCases(t, "http://127.0.0.1:1", []cliCase{
		{name: "guard", args: []string{"fence-guard", "--data-dir", long, "--node-id", "hv1", "--libvirt-uri", "test+unix:///default?socket=/nonexistent"}, code: 2, stderr: "use a shorter --data-dir"},
	})
}
