package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/kumoi/kumoi/resource"
)

// typedKind is the shared implementation of the typed APIs of networks,
// images and volumes: kind's objects with spec S and status T, viewed as
// X (built by decode).
type typedKind[S, T any, X any] struct {
	c      *Client
	kind   resource.Kind
	decode func(*resource.Object) (X, error)
}

func (k typedKind[S, T, X]) create(ctx context.Context, name string, spec *S, labels map[string]string) (X, error) {
	var none X
	if d, ok := any(spec).(resource.Spec); ok {
		d.Default() // omitted fields as the server would fill them
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return none, fmt.Errorf("create %s %q: encode spec: %w", k.kind, name, err)
	}
	o, err := k.c.Create(ctx, k.kind, resource.CreateRequest{Name: name, Labels: labels, Spec: raw})
	if err != nil {
		return none, err
	}
	return k.decode(o)
}

func (k typedKind[S, T, X]) get(ctx context.Context, name string, opts *QueryOptions) (X, *QueryMeta, error) {
	return getAs(ctx, k.c, k.kind, name, opts, k.decode)
}

func (k typedKind[S, T, X]) list(ctx context.Context, opts *QueryOptions) ([]X, *QueryMeta, error) {
	objs, meta, err := k.c.List(ctx, k.kind, opts)
	if err != nil {
		return nil, nil, err
	}
	xs, err := decodeAll(objs, k.decode)
	return xs, meta, err
}

func (k typedKind[S, T, X]) update(ctx context.Context, o *resource.Object, spec *S) (X, error) {
	var none X
	if o == nil {
		return none, fmt.Errorf("update %s: the %s has no object; get it first", k.kind, k.kind)
	}
	next, err := encodeSpec(o, spec)
	if err != nil {
		return none, err
	}
	out, err := k.c.Update(ctx, k.kind, o.Name, next, &WriteOptions{CAS: o.ModifyIndex})
	if err != nil {
		return none, err
	}
	return k.decode(out)
}

// modify is the read-change-write loop with compare-and-set; view gives
// the object and typed spec of an X that change edited.
func (k typedKind[S, T, X]) modify(ctx context.Context, name string, change func(x X) error, view func(X) (*resource.Object, *S)) (X, error) {
	var none X
	o, err := k.c.Modify(ctx, k.kind, name, func(cur *resource.Object) (*resource.Object, error) {
		x, err := k.decode(cur)
		if err != nil {
			return nil, err
		}
		_, spec := view(x)
		unchanged, err := encodeSpec(cur, spec)
		if err != nil {
			return nil, err
		}
		before, labels := unchanged.Spec, maps.Clone(cur.Labels)
		if err := change(x); err != nil {
			return nil, err
		}
		obj, spec := view(x)
		next, err := encodeSpec(obj, spec)
		if err != nil {
			return nil, err
		}
		if string(before) == string(next.Spec) && maps.Equal(labels, next.Labels) {
			return nil, nil
		}
		return next, nil
	})
	if err != nil {
		return none, err
	}
	return k.decode(o)
}

func (k typedKind[S, T, X]) delete(ctx context.Context, name string, opts *WriteOptions) (X, error) {
	var none X
	o, err := k.c.Delete(ctx, k.kind, name, opts)
	if err != nil {
		return none, err
	}
	return k.decode(o)
}

// Network is a typed view of a network object.
type Network struct {
	Object *resource.Object
	Spec   resource.NetworkSpec
	Status resource.NetworkStatus
}

// Name returns the network's name.
func (n *Network) Name() string { return n.Object.Name }

// NewNetwork decodes a network object into its typed view.
func NewNetwork(o *resource.Object) (*Network, error) {
	spec, st, err := decodeObject[resource.NetworkSpec, resource.NetworkStatus](o, resource.KindNetwork)
	if err != nil {
		return nil, err
	}
	return &Network{Object: o, Spec: *spec, Status: *st}, nil
}

// Networks is the typed API of the virtual networks; get it from
// Client.Networks. Its methods are thin layers over the generic verbs.
type Networks struct {
	k typedKind[resource.NetworkSpec, resource.NetworkStatus, *Network]
}

