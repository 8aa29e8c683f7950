package script

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// An object value is a handle on a cluster object (a VM, a host, a
// network, an image or a volume). It
// holds the object as last read; refresh() and the methods that change the
// object replace that copy (under a lock), so a handle may be shared by
// the threads of a parallel skeleton. Freezing a handle freezes nothing:
// what it stands for lives in the cluster.
type object struct {
	sess *Session
	mu   sync.Mutex
	obj  *resource.Object
}

func (o *object) get() *resource.Object {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.obj
}

func (o *object) set(obj *resource.Object) {
	if obj == nil {
		return
	}
	o.mu.Lock()
	o.obj = obj
	o.mu.Unlock()
}

func (o *object) Freeze()              {}
func (o *object) Truth() starlark.Bool { return starlark.True }

// Object returns the cluster object a VM or Host value holds, as last read.
func Object(v starlark.Value) (*resource.Object, bool) {
	switch x := v.(type) {
	case *VM:
		return x.get(), true
	case *Host:
		return x.get(), true
	case *Network:
		return x.get(), true
	case *Image:
		return x.get(), true
	case *Volume:
		return x.get(), true
	}
	return nil, false
}

// VM is a virtual machine as a Starlark value.
type VM struct{ object }

// Host is a hypervisor host as a Starlark value.
type Host struct{ object }

func (v *VM) objectOf() *object   { return &v.object }
func (h *Host) objectOf() *object { return &h.object }

var (
	_ starlark.HasAttrs = (*VM)(nil)
	_ starlark.HasAttrs = (*Host)(nil)
	_ starlark.HasAttrs = (*Failure)(nil)
	_ starlark.HasAttrs = (*eventValue)(nil)
)

func newVM(s *Session, o *resource.Object) *VM {
	v := &VM{}
	v.sess, v.obj = s, o
	return v
}

func newHost(s *Session, o *resource.Object) *Host {
	h := &Host{}
	h.sess, h.obj = s, o
	return h
}

// newObject wraps o in the value of its kind (None for other kinds).
func newObject(s *Session, o *resource.Object) starlark.Value {
	if o == nil {
		return starlark.None
	}
	switch o.Kind {
	case resource.KindVM:
		return newVM(s, o)
	case resource.KindHost:
		return newHost(s, o)
	case resource.KindNetwork:
		x := &Network{}
		x.sess, x.obj = s, o
		return x
	case resource.KindImage:
		x := &Image{}
		x.sess, x.obj = s, o
		return x
	case resource.KindVolume:
		x := &Volume{}
		x.sess, x.obj = s, o
		return x
	case resource.KindProject:
		x := &Project{}
		x.sess, x.obj = s, o
		return x
	}
	return starlark.None
}

func (v *VM) String() string {
	o := v.get()
	_, st := resource.VMStateOf(o)
	s := fmt.Sprintf("vm(%q, phase=%s", o.Name, orDash(st.Phase))
	if st.Host != "" {
		s += ", host=" + st.Host
	}
	return s + ")"
}
func (v *VM) Type() string { return "vm" }
func (v *VM) Hash() (uint32, error) {
	return starlark.String("vm/" + v.get().Name).Hash()
}

// CompareSameType makes VMs equal when they name the same VM.
func (v *VM) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	return compareNames(op, v.get().Name, y.(*VM).get().Name)
}

func (h *Host) String() string {
	o := h.get()
	_, st := resource.HostStateOf(o)
	return fmt.Sprintf("host(%q, state=%s)", o.Name, orDash(st.State))
}
func (h *Host) Type() string { return "host" }
func (h *Host) Hash() (uint32, error) {
	return starlark.String("host/" + h.get().Name).Hash()
}

// CompareSameType makes hosts equal when they name the same host.
func (h *Host) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	return compareNames(op, h.get().Name, y.(*Host).get().Name)
}

