package resource

import (
	"math/big"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// KindNetwork is the virtual network kind: an address range whose
// addresses the state machine hands to VM NICs (IPAM), realised on each
// host that needs it as a libvirt network "kumoi-<name>".
const KindNetwork Kind = "network"

// Network modes.
const (
	// NetworkNAT: a host-local bridge with DHCP, routed to the host's
	// uplink through NAT (libvirt's forward mode "nat").
	NetworkNAT = "nat"
	// NetworkIsolated: a host-local bridge with DHCP and no forwarding.
	NetworkIsolated = "isolated"
	// NetworkBridge: VMs attach to an existing host bridge (the only mode
	// that spans hosts at layer 2); Kumoi serves no DHCP on it unless
	// dhcp is true, in which case the bridge's own network must not run
	// another server.
	NetworkBridge = "bridge"
)

// BridgeLabelPrefix starts the host label that names, on that host, the
// bridge a "bridge" network attaches to: "kumoi.io/bridge.<network>=br0"
// overrides the network's spec.bridge on that host.
const BridgeLabelPrefix = "kumoi.io/bridge."

// Bounds of a network.
const (
	MinMTU = 576
	MaxMTU = 65535
	// MaxReservedRanges bounds spec.reserved.
	MaxReservedRanges = 64
	// MaxNetworkAddresses is the largest usable address count reported;
	// larger (IPv6) networks say this many.
	MaxNetworkAddresses = 1 << 62
)

// NetworkSpec is what a user wants of a network.
type NetworkSpec struct {
	// CIDR is the network's prefix, IPv4 (e.g. 10.10.0.0/24) or IPv6
	// (e.g. fd00:10::/64). Written in canonical (masked) form.
	CIDR string `json:"cidr"`
	// Gateway is the host side's address on the network (the libvirt
	// bridge's address in nat and isolated modes, the router in bridge
	// mode). Default: the first usable address. Never given to a VM.
	Gateway string `json:"gateway"`
	// DHCP: serve DHCP (with a fixed lease per VM NIC). Default true.
	DHCP *bool `json:"dhcp"`
	// Mode is nat (default), isolated or bridge.
	Mode string `json:"mode"`
	// Bridge is the host bridge of a bridge-mode network (required there;
	// a host label BridgeLabelPrefix+<network> overrides it per host).
	Bridge string `json:"bridge,omitempty"`
	// MTU of the network's links; 0: the hypervisor's default (1500).
	MTU int `json:"mtu,omitempty"`
	// Reserved ranges are never handed out (routers, appliances, DHCP
	// pools of other systems).
	Reserved []AddressRange `json:"reserved,omitempty"`
}

// AddressRange is an inclusive range of addresses; To omitted is From only.
type AddressRange struct {
	From string `json:"from"`
	To   string `json:"to,omitempty"`
}

// NetworkStatus is what the system observed of a network.
type NetworkStatus struct {
	// Allocated counts the addresses VM NICs hold; Capacity the usable
	// addresses (the prefix minus network, broadcast, gateway and
	// reserved addresses; at most MaxNetworkAddresses).
	Allocated int64 `json:"allocated"`
	Capacity  int64 `json:"capacity"`
	// Next is where the next dynamic allocation starts looking (next
	// fit, so a released address is not handed out again at once).
	Next string `json:"next,omitempty"`
	// Hosts is the network on each host that needs it, as its worker
	// last reported.
	Hosts map[string]HostResourceState `json:"hosts,omitempty"`
	// RemovedSeq is, for a host whose worker removed the network, the
	// sequence of that report (log protocol 11): the entry is gone from
	// Hosts, and a report sent before the removal is still refused.
	RemovedSeq map[string]uint64 `json:"removed_seq,omitempty"`
}

// HostResourceState is a network, image or volume on one host, as its
// worker reported it.
type HostResourceState struct {
	// State is one of the HostResource* states.
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	// Seq is the sequence of the host's last report recorded here
	// (ResourceReport.Seq; log protocol 11): an older one is refused.
	Seq uint64 `json:"seq,omitempty"`
}

// States of a network, image or volume on a host.
const (
	HostResourceReady    = "ready"     // defined, active, verified
	HostResourcePending  = "pending"   // being created or fetched
	HostResourceMissing  = "missing"   // removed behind Kumoi's back (and not recreated)
	HostResourceFailed   = "failed"    // could not be created, fetched or verified
	HostResourceRemoved  = "removed"   // no longer needed there and removed
	HostResourceRecreate = "recreated" // removed behind Kumoi's back and recreated
)

// NetworkModes lists the modes, for messages.
var NetworkModes = []string{NetworkNAT, NetworkIsolated, NetworkBridge}

// Default fills in mode nat, dhcp true and the gateway (the first usable
// address), and writes the CIDR masked.
func (s *NetworkSpec) Default() {
	if s.Mode == "" {
		s.Mode = NetworkNAT
	}
	if s.DHCP == nil {
		t := true
		s.DHCP = &t
	}
	p, err := netip.ParsePrefix(s.CIDR)
	if err != nil {
		return
	}
	if s.Gateway == "" {
		if first, ok := FirstHostAddr(p.Masked()); ok {
			s.Gateway = first.String()
		}
	}
}

// Canonicalize writes the CIDR masked (10.10.0.7/24 is 10.10.0.0/24).
func (s *NetworkSpec) Canonicalize() {
	if p, err := netip.ParsePrefix(s.CIDR); err == nil {
		s.CIDR = p.Masked().String()
	}
	s.Default()
}

// DHCPOn reports whether the network serves DHCP.
func (s *NetworkSpec) DHCPOn() bool { return s.DHCP == nil || *s.DHCP }

// Prefix returns the parsed CIDR (masked); ok false if it does not parse.
func (s *NetworkSpec) Prefix() (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s.CIDR)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

// Validate checks the prefix, gateway, mode, MTU and reserved ranges.
func (s *NetworkSpec) Validate() error {
	p, err := netip.ParsePrefix(s.CIDR)
	if err != nil {
		return Errorf("spec.cidr", "must be a prefix such as 10.10.0.0/24 or fd00:10::/64 (got %q)", s.CIDR)
	}
	if p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return Errorf("spec.cidr", "must be a plain IPv4 or IPv6 prefix (got %q)", s.CIDR)
	}
	bits := p.Addr().BitLen()
	switch {
	case bits == 32 && p.Bits() > 30:
		return Errorf("spec.cidr", "an IPv4 network needs a prefix of /30 or shorter, to hold a gateway and a VM (got /%d)", p.Bits())
	case bits == 32 && p.Bits() < 8:
		return Errorf("spec.cidr", "an IPv4 network may be at most a /8 (got /%d)", p.Bits())
	case bits == 128 && p.Bits() > 126:
		return Errorf("spec.cidr", "an IPv6 network needs a prefix of /126 or shorter (got /%d)", p.Bits())
	case bits == 128 && p.Bits() < 64:
		return Errorf("spec.cidr", "an IPv6 network may be at most a /64 (got /%d)", p.Bits())
	}
	p = p.Masked()
	gw, err := netip.ParseAddr(s.Gateway)
	if err != nil {
		return Errorf("spec.gateway", "must be an address inside %s (got %q)", p, s.Gateway)
	}
	if !p.Contains(gw) {
		return Errorf("spec.gateway", "%s is outside the network %s", gw, p)
	}
	if !UsableAddr(p, gw) {
		return Errorf("spec.gateway", "%s is the network's own or broadcast address; give a host address of %s", gw, p)
	}
	switch s.Mode {
	case NetworkNAT, NetworkIsolated:
		if s.Bridge != "" {
			return Errorf("spec.bridge", "is for mode bridge only (mode is %s: Kumoi makes the network's own bridge)", s.Mode)
		}
	case NetworkBridge:
		if s.Bridge == "" {
			return Errorf("spec.bridge", "is required with mode bridge: name the existing host bridge (e.g. br0); a host label %s<network> overrides it per host", BridgeLabelPrefix)
		}
		if err := ValidateBridgeName(s.Bridge); err != nil {
			return Errorf("spec.bridge", "%v", err)
		}
	default:
		return Errorf("spec.mode", "must be one of %s (got %q)", strings.Join(NetworkModes, ", "), s.Mode)
	}
	if s.MTU != 0 && (s.MTU < MinMTU || s.MTU > MaxMTU) {
		return Errorf("spec.mtu", "must be between %d and %d, or omitted for the default (got %d)", MinMTU, MaxMTU, s.MTU)
	}
	if bits == 128 && s.MTU != 0 && s.MTU < 1280 {
		return Errorf("spec.mtu", "must be at least 1280 on an IPv6 network (got %d)", s.MTU)
	}
	if len(s.Reserved) > MaxReservedRanges {
		return Errorf("spec.reserved", "has %d ranges; the limit is %d", len(s.Reserved), MaxReservedRanges)
	}
	for i, r := range s.Reserved {
		if _, _, err := r.Bounds(p); err != nil {
			return Errorf("spec.reserved["+itoa(i)+"]", "%v", err)
		}
	}
	return nil
}

