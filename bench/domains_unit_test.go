package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/libvirtd"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// startDomain starts a transient test-driver domain named name on d.
func startDomain(t *testing.T, d *libvirtd.Daemon, name string) {
	t.Helper()
	f := filepath.Join(d.Dir, name+".xml")
	xml := fmt.Sprintf(`<domain type="test"><name>%s</name><memory unit="MiB">64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>`, name)
	if err := os.WriteFile(f, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := libvirtd.Virsh(context.Background(), d.URI, "create", f); err != nil {
		t.Fatal(err)
	}
}

// TestDomainWatch: the benchmark's reader of the daemons sees a VM whose
// domain is active on two daemons as a double run (and one active on one
// daemon as none), and reports the victim fenced once its moved VMs'
// domains stop on its daemon, not before.
func TestDomainWatch(t *testing.T) {
	daemons := map[string]*libvirtd.Daemon{"a": libvirtd.StartT(t), "b": libvirtd.StartT(t)}
	// a is the "killed" host: x ran there and was restarted on b; y
	// runs on a only.
	startDomain(t, daemons["a"], domainName("x"))
	startDomain(t, daemons["b"], domainName("x"))
	startDomain(t, daemons["a"], domainName("y"))
	kill := time.Now()
	w := watchDomains(daemons, "a", []string{"x", "y"}, []string{"x", "y"}, kill)
	testcluster.WaitFor(t, 10*time.Second, "two sweeps to see x on both daemons", func() (bool, error) {
		select {
		case <-w.fencedCh:
			return false, fmt.Errorf("fenced while x and y still run on a")
		default:
		}
		return w.doubled.Load() >= 2, nil
	})
	for _, vm := range []string{"x", "y"} {
		if _, err := libvirtd.Virsh(context.Background(), daemons["a"].URI, "destroy", domainName(vm)); err != nil {
			t.Fatal(err)
		}
	}
	r := w.finish(time.Now().Add(10 * time.Second))
	if r.fenced == 0 {
		t.Fatalf("not fenced after the domains on a were destroyed (%d sweeps, %d read errors)", r.sweeps, r.readErrors)
	}
	if r.fenced < r.lastSeen {
		t.Errorf("fenced at %s, before the last sighting at %s", r.fenced, r.lastSeen)
	}
	if d := r.doubles["x"]; d == nil || len(r.doubles) != 1 || d.sweeps < 2 {
		t.Fatalf("doubles %s (%d), want x only", r.describeDoubles(), len(r.doubles))
	}
	t.Logf("fenced %s, last seen %s; %s; %d sweeps", r.fenced, r.lastSeen, r.describeDoubles(), r.sweeps)
}
