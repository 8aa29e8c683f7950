package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

func networkCommand() *cli.Command {
	return &cli.Command{
		Name:      "network",
		Aliases:   []string{"net"},
		Usage:     "create, inspect, change and delete virtual networks",
		UsageText: "kumoi network <create|get|list|update|delete> [options] [NAME]",
		Description: `A network is an address range whose addresses the cluster hands to VM NICs
(IPAM in the state machine: two VMs never hold the same address). Each host
that runs a VM on it gets a libvirt network kumoi-NAME: mode nat (a host-local
bridge with DHCP, NATed to the uplink; the default), isolated (no forwarding)
or bridge (VMs join an existing host bridge, the only mode that spans hosts).
A VM joins a network with 'kumoi vm create --network NAME[:IP]'.

Examples:
   kumoi network create net1 --cidr 10.10.0.0/24 --gateway 10.10.0.1 --mode nat
   kumoi network create lan --cidr 192.168.1.0/24 --mode bridge --bridge br0 --dhcp=false --reserve 192.168.1.1-192.168.1.99
   kumoi network list
   kumoi network get net1
   kumoi network update net1 --mtu 1400
   kumoi network delete net1`,
		Subcommands: []*cli.Command{
			networkCreateCommand(),
			kindGetCommand(resource.KindNetwork, `Shows a network: the columns of 'kumoi network list', then its reserved
ranges and its state on each host that needs it, as the hosts' workers
reported it (ready, pending, missing, failed, recreated, with the reason).`),
			kindListCommand(resource.KindNetwork, `Lists networks sorted by name. ADDRESSES is allocated/capacity: the addresses
VM NICs hold and the ones VMs may hold (the prefix minus network, broadcast,
gateway and reserved addresses). HOSTS is how many hosts report the network
ready, of those that report it.`),
			networkUpdateCommand(),
			kindDeleteCommand(resource.KindNetwork, "A network that VMs use is refused, naming them: delete or change those VMs first."),
		},
	}
}

// networkSpecFlags are the spec flags of network create and update.
func networkSpecFlags(create bool) []cli.Flag {
	cidr := "the network's prefix `CIDR`, e.g. 10.10.0.0/24 or fd00:10::/64"
	if create {
		cidr += " (required)"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "cidr", Usage: cidr},
		&cli.StringFlag{Name: "gateway", Usage: "the host side's `ADDRESS` on the network (default: the first address)"},
		&cli.StringFlag{Name: "mode", Usage: "`MODE`: nat, isolated or bridge (default: nat)"},
		&cli.BoolFlag{Name: "dhcp", Value: true, Usage: "serve DHCP with a fixed lease per VM NIC (--dhcp=false: VMs configure their addresses themselves)"},
		&cli.StringFlag{Name: "mtu", Usage: "`MTU` of the network's links (default: the hypervisor's, 1500)"},
		&cli.StringFlag{Name: "bridge", Usage: "the existing host bridge `DEVICE` of a bridge-mode network, e.g. br0"},
		&cli.StringSliceFlag{Name: "reserve", Usage: "never hand out `FROM[-TO]` (an address or an inclusive range); repeat for several"},
	}
}

func networkCreateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:  "create",
		Usage: "create a network",
		UsageText: "kumoi network create NAME --cidr CIDR [--gateway ADDRESS] [--mode nat|isolated|bridge] [--dhcp=false]\n" +
			"      [--mtu N] [--bridge DEVICE] [--reserve FROM[-TO]]... [--label KEY=VALUE]...",
		Description: `Creates a network. Its addresses go to the NICs of VMs that name it, each VM
NIC also getting a unique MAC; a network that is full leaves new VMs pending
with a reason that says so. Networks whose prefixes overlap are refused when
both are nat or isolated, or both bridge the same host bridge.

Examples:
   kumoi network create net1 --cidr 10.10.0.0/24 --gateway 10.10.0.1 --mode nat
   kumoi network create lab --cidr 10.20.0.0/24 --mode isolated --mtu 9000
   kumoi network create lan --cidr 192.168.1.0/24 --mode bridge --bridge br0 --reserve 192.168.1.1-192.168.1.99 --reserve 192.168.1.254`,
		Flags:  append(networkSpecFlags(true), labelFlag("a label `KEY=VALUE`; repeat for several")),
		Action: networkCreate,
	})
}

// parseReserved parses --reserve FROM[-TO] values.
func parseReserved(vals []string) ([]resource.AddressRange, error) {
	var out []resource.AddressRange
	for _, v := range vals {
		from, to, _ := strings.Cut(v, "-")
		if from == "" || strings.Contains(to, "-") {
			return nil, usagef("invalid --reserve %q: write an address or a range FROM-TO, e.g. --reserve 10.10.0.2-10.10.0.9", v)
		}
		out = append(out, resource.AddressRange{From: strings.TrimSpace(from), To: strings.TrimSpace(to)})
	}
	return out, nil
}

