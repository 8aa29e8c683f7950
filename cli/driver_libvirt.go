package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/hypervisor"
)

func newLibvirtDriver(c *cli.Context, nodeID string) (hypervisor.Driver, error) {
	return nil, usagef("--hypervisor libvirt (%s): the libvirt driver is not wired into this build yet; use --hypervisor sim", c.String("libvirt-uri"))
}
