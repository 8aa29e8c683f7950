package cli

import (
	"context"
	"encoding/json"
	"errors"
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
		UsageText: "kumoi host <list|get|vms|drain|enable|rebalance|update> [options] [NAME]",
		Description: `A host object appears when a healthy worker joins the cluster, and says
whether the host is ready (or down, left, draining), how much CPU and memory
it has and how much of it its VMs hold. Draining a host stops new placements
on it; with --migrate the leader also moves its VMs off. rebalance moves VMs
between hosts toward the cluster's placement strategy.

Examples:
   kumoi host list
   kumoi host get hv-1 -o yaml
   kumoi host vms hv-1
   kumoi host drain hv-1
   kumoi host drain hv-1 --migrate --wait
   kumoi host enable hv-1
   kumoi host rebalance --dry-run
   kumoi host update hv-1 --cpu-overcommit 4`,
		Subcommands: []*cli.Command{
			hostGetCommand(),
			hostListCommand(),
			hostVMsCommand(),
			hostDrainCommand(),
			hostEnableCommand(),
			hostRebalanceCommand(),
			hostUpdateCommand(),
		},
	}
}

func hostGetCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "get",
		Usage:     "show one host",
		UsageText: "kumoi host get NAME [--stale] [--watch] [-o table|json|yaml]",
		Description: `Shows a host: the columns of 'kumoi host list', then the reason for its
state, the timing it publishes (the worker's --fence-after, the controllers'
--host-down-grace) and, when the controllers run a --fence-command, the last
fencing of the host: its result, attempts, exit status, when it finished and
the start of its output; then the migrations its worker takes part in (live,
restart) and whether the leader is moving its VMs off (host drain --migrate). -o json or -o yaml prints the whole object (status
.fence, .state_index, .fence_after_ms, .down_grace_ms; docs/api.md).

Examples:
   kumoi host get hv-1
   kumoi host get hv-1 -o json`,
		Flags:  []cli.Flag{staleFlag(), watchFlag()},
		Action: hostGet,
	})
}

func hostListCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "list hosts",
		UsageText: "kumoi host list [-l SELECTOR] [--stale] [--watch] [-o table|json|yaml]",
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
		Flags:  []cli.Flag{selectorFlag(), staleFlag(), watchFlag()},
		Action: hostList,
	})
}

func hostVMsCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "vms",
		Usage:     "list the VMs placed on a host",
		UsageText: "kumoi host vms NAME [-l SELECTOR] [--stale] [--watch] [-o table|json|yaml]",
		Description: `Lists the VMs placed on a host, as 'kumoi vm list --host NAME' does.

Examples:
   kumoi host vms hv-1
   kumoi host vms hv-1 -l app=web -o json`,
		Flags:  []cli.Flag{selectorFlag(), staleFlag(), watchFlag()},
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
		Usage:     "take no new VMs on a host; with --migrate, move its VMs off",
		UsageText: "kumoi host drain NAME [--migrate] [--wait] [-o table|json|yaml]",
		Description: `Marks the host unschedulable (spec.unschedulable=true): the scheduler places
no new VMs on it. Without --migrate the VMs already there stay where they are
and keep running.

With --migrate (spec.drain={"migrate":true}; every controller must speak log
protocol 9) the leader also moves every VM off the host, two at a time: a
running VM live when both hosts' workers take live migrations, by restart
(shut down here, started there) when only that is possible, a stopped one
cold; each to a host its requirements, affinity and quota allow. A VM that
cannot move (no host has room, a rule forbids every host, its migration
failed) stays, and the drain status says why.

With --wait (needs --migrate) the command follows the drain on stderr
("hv-1: 2 of 5 VMs moved; web-1 live-migrating to hv-3; db-2 cannot move:
...") until the host holds no VM (exit status 0) or only VMs that cannot
move (exit status 1, with their reasons), up to --timeout.

'kumoi host enable' undoes a drain and stops the moves (migrations under way
go on). The change is a read-modify-write with compare-and-set, retried when
the host changed in between.

Examples:
   kumoi host drain hv-1
   kumoi host drain hv-1 --migrate --wait --timeout 30m
   kumoi host drain hv-1 -o json`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "migrate", Usage: "also move every VM off the host (live, by restart, or cold)"},
			waitFlag("the host holds no VM, or only VMs that cannot move (needs --migrate)"),
		},
		Action: hostDrain,
	})
}

func hostEnableCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "enable",
		Usage:     "let the scheduler place VMs on a drained host again",
		UsageText: "kumoi host enable NAME [-o table|json|yaml]",
		Description: `Marks the host schedulable again (spec.unschedulable=false) and ends a drain
with --migrate (spec.drain removed: the leader moves no more VMs off it;
migrations under way go on), undoing 'kumoi host drain'. New VMs are placed
on it once it is also ready.

Example:
   kumoi host enable hv-1`,
		Action: func(c *cli.Context) error { return setSchedulable(c, true, false) },
	})
}

func hostRebalanceCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "rebalance",
		Usage:     "move VMs between hosts toward the placement strategy",
		UsageText: "kumoi host rebalance [--dry-run] [--max N] [-o table|json|yaml]",
		Description: `Asks the leader for migrations that move the cluster toward its placement
strategy (the controllers' --placement-strategy; POST /v1/rebalance), at most
--max of them, and starts them; with --dry-run only prints them. spread moves
VMs from the most loaded host (least free memory, as a share of its
capacity) to the least loaded while that narrows the gap by more than 5
points; binpack empties the least loaded hosts onto fuller ones. A move
never overcommits a host, never breaks a VM's requirements or affinity rule;
running VMs move live, only between hosts whose workers take live
migrations; stopped VMs move cold; a VM that is migrating never moves.

The table lists each move: VM, FROM, TO, MODE (live or cold), RESULT
(planned, started, or refused) and REASON (why the move, or why it was
refused). The exit status is 1 when the state machine refused some move.
Needs host:read and vm:power (a dry run: vm:read) on the whole vm kind, or a
management token.

Examples:
   kumoi host rebalance --dry-run
   kumoi host rebalance --max 3
   kumoi host rebalance --dry-run -o json`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "only print the moves and why"},
			&cli.IntFlag{Name: "max", Value: 5, Usage: "at most `N` moves (1-100)"},
		},
		Action: hostRebalance,
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

// hostDrain is kumoi host drain.
func hostDrain(c *cli.Context) error {
	if c.Bool("wait") && !c.Bool("migrate") {
		return usagef("--wait needs --migrate: without it the VMs stay on the host, and there is nothing to wait for")
	}
	return setSchedulable(c, false, c.Bool("migrate"))
}

// setSchedulable is host drain (false, with or without migrate) and host
// enable (true: it also ends a drain with migrate).
func setSchedulable(c *cli.Context, schedulable, migrate bool) error {
	name, s, err := connectNamedWait(c, "host")
	if err != nil {
		return err
	}
	defer s.close()
	changed := true
	o, err := s.client.Modify(s.ctx, resource.KindHost, name, func(cur *resource.Object) (*resource.Object, error) {
		spec, _ := resource.HostStateOf(cur)
		migrating := spec.Drain != nil && spec.Drain.Migrate
		changed = true
		switch {
		case schedulable && !spec.Unschedulable && spec.Drain == nil,
			!schedulable && spec.Unschedulable && (!migrate || migrating):
			changed = false
			return nil, nil
		case schedulable:
			next, err := client.PatchSpec(cur, map[string]any{"unschedulable": false})
			if err != nil {
				return nil, err
			}
			return dropSpecField(next, "drain")
		case migrate:
			return client.PatchSpec(cur, map[string]any{"unschedulable": true, "drain": resource.HostDrain{Migrate: true}})
		}
		return client.PatchSpec(cur, map[string]any{"unschedulable": true})
	})
	switch {
	case errors.Is(err, client.ErrCASMismatch):
		return fmt.Errorf("host %q kept changing while it was being updated (%d attempts), so nothing was written; run the command again", name, client.ModifyAttempts)
	case err != nil:
		return s.fail(objectErr(resource.KindHost, name, err))
	}
	if c.Bool("wait") {
		if err := waitDrain(c, s, name); err != nil {
			return err
		}
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
	case c.Bool("wait"):
		_, err = fmt.Fprintf(w, "host %q drained: no VM is left on it\n", name)
	default:
		verb := "drained"
		if !changed {
			verb = "is already drained"
		}
		_, err = fmt.Fprintf(w, "host %q %s: no new VMs will be placed on it; %s\n", name, verb, vmsStay(s, name, migrate))
	}
	return err
}

// dropSpecField returns o with the spec field removed.
func dropSpecField(o *resource.Object, field string) (*resource.Object, error) {
	spec := map[string]json.RawMessage{}
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		return nil, fmt.Errorf("%s: cannot read its spec: %w", o, err)
	}
	delete(spec, field)
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	o.Spec = raw
	return o, nil
}

// vmsStay says what becomes of the VMs on a drained host.
func vmsStay(s *session, host string, migrate bool) string {
	const later = " ('kumoi host drain --migrate' moves them off)"
	vms, _, err := s.client.List(s.ctx, resource.KindVM, &client.QueryOptions{Host: host})
	switch {
	case err == nil && len(vms) == 0:
		return "no VMs are placed on it"
	case migrate:
		return fmt.Sprintf("the leader moves its VMs off (follow it with 'kumoi host drain %s --migrate --wait')", host)
	case err != nil:
		return "the VMs on it stay and keep running" + later
	case len(vms) == 1:
		return "the 1 VM on it stays and keeps running" + later
	}
	return fmt.Sprintf("the %d VMs on it stay and keep running%s", len(vms), later)
}

// drainPoll is how often --wait reads the drain status; drainSettle how
// many reads in a row must show only VMs that cannot move before it gives
// up.
var (
	drainPoll   = time.Second
	drainSettle = 3
)