// ValidateBridgeName checks a Linux interface name: 1-15 bytes, no '/',
// whitespace or ':'.
func ValidateBridgeName(n string) error {
	if n == "" || len(n) > 15 || n == "." || n == ".." || strings.ContainsAny(n, "/: \t\n\x00") {
		return Errorf("bridge", "%q is not an interface name: 1-15 characters without '/', ':' or spaces", n)
	}
	for _, r := range n {
		if r < 0x21 || r > 0x7e {
			return Errorf("bridge", "%q is not an interface name: use printable ASCII", n)
		}
	}
	return nil
}

// Bounds parses the range inside p: from ≤ to, both in p.
func (r AddressRange) Bounds(p netip.Prefix) (from, to netip.Addr, err error) {
	from, err = netip.ParseAddr(r.From)
	if err != nil {
		return from, to, Errorf("from", "must be an address (got %q)", r.From)
	}
	to = from
	if r.To != "" {
		if to, err = netip.ParseAddr(r.To); err != nil {
			return from, to, Errorf("to", "must be an address (got %q)", r.To)
		}
	}
	if !p.Contains(from) || !p.Contains(to) {
		return from, to, Errorf("from", "%s-%s is not inside the network %s", from, to, p)
	}
	if to.Less(from) {
		return from, to, Errorf("to", "%s comes before from %s", to, from)
	}
	return from, to, nil
}

