package script

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// Network, Image and Volume are the other object kinds as Starlark
// values, with the interface of VMs and hosts: name, labels, index, spec,
// status, their own attributes, refresh(), delete() and set_labels().
type (
	// Network is a virtual network as a Starlark value.
	Network struct{ object }
	// Image is a catalog image as a Starlark value.
	Image struct{ object }
	// Volume is a volume as a Starlark value.
	Volume struct{ object }
)

var (
	_ starlark.HasAttrs = (*Network)(nil)
	_ starlark.HasAttrs = (*Image)(nil)
	_ starlark.HasAttrs = (*Volume)(nil)
)

func (n *Network) objectOf() *object { return &n.object }
func (i *Image) objectOf() *object   { return &i.object }
func (v *Volume) objectOf() *object  { return &v.object }

func (n *Network) Type() string { return "network" }
func (i *Image) Type() string   { return "image" }
func (v *Volume) Type() string  { return "volume" }

func (n *Network) Hash() (uint32, error) { return starlark.String("network/" + n.get().Name).Hash() }
func (i *Image) Hash() (uint32, error)   { return starlark.String("image/" + i.get().Name).Hash() }
func (v *Volume) Hash() (uint32, error)  { return starlark.String("volume/" + v.get().Name).Hash() }

// CompareSameType makes values equal when they name the same object.
func (n *Network) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	return compareNames(op, n.get().Name, y.(*Network).get().Name)
}

// CompareSameType makes values equal when they name the same object.
func (i *Image) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	return compareNames(op, i.get().Name, y.(*Image).get().Name)
}

// CompareSameType makes values equal when they name the same object.
func (v *Volume) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	return compareNames(op, v.get().Name, y.(*Volume).get().Name)
}

func (n *Network) String() string {
	o := n.get()
	spec, st := resource.StateOf[resource.NetworkSpec, resource.NetworkStatus](o)
	return fmt.Sprintf("network(%q, cidr=%s, allocated=%d/%d)", o.Name, orDash(spec.CIDR), st.Allocated, st.Capacity)
}

func (i *Image) String() string {
	o := i.get()
	spec, _ := resource.StateOf[resource.ImageSpec, resource.ImageStatus](o)
	return fmt.Sprintf("image(%q, format=%s)", o.Name, orDash(spec.Format))
}

func (v *Volume) String() string {
	o := v.get()
	spec, st := resource.StateOf[resource.VolumeSpec, resource.VolumeStatus](o)
	s := fmt.Sprintf("volume(%q, size=%s, phase=%s", o.Name, resource.FormatMiB(spec.SizeMiB), orDash(st.Phase))
	if st.AttachedTo != "" {
		s += ", attached_to=" + st.AttachedTo
	}
	return s + ")"
}

// Attributes and methods of the kinds.
var (
	networkAttrs   = []string{"name", "labels", "index", "spec", "status", "cidr", "gateway", "mode", "allocated", "capacity", "hosts"}
	networkMethods = map[string]method[*Network]{
		"refresh":    kindRefresh[*Network](resource.KindNetwork),
		"delete":     kindDelete[*Network](resource.KindNetwork),
		"set_labels": setLabels[*Network](resource.KindNetwork),
	}
	imageAttrs   = []string{"name", "labels", "index", "spec", "status", "format", "source", "sha256", "hosts"}
	imageMethods = map[string]method[*Image]{
		"refresh":    kindRefresh[*Image](resource.KindImage),
		"delete":     kindDelete[*Image](resource.KindImage),
		"set_labels": setLabels[*Image](resource.KindImage),
	}
	volumeAttrs   = []string{"name", "labels", "index", "spec", "status", "size_mib", "size", "image", "persistent", "phase", "host", "attached_to", "reason"}
	volumeMethods = map[string]method[*Volume]{
		"refresh":    kindRefresh[*Volume](resource.KindVolume),
		"delete":     kindDelete[*Volume](resource.KindVolume),
		"set_labels": setLabels[*Volume](resource.KindVolume),
		"attach":     volumeAttach,
		"detach":     volumeDetach,
		"resize":     volumeResize,
	}
)

func (n *Network) AttrNames() []string { return attrNames(networkAttrs, networkMethods) }
func (i *Image) AttrNames() []string   { return attrNames(imageAttrs, imageMethods) }
func (v *Volume) AttrNames() []string  { return attrNames(volumeAttrs, volumeMethods) }

