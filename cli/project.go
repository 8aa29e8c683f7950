package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

func projectCommand() *cli.Command {
	return &cli.Command{
		Name:      "project",
		Usage:     "create, inspect, change and delete projects (quotas)",
		UsageText: "kumoi project <create|get|list|update|delete|usage> [options] [NAME]",
		Description: `A project is a share of the cloud with quotas: every VM and volume belongs to
one (spec.project; none named: "default", which needs no object and, without
one, has no quotas). The state machine checks the quotas when it applies a
create or an update, so concurrent creates never overshoot: a write that would
take a project over a limit is refused (409 quota_exceeded), naming the
limit. A limit lowered below the current usage is allowed: it only blocks new
usage. A project that VMs or volumes belong to cannot be deleted.

Examples:
   kumoi project create p1 --max-vms 10 --max-cpus 20 --max-memory 64GiB --max-volume 1TiB
   kumoi vm create web --cpus 2 --memory 2GiB --project p1
   kumoi project usage
   kumoi project update p1 --max-cpus 40
   kumoi project delete p1`,
		Subcommands: []*cli.Command{
			projectCreateCommand(),
			kindGetCommand(resource.KindProject, `Shows a project: its quotas and usage (the columns of 'kumoi project list').`),
			kindListCommand(resource.KindProject, `Lists projects sorted by name, each quota as used/limit ("-": no limit).`),
			projectUpdateCommand(),
			kindDeleteCommand(resource.KindProject, "A project that VMs or volumes belong to is refused, naming them: delete them or move them to another project first."),
			projectUsageCommand(),
		},
	}
}

// projectSpecFlags are the quota flags of project create and update.
func projectSpecFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "max-vms", Usage: "at most `N` VMs (0: no limit)"},
		&cli.StringFlag{Name: "max-cpus", Usage: "at most `N` virtual CPUs over all its VMs (0: no limit)"},
		&cli.StringFlag{Name: "max-memory", Usage: "at most `SIZE` of memory over all its VMs, e.g. 64GiB (0: no limit)"},
		&cli.StringFlag{Name: "max-volume", Usage: "at most `SIZE` of volumes (disks included), e.g. 1TiB (0: no limit)"},
		&cli.StringFlag{Name: "strategy", Usage: "the placement `STRATEGY` of its VMs: binpack or spread (default: the cluster's)"},
	}
}

// projectChanges reads the quota flags given into spec fields.
func projectChanges(c *cli.Context) (map[string]any, error) {
	ch := map[string]any{}
	for _, f := range []struct{ flag, field string }{{"max-vms", "max_vms"}, {"max-cpus", "max_cpus"}} {
		if c.IsSet(f.flag) {
			n, err := strconv.ParseInt(c.String(f.flag), 10, 64)
			if err != nil || n < 0 {
				return nil, usagef("invalid --%s %q: give a whole number (0: no limit), e.g. --%s 10", f.flag, c.String(f.flag), f.flag)
			}
			ch[f.field] = n
		}
	}
	for _, f := range []struct{ flag, field string }{{"max-memory", "max_memory_mib"}, {"max-volume", "max_volume_mib"}} {
		if c.IsSet(f.flag) {
			var mib int64
			if c.String(f.flag) != "0" {
				var err error
				if mib, err = parseMemory(f.flag, c.String(f.flag)); err != nil {
					return nil, err
				}
			}
			ch[f.field] = mib
		}
	}
	if c.IsSet("strategy") {
		if err := checkChoice("strategy", c.String("strategy"), resource.StrategyBinpack, resource.StrategySpread); err != nil {
			return nil, err
		}
		ch["strategy"] = c.String("strategy")
	}
	return ch, nil
}

func projectCreateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:  "create",
		Usage: "create a project",
		UsageText: "kumoi project create NAME [--max-vms N] [--max-cpus N] [--max-memory SIZE] [--max-volume SIZE]\n" +
			"      [--strategy binpack|spread] [--label KEY=VALUE]...",
		Description: `Creates a project. VMs and volumes join it with --project NAME. A quota not
given has no limit.

Examples:
   kumoi project create p1 --max-vms 10 --max-cpus 20 --max-memory 64GiB
   kumoi project create default --max-cpus 64`,
		Flags: append(projectSpecFlags(), labelFlag("a label `KEY=VALUE`; repeat for several")),
		Action: func(c *cli.Context) error {
			name, err := newName(c, "project")
			if err != nil {
				return err
			}
			ch, err := projectChanges(c)
			if err != nil {
				return err
			}
			return createKind(c, resource.KindProject, name, ch)
		},
	})
}

func projectUpdateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "update",
		Usage:     "change a project's quotas, strategy or labels",
		UsageText: "kumoi project update NAME [--max-vms N] [--max-cpus N] [--max-memory SIZE] [--max-volume SIZE] [--strategy S] [--label KEY=VALUE]... [--remove-label KEY]... [--cas INDEX]",
		Description: `Changes the quotas given (0: no limit). A limit below the current usage is
allowed: what is there stays, and only new usage is refused.

Examples:
   kumoi project update p1 --max-cpus 40
   kumoi project update p1 --max-memory 0`,
		Flags: append(projectSpecFlags(),
			labelFlag("set a label `KEY=VALUE`; repeat for several"),
			&cli.StringSliceFlag{Name: "remove-label", Usage: "remove the label `KEY`; repeat for several"},
			casFlag("update")),
		Action: func(c *cli.Context) error {
			ch, err := projectChanges(c)
			if err != nil {
				return err
			}
			return updateKind(c, resource.KindProject, ch)
		},
	})
}

func projectUsageCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "usage",
		Usage:     "show what each project uses of its quotas",
		UsageText: "kumoi project usage [NAME] [--stale] [-o table|json|yaml]",
		Description: `Shows each project's usage against its quotas, as used/limit ("-": no
limit): VMs, CPUs, memory and volume size. The default project is listed even
without an object (its usage counted from the VMs and volumes that name no
project).

Examples:
   kumoi project usage
   kumoi project usage p1 -o json`,
		Flags: []cli.Flag{staleFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usagef("give at most one project name")
			}
			only := c.Args().First()
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			rows, err := s.projectUsage(c.Bool("stale"), only)
			if err != nil {
				return err
			}
			if done, err := printData(c, rows); done {
				return err
			}
			return projectUsageTable(writer(c), rows)
		},
	})
}

// projectUsageRow is one line of 'kumoi project usage' (and its JSON).
type projectUsageRow struct {
	Project string                `json:"project"`
	Limits  resource.ProjectSpec  `json:"limits"`
	Usage   resource.ProjectUsage `json:"usage"`
	Object  bool                  `json:"object"`
}

// projectUsage lists the projects' usage; the default project without
// an object has its usage counted from the VMs and volumes.
func (s *session) projectUsage(stale bool, only string) ([]projectUsageRow, error) {
	c := s.client
	projects, _, err := c.Projects().List(s.ctx, &client.QueryOptions{Stale: stale})
	if err != nil {
		return nil, s.fail(err)
	}
	var rows []projectUsageRow
	hasDefault := false
	for _, p := range projects {
		hasDefault = hasDefault || p.Name() == resource.DefaultProject
		rows = append(rows, projectUsageRow{Project: p.Name(), Limits: p.Spec, Usage: p.Status.Usage, Object: true})
	}
	if !hasDefault && (only == "" || only == resource.DefaultProject) {
		u, err := c.Projects().Usage(s.ctx, resource.DefaultProject)
		if err != nil {
			return nil, s.fail(err)
		}
		rows = append(rows, projectUsageRow{Project: resource.DefaultProject, Usage: u})
	}
	slices.SortFunc(rows, func(a, b projectUsageRow) int {
		switch {
		case a.Project < b.Project:
			return -1
		case a.Project > b.Project:
			return 1
		}
		return 0
	})
	if only != "" {
		rows = slices.DeleteFunc(rows, func(r projectUsageRow) bool { return r.Project != only })
		if len(rows) == 0 {
			return nil, fmt.Errorf("project %q not found", only)
		}
	}
	return rows, nil
}

// quotaCell is "used/limit" ("-" for no limit).
func quotaCell(used, limit int64, mib bool) string {
	f := func(n int64) string {
		if mib {
			return resource.FormatMiB(n)
		}
		return strconv.FormatInt(n, 10)
	}
	l := "-"
	if limit > 0 {
		l = f(limit)
	}
	return f(used) + "/" + l
}

// projectUsageTable: PROJECT VMS CPUS MEMORY VOLUMES.
func projectUsageTable(w io.Writer, rows []projectUsageRow) error {
	t := newTable(w, "PROJECT", "VMS", "CPUS", "MEMORY", "VOLUMES")
	for _, r := range rows {
		t.row(r.Project, quotaCell(r.Usage.VMs, r.Limits.MaxVMs, false), quotaCell(r.Usage.CPUs, r.Limits.MaxCPUs, false),
			quotaCell(r.Usage.MemoryMiB, r.Limits.MaxMemoryMiB, true), quotaCell(r.Usage.VolumeMiB, r.Limits.MaxVolumeMiB, true))
	}
	return t.flush()
}

// projectTable: NAME VMS CPUS MEMORY VOLUMES STRATEGY INDEX.
func projectTable(w io.Writer, objs []*resource.Object) error {
	t := newTable(w, "NAME", "VMS", "CPUS", "MEMORY", "VOLUMES", "STRATEGY", "INDEX")
	for _, o := range objs {
		spec, st := resource.StateOf[resource.ProjectSpec, resource.ProjectStatus](o)
		strategy := spec.Strategy
		if strategy == "" {
			strategy = "-"
		}
		t.row(o.Name, quotaCell(st.Usage.VMs, spec.MaxVMs, false), quotaCell(st.Usage.CPUs, spec.MaxCPUs, false),
			quotaCell(st.Usage.MemoryMiB, spec.MaxMemoryMiB, true), quotaCell(st.Usage.VolumeMiB, spec.MaxVolumeMiB, true),
			strategy, uintCell(o.ModifyIndex))
	}
	return t.flush()
}
