package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

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
		Usage:     "create, inspect, power and delete virtual machines",
		UsageText: "kumoi vm <create|get|list|update|start|stop|suspend|resume|reboot|migrate|delete> [options] [NAME]",
		Description: `A VM object holds what you want (spec: cpus, memory, boot, power, ha) and what
the cluster observed (status: phase, host, reason). The scheduler places a new
VM on a host with room for it; that host's worker then makes the real VM match
the spec and reports its phase: pending → scheduled → starting → running (or
stopped, suspended, failed). Changing the spec changes the real VM.

start, stop, suspend and resume set the power the VM should have; --wait waits
until it has it, showing each phase on stderr. stop --force powers the VM off
at once. migrate moves a VM to another host: cold (stopped), --live (it keeps
running) or --restart.

Examples:
   kumoi vm create web-1 --cpus 2 --memory 2GiB --label app=web --wait
   kumoi vm list -l app=web,tier!=db
   kumoi vm list --host hv-1
   kumoi vm stop web-1 --wait
   kumoi vm stop web-1 --force
   kumoi vm migrate web-1 --host hv-2 --wait
   kumoi vm migrate web-1 --live --wait
   kumoi vm delete web-1`,
		Subcommands: []*cli.Command{
			vmCreateCommand(),
			vmGetCommand(),
			vmListCommand(),
			vmUpdateCommand(),
			vmPowerCommand(powerStart),
			vmPowerCommand(powerStop),
			vmPowerCommand(powerSuspend),
			vmPowerCommand(powerResume),
			vmRebootCommand(),
			vmMigrateCommand(),
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
		Name:  "create",
		Usage: "create a VM",
		UsageText: "kumoi vm create NAME --cpus N --memory SIZE [--label KEY=VALUE]... [--power running|stopped|suspended]\n" +
			"      [--ha restart|none] [--image PATH [--image-format qcow2|raw]] [--kernel PATH [--initrd PATH] [--cmdline STR]]\n" +
			"      [--network NETWORK[:IP]]... [--disk image=IMAGE,size=SIZE | --disk volume=VOLUME]... [--wait]",
		Description: `Creates a VM object. The scheduler then places it on a host with room for it
and that host's worker defines the VM and, with --power running (the default),
starts it. NAME is a DNS label: lower-case letters, digits and '-', at most 63
characters.

SIZE is a number with an optional unit: 512MiB, 2GiB, 1.5GiB, 1TiB (also M, G,
T, MB, GB); a bare number means MiB.

The VM boots a disk image (--image, qcow2 unless --image-format raw), a kernel
(--kernel, with an optional --initrd and --cmdline), or both. Boot files live
in each host's image directory (the worker's --image-dir, by default
/var/lib/kumoi/images): give a name in it (debian.qcow2, boot/vmlinuz), or an
absolute path inside it. A path outside it, a symbolic link out of it or
anything but a regular file fails the VM on its host.

--network NETWORK gives the VM a NIC on that network, with an address and a
MAC the cluster allocates; NETWORK:IP asks for that address (refused if
another VM holds it). --disk image=IMAGE,size=SIZE gives it a disk made from
an image (a volume NAME-diskN, deleted with the VM); --disk volume=VOLUME
attaches an existing volume. Both repeat, in order: the first disk boots
unless --image is given.

With --wait the command waits until the VM is in the phase its --power asks
for (running, stopped or suspended), printing each phase on stderr, and then
prints the VM. It fails if the VM fails (with the reason), and if it is not
there within --timeout (5m with --wait), saying where it got stuck, e.g.
pending because no host is large enough.

Examples:
   kumoi vm create web-1 --cpus 2 --memory 2GiB --wait
   kumoi vm create db-1 --cpus 8 --memory 32GiB --label app=db --label tier=back --ha restart
   kumoi vm create disk-1 --cpus 1 --memory 1GiB --image debian.qcow2
   kumoi vm create tiny --cpus 1 --memory 256MiB --kernel boot/vmlinuz --initrd boot/initrd.img --cmdline 'console=ttyS0'
   kumoi vm create spare --cpus 1 --memory 512MiB --power stopped -o json
   kumoi vm create web --cpus 1 --memory 1GiB --network net1 --disk image=debian,size=2GiB
   kumoi vm create db --cpus 2 --memory 4GiB --network net1:10.10.0.5 --disk volume=v1
   kumoi vm create db-1 --cpus 2 --memory 4GiB --requirements 'host.labels.zone == "b" && host.free_memory_mib > 4096' --rank '-host.allocated_cpus'
   kumoi vm create db-1 --cpus 2 --memory 4GiB --group db --affinity anti-affine --hard --strategy binpack --project p1`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cpus", Usage: "`N` virtual CPUs (required)"},
			&cli.StringFlag{Name: "memory", Aliases: []string{"m"}, Usage: "memory `SIZE`, e.g. 512MiB or 2GiB (required)"},
			labelFlag("a label `KEY=VALUE`; repeat for several"),
			&cli.StringFlag{Name: "power", Usage: "`STATE`: running, stopped or suspended (default: running)"},
			&cli.StringFlag{Name: "ha", Usage: "`POLICY`: restart (restart it elsewhere when its host fails) or none (default: none)"},
			&cli.StringFlag{Name: "image", Usage: "boot the disk image `NAME` in the hosts' image directory (--image-dir; or an absolute path inside it)"},
			&cli.StringFlag{Name: "image-format", Usage: "`FORMAT` of --image: qcow2 or raw (default: qcow2)"},
			&cli.StringFlag{Name: "kernel", Usage: "boot the kernel `NAME` in the hosts' image directory directly"},
			&cli.StringFlag{Name: "initrd", Usage: "initial ramdisk `NAME` in the hosts' image directory, for --kernel"},
			&cli.StringFlag{Name: "cmdline", Usage: "kernel command line `STR` for --kernel"},
			&cli.StringSliceFlag{Name: "network", Usage: "a NIC on `NETWORK[:IP]` (the address is allocated unless given); repeat for several"},
			&cli.StringSliceFlag{Name: "disk", Usage: "a disk: `image=IMAGE,size=SIZE` (a new volume from an image) or volume=VOLUME; repeat for several"},
			&cli.StringFlag{Name: "requirements", Usage: "`EXPR`: a boolean expression a host must satisfy, e.g. 'host.labels.zone == \"b\" && host.free_memory_mib > 4096' (docs/scheduling.md)"},
			&cli.StringFlag{Name: "rank", Usage: "`EXPR`: a number over a host's attributes, higher is better, e.g. '-host.allocated_cpus'"},
			&cli.StringFlag{Name: "strategy", Usage: "`STRATEGY`: binpack (least free first) or spread (most free first); default: the project's, then the cluster's"},
			&cli.StringFlag{Name: "group", Usage: "affinity group `NAME` (with --affinity)"},
			&cli.StringFlag{Name: "affinity", Usage: "`RULE` towards the other VMs of --group: affine (same host) or anti-affine (never two on one host)"},
			&cli.BoolFlag{Name: "hard", Usage: "make the --affinity rule hard (never broken; the VM waits) instead of best effort"},
			&cli.StringFlag{Name: "project", Usage: "the `PROJECT` the VM counts against (default: default)"},
			waitFlag("the VM is running (stopped, suspended: what --power says)"),
		},
		Action: vmCreate,
	})
}