// networkChanges reads the spec flags given into spec fields by their JSON
// names.
func networkChanges(c *cli.Context) (map[string]any, error) {
	ch := map[string]any{}
	for _, f := range []string{"cidr", "gateway", "mode", "bridge"} {
		if c.IsSet(f) {
			ch[f] = c.String(f)
		}
	}
	if c.IsSet("mode") {
		if err := checkChoice("mode", c.String("mode"), resource.NetworkModes...); err != nil {
			return nil, err
		}
	}
	if c.IsSet("dhcp") {
		ch["dhcp"] = c.Bool("dhcp")
	}
	if c.IsSet("mtu") {
		n, err := strconv.Atoi(c.String("mtu"))
		if err != nil || n < 0 {
			return nil, usagef("invalid --mtu %q: give a whole number of bytes, e.g. --mtu 1500", c.String("mtu"))
		}
		ch["mtu"] = n
	}
	if c.IsSet("reserve") {
		r, err := parseReserved(c.StringSlice("reserve"))
		if err != nil {
			return nil, err
		}
		ch["reserved"] = r
	}
	return ch, nil
}

func networkCreate(c *cli.Context) error {
	name, err := newName(c, "network")
	if err != nil {
		return err
	}
	if !c.IsSet("cidr") {
		return usagef("missing --cidr: say which addresses the network has, e.g. kumoi network create %s --cidr 10.10.0.0/24", name)
	}
	ch, err := networkChanges(c)
	if err != nil {
		return err
	}
	return createKind(c, resource.KindNetwork, name, ch)
}

func networkUpdateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:  "update",
		Usage: "change a network",
		UsageText: "kumoi network update NAME [--cidr CIDR] [--gateway ADDRESS] [--mode MODE] [--dhcp=BOOL] [--mtu N] [--bridge DEVICE]\n" +
			"      [--reserve FROM[-TO]]... [--no-reserve] [--label KEY=VALUE]... [--remove-label KEY]... [--cas INDEX]",
		Description: `Reads the network, applies the changes you give and writes it back only if
nobody changed it in between (compare-and-set on its modify_index). dhcp and
mtu may always change; cidr, gateway, mode and bridge only while no VM uses
the network; --reserve replaces the reserved ranges (--no-reserve clears
them), and may not cover an address a VM holds.

Examples:
   kumoi network update net1 --mtu 1400
   kumoi network update net1 --reserve 10.10.0.2-10.10.0.9 --label env=prod
   kumoi network update net1 --dhcp=false --cas 42`,
		Flags: append(networkSpecFlags(false),
			&cli.BoolFlag{Name: "no-reserve", Usage: "clear the reserved ranges"},
			labelFlag("set a label `KEY=VALUE`; repeat for several"),
			&cli.StringSliceFlag{Name: "remove-label", Usage: "remove the label `KEY`; repeat for several"},
			casFlag("update"),
		),
		Action: func(c *cli.Context) error {
			ch, err := networkChanges(c)
			if err != nil {
				return err
			}
			if c.Bool("no-reserve") {
				if c.IsSet("reserve") {
					return usagef("--reserve and --no-reserve contradict each other; choose one")
				}
				ch["reserved"] = nil
			}
			return updateKind(c, resource.KindNetwork, ch)
		},
	})
}

// newName reads and checks the NAME of a create.
func newName(c *cli.Context, what string) (string, error) {
	name, err := oneName(c, what)
	if err != nil {
		return "", err
	}
	if err := resource.ValidateName(name); err != nil {
		return "", usagef("invalid %s name: %s", what, fieldMsg(err))
	}
	return name, nil
}

