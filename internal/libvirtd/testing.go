package libvirtd

import (
	"context"
	"os"
	"testing"
)

// StartT starts a daemon for a test and stops it when the test ends
// (logging its output if the test failed). A missing libvirtd or virsh
// fails the test under CI (CI set) and skips it elsewhere.
func StartT(tb testing.TB) *Daemon {
	tb.Helper()
	if m := Missing(); m != "" {
		if os.Getenv("CI") != "" {
			tb.Fatal(m)
		}
		tb.Skip(m)
	}
	d, err := Start(context.Background(), "")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("libvirtd %s:\n%s", d.URI, d.Logs())
		}
		d.Close()
	})
	return d
}