// bootValue reads the boot flags (nil when none is given).
func bootValue(c *cli.Context) (*resource.Boot, error) {
	b := resource.Boot{
		Image: c.String("image"), ImageFormat: c.String("image-format"),
		Kernel: c.String("kernel"), Initrd: c.String("initrd"), Cmdline: c.String("cmdline"),
	}
	for _, f := range []struct{ flag, val, example string }{
		{"image", b.Image, "web.qcow2"},
		{"kernel", b.Kernel, "boot/vmlinuz"},
		{"initrd", b.Initrd, "boot/initrd.img"},
	} {
		if c.IsSet(f.flag) && (f.val == "" || slices.Contains(strings.Split(f.val, "/"), "..")) {
			return nil, usagef("invalid --%s %q: give a name in the hosts' image directory (--image-dir), e.g. %s", f.flag, f.val, f.example)
		}
	}
	if c.IsSet("image-format") {
		if !c.IsSet("image") {
			return nil, usagef("--image-format needs --image: it says how the image file is stored")
		}
		if err := checkChoice("image-format", b.ImageFormat, "qcow2", "raw"); err != nil {
			return nil, err
		}
	}
	if !c.IsSet("kernel") {
		for _, f := range []string{"initrd", "cmdline"} {
			if c.IsSet(f) {
				return nil, usagef("--%s needs --kernel: give the kernel to boot, e.g. --kernel boot/vmlinuz", f)
			}
		}
	}
	if b == (resource.Boot{}) {
		return nil, nil
	}
	return &b, nil
}

func vmCreate(c *cli.Context) error {
	name, err := oneName(c, "VM")
	if err != nil {
		return err
	}
	if err := resource.ValidateName(name); err != nil {
		return usagef("invalid VM name: %s", fieldMsg(err))
	}
	spec, err := createSpec(c, name)
	if err != nil {
		return err
	}
	labels, err := parseLabels("label", c.StringSlice("label"))
	if err != nil {
		return err
	}
	rawSpec, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	s, err := connectWait(c)
	if err != nil {
		return err
	}
	defer s.close()
	o, err := s.create(resource.KindVM, resource.CreateRequest{Name: name, Labels: labels, Spec: rawSpec})
	if err != nil {
		return err
	}
	created, _ := resource.VMStateOf(o)
	return printPowered(c, s, o, created.Power)
}

// createSpec reads the spec of the VM name from the flags of vm create.
func createSpec(c *cli.Context, name string) (resource.VMSpec, error) {
	var missing []string
	for _, f := range []string{"cpus", "memory"} {
		if !c.IsSet(f) {
			missing = append(missing, "--"+f)
		}
	}
	if len(missing) > 0 {
		return resource.VMSpec{}, usagef("missing %s: say how big the VM is, e.g. kumoi vm create %s --cpus 2 --memory 2GiB", joinList(missing, "and"), name)
	}
	spec := resource.VMSpec{Power: c.String("power"), HA: c.String("ha")}
	var err error
	if spec.CPUs, err = cpusValue(c); err != nil {
		return spec, err
	}
	if spec.MemoryMiB, err = parseMemory("memory", c.String("memory")); err != nil {
		return spec, err
	}
	if err := checkPowerAndHA(c); err != nil {
		return spec, err
	}
	if spec.NICs, err = nicsValue(c.StringSlice("network")); err != nil {
		return spec, err
	}
	if spec.Disks, err = disksValue(c.StringSlice("disk")); err != nil {
		return spec, err
	}
	if err := placementValue(c, &spec); err != nil {
		return spec, err
	}
	spec.Boot, err = bootValue(c)
	return spec, err
}

