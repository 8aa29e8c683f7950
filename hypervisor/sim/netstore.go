package sim

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/kumoi/kumoi/hypervisor"
)

// network is a simulated libvirt network.
type network struct {
	def    hypervisor.NetworkDef
	kumoi  bool // made by EnsureNetwork (foreign ones by DefineForeignNetwork)
	active bool
}

func (n *network) info() hypervisor.NetworkInfo {
	in := hypervisor.NetworkInfo{Name: n.def.Name, Active: n.active, Mode: n.def.Mode, Bridge: n.def.Bridge, CIDR: n.def.CIDR, Foreign: !n.kumoi}
	if len(n.def.Hosts) > 0 {
		in.Hosts = slices.Clone(n.def.Hosts)
	}
	return in
}

// volume is a simulated qcow2 volume in the pool.
type volume struct {
	info hypervisor.VolumeInfo
}

// Operations on networks and volumes, for fault injection.
const (
	OpEnsureNetwork Op = "ensure-network"
	OpRemoveNetwork Op = "remove-network"
	OpListNetworks  Op = "list-networks"
	OpEnsureVolume  Op = "ensure-volume"
	OpRemoveVolume  Op = "remove-volume"
	OpListVolumes   Op = "list-volumes"
)

// ---- knobs ----------------------------------------------------------------

// VanishNetwork removes a network behind the driver's back, as an
// administrator's `virsh net-destroy` and `net-undefine` would. Running
// domains keep running (their taps stay up, as on libvirt), but cannot be
// started again until the network is back.
func (d *Driver) VanishNetwork(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.networks[name]; !ok {
		return fmt.Errorf("vanish network %s: %w", name, hypervisor.ErrMissingResource)
	}
	delete(d.networks, name)
	return nil
}

// StopNetwork stops a network behind the driver's back (`virsh
// net-destroy`): it stays defined, inactive.
func (d *Driver) StopNetwork(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.networks[name]
	if !ok {
		return fmt.Errorf("stop network %s: %w", name, hypervisor.ErrMissingResource)
	}
	n.active = false
	return nil
}

// DefineForeignNetwork defines and starts a network not made by Kumoi
// (no Kumoi marker), as someone running virsh would.
func (d *Driver) DefineForeignNetwork(def hypervisor.NetworkDef) error {
	if err := def.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.networks[def.Name]; ok {
		return fmt.Errorf("define network %s: %w", def.Name, hypervisor.ErrExists)
	}
	d.networks[def.Name] = &network{def: def.Normal(), active: true}
	return nil
}

// VanishVolume deletes a volume behind the driver's back (`virsh
// vol-delete`, or its file removed and the pool refreshed). Domains using
// it keep running; they cannot be started again.
func (d *Driver) VanishVolume(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.volumes[name]; !ok {
		return fmt.Errorf("vanish volume %s: %w", name, hypervisor.ErrMissingResource)
	}
	delete(d.volumes, name)
	return nil
}

// ---- hypervisor.NetworkDriver -----------------------------------------------

