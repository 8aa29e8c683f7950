package libvirtd

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDaemon: a daemon answers, holds a domain defined through it, and
// every call hangs while it is paused and succeeds once it resumes.
func TestDaemon(t *testing.T) {
	d := StartT(t)
	ctx := context.Background()
	xml := `<domain type="test"><name>probe</name><memory unit="MiB">64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>`
	f := d.Dir + "/probe.xml"
	if err := writeFile(f, xml); err != nil {
		t.Fatal(err)
	}
	if _, err := Virsh(ctx, d.URI, "create", f); err != nil {
		t.Fatal(err)
	}
	if st, err := d.DomState(ctx, "probe"); err != nil || st != "running" {
		t.Fatalf("probe: state %q, %v; want running", st, err)
	}
	if err := d.Pause(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err := d.Active(short)
	cancel()
	if err == nil {
		t.Fatal("a paused libvirtd answered")
	}
	if err := d.Resume(); err != nil {
		t.Fatal(err)
	}
	act, err := d.Active(ctx)
	if err != nil || !strings.Contains(strings.Join(act, " "), "probe") {
		t.Fatalf("after resume: active %v, %v; want probe", act, err)
	}
}

func writeFile(name, s string) error { return os.WriteFile(name, []byte(s), 0o600) }