func (n *Network) Attr(name string) (starlark.Value, error) {
	if m, ok := networkMethods[name]; ok {
		return bind("network", n, name, m), nil
	}
	o := n.get()
	if a := metaAttr(o, name); a != nil {
		return a, nil
	}
	spec, st := resource.StateOf[resource.NetworkSpec, resource.NetworkStatus](o)
	switch name {
	case "cidr":
		return starlark.String(spec.CIDR), nil
	case "gateway":
		return starlark.String(spec.Gateway), nil
	case "mode":
		return starlark.String(spec.Mode), nil
	case "allocated":
		return starlark.MakeInt64(st.Allocated), nil
	case "capacity":
		return starlark.MakeInt64(st.Capacity), nil
	case "hosts":
		return hostStatesValue(st.Hosts), nil
	case "spec":
		reserved := make([]starlark.Value, len(spec.Reserved))
		for i, r := range spec.Reserved {
			reserved[i] = structOf("address_range", starlark.StringDict{"from": starlark.String(r.From), "to": starlark.String(r.To)})
		}
		return structOf("network_spec", starlark.StringDict{
			"cidr": starlark.String(spec.CIDR), "gateway": starlark.String(spec.Gateway), "dhcp": starlark.Bool(spec.DHCPOn()),
			"mode": starlark.String(spec.Mode), "bridge": starlark.String(spec.Bridge), "mtu": starlark.MakeInt(spec.MTU),
			"reserved": starlark.NewList(reserved),
		}), nil
	case "status":
		return structOf("network_status", starlark.StringDict{
			"allocated": starlark.MakeInt64(st.Allocated), "capacity": starlark.MakeInt64(st.Capacity),
			"next": starlark.String(st.Next), "hosts": hostStatesValue(st.Hosts),
		}), nil
	}
	return nil, nil
}

func (i *Image) Attr(name string) (starlark.Value, error) {
	if m, ok := imageMethods[name]; ok {
		return bind("image", i, name, m), nil
	}
	o := i.get()
	if a := metaAttr(o, name); a != nil {
		return a, nil
	}
	spec, st := resource.StateOf[resource.ImageSpec, resource.ImageStatus](o)
	switch name {
	case "format":
		return starlark.String(spec.Format), nil
	case "source":
		if spec.URL != "" {
			return starlark.String(spec.URL), nil
		}
		return starlark.String(spec.File), nil
	case "sha256":
		return starlark.String(spec.SHA256), nil
	case "hosts":
		return hostStatesValue(st.Hosts), nil
	case "spec":
		return structOf("image_spec", starlark.StringDict{
			"format": starlark.String(spec.Format), "file": starlark.String(spec.File), "url": starlark.String(spec.URL),
			"size_bytes": starlark.MakeInt64(spec.SizeBytes), "sha256": starlark.String(spec.SHA256),
		}), nil
	case "status":
		return structOf("image_status", starlark.StringDict{"hosts": hostStatesValue(st.Hosts)}), nil
	}
	return nil, nil
}

func (v *Volume) Attr(name string) (starlark.Value, error) {
	if m, ok := volumeMethods[name]; ok {
		return bind("volume", v, name, m), nil
	}
	o := v.get()
	if a := metaAttr(o, name); a != nil {
		return a, nil
	}
	spec, st := resource.StateOf[resource.VolumeSpec, resource.VolumeStatus](o)
	switch name {
	case "size_mib":
		return starlark.MakeInt64(spec.SizeMiB), nil
	case "size":
		return starlark.String(resource.FormatMiB(spec.SizeMiB)), nil
	case "image":
		return noneIfEmpty(spec.Image), nil
	case "persistent":
		return starlark.Bool(spec.Persistent), nil
	case "phase":
		return starlark.String(st.Phase), nil
	case "reason":
		return starlark.String(st.Reason), nil
	case "host":
		return noneIfEmpty(st.Host), nil
	case "attached_to":
		return noneIfEmpty(st.AttachedTo), nil
	case "spec":
		return structOf("volume_spec", starlark.StringDict{
			"size_mib": starlark.MakeInt64(spec.SizeMiB), "size": starlark.String(resource.FormatMiB(spec.SizeMiB)),
			"image": starlark.String(spec.Image), "persistent": starlark.Bool(spec.Persistent),
		}), nil
	case "status":
		return structOf("volume_status", starlark.StringDict{
			"phase": starlark.String(st.Phase), "host": starlark.String(st.Host), "attached_to": starlark.String(st.AttachedTo),
			"reason": starlark.String(st.Reason), "since": timeValue(st.Since), "size_mib": starlark.MakeInt64(st.SizeMiB),
		}), nil
	}
	return nil, nil
}

