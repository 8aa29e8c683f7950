//go:build libvirt_dlopen

package libvirt

import (
	"context"
	"errors"
	"strings"
	"testing"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kumoi/kumoi/hypervisor"
)

// storedNetwork reads a network's XML as libvirt keeps it.
func storedNetwork(t *testing.T, d *Driver, name string) libvirtxml.Network {
	t.Helper()
	var x libvirtxml.Network
	raw(t, d, func(c *lv.Connect) error {
		n, err := c.LookupNetworkByName(name)
		if err != nil {
			return err
		}
		defer n.Free()
		s, err := n.GetXMLDesc(0)
		if err != nil {
			return err
		}
		return x.Unmarshal(s)
	})
	return x
}

// TestNetworkXML checks what Kumoi defines for each mode, as libvirt
// stores it.
func TestNetworkXML(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, Options{StorageDir: t.TempDir()})
	defer d.Close()
	nat := hypervisor.NetworkDef{Name: "kumoi-nat", Mode: hypervisor.NetModeNAT, Bridge: "kb-nat",
		CIDR: "10.20.0.0/24", Gateway: "10.20.0.1", DHCP: true, MTU: 1450,
		Hosts: []hypervisor.DHCPHost{{MAC: "52:54:00:AA:00:02", IP: "10.20.0.12", Name: "b"}, {MAC: "52:54:00:aa:00:01", IP: "10.20.0.11", Name: "a"}}}
	iso := hypervisor.NetworkDef{Name: "kumoi-iso", Mode: hypervisor.NetModeIsolated, Bridge: "kb-iso",
		CIDR: "10.21.0.0/16", Gateway: "10.21.255.254"}
	br := hypervisor.NetworkDef{Name: "kumoi-br", Mode: hypervisor.NetModeBridge, Bridge: "br0", MTU: 9000}
	for _, def := range []hypervisor.NetworkDef{nat, iso, br} {
		if err := d.EnsureNetwork(ctx, def); err != nil {
			t.Fatal(err)
		}
	}

	x := storedNetwork(t, d, nat.Name)
	if x.Forward == nil || x.Forward.Mode != "nat" || x.Bridge == nil || x.Bridge.Name != "kb-nat" ||
		x.MTU == nil || x.MTU.Size != 1450 || len(x.IPs) != 1 {
		t.Fatalf("nat network stored as %+v", x)
	}
	ip := x.IPs[0]
	if ip.Address != "10.20.0.1" || ip.Prefix != 24 || ip.DHCP == nil || len(ip.DHCP.Ranges) != 0 || len(ip.DHCP.Hosts) != 2 {
		t.Fatalf("nat network address %+v (dhcp %+v): want 10.20.0.1/24, two hosts, no range", ip, ip.DHCP)
	}
	if h := ip.DHCP.Hosts[0]; h.MAC != "52:54:00:aa:00:01" || h.IP != "10.20.0.11" || h.Name != "a" {
		t.Fatalf("first DHCP host %+v, want the lowest MAC, in lower case", h)
	}
	if x.Metadata == nil || !hasNetMarker(x.Metadata.XML) {
		t.Fatalf("no Kumoi marker in %+v", x.Metadata)
	}

	x = storedNetwork(t, d, iso.Name)
	if x.Forward != nil || len(x.IPs) != 1 || x.IPs[0].DHCP != nil || x.IPs[0].Prefix != 16 {
		t.Fatalf("isolated network stored as %+v: want no forward, one address, no DHCP", x)
	}

	x = storedNetwork(t, d, br.Name)
	if x.Forward == nil || x.Forward.Mode != "bridge" || x.Bridge == nil || x.Bridge.Name != "br0" || len(x.IPs) != 0 || x.MTU != nil {
		t.Fatalf("bridge network stored as %+v: want forward bridge onto br0, no address, no MTU", x)
	}

	// A change other than the hosts redefines the network: same identity.
	uuid := storedNetwork(t, d, nat.Name).UUID
	nat.MTU = 1500
	nat.Gateway = "10.20.0.254"
	if err := d.EnsureNetwork(ctx, nat); err != nil {
		t.Fatal(err)
	}
	x = storedNetwork(t, d, nat.Name)
	if x.UUID != uuid || x.MTU == nil || x.MTU.Size != 1500 || x.IPs[0].Address != "10.20.0.254" || len(x.IPs[0].DHCP.Hosts) != 2 {
		t.Fatalf("redefined network %+v, want uuid %s, MTU 1500, gateway 10.20.0.254, the two hosts", x, uuid)
	}
	list, err := d.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list {
		if !n.Active || n.Foreign {
			t.Errorf("network %+v: want active, Kumoi's", n)
		}
	}
}

// storedDomain reads a domain's definition as libvirt keeps it.
func storedDomain(t *testing.T, d *Driver, name string) libvirtxml.Domain {
	t.Helper()
	var x libvirtxml.Domain
	raw(t, d, func(c *lv.Connect) error {
		dom, err := c.LookupDomainByName(name)
		if err != nil {
			return err
		}
		defer dom.Free()
		s, err := dom.GetXMLDesc(lv.DOMAIN_XML_INACTIVE)
		if err != nil {
			return err
		}
		return x.Unmarshal(s)
	})
	return x
}

