package hypervisor

import (
	"errors"
	"reflect"
	"testing"
)

func TestNetworkDefValidateAndNormal(t *testing.T) {
	good := []NetworkDef{
		{Name: "kumoi-a", Mode: NetModeNAT, Bridge: "kb-0123456789", CIDR: "10.0.0.0/24", Gateway: "10.0.0.1", DHCP: true,
			Hosts: []DHCPHost{{MAC: "52:54:00:00:00:01", IP: "10.0.0.5", Name: "web-1"}}},
		{Name: "kumoi-b", Mode: NetModeIsolated, Bridge: "kb-b", CIDR: "fd00::/64", Gateway: "fd00::1"},
		{Name: "kumoi-c", Mode: NetModeBridge, Bridge: "br0", MTU: 9000},
	}
	for _, d := range good {
		if err := d.Validate(); err != nil {
			t.Errorf("%s: %v", d.Name, err)
		}
	}
	bad := []NetworkDef{
		{Name: "kumoi-a", Mode: NetModeNAT, Bridge: "kb-a", CIDR: "10.0.0.0/24", Gateway: "10.0.0.0"}, // network address
		{Name: "kumoi-a", Mode: NetModeNAT, Bridge: "kb-a", CIDR: "10.0.0.0/24", Gateway: "10.0.0.1",
			Hosts: []DHCPHost{{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}}}, // hosts without DHCP
		{Name: "kumoi-a", Mode: NetModeNAT, Bridge: "kb-a", CIDR: "10.0.0.0/24", Gateway: "10.0.0.1", DHCP: true,
			Hosts: []DHCPHost{{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}, {MAC: "52:54:00:00:00:02", IP: "10.0.0.5"}}}, // one IP twice
		{Name: "kumoi-a", Mode: NetModeNAT, Bridge: "kb-a", CIDR: "10.0.0.0/24", Gateway: "10.0.0.1", DHCP: true,
			Hosts: []DHCPHost{{MAC: "52:54:00:00:00:01", IP: "10.0.0.1"}}}, // the gateway
		{Name: "kumoi-c", Mode: NetModeBridge, Bridge: "br0", DHCP: true}, // DHCP on a host bridge
	}
	for i, d := range bad {
		if err := d.Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("bad[%d]: %v, want ErrInvalidSpec", i, err)
		}
	}
	n := NetworkDef{Name: "kumoi-a", Mode: NetModeNAT, Bridge: "kb-a", CIDR: "10.0.0.7/24", Gateway: "10.0.0.1", DHCP: true,
		Hosts: []DHCPHost{{MAC: "52:54:00:00:00:0B", IP: "10.0.0.6"}, {MAC: "52:54:00:00:00:0a", IP: "10.0.0.5"}}}.Normal()
	want := []DHCPHost{{MAC: "52:54:00:00:00:0a", IP: "10.0.0.5"}, {MAC: "52:54:00:00:00:0b", IP: "10.0.0.6"}}
	if n.CIDR != "10.0.0.0/24" || !reflect.DeepEqual(n.Hosts, want) {
		t.Fatalf("Normal: %+v", n)
	}
}

func TestVolumeDefValidate(t *testing.T) {
	if err := (VolumeDef{Name: "c_v.qcow2", SizeMiB: 1, Backing: "/img/x.raw", BackingFormat: ImageRaw}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []VolumeDef{{Name: "a/b", SizeMiB: 1}, {Name: "..", SizeMiB: 1}, {Name: "v", SizeMiB: -1}} {
		if err := v.Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%+v: %v, want ErrInvalidSpec", v, err)
		}
	}
}

func TestDomainDevicesEqual(t *testing.T) {
	a := DomainSpec{Name: "kumoi-x", VMID: "x", CPUs: 1, MemoryMiB: 1,
		Disks: []DomainDisk{{Path: "/v/a"}}, NICs: []DomainNIC{{Network: "kumoi-n", MAC: "52:54:00:AA:00:01"}}}
	b := a
	b.Disks = []DomainDisk{{Path: "/v/a", Format: ImageQCOW2}}
	b.NICs = []DomainNIC{{Network: "kumoi-n", MAC: "52:54:00:aa:00:01"}}
	if !a.Equal(b) {
		t.Fatal("default format and MAC case must not make specs differ")
	}
	b.NICs[0].MTU = 1400
	if a.Equal(b) {
		t.Fatal("an MTU change must")
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
}
