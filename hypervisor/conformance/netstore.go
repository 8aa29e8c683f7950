package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	"github.com/kumoi/kumoi/hypervisor"
)

// Networks, volumes, and domains with disks and NICs.

func (e *env) cleanupNetStore() {
	e.mu.Lock()
	networks, volumes := e.networks, e.volumes
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
	defer cancel()
	for _, n := range networks {
		if err := e.d.RemoveNetwork(ctx, n); err != nil && !errors.Is(err, hypervisor.ErrUnavailable) &&
			!errors.Is(err, hypervisor.ErrExists) {
			e.t.Logf("cleanup: remove network %s: %v", n, err)
		}
	}
	for _, v := range volumes {
		if err := e.d.RemoveVolume(ctx, v); err != nil && !errors.Is(err, hypervisor.ErrUnavailable) {
			e.t.Logf("cleanup: remove volume %s: %v", v, err)
		}
	}
}

// netDef returns a fresh nat network definition, unique across test
// processes, and removes the network at cleanup.
func (e *env) netDef(mode string) hypervisor.NetworkDef {
	i := seq.Add(1)
	def := hypervisor.NetworkDef{
		Name:   fmt.Sprintf("kumoi-confnet-%d-%d", os.Getpid(), i),
		Mode:   mode,
		Bridge: fmt.Sprintf("kbc%d-%d", os.Getpid()%100000, i%1000),
		MTU:    1400,
	}
	if mode != hypervisor.NetModeBridge {
		def.CIDR = fmt.Sprintf("10.%d.%d.0/24", 100+i/250%100, i%250)
		def.Gateway = fmt.Sprintf("10.%d.%d.1", 100+i/250%100, i%250)
		def.DHCP = true
	}
	e.mu.Lock()
	e.networks = append(e.networks, def.Name)
	e.mu.Unlock()
	return def
}

// volDef returns a fresh volume definition and removes the volume at
// cleanup.
func (e *env) volDef(sizeMiB int64) hypervisor.VolumeDef {
	def := hypervisor.VolumeDef{Name: fmt.Sprintf("confvol-%d-%d.qcow2", os.Getpid(), seq.Add(1)), SizeMiB: sizeMiB}
	e.mu.Lock()
	e.volumes = append(e.volumes, def.Name)
	e.mu.Unlock()
	return def
}

// network returns the named network from ListNetworks, or nil.
func (e *env) network(name string) *hypervisor.NetworkInfo {
	e.t.Helper()
	list, err := e.d.ListNetworks(e.ctx())
	e.must("ListNetworks", err)
	if !sort.SliceIsSorted(list, func(i, j int) bool { return list[i].Name < list[j].Name }) {
		e.t.Errorf("ListNetworks not sorted by name: %+v", list)
	}
	var got *hypervisor.NetworkInfo
	for i := range list {
		if list[i].Name == name {
			if got != nil {
				e.t.Fatalf("ListNetworks has %s twice: %+v", name, list)
			}
			got = &list[i]
		}
	}
	return got
}

// checkNetwork checks that ListNetworks shows def, active.
func (e *env) checkNetwork(def hypervisor.NetworkDef) {
	e.t.Helper()
	got := e.network(def.Name)
	if got == nil {
		e.t.Fatalf("ListNetworks does not show %s", def.Name)
	}
	want := hypervisor.NetworkInfo{Name: def.Name, Active: true, Mode: def.Mode, Bridge: def.Bridge, CIDR: def.CIDR}
	if def.DHCP {
		want.Hosts = append([]hypervisor.DHCPHost(nil), def.Hosts...)
		sort.Slice(want.Hosts, func(i, j int) bool { return want.Hosts[i].MAC < want.Hosts[j].MAC })
	}
	if len(want.Hosts) == 0 {
		want.Hosts = nil
	}
	if len(got.Hosts) == 0 {
		got.Hosts = nil
	}
	if !reflect.DeepEqual(*got, want) {
		e.t.Fatalf("network %s: got %+v, want %+v", def.Name, *got, want)
	}
}

