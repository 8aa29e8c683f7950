package sim

import (
	"context"

	"github.com/kumoi/kumoi/hypervisor"
)

// TODO(issue 13): networks and volumes. Stubs so that the contract
// compiles while the driver is written.

// EnsureNetwork implements hypervisor.NetworkDriver.
func (d *Driver) EnsureNetwork(ctx context.Context, def hypervisor.NetworkDef) error {
	return hypervisor.ErrUnsupported
}

// RemoveNetwork implements hypervisor.NetworkDriver.
func (d *Driver) RemoveNetwork(ctx context.Context, name string) error {
	return hypervisor.ErrUnsupported
}

// ListNetworks implements hypervisor.NetworkDriver.
func (d *Driver) ListNetworks(ctx context.Context) ([]hypervisor.NetworkInfo, error) {
	return nil, nil
}

// EnsureVolume implements hypervisor.StorageDriver.
func (d *Driver) EnsureVolume(ctx context.Context, def hypervisor.VolumeDef) (hypervisor.VolumeInfo, error) {
	return hypervisor.VolumeInfo{}, hypervisor.ErrUnsupported
}

// RemoveVolume implements hypervisor.StorageDriver.
func (d *Driver) RemoveVolume(ctx context.Context, name string) error {
	return hypervisor.ErrUnsupported
}

// ListVolumes implements hypervisor.StorageDriver.
func (d *Driver) ListVolumes(ctx context.Context) ([]hypervisor.VolumeInfo, error) {
	return nil, nil
}
