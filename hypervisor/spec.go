package hypervisor

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unicode"
)

// Validate checks a spec before anything is defined. Errors wrap
// ErrInvalidSpec and name the field.
func (s DomainSpec) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Name == "":
		return bad("name", "must not be empty")
	case len(s.Name) > 253:
		return bad("name", "must be at most 253 characters (got %d)", len(s.Name))
	case strings.IndexFunc(s.Name, func(r rune) bool {
		return !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.'))
	}) >= 0:
		return bad("name", "may hold only ASCII letters, digits, '-', '_' and '.' (got %q)", s.Name)
	case s.VMID == "":
		return bad("vm_id", "must not be empty: every Kumoi domain is tagged with its VM id")
	case s.CPUs < 1:
		return bad("cpus", "must be at least 1 (got %d)", s.CPUs)
	case s.MemoryMiB < 1:
		return bad("memory_mib", "must be at least 1 (got %d)", s.MemoryMiB)
	case len(s.Cluster) > 64 || strings.IndexFunc(s.Cluster, func(r rune) bool {
		return !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-'))
	}) >= 0:
		return bad("cluster", "must be a cluster id: at most 64 ASCII letters, digits and '-' (got %q)", s.Cluster)
	}
	if err := s.Boot.Validate(); err != nil {
		return err
	}
	for i, dk := range s.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		switch {
		case !filepath.IsAbs(dk.Path):
			return bad(f+".path", "must be an absolute path (got %q)", dk.Path)
		case dk.Format != "" && dk.Format != ImageQCOW2 && dk.Format != ImageRaw:
			return bad(f+".format", "must be qcow2 or raw (got %q)", dk.Format)
		case dk.Path == s.Boot.Image || slices.ContainsFunc(s.Disks[:i], func(o DomainDisk) bool { return o.Path == dk.Path }):
			return bad(f+".path", "%s is attached twice", dk.Path)
		}
	}
	for i, n := range s.NICs {
		f := fmt.Sprintf("nics[%d]", i)
		switch {
		case !validName(n.Network):
			return bad(f+".network", "must be a network name of ASCII letters, digits, '-', '_' and '.' (got %q)", n.Network)
		case !ValidMAC(n.MAC):
			return bad(f+".mac", "must be a unicast MAC address like 52:54:00:12:34:56 (got %q)", n.MAC)
		case n.MTU < 0 || n.MTU > 65535:
			return bad(f+".mtu", "must be between 0 (the network's) and 65535 (got %d)", n.MTU)
		case slices.ContainsFunc(s.NICs[:i], func(o DomainNIC) bool { return strings.EqualFold(o.MAC, n.MAC) }):
			return bad(f+".mac", "%s is used by two NICs", n.MAC)
		}
	}
	return nil
}

// validName: a libvirt object name Kumoi makes (domain, network, volume).
func validName(n string) bool {
	return n != "" && len(n) <= 253 && n != "." && n != ".." && strings.IndexFunc(n, func(r rune) bool {
		return !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.'))
	}) < 0
}

// ValidMAC reports whether s is a unicast Ethernet address written as six
// colon-separated hex pairs.
func ValidMAC(s string) bool {
	hw, err := net.ParseMAC(s)
	return err == nil && len(hw) == 6 && len(s) == 17 && hw[0]&1 == 0
}

// Validate checks that a boot setting is complete and consistent.
func (b Boot) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: boot.%s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, args...))
	}
	switch b.ImageFormat {
	case "", ImageQCOW2, ImageRaw:
	default:
		return bad("image_format", "must be qcow2 or raw (got %q)", b.ImageFormat)
	}
	if b.ImageFormat != "" && b.Image == "" {
		return bad("image_format", "set without an image")
	}
	if b.Kernel == "" && (b.Initrd != "" || b.Cmdline != "") {
		return bad("kernel", "initrd and cmdline need a kernel")
	}
	return nil
}

// Format is the image format with its default (qcow2) filled in.
func (b Boot) Format() ImageFormat {
	if b.ImageFormat == "" {
		return ImageQCOW2
	}
	return b.ImageFormat
}

// Needs returns the capabilities booting b requires.
func (b Boot) Needs() []Capability {
	var cs []Capability
	if b.Image != "" {
		cs = append(cs, CapDiskBoot)
	}
	if b.Kernel != "" {
		cs = append(cs, CapKernelBoot)
	}
	return cs
}

// Equal reports whether two specs define the same domain.
func (s DomainSpec) Equal(o DomainSpec) bool {
	return s.Name == o.Name && s.VMID == o.VMID && s.Epoch == o.Epoch && s.Cluster == o.Cluster &&
		s.CPUs == o.CPUs && s.MemoryMiB == o.MemoryMiB && s.Boot.normal() == o.Boot.normal() &&
		EqualDevices(s.Disks, s.NICs, o.Disks, o.NICs)
}

// EqualDevices reports whether two lists of disks and NICs are the same
// devices: a disk's empty format is qcow2, MACs compare without case.
func EqualDevices(d1 []DomainDisk, n1 []DomainNIC, d2 []DomainDisk, n2 []DomainNIC) bool {
	return slices.EqualFunc(d1, d2, func(a, b DomainDisk) bool { return a.normal() == b.normal() }) &&
		slices.EqualFunc(n1, n2, func(a, b DomainNIC) bool { return a.normal() == b.normal() })
}

// FormatOrDefault is the disk's format with its default (qcow2) filled in.
func (dk DomainDisk) FormatOrDefault() ImageFormat {
	if dk.Format == "" {
		return ImageQCOW2
	}
	return dk.Format
}

