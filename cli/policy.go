package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/script"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:      "policy",
		Usage:     "store event-driven Starlark policies in the cluster; the leader runs them",
		UsageText: "kumoi policy <apply|list|get|enable|disable|delete> [options] [NAME]",
		Description: `A policy is a Kumoi script stored in the cluster (replicated through Raft and
versioned). It declares the events it handles and a handler:

   events = ["vm.lost"]
   def on_event(ev):
       v = vm(ev.name)
       if v.labels.get("ha") == "script" and v.phase == "lost":
           v.start()

The leader calls on_event(ev) for each event it declares (vm.<phase>,
host.<state>, vm.created, host.*, ...), one event at a time per policy, with a
step and a time limit per call. Delivery is at least once: a new leader
resumes each policy after the last index its status records, so a handler
may see an event twice and must be idempotent. A handler that raises is
recorded in the policy's status (FAILED, recent errors) and the policy goes
on; other policies and the leader are not affected. See docs/scripting.md.

Examples:
   kumoi policy apply ha-lost examples/ha-lost.star
   kumoi policy list
   kumoi policy get ha-lost
   kumoi policy disable ha-lost
   kumoi policy delete ha-lost`,
		Subcommands: []*cli.Command{
			policyApplyCommand(),
			policyListCommand(),
			policyGetCommand(),
			policyEnableCommand(),
			policyDisableCommand(),
			policyDeleteCommand(),
		},
	}
}

func policyListCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "list policies",
		UsageText: "kumoi policy list [-l SELECTOR] [--stale] [-o table|json|yaml]",
		Description: `Lists policies sorted by name. Columns: VERSION (of the stored spec), STATE
(pending until the leader loads it, then active, disabled or error), EVENTS
(the patterns it declared), HANDLED and FAILED (on_event calls since this
version loaded), LAST ERROR (the newest handler error, or why it does not
load).

Examples:
   kumoi policy list
   kumoi policy list -o json`,
		Flags:  []cli.Flag{selectorFlag(), staleFlag()},
		Action: listObjects(resource.KindPolicy),
	})
}

func policyGetCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "get",
		Usage:     "show one policy, its recent errors and output",
		UsageText: "kumoi policy get NAME [--source] [--stale] [-o table|json|yaml]",
		Description: `Shows a policy: its state, the events it handles, where it runs, the index
up to which it has handled events, counts, its recent errors (with the
Starlark backtrace) and the last lines it printed. --source prints the
stored script instead. -o json or -o yaml prints the whole object.

Examples:
   kumoi policy get ha-lost
   kumoi policy get ha-lost --source > ha-lost.star`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "source", Usage: "print the stored script"},
			staleFlag(),
		},
		Action: policyGet,
	})
}

func policyEnableCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "enable",
		Usage:     "run a disabled policy again",
		UsageText: "kumoi policy enable NAME",
		Description: `Clears spec.disabled (a new version): the leader loads the policy again and
handles the events after this change.

Example:
   kumoi policy enable ha-lost`,
		Action: func(c *cli.Context) error { return policySetDisabled(c, false) },
	})
}

func policyDisableCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "disable",
		Usage:     "stop running a policy without deleting it",
		UsageText: "kumoi policy disable NAME",
		Description: `Sets spec.disabled (a new version): the leader stops running the policy;
events that happen while it is disabled are not delivered later.

Example:
   kumoi policy disable ha-lost`,
		Action: func(c *cli.Context) error { return policySetDisabled(c, true) },
	})
}

func policyDeleteCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "delete",
		Aliases:   []string{"rm"},
		Usage:     "delete a policy",
		UsageText: "kumoi policy delete NAME [-o table|json|yaml]",
		Description: `Deletes the policy; the leader stops running it (a call under way is
interrupted).

Example:
   kumoi policy delete ha-lost`,
		Action: deleteObject(resource.KindPolicy),
	})
}

func policyApplyCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "apply",
		Usage:     "store (create or update) a policy from a Starlark file",
		UsageText: "kumoi policy apply NAME FILE.star [--max-steps N] [--handler-timeout DURATION] [--disabled] [--wait]",
		Description: `Checks the script here first, as the leader will load it (its top level runs
and it must define events = [...] and def on_event(ev):), so that a syntax
error or a bad declaration is reported with file:line:col and changes
nothing. It then creates the policy, or updates it with compare-and-set;
a change of the script or its limits makes a new version, which the leader
loads and runs on the events after the change. FILE "-" reads standard input.

With --wait the command waits until the leader has loaded the new version and
prints its state (active, or error with the reason).

Examples:
   kumoi policy apply ha-lost examples/ha-lost.star --wait
   kumoi policy apply noisy noisy.star --max-steps 100000 --handler-timeout 5s`,
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "max-steps", Usage: "stop one on_event call after `N` Starlark steps", DefaultText: fmt.Sprint(resource.DefaultPolicyMaxSteps)},
			&cli.DurationFlag{Name: "handler-timeout", Usage: "stop one on_event call after `DURATION`", DefaultText: resource.DefaultPolicyTimeout.String()},
			&cli.BoolFlag{Name: "disabled", Usage: "store it without running it"},
			waitFlag("the leader has loaded this version"),
		},
		Action: policyApply,
	})
}

func policyApply(c *cli.Context) error {
	if c.NArg() != 2 {
		return usagef("apply takes NAME and FILE.star: kumoi policy apply NAME FILE.star")
	}
	name, file := c.Args().Get(0), c.Args().Get(1)
	if err := resource.ValidateName(name); err != nil {
		return usagef("invalid policy name: %s", fieldMsg(err))
	}
	var src []byte
	var err error
	if file == "-" {
		src, err = io.ReadAll(io.LimitReader(c.App.Reader, resource.MaxPolicySourceBytes+1))
		file = "stdin.star"
	} else {
		src, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("cannot read the policy: %w", err)
	}
	spec := resource.PolicySpec{Source: string(src), MaxSteps: c.Uint64("max-steps"), Disabled: c.Bool("disabled")}
	if d := c.Duration("handler-timeout"); d != 0 {
		spec.Timeout = d.String()
	}
	spec.Default()
	if err := spec.Validate(); err != nil {
		return usagef("%s", fieldMsg(err))
	}
	s, err := connectWait(c)
	if err != nil {
		return err
	}
	defer s.close()
	// Load it here as the leader will: same checks, same messages.
	if _, err := script.LoadPolicy(s.ctx, strings.TrimSuffix(file, ".star"), spec.Source,
		script.Env{Client: s.client, MaxSteps: spec.MaxSteps, Timeout: spec.TimeoutDuration()}); err != nil {
		fmt.Fprintln(c.App.ErrWriter, scriptErrorText(err))
		return cli.Exit("the policy was not stored (nothing changed)", exitError)
	}
	pol, result, err := s.client.Policies().Apply(s.ctx, name, spec)
	if err != nil {
		return s.fail(objectErr(resource.KindPolicy, name, err))
	}
	fmt.Fprintf(c.App.ErrWriter, "policy %q %s (version %d)\n", name, result, pol.Spec.Version)
	if c.Bool("wait") {
		if pol, err = waitPolicyLoaded(s, pol); err != nil {
			return err
		}
	}
	return printObject(c, pol.Object)
}

// waitPolicyLoaded waits, with blocking reads, until the leader has loaded
// the policy's current version.
func waitPolicyLoaded(s *session, pol *client.Policy) (*client.Policy, error) {
	index := pol.Object.ModifyIndex
	for !pol.Loaded() {
		next, meta, err := s.client.Policies().Get(s.ctx, pol.Name(), &client.QueryOptions{WaitIndex: index, WaitTime: blockingWait})
		switch {
		case client.IsNotFound(err):
			return nil, fmt.Errorf("policy %q was deleted while waiting for the leader to load it", pol.Name())
		case err != nil && errors.Is(s.ctx.Err(), context.DeadlineExceeded):
			return nil, fmt.Errorf("the leader has not loaded version %d of policy %q after %s (it is %s); see 'kumoi policy get %s'",
				pol.Spec.Version, pol.Name(), s.timeout, pol.Status.State, pol.Name())
		case err != nil:
			return nil, s.fail(err)
		}
		if meta != nil && meta.Index > index {
			index = meta.Index
		}
		pol = next
	}
	if pol.Status.State == resource.PolicyBroken {
		return nil, fmt.Errorf("policy %q version %d does not load on the leader: %s", pol.Name(), pol.Spec.Version, pol.Status.Error)
	}
	return pol, nil
}

