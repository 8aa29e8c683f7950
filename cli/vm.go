package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

var (
	powerChoices = []string{resource.PowerRunning, resource.PowerStopped, resource.PowerSuspended}
	haChoices    = []string{resource.HARestart, resource.HANone}
)

func vmCommand() *cli.Command {
	return &cli.Command{
		Name:      "vm",
		Usage:     "create, inspect, change and delete virtual machines",
		UsageText: "kumoi vm <create|get|list|update|delete> [options] [NAME]",
		Description: `A VM object holds what you want (spec: cpus, memory, power, ha) and what the
cluster observed (status: phase, host). Changing the spec changes the real VM;
the scheduler places new VMs on hosts.

Examples:
   kumoi vm create web-1 --cpus 2 --memory 2GiB --label app=web
   kumoi vm list -l app=web,tier!=db
   kumoi vm update web-1 --power stopped
   kumoi vm delete web-1`,
		Subcommands: []*cli.Command{
			vmCreateCommand(),
			vmGetCommand(),
			vmListCommand(),
			vmUpdateCommand(),
			vmDeleteCommand(),
		},
	}
}

func labelFlag(usage string) *cli.StringSliceFlag {
	return &cli.StringSliceFlag{Name: "label", Usage: usage}
}

func staleFlag() *cli.BoolFlag {
	return &cli.BoolFlag{
		Name:  "stale",
		Usage: "let any controller answer from its local copy (faster, works without a leader, may lag)",
	}
}

func selectorFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:    "selector",
		Aliases: []string{"l"},
		Usage:   "only objects whose labels match `SELECTOR`: k=v, k!=v, k (has k), !k (lacks k), comma-separated, all must hold",
	}
}

func casFlag(verb string) *cli.StringFlag {
	return &cli.StringFlag{
		Name:  "cas",
		Usage: "only " + verb + " if the object's modify_index (the INDEX column) is still `INDEX`",
	}
}

// casValue parses --cas (0 when not given).
func casValue(c *cli.Context) (uint64, error) {
	if !c.IsSet("cas") {
		return 0, nil
	}
	n, err := strconv.ParseUint(c.String("cas"), 10, 64)
	if err != nil || n == 0 {
		return 0, usagef("invalid --cas %q: give the object's modify_index (the INDEX column), a positive integer", c.String("cas"))
	}
	return n, nil
}

// cpusValue parses --cpus.
func cpusValue(c *cli.Context) (int, error) {
	n, err := strconv.Atoi(c.String("cpus"))
	if err != nil {
		return 0, usagef("invalid --cpus %q: give a whole number of virtual CPUs, e.g. --cpus 2", c.String("cpus"))
	}
	return n, nil
}

func vmCreateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "create",
		Usage:     "create a VM",
		UsageText: "kumoi vm create NAME --cpus N --memory SIZE [--label KEY=VALUE]... [--power running|stopped|suspended] [--ha restart|none]",
		Description: `Creates a VM object. The scheduler then places it on a host and, with
--power running (the default), a worker starts it. NAME is a DNS label:
lower-case letters, digits and '-', at most 63 characters.

SIZE is a number with an optional unit: 512MiB, 2GiB, 1.5GiB, 1TiB (also M, G,
T, MB, GB); a bare number means MiB.

Examples:
   kumoi vm create web-1 --cpus 2 --memory 2GiB
   kumoi vm create db-1 --cpus 8 --memory 32GiB --label app=db --label tier=back --ha restart
   kumoi vm create spare --cpus 1 --memory 512MiB --power stopped -o json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cpus", Usage: "`N` virtual CPUs (required)"},
			&cli.StringFlag{Name: "memory", Aliases: []string{"m"}, Usage: "memory `SIZE`, e.g. 512MiB or 2GiB (required)"},
			labelFlag("a label `KEY=VALUE`; repeat for several"),
			&cli.StringFlag{Name: "power", Usage: "`STATE`: running, stopped or suspended (default: running)"},
			&cli.StringFlag{Name: "ha", Usage: "`POLICY`: restart (restart it elsewhere when its host fails) or none (default: none)"},
		},
		Action: vmCreate,
	})
}

func vmCreate(c *cli.Context) error {
	name, err := oneName(c, "VM")
	if err != nil {
		return err
	}
	if err := resource.ValidateName(name); err != nil {
		return usagef("invalid VM name: %s", fieldMsg(err))
	}
	var missing []string
	for _, f := range []string{"cpus", "memory"} {
		if !c.IsSet(f) {
			missing = append(missing, "--"+f)
		}
	}
	if len(missing) > 0 {
		return usagef("missing %s: say how big the VM is, e.g. kumoi vm create %s --cpus 2 --memory 2GiB", joinList(missing, "and"), name)
	}
	spec := resource.VMSpec{Power: c.String("power"), HA: c.String("ha")}
	if spec.CPUs, err = cpusValue(c); err != nil {
		return err
	}
	if spec.MemoryMiB, err = parseMemory("memory", c.String("memory")); err != nil {
		return err
	}
	if c.IsSet("power") {
		if err := checkChoice("power", spec.Power, powerChoices...); err != nil {
			return err
		}
	}
	if c.IsSet("ha") {
		if err := checkChoice("ha", spec.HA, haChoices...); err != nil {
			return err
		}
	}
	labels, err := parseLabels("label", c.StringSlice("label"))
	if err != nil {
		return err
	}
	rawSpec, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	o, err := s.client.Create(s.ctx, resource.KindVM, resource.CreateRequest{Name: name, Labels: labels, Spec: rawSpec})
	if errors.Is(err, client.ErrAlreadyExists) {
		return fmt.Errorf("vm %q already exists; choose another name or delete it first", name)
	}
	if err != nil {
		return s.fail(err)
	}
	return printObject(c, o)
}

// getObject is the shared "get NAME" verb.
func getObject(kind resource.Kind) cli.ActionFunc {
	return func(c *cli.Context) error {
		name, err := oneName(c, kindTitle(kind))
		if err != nil {
			return err
		}
		s, err := connect(c)
		if err != nil {
			return err
		}
		defer s.close()
		o, _, err := s.client.Get(s.ctx, kind, name, &client.QueryOptions{Stale: c.Bool("stale")})
		if err != nil {
			return s.fail(objectErr(kind, name, err))
		}
		return printObject(c, o)
	}
}

// listObjects is the shared "list" verb.
func listObjects(kind resource.Kind) cli.ActionFunc {
	return func(c *cli.Context) error {
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
		objs, _, err := s.client.List(s.ctx, kind, &client.QueryOptions{Stale: c.Bool("stale"), Selector: sel})
		if err != nil {
			return s.fail(err)
		}
		return printObjects(c, kind, objs)
	}
}

// kindTitle names a kind in messages: "VM", "host".
func kindTitle(kind resource.Kind) string {
	if kind == resource.KindVM {
		return "VM"
	}
	return string(kind)
}

// objectErr says "vm "web" not found" for a missing object.
func objectErr(kind resource.Kind, name string, err error) error {
	if client.IsNotFound(err) {
		return fmt.Errorf("%s %q not found", kind, name)
	}
	return err
}

func vmGetCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "get",
		Usage:     "show one VM",
		UsageText: "kumoi vm get NAME [--stale] [-o table|json|yaml]",
		Description: `Shows a VM. The table has one row; -o json or -o yaml prints the whole object,
spec and status included.

Examples:
   kumoi vm get web-1
   kumoi vm get web-1 -o yaml`,
		Flags:  []cli.Flag{staleFlag()},
		Action: getObject(resource.KindVM),
	})
}

func vmListCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "list VMs",
		UsageText: "kumoi vm list [-l SELECTOR] [--stale] [-o table|json|yaml]",
		Description: `Lists VMs sorted by name, optionally filtered by a label selector.
With -o json the output is a JSON array ([] when there are none).

Examples:
   kumoi vm list
   kumoi vm list -l app=web,tier!=db
   kumoi vm list -l '!ha-tested' -o json`,
		Flags:  []cli.Flag{selectorFlag(), staleFlag()},
		Action: listObjects(resource.KindVM),
	})
}

func vmUpdateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "update",
		Usage:     "change a VM's size, power state, HA policy or labels",
		UsageText: "kumoi vm update NAME [--cpus N] [--memory SIZE] [--power STATE] [--ha POLICY] [--label KEY=VALUE]... [--remove-label KEY]... [--cas INDEX]",
		Description: `Reads the VM, applies the changes you give and writes it back only if nobody
changed it in between (compare-and-set on its modify_index, the INDEX column).
If it was changed concurrently nothing is written: run the command again.
With --cas INDEX the write happens only if the VM is still at that INDEX.

