package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

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
		Description: `Shows a host: the columns of 'kumoi host list', then the reason for its
state, the timing it publishes (the worker's --fence-after, the controllers'
--host-down-grace) and, when the controllers run a --fence-command, the last
fencing of the host: its result, attempts, exit status, when it finished and
the start of its output. -o json or -o yaml prints the whole object (status
.fence, .state_index, .fence_after_ms, .down_grace_ms; docs/api.md).

Examples:
   kumoi host get hv-1
   kumoi host get hv-1 -o json`,
		Flags:  []cli.Flag{staleFlag()},
		Action: hostGet,
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
been in its state). When some host has been fenced by the controllers'
--fence-command, FENCE shows the last fencing of each host (succeeded,
failed or running, with its attempts: failed/2; "-" when none) and REASON
why the host is in its state. With -o json the output is a JSON array of
host objects.

Examples:
   kumoi host list
   kumoi host list -l rack=a -o json`,
		Flags:  []cli.Flag{selectorFlag(), staleFlag()},
		Action: hostList,
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

// hostGet shows one host: the list's columns, then its reason, timing and
// last fencing.
func hostGet(c *cli.Context) error {
	name, s, err := connectNamed(c, "host")
	if err != nil {
		return err
	}
	defer s.close()
	o, _, err := s.client.Get(s.ctx, resource.KindHost, name, &client.QueryOptions{Stale: c.Bool("stale")})
	if err != nil {
		return s.fail(objectErr(resource.KindHost, name, err))
	}
	if done, err := printData(c, o); done {
		return err
	}
	w := writer(c)
	if err := objectTable(w, resource.KindHost, []*resource.Object{o}, 0); err != nil {
		return err
	}
	_, st := resource.HostStateOf(o)
	return hostDetails(w, st)
}

// hostDetails writes a host's reason, published timing and last fencing,
// one "key: value" line each.
func hostDetails(w io.Writer, st *resource.HostStatus) error {
	var b strings.Builder
	if st.Reason != "" {
		fmt.Fprintf(&b, "reason:  %s\n", st.Reason)
	}
	if st.FenceAfterMS > 0 || st.DownGraceMS > 0 {
		fmt.Fprintf(&b, "timing:  worker --fence-after %s, controllers' --host-down-grace %s\n", msCell(st.FenceAfterMS), msCell(st.DownGraceMS))
	}
	if st.ImageDir != "" {
		fmt.Fprintf(&b, "images:  %s (the worker's --image-dir: its VMs boot files from there)\n", st.ImageDir)
	}
	if f := st.Fence; f != nil {
		period := "an earlier down period"
		if f.StateIndex == st.StateIndex {
			period = "its current " + st.State + " period"
		}
		fmt.Fprintf(&b, "fence:   %s after %d attempt%s (%s, since index %d)", f.State, f.Attempts, plural(f.Attempts), period, f.StateIndex)
		if f.State != resource.FenceRunning {
			fmt.Fprintf(&b, ", exit status %d, finished %s ago", f.ExitCode, ageCell(f.FinishedAt))
		} else {
			fmt.Fprintf(&b, ", started %s ago", ageCell(f.StartedAt))
		}
		b.WriteString("\n")
		if f.Reason != "" {
			fmt.Fprintf(&b, "         %s\n", f.Reason)
		}
		if out := strings.TrimSpace(f.Output); out != "" {
			lines := strings.Split(out, "\n")
			for i, l := range lines[:min(len(lines), 5)] {
				key := "         "
				if i == 0 {
					key = "output:  "
				}
				fmt.Fprintf(&b, "%s%s\n", key, strings.TrimRight(l, "\r"))
			}
			if len(lines) > 5 {
				fmt.Fprintf(&b, "         (%d more lines: -o json shows them)\n", len(lines)-5)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// msCell is a duration in milliseconds as Go prints it ("-": unknown).
func msCell(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

// hostList lists hosts: the usual table, with FENCE and REASON columns
// when some host has been fenced.
func hostList(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	sel := c.String("selector")
	if _, err := resource.ParseSelector(sel); err != nil {
		return usagef("invalid --selector: %v", err)
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	objs, _, err := s.client.List(s.ctx, resource.KindHost, &client.QueryOptions{Stale: c.Bool("stale"), Selector: sel})
	if err != nil {
		return s.fail(err)
	}
	fenced := false
	for _, o := range objs {
		if _, st := resource.HostStateOf(o); st.Fence != nil {
			fenced = true
		}
	}
	if !fenced {
		return printObjects(c, resource.KindHost, objs)
	}
	if done, err := printData(c, objs); done {
		return err
	}
	t := newFreeTextTable(writer(c), "NAME", "STATE", "SCHEDULABLE", "CPUS", "MEMORY", "DRIVER", "ADDRESS", "SINCE", "FENCE", "REASON")
	for _, o := range objs {
		spec, st := resource.HostStateOf(o)
		capa := resource.Schedulable(spec, st)
		fence := "-"
		if f := st.Fence; f != nil {
			fence = f.State + "/" + strconv.Itoa(f.Attempts)
			if f.StateIndex != st.StateIndex {
				fence += "(earlier)"
			}
		}
		t.row(o.Name, st.State, boolCell(!spec.Unschedulable),
			fmt.Sprintf("%d/%d", st.Allocated.CPUs, capa.CPUs),
			resource.FormatMiB(st.Allocated.MemoryMiB)+"/"+resource.FormatMiB(capa.MemoryMiB),
			st.Driver, st.Address, ageCell(st.Since), fence, shorten(st.Reason, reasonWidth))
	}
	return t.flush()
}