func policySetDisabled(c *cli.Context, disabled bool) error {
	name, s, err := connectNamed(c, "policy")
	if err != nil {
		return err
	}
	defer s.close()
	o, err := updateSpec(s, resource.KindPolicy, name, func(cur *resource.Object) (map[string]any, error) {
		spec, err := resource.DecodeSpec[resource.PolicySpec](cur)
		if err != nil || spec.Disabled == disabled {
			return nil, err
		}
		return map[string]any{"disabled": disabled}, nil
	})
	if err != nil {
		return err
	}
	return printObject(c, o)
}

func policyGet(c *cli.Context) error {
	name, s, err := connectNamed(c, "policy")
	if err != nil {
		return err
	}
	defer s.close()
	pol, _, err := s.client.Policies().Get(s.ctx, name, &client.QueryOptions{Stale: c.Bool("stale")})
	if err != nil {
		return s.fail(objectErr(resource.KindPolicy, name, err))
	}
	if c.Bool("source") {
		_, err := io.WriteString(c.App.Writer, pol.Spec.Source)
		return err
	}
	if done, err := printData(c, pol.Object); done {
		return err
	}
	return policyDetail(c.App.Writer, pol)
}

// policyDetail is the text view of one policy.
func policyDetail(w io.Writer, pol *client.Policy) error {
	st := pol.Status
	state := st.State
	if st.Version != pol.Spec.Version {
		state = fmt.Sprintf("%s (version %d; the leader has not loaded version %d yet)", cmp.Or(state, resource.PolicyPending), st.Version, pol.Spec.Version)
	}
	fmt.Fprintf(w, "Name:        %s\n", pol.Name())
	fmt.Fprintf(w, "Version:     %d\n", pol.Spec.Version)
	fmt.Fprintf(w, "State:       %s\n", state)
	if st.Error != "" {
		fmt.Fprintf(w, "Error:       %s\n", indentMore(st.Error))
	}
	fmt.Fprintf(w, "Events:      %s\n", cmp.Or(strings.Join(st.Events, ", "), "-"))
	fmt.Fprintf(w, "Limits:      %d steps, %s per event\n", pol.Spec.MaxSteps, pol.Spec.TimeoutDuration())
	fmt.Fprintf(w, "Runs on:     %s\n", cmp.Or(st.Node, "-"))
	fmt.Fprintf(w, "Handled:     %d events up to index %d, %d failed\n", st.Handled, st.LastIndex, st.Failed)
	if st.Missed != "" {
		fmt.Fprintf(w, "Missed:      %s\n", st.Missed)
	}
	if len(st.RecentErrors) > 0 {
		fmt.Fprintln(w, "Recent errors:")
		for _, e := range st.RecentErrors {
			fmt.Fprintf(w, "  %s  index %d  %s\n    %s\n", e.Time.Format(time.RFC3339), e.Index, e.Event, indentMore(e.Message))
		}
	}
	if len(st.RecentOutput) > 0 {
		fmt.Fprintln(w, "Recent output:")
		for _, l := range st.RecentOutput {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	return nil
}

// indentMore indents the continuation lines of a multi-line message.
func indentMore(s string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// policyTable: NAME VERSION STATE EVENTS HANDLED FAILED LAST-ERROR.
func policyTable(w io.Writer, objs []*resource.Object, width int) error {
	t := newFreeTextTable(w, "NAME", "VERSION", "STATE", "EVENTS", "HANDLED", "FAILED", "LAST ERROR")
	for _, o := range objs {
		pol, err := client.NewPolicy(o)
		if err != nil {
			t.row(o.Name, "?", "?", "?", "?", "?", err.Error())
			continue
		}
		st := pol.Status
		state := cmp.Or(st.State, resource.PolicyPending)
		if st.Version != pol.Spec.Version {
			state = resource.PolicyPending
		}
		last := st.Error
		if n := len(st.RecentErrors); n > 0 && last == "" {
			last = st.RecentErrors[n-1].Message
		}
		if i := strings.LastIndex(strings.TrimRight(last, "\n"), "\n"); i >= 0 {
			last = last[i+1:] // the "Error: ..." line of a backtrace
		}
		if width > 0 {
			last = shorten(last, width)
		}
		t.row(o.Name, uintCell(pol.Spec.Version), state, cmp.Or(strings.Join(st.Events, ","), "-"),
			uintCell(st.Handled), uintCell(st.Failed), textCell(last))
	}
	return t.flush()
}