Examples:
   kumoi vm update web-1 --cpus 4 --memory 8GiB
   kumoi vm update web-1 --power stopped
   kumoi vm update web-1 --label tier=front --remove-label canary
   kumoi vm update web-1 --ha restart --cas 42`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cpus", Usage: "new number of virtual CPUs `N`"},
			&cli.StringFlag{Name: "memory", Aliases: []string{"m"}, Usage: "new memory `SIZE`, e.g. 4GiB"},
			&cli.StringFlag{Name: "power", Usage: "`STATE`: running, stopped or suspended"},
			&cli.StringFlag{Name: "ha", Usage: "`POLICY`: restart or none"},
			labelFlag("set a label `KEY=VALUE`; repeat for several"),
			&cli.StringSliceFlag{Name: "remove-label", Usage: "remove the label `KEY`; repeat for several"},
			casFlag("update"),
		},
		Action: vmUpdate,
	})
}

func vmUpdate(c *cli.Context) error {
	name, err := oneName(c, "VM")
	if err != nil {
		return err
	}
	changes := map[string]any{}
	if c.IsSet("cpus") {
		n, err := cpusValue(c)
		if err != nil {
			return err
		}
		changes["cpus"] = n
	}
	if c.IsSet("memory") {
		mib, err := parseMemory("memory", c.String("memory"))
		if err != nil {
			return err
		}
		changes["memory_mib"] = mib
	}
	if c.IsSet("power") {
		if err := checkChoice("power", c.String("power"), powerChoices...); err != nil {
			return err
		}
		changes["power"] = c.String("power")
	}
	if c.IsSet("ha") {
		if err := checkChoice("ha", c.String("ha"), haChoices...); err != nil {
			return err
		}
		changes["ha"] = c.String("ha")
	}
	setLabels, err := parseLabels("label", c.StringSlice("label"))
	if err != nil {
		return err
	}
	removeLabels := c.StringSlice("remove-label")
	for _, k := range removeLabels {
		if _, both := setLabels[k]; both {
			return usagef("label %q is both set (--label) and removed (--remove-label); choose one", k)
		}
	}
	if len(changes) == 0 && len(setLabels) == 0 && len(removeLabels) == 0 {
		return usagef("nothing to change: give at least one of --cpus, --memory, --power, --ha, --label or --remove-label")
	}

	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	cur, _, err := s.client.Get(s.ctx, resource.KindVM, name, nil)
	if err != nil {
		return s.fail(objectErr(resource.KindVM, name, err))
	}
	cas := cur.ModifyIndex
	if c.IsSet("cas") {
		if cas, err = casValue(c); err != nil {
			return err
		}
		if cas != cur.ModifyIndex {
			return fmt.Errorf("vm %q was not updated: its modify_index is %d, not %d (it changed since you read it)", name, cur.ModifyIndex, cas)
		}
	}

	// Change only the fields asked for, keeping the others as they are,
	// including spec fields this kumoi binary does not know.
	next := cur.Copy()
	spec := map[string]json.RawMessage{}
	if err := json.Unmarshal(cur.Spec, &spec); err != nil {
		return fmt.Errorf("vm %q: cannot read its spec: %w", name, err)
	}
	for k, v := range changes {
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		spec[k] = raw
	}
	if next.Spec, err = json.Marshal(spec); err != nil {
		return err
	}
	maps.Copy(next.Labels, setLabels)
	for _, k := range removeLabels {
		delete(next.Labels, k)
	}

	o, err := s.client.Update(s.ctx, resource.KindVM, name, next, &client.WriteOptions{CAS: cas})
	switch {
	case errors.Is(err, client.ErrCASMismatch) && c.IsSet("cas"):
		return fmt.Errorf("vm %q was not updated: its modify_index is no longer %d (it changed since you read it)", name, cas)
	case errors.Is(err, client.ErrCASMismatch):
		return fmt.Errorf("vm %q changed while it was being updated (its modify_index is no longer %d), so nothing was written; run the command again", name, cas)
	case err != nil:
		return s.fail(objectErr(resource.KindVM, name, err))
	}
	return printObject(c, o)
}

func vmDeleteCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "delete",
		Aliases:   []string{"rm"},
		Usage:     "delete a VM",
		UsageText: "kumoi vm delete NAME [--cas INDEX]",
		Description: `Deletes the VM object; its worker then destroys the real VM. With -o json or
-o yaml the deleted object is printed.

Examples:
   kumoi vm delete web-1
   kumoi vm delete web-1 --cas 42`,
		Flags:  []cli.Flag{casFlag("delete")},
		Action: deleteObject(resource.KindVM),
	})
}

// deleteObject is the shared "delete NAME" verb.
func deleteObject(kind resource.Kind) cli.ActionFunc {
	return func(c *cli.Context) error {
		name, err := oneName(c, kindTitle(kind))
		if err != nil {
			return err
		}
		s, err := connect(c)
		if err != nil {
			return err
		}
		defer s.close()
		cas, err := casValue(c)
		if err != nil {
			return err
		}
		o, err := s.client.Delete(s.ctx, kind, name, &client.WriteOptions{CAS: cas})
		if errors.Is(err, client.ErrCASMismatch) {
			return fmt.Errorf("%s %q was not deleted: its modify_index is no longer %d (it changed since you read it)", kind, name, cas)
		}
		if err != nil {
			return s.fail(objectErr(kind, name, err))
		}
		if done, err := printData(c, o); done {
			return err
		}
		_, err = fmt.Fprintf(writer(c), "%s %q deleted\n", kind, name)
		return err
	}
}