// FirstHostAddr is the first address of p a host may hold (the one after
// the network address).
func FirstHostAddr(p netip.Prefix) (netip.Addr, bool) {
	a := p.Masked().Addr().Next()
	if !a.IsValid() || !p.Contains(a) {
		return netip.Addr{}, false
	}
	return a, true
}

// UsableAddr reports whether a is a host address of p: inside it, not the
// network address (the IPv6 subnet-router anycast address) and, for IPv4,
// not the broadcast address.
func UsableAddr(p netip.Prefix, a netip.Addr) bool {
	p = p.Masked()
	if !p.Contains(a) || a == p.Addr() {
		return false
	}
	if a.Is4() && a == LastAddr(p) {
		return false
	}
	return true
}

// LastAddr is the highest address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Capacity is the number of addresses of the network that VMs may hold:
// host addresses minus the gateway and the reserved ones, saturating at
// MaxNetworkAddresses.
func (s *NetworkSpec) Capacity() int64 {
	p, ok := s.Prefix()
	if !ok {
		return 0
	}
	total := new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
	total.Sub(total, big.NewInt(1)) // network address
	if p.Addr().Is4() {
		total.Sub(total, big.NewInt(1)) // broadcast
	}
	excluded := map[netip.Addr]bool{}
	if gw, err := netip.ParseAddr(s.Gateway); err == nil && UsableAddr(p, gw) {
		excluded[gw] = true
		total.Sub(total, big.NewInt(1))
	}
	// Reserved ranges, without double counting overlaps or the gateway:
	// counted address by address up to a bound, which is plenty for
	// ranges anyone reserves (a huge IPv6 range saturates below).
	const maxCount = 1 << 16
	for _, r := range s.Reserved {
		from, to, err := r.Bounds(p)
		if err != nil {
			continue
		}
		n := 0
		for a := from; a.IsValid() && !to.Less(a) && n < maxCount; a = a.Next() {
			n++
			if UsableAddr(p, a) && !excluded[a] {
				excluded[a] = true
				total.Sub(total, big.NewInt(1))
			}
		}
	}
	if total.Sign() < 0 {
		return 0
	}
	if !total.IsInt64() || total.Int64() > MaxNetworkAddresses {
		return MaxNetworkAddresses
	}
	return total.Int64()
}

// IsReserved reports whether a lies in one of the reserved ranges.
func (s *NetworkSpec) IsReserved(a netip.Addr) bool {
	p, ok := s.Prefix()
	if !ok {
		return false
	}
	for _, r := range s.Reserved {
		from, to, err := r.Bounds(p)
		if err == nil && !a.Less(from) && !to.Less(a) {
			return true
		}
	}
	return false
}

// Assignable reports whether a VM may be given address a: a host address
// of the network, not the gateway, not reserved.
func (s *NetworkSpec) Assignable(a netip.Addr) bool {
	p, ok := s.Prefix()
	if !ok || !UsableAddr(p, a) || s.IsReserved(a) {
		return false
	}
	gw, err := netip.ParseAddr(s.Gateway)
	return err != nil || gw != a
}

// PrefixesOverlap reports whether two prefixes share an address.
func PrefixesOverlap(a, b netip.Prefix) bool { return a.Overlaps(b) }

func itoa(i int) string { return strconv.Itoa(i) }

func init() {
	Register(&KindInfo{
		Kind:      KindNetwork,
		Plural:    "networks",
		NewSpec:   func() Spec { return new(NetworkSpec) },
		NewStatus: func() any { return new(NetworkStatus) },
		InitialStatus: func(time.Time) any {
			return &NetworkStatus{}
		},
	})
}
