package cli

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/libvirt"
	"github.com/kumoi/kumoi/resource"
)

// newLibvirtDriver connects to --libvirt-uri. A hypervisor that cannot be
// reached does not fail here: the worker keeps retrying, logs why, and does
// not join the pool until the driver is healthy.
func newLibvirtDriver(c *cli.Context, nodeID string, obs io.Writer) (hypervisor.Driver, error) {
	var mem int64
	if m := c.String("memory"); m != "" {
		v, err := resource.ParseMemoryMiB(m)
		if err != nil {
			return nil, usagef("--memory: %v", err)
		}
		mem = v
	}
	d, err := libvirt.New(libvirt.Options{URI: c.String("libvirt-uri"), Host: nodeID, CPUs: c.Int("cpus"), MemoryMiB: mem, ObservationLog: obs})
	if err != nil {
		return nil, err
	}
	return d, nil
}