// placementValue reads --requirements, --rank, --strategy, --group,
// --affinity, --hard and --project into spec (the API checks the
// expressions and says where one is wrong).
func placementValue(c *cli.Context, spec *resource.VMSpec) error {
	spec.Requirements, spec.Rank = c.String("requirements"), c.String("rank")
	spec.Strategy, spec.Project = c.String("strategy"), c.String("project")
	switch spec.Strategy {
	case "", resource.StrategyBinpack, resource.StrategySpread:
	default:
		return usagef("invalid --strategy %q: use binpack or spread", spec.Strategy)
	}
	group, rule := c.String("group"), c.String("affinity")
	switch {
	case group == "" && rule == "" && !c.Bool("hard"):
		return nil
	case group == "":
		return usagef("--affinity and --hard need --group NAME: the group the rule is about")
	case rule == "":
		return usagef("--group %s needs --affinity affine or --affinity anti-affine", group)
	case rule != resource.AffinityAffine && rule != resource.AffinityAntiAffine:
		return usagef("invalid --affinity %q: use affine (same host) or anti-affine (never two on one host)", rule)
	}
	spec.Affinity = &resource.Affinity{Group: group, Rule: rule, Hard: c.Bool("hard")}
	return nil
}

// vmPlacementDetails prints a VM's placement fields (vm get).
func vmPlacementDetails(w io.Writer, o *resource.Object) error {
	spec, err := resource.DecodeSpec[resource.VMSpec](o)
	if err != nil {
		return nil
	}
	var b strings.Builder
	if spec.Project != "" {
		fmt.Fprintf(&b, "project:      %s\n", spec.Project)
	}
	if spec.Requirements != "" {
		fmt.Fprintf(&b, "requirements: %s\n", spec.Requirements)
	}
	if spec.Rank != "" {
		fmt.Fprintf(&b, "rank:         %s\n", spec.Rank)
	}
	if spec.Strategy != "" {
		fmt.Fprintf(&b, "strategy:     %s\n", spec.Strategy)
	}
	if a := spec.Affinity; a != nil {
		kind := "soft"
		if a.Hard {
			kind = "hard"
		}
		fmt.Fprintf(&b, "affinity:     %s %s, group %s\n", kind, a.Rule, a.Group)
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// nicsValue parses --network NETWORK[:IP] flags.
func nicsValue(vals []string) ([]resource.NIC, error) {
	var out []resource.NIC
	for _, v := range vals {
		net, ip, hasIP := strings.Cut(v, ":")
		if err := resource.ValidateName(net); err != nil {
			return nil, usagef("invalid --network %q: write NETWORK or NETWORK:IP, e.g. --network net1 or --network net1:10.10.0.5 (%s)", v, fieldMsg(err))
		}
		if hasIP {
			a, err := netip.ParseAddr(ip)
			if err != nil || a.Zone() != "" {
				return nil, usagef("invalid --network %q: %q is not an address; write NETWORK:IP, e.g. --network %s:10.10.0.5", v, ip, net)
			}
			ip = a.String()
		}
		out = append(out, resource.NIC{Network: net, IP: ip})
	}
	return out, nil
}

// disksValue parses --disk image=IMAGE,size=SIZE and --disk volume=VOLUME
// flags.
func disksValue(vals []string) ([]resource.Disk, error) {
	const how = "write image=IMAGE,size=SIZE (a new disk from an image, e.g. image=debian,size=2GiB) or volume=VOLUME (an existing volume)"
	var out []resource.Disk
	for _, v := range vals {
		var d resource.Disk
		seen := map[string]bool{}
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || val == "" || seen[k] {
				return nil, usagef("invalid --disk %q: %s", v, how)
			}
			seen[k] = true
			switch k {
			case "image", "volume":
				if err := resource.ValidateName(val); err != nil {
					return nil, usagef("invalid --disk %q: %s %s", v, k, fieldMsg(err))
				}
				if k == "image" {
					d.Image = val
				} else {
					d.Volume = val
				}
			case "size":
				mib, err := resource.ParseMemoryMiB(val)
				if err != nil {
					return nil, usagef("invalid --disk %q: size %q is not a size such as 2GiB or 512MiB", v, val)
				}
				d.SizeMiB = mib
			default:
				return nil, usagef("invalid --disk %q: unknown key %q; %s", v, k, how)
			}
		}
		switch {
		case d.Image != "" && d.Volume != "":
			return nil, usagef("invalid --disk %q: give an image or a volume, not both; %s", v, how)
		case d.Image != "" && d.SizeMiB == 0:
			return nil, usagef("invalid --disk %q: a disk from an image needs its size, e.g. image=%s,size=2GiB", v, d.Image)
		case d.Volume != "" && d.SizeMiB != 0:
			return nil, usagef("invalid --disk %q: a volume has its own size (kumoi volume resize); write volume=%s", v, d.Volume)
		case d.Image == "" && d.Volume == "":
			return nil, usagef("invalid --disk %q: %s", v, how)
		}
		out = append(out, d)
	}
	return out, nil
}

// checkPowerAndHA checks --power and --ha, when given.
func checkPowerAndHA(c *cli.Context) error {
	for _, f := range []struct {
		flag    string
		choices []string
	}{{"power", powerChoices}, {"ha", haChoices}} {
		if c.IsSet(f.flag) {
			if err := checkChoice(f.flag, c.String(f.flag), f.choices...); err != nil {
				return err
			}
		}
	}
	return nil
}

// listObjects is the shared "list" verb.
func listObjects(kind resource.Kind) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := noArgs(c); err != nil {
			return err
		}
		host := ""
		if kind == resource.KindVM && c.IsSet("host") {
			host = c.String("host")
			if err := resource.ValidateName(host); err != nil {
				return usagef("invalid --host: %s", fieldMsg(err))
			}
		}
		return listVMsOrObjects(c, kind, host)
	}
}