func noneIfEmpty(s string) starlark.Value {
	if s == "" {
		return starlark.None
	}
	return starlark.String(s)
}

// hostStatesValue is a dict host name → struct(state, reason, since).
func hostStatesValue(hosts map[string]resource.HostResourceState) *starlark.Dict {
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	sort.Strings(names)
	d := starlark.NewDict(len(names))
	for _, h := range names {
		st := hosts[h]
		_ = d.SetKey(starlark.String(h), structOf("host_state", starlark.StringDict{
			"state": starlark.String(st.State), "reason": starlark.String(st.Reason), "since": timeValue(st.Since),
		}))
	}
	return d
}

// nicsValue is a VM's NICs as a list of struct(network, ip, mac).
func nicsValue(nics []resource.NIC) *starlark.List {
	out := make([]starlark.Value, len(nics))
	for i, n := range nics {
		out[i] = structOf("nic", starlark.StringDict{
			"network": starlark.String(n.Network), "ip": starlark.String(n.IP), "mac": starlark.String(n.MAC),
		})
	}
	return starlark.NewList(out)
}

// disksValue is a VM's disks as a list of struct(volume, image, size_mib).
func disksValue(disks []resource.Disk) *starlark.List {
	out := make([]starlark.Value, len(disks))
	for i, d := range disks {
		out[i] = structOf("disk", starlark.StringDict{
			"volume": starlark.String(d.Volume), "image": starlark.String(d.Image), "size_mib": starlark.MakeInt64(d.SizeMiB),
		})
	}
	return starlark.NewList(out)
}

// stringsValue is a list of strings.
func stringsValue(ss []string) *starlark.List {
	out := make([]starlark.Value, len(ss))
	for i, s := range ss {
		out[i] = starlark.String(s)
	}
	return starlark.NewList(out)
}

// kindRefresh: refresh() reads the object again.
func kindRefresh[T interface {
	starlark.Value
	objectOf() *object
}](kind resource.Kind) method[T] {
	return func(th *starlark.Thread, recv T, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
			return nil, err
		}
		return refresh(th, recv.objectOf(), kind, recv)
	}
}

// kindDelete: delete() removes the object (refused with the reason while
// it is in use).
func kindDelete[T interface {
	starlark.Value
	objectOf() *object
}](kind resource.Kind) method[T] {
	return func(th *starlark.Thread, recv T, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
			return nil, err
		}
		cl, ctx, err := clientOf(th)
		if err != nil {
			return nil, err
		}
		obj := recv.objectOf()
		n := obj.get().Name
		o, err := cl.Delete(ctx, kind, n, nil)
		if err != nil {
			return nil, objectErr(kind, n, err)
		}
		obj.set(o)
		return starlark.None, nil
	}
}

// vmName unpacks a VM value or a VM name.
func vmName(fn string, v starlark.Value) (string, error) {
	switch x := v.(type) {
	case *VM:
		return x.get().Name, nil
	case starlark.String:
		if err := resource.ValidateName(string(x)); err != nil {
			return "", fmt.Errorf("%s: for parameter \"vm\": %q is not a VM name", fn, string(x))
		}
		return string(x), nil
	}
	return "", fmt.Errorf("%s: for parameter \"vm\": got %s, want a vm or a VM name", fn, v.Type())
}