// Networks returns the typed API of the virtual networks.
func (c *Client) Networks() *Networks {
	return &Networks{k: typedKind[resource.NetworkSpec, resource.NetworkStatus, *Network]{c: c, kind: resource.KindNetwork, decode: NewNetwork}}
}

// Create makes a network (POST /v1/networks). Omitted fields get the
// server's defaults (mode nat, dhcp on, the first address as gateway).
func (n *Networks) Create(ctx context.Context, name string, spec resource.NetworkSpec, labels map[string]string) (*Network, error) {
	return n.k.create(ctx, name, &spec, labels)
}

// Get reads one network; ErrNotFound when there is none.
func (n *Networks) Get(ctx context.Context, name string, opts *QueryOptions) (*Network, *QueryMeta, error) {
	return n.k.get(ctx, name, opts)
}

// List reads the networks that match opts, sorted by name.
func (n *Networks) List(ctx context.Context, opts *QueryOptions) ([]*Network, *QueryMeta, error) {
	return n.k.list(ctx, opts)
}

// Update writes net.Object.Labels and net.Spec with compare-and-set on
// net.Object.ModifyIndex (ErrCASMismatch when it changed since).
func (n *Networks) Update(ctx context.Context, net *Network) (*Network, error) {
	if net == nil {
		return nil, errors.New("update network: nil network")
	}
	return n.k.update(ctx, net.Object, &net.Spec)
}

// Modify reads the network, lets change edit its Spec and Object.Labels,
// and writes them back with compare-and-set, retrying up to
// ModifyAttempts times when it changed in between.
func (n *Networks) Modify(ctx context.Context, name string, change func(net *Network) error) (*Network, error) {
	return n.k.modify(ctx, name, change, func(x *Network) (*resource.Object, *resource.NetworkSpec) { return x.Object, &x.Spec })
}

// Delete removes a network and returns it as it was. A network that VMs
// use is refused with a 409 (ErrConflict) that names them.
func (n *Networks) Delete(ctx context.Context, name string, opts *WriteOptions) (*Network, error) {
	return n.k.delete(ctx, name, opts)
}

// Image is a typed view of an image object.
type Image struct {
	Object *resource.Object
	Spec   resource.ImageSpec
	Status resource.ImageStatus
}

// Name returns the image's name.
func (i *Image) Name() string { return i.Object.Name }

// NewImage decodes an image object into its typed view.
func NewImage(o *resource.Object) (*Image, error) {
	spec, st, err := decodeObject[resource.ImageSpec, resource.ImageStatus](o, resource.KindImage)
	if err != nil {
		return nil, err
	}
	return &Image{Object: o, Spec: *spec, Status: *st}, nil
}

// Images is the typed API of the image catalog; get it from
// Client.Images. An image's spec cannot change once created (its labels
// can).
type Images struct {
	k typedKind[resource.ImageSpec, resource.ImageStatus, *Image]
}

// Images returns the typed API of the image catalog.
func (c *Client) Images() *Images {
	return &Images{k: typedKind[resource.ImageSpec, resource.ImageStatus, *Image]{c: c, kind: resource.KindImage, decode: NewImage}}
}

// Create adds an image to the catalog (POST /v1/images).
func (i *Images) Create(ctx context.Context, name string, spec resource.ImageSpec, labels map[string]string) (*Image, error) {
	return i.k.create(ctx, name, &spec, labels)
}

// Get reads one image; ErrNotFound when there is none.
func (i *Images) Get(ctx context.Context, name string, opts *QueryOptions) (*Image, *QueryMeta, error) {
	return i.k.get(ctx, name, opts)
}

// List reads the images that match opts, sorted by name.
func (i *Images) List(ctx context.Context, opts *QueryOptions) ([]*Image, *QueryMeta, error) {
	return i.k.list(ctx, opts)
}

// Update writes img.Object.Labels (and img.Spec, which the server
// refuses to change) with compare-and-set on img.Object.ModifyIndex.
func (i *Images) Update(ctx context.Context, img *Image) (*Image, error) {
	if img == nil {
		return nil, errors.New("update image: nil image")
	}
	return i.k.update(ctx, img.Object, &img.Spec)
}