// listVMsOrObjects lists objects of kind, only the VMs on host if host is
// set.
func listVMsOrObjects(c *cli.Context, kind resource.Kind, host string) error {
	sel := c.String("selector")
	if _, err := resource.ParseSelector(sel); err != nil {
		return usagef("invalid --selector: %v", err)
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	return listAndShow(c, s, kind, client.QueryOptions{Stale: c.Bool("stale"), Selector: sel, Host: host},
		func(objs []*resource.Object) error { return printObjects(c, kind, objs) })
}

// listAndShow lists objects and shows them with show, once or, with
// --watch, again on every change.
func listAndShow(c *cli.Context, s *session, kind resource.Kind, opts client.QueryOptions, show func([]*resource.Object) error) error {
	var objs []*resource.Object
	if c.Bool("watch") {
		return watch(c, func(ctx context.Context, index uint64) (uint64, error) {
			var meta *client.QueryMeta
			var err error
			objs, meta, err = s.client.List(ctx, kind, watchOptions(opts, index))
			if err != nil {
				return 0, err
			}
			return meta.Index, nil
		}, func(io.Writer) error { return show(objs) })
	}
	objs, _, err := s.client.List(s.ctx, kind, &opts)
	if err != nil {
		return s.fail(err)
	}
	return show(objs)
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
		UsageText: "kumoi vm get NAME [--stale] [--watch] [-o table|json|yaml]",
		Description: `Shows a VM: the columns of 'kumoi vm list', with the whole REASON, then one
line per NIC (network, address, MAC) and per disk (volume, and the image and
size it was made from). -o json or -o yaml prints the whole object, spec
(boot, nics and disks included) and status (phase, host, epoch, reason,
since).

Examples:
   kumoi vm get web-1
   kumoi vm get web-1 -o yaml`,
		Flags:  []cli.Flag{staleFlag(), watchFlag()},
		Action: vmGet,
	})
}

// vmGet shows a VM: its table row, then its NICs and disks.
func vmGet(c *cli.Context) error {
	name, s, err := connectNamed(c, "VM")
	if err != nil {
		return err
	}
	defer s.close()
	return getAndShow(c, s, resource.KindVM, name, func(w io.Writer, o *resource.Object) error {
		if err := objectTable(w, resource.KindVM, []*resource.Object{o}, 0); err != nil {
			return err
		}
		if err := objectDetails(w, o); err != nil {
			return err
		}
		return vmPlacementDetails(w, o)
	})
}

// getAndShow gets one object and shows it (as data with -o or -t, else
// with show), once or, with --watch, again on every change.
func getAndShow(c *cli.Context, s *session, kind resource.Kind, name string, show func(io.Writer, *resource.Object) error) error {
	opts := client.QueryOptions{Stale: c.Bool("stale")}
	var o *resource.Object
	draw := func(w io.Writer) error {
		if done, err := printData(c, o); done {
			return err
		}
		return show(w, o)
	}
	if c.Bool("watch") {
		return watch(c, func(ctx context.Context, index uint64) (uint64, error) {
			var meta *client.QueryMeta
			var err error
			o, meta, err = s.client.Get(ctx, kind, name, watchOptions(opts, index))
			if err != nil {
				return 0, objectErr(kind, name, err)
			}
			return meta.Index, nil
		}, draw)
	}
	var err error
	if o, _, err = s.client.Get(s.ctx, kind, name, &opts); err != nil {
		return s.fail(objectErr(kind, name, err))
	}
	return draw(writer(c))
}

func vmListCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "list VMs",
		UsageText: "kumoi vm list [-l SELECTOR] [--host HOST] [--stale] [--watch] [-o table|json|yaml]",
		Description: `Lists VMs sorted by name, optionally only those whose labels match a selector
or those placed on one host. Columns: POWER is what the VM should be (spec),
PHASE what it is (status: pending, scheduled, starting, running, suspended,
stopping, stopped, failed, lost), HOST where it is placed, INDEX its
modify_index (for --cas), REASON why it is in its phase (shortened; 'kumoi vm
get NAME' shows all of it). With -o json the output is a JSON array of VM
objects ([] when there are none).

Examples:
   kumoi vm list
   kumoi vm list -l app=web,tier!=db
   kumoi vm list --host hv-1
   kumoi vm list -l '!ha-tested' -o json`,
		Flags: []cli.Flag{
			selectorFlag(),
			&cli.StringFlag{Name: "host", Usage: "only the VMs placed on host `HOST`"},
			staleFlag(),
			watchFlag(),
		},
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

// updateChanges reads what vm update is to change from its flags: the
// spec fields to set (by their JSON names), the labels to set and the
// labels to remove.
func updateChanges(c *cli.Context) (changes map[string]any, setLabels map[string]string, removeLabels []string, err error) {
	changes = map[string]any{}
	if c.IsSet("cpus") {
		n, err := cpusValue(c)
		if err != nil {
			return nil, nil, nil, err
		}
		changes["cpus"] = n
	}
	if c.IsSet("memory") {
		mib, err := parseMemory("memory", c.String("memory"))
		if err != nil {
			return nil, nil, nil, err
		}
		changes["memory_mib"] = mib
	}
	if err := checkPowerAndHA(c); err != nil {
		return nil, nil, nil, err
	}
	for _, f := range []string{"power", "ha"} {
		if c.IsSet(f) {
			changes[f] = c.String(f)
		}
	}
	if setLabels, removeLabels, err = labelChanges(c); err != nil {
		return nil, nil, nil, err
	}
	if len(changes) == 0 && len(setLabels) == 0 && len(removeLabels) == 0 {
		return nil, nil, nil, usagef("nothing to change: give at least one of --cpus, --memory, --power, --ha, --label or --remove-label")
	}
	return changes, setLabels, removeLabels, nil
}

