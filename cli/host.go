package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

func hostCommand() *cli.Command {
	return &cli.Command{
		Name:      "host",
		Usage:     "inspect the hypervisor hosts, drain and enable them",
		UsageText: "kumoi host <list|get|vms|drain|enable|update> [options] [NAME]",
		Description: `A host object appears when a healthy worker joins the cluster, and says
whether the host is ready (or down, left, draining), how much CPU and memory
it has and how much of it its VMs hold. Draining a host stops new placements
on it; its VMs stay.

Examples:
   kumoi host list
   kumoi host get hv-1 -o yaml
   kumoi host vms hv-1
   kumoi host drain hv-1
   kumoi host enable hv-1
   kumoi host update hv-1 --cpu-overcommit 4`,
		Subcommands: []*cli.Command{
			hostGetCommand(),
			hostListCommand(),
			hostVMsCommand(),
			hostDrainCommand(),
			hostEnableCommand(),
			hostUpdateCommand(),
		},
	}
}

func hostGetCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "get",
		Usage:     "show one host",
		UsageText: "kumoi host get NAME [--stale] [-o table|json|yaml]",
		Description: `Shows a host: the columns of 'kumoi host list'. -o json or -o yaml prints the
whole object, with the reason for its state and its overcommit ratios.

Examples:
   kumoi host get hv-1
   kumoi host get hv-1 -o json`,
		Flags:  []cli.Flag{staleFlag()},
		Action: getObject(resource.KindHost),
	})
}

func hostListCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "list hosts",
		UsageText: "kumoi host list [-l SELECTOR] [--stale] [-o table|json|yaml]",
		Description: `Lists hosts sorted by name. Columns: STATE (ready, down, left, draining),
SCHEDULABLE (no after 'kumoi host drain'), CPUS and MEMORY as allocated/capacity
(what the VMs placed there hold, out of the capacity after overcommit), DRIVER
(the hypervisor driver), ADDRESS (the worker's), SINCE (how long the host has
been in its state). With -o json the output is a JSON array of host objects.

Examples:
   kumoi host list
   kumoi host list -l rack=a -o json`,
		Flags:  []cli.Flag{selectorFlag(), staleFlag()},
		Action: listObjects(resource.KindHost),
	})
}

func hostVMsCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "vms",
		Usage:     "list the VMs placed on a host",
		UsageText: "kumoi host vms NAME [-l SELECTOR] [--stale] [-o table|json|yaml]",
		Description: `Lists the VMs placed on a host, as 'kumoi vm list --host NAME' does.

Examples:
   kumoi host vms hv-1
   kumoi host vms hv-1 -l app=web -o json`,
		Flags:  []cli.Flag{selectorFlag(), staleFlag()},
		Action: hostVMs,
	})
}

// hostVMs lists the VMs placed on the host NAME.
func hostVMs(c *cli.Context) error {
	name, err := oneName(c, "host")
	if err != nil {
		return err
	}
	if err := resource.ValidateName(name); err != nil {
		return usagef("invalid host name: %s", fieldMsg(err))
	}
	return listVMsOrObjects(c, resource.KindVM, name)
}

func hostDrainCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "drain",
		Usage:     "take no new VMs on a host",
		UsageText: "kumoi host drain NAME [-o table|json|yaml]",
		Description: `Marks the host unschedulable (spec.unschedulable=true): the scheduler places
no new VMs on it. The VMs already there stay where they are and keep running;
moving them off comes with a later scheduler. 'kumoi host enable' undoes it.
The change is a read-modify-write with compare-and-set, retried when the host
changed in between.

Examples:
   kumoi host drain hv-1
   kumoi host drain hv-1 -o json`,
		Action: func(c *cli.Context) error { return setSchedulable(c, false) },
	})
}

func hostEnableCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "enable",
		Usage:     "let the scheduler place VMs on a drained host again",
		UsageText: "kumoi host enable NAME [-o table|json|yaml]",
		Description: `Marks the host schedulable again (spec.unschedulable=false), undoing
'kumoi host drain'. New VMs are placed on it once it is also ready.

Example:
   kumoi host enable hv-1`,
		Action: func(c *cli.Context) error { return setSchedulable(c, true) },
	})
}

func hostUpdateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "update",
		Usage:     "change a host's overcommit ratios",
		UsageText: "kumoi host update NAME [--cpu-overcommit R] [--memory-overcommit R] [-o table|json|yaml]",
		Description: `Sets how far placements may overcommit the host: the scheduler and the state
machine allow VMs up to capacity x ratio (1 = no overcommit, the default;
at most 64). Lowering a ratio below what is placed leaves the VMs where
they are but takes no new ones. A read-modify-write with compare-and-set.

Examples:
   kumoi host update hv-1 --cpu-overcommit 4
   kumoi host update hv-1 --cpu-overcommit 2 --memory-overcommit 1.5`,
		Flags: []cli.Flag{
			&cli.Float64Flag{Name: "cpu-overcommit", Usage: "CPU overcommit ratio R (1-64)"},
			&cli.Float64Flag{Name: "memory-overcommit", Usage: "memory overcommit ratio R (1-64)"},
		},
		Action: hostUpdate,
	})
}

// setSchedulable is host drain (false) and host enable (true).
func setSchedulable(c *cli.Context, schedulable bool) error {
	name, s, err := connectNamed(c, "host")
	if err != nil {
		return err
	}
	defer s.close()
	changed := true
	o, err := updateSpec(s, resource.KindHost, name, func(cur *resource.Object) (map[string]any, error) {
		spec, _ := resource.HostStateOf(cur)
		if spec.Unschedulable == !schedulable {
			changed = false
			return nil, nil
		}
		changed = true
		return map[string]any{"unschedulable": !schedulable}, nil
	})
	if err != nil {
		return err
	}
	if done, err := printData(c, o); done {
		return err
	}
	w := writer(c)
	switch {
	case schedulable && !changed:
		_, err = fmt.Fprintf(w, "host %q is already schedulable; nothing to change\n", name)
	case schedulable:
		_, err = fmt.Fprintf(w, "host %q is schedulable again: new VMs may be placed on it\n", name)
	default:
		verb := "drained"
		if !changed {
			verb = "is already drained"
		}
		_, err = fmt.Fprintf(w, "host %q %s: no new VMs will be placed on it; %s\n", name, verb, vmsStay(s, name))
	}
	return err
}

// vmsStay says what becomes of the VMs on a drained host.
func vmsStay(s *session, host string) string {
	const later = " (moving VMs off a host comes with the scheduler)"
	vms, _, err := s.client.List(s.ctx, resource.KindVM, &client.QueryOptions{Host: host})
	switch {
	case err != nil:
		return "the VMs on it stay and keep running" + later
	case len(vms) == 0:
		return "no VMs are placed on it"
	case len(vms) == 1:
		return "the 1 VM on it stays and keeps running" + later
	}
	return fmt.Sprintf("the %d VMs on it stay and keep running%s", len(vms), later)
}

// hostUpdate changes a host's overcommit ratios.
func hostUpdate(c *cli.Context) error {
	name, err := oneName(c, "host")
	if err != nil {
		return err
	}
	changes := map[string]any{}
	for flag, field := range map[string]string{"cpu-overcommit": "cpu_overcommit", "memory-overcommit": "memory_overcommit"} {
		if c.IsSet(flag) {
			v := c.Float64(flag)
			if v < 1 || v > resource.MaxOvercommit {
				return usagef("--%s %g: must be between 1 and %d", flag, v, resource.MaxOvercommit)
			}
			changes[field] = v
		}
	}
	if len(changes) == 0 {
		return usagef("nothing to change: give --cpu-overcommit and/or --memory-overcommit")
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	o, err := updateSpec(s, resource.KindHost, name, func(*resource.Object) (map[string]any, error) { return changes, nil })
	if err != nil {
		return err
	}
	return printObject(c, o)
}