// Modify is the read-change-write loop of an image's labels.
func (i *Images) Modify(ctx context.Context, name string, change func(img *Image) error) (*Image, error) {
	return i.k.modify(ctx, name, change, func(x *Image) (*resource.Object, *resource.ImageSpec) { return x.Object, &x.Spec })
}

// Delete removes an image from the catalog. One that volumes or VM disks
// name is refused with a 409.
func (i *Images) Delete(ctx context.Context, name string, opts *WriteOptions) (*Image, error) {
	return i.k.delete(ctx, name, opts)
}

// Volume is a typed view of a volume object.
type Volume struct {
	Object *resource.Object
	Spec   resource.VolumeSpec
	Status resource.VolumeStatus
}

// Name returns the volume's name.
func (v *Volume) Name() string { return v.Object.Name }

// Phase returns the volume's status phase (resource.Volume*).
func (v *Volume) Phase() string { return v.Status.Phase }

// NewVolume decodes a volume object into its typed view.
func NewVolume(o *resource.Object) (*Volume, error) {
	spec, st, err := decodeObject[resource.VolumeSpec, resource.VolumeStatus](o, resource.KindVolume)
	if err != nil {
		return nil, err
	}
	return &Volume{Object: o, Spec: *spec, Status: *st}, nil
}

// Volumes is the typed API of the volumes; get it from Client.Volumes.
type Volumes struct {
	c *Client
	k typedKind[resource.VolumeSpec, resource.VolumeStatus, *Volume]
}

// Volumes returns the typed API of the volumes.
func (c *Client) Volumes() *Volumes {
	return &Volumes{c: c, k: typedKind[resource.VolumeSpec, resource.VolumeStatus, *Volume]{c: c, kind: resource.KindVolume, decode: NewVolume}}
}

// Create makes a volume (POST /v1/volumes); it is created on a host when a
// VM first uses it.
func (v *Volumes) Create(ctx context.Context, name string, spec resource.VolumeSpec, labels map[string]string) (*Volume, error) {
	return v.k.create(ctx, name, &spec, labels)
}

// Get reads one volume; ErrNotFound when there is none.
func (v *Volumes) Get(ctx context.Context, name string, opts *QueryOptions) (*Volume, *QueryMeta, error) {
	return v.k.get(ctx, name, opts)
}

// List reads the volumes that match opts, sorted by name.
func (v *Volumes) List(ctx context.Context, opts *QueryOptions) ([]*Volume, *QueryMeta, error) {
	return v.k.list(ctx, opts)
}

// Update writes vol.Object.Labels and vol.Spec with compare-and-set on
// vol.Object.ModifyIndex.
func (v *Volumes) Update(ctx context.Context, vol *Volume) (*Volume, error) {
	if vol == nil {
		return nil, errors.New("update volume: nil volume")
	}
	return v.k.update(ctx, vol.Object, &vol.Spec)
}

// Modify is the read-change-write loop of a volume.
func (v *Volumes) Modify(ctx context.Context, name string, change func(vol *Volume) error) (*Volume, error) {
	return v.k.modify(ctx, name, change, func(x *Volume) (*resource.Object, *resource.VolumeSpec) { return x.Object, &x.Spec })
}

// Delete removes a volume. One attached to a VM is refused with a 409.
func (v *Volumes) Delete(ctx context.Context, name string, opts *WriteOptions) (*Volume, error) {
	return v.k.delete(ctx, name, opts)
}

// Resize grows the volume to sizeMiB (a spec update with compare-and-set,
// retried when the volume changed in between). A volume never shrinks: a
// smaller size is refused (resource.ErrInvalid, field spec.size_mib), and
// the same size writes nothing. A volume attached to a VM that is active
// is refused with a 409 until the VM is stopped.
func (v *Volumes) Resize(ctx context.Context, name string, sizeMiB int64) (*Volume, error) {
	return v.Modify(ctx, name, func(vol *Volume) error {
		vol.Spec.SizeMiB = sizeMiB
		return nil
	})
}

// Attach is Client.AttachVolume.
func (v *Volumes) Attach(ctx context.Context, volume, vm string) (*VM, error) {
	return v.c.AttachVolume(ctx, volume, vm)
}