func vmUpdate(c *cli.Context) error {
	name, err := oneName(c, "VM")
	if err != nil {
		return err
	}
	changes, setLabels, removeLabels, err := updateChanges(c)
	if err != nil {
		return err
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

	next, err := client.PatchSpec(cur, changes)
	if err != nil {
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
		UsageText: "kumoi vm delete NAME [--force] [--cas INDEX] [--wait]",
		Description: `Deletes the VM object, in any phase; its worker then destroys the real VM.
There is no confirmation and no phase check today, so --force ("delete even
if it is running") changes nothing yet; scripts that mean it should pass it,
as later versions may ask before deleting a running VM. With --wait the
command returns once the controllers no longer have the VM. With -o json or
-o yaml the deleted object is printed.

Examples:
   kumoi vm delete web-1
   kumoi vm delete web-1 --force --wait
   kumoi vm delete web-1 --cas 42`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "delete even if the VM is running"},
			casFlag("delete"),
			waitFlag("the VM is gone"),
		},
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
		cas, err := casValue(c)
		if err != nil {
			return err
		}
		s, err := connectWait(c)
		if err != nil {
			return err
		}
		defer s.close()
		o, err := s.client.Delete(s.ctx, kind, name, &client.WriteOptions{CAS: cas})
		if errors.Is(err, client.ErrCASMismatch) {
			return fmt.Errorf("%s %q was not deleted: its modify_index is no longer %d (it changed since you read it)", kind, name, cas)
		}
		if err != nil {
			return s.fail(objectErr(kind, name, err))
		}
		if c.Bool("wait") {
			if err := waitGone(c, s, o); err != nil {
				return err
			}
		}
		if done, err := printData(c, o); done {
			return err
		}
		_, err = fmt.Fprintf(writer(c), "%s %q deleted\n", kind, name)
		return err
	}
}

// A powerVerb sets a VM's spec.power: start, stop, suspend, resume.
type powerVerb struct {
	name  string // the verb
	power string // the spec.power it sets
	usage string
	doc   string // description, before the examples
}

var (
	powerStart = powerVerb{name: "start", power: resource.PowerRunning, usage: "start a stopped VM",
		doc: `Sets the VM's power to running, so that its worker boots it. A suspended VM is
resumed with 'kumoi vm resume' instead; a failed VM cannot be started again
where it is: start places it again, on any host, with a new placement epoch.`}
	powerStop = powerVerb{name: "stop", power: resource.PowerStopped, usage: "shut a VM down",
		doc: `Sets the VM's power to stopped: its worker shuts the guest down (ACPI power
button, then power off after a grace period). With --force it powers the
guest off at once (pulls the plug; POST /v1/vms/NAME/stop {"force":true}),
which also cuts short a graceful stop under way, e.g. of a guest that
ignores the power button. The VM keeps its host and its reservation there;
'kumoi vm start' boots it again.`}
	powerSuspend = powerVerb{name: "suspend", power: resource.PowerSuspended, usage: "pause a running VM",
		doc: `Sets the VM's power to suspended: its worker pauses the guest, which keeps its
memory on the host. Only a VM that is to run can be suspended, not a stopped
one.`}
	powerResume = powerVerb{name: "resume", power: resource.PowerRunning, usage: "continue a suspended VM",
		doc: `Sets the power of a suspended VM back to running: its worker continues the
paused guest. A VM that is not suspended is refused (use 'kumoi vm start' for
a stopped one).`}
)

func vmPowerCommand(v powerVerb) *cli.Command {
	already := "\nIf its power already is " + v.power + ", nothing is written."
	if v == powerResume {
		already = ""
	}
	return leaf(&cli.Command{
		Name:      v.name,
		Usage:     v.usage,
		UsageText: powerUsage(v),
		Description: v.doc + `

The change is a read-modify-write of spec.power with compare-and-set on the
VM's modify_index, re-read and retried when the cluster changed the VM in
between (a worker reporting its phase).` + already + `

With --wait the command waits until the VM's phase is ` + resource.PowerPhase(v.power) + `, printing each
phase on stderr; it fails with the reason if the VM fails, and after
--timeout (5m with --wait). Then the VM is printed.

Examples:
   kumoi vm ` + v.name + ` web-1
   kumoi vm ` + v.name + ` web-1 --wait
   kumoi vm ` + v.name + ` web-1 --wait --timeout 30s -o json`,
		Flags:  powerFlags(v),
		Action: func(c *cli.Context) error { return vmPower(c, v) },
	})
}

func powerUsage(v powerVerb) string {
	u := "kumoi vm " + v.name + " NAME"
	if v == powerStop {
		u += " [--force]"
	}
	return u + " [--wait] [-o table|json|yaml]"
}

func powerFlags(v powerVerb) []cli.Flag {
	fs := []cli.Flag{waitFlag("the VM is " + resource.PowerPhase(v.power))}
	if v == powerStop {
		fs = append(fs, &cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "power off at once, without asking the guest to shut down"})
	}
	return fs
}

func vmPower(c *cli.Context, v powerVerb) error {
	name, s, err := connectNamedWait(c, "VM")
	if err != nil {
		return err
	}
	defer s.close()
	var o *resource.Object
	if v == powerStop && c.Bool("force") {
		o, err = vmForceStop(s, name)
	} else {
		o, err = vmSetPower(c, s, name, v)
	}
	if err != nil {
		return err
	}
	return printPowered(c, s, o, v.power)
}