// compareNames orders objects by name.
func compareNames(op syntax.Token, x, y string) (bool, error) {
	return starlark.Compare(op, starlark.String(x), starlark.String(y))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// VM attributes and methods.
var (
	vmAttrs   = []string{"name", "labels", "phase", "host", "spec", "status", "reason", "index", "addresses", "macs", "nics", "disks"}
	vmMethods = map[string]method[*VM]{
		"start":   vmAction(client.ActionStart),
		"stop":    vmStop,
		"reboot":  vmAction(client.ActionReboot),
		"suspend": vmAction(client.ActionSuspend),
		"resume":  vmAction(client.ActionResume),
		"delete":  vmDelete,
		"migrate": vmMigrateWith,
		"refresh": vmRefresh,

		"abort_migration": vmAbortMigration,
		"wait":            vmWait,

		"set_labels": setLabels[*VM](resource.KindVM),
	}
	hostAttrs   = []string{"name", "labels", "state", "capacity", "allocated", "schedulable", "spec", "status", "reason", "index"}
	hostMethods = map[string]method[*Host]{
		"vms":     hostVMs,
		"drain":   hostDrain,
		"enable":  hostEnable,
		"refresh": hostRefresh,

		"set_labels": setLabels[*Host](resource.KindHost),
	}
)

// method is a built-in method of a value of type T.
type method[T starlark.Value] func(th *starlark.Thread, recv T, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)

func bind[T starlark.Value](kind string, recv T, name string, m method[T]) *starlark.Builtin {
	full := kind + "." + name
	return starlark.NewBuiltin(full, func(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return m(th, recv, full, args, kwargs)
	}).BindReceiver(recv)
}

func attrNames[T any](attrs []string, methods map[string]T) []string {
	out := append([]string(nil), attrs...)
	for n := range methods {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (v *VM) AttrNames() []string { return attrNames(vmAttrs, vmMethods) }

func (v *VM) Attr(name string) (starlark.Value, error) {
	if m, ok := vmMethods[name]; ok {
		return bind("vm", v, name, m), nil
	}
	o := v.get()
	if a := metaAttr(o, name); a != nil {
		return a, nil
	}
	spec, st := resource.VMStateOf(o)
	switch name {
	case "phase":
		return starlark.String(st.Phase), nil
	case "reason":
		return starlark.String(st.Reason), nil
	case "host":
		if st.Host == "" {
			return starlark.None, nil
		}
		return v.sess.fetchHost(st.Host)
	case "spec":
		return vmSpecValue(spec), nil
	case "status":
		return vmStatusValue(st), nil
	case "addresses":
		return stringsValue(vmView(o, spec).Addresses()), nil
	case "macs":
		return stringsValue(vmView(o, spec).MACs()), nil
	case "nics":
		return nicsValue(spec.NICs), nil
	case "disks":
		return disksValue(spec.Disks), nil
	}
	return nil, nil // no such attribute: Starlark says so
}

// metaAttr is the attribute name that every object has (name, labels,
// index), or nil when name is none of them.
func metaAttr(o *resource.Object, name string) starlark.Value {
	switch name {
	case "name":
		return starlark.String(o.Name)
	case "labels":
		return labelsDict(o.Labels)
	case "index":
		return starlark.MakeUint64(o.ModifyIndex)
	}
	return nil
}

// vmView is the SDK's typed view of a VM, for its helpers.
func vmView(o *resource.Object, spec *resource.VMSpec) *client.VM {
	return &client.VM{Object: o, Spec: *spec}
}

func (h *Host) AttrNames() []string { return attrNames(hostAttrs, hostMethods) }

func (h *Host) Attr(name string) (starlark.Value, error) {
	if m, ok := hostMethods[name]; ok {
		return bind("host", h, name, m), nil
	}
	o := h.get()
	if a := metaAttr(o, name); a != nil {
		return a, nil
	}
	spec, st := resource.HostStateOf(o)
	switch name {
	case "state":
		return starlark.String(st.State), nil
	case "reason":
		return starlark.String(st.Reason), nil
	case "schedulable":
		return starlark.Bool(!spec.Unschedulable), nil
	case "capacity":
		return resourcesValue(st.Capacity), nil
	case "allocated":
		return resourcesValue(st.Allocated), nil
	case "spec":
		return hostSpecValue(spec), nil
	case "status":
		return hostStatusValue(st), nil
	}
	return nil, nil
}

// fetchHost reads a host for vm.host, in the context of the run in
// progress.
func (s *Session) fetchHost(name string) (starlark.Value, error) {
	r := s.cur.Load()
	if r == nil || r.env.Client == nil {
		return nil, errors.New("vm.host: not connected to a cluster")
	}
	o, _, err := r.env.Client.Get(r.ctx, resource.KindHost, name, nil)
	if client.IsNotFound(err) {
		return starlark.None, nil // placed on a host that has gone
	}
	if err != nil {
		return nil, fmt.Errorf("vm.host: read host %q: %w", name, err)
	}
	return newHost(s, o), nil
}

func labelsDict(l map[string]string) *starlark.Dict {
	d := starlark.NewDict(len(l))
	for _, k := range resource.SortedLabelKeys(l) {
		_ = d.SetKey(starlark.String(k), starlark.String(l[k]))
	}
	return d
}

func structOf(name string, d starlark.StringDict) *starlarkstruct.Struct {
	return starlarkstruct.FromStringDict(starlark.String(name), d)
}

func timeValue(t time.Time) starlark.Value {
	if t.IsZero() {
		return starlark.None
	}
	return starlark.String(t.UTC().Format(time.RFC3339Nano))
}

func vmSpecValue(s *resource.VMSpec) starlark.Value {
	d := starlark.StringDict{
		"cpus":       starlark.MakeInt(s.CPUs),
		"memory_mib": starlark.MakeInt64(s.MemoryMiB),
		"memory":     starlark.String(resource.FormatMiB(s.MemoryMiB)),
		"power":      starlark.String(s.Power),
		"ha":         starlark.String(s.HA),
		"boot":       starlark.None,
		"nics":       nicsValue(s.NICs),
		"disks":      disksValue(s.Disks),
	}
	if b := s.Boot; b != nil {
		d["boot"] = structOf("boot", starlark.StringDict{
			"image": starlark.String(b.Image), "image_format": starlark.String(b.ImageFormat),
			"kernel": starlark.String(b.Kernel), "initrd": starlark.String(b.Initrd),
			"cmdline": starlark.String(b.Cmdline),
		})
	}
	return structOf("vm_spec", d)
}

func vmStatusValue(s *resource.VMStatus) starlark.Value {
	var migration starlark.Value = starlark.None
	if m := s.Migration; m != nil {
		migration = structOf("vm_migration", starlark.StringDict{
			"id": starlark.MakeUint64(m.ID), "target": starlark.String(m.Target), "mode": starlark.String(m.Mode),
			"state": starlark.String(m.State), "since": timeValue(m.Since),
		})
	}
	return structOf("vm_status", starlark.StringDict{
		"migration":        migration,
		"phase":            starlark.String(s.Phase),
		"host":             starlark.String(s.Host),
		"epoch":            starlark.MakeUint64(s.Epoch),
		"reason":           starlark.String(s.Reason),
		"since":            timeValue(s.Since),
		"reboot_requested": starlark.MakeUint64(s.RebootRequested),
		"reboot_done":      starlark.MakeUint64(s.RebootDone),
	})
}

func resourcesValue(r resource.Resources) starlark.Value {
	return structOf("resources", starlark.StringDict{
		"cpus":       starlark.MakeInt(r.CPUs),
		"memory_mib": starlark.MakeInt64(r.MemoryMiB),
		"memory":     starlark.String(resource.FormatMiB(r.MemoryMiB)),
	})
}

func hostSpecValue(s *resource.HostSpec) starlark.Value {
	var drain starlark.Value = starlark.None
	if s.Drain != nil {
		drain = structOf("host_drain", starlark.StringDict{"migrate": starlark.Bool(s.Drain.Migrate)})
	}
	return structOf("host_spec", starlark.StringDict{
		"drain":             drain,
		"unschedulable":     starlark.Bool(s.Unschedulable),
		"cpu_overcommit":    starlark.Float(s.CPUOvercommit),
		"memory_overcommit": starlark.Float(s.MemoryOvercommit),
	})
}

func hostStatusValue(s *resource.HostStatus) starlark.Value {
	return structOf("host_status", starlark.StringDict{
		"state":     starlark.String(s.State),
		"address":   starlark.String(s.Address),
		"capacity":  resourcesValue(s.Capacity),
		"allocated": resourcesValue(s.Allocated),
		"driver":    starlark.String(s.Driver),
		"reason":    starlark.String(s.Reason),
		"since":     timeValue(s.Since),

		"migration_modes": stringsValue(s.MigrationModes),
	})
}

// Failure is the result of an item whose function failed in a parallel
// skeleton: the item, the error message and, for a Starlark error, where
// it happened.
type Failure struct {
	Index     int
	Item      starlark.Value
	Err       string
	Backtrace string
}

func (f *Failure) String() string {
	return fmt.Sprintf("failure(item=%s, error=%q)", f.Item.String(), f.Err)
}
func (f *Failure) Type() string          { return "failure" }
func (f *Failure) Freeze()               { f.Item.Freeze() }
func (f *Failure) Truth() starlark.Bool  { return starlark.True }
func (f *Failure) Hash() (uint32, error) { return 0, errors.New("unhashable type: failure") }
func (f *Failure) AttrNames() []string   { return []string{"backtrace", "error", "index", "item"} }

func (f *Failure) Attr(name string) (starlark.Value, error) {
	switch name {
	case "item":
		return f.Item, nil
	case "error":
		return starlark.String(f.Err), nil
	case "index":
		return starlark.MakeInt(f.Index), nil
	case "backtrace":
		return starlark.String(f.Backtrace), nil
	}
	return nil, nil
}

// newFailure describes an item's error for a script.
func newFailure(index int, item starlark.Value, err error) *Failure {
	f := &Failure{Index: index, Item: item, Err: err.Error()}
	var se *Error
	if errors.As(err, &se) {
		f.Err = se.Msg
		f.Backtrace = se.Backtrace
	}
	return f
}