// EnsureNetwork implements hypervisor.NetworkDriver.
func (d *Driver) EnsureNetwork(ctx context.Context, def hypervisor.NetworkDef) error {
	what := "ensure network " + def.Name
	if err := d.enter(ctx, OpEnsureNetwork, what); err != nil {
		return err
	}
	if err := def.Validate(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	def = def.Normal()
	d.mu.Lock()
	defer d.mu.Unlock()
	if def.Mode != hypervisor.NetModeBridge {
		for name, o := range d.networks {
			if name != def.Name && o.active && o.def.Mode != hypervisor.NetModeBridge && o.def.Bridge == def.Bridge {
				return fmt.Errorf("%s: %w: bridge %s is used by network %s", what, hypervisor.ErrExists, def.Bridge, name)
			}
		}
	}
	n, ok := d.networks[def.Name]
	switch {
	case !ok:
		d.networks[def.Name] = &network{def: def, kumoi: true, active: true}
		return nil
	case !n.kumoi:
		return fmt.Errorf("%s: %w: a network of that name not made by Kumoi", what, hypervisor.ErrExists)
	}
	if structural(n.def) != structural(def) {
		// Live, libvirt can change DHCP hosts only; anything else means a
		// redefinition and a restart, which would cut active domains off.
		if users := d.activeUsersLocked(def.Name); len(users) > 0 && n.active {
			return fmt.Errorf("%s: %w: changing mode, bridge, address or MTU restarts the network, used by active domains %s",
				what, hypervisor.ErrInvalidState, strings.Join(users, ", "))
		}
	}
	n.def, n.active = def, true
	return nil
}

// structuralNet is the part of a definition that cannot change live (as
// on libvirt: DHCP hosts, and with them DHCP itself, can).
type structuralNet struct {
	mode, bridge, cidr, gateway string
	mtu                         int
}

func structural(def hypervisor.NetworkDef) structuralNet {
	return structuralNet{def.Mode, def.Bridge, def.CIDR, def.Gateway, def.MTU}
}

// activeUsersLocked names the active domains with a NIC on network.
func (d *Driver) activeUsersLocked(network string) []string {
	var users []string
	for name, dom := range d.domains {
		if dom.state.Active() && slices.ContainsFunc(dom.live.NICs, func(n hypervisor.DomainNIC) bool { return n.Network == network }) {
			users = append(users, name)
		}
	}
	sort.Strings(users)
	return users
}

// RemoveNetwork implements hypervisor.NetworkDriver.
func (d *Driver) RemoveNetwork(ctx context.Context, name string) error {
	what := "remove network " + name
	if err := d.enter(ctx, OpRemoveNetwork, what); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.networks[name]
	switch {
	case !ok:
		return nil
	case !n.kumoi:
		return fmt.Errorf("%s: %w: a network of that name not made by Kumoi", what, hypervisor.ErrExists)
	}
	if users := d.activeUsersLocked(name); len(users) > 0 {
		return fmt.Errorf("%s: %w: used by active domains %s", what, hypervisor.ErrInvalidState, strings.Join(users, ", "))
	}
	delete(d.networks, name)
	return nil
}

// ListNetworks implements hypervisor.NetworkDriver.
func (d *Driver) ListNetworks(ctx context.Context) ([]hypervisor.NetworkInfo, error) {
	if err := d.enter(ctx, OpListNetworks, "list networks"); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []hypervisor.NetworkInfo{}
	for name, n := range d.networks {
		if strings.HasPrefix(name, hypervisor.DomainPrefix) {
			out = append(out, n.info())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ---- hypervisor.StorageDriver -----------------------------------------------

// EnsureVolume implements hypervisor.StorageDriver.
func (d *Driver) EnsureVolume(ctx context.Context, def hypervisor.VolumeDef) (hypervisor.VolumeInfo, error) {
	what := "ensure volume " + def.Name
	if err := d.enter(ctx, OpEnsureVolume, what); err != nil {
		return hypervisor.VolumeInfo{}, err
	}
	if err := def.Validate(); err != nil {
		return hypervisor.VolumeInfo{}, fmt.Errorf("%s: %w", what, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.volumes[def.Name]
	if !ok {
		v = &volume{info: hypervisor.VolumeInfo{
			Name: def.Name, Path: filepath.Join(d.opts.StorageDir, def.Name),
			Format: hypervisor.ImageQCOW2, SizeMiB: def.SizeMiB, Backing: def.Backing,
		}}
		d.volumes[def.Name] = v
	}
	if v.info.SizeMiB < def.SizeMiB { // grow; never shrink
		if !d.caps.Has(hypervisor.CapVolumeResize) {
			return v.info, fmt.Errorf("%s: grow from %d to %d MiB: %w: %s", what, v.info.SizeMiB, def.SizeMiB,
				hypervisor.ErrUnsupported, hypervisor.CapVolumeResize)
		}
		v.info.SizeMiB = def.SizeMiB
	}
	return v.info, nil
}

// RemoveVolume implements hypervisor.StorageDriver. A volume an active
// domain uses is refused with ErrInvalidState.
func (d *Driver) RemoveVolume(ctx context.Context, name string) error {
	what := "remove volume " + name
	if err := d.enter(ctx, OpRemoveVolume, what); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.volumes[name]
	if !ok {
		return nil
	}
	var users []string
	for dn, dom := range d.domains {
		if dom.state.Active() && slices.ContainsFunc(dom.live.Disks, func(dk hypervisor.DomainDisk) bool { return dk.Path == v.info.Path }) {
			users = append(users, dn)
		}
	}
	if len(users) > 0 {
		sort.Strings(users)
		return fmt.Errorf("%s: %w: used by active domains %s", what, hypervisor.ErrInvalidState, strings.Join(users, ", "))
	}
	delete(d.volumes, name)
	return nil
}

// ListVolumes implements hypervisor.StorageDriver.
func (d *Driver) ListVolumes(ctx context.Context) ([]hypervisor.VolumeInfo, error) {
	if err := d.enter(ctx, OpListVolumes, "list volumes"); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]hypervisor.VolumeInfo, 0, len(d.volumes))
	for _, v := range d.volumes {
		out = append(out, v.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// missingLocked says which network or volume a start of spec would not
// find: a NIC's network missing or inactive, a disk under the pool's
// directory that is not a volume. Disks elsewhere are taken as they are
// (the simulator has no files to check).
func (d *Driver) missingLocked(spec hypervisor.DomainSpec) error {
	for i, nic := range spec.NICs {
		n, ok := d.networks[nic.Network]
		switch {
		case !ok:
			return fmt.Errorf("%w: nics[%d]: network %s not found", hypervisor.ErrMissingResource, i, nic.Network)
		case !n.active:
			return fmt.Errorf("%w: nics[%d]: network %s is not active", hypervisor.ErrMissingResource, i, nic.Network)
		}
	}
	for i, dk := range spec.Disks {
		if filepath.Dir(dk.Path) != filepath.Clean(d.opts.StorageDir) {
			continue
		}
		if _, ok := d.volumes[filepath.Base(dk.Path)]; !ok {
			return fmt.Errorf("%w: disks[%d]: no volume %s in pool %s", hypervisor.ErrMissingResource, i, dk.Path, hypervisor.StoragePool)
		}
	}
	return nil
}