// waitDrain follows a drain until the host holds no VM, or only VMs that
// cannot move (an error listing why).
func waitDrain(c *cli.Context, s *session, host string) error {
	last, total, stuck := "", 0, 0
	live := newLiveLine(c.App.ErrWriter)
	defer live.finish()
	for {
		ds, err := s.client.Hosts().DrainStatus(s.ctx, host)
		switch {
		case err != nil && errors.Is(s.ctx.Err(), context.DeadlineExceeded) && c.Context.Err() == nil:
			return fmt.Errorf("host %q still holds VMs after %s (%s); raise --timeout, or follow it with 'kumoi host drain %s --migrate --wait'",
				host, s.timeout, strings.TrimPrefix(last, host+": "), host)
		case err != nil:
			return s.fail(err)
		}
		total = max(total, ds.VMsTotal, ds.VMsLeft)
		last = drainLine(host, ds, total)
		if live.tty {
			// On a terminal, a bar of the VMs moved leads the line.
			live.show(host + ": " + bar(total-ds.VMsLeft, total, 20) + " " + strings.TrimPrefix(last, host+": "))
		} else {
			live.show(last)
		}
		if ds.VMsLeft == 0 {
			return nil
		}
		if len(ds.Migrating) == 0 && len(ds.Blocked) >= ds.VMsLeft {
			if stuck++; stuck >= drainSettle {
				var why []string
				for _, b := range ds.Blocked {
					why = append(why, b.VM+": "+b.Reason)
				}
				return fmt.Errorf("host %q still holds %d VM%s that cannot move: %s", host, ds.VMsLeft, plural(ds.VMsLeft), strings.Join(why, "; "))
			}
		} else {
			stuck = 0
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(drainPoll):
		}
	}
}

// drainLine is one line of drain progress: "hv-1: 2 of 5 VMs moved; web-1
// live-migrating to hv-3; db-2 cannot move: <reason>".
func drainLine(host string, ds *client.DrainStatus, total int) string {
	parts := []string{fmt.Sprintf("%d of %d VMs moved", total-ds.VMsLeft, total)}
	for _, m := range ds.Migrating {
		parts = append(parts, fmt.Sprintf("%s %s-migrating to %s (%s)", m.VM, m.Mode, m.Target, m.State))
	}
	for _, b := range ds.Blocked {
		parts = append(parts, fmt.Sprintf("%s cannot move: %s", b.VM, b.Reason))
	}
	return host + ": " + strings.Join(parts, "; ")
}

// hostRebalance is kumoi host rebalance.
func hostRebalance(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	n := c.Int("max")
	if n < 1 || n > 100 {
		return usagef("--max %d: give 1 to 100", n)
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	res, err := s.client.Hosts().Rebalance(s.ctx, client.RebalanceOptions{DryRun: c.Bool("dry-run"), Max: n})
	if err != nil {
		return s.fail(err)
	}
	refused := 0
	for _, m := range res.Moves {
		if m.Error != "" {
			refused++
		}
	}
	if done, err := printData(c, res); done {
		if err == nil && refused > 0 {
			err = fmt.Errorf("%d of %d moves were refused", refused, len(res.Moves))
		}
		return err
	}
	w := writer(c)
	if len(res.Moves) == 0 {
		_, err := fmt.Fprintln(w, "nothing to move: no migration would bring the cluster closer to its placement strategy")
		return err
	}
	t := newFreeTextTable(w, "VM", "FROM", "TO", "MODE", "RESULT", "REASON")
	for _, m := range res.Moves {
		result, reason := "started", m.Reason
		switch {
		case !res.Performed:
			result = "planned"
		case m.Error != "":
			result, reason = "refused", m.Error
		}
		t.row(m.VM, m.From, m.To, m.Mode, result, reason)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if refused > 0 {
		return fmt.Errorf("%d of %d moves were refused (see RESULT)", refused, len(res.Moves))
	}
	return nil
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
	return getAndShow(c, s, resource.KindHost, name, hostShow)
}

// hostShow writes a host's table row and details (host get).
func hostShow(w io.Writer, o *resource.Object) error {
	if err := objectTable(w, resource.KindHost, []*resource.Object{o}, 0); err != nil {
		return err
	}
	spec, st := resource.HostStateOf(o)
	if err := hostDetails(w, st); err != nil {
		return err
	}
	var b strings.Builder
	if len(st.MigrationModes) > 0 {
		fmt.Fprintf(&b, "migrate: %s (the migrations its worker takes part in)\n", strings.Join(st.MigrationModes, ", "))
	}
	if spec.Drain != nil && spec.Drain.Migrate {
		fmt.Fprintf(&b, "drain:   the leader moves its VMs off ('kumoi host drain %s --migrate --wait' follows it; 'kumoi host enable %s' stops it)\n", o.Name, o.Name)
	}
	_, err := io.WriteString(w, b.String())
	return err
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
	return listAndShow(c, s, resource.KindHost, client.QueryOptions{Stale: c.Bool("stale"), Selector: sel},
		func(objs []*resource.Object) error { return hostListShow(c, objs) })
}

// hostListShow shows hosts: as data with -o or -t, else as the table of
// host list.
func hostListShow(c *cli.Context, objs []*resource.Object) error {
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
