package fsm

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// The rules of networks, images and volumes and of the VM devices that
// use them (issue 13), as create, update, delete and place apply them.

// createHook checks and completes an object being created: a VM's devices
// (filled in; post writes the volumes made for it, after the VM), a
// network (no overlap; its initial status), a volume (its image exists).
func (w *writer) createHook(req *CreateRequest, spec, status json.RawMessage) (json.RawMessage, json.RawMessage, func() error, error) {
	switch req.Kind {
	case resource.KindVM:
		if !mayHaveDevices(spec) {
			return spec, status, nil, nil
		}
		s, err := decodeVMSpec(spec)
		if err != nil || !hasDevices(s) {
			return spec, status, nil, err
		}
		full, vols, err := w.devices(req.Name, req.ID, nil, s, req.Time, false)
		if err != nil {
			return nil, nil, nil, err
		}
		if spec, err = json.Marshal(s); err != nil {
			return nil, nil, nil, err
		}
		if full != "" {
			st := resource.VMStatus{Phase: resource.PhasePending, Reason: full, Since: req.Time.UTC()}
			if status, err = resource.MarshalVMStatus(&st); err != nil {
				return nil, nil, nil, err
			}
		}
		return spec, status, func() error { return w.putVolumes(req.Name, "", vols) }, nil
	case resource.KindNetwork:
		ns, err := resource.DecodeSpec[resource.NetworkSpec](&resource.Object{Spec: spec})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
		}
		if err := w.checkOverlap(req.Name, ns); err != nil {
			return nil, nil, nil, err
		}
		if status, err = json.Marshal(&resource.NetworkStatus{Capacity: ns.Capacity()}); err != nil {
			return nil, nil, nil, err
		}
	case resource.KindVolume:
		vs, err := resource.DecodeSpec[resource.VolumeSpec](&resource.Object{Spec: spec})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
		}
		if err := w.imageExists("spec.image", vs.Image); err != nil {
			return nil, nil, nil, err
		}
	}
	return spec, status, nil, nil
}

func decodeVMSpec(spec json.RawMessage) (*resource.VMSpec, error) {
	var s resource.VMSpec
	if err := json.Unmarshal(spec, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	return &s, nil
}

func (w *writer) imageExists(field, name string) error {
	if name == "" {
		return nil
	}
	o, err := getTxn(w.txn, nil, resource.KindImage, name)
	if err != nil {
		return err
	}
	if o == nil {
		return resource.Errorf(field, "unknown image %q: create it first", name)
	}
	return nil
}

// putVolumes writes the volumes made for a VM's disks, attached to it
// (and bound to host, if the VM is placed).
func (w *writer) putVolumes(vm, host string, vols []*resource.Object) error {
	for _, v := range vols {
		if err := w.checkObjectCap(resource.KindVolume); err != nil {
			return err
		}
		if raw, err := w.txn.First(tableObjects, indexUID, v.ID); err != nil {
			return fmt.Errorf("fsm: lookup id: %w", err)
		} else if raw != nil {
			return fmt.Errorf("object id %q (of volume %q): %w", v.ID, v.Name, ErrExists)
		}
		st, err := resource.DecodeStatus[resource.VolumeStatus](v)
		if err != nil {
			return err
		}
		st.AttachedTo, st.Host = vm, host
		if v.Status, err = json.Marshal(st); err != nil {
			return err
		}
		v.CreateIndex, v.ModifyIndex = w.index, w.index
		if err := w.put(v, resource.EventCreated); err != nil {
			return err
		}
	}
	return nil
}

// checkOverlap refuses a network whose prefix overlaps another's on the
// same layer 2: both nat or isolated (host-local bridges, routed by the
// same host), or both bridge mode on the same bridge.
func (w *writer) checkOverlap(name string, ns *resource.NetworkSpec) error {
	p, ok := ns.Prefix()
	if !ok {
		return nil
	}
	others, err := listTxn(w.txn, nil, resource.KindNetwork, nil)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.Name == name {
			continue
		}
		os, err := resource.DecodeSpec[resource.NetworkSpec](o)
		if err != nil {
			continue
		}
		op, ok := os.Prefix()
		if !ok || !p.Overlaps(op) {
			continue
		}
		local := func(m string) bool { return m == resource.NetworkNAT || m == resource.NetworkIsolated }
		if (local(ns.Mode) && local(os.Mode)) || (ns.Mode == resource.NetworkBridge && os.Mode == resource.NetworkBridge && ns.Bridge == os.Bridge) {
			return resource.Errorf("spec.cidr", "%s overlaps network %s (%s)", p, o.Name, op)
		}
	}
	return nil
}

