//go:build libvirt_dlopen

package libvirt

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kumoi/kumoi/hypervisor"
)

// NetworkNamespace is the XML namespace of the metadata element that
// marks a libvirt network as Kumoi's.
const NetworkNamespace = "https://kumoi.dev/xmlns/network/1"

// netMarker is the element in a Kumoi network's <metadata>.
const netMarker = `<kumoi:network xmlns:kumoi="` + NetworkNamespace + `"><kumoi:managed>true</kumoi:managed></kumoi:network>`

// hasNetMarker reports whether a network's <metadata> holds Kumoi's
// element.
func hasNetMarker(meta string) bool {
	dec := xml.NewDecoder(strings.NewReader("<m>" + meta + "</m>"))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Space == NetworkNamespace && se.Name.Local == "network" {
			return true
		}
	}
}

// networkXML is the libvirt definition of def: nat -> <forward mode=nat>,
// isolated -> no <forward>, bridge -> <forward mode=bridge> onto the host
// bridge. The address is the gateway with the CIDR's prefix; DHCP serves
// only the host entries (no range).
func networkXML(def hypervisor.NetworkDef, uuid string) (string, error) {
	x := &libvirtxml.Network{
		Name:     def.Name,
		UUID:     uuid,
		Metadata: &libvirtxml.NetworkMetadata{XML: netMarker},
		Bridge:   &libvirtxml.NetworkBridge{Name: def.Bridge},
	}
	if def.MTU > 0 && def.Mode != hypervisor.NetModeBridge {
		// (The host bridge's MTU is the host's business: libvirt takes
		// none for a bridge-mode network.)
		x.MTU = &libvirtxml.NetworkMTU{Size: uint(def.MTU)}
	}
	switch def.Mode {
	case hypervisor.NetModeBridge:
		x.Forward = &libvirtxml.NetworkForward{Mode: "bridge"}
		return x.Marshal()
	case hypervisor.NetModeNAT:
		x.Forward = &libvirtxml.NetworkForward{Mode: "nat"}
	}
	pfx, err := netip.ParsePrefix(def.CIDR)
	if err != nil {
		return "", err
	}
	ip := libvirtxml.NetworkIP{Address: def.Gateway, Prefix: uint(pfx.Bits())}
	if pfx.Addr().Is6() {
		ip.Family = "ipv6"
	}
	if def.DHCP && len(def.Hosts) > 0 {
		ip.DHCP = &libvirtxml.NetworkDHCP{}
		for _, h := range def.Hosts {
			ip.DHCP.Hosts = append(ip.DHCP.Hosts, dhcpHostXML(h))
		}
	}
	x.IPs = []libvirtxml.NetworkIP{ip}
	return x.Marshal()
}

func dhcpHostXML(h hypervisor.DHCPHost) libvirtxml.NetworkDHCPHost {
	return libvirtxml.NetworkDHCPHost{MAC: strings.ToLower(h.MAC), IP: h.IP, Name: h.Name}
}

// parsedNet is what the driver reads back from a network's XML.
type parsedNet struct {
	def   hypervisor.NetworkDef // Hosts sorted by MAC
	uuid  string
	kumoi bool
}

func parseNetworkXML(s string) (parsedNet, error) {
	var x libvirtxml.Network
	if err := x.Unmarshal(s); err != nil {
		return parsedNet{}, fmt.Errorf("parse network XML: %w", err)
	}
	p := parsedNet{uuid: x.UUID, def: hypervisor.NetworkDef{Name: x.Name, Mode: hypervisor.NetModeIsolated}}
	if x.Metadata != nil {
		p.kumoi = hasNetMarker(x.Metadata.XML)
	}
	if x.Forward != nil {
		switch x.Forward.Mode {
		case "", "nat":
			p.def.Mode = hypervisor.NetModeNAT
		default:
			p.def.Mode = x.Forward.Mode // bridge, or a mode Kumoi does not make
		}
	}
	if x.Bridge != nil {
		p.def.Bridge = x.Bridge.Name
	}
	if x.MTU != nil {
		p.def.MTU = int(x.MTU.Size)
	}
	for _, ip := range x.IPs {
		addr, err := netip.ParseAddr(ip.Address)
		if err != nil {
			continue
		}
		bits := int(ip.Prefix)
		if ip.Prefix == 0 && ip.Netmask != "" {
			if m, err := netip.ParseAddr(ip.Netmask); err == nil {
				bits = maskBits(m.AsSlice())
			}
		}
		pfx, err := addr.Prefix(bits)
		if err != nil {
			continue
		}
		p.def.CIDR, p.def.Gateway = pfx.String(), addr.String()
		if ip.DHCP != nil {
			p.def.DHCP = true
			for _, h := range ip.DHCP.Hosts {
				p.def.Hosts = append(p.def.Hosts, hypervisor.DHCPHost{MAC: strings.ToLower(h.MAC), IP: h.IP, Name: h.Name})
			}
		}
		break // Kumoi's networks have one address
	}
	sort.Slice(p.def.Hosts, func(i, j int) bool { return p.def.Hosts[i].MAC < p.def.Hosts[j].MAC })
	return p, nil
}

