package cli

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/libvirt"
)

// newLibvirtDriver connects to --libvirt-uri, announcing memMiB of memory
// (--memory, already parsed; 0: what the host has). A hypervisor that
// cannot be reached does not fail here: the worker keeps retrying, logs
// why, and does not join the pool until the driver is healthy.
func newLibvirtDriver(c *cli.Context, nodeID string, memMiB int64, obs io.Writer) (hypervisor.Driver, error) {
	d, err := libvirt.New(libvirt.Options{URI: c.String("libvirt-uri"), Host: nodeID, CPUs: c.Int("cpus"), MemoryMiB: memMiB, ObservationLog: obs, StorageDir: poolDir(c),
		MigrationURI: c.String("migration-uri"), MigrationAddress: c.String("migration-address")})
	if err != nil {
		return nil, err
	}
	return d, nil
}