// updateHook checks and completes a spec update (after ReviseSpec): a
// VM's devices, a network's changes while in use, a volume's resize.
func (w *writer) updateHook(cur *resource.Object, spec json.RawMessage, now time.Time) (json.RawMessage, json.RawMessage, func() error, error) {
	status := cur.Status
	switch cur.Kind {
	case resource.KindVM:
		if !mayHaveDevices(cur.Spec) && !mayHaveDevices(spec) {
			return spec, status, nil, nil
		}
		old, err := decodeVMSpec(cur.Spec)
		if err != nil {
			return spec, status, nil, nil // a spec the state machine cannot read: no rule to keep
		}
		s, err := decodeVMSpec(spec)
		if err != nil {
			return nil, nil, nil, err
		}
		if !hasDevices(old) && !hasDevices(s) {
			return spec, status, nil, nil
		}
		st, err := resource.DecodeStatus[resource.VMStatus](cur)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
		}
		full, vols, err := w.devices(cur.Name, cur.ID, old, s, now, false)
		if err != nil {
			return nil, nil, nil, err
		}
		if (!reflect.DeepEqual(old.NICs, s.NICs) || !reflect.DeepEqual(old.Disks, s.Disks)) && vmActive(st) {
			return nil, nil, nil, fmt.Errorf("vm %q is %s: %w: stop the VM first to change its nics or disks", cur.Name, st.Phase, ErrWrongPhase)
		}
		if full != "" && st.Host != "" {
			return nil, nil, nil, fmt.Errorf("vm %q (placed on %s): %s: %w", cur.Name, st.Host, full, ErrNoCapacity)
		}
		if st.Host != "" {
			if err := w.bindVolumes(cur.Name, s, st.Host, false); err != nil {
				return nil, nil, nil, err
			}
		}
		w.touchDevices(old)
		w.touchDevices(s)
		if spec, err = json.Marshal(s); err != nil {
			return nil, nil, nil, err
		}
		if full != "" && st.Phase == resource.PhasePending && st.Reason != full {
			nst := *st
			nst.Reason = full
			if status, err = resource.MarshalVMStatus(&nst); err != nil {
				return nil, nil, nil, err
			}
		}
		return spec, status, func() error {
			if st.Host != "" {
				if err := w.bindVolumes(cur.Name, s, st.Host, true); err != nil {
					return err
				}
			}
			return w.putVolumes(cur.Name, st.Host, vols)
		}, nil
	case resource.KindNetwork:
		return w.updateNetwork(cur, spec)
	case resource.KindVolume:
		return spec, status, nil, w.checkResize(cur, spec)
	}
	return spec, status, nil, nil
}

// updateNetwork refuses changes of the addressing of a network in use,
// and reserved ranges over held addresses; the status gets the new
// capacity.
func (w *writer) updateNetwork(cur *resource.Object, spec json.RawMessage) (json.RawMessage, json.RawMessage, func() error, error) {
	old, err := resource.DecodeSpec[resource.NetworkSpec](cur)
	if err != nil {
		return spec, cur.Status, nil, nil
	}
	ns, err := resource.DecodeSpec[resource.NetworkSpec](&resource.Object{Spec: spec})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	users, err := vmsByDevice(w.txn, indexVMNetwork, cur.Name)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(users) > 0 {
		for _, c := range []struct{ field, o, n string }{
			{"cidr", old.CIDR, ns.CIDR}, {"gateway", old.Gateway, ns.Gateway}, {"mode", old.Mode, ns.Mode}, {"bridge", old.Bridge, ns.Bridge},
		} {
			if c.o != c.n {
				return nil, nil, nil, fmt.Errorf("network %s: cannot change spec.%s while it is used by %s: %w", cur.Name, c.field, usersMessage("vm", users), ErrInUse)
			}
		}
		held, err := w.netHolders(cur.Name)
		if err != nil {
			return nil, nil, nil, err
		}
		for ip, vm := range sortedPairs(held) {
			if a, err := netip.ParseAddr(ip); err == nil && ns.IsReserved(a) {
				return nil, nil, nil, fmt.Errorf("network %s: the reserved ranges cover address %s, held by vm %s: %w", cur.Name, ip, vm, ErrInUse)
			}
		}
	}
	if err := w.checkOverlap(cur.Name, ns); err != nil {
		return nil, nil, nil, err
	}
	st, err := resource.DecodeStatus[resource.NetworkStatus](cur)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	st.Capacity = ns.Capacity()
	status, err := json.Marshal(st)
	if err != nil {
		return nil, nil, nil, err
	}
	return spec, status, nil, nil
}

func sortedPairs(m map[string]string) func(func(string, string) bool) {
	return func(yield func(string, string) bool) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}