func (dk DomainDisk) normal() DomainDisk {
	dk.Format = dk.FormatOrDefault()
	return dk
}

func (n DomainNIC) normal() DomainNIC {
	n.MAC = strings.ToLower(n.MAC)
	return n
}

// Validate checks a network definition. Errors wrap ErrInvalidSpec and
// name the field.
func (n NetworkDef) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: network %s: %s: %s", ErrInvalidSpec, n.Name, field, fmt.Sprintf(format, args...))
	}
	if !validName(n.Name) {
		return bad("name", "must be ASCII letters, digits, '-', '_' and '.' (got %q)", n.Name)
	}
	if !validBridge(n.Bridge) {
		return bad("bridge", "must be an interface name of 1 to 15 ASCII letters, digits, '-', '_' and '.' (got %q)", n.Bridge)
	}
	if n.MTU < 0 || n.MTU > 65535 {
		return bad("mtu", "must be between 0 (default) and 65535 (got %d)", n.MTU)
	}
	switch n.Mode {
	case NetModeBridge:
		if n.DHCP || len(n.Hosts) > 0 {
			return bad("dhcp", "a bridge-mode network has no DHCP (the host bridge's LAN serves addresses)")
		}
		return nil
	case NetModeNAT, NetModeIsolated:
	default:
		return bad("mode", "must be nat, isolated or bridge (got %q)", n.Mode)
	}
	pfx, err := netip.ParsePrefix(n.CIDR)
	if err != nil {
		return bad("cidr", "%v", err)
	}
	gw, err := netip.ParseAddr(n.Gateway)
	if err != nil {
		return bad("gateway", "%v", err)
	}
	if !pfx.Contains(gw) || gw == pfx.Masked().Addr() {
		return bad("gateway", "%s is not a host address in %s", gw, pfx)
	}
	if len(n.Hosts) > 0 && !n.DHCP {
		return bad("hosts", "DHCP host entries without DHCP")
	}
	for i, h := range n.Hosts {
		f := fmt.Sprintf("hosts[%d]", i)
		ip, err := netip.ParseAddr(h.IP)
		switch {
		case !ValidMAC(h.MAC):
			return bad(f+".mac", "must be a unicast MAC address (got %q)", h.MAC)
		case err != nil:
			return bad(f+".ip", "%v", err)
		case !pfx.Contains(ip) || ip == gw:
			return bad(f+".ip", "%s is not an address for a guest in %s (gateway %s)", ip, pfx, gw)
		case h.Name != "" && !validName(h.Name):
			return bad(f+".name", "must be ASCII letters, digits, '-', '_' and '.' (got %q)", h.Name)
		}
		for _, o := range n.Hosts[:i] {
			if strings.EqualFold(o.MAC, h.MAC) {
				return bad(f+".mac", "%s has two entries", h.MAC)
			}
			if o.IP == h.IP {
				return bad(f+".ip", "%s is bound to two MACs", h.IP)
			}
		}
	}
	return nil
}

func validBridge(b string) bool {
	return len(b) <= 15 && validName(b)
}

// Validate checks a volume definition. Errors wrap ErrInvalidSpec.
func (v VolumeDef) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: volume %s: %s: %s", ErrInvalidSpec, v.Name, field, fmt.Sprintf(format, args...))
	}
	switch {
	case !validName(v.Name):
		return bad("name", "must be a file name of ASCII letters, digits, '-', '_' and '.' (got %q)", v.Name)
	case v.SizeMiB < 1:
		return bad("size_mib", "must be at least 1 (got %d)", v.SizeMiB)
	case v.Backing != "" && !filepath.IsAbs(v.Backing):
		return bad("backing", "must be an absolute path (got %q)", v.Backing)
	case v.Backing == "" && v.BackingFormat != "":
		return bad("backing_format", "set without a backing image")
	case v.BackingFormat != "" && v.BackingFormat != ImageQCOW2 && v.BackingFormat != ImageRaw:
		return bad("backing_format", "must be qcow2 or raw (got %q)", v.BackingFormat)
	}
	return nil
}

// BackingFormatOrDefault is the backing image's format (qcow2 by default).
func (v VolumeDef) BackingFormatOrDefault() ImageFormat {
	if v.BackingFormat == "" {
		return ImageQCOW2
	}
	return v.BackingFormat
}

func (b Boot) normal() Boot {
	if b.Image != "" {
		b.ImageFormat = b.Format()
	}
	return b
}

// Normal is the definition as a driver keeps it: CIDR masked, addresses
// in canonical form, MACs in lower case, hosts sorted by MAC (none
// without DHCP), and for a bridge-mode network no address, DHCP or MTU
// (the host bridge's).
func (n NetworkDef) Normal() NetworkDef {
	if pfx, err := netip.ParsePrefix(n.CIDR); err == nil {
		n.CIDR = pfx.Masked().String()
	}
	if gw, err := netip.ParseAddr(n.Gateway); err == nil {
		n.Gateway = gw.String()
	}
	hosts := make([]DHCPHost, 0, len(n.Hosts))
	if n.DHCP {
		for _, h := range n.Hosts {
			h.MAC = strings.ToLower(h.MAC)
			if ip, err := netip.ParseAddr(h.IP); err == nil {
				h.IP = ip.String()
			}
			hosts = append(hosts, h)
		}
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].MAC < hosts[j].MAC })
	n.Hosts = hosts
	if n.Mode == NetModeBridge {
		n.CIDR, n.Gateway, n.DHCP, n.MTU = "", "", false, 0
	}
	return n
}