// Detach is Client.DetachVolume.
func (v *Volumes) Detach(ctx context.Context, volume string) (*VM, error) {
	return v.c.DetachVolume(ctx, volume)
}

// AttachVolume adds the volume as the last disk of vm: a read-modify-write
// of the VM's spec with compare-and-set, retried when the VM changed in
// between (ModifyAttempts). A volume already a disk of vm writes nothing.
// The cluster refuses (409) a volume attached to another VM and a VM that
// is not stopped; a volume that does not exist is ErrNotFound.
func (c *Client) AttachVolume(ctx context.Context, volume, vm string) (*VM, error) {
	if _, _, err := c.Volumes().Get(ctx, volume, nil); err != nil {
		return nil, err
	}
	return c.VMs().Modify(ctx, vm, func(x *VM) error {
		if slices.ContainsFunc(x.Spec.Disks, func(d resource.Disk) bool { return d.Volume == volume }) {
			return nil
		}
		x.Spec.Disks = append(x.Spec.Disks, resource.Disk{Volume: volume})
		return nil
	})
}

// ErrNotAttached is returned by DetachVolume for a volume that no VM has.
var ErrNotAttached = errors.New("volume is not attached")

// DetachVolume removes the volume from the disks of the VM it is attached
// to (its status.attached_to, or the VM whose spec names it), with
// compare-and-set, retried when the VM changed in between. It returns the
// VM after the write; a volume attached to no VM fails with
// ErrNotAttached. The cluster refuses (409) to detach from a VM that is
// not stopped.
func (c *Client) DetachVolume(ctx context.Context, volume string) (*VM, error) {
	vol, _, err := c.Volumes().Get(ctx, volume, nil)
	if err != nil {
		return nil, err
	}
	owner := vol.Status.AttachedTo
	if owner == "" {
		vms, _, err := c.VMs().List(ctx, nil)
		if err != nil {
			return nil, err
		}
		for _, x := range vms {
			if slices.Contains(x.Volumes(), volume) {
				owner = x.Name()
				break
			}
		}
	}
	if owner == "" {
		return nil, fmt.Errorf("volume %q: %w to any VM", volume, ErrNotAttached)
	}
	return c.VMs().Modify(ctx, owner, func(x *VM) error {
		i := slices.IndexFunc(x.Spec.Disks, func(d resource.Disk) bool { return d.Volume == volume })
		if i < 0 {
			return fmt.Errorf("volume %q: %w to vm %q (any more)", volume, ErrNotAttached, owner)
		}
		x.Spec.Disks = slices.Delete(x.Spec.Disks, i, i+1)
		if len(x.Spec.Disks) == 0 {
			x.Spec.Disks = nil
		}
		return nil
	})
}

// Addresses returns the addresses of the VM's NICs, in order (a NIC
// without an address yet, e.g. on a full network, is left out).
func (v *VM) Addresses() []string {
	out := []string{}
	for _, n := range v.Spec.NICs {
		if n.IP != "" {
			out = append(out, n.IP)
		}
	}
	return out
}

// MACs returns the hardware addresses of the VM's NICs, in order (a NIC
// whose MAC is not allocated yet is left out).
func (v *VM) MACs() []string {
	out := []string{}
	for _, n := range v.Spec.NICs {
		if n.MAC != "" {
			out = append(out, n.MAC)
		}
	}
	return out
}

// Volumes returns the names of the volumes of the VM's disks, in order (a
// disk made from an image names its volume once the cluster created it).
func (v *VM) Volumes() []string {
	out := []string{}
	for _, d := range v.Spec.Disks {
		if d.Volume != "" {
			out = append(out, d.Volume)
		}
	}
	return out
}

// ReportAll sends a worker's whole report for host: its VM reports and its
// resource reports (networks, images, volumes). The answer says, per VM
// and per resource, whether it was recorded. It is idempotent; with
// sequences (resource.VMReport.Seq), a request sent again after it was
// recorded is answered stale_epoch per report ("a late delivery"), which
// changes nothing.
func (c *Client) ReportAll(ctx context.Context, host string, req resource.ReportRequest) (*resource.ReportResponse, error) {
	if req.Reports == nil {
		req.Reports = []resource.VMReport{}
	}
	return c.report(ctx, host, req)
}
