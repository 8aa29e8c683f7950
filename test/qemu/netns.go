package qemu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NetNS is a network namespace a test made (ip netns add) for the guest
// networks of a libvirtd it runs there: at first it holds only lo (up), no
// route and no link to the host's namespace, so a libvirt nat network
// inside has no uplink and forwards nowhere.
type NetNS struct {
	Name string
}

// ip runs ip(8) (10 s at most).
func ip(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// NewNetNS creates a namespace kumoi-q-<random> with lo up and checks it
// is isolated. It needs root.
func NewNetNS(ctx context.Context) (*NetNS, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	n := &NetNS{Name: "kumoi-q-" + hex.EncodeToString(b)}
	if _, err := ip(ctx, "netns", "add", n.Name); err != nil {
		return nil, err
	}
	if _, err := ip(ctx, "-n", n.Name, "link", "set", "lo", "up"); err != nil {
		return nil, errors.Join(err, n.Delete())
	}
	if err := n.CheckIsolated(ctx); err != nil {
		return nil, errors.Join(err, n.Delete())
	}
	return n, nil
}

// CheckIsolated checks that nothing in the namespace leads out of it: its
// links are only lo, bridges and tap devices (what libvirt makes for its
// networks and guests; never a veth, a physical or a macvlan device), and
// it has no default route.
func (n *NetNS) CheckIsolated(ctx context.Context) error {
	out, err := ip(ctx, "-n", n.Name, "-d", "-o", "link", "show")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		dev := strings.TrimSuffix(f[1], ":")
		switch {
		case dev == "lo":
		case strings.Contains(l, " bridge ") && !strings.Contains(l, " bridge_slave "),
			strings.Contains(l, " tun ") && strings.Contains(l, " bridge_slave "):
			// a libvirt network's bridge; a guest's tap on one
		default:
			return fmt.Errorf("netns %s has a link that may lead out of it: %s", n.Name, strings.TrimSpace(l))
		}
	}
	for _, fam := range []string{"-4", "-6"} {
		out, err := ip(ctx, "-n", n.Name, fam, "route", "show", "default")
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(out); s != "" {
			return fmt.Errorf("netns %s has a default route: %s", n.Name, s)
		}
	}
	return nil
}

// Pids lists the processes in the namespace.
func (n *NetNS) Pids(ctx context.Context) ([]int, error) {
	out, err := ip(ctx, "netns", "pids", n.Name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// Delete kills what still runs in the namespace (every process there was
// started by the test: its libvirtd and what that started) and deletes it.
func (n *NetNS) Delete() error {
	ctx := context.Background()
	var errs []error
	pids, err := n.Pids(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(pids) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if pids, err = n.Pids(ctx); err != nil {
			break
		}
	}
	if len(pids) > 0 {
		errs = append(errs, fmt.Errorf("processes %v still run in netns %s", pids, n.Name))
	}
	if _, err := ip(ctx, "netns", "delete", n.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// netDaemonQEMUConf is the qemu.conf of a daemon with networks and
// storage: like daemonQEMUConf, but libvirt gives QEMU (which runs as
// libvirt-qemu) the files of its disks, as the system's libvirtd does —
// Kumoi's volumes are created by the storage pool, root's and 0600. The
// owners are not remembered (no extended attributes on the files). QEMU
// gets no private /dev (which libvirt would build by copying the daemon's,
// and a /dev/kvm hidden by a bind mount cannot be copied).
const netDaemonQEMUConf = `# kumoi test/qemu: a libvirtd in a network namespace
stdio_handler = "file"
cgroup_controllers = [ ]
dynamic_ownership = 1
remember_owner = 0
security_driver = "none"
namespaces = [ ]
`

// EnvKVM set to "1" lets the daemons of StartNetDaemonT use KVM. By
// default they run their guests under TCG: these tests read what their
// guests print, and a KVM that does not work (nested KVM on some cloud
// machines: QEMU starts, the guest never prints a line) would only show as
// a timeout.
const EnvKVM = "KUMOI_TEST_QEMU_KVM"

// StartNetDaemonT starts, for a test, a second libvirtd with the QEMU,
// network and storage drivers inside a network namespace of its own
// (NewNetNS): its guest networks, their dnsmasq and firewall rules, and
// its QEMU guests live there, with no way out; clients reach it on its
// unix socket. At the test's end the daemon is closed and the namespace
// checked (still isolated) and deleted.
func StartNetDaemonT(tb testing.TB) *Daemon {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := NewNetNS(ctx)
	if err != nil {
		tb.Fatalf("network namespace: %v", err)
	}
	d, err := StartDaemonWith(ctx, "", DaemonOptions{NetNS: ns.Name, Drivers: []string{"network", "storage"},
		QEMUConf: netDaemonQEMUConf, NoKVM: os.Getenv(EnvKVM) != "1"})
	if err != nil {
		if derr := ns.Delete(); derr != nil {
			tb.Errorf("netns %s: %v", ns.Name, derr)
		}
		tb.Fatalf("libvirtd in netns %s: %v", ns.Name, err)
	}
	tb.Logf("libvirtd %d in netns %s: %s", d.Pid(), ns.Name, d.URI)
	tb.Cleanup(func() {
		if err := ns.CheckIsolated(context.Background()); err != nil {
			tb.Error(err)
		}
		if tb.Failed() {
			tb.Logf("libvirtd's logs:\n%s", tail(d.Logs(), 6000))
		}
		if err := d.Close(); err != nil {
			tb.Errorf("libvirtd in netns %s: %v", ns.Name, err)
		}
		if err := ns.Delete(); err != nil {
			tb.Errorf("netns %s: %v", ns.Name, err)
		}
	})
	return d
}