// createKind creates an object of kind whose spec has the fields of
// spec (by JSON name), with the --label flags, and prints it.
func createKind(c *cli.Context, kind resource.Kind, name string, spec map[string]any) error {
	labels, err := parseLabels("label", c.StringSlice("label"))
	if err != nil {
		return err
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	o, err := s.create(kind, resource.CreateRequest{Name: name, Labels: labels, Spec: raw})
	if err != nil {
		return err
	}
	return printObject(c, o)
}

// create creates an object of kind, saying so when its name is taken.
func (s *session) create(kind resource.Kind, req resource.CreateRequest) (*resource.Object, error) {
	o, err := s.client.Create(s.ctx, kind, req)
	if errors.Is(err, client.ErrAlreadyExists) {
		return nil, fmt.Errorf("%s %q already exists; choose another name or delete it first", kind, req.Name)
	}
	if err != nil {
		return nil, s.fail(err)
	}
	return o, nil
}

// labelChanges reads the --label and --remove-label flags of an update:
// the labels to set and the keys to remove, never one key in both.
func labelChanges(c *cli.Context) (map[string]string, []string, error) {
	set, err := parseLabels("label", c.StringSlice("label"))
	if err != nil {
		return nil, nil, err
	}
	remove := c.StringSlice("remove-label")
	for _, k := range remove {
		if _, both := set[k]; both {
			return nil, nil, usagef("label %q is both set (--label) and removed (--remove-label); choose one", k)
		}
	}
	return set, remove, nil
}

// updateKind is the update verb of networks, images and volumes: the
// spec changes given (by JSON name), --label, --remove-label, --cas, as a
// read-modify-write with compare-and-set.
func updateKind(c *cli.Context, kind resource.Kind, changes map[string]any) error {
	name, err := oneName(c, string(kind))
	if err != nil {
		return err
	}
	setLabels, removeLabels, err := labelChanges(c)
	if err != nil {
		return err
	}
	if len(changes) == 0 && len(setLabels) == 0 && len(removeLabels) == 0 {
		return usagef("nothing to change: give a flag to change (see '%s --help')", c.Command.HelpName)
	}
	cas, err := casValue(c)
	if err != nil {
		return err
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	o, err := s.client.Modify(s.ctx, kind, name, func(cur *resource.Object) (*resource.Object, error) {
		if cas != 0 && cur.ModifyIndex != cas {
			return nil, fmt.Errorf("%s %q was not updated: its modify_index is %d, not %d (it changed since you read it)", kind, name, cur.ModifyIndex, cas)
		}
		next, err := client.PatchSpec(cur, changes)
		if err != nil {
			return nil, err
		}
		if next.Labels == nil {
			next.Labels = map[string]string{}
		}
		maps.Copy(next.Labels, setLabels)
		for _, k := range removeLabels {
			delete(next.Labels, k)
		}
		return next, nil
	})
	switch {
	case errors.Is(err, client.ErrCASMismatch) && cas != 0:
		return fmt.Errorf("%s %q was not updated: its modify_index is no longer %d (it changed since you read it)", kind, name, cas)
	case errors.Is(err, client.ErrCASMismatch):
		return fmt.Errorf("%s %q kept changing while it was being updated, so nothing was written; run the command again", kind, name)
	case err != nil:
		return s.fail(objectErr(kind, name, err))
	}
	return printObject(c, o)
}

// kindGetCommand is the get verb of networks, images and volumes.
func kindGetCommand(kind resource.Kind, doc string) *cli.Command {
	return leaf(&cli.Command{
		Name:      "get",
		Usage:     "show one " + string(kind),
		UsageText: "kumoi " + string(kind) + " get NAME [--stale] [--watch] [-o table|json|yaml]",
		Description: doc + `
-o json or -o yaml prints the whole object, spec and status.

Examples:
   kumoi ` + string(kind) + ` get NAME
   kumoi ` + string(kind) + ` get NAME -o yaml`,
		Flags: []cli.Flag{staleFlag(), watchFlag()},
		Action: func(c *cli.Context) error {
			name, s, err := connectNamed(c, string(kind))
			if err != nil {
				return err
			}
			defer s.close()
			return getAndShow(c, s, kind, name, func(w io.Writer, o *resource.Object) error {
				if err := objectTable(w, kind, []*resource.Object{o}, 0); err != nil {
					return err
				}
				return objectDetails(w, o)
			})
		},
	})
}

// kindListCommand is the list verb of networks, images and volumes.
func kindListCommand(kind resource.Kind, doc string) *cli.Command {
	info, _ := resource.Lookup(kind)
	return leaf(&cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "list " + info.Plural,
		UsageText: "kumoi " + string(kind) + " list [-l SELECTOR] [--stale] [--watch] [-o table|json|yaml]",
		Description: doc + ` With -o json the output is a JSON array ([] when
there are none).

Examples:
   kumoi ` + string(kind) + ` list
   kumoi ` + string(kind) + ` list -l env=prod -o json`,
		Flags:  []cli.Flag{selectorFlag(), staleFlag(), watchFlag()},
		Action: listObjects(kind),
	})
}

// kindDeleteCommand is the delete verb of networks, images and volumes.
func kindDeleteCommand(kind resource.Kind, doc string) *cli.Command {
	return leaf(&cli.Command{
		Name:        "delete",
		Aliases:     []string{"rm"},
		Usage:       "delete a " + string(kind),
		UsageText:   "kumoi " + string(kind) + " delete NAME [--cas INDEX]",
		Description: "Deletes the " + string(kind) + ". " + doc + "\n\nExamples:\n   kumoi " + string(kind) + " delete NAME\n   kumoi " + string(kind) + " delete NAME --cas 42",
		Flags:       []cli.Flag{casFlag("delete")},
		Action:      deleteObject(kind),
	})
}

// networkTable: NAME CIDR GATEWAY MODE DHCP MTU ADDRESSES HOSTS INDEX.
func networkTable(w io.Writer, objs []*resource.Object) error {
	t := newTable(w, "NAME", "CIDR", "GATEWAY", "MODE", "DHCP", "MTU", "ADDRESSES", "HOSTS", "INDEX")
	for _, o := range objs {
		spec, st := resource.StateOf[resource.NetworkSpec, resource.NetworkStatus](o)
		mode := spec.Mode
		if spec.Mode == resource.NetworkBridge {
			mode += ":" + spec.Bridge
		}
		mtu := "-"
		if spec.MTU > 0 {
			mtu = strconv.Itoa(spec.MTU)
		}
		t.row(o.Name, spec.CIDR, spec.Gateway, mode, boolCell(spec.DHCPOn()), mtu,
			fmt.Sprintf("%d/%d", st.Allocated, st.Capacity), hostsReady(st.Hosts), uintCell(o.ModifyIndex))
	}
	return t.flush()
}

// hostsReady is "ready/reported" of per-host states ("-": none).
func hostsReady(hosts map[string]resource.HostResourceState) string {
	if len(hosts) == 0 {
		return "-"
	}
	n := 0
	for _, h := range hosts {
		if h.State == resource.HostResourceReady || h.State == resource.HostResourceRecreate {
			n++
		}
	}
	return fmt.Sprintf("%d/%d", n, len(hosts))
}

// hostStates writes one line per host: "host h1: ready (5m) reason".
func hostStates(b *strings.Builder, what string, hosts map[string]resource.HostResourceState) {
	if len(hosts) == 0 {
		fmt.Fprintf(b, "hosts:   none yet (%s is set up on a host when a VM there needs it)\n", what)
		return
	}
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		st := hosts[h]
		fmt.Fprintf(b, "host %s: %s (since %s ago)", h, st.State, ageCell(st.Since))
		if st.Reason != "" {
			fmt.Fprintf(b, ": %s", textCell(st.Reason))
		}
		b.WriteString("\n")
	}
}