// vmForceStop powers the VM off at once (stop --force).
func vmForceStop(s *session, name string) (*resource.Object, error) {
	vm, err := s.client.VMs().Stop(s.ctx, name, true)
	if err != nil {
		return nil, objectErr(resource.KindVM, name, err)
	}
	return vm.Object, nil
}

// vmSetPower sets the VM's spec.power as verb v says, when v applies to
// the VM in its state (checkPower). start places a failed or lost VM again
// instead.
func vmSetPower(c *cli.Context, s *session, name string, v powerVerb) (*resource.Object, error) {
	if v == powerStart {
		// A failed or lost VM is started again from scratch: the server
		// sends it back to placement (POST /v1/vms/NAME/start).
		cur, _, err := s.client.Get(s.ctx, resource.KindVM, name, nil)
		if err != nil {
			return nil, objectErr(resource.KindVM, name, err)
		}
		if _, st := resource.VMStateOf(cur); st.Phase == resource.PhaseFailed || st.Phase == resource.PhaseLost {
			o, err := s.client.Action(s.ctx, name, client.ActionStart)
			if err != nil {
				return nil, objectErr(resource.KindVM, name, err)
			}
			fmt.Fprintf(c.App.ErrWriter, "%s: was %s; placing it again\n", name, st.Phase)
			return o, nil
		}
	}
	return updateSpec(s, resource.KindVM, name, func(cur *resource.Object) (map[string]any, error) {
		spec, st := resource.VMStateOf(cur)
		done, err := checkPower(v, name, spec, st)
		if err != nil || done {
			if done {
				fmt.Fprintf(c.App.ErrWriter, "%s: power is already %s; nothing to change\n", name, v.power)
			}
			return nil, err
		}
		return map[string]any{"power": v.power}, nil
	})
}

// printPowered prints the VM o; with --wait, once it has the phase that
// power asks for (waitPower).
func printPowered(c *cli.Context, s *session, o *resource.Object, power string) error {
	if c.Bool("wait") {
		var err error
		if o, err = waitPower(c, s, o, power); err != nil {
			return err
		}
	}
	return printObject(c, o)
}

// checkPower decides whether verb v applies to a VM in its state: done
// when the VM already has the power v sets, an error naming the phase when
// v makes no sense now.
func checkPower(v powerVerb, name string, spec *resource.VMSpec, st *resource.VMStatus) (done bool, err error) {
	refuse := func(why, hint string) error {
		msg := fmt.Sprintf("cannot %s vm %q: %s (phase %s, power %s)", v.name, name, why, st.Phase, spec.Power)
		if hint != "" {
			msg += "; " + hint
		}
		return errors.New(msg)
	}
	if st.Phase == resource.PhaseFailed && v.power != resource.PowerStopped {
		reason := st.Reason
		if reason == "" {
			reason = "no reason given"
		}
		return false, fmt.Errorf("cannot %s vm %q: it is failed (%s); 'kumoi vm start %s' places it again", v.name, name, reason, name)
	}
	switch v {
	case powerStart:
		if spec.Power == resource.PowerSuspended {
			return false, refuse("it is suspended", "continue it with 'kumoi vm resume "+name+"'")
		}
	case powerSuspend:
		if spec.Power == resource.PowerStopped {
			return false, refuse("it is stopped", "only a running VM can be suspended; start it with 'kumoi vm start "+name+"'")
		}
	case powerResume:
		switch spec.Power {
		case resource.PowerSuspended:
			return false, nil
		case resource.PowerStopped:
			return false, refuse("it is not suspended", "start it with 'kumoi vm start "+name+"'")
		}
		return false, refuse("it is not suspended", "")
	}
	return spec.Power == v.power, nil
}

// updateSpec is a read-modify-write of an object's spec with
// compare-and-set (client.Modify): it reads the object, asks change for the
// spec fields to set (nil: nothing to write, the object is returned as
// read), and writes them only if the object did not change in between;
// when it did, it reads and asks again, up to client.ModifyAttempts times.
func updateSpec(s *session, kind resource.Kind, name string, change func(cur *resource.Object) (map[string]any, error)) (*resource.Object, error) {
	o, err := s.client.Modify(s.ctx, kind, name, func(cur *resource.Object) (*resource.Object, error) {
		changes, err := change(cur)
		if err != nil || changes == nil {
			return nil, err
		}
		return client.PatchSpec(cur, changes)
	})
	switch {
	case errors.Is(err, client.ErrCASMismatch):
		return nil, fmt.Errorf("%s %q kept changing while it was being updated (%d attempts), so nothing was written; run the command again", kind, name, client.ModifyAttempts)
	case err != nil:
		return nil, s.fail(objectErr(kind, name, err))
	}
	return o, nil
}

// waitFlag is the --wait flag of a verb that waits until something holds.
func waitFlag(until string) *cli.BoolFlag {
	return &cli.BoolFlag{
		Name:  "wait",
		Usage: "wait until " + until + ", with progress on stderr (up to --timeout, which is 5m with --wait)",
	}
}

// blockingWait is how long one blocking read waits for a change.
const blockingWait = 30 * time.Second

// progress shows a VM's phase changes on stderr (liveLine: one line per
// change, or redrawn in place on a terminal): "web: scheduled on hv-2".
type progress struct {
	line *liveLine
	name string
}

func newProgress(c *cli.Context, name string) *progress {
	return &progress{line: newLiveLine(c.App.ErrWriter), name: name}
}

func (p *progress) show(st *resource.VMStatus) { p.line.show(progressLine(p.name, st)) }

func (p *progress) finish() { p.line.finish() }