// volume.attach(vm) adds the volume as vm's last disk (vm: a VM or its
// name; the VM must be stopped) and returns the VM.
func volumeAttach(th *starlark.Thread, v *Volume, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var target starlark.Value
	if err := starlark.UnpackArgs(name, args, kwargs, "vm", &target); err != nil {
		return nil, err
	}
	vm, err := vmName(name, target)
	if err != nil {
		return nil, err
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	vol := v.get().Name
	x, err := cl.AttachVolume(ctx, vol, vm)
	if err != nil {
		return nil, modifyErr(resource.KindVM, vm, err)
	}
	if err := v.reread(th); err != nil {
		return nil, err
	}
	if tv, ok := target.(*VM); ok {
		tv.set(x.Object)
		return tv, nil
	}
	return newVM(sessionOf(th), x.Object), nil
}

// volume.detach() removes the volume from its VM's disks (the VM must be
// stopped) and returns the VM; None when it was attached to none.
func volumeDetach(th *starlark.Thread, v *Volume, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
		return nil, err
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	vol := v.get().Name
	x, err := cl.DetachVolume(ctx, vol)
	switch {
	case errors.Is(err, client.ErrNotAttached):
		return starlark.None, nil
	case err != nil:
		return nil, modifyErr(resource.KindVolume, vol, err)
	}
	if err := v.reread(th); err != nil {
		return nil, err
	}
	return newVM(sessionOf(th), x.Object), nil
}

// volume.resize(size) grows the volume ("2GiB", or a number of MiB).
func volumeResize(th *starlark.Thread, v *Volume, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var size memoryArg
	if err := starlark.UnpackArgs(name, args, kwargs, "size", &size); err != nil {
		return nil, err
	}
	cl, ctx, err := clientOf(th)
	if err != nil {
		return nil, err
	}
	vol := v.get().Name
	x, err := cl.Volumes().Resize(ctx, vol, int64(size))
	if err != nil {
		return nil, modifyErr(resource.KindVolume, vol, err)
	}
	v.set(x.Object)
	return v, nil
}

// reread reads the volume again after a change of its VM.
func (v *Volume) reread(th *starlark.Thread) error {
	_, err := refresh(th, &v.object, resource.KindVolume, v)
	return err
}

func modifyErr(kind resource.Kind, name string, err error) error {
	if errors.Is(err, client.ErrCASMismatch) {
		return fmt.Errorf("%s %q kept changing while it was being updated (%d attempts); nothing was written", kind, name, client.ModifyAttempts)
	}
	return objectErr(kind, name, err)
}

// nicsArg reads create_vm's networks: "NETWORK" or "NETWORK:IP" strings.
func nicsArg(fn string, l *starlark.List) ([]resource.NIC, error) {
	if l == nil {
		return nil, nil
	}
	var out []resource.NIC
	for i := range l.Len() {
		s, ok := starlark.AsString(l.Index(i))
		if !ok {
			return nil, fmt.Errorf("%s: for parameter \"networks\": element %d is %s, want \"NETWORK\" or \"NETWORK:IP\"", fn, i, l.Index(i).Type())
		}
		net, ip, _ := strings.Cut(s, ":")
		if err := resource.ValidateName(net); err != nil {
			return nil, fmt.Errorf("%s: for parameter \"networks\": element %d: %q: write \"NETWORK\" or \"NETWORK:IP\" (%s)", fn, i, s, fieldMsg(err))
		}
		out = append(out, resource.NIC{Network: net, IP: ip})
	}
	return out, nil
}

// disksArg reads create_vm's disks: {"image": IMAGE, "size": SIZE} or
// {"volume": VOLUME} dicts.
func disksArg(fn string, l *starlark.List) ([]resource.Disk, error) {
	if l == nil {
		return nil, nil
	}
	const how = `want {"image": IMAGE, "size": "2GiB"} or {"volume": VOLUME}`
	var out []resource.Disk
	for i := range l.Len() {
		d, ok := l.Index(i).(*starlark.Dict)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter \"disks\": element %d is %s; %s", fn, i, l.Index(i).Type(), how)
		}
		var disk resource.Disk
		for _, kv := range d.Items() {
			k, _ := starlark.AsString(kv[0])
			switch k {
			case "image", "volume":
				v, ok := starlark.AsString(kv[1])
				if !ok {
					return nil, fmt.Errorf("%s: for parameter \"disks\": element %d: %s is %s, want a name", fn, i, k, kv[1].Type())
				}
				if k == "image" {
					disk.Image = v
				} else {
					disk.Volume = v
				}
			case "size":
				var m memoryArg
				if err := m.Unpack(kv[1]); err != nil {
					return nil, fmt.Errorf("%s: for parameter \"disks\": element %d: size: %v", fn, i, err)
				}
				disk.SizeMiB = int64(m)
			default:
				return nil, fmt.Errorf("%s: for parameter \"disks\": element %d: unknown key %s; %s", fn, i, kv[0], how)
			}
		}
		out = append(out, disk)
	}
	return out, nil
}