// objectDetails writes what a get shows of an object beyond its table
// row, one "key: value" line each.
func objectDetails(w io.Writer, o *resource.Object) error {
	var b strings.Builder
	switch o.Kind {
	case resource.KindNetwork:
		spec, _ := resource.DecodeSpec[resource.NetworkSpec](o)
		st, _ := resource.DecodeStatus[resource.NetworkStatus](o)
		if spec != nil {
			for _, r := range spec.Reserved {
				if r.To != "" {
					fmt.Fprintf(&b, "reserved: %s-%s\n", r.From, r.To)
				} else {
					fmt.Fprintf(&b, "reserved: %s\n", r.From)
				}
			}
		}
		if st != nil {
			fmt.Fprintf(&b, "addresses: %d allocated of %d", st.Allocated, st.Capacity)
			if st.Next != "" {
				fmt.Fprintf(&b, " (next %s)", st.Next)
			}
			b.WriteString("\n")
			hostStates(&b, "the network", st.Hosts)
		}
	case resource.KindImage:
		spec, _ := resource.DecodeSpec[resource.ImageSpec](o)
		st, _ := resource.DecodeStatus[resource.ImageStatus](o)
		if spec != nil {
			if spec.SHA256 != "" {
				fmt.Fprintf(&b, "sha256:  %s\n", spec.SHA256)
			}
			if spec.SizeBytes > 0 {
				fmt.Fprintf(&b, "size:    %d bytes\n", spec.SizeBytes)
			}
		}
		if st != nil {
			hostStates(&b, "the image", st.Hosts)
		}
	case resource.KindVolume:
		st, _ := resource.DecodeStatus[resource.VolumeStatus](o)
		if st != nil {
			if st.SizeMiB > 0 {
				fmt.Fprintf(&b, "disk:    %s on the host\n", resource.FormatMiB(st.SizeMiB))
			}
		}
	case resource.KindVM:
		spec, _ := resource.VMStateOf(o)
		for i, n := range spec.NICs {
			fmt.Fprintf(&b, "nic %d:   network %s, address %s, mac %s\n", i, n.Network, orNone(n.IP, "none yet"), orNone(n.MAC, "none yet"))
		}
		for i, d := range spec.Disks {
			fmt.Fprintf(&b, "disk %d:  volume %s", i, orNone(d.Volume, "not created yet"))
			if d.Image != "" {
				fmt.Fprintf(&b, " (image %s, %s)", d.Image, resource.FormatMiB(d.SizeMiB))
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}
