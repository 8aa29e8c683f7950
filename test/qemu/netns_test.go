package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// guestBootWithin bounds a TCG boot of the net guest up to its lines
// (kernel, modules, a DHCP exchange, the disk).
const guestBootWithin = 2 * time.Minute

// TestQEMUNetNSDaemon checks the ground the network-and-storage test
// stands on, without Kumoi: a libvirtd in a network namespace of the
// test's own runs a libvirt nat network (with a DHCP host entry and no
// dynamic range, as Kumoi defines them) and a directory pool; a guest
// booted from a qcow2 overlay on the test's image, with a NIC on that
// network, gets the entry's address over DHCP (udhcpc), sees the image's
// file and writes its marker, which it finds again after an ACPI shutdown
// and a start. The namespace has no way out throughout.
func TestQEMUNetNSDaemon(t *testing.T) {
	Require(t)
	ctx := context.Background()
	g := NewNetGuest(t)
	img, err := BuildDiskImage(ctx, g.Dir, "probe.qcow2", "probe-"+suffix(t))
	if err != nil {
		t.Fatal(err)
	}
	d := StartNetDaemonT(t)
	virsh := func(args ...string) string {
		t.Helper()
		out, err := Virsh(ctx, d.URI, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, tail(d.Logs(), 3000))
		}
		return out
	}
	define := func(kind, name, xml string) {
		t.Helper()
		p := filepath.Join(g.Dir, name+".xml")
		if err := os.WriteFile(p, []byte(xml), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := "define"
		if kind != "" {
			cmd = kind + "-define"
		}
		virsh(cmd, p)
	}

	poolDir := filepath.Join(g.Dir, "pool")
	if err := os.Mkdir(poolDir, 0o755); err != nil {
		t.Fatal(err)
	}
	define("pool", "probe-pool", fmt.Sprintf(`<pool type='dir'><name>probe</name><target><path>%s</path></target></pool>`, poolDir))
	virsh("pool-start", "probe")
	volXML := filepath.Join(g.Dir, "probe-vol.xml")
	if err := os.WriteFile(volXML, []byte(fmt.Sprintf(`<volume><name>disk0.qcow2</name><capacity unit='MiB'>256</capacity>
<target><format type='qcow2'/></target><backingStore><path>%s</path><format type='%s'/></backingStore></volume>`, img.Path, img.Format)), 0o644); err != nil {
		t.Fatal(err)
	}
	virsh("vol-create", "probe", volXML)
	vol := filepath.Join(poolDir, "disk0.qcow2")

	const mac, addr = "52:54:00:4b:00:32", "10.77.0.50"
	define("net", "probe-net", fmt.Sprintf(`<network><name>kumoi-probe</name><forward mode='nat'/>
<bridge name='kb-probe' stp='off'/>
<ip address='10.77.0.1' netmask='255.255.255.0'><dhcp><host mac='%s' ip='%s'/></dhcp></ip></network>`, mac, addr))
	virsh("net-start", "kumoi-probe")
	ns := &NetNS{Name: d.NetNS}
	if err := ns.CheckIsolated(ctx); err != nil {
		t.Fatal(err)
	}

	// TCG unless KVM is asked for; then the daemon offers no KVM either,
	// so Kumoi's driver (which prefers kvm) picks TCG too.
	domType := "qemu"
	if os.Getenv(EnvKVM) == "1" {
		domType = "kvm"
	} else if caps := virsh("capabilities"); strings.Contains(caps, "<domain type='kvm'") {
		t.Fatalf("the daemon offers KVM, which it was to hide:\n%s", caps)
	}
	const dom = "kumoi-probe"
	define("", dom, fmt.Sprintf(`<domain type='%s'><name>%s</name><memory unit='MiB'>192</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type><kernel>%s</kernel><initrd>%s</initrd><cmdline>%s</cmdline></os>
<features><acpi/><apic/></features>
<on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>
<devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
<interface type='network'><source network='kumoi-probe'/><mac address='%s'/><model type='virtio'/></interface>
<serial type='pty'/><console type='pty'><target type='serial'/></console></devices></domain>`,
		domType, dom, g.Kernel, g.Initrd, g.Cmdline, vol, mac))

	boot := func(want ...string) map[string][]string {
		t.Helper()
		virsh("start", dom)
		c, err := OpenConsole(ctx, d.Host, dom)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		m := c.WaitLines(t, guestBootWithin, want...)
		t.Logf("boot: %v; console lines %v", time.Since(start).Round(time.Millisecond), m)
		if got := m[GuestIP]; len(got) != 1 || got[0] != addr {
			t.Fatalf("the guest got address(es) %v over DHCP; want %s", got, addr)
		}
		if got := m[GuestImage]; len(got) != 1 || got[0] != img.Token {
			t.Fatalf("the guest read kumoi-image %v from its disk; want %s (the image's)", got, img.Token)
		}
		return m
	}
	m := boot(GuestIP, GuestImage, GuestWrote)
	wrote := m[GuestWrote][0]

	virsh("shutdown", dom)
	waitDomState(t, d.Host, dom, "shut off", time.Minute)
	if err := ns.CheckIsolated(ctx); err != nil {
		t.Fatal(err)
	}

	m = boot(GuestIP, GuestImage, GuestMarker)
	if got := m[GuestMarker]; len(got) != 1 || got[0] != wrote {
		t.Fatalf("second boot: marker %v; want %s, written by the first", got, wrote)
	}
	if len(m[GuestWrote]) > 0 {
		t.Fatalf("second boot wrote a marker again: %v", m[GuestWrote])
	}
	// Nothing of this is outside the namespace.
	if out, err := ip(ctx, "-o", "link", "show", "kb-probe"); err == nil {
		t.Fatalf("the network's bridge is in the host's namespace: %s", strings.TrimSpace(out))
	}
}