// TestDomainDevicesXML: extra disks are virtio vdb.. (vda stays the boot
// image's), the first one boots when there is no boot image or kernel;
// NICs are virtio interfaces on their network with MAC and MTU.
func TestDomainDevicesXML(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, Options{StorageDir: t.TempDir()})
	defer d.Close()
	nics := []hypervisor.DomainNIC{{Network: "kumoi-n1", MAC: "52:54:00:0A:0B:0C", MTU: 1400}, {Network: "kumoi-n2", MAC: "52:54:00:0a:0b:0d"}}
	disks := []hypervisor.DomainDisk{{Path: "/v/a.qcow2"}, {Path: "/v/b.img", Format: hypervisor.ImageRaw}}
	withImage := hypervisor.DomainSpec{Name: "kumoi-img", VMID: "id-img", Epoch: 1, CPUs: 1, MemoryMiB: 64,
		Boot: hypervisor.Boot{Image: "/images/boot.qcow2"}, Disks: disks, NICs: nics}
	noImage := hypervisor.DomainSpec{Name: "kumoi-vol", VMID: "id-vol", Epoch: 1, CPUs: 1, MemoryMiB: 64, Disks: disks, NICs: nics}
	for _, s := range []hypervisor.DomainSpec{withImage, noImage} {
		if err := d.Define(ctx, s); err != nil {
			t.Fatal(err)
		}
		x := storedDomain(t, d, s.Name)
		var targets []string
		for _, dk := range x.Devices.Disks {
			targets = append(targets, dk.Target.Dev+"="+dk.Source.File.File+":"+dk.Driver.Type)
		}
		want := "vdb=/v/a.qcow2:qcow2 vdc=/v/b.img:raw"
		if s.Boot.Image != "" {
			want = "vda=/images/boot.qcow2:qcow2 " + want
		}
		if got := strings.Join(targets, " "); got != want {
			t.Errorf("%s disks %q, want %q", s.Name, got, want)
		}
		first := x.Devices.Disks[0]
		if s.Boot.Image == "" && (first.Boot == nil || first.Boot.Order != 1) {
			t.Errorf("%s: the first volume does not boot: %+v", s.Name, first)
		}
		if len(x.Devices.Interfaces) != 2 {
			t.Fatalf("%s interfaces %+v", s.Name, x.Devices.Interfaces)
		}
		ifc := x.Devices.Interfaces[0]
		if ifc.Source.Network.Network != "kumoi-n1" || ifc.MAC.Address != "52:54:00:0a:0b:0c" ||
			ifc.Model == nil || ifc.Model.Type != "virtio" || ifc.MTU == nil || ifc.MTU.Size != 1400 {
			t.Errorf("%s first interface %+v", s.Name, ifc)
		}
		in, err := d.Get(ctx, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !hypervisor.EqualDevices(in.Disks, in.NICs, s.Disks, s.NICs) {
			t.Errorf("%s read back disks %+v nics %+v", s.Name, in.Disks, in.NICs)
		}
		if err := d.Define(ctx, s); err != nil { // the same spec: no redefinition needed
			t.Fatal(err)
		}
	}
}

func TestDiskTargets(t *testing.T) {
	for i, want := range map[int]string{0: "vda", 1: "vdb", 25: "vdz", 26: "vdaa", 27: "vdab", 701: "vdzz", 702: "vdaaa"} {
		if got := diskTarget(i); got != want {
			t.Errorf("diskTarget(%d) = %s, want %s", i, got, want)
		}
		if back := diskIndex(want); back != i {
			t.Errorf("diskIndex(%s) = %d, want %d", want, back, i)
		}
	}
	for _, bad := range []string{"sda", "vd", "vd1", "hda"} {
		if diskIndex(bad) != -1 {
			t.Errorf("diskIndex(%s) = %d, want -1", bad, diskIndex(bad))
		}
	}
}

// TestStoragePool: the pool is a dir pool at Options.StorageDir, made on
// first use, and volume paths are in it.
func TestStoragePool(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := newTestDriver(t, Options{StorageDir: dir})
	defer d.Close()
	in, err := d.EnsureVolume(ctx, hypervisor.VolumeDef{Name: "c_v1.qcow2", SizeMiB: 10})
	if err != nil {
		t.Fatal(err)
	}
	if in.Path != dir+"/c_v1.qcow2" {
		t.Fatalf("volume path %s, want it in %s", in.Path, dir)
	}
	raw(t, d, func(c *lv.Connect) error {
		p, err := c.LookupStoragePoolByName(hypervisor.StoragePool)
		if err != nil {
			return err
		}
		defer p.Free()
		s, err := p.GetXMLDesc(0)
		if err != nil {
			return err
		}
		var x libvirtxml.StoragePool
		if err := x.Unmarshal(s); err != nil {
			return err
		}
		if x.Type != "dir" || x.Target == nil || x.Target.Path != dir {
			return errors.New("pool stored as " + s)
		}
		if active, err := p.IsActive(); err != nil || !active {
			return errors.New("pool not active")
		}
		return nil
	})
	// Growing is not something the test driver does: refused, said so.
	if _, err := d.EnsureVolume(ctx, hypervisor.VolumeDef{Name: "c_v1.qcow2", SizeMiB: 20}); !errors.Is(err, hypervisor.ErrUnsupported) {
		t.Fatalf("grow on the test driver: %v, want ErrUnsupported", err)
	}
}