func progressLine(name string, st *resource.VMStatus) string {
	line := name + ": " + cmp.Or(st.Phase, "unknown")
	switch st.Phase {
	case resource.PhaseScheduled, resource.PhaseRunning, resource.PhaseSuspended, resource.PhaseStopped, resource.PhaseMigrating:
		if st.Host != "" {
			line += " on " + st.Host
		}
	}
	if st.Reason != "" {
		line += " (" + st.Reason + ")"
	}
	return line
}

// waitPower waits, with blocking reads, until the VM o has the phase that
// power asks for, printing its progress, and returns it as it is then. It
// fails when the VM fails, is lost, is deleted, gets another power, or
// does not get there before s runs out of time.
func waitPower(c *cli.Context, s *session, o *resource.Object, power string) (*resource.Object, error) {
	name, want := o.Name, resource.PowerPhase(power)
	p := newProgress(c, name)
	defer p.finish()
	index := o.ModifyIndex
	for {
		spec, st := resource.VMStateOf(o)
		switch {
		case st.Phase == resource.PhaseFailed:
			return nil, fmt.Errorf("vm %q failed: %s", name, cmp.Or(st.Reason, "no reason given"))
		case st.Phase == resource.PhaseLost:
			return nil, fmt.Errorf("vm %q is lost: %s", name, cmp.Or(st.Reason, "its host is gone"))
		}
		if spec.Power != power {
			return nil, fmt.Errorf("vm %q: its power was changed to %s while waiting for it to be %s; it is %s%s", name, spec.Power, want, st.Phase, reasonSuffix(st))
		}
		p.show(st)
		if st.Phase == want {
			return o, nil
		}
		next, meta, err := s.client.Get(s.ctx, resource.KindVM, name, &client.QueryOptions{WaitIndex: index, WaitTime: blockingWait})
		switch {
		case client.IsNotFound(err):
			return nil, fmt.Errorf("vm %q was deleted while waiting for it to be %s", name, want)
		case err != nil && errors.Is(s.ctx.Err(), context.DeadlineExceeded) && c.Context.Err() == nil:
			return nil, fmt.Errorf("vm %q is not %s after %s: it is still %s%s; raise --timeout, or see 'kumoi vm get %s'",
				name, want, s.timeout, st.Phase, reasonSuffix(st), name)
		case err != nil:
			return nil, s.fail(err)
		}
		if meta != nil && meta.Index > index {
			index = meta.Index
		}
		o = next
	}
}

// waitGone waits until the object o no longer exists.
func waitGone(c *cli.Context, s *session, o *resource.Object) error {
	p := newProgress(c, o.Name)
	defer p.finish()
	index := o.ModifyIndex
	for {
		cur, meta, err := s.client.Get(s.ctx, o.Kind, o.Name, &client.QueryOptions{WaitIndex: index, WaitTime: blockingWait})
		switch {
		case client.IsNotFound(err):
			return nil
		case err != nil && errors.Is(s.ctx.Err(), context.DeadlineExceeded) && c.Context.Err() == nil:
			return fmt.Errorf("%s %q still exists after %s; raise --timeout, or see 'kumoi %s get %s'", o.Kind, o.Name, s.timeout, o.Kind, o.Name)
		case err != nil:
			return s.fail(err)
		}
		if cur.Kind == resource.KindVM {
			_, st := resource.VMStateOf(cur)
			p.show(st)
		}
		if meta != nil && meta.Index > index {
			index = meta.Index
		}
	}
}

// reasonSuffix is " (<reason>)" or "".
func reasonSuffix(st *resource.VMStatus) string {
	if st.Reason == "" {
		return ""
	}
	return " (" + st.Reason + ")"
}

func vmRebootCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "reboot",
		Usage:     "reboot a running VM",
		UsageText: "kumoi vm reboot NAME [-o table|json|yaml]",
		Description: `Asks the VM's worker to reboot the guest (POST /v1/vms/NAME/reboot). Only a
running VM can be rebooted; the answer is a conflict naming the phase
otherwise. status.reboot_requested records the request and status.reboot_done
catches up with it once the worker has rebooted the guest.

Examples:
   kumoi vm reboot web-1`,
		Action: vmReboot,
	})
}

func vmReboot(c *cli.Context) error {
	name, s, err := connectNamed(c, "VM")
	if err != nil {
		return err
	}
	defer s.close()
	o, err := s.client.Action(s.ctx, name, client.ActionReboot)
	if err != nil {
		return objectErr(resource.KindVM, name, err)
	}
	return printObject(c, o)
}

func vmMigrateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "migrate",
		Usage:     "move a VM to another host: cold, live, or by restart",
		UsageText: "kumoi vm migrate NAME [--host HOST] [--live | --restart] [--abort] [--wait] [-o table|json|yaml]",
		Description: `Moves the VM to another host (POST /v1/vms/NAME/migrate). Without --host the
controllers pick a ready host with room for it that its requirements,
affinity and the project's quota allow, as the scheduler would.

Without --live or --restart the move is cold: the VM must be stopped ('kumoi
vm stop NAME --wait' first), failed or lost, or its host must have been down
or left for the controllers' --host-down-grace (by then that host has fenced
itself). It gets a new placement epoch there and keeps its power; the old
host's worker removes its domain. With --wait the command waits until the VM
is stopped or running (its power) on the new host, printing each phase on
stderr.

--live moves a running VM while it keeps running: the target's worker
readies its networks, volumes and images, then the hypervisor copies the
guest's memory (and disks that are not shared) and pauses it only for the
last round. Both hosts' workers must take live migrations ('kumoi host get'
shows their migration modes). --restart shuts the guest down here and starts
it there (any driver). A VM that does not run moves cold with either flag.
Both need every controller at log protocol 9. The VM is in phase migrating
until the move ends; status.migration says how far it is.

--abort cancels the migration under way: at once while the target prepares;
once the source copies, it cancels and the VM stays (or, if the hypervisor
had finished, it has moved). --abort again while the source has not
answered (its worker hung) ends the migration at once.

With --live, --restart or --abort, --wait waits until the migration has
ended and says how: "moved to HOST" (with how, e.g. paused 12 ms) or "stayed
on HOST" with why (failed, aborted; the exit status is then 1), up to
--timeout.

Examples:
   kumoi vm migrate web-1 --live --wait
   kumoi vm migrate web-1 --host hv-2 --restart --wait
   kumoi vm migrate web-1 --abort --wait
   kumoi vm stop web-1 --wait && kumoi vm migrate web-1 --wait && kumoi vm start web-1
   kumoi vm migrate web-1 --host hv-2`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "host", Usage: "move it to `HOST` (default: the controllers pick one, as the scheduler would)"},
			&cli.BoolFlag{Name: "live", Usage: "move a running VM while it keeps running (both hosts must take live migrations)"},
			&cli.BoolFlag{Name: "restart", Usage: "move a running VM by shutting it down here and starting it there"},
			&cli.BoolFlag{Name: "abort", Usage: "cancel the migration under way"},
			waitFlag("the move has ended (cold: the VM is stopped or running, its power, on the new host)"),
		},
		Action: vmMigrate,
	})
}

func vmMigrate(c *cli.Context) error {
	live, restart, abort := c.Bool("live"), c.Bool("restart"), c.Bool("abort")
	switch {
	case live && restart:
		return usagef("--live and --restart exclude each other: a live migration keeps the guest running, a restart shuts it down")
	case abort && (live || restart || c.IsSet("host")):
		return usagef("--abort takes no --host, --live or --restart: it cancels the migration under way")
	}
	name, s, err := connectNamedWait(c, "VM")
	if err != nil {
		return err
	}
	defer s.close()
	vm, err := s.client.VMs().MigrateWith(s.ctx, name, client.MigrateOptions{Host: c.String("host"), Live: live, Restart: restart, Abort: abort})
	if err != nil {
		return s.fail(objectErr(resource.KindVM, name, err))
	}
	m := vm.Status.Migration
	switch {
	case m != nil && !abort:
		fmt.Fprintf(c.App.ErrWriter, "%s: migrating %s from %s to %s\n", name, m.Mode, vm.Status.Host, m.Target)
	case abort && m != nil:
		fmt.Fprintf(c.App.ErrWriter, "%s: aborting its migration to %s\n", name, m.Target)
	case abort:
		fmt.Fprintf(c.App.ErrWriter, "%s: not migrating: %s on %s%s\n", name, vm.Status.Phase, vm.Status.Host, reasonSuffix(&vm.Status))
	default:
		fmt.Fprintf(c.App.ErrWriter, "%s: moving to %s\n", name, vm.Status.Host)
		return printPowered(c, s, vm.Object, vm.Spec.Power)
	}
	if !c.Bool("wait") || m == nil {
		return printObject(c, vm.Object)
	}
	o, err := waitMigration(c, s, vm.Object, vm.Status.Host, m, abort)
	if o != nil {
		if perr := printObject(c, o); perr != nil {
			return perr
		}
	}
	return err
}

// waitMigration waits, with blocking reads, until the migration m of the
// VM o (on host from) has ended, printing its progress, and says how: nil
// when the VM moved to the target, an error saying why when it stayed
// (unless abort: the user asked for that).
func waitMigration(c *cli.Context, s *session, o *resource.Object, from string, m *resource.VMMigration, abort bool) (*resource.Object, error) {
	name := o.Name
	index := o.ModifyIndex
	line := newLiveLine(c.App.ErrWriter)
	for {
		_, st := resource.VMStateOf(o)
		cur := st.Migration
		if cur == nil || cur.ID != m.ID {
			line.finish()
			if st.Host == m.Target {
				fmt.Fprintf(c.App.ErrWriter, "%s: moved to %s%s\n", name, m.Target, reasonSuffix(st))
				return o, nil
			}
			if abort {
				fmt.Fprintf(c.App.ErrWriter, "%s: stayed on %s%s\n", name, cmp.Or(st.Host, from), reasonSuffix(st))
				return o, nil
			}
			return o, fmt.Errorf("vm %q stayed on %s: %s", name, cmp.Or(st.Host, from), cmp.Or(st.Reason, "the migration ended without moving it"))
		}
		line.show(fmt.Sprintf("%s: migrating %s to %s: %s%s", name, cur.Mode, cur.Target, cur.State, reasonSuffix(st)))
		next, meta, err := s.client.Get(s.ctx, resource.KindVM, name, &client.QueryOptions{WaitIndex: index, WaitTime: blockingWait})
		if err != nil {
			line.finish()
		}
		switch {
		case client.IsNotFound(err):
			return nil, fmt.Errorf("vm %q was deleted while it migrated", name)
		case err != nil && errors.Is(s.ctx.Err(), context.DeadlineExceeded) && c.Context.Err() == nil:
			return nil, fmt.Errorf("vm %q is still migrating %s to %s after %s (%s); raise --timeout, follow it with 'kumoi vm get %s', or cancel it with 'kumoi vm migrate %s --abort'",
				name, cur.Mode, cur.Target, s.timeout, cur.State, name, name)
		case err != nil:
			return nil, s.fail(err)
		}
		if meta != nil && meta.Index > index {
			index = meta.Index
		}
		index = max(index, next.ModifyIndex)
		o = next
	}
}