func maskBits(b []byte) int {
	n := 0
	for _, x := range b {
		for ; x&0x80 != 0; x <<= 1 {
			n++
		}
	}
	return n
}

// sameShape reports whether two definitions differ only in their DHCP
// hosts (which libvirt changes live). An empty <dhcp> does not survive
// libvirt's formatting, so DHCP without hosts reads back as no DHCP: the
// flag is not compared.
func sameShape(a, b hypervisor.NetworkDef) bool {
	return a.Name == b.Name && a.Mode == b.Mode && a.Bridge == b.Bridge && a.MTU == b.MTU &&
		(a.Mode == hypervisor.NetModeBridge || (a.CIDR == b.CIDR && a.Gateway == b.Gateway))
}

// networkXMLDesc reads a network's XML: the live one when it is active.
func networkXMLDesc(n *lv.Network) (parsedNet, error) {
	x, err := n.GetXMLDesc(0)
	if err != nil {
		return parsedNet{}, err
	}
	return parseNetworkXML(x)
}

// EnsureNetwork implements hypervisor.NetworkDriver. DHCP host entries
// change live (virNetworkUpdate, on the running network and its
// definition); any other change redefines the network and restarts it,
// which is refused (ErrInvalidState) while an active domain uses it.
func (d *Driver) EnsureNetwork(ctx context.Context, def hypervisor.NetworkDef) error {
	what := "ensure network " + def.Name
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := def.Validate(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	want := def.Normal()
	c, gen, release, err := d.acquire(what)
	if err != nil {
		return err
	}
	defer release()
	d.netMu.Lock()
	defer d.netMu.Unlock()

	n, err := c.LookupNetworkByName(def.Name)
	if isCode(err, lv.ERR_NO_NETWORK) {
		x, err := networkXML(want, "")
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		n, err = c.NetworkDefineXML(x)
		if err != nil {
			return d.failNet(c, gen, what, err)
		}
		defer n.Free()
		if err := n.Create(); err != nil {
			return d.failNet(c, gen, what+": start", err)
		}
		return d.autostart(n, what)
	}
	if err != nil {
		return d.failNet(c, gen, what, err)
	}
	defer n.Free()
	cur, err := networkXMLDesc(n)
	if err != nil {
		return d.failNet(c, gen, what, err)
	}
	if !cur.kumoi {
		return fmt.Errorf("%s: %w: a network of that name not made by Kumoi", what, hypervisor.ErrExists)
	}
	active, err := n.IsActive()
	if err != nil {
		return d.failNet(c, gen, what, err)
	}
	if !sameShape(cur.def, want) {
		if active {
			users, err := d.activeUsers(c, func(x *libvirtxml.Domain) bool { return usesNetwork(x, def.Name) })
			if err != nil {
				return d.failNet(c, gen, what, err)
			}
			if len(users) > 0 {
				return fmt.Errorf("%s: %w: changing its mode, bridge, address or MTU restarts it, and active domains %s use it",
					what, hypervisor.ErrInvalidState, strings.Join(users, ", "))
			}
			if err := n.Destroy(); err != nil && !isCode(err, lv.ERR_OPERATION_INVALID) {
				return d.failNet(c, gen, what+": stop to redefine", err)
			}
		}
		x, err := networkXML(want, cur.uuid)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		nn, err := c.NetworkDefineXML(x)
		if err != nil {
			return d.failNet(c, gen, what+": redefine", err)
		}
		defer nn.Free()
		if err := nn.Create(); err != nil {
			return d.failNet(c, gen, what+": start", err)
		}
		return d.autostart(nn, what)
	}
	if err := d.updateHosts(n, cur.def.Hosts, want.Hosts, active); err != nil {
		return d.failNet(c, gen, what+": update DHCP hosts", err)
	}
	if !active {
		if err := n.Create(); err != nil && !isCode(err, lv.ERR_OPERATION_INVALID) {
			return d.failNet(c, gen, what+": start", err)
		}
	}
	return d.autostart(n, what)
}

// updateHosts changes a network's DHCP host entries from cur to want
// with virNetworkUpdate: on the running network and its definition.
func (d *Driver) updateHosts(n *lv.Network, cur, want []hypervisor.DHCPHost, active bool) error {
	flags := lv.NETWORK_UPDATE_AFFECT_CONFIG
	if active {
		flags |= lv.NETWORK_UPDATE_AFFECT_LIVE
	}
	byMAC := map[string]hypervisor.DHCPHost{}
	for _, h := range want {
		byMAC[h.MAC] = h
	}
	hostXML := func(h hypervisor.DHCPHost) (string, error) {
		x := dhcpHostXML(h)
		b, err := xml.Marshal(x)
		return string(b), err
	}
	// Delete first: a host whose address moved to another MAC must be
	// gone before that MAC's entry is added.
	for _, h := range cur {
		if w, ok := byMAC[h.MAC]; ok && w == h {
			continue
		}
		x, err := hostXML(h)
		if err != nil {
			return err
		}
		if err := n.Update(lv.NETWORK_UPDATE_COMMAND_DELETE, lv.NETWORK_SECTION_IP_DHCP_HOST, -1, x, flags); err != nil {
			return fmt.Errorf("delete %s: %w", h.MAC, err)
		}
	}
	for _, h := range want {
		if slices.Contains(cur, h) {
			continue
		}
		x, err := hostXML(h)
		if err != nil {
			return err
		}
		if err := n.Update(lv.NETWORK_UPDATE_COMMAND_ADD_LAST, lv.NETWORK_SECTION_IP_DHCP_HOST, -1, x, flags); err != nil {
			return fmt.Errorf("add %s: %w", h.MAC, err)
		}
	}
	return nil
}

func (d *Driver) autostart(n *lv.Network, what string) error {
	if err := n.SetAutostart(true); err != nil {
		d.log.Warn("network autostart not set", "what", what, "error", message(err))
	}
	return nil
}

// failNet is fail for network and storage calls.
func (d *Driver) failNet(c *lv.Connect, gen uint64, what string, err error) error {
	if isCode(err, lv.ERR_NETWORK_EXIST) {
		return fmt.Errorf("%s: %w: %s", what, hypervisor.ErrExists, message(err))
	}
	if isCode(err, lv.ERR_XML_ERROR, lv.ERR_CONFIG_UNSUPPORTED) {
		return fmt.Errorf("%s: %w: %s", what, hypervisor.ErrInvalidSpec, message(err))
	}
	return d.fail(c, gen, what, err)
}

// activeUsers names the active domains whose live XML matches.
func (d *Driver) activeUsers(c *lv.Connect, match func(*libvirtxml.Domain) bool) ([]string, error) {
	doms, err := c.ListAllDomains(lv.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		return nil, err
	}
	var users []string
	for i := range doms {
		x, err := doms[i].GetXMLDesc(0)
		doms[i].Free()
		if isCode(err, lv.ERR_NO_DOMAIN) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var dx libvirtxml.Domain
		if err := dx.Unmarshal(x); err != nil {
			return nil, fmt.Errorf("parse domain XML: %w", err)
		}
		if match(&dx) {
			users = append(users, dx.Name)
		}
	}
	sort.Strings(users)
	return users, nil
}

// refuseInUse fails with ErrInvalidState, naming them, while active
// domains match (they use the network or volume being removed).
func (d *Driver) refuseInUse(c *lv.Connect, gen uint64, what string, match func(*libvirtxml.Domain) bool) error {
	users, err := d.activeUsers(c, match)
	if err != nil {
		return d.failNet(c, gen, what, err)
	}
	if len(users) > 0 {
		return fmt.Errorf("%s: %w: used by active domains %s", what, hypervisor.ErrInvalidState, strings.Join(users, ", "))
	}
	return nil
}

func usesNetwork(x *libvirtxml.Domain, network string) bool {
	if x.Devices == nil {
		return false
	}
	for _, ifc := range x.Devices.Interfaces {
		if ifc.Source != nil && ifc.Source.Network != nil && ifc.Source.Network.Network == network {
			return true
		}
	}
	return false
}

func usesPath(x *libvirtxml.Domain, path string) bool {
	if x.Devices == nil {
		return false
	}
	for _, dk := range x.Devices.Disks {
		if dk.Source != nil && dk.Source.File != nil && dk.Source.File.File == path {
			return true
		}
	}
	return false
}

// RemoveNetwork implements hypervisor.NetworkDriver.
func (d *Driver) RemoveNetwork(ctx context.Context, name string) error {
	what := "remove network " + name
	c, gen, release, err := d.acquireCtx(ctx, what)
	if err != nil {
		return err
	}
	defer release()
	d.netMu.Lock()
	defer d.netMu.Unlock()
	n, err := c.LookupNetworkByName(name)
	if isCode(err, lv.ERR_NO_NETWORK) {
		return nil
	}
	if err != nil {
		return d.failNet(c, gen, what, err)
	}
	defer n.Free()
	cur, err := networkXMLDesc(n)
	if err != nil {
		return d.failNet(c, gen, what, err)
	}
	if !cur.kumoi {
		return fmt.Errorf("%s: %w: a network of that name not made by Kumoi", what, hypervisor.ErrExists)
	}
	if err := d.refuseInUse(c, gen, what, func(x *libvirtxml.Domain) bool { return usesNetwork(x, name) }); err != nil {
		return err
	}
	if active, err := n.IsActive(); err == nil && active {
		if err := n.Destroy(); err != nil && !isCode(err, lv.ERR_OPERATION_INVALID) {
			return d.failNet(c, gen, what+": stop", err)
		}
	}
	if err := n.Undefine(); err != nil && !isCode(err, lv.ERR_NO_NETWORK) {
		return d.failNet(c, gen, what, err)
	}
	return nil
}

// ListNetworks implements hypervisor.NetworkDriver.
func (d *Driver) ListNetworks(ctx context.Context) ([]hypervisor.NetworkInfo, error) {
	const what = "list networks"
	c, gen, release, err := d.acquireCtx(ctx, what)
	if err != nil {
		return nil, err
	}
	defer release()
	nets, err := c.ListAllNetworks(0)
	if err != nil {
		return nil, d.failNet(c, gen, what, err)
	}
	out := []hypervisor.NetworkInfo{}
	var firstErr error
	for i := range nets {
		n := &nets[i]
		name, err := n.GetName()
		if err != nil || !strings.HasPrefix(name, hypervisor.DomainPrefix) {
			n.Free()
			continue
		}
		p, err := networkXMLDesc(n)
		active, aerr := n.IsActive()
		n.Free()
		if err == nil {
			err = aerr
		}
		switch {
		case isCode(err, lv.ERR_NO_NETWORK): // vanished meanwhile
			continue
		case err != nil:
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		in := hypervisor.NetworkInfo{Name: name, Active: active, Mode: p.def.Mode, Bridge: p.def.Bridge,
			CIDR: p.def.CIDR, Hosts: p.def.Hosts, Foreign: !p.kumoi}
		out = append(out, in)
	}
	if firstErr != nil {
		return nil, d.failNet(c, gen, what, firstErr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ---- storage ----------------------------------------------------------------

// pool returns the storage pool "kumoi", defining (a directory pool at
// Options.StorageDir), building and starting it on first use. The caller
// frees it.
func (d *Driver) pool(c *lv.Connect) (*lv.StoragePool, error) {
	p, err := c.LookupStoragePoolByName(hypervisor.StoragePool)
	if isCode(err, lv.ERR_NO_STORAGE_POOL) {
		x, merr := (&libvirtxml.StoragePool{
			Type:   "dir",
			Name:   hypervisor.StoragePool,
			Target: &libvirtxml.StoragePoolTarget{Path: d.opts.StorageDir},
		}).Marshal()
		if merr != nil {
			return nil, merr
		}
		if p, err = c.StoragePoolDefineXML(x, 0); err != nil {
			return nil, err
		}
		if err := p.Build(lv.STORAGE_POOL_BUILD_NEW); err != nil && !isCode(err, lv.ERR_NO_SUPPORT) {
			d.log.Warn("storage pool build failed; starting it anyway", "pool", hypervisor.StoragePool, "error", message(err))
		}
		if err := p.SetAutostart(true); err != nil {
			d.log.Warn("storage pool autostart not set", "error", message(err))
		}
	}
	if err != nil {
		return nil, err
	}
	active, err := p.IsActive()
	if err != nil {
		p.Free()
		return nil, err
	}
	if !active {
		if err := p.Create(0); err != nil && !isCode(err, lv.ERR_OPERATION_INVALID) {
			p.Free()
			return nil, err
		}
	}
	return p, nil
}

// volumeInfo reads a volume's XML.
func volumeInfo(v *lv.StorageVol) (hypervisor.VolumeInfo, error) {
	s, err := v.GetXMLDesc(0)
	if err != nil {
		return hypervisor.VolumeInfo{}, err
	}
	var x libvirtxml.StorageVolume
	if err := x.Unmarshal(s); err != nil {
		return hypervisor.VolumeInfo{}, fmt.Errorf("parse volume XML: %w", err)
	}
	in := hypervisor.VolumeInfo{Name: x.Name, Format: hypervisor.ImageRaw}
	if x.Target != nil {
		in.Path = x.Target.Path
		if x.Target.Format != nil && x.Target.Format.Type != "" {
			in.Format = hypervisor.ImageFormat(x.Target.Format.Type)
		}
	}
	if x.Capacity != nil {
		b, err := toBytes(x.Capacity.Value, x.Capacity.Unit)
		if err != nil {
			return hypervisor.VolumeInfo{}, err
		}
		in.SizeMiB = int64((b + (1<<20 - 1)) >> 20)
	}
	if x.BackingStore != nil {
		in.Backing = x.BackingStore.Path
	}
	return in, nil
}

func toBytes(v uint64, unit string) (uint64, error) {
	switch unit {
	case "", "b", "bytes":
		return v, nil
	case "k", "KiB":
		return v << 10, nil
	case "M", "MiB":
		return v << 20, nil
	case "G", "GiB":
		return v << 30, nil
	case "T", "TiB":
		return v << 40, nil
	case "KB":
		return v * 1000, nil
	case "MB":
		return v * 1000 * 1000, nil
	case "GB":
		return v * 1000 * 1000 * 1000, nil
	}
	return 0, fmt.Errorf("volume XML: unknown unit %q", unit)
}

// EnsureVolume implements hypervisor.StorageDriver: a qcow2 volume
// (virStorageVolCreateXML, an overlay with <backingStore> when
// def.Backing is set), grown with virStorageVolResize.
func (d *Driver) EnsureVolume(ctx context.Context, def hypervisor.VolumeDef) (hypervisor.VolumeInfo, error) {
	what := "ensure volume " + def.Name
	if err := ctx.Err(); err != nil {
		return hypervisor.VolumeInfo{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := def.Validate(); err != nil {
		return hypervisor.VolumeInfo{}, fmt.Errorf("%s: %w", what, err)
	}
	c, gen, release, err := d.acquire(what)
	if err != nil {
		return hypervisor.VolumeInfo{}, err
	}
	defer release()
	d.poolMu.Lock()
	defer d.poolMu.Unlock()
	p, err := d.pool(c)
	if err != nil {
		return hypervisor.VolumeInfo{}, d.failNet(c, gen, what+": pool "+hypervisor.StoragePool, err)
	}
	defer p.Free()
	v, err := p.LookupStorageVolByName(def.Name)
	if isCode(err, lv.ERR_NO_STORAGE_VOL) {
		x := &libvirtxml.StorageVolume{
			Name:     def.Name,
			Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(def.SizeMiB) << 20},
			Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: string(hypervisor.ImageQCOW2)}},
		}
		if def.Backing != "" {
			x.BackingStore = &libvirtxml.StorageVolumeBackingStore{
				Path:   def.Backing,
				Format: &libvirtxml.StorageVolumeTargetFormat{Type: string(def.BackingFormatOrDefault())},
			}
		}
		s, merr := x.Marshal()
		if merr != nil {
			return hypervisor.VolumeInfo{}, fmt.Errorf("%s: %w", what, merr)
		}
		v, err = p.StorageVolCreateXML(s, 0)
	}
	if err != nil {
		return hypervisor.VolumeInfo{}, d.failNet(c, gen, what, err)
	}
	defer v.Free()
	in, err := volumeInfo(v)
	if err != nil {
		return hypervisor.VolumeInfo{}, d.failNet(c, gen, what, err)
	}
	if in.SizeMiB < def.SizeMiB { // grow; never shrink
		if err := v.Resize(uint64(def.SizeMiB)<<20, 0); err != nil {
			return in, d.failNet(c, gen, fmt.Sprintf("%s: grow from %d to %d MiB", what, in.SizeMiB, def.SizeMiB), err)
		}
		if in, err = volumeInfo(v); err != nil {
			return hypervisor.VolumeInfo{}, d.failNet(c, gen, what, err)
		}
	}
	return in, nil
}

// RemoveVolume implements hypervisor.StorageDriver. A volume an active
// domain uses is refused with ErrInvalidState.
func (d *Driver) RemoveVolume(ctx context.Context, name string) error {
	what := "remove volume " + name
	c, gen, release, err := d.acquireCtx(ctx, what)
	if err != nil {
		return err
	}
	defer release()
	d.poolMu.Lock()
	defer d.poolMu.Unlock()
	p, err := d.pool(c)
	if err != nil {
		return d.failNet(c, gen, what+": pool "+hypervisor.StoragePool, err)
	}
	defer p.Free()
	v, err := p.LookupStorageVolByName(name)
	if isCode(err, lv.ERR_NO_STORAGE_VOL) {
		return nil
	}
	if err != nil {
		return d.failNet(c, gen, what, err)
	}
	defer v.Free()
	path, err := v.GetPath()
	if err != nil {
		return d.failNet(c, gen, what, err)
	}
	if err := d.refuseInUse(c, gen, what, func(x *libvirtxml.Domain) bool { return usesPath(x, path) }); err != nil {
		return err
	}
	if err := v.Delete(0); err != nil && !isCode(err, lv.ERR_NO_STORAGE_VOL) {
		return d.failNet(c, gen, what, err)
	}
	return nil
}

// ListVolumes implements hypervisor.StorageDriver. The pool is refreshed
// first, so that a file removed behind libvirt's back is not listed.
func (d *Driver) ListVolumes(ctx context.Context) ([]hypervisor.VolumeInfo, error) {
	const what = "list volumes"
	c, gen, release, err := d.acquireCtx(ctx, what)
	if err != nil {
		return nil, err
	}
	defer release()
	d.poolMu.Lock()
	defer d.poolMu.Unlock()
	p, err := d.pool(c)
	if err != nil {
		return nil, d.failNet(c, gen, what+": pool "+hypervisor.StoragePool, err)
	}
	defer p.Free()
	if err := p.Refresh(0); err != nil {
		d.log.Warn("storage pool refresh failed", "error", message(err))
	}
	vols, err := p.ListAllStorageVolumes(0)
	if err != nil {
		return nil, d.failNet(c, gen, what, err)
	}
	out := make([]hypervisor.VolumeInfo, 0, len(vols))
	var firstErr error
	for i := range vols {
		in, err := volumeInfo(&vols[i])
		vols[i].Free()
		switch {
		case err == nil:
			out = append(out, in)
		case isCode(err, lv.ERR_NO_STORAGE_VOL):
		case firstErr == nil:
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, d.failNet(c, gen, what, firstErr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