// checkResize refuses to grow a volume attached to an active VM.
func (w *writer) checkResize(cur *resource.Object, spec json.RawMessage) error {
	old, err := resource.DecodeSpec[resource.VolumeSpec](cur)
	if err != nil {
		return nil
	}
	ns, err := resource.DecodeSpec[resource.VolumeSpec](&resource.Object{Spec: spec})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if ns.SizeMiB == old.SizeMiB {
		return nil
	}
	users, err := vmsByDevice(w.txn, indexVMVolume, cur.Name)
	if err != nil {
		return err
	}
	for _, u := range users {
		_, _, st, err := w.vm(u)
		if err != nil {
			continue
		}
		if vmActive(st) {
			return fmt.Errorf("volume %s is attached to vm %s, which is %s: %w: stop vm %s first", cur.Name, u, st.Phase, ErrWrongPhase, u)
		}
	}
	return nil
}

// deleteHook refuses to delete a network, image or volume in use.
func (w *writer) deleteHook(cur *resource.Object) error {
	switch cur.Kind {
	case resource.KindNetwork:
		users, err := vmsByDevice(w.txn, indexVMNetwork, cur.Name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("network %s is used by %s: %w", cur.Name, usersMessage("vm", users), ErrInUse)
		}
	case resource.KindVolume:
		users, err := vmsByDevice(w.txn, indexVMVolume, cur.Name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("volume %s is attached to vm %s: %w", cur.Name, users[0], ErrInUse)
		}
	case resource.KindImage:
		vols, err := listTxn(w.txn, nil, resource.KindVolume, nil)
		if err != nil {
			return err
		}
		var users []string
		for _, v := range vols {
			if vs, err := resource.DecodeSpec[resource.VolumeSpec](v); err == nil && vs.Image == cur.Name {
				users = append(users, v.Name)
			}
		}
		if len(users) > 0 {
			return fmt.Errorf("image %s is used by %s: %w", cur.Name, usersMessage("volume", users), ErrInUse)
		}
	}
	return nil
}

// afterVMDelete deletes a deleted VM's non-persistent volumes and detaches
// the others; its networks' statuses are recomputed.
func (w *writer) afterVMDelete(cur *resource.Object) error {
	if cur.Kind != resource.KindVM || !mayHaveDevices(cur.Spec) {
		return nil
	}
	s, err := decodeVMSpec(cur.Spec)
	if err != nil || !hasDevices(s) {
		return nil
	}
	for _, n := range s.NICs {
		w.touchNetwork(n.Network)
	}
	for _, d := range s.Disks {
		vo, vs, _, err := w.volume(d.Volume)
		if err != nil || vo == nil {
			continue
		}
		users, err := vmsByDevice(w.txn, indexVMVolume, d.Volume)
		if err != nil {
			return err
		}
		if !vs.Persistent && len(users) == 0 {
			if err := w.txn.Delete(tableObjects, vo); err != nil {
				return fmt.Errorf("fsm: delete %s: %w", vo, err)
			}
			w.objects = append(w.objects, vo)
			w.events = append(w.events, resource.Event{Index: w.index, Type: resource.EventDeleted, Kind: vo.Kind, Name: vo.Name, Object: vo, Accessor: w.accessor})
			continue
		}
		w.touchVolume(d.Volume)
	}
	return nil
}

// bindVolumes checks that a VM's volumes may be on host (not bound to
// another host) and, with bind, binds those bound to none to it.
func (w *writer) bindVolumes(vm string, s *resource.VMSpec, host string, bind bool) error {
	for _, d := range s.Disks {
		vo, _, st, err := w.volume(d.Volume)
		if err != nil {
			return err
		}
		if vo == nil {
			continue // made in this entry: bound by putVolumes
		}
		switch st.Host {
		case host:
		case "":
			if bind {
				nst := *st
				nst.Host = host
				if err := w.putStatus(vo, &nst); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("vm %q: volume %s is on host %s, not %s: %w", vm, d.Volume, st.Host, host, ErrHostNotReady)
		}
	}
	return nil
}

// placeDevices allocates the addresses a VM being placed on host lacks,
// and binds its volumes to host (refusing a volume bound to another). It
// returns the VM object with its new spec (not written).
func (w *writer) placeDevices(o *resource.Object, spec *resource.VMSpec, host string, now time.Time) (*resource.Object, error) {
	if err := w.bindVolumes(o.Name, spec, host, false); err != nil {
		return nil, err
	}
	missing := false
	for _, n := range spec.NICs {
		missing = missing || n.IP == "" || n.MAC == ""
	}
	if missing {
		old := *spec
		old.NICs = slices.Clone(spec.NICs)
		if _, _, err := w.devices(o.Name, o.ID, &old, spec, now, true); err != nil {
			return nil, err
		}
		raw, err := json.Marshal(spec)
		if err != nil {
			return nil, err
		}
		o = o.Copy()
		o.Spec = raw
	}
	if err := w.bindVolumes(o.Name, spec, host, true); err != nil {
		return nil, err
	}
	return o, nil
}