func (e *env) volume(name string) *hypervisor.VolumeInfo {
	e.t.Helper()
	list, err := e.d.ListVolumes(e.ctx())
	e.must("ListVolumes", err)
	if !sort.SliceIsSorted(list, func(i, j int) bool { return list[i].Name < list[j].Name }) {
		e.t.Errorf("ListVolumes not sorted by name: %+v", list)
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func (e *env) ensureVolume(def hypervisor.VolumeDef) hypervisor.VolumeInfo {
	e.t.Helper()
	in, err := e.d.EnsureVolume(e.ctx(), def)
	e.must("EnsureVolume "+def.Name, err)
	return in
}

// testNetwork: EnsureNetwork creates, is idempotent, adds and removes
// DHCP hosts; ListNetworks shows it; RemoveNetwork removes it, twice.
func testNetwork(e *env) {
	for _, mode := range []string{hypervisor.NetModeNAT, hypervisor.NetModeIsolated, hypervisor.NetModeBridge} {
		def := e.netDef(mode)
		e.must("EnsureNetwork "+mode, e.d.EnsureNetwork(e.ctx(), def))
		e.checkNetwork(def)
		e.must("EnsureNetwork again", e.d.EnsureNetwork(e.ctx(), def))
		e.checkNetwork(def)
		if mode == hypervisor.NetModeBridge {
			e.must("RemoveNetwork", e.d.RemoveNetwork(e.ctx(), def.Name))
			continue
		}
		prefix := def.Gateway[:len(def.Gateway)-1]
		def.Hosts = []hypervisor.DHCPHost{
			{MAC: "52:54:00:00:00:0b", IP: prefix + "11", Name: "web-2"},
			{MAC: "52:54:00:00:00:0a", IP: prefix + "10", Name: "web-1"},
		}
		e.must("EnsureNetwork with hosts", e.d.EnsureNetwork(e.ctx(), def))
		e.checkNetwork(def)
		def.Hosts = append(def.Hosts[:1], hypervisor.DHCPHost{MAC: "52:54:00:00:00:0c", IP: prefix + "12"})
		e.must("EnsureNetwork with a host replaced", e.d.EnsureNetwork(e.ctx(), def))
		e.checkNetwork(def)
		def.Hosts[0].IP = prefix + "20"
		e.must("EnsureNetwork with a host's address changed", e.d.EnsureNetwork(e.ctx(), def))
		e.checkNetwork(def)
		def.Hosts = nil
		e.must("EnsureNetwork without hosts", e.d.EnsureNetwork(e.ctx(), def))
		e.checkNetwork(def)

		e.must("RemoveNetwork", e.d.RemoveNetwork(e.ctx(), def.Name))
		if got := e.network(def.Name); got != nil {
			e.t.Fatalf("network %s still listed after RemoveNetwork: %+v", def.Name, *got)
		}
		e.must("RemoveNetwork again", e.d.RemoveNetwork(e.ctx(), def.Name))
	}
}

func testNetworkInvalid(e *env) {
	base := e.netDef(hypervisor.NetModeNAT)
	bad := map[string]func(*hypervisor.NetworkDef){
		"no name":         func(d *hypervisor.NetworkDef) { d.Name = "" },
		"bad mode":        func(d *hypervisor.NetworkDef) { d.Mode = "vxlan" },
		"bad cidr":        func(d *hypervisor.NetworkDef) { d.CIDR = "10.0.0.0/33" },
		"gateway outside": func(d *hypervisor.NetworkDef) { d.Gateway = "192.168.1.1" },
		"no bridge":       func(d *hypervisor.NetworkDef) { d.Bridge = "" },
		"long bridge":     func(d *hypervisor.NetworkDef) { d.Bridge = "a-bridge-name-too-long" },
		"bad host mac":    func(d *hypervisor.NetworkDef) { d.Hosts = []hypervisor.DHCPHost{{MAC: "zz", IP: "10.0.0.5"}} },
		"host outside cidr": func(d *hypervisor.NetworkDef) {
			d.Hosts = []hypervisor.DHCPHost{{MAC: "52:54:00:00:00:01", IP: "172.16.0.5"}}
		},
		"negative mtu": func(d *hypervisor.NetworkDef) { d.MTU = -1 },
	}
	mustRefuseAll(e, "EnsureNetwork", base, bad, func(d hypervisor.NetworkDef) error { return e.d.EnsureNetwork(e.ctx(), d) })
	if got := e.network(base.Name); got != nil {
		e.t.Fatalf("invalid EnsureNetwork made %+v", *got)
	}
}

// testNetworkForeign: a network of Kumoi's name not made by Kumoi is
// neither taken over nor removed.
func testNetworkForeign(e *env) {
	e.needHook(e.h.DefineForeignNetwork != nil, "DefineForeignNetwork")
	def := e.netDef(hypervisor.NetModeNAT)
	e.h.DefineForeignNetwork(e.t, e.d, def)
	got := e.network(def.Name)
	if got == nil || !got.Foreign {
		e.t.Fatalf("foreign network %s: listed as %+v, want it marked foreign", def.Name, got)
	}
	def2 := def
	def2.Hosts = []hypervisor.DHCPHost{{MAC: "52:54:00:00:00:0a", IP: def.Gateway[:len(def.Gateway)-1] + "10"}}
	e.mustIs("EnsureNetwork over a foreign network", e.d.EnsureNetwork(e.ctx(), def2), hypervisor.ErrExists)
	e.mustIs("RemoveNetwork of a foreign network", e.d.RemoveNetwork(e.ctx(), def.Name), hypervisor.ErrExists)
	if got := e.network(def.Name); got == nil || len(got.Hosts) != 0 {
		e.t.Fatalf("refused calls changed the foreign network: %+v", got)
	}
}

// testNetworkVanished: a network removed behind the driver's back is no
// longer listed, and EnsureNetwork makes it again.
func testNetworkVanished(e *env) {
	e.needHook(e.h.VanishNetwork != nil, "VanishNetwork")
	def := e.netDef(hypervisor.NetModeNAT)
	e.must("EnsureNetwork", e.d.EnsureNetwork(e.ctx(), def))
	e.h.VanishNetwork(e.t, e.d, def.Name)
	if got := e.network(def.Name); got != nil {
		e.t.Fatalf("vanished network still listed: %+v", *got)
	}
	e.must("EnsureNetwork after vanish", e.d.EnsureNetwork(e.ctx(), def))
	e.checkNetwork(def)
}

// testVolume: EnsureVolume creates, is idempotent, grows, never shrinks,
// records the backing image; ListVolumes shows it; RemoveVolume removes
// it, twice.
func testVolume(e *env) {
	def := e.volDef(64)
	in := e.ensureVolume(def)
	if in.Name != def.Name || !filepath.IsAbs(in.Path) || filepath.Base(in.Path) != def.Name ||
		in.Format != hypervisor.ImageQCOW2 || in.SizeMiB != 64 || in.Backing != "" {
		e.t.Fatalf("EnsureVolume: got %+v, want %s, 64 MiB, qcow2, at an absolute path ending in its name", in, def.Name)
	}
	if got := e.volume(def.Name); got == nil || !reflect.DeepEqual(*got, in) {
		e.t.Fatalf("ListVolumes shows %+v, want %+v", got, in)
	}
	if again := e.ensureVolume(def); !reflect.DeepEqual(again, in) {
		e.t.Fatalf("EnsureVolume again: got %+v, want %+v", again, in)
	}
	def.SizeMiB = 128
	cur := int64(128)
	if !e.caps.Has(hypervisor.CapVolumeResize) {
		_, err := e.d.EnsureVolume(e.ctx(), def)
		e.mustIs("EnsureVolume to grow without "+string(hypervisor.CapVolumeResize), err, hypervisor.ErrUnsupported)
		if got := e.volume(def.Name); got == nil || got.SizeMiB != 64 {
			e.t.Fatalf("refused grow changed the volume: %+v", got)
		}
		e.t.Logf("driver lacks %s: checked that growing is refused", hypervisor.CapVolumeResize)
		cur = 64
	} else if grown := e.ensureVolume(def); grown.SizeMiB != 128 || grown.Path != in.Path {
		e.t.Fatalf("EnsureVolume to grow: got %+v, want 128 MiB at %s", grown, in.Path)
	}
	def.SizeMiB = 32
	if kept := e.ensureVolume(def); kept.SizeMiB != cur {
		e.t.Fatalf("EnsureVolume smaller: got %+v, want it kept at %d MiB (never shrink)", kept, cur)
	}
	if got := e.volume(def.Name); got == nil || got.SizeMiB != cur {
		e.t.Fatalf("ListVolumes after grow: %+v, want %d MiB", got, cur)
	}
	e.must("RemoveVolume", e.d.RemoveVolume(e.ctx(), def.Name))
	if got := e.volume(def.Name); got != nil {
		e.t.Fatalf("volume still listed after RemoveVolume: %+v", *got)
	}
	e.must("RemoveVolume again", e.d.RemoveVolume(e.ctx(), def.Name))
}

// testVolumeBacking: an overlay records its backing image.
func testVolumeBacking(e *env) {
	e.needHook(e.h.BackingImage != nil, "BackingImage")
	backing := e.h.BackingImage(e.t, e.d)
	def := e.volDef(64)
	def.Backing, def.BackingFormat = backing, hypervisor.ImageQCOW2
	in := e.ensureVolume(def)
	if in.Backing != backing || in.Format != hypervisor.ImageQCOW2 || in.SizeMiB != 64 {
		e.t.Fatalf("overlay: got %+v, want qcow2 of 64 MiB backed by %s", in, backing)
	}
	if got := e.volume(def.Name); got == nil || got.Backing != backing {
		e.t.Fatalf("ListVolumes shows %+v, want backing %s", got, backing)
	}
}

func testVolumeInvalid(e *env) {
	base := e.volDef(64)
	bad := map[string]func(*hypervisor.VolumeDef){
		"no name":          func(d *hypervisor.VolumeDef) { d.Name = "" },
		"path in name":     func(d *hypervisor.VolumeDef) { d.Name = "../x.qcow2" },
		"zero size":        func(d *hypervisor.VolumeDef) { d.SizeMiB = 0 },
		"relative backing": func(d *hypervisor.VolumeDef) { d.Backing = "images/x.qcow2" },
		"bad format":       func(d *hypervisor.VolumeDef) { d.Backing, d.BackingFormat = "/images/x", "vmdk" },
	}
	mustRefuseAll(e, "EnsureVolume", base, bad, func(d hypervisor.VolumeDef) error {
		_, err := e.d.EnsureVolume(e.ctx(), d)
		return err
	})
	if got := e.volume(base.Name); got != nil {
		e.t.Fatalf("invalid EnsureVolume made %+v", *got)
	}
}

// testVolumeVanished: a volume removed behind the driver's back is no
// longer listed.
func testVolumeVanished(e *env) {
	e.needHook(e.h.VanishVolume != nil, "VanishVolume")
	def := e.volDef(64)
	e.ensureVolume(def)
	e.h.VanishVolume(e.t, e.d, def.Name)
	if got := e.volume(def.Name); got != nil {
		e.t.Fatalf("vanished volume still listed: %+v", *got)
	}
}

// devSpec is a domain spec with two disks (volumes) and two NICs on net.
func (e *env) devSpec(net hypervisor.NetworkDef) hypervisor.DomainSpec {
	e.t.Helper()
	s := e.spec()
	for i := 0; i < 2; i++ {
		v := e.ensureVolume(e.volDef(16))
		s.Disks = append(s.Disks, hypervisor.DomainDisk{Path: v.Path, Format: v.Format})
	}
	s.NICs = []hypervisor.DomainNIC{
		{Network: net.Name, MAC: fmt.Sprintf("52:54:00:aa:%02x:01", seq.Add(1)%256), MTU: net.MTU},
		{Network: net.Name, MAC: fmt.Sprintf("52:54:00:aa:%02x:02", seq.Add(1)%256)},
	}
	return s
}

func (e *env) checkDevices(what string, s hypervisor.DomainSpec) {
	e.t.Helper()
	in := e.get(s.Name)
	if !hypervisor.EqualDevices(in.Disks, in.NICs, s.Disks, s.NICs) {
		e.t.Fatalf("%s: Get shows disks %+v nics %+v, want disks %+v nics %+v", what, in.Disks, in.NICs, s.Disks, s.NICs)
	}
}

// testDomainDevices: disks and NICs round-trip through Define and Get,
// Define of the same spec is a no-op, a change is an update.
func testDomainDevices(e *env) {
	net := e.netDef(hypervisor.NetModeNAT)
	e.must("EnsureNetwork", e.d.EnsureNetwork(e.ctx(), net))
	s := e.devSpec(net)
	mark := e.rec.mark()
	e.define(s)
	e.checkDevices("after Define", s)
	e.must("Define again", e.d.Define(e.ctx(), s))
	e.must("Define again", e.d.Define(e.ctx(), s))
	e.checkDevices("after Define again", s)
	if e.caps.Has(hypervisor.CapEvents) {
		// The redefinitions of the same spec must not show as updates. A
		// later update's event comes after any they would have caused.
		s2 := s
		s2.NICs = s.NICs[:1]
		s2.Disks = []hypervisor.DomainDisk{s.Disks[1], s.Disks[0]}
		e.must("Define update", e.d.Define(e.ctx(), s2))
		e.waitEvent(mark, s2, hypervisor.EventDefined, "updated")
		for _, ev := range e.rec.since(mark) {
			if ev.Domain == s.Name && ev.Kind == hypervisor.EventDefined && ev.Reason != "added" {
				if ev.Reason != "updated" {
					e.t.Errorf("unexpected event %+v", ev)
				}
				break
			}
		}
		e.checkDevices("after update", s2)
		s = s2
	}
	e.must("Start", e.d.Start(e.ctx(), s.Name))
	e.waitState(s.Name, hypervisor.StateRunning)
	e.checkDevices("while running", s)
}

// testDomainDevicesInvalid: bad disks and NICs are refused.
func testDomainDevicesInvalid(e *env) {
	base := e.spec()
	bad := map[string]func(*hypervisor.DomainSpec){
		"relative disk":  func(s *hypervisor.DomainSpec) { s.Disks = []hypervisor.DomainDisk{{Path: "x.qcow2"}} },
		"disk format":    func(s *hypervisor.DomainSpec) { s.Disks = []hypervisor.DomainDisk{{Path: "/x.img", Format: "vmdk"}} },
		"disk twice":     func(s *hypervisor.DomainSpec) { s.Disks = []hypervisor.DomainDisk{{Path: "/x"}, {Path: "/x"}} },
		"nic no network": func(s *hypervisor.DomainSpec) { s.NICs = []hypervisor.DomainNIC{{MAC: "52:54:00:00:00:01"}} },
		"nic bad mac":    func(s *hypervisor.DomainSpec) { s.NICs = []hypervisor.DomainNIC{{Network: "kumoi-n", MAC: "52:54:00"}} },
		"nic no mac":     func(s *hypervisor.DomainSpec) { s.NICs = []hypervisor.DomainNIC{{Network: "kumoi-n"}} },
		"multicast mac": func(s *hypervisor.DomainSpec) {
			s.NICs = []hypervisor.DomainNIC{{Network: "kumoi-n", MAC: "01:00:5e:00:00:01"}}
		},
		"same mac twice": func(s *hypervisor.DomainSpec) {
			s.NICs = []hypervisor.DomainNIC{{Network: "kumoi-n", MAC: "52:54:00:00:00:01"}, {Network: "kumoi-m", MAC: "52:54:00:00:00:01"}}
		},
	}
	mustRefuseAll(e, "Define", base, bad, func(s hypervisor.DomainSpec) error { return e.d.Define(e.ctx(), s) })
	_, err := e.d.Get(e.ctx(), base.Name)
	e.mustIs("Get after invalid Defines", err, hypervisor.ErrNotFound)
}

// testInUse: a network or volume an active domain uses is not removed;
// once the domain is off, it is.
func testInUse(e *env) {
	net := e.netDef(hypervisor.NetModeNAT)
	e.must("EnsureNetwork", e.d.EnsureNetwork(e.ctx(), net))
	s := e.devSpec(net)
	e.define(s)
	// Stopped, the domain does not hold them... but its definition still
	// names them: removing is allowed (the worker decides), starting then
	// fails. Here: only the active case.
	e.must("Start", e.d.Start(e.ctx(), s.Name))
	e.waitState(s.Name, hypervisor.StateRunning)
	e.mustIs("RemoveNetwork in use", e.d.RemoveNetwork(e.ctx(), net.Name), hypervisor.ErrInvalidState)
	if got := e.network(net.Name); got == nil || !got.Active {
		e.t.Fatalf("refused RemoveNetwork changed the network: %+v", got)
	}
	vol := filepath.Base(s.Disks[0].Path)
	e.mustIs("RemoveVolume in use", e.d.RemoveVolume(e.ctx(), vol), hypervisor.ErrInvalidState)
	if got := e.volume(vol); got == nil {
		e.t.Fatal("refused RemoveVolume removed the volume")
	}
	// A change of the network's DHCP hosts is live: allowed while in use.
	net.Hosts = []hypervisor.DHCPHost{{MAC: s.NICs[0].MAC, IP: net.Gateway[:len(net.Gateway)-1] + "50"}}
	e.must("EnsureNetwork with a host while in use", e.d.EnsureNetwork(e.ctx(), net))
	e.checkNetwork(net)
	// Any other change would restart the network under the domain.
	changed := net
	changed.MTU = 1300
	e.mustIs("EnsureNetwork with a new MTU while in use", e.d.EnsureNetwork(e.ctx(), changed), hypervisor.ErrInvalidState)
	e.checkNetwork(net)

	e.must("Destroy", e.d.Destroy(e.ctx(), s.Name))
	e.waitState(s.Name, hypervisor.StateShutoff)
	e.must("EnsureNetwork with a new MTU once unused", e.d.EnsureNetwork(e.ctx(), changed))
	e.checkNetwork(changed)
	e.must("RemoveNetwork after the domain stopped", e.d.RemoveNetwork(e.ctx(), net.Name))
	e.must("RemoveVolume after the domain stopped", e.d.RemoveVolume(e.ctx(), vol))
}
