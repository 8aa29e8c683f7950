package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/resource"
)

func hostCommand() *cli.Command {
	return &cli.Command{
		Name:      "host",
		Usage:     "inspect the hypervisor hosts",
		UsageText: "kumoi host <list|get> [options] [NAME]",
		Description: `A host object appears when a healthy worker joins the cluster. Its status says
whether it is ready, its capacity and what its VMs use (ALLOCATED).

Examples:
   kumoi host list
   kumoi host get hv-1 -o yaml`,
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:      "get",
				Usage:     "show one host",
				UsageText: "kumoi host get NAME [--stale] [-o table|json|yaml]",
				Description: `Shows a host. -o json or -o yaml prints the whole object.

Examples:
   kumoi host get hv-1
   kumoi host get hv-1 -o json`,
				Flags:  []cli.Flag{staleFlag()},
				Action: getObject(resource.KindHost),
			}),
			leaf(&cli.Command{
				Name:      "list",
				Aliases:   []string{"ls"},
				Usage:     "list hosts",
				UsageText: "kumoi host list [-l SELECTOR] [--stale] [-o table|json|yaml]",
				Description: `Lists hosts sorted by name: state, address, capacity (CPUS, MEMORY), what is
allocated to VMs, and whether new VMs may be placed there (SCHEDULABLE).

Examples:
   kumoi host list
   kumoi host list -l rack=a -o json`,
				Flags:  []cli.Flag{selectorFlag(), staleFlag()},
				Action: listObjects(resource.KindHost),
			}),
		},
	}
}
