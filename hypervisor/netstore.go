package hypervisor

import (
	"context"
)

// NetworkDriver is the part of Driver that manages a host's virtual
// networks: libvirt networks named NetworkName(kumoi network). Every
// method is idempotent towards its target state.
type NetworkDriver interface {
	// EnsureNetwork defines and starts the network if it is missing or
	// stopped, and makes its definition match def (DHCP host entries
	// added and removed live where the hypervisor can; otherwise the
	// network is redefined and restarted while no active domain uses it).
	// A network of that name not made by Kumoi fails with ErrExists; a bad
	// def with ErrInvalidSpec.
	EnsureNetwork(ctx context.Context, def NetworkDef) error
	// RemoveNetwork stops and undefines a network (a no-op if it does not
	// exist). ErrInvalidState if an active domain still uses it; ErrExists
	// if the network is not Kumoi's (NetworkInfo.Foreign): it is left alone.
	RemoveNetwork(ctx context.Context, name string) error
	// ListNetworks returns the networks on the host with Kumoi names
	// (DomainPrefix), sorted by name; one not made by Kumoi is marked
	// Foreign.
	ListNetworks(ctx context.Context) ([]NetworkInfo, error)
}

// StorageDriver is the part of Driver that manages the volumes in the
// host's storage pool "kumoi" (a directory pool), created on first use.
type StorageDriver interface {
	// EnsureVolume creates the volume if it is missing (an empty qcow2
	// disk, or a qcow2 overlay on def.Backing) and grows it to
	// def.SizeMiB if it is smaller; it never shrinks one. It returns the
	// volume as it now is. A driver without CapVolumeResize fails to grow
	// one with ErrUnsupported (and returns it as it is). An existing
	// volume keeps its backing whatever def says (VolumeInfo.Backing
	// tells). A bad def fails with ErrInvalidSpec.
	EnsureVolume(ctx context.Context, def VolumeDef) (VolumeInfo, error)
	// RemoveVolume deletes a volume (a no-op if it does not exist).
	// ErrInvalidState if an active domain has it as a disk.
	RemoveVolume(ctx context.Context, name string) error
	// ListVolumes returns every volume in the pool, sorted by name.
	ListVolumes(ctx context.Context) ([]VolumeInfo, error)
}

// StoragePool is the name of the libvirt storage pool Kumoi's volumes
// live in.
const StoragePool = "kumoi"

// NetworkName is the libvirt network of a Kumoi network: "kumoi-<name>".
func NetworkName(network string) string { return DomainPrefix + network }

// Network modes (NetworkDef.Mode).
const (
	NetModeNAT      = "nat"
	NetModeIsolated = "isolated"
	NetModeBridge   = "bridge"
)

// NetworkDef is what EnsureNetwork makes.
type NetworkDef struct {
	Name string `json:"name"` // NetworkName(kumoi network)
	// Mode is nat, isolated (a bridge of its own, named Bridge) or bridge
	// (onto the existing host bridge Bridge; no address, no DHCP).
	Mode   string `json:"mode"`
	Bridge string `json:"bridge"`
	// CIDR and Gateway: the bridge's address (nat, isolated).
	CIDR    string `json:"cidr,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	// DHCP serves one fixed lease per host entry (nat, isolated), and
	// nothing else: no dynamic range.
	DHCP  bool       `json:"dhcp"`
	Hosts []DHCPHost `json:"hosts,omitempty"` // sorted by MAC
	MTU   int        `json:"mtu,omitempty"`
}

// DHCPHost binds a MAC to an address (and a host name).
type DHCPHost struct {
	MAC  string `json:"mac"`
	IP   string `json:"ip"`
	Name string `json:"name,omitempty"`
}

// NetworkInfo is what a driver observes of one network.
type NetworkInfo struct {
	Name   string     `json:"name"`
	Active bool       `json:"active"`
	Mode   string     `json:"mode"`
	Bridge string     `json:"bridge"`
	CIDR   string     `json:"cidr,omitempty"`
	Hosts  []DHCPHost `json:"hosts,omitempty"`
	// Foreign is true for a network with a Kumoi name that Kumoi did not
	// make (no Kumoi marker): EnsureNetwork and RemoveNetwork refuse it
	// with ErrExists.
	Foreign bool `json:"foreign,omitempty"`
}

// VolumeDef is what EnsureVolume makes.
type VolumeDef struct {
	// Name is the volume's file name in the pool (e.g.
	// "<cluster>_<volume id>.qcow2").
	Name    string `json:"name"`
	SizeMiB int64  `json:"size_mib"`
	// Backing, if set, is the absolute path of a cached image the volume
	// is a qcow2 overlay on; BackingFormat is its format.
	Backing       string      `json:"backing,omitempty"`
	BackingFormat ImageFormat `json:"backing_format,omitempty"`
}

// VolumeInfo is what a driver observes of one volume.
type VolumeInfo struct {
	Name    string      `json:"name"`
	Path    string      `json:"path"` // what a domain's disk points at
	Format  ImageFormat `json:"format"`
	SizeMiB int64       `json:"size_mib"` // virtual size
	Backing string      `json:"backing,omitempty"`
}

// DomainDisk is one disk of a domain, in order: vda, vdb, ...
type DomainDisk struct {
	Path   string      `json:"path"`
	Format ImageFormat `json:"format"`
}

// DomainNIC is one network interface of a domain, on a libvirt network.
type DomainNIC struct {
	Network string `json:"network"` // NetworkName(kumoi network)
	MAC     string `json:"mac"`
	MTU     int    `json:"mtu,omitempty"`
}

// DefaultStorageDir is the directory of the storage pool "kumoi" when a
// driver is given none.
const DefaultStorageDir = "/var/lib/kumoi/storage/volumes"
