package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/sim"
)

// newDriver builds the worker's hypervisor driver from the flags.
func newDriver(c *cli.Context, nodeID string, memMiB int64) (hypervisor.Driver, error) {
	switch c.String("hypervisor") {
	case "sim":
		return sim.New(sim.Options{Host: nodeID, CPUs: c.Int("cpus"), MemoryMiB: memMiB}), nil
	case "libvirt":
		return newLibvirtDriver(c, nodeID)
	}
	return nil, usagef("--hypervisor %q: use sim or libvirt", c.String("hypervisor"))
}
