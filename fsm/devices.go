package fsm

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// VM devices (issue 13): IPAM of NICs, and the volumes of disks. A VM's
// addresses, MACs and volumes live in its spec; the device indexes
// (specindex.go) say who holds what, and the networks' and volumes'
// statuses are recomputed from them when touched (recomputeDevices).

// network reads a network object.
func (w *writer) network(name string) (*resource.Object, *resource.NetworkSpec, *resource.NetworkStatus, error) {
	o, err := getTxn(w.txn, nil, resource.KindNetwork, name)
	if err != nil || o == nil {
		return o, nil, nil, err
	}
	spec, st, err := decodeState[resource.NetworkSpec, resource.NetworkStatus](o)
	if err != nil {
		return nil, nil, nil, err
	}
	return o, spec, st, nil
}

// volume reads a volume object (nil if there is none).
func (w *writer) volume(name string) (*resource.Object, *resource.VolumeSpec, *resource.VolumeStatus, error) {
	o, err := getTxn(w.txn, nil, resource.KindVolume, name)
	if err != nil || o == nil {
		return o, nil, nil, err
	}
	spec, st, err := decodeState[resource.VolumeSpec, resource.VolumeStatus](o)
	if err != nil {
		return nil, nil, nil, err
	}
	return o, spec, st, nil
}

func (w *writer) touchNetwork(name string) {
	mark(&w.touchedNets, name)
}

func (w *writer) touchVolume(name string) {
	mark(&w.touchedVols, name)
}

// touchDevices marks the networks and volumes a VM spec names.
func (w *writer) touchDevices(spec *resource.VMSpec) {
	if spec == nil {
		return
	}
	for _, n := range spec.NICs {
		w.touchNetwork(n.Network)
	}
	for _, d := range spec.Disks {
		w.touchVolume(d.Volume)
	}
}

// hasDevices reports whether a VM spec has NICs or disks.
func hasDevices(s *resource.VMSpec) bool { return s != nil && (len(s.NICs) > 0 || len(s.Disks) > 0) }

// vmActive reports whether a VM's devices may not change: it is neither
// pending, stopped nor failed.
func vmActive(st *resource.VMStatus) bool {
	switch st.Phase {
	case resource.PhasePending, resource.PhaseStopped, resource.PhaseFailed:
		return false
	}
	return true
}

// fullReason is a VM's pending reason while a network has no free address.
func fullReason(network string, n int64) string {
	return fmt.Sprintf("network %s is full: %d of %d addresses in use", network, n, n)
}

// netAlloc is one network's allocation state within an entry.
type netAlloc struct {
	spec     *resource.NetworkSpec
	prefix   netip.Prefix
	gw       netip.Addr
	capacity int64 // spec.Capacity(), computed once
}

// devices fills in a VM's device spec: it keeps a NIC's old address and MAC
// (same index, same network, none given), checks static addresses and
// MACs, allocates the missing addresses (next fit) and MACs, and resolves
// its disks (an image and a size: a new volume, returned in vols for the
// caller to write after the VM). old is the VM's current spec (nil on
// create). full is the pending reason when a network had no address left
// for a NIC (which then has none). With placing set only addresses are
// allocated (disks are already resolved), and a full network is an error.
func (w *writer) devices(name, id string, old, spec *resource.VMSpec, now time.Time, placing bool) (full string, vols []*resource.Object, err error) {
	nets := map[string]*netAlloc{}
	own := map[string]int{}  // network\x00ip -> nic index, this VM's
	macs := map[string]int{} // mac -> nic index, this VM's
	getNet := func(i int, n string) (*netAlloc, error) {
		if a := nets[n]; a != nil {
			return a, nil
		}
		o, ns, _, err := w.network(n)
		if err != nil {
			return nil, err
		}
		if o == nil {
			return nil, resource.Errorf(fmt.Sprintf("spec.nics[%d].network", i), "no network %q: create it first", n)
		}
		p, ok := ns.Prefix()
		if !ok {
			return nil, fmt.Errorf("%w: network %q has cidr %q", ErrBadPayload, n, ns.CIDR)
		}
		gw, _ := netip.ParseAddr(ns.Gateway)
		a := &netAlloc{spec: ns, prefix: p, gw: gw, capacity: ns.Capacity()}
		nets[n] = a
		return a, nil
	}
	// Keep what the NICs had; check what is given.
	for i := range spec.NICs {
		n := &spec.NICs[i]
		if old != nil && i < len(old.NICs) && old.NICs[i].Network == n.Network {
			if n.IP == "" {
				n.IP = old.NICs[i].IP
			}
			if n.MAC == "" {
				n.MAC = old.NICs[i].MAC
			}
		}
		f := fmt.Sprintf("spec.nics[%d]", i)
		a, err := getNet(i, n.Network)
		if err != nil {
			return "", nil, err
		}
		if n.IP != "" {
			ip, err := netip.ParseAddr(n.IP)
			if err != nil {
				return "", nil, resource.Errorf(f+".ip", "must be an address (got %q)", n.IP)
			}
			n.IP = ip.String()
			switch {
			case !a.prefix.Contains(ip):
				return "", nil, resource.Errorf(f+".ip", "%s is outside network %s (%s)", ip, n.Network, a.prefix)
			case !resource.UsableAddr(a.prefix, ip):
				return "", nil, resource.Errorf(f+".ip", "%s is the network or broadcast address of network %s (%s)", ip, n.Network, a.prefix)
			case ip == a.gw:
				return "", nil, fmt.Errorf("address %s on network %s is its gateway: %w", ip, n.Network, ErrInUse)
			case a.spec.IsReserved(ip):
				return "", nil, fmt.Errorf("address %s on network %s is reserved: %w", ip, n.Network, ErrInUse)
			}
			key := n.Network + "\x00" + n.IP
			if j, dup := own[key]; dup {
				return "", nil, resource.Errorf(f+".ip", "%s is already nic %d's address on network %s", ip, j, n.Network)
			}
			holder, err := otherHolder(w.txn, name, indexNICAddr, n.Network, n.IP)
			if err != nil {
				return "", nil, err
			}
			if holder != "" {
				return "", nil, fmt.Errorf("address %s on network %s is held by vm %s: %w", ip, n.Network, holder, ErrInUse)
			}
			own[key] = i
		}
		if n.MAC != "" {
			if j, dup := macs[n.MAC]; dup {
				return "", nil, resource.Errorf(f+".mac", "%s is already nic %d's MAC", n.MAC, j)
			}
			holder, err := otherHolder(w.txn, name, indexNICMAC, n.MAC)
			if err != nil {
				return "", nil, err
			}
			if holder != "" {
				return "", nil, fmt.Errorf("mac %s is held by vm %s: %w", n.MAC, holder, ErrInUse)
			}
			macs[n.MAC] = i
		}
	}
	// Allocate the missing addresses, then the missing MACs.
	for i := range spec.NICs {
		n := &spec.NICs[i]
		if n.IP != "" {
			continue
		}
		a := nets[n.Network]
		ip, ok, err := w.nextFree(name, n.Network, a, own)
		if err != nil {
			return "", nil, err
		}
		if !ok {
			if placing {
				return "", nil, fmt.Errorf("vm %q: %s: %w", name, fullReason(n.Network, a.capacity), ErrNoCapacity)
			}
			if full == "" {
				full = fullReason(n.Network, a.capacity)
			}
			continue
		}
		n.IP = ip.String()
		own[n.Network+"\x00"+n.IP] = i
		if w.netNext == nil {
			w.netNext = map[string]string{}
		}
		if nx := ip.Next(); nx.IsValid() {
			w.netNext[n.Network] = nx.String()
		} else {
			w.netNext[n.Network] = ""
		}
		w.touchNetwork(n.Network)
	}
	for i := range spec.NICs {
		n := &spec.NICs[i]
		if n.MAC != "" {
			continue
		}
		for attempt := 0; ; attempt++ {
			m := deriveMAC(id, i, attempt)
			if _, dup := macs[m]; dup {
				continue
			}
			holder, err := otherHolder(w.txn, name, indexNICMAC, m)
			if err != nil {
				return "", nil, err
			}
			if holder == "" {
				n.MAC = m
				macs[m] = i
				break
			}
			if attempt > 1<<12 {
				return "", nil, fmt.Errorf("vm %q: no free MAC found for nic %d: %w", name, i, ErrInUse)
			}
		}
	}
	for _, n := range spec.NICs {
		w.touchNetwork(n.Network)
	}
	if placing {
		return "", nil, nil
	}
	for i := range spec.Disks {
		d := &spec.Disks[i]
		f := fmt.Sprintf("spec.disks[%d]", i)
		if d.Volume == "" && old != nil && i < len(old.Disks) && old.Disks[i].Volume != "" &&
			old.Disks[i].Image == d.Image && old.Disks[i].SizeMiB == d.SizeMiB {
			d.Volume = old.Disks[i].Volume
		}
		if d.Image != "" {
			if img, err := getTxn(w.txn, nil, resource.KindImage, d.Image); err != nil {
				return "", nil, err
			} else if img == nil {
				return "", nil, resource.Errorf(f+".image", "unknown image %q: create it first", d.Image)
			}
		}
		if d.Volume == "" {
			vname := resource.DiskVolumeName(name, i)
			if err := resource.ValidateName(vname); err != nil {
				return "", nil, resource.Errorf(f, "the volume for this disk would be named %q, which is not a valid name; use a shorter VM name", vname)
			}
			if cur, err := getTxn(w.txn, nil, resource.KindVolume, vname); err != nil {
				return "", nil, err
			} else if cur != nil {
				return "", nil, fmt.Errorf("volume %q (for disk %d of vm %s) %w: delete it or attach it as volume=%s", vname, i, name, ErrExists, vname)
			}
			vo, err := newDiskVolume(vname, diskVolumeID(id, i), d, spec.Project, now)
			if err != nil {
				return "", nil, err
			}
			d.Volume = vname
			vols = append(vols, vo)
			continue
		}
		vo, _, _, err := w.volume(d.Volume)
		if err != nil {
			return "", nil, err
		}
		if vo == nil {
			return "", nil, resource.Errorf(f+".volume", "no volume %q: create it first (or give an image and a size)", d.Volume)
		}
		holder, err := otherHolder(w.txn, name, indexVMVolume, d.Volume)
		if err != nil {
			return "", nil, err
		}
		if holder != "" {
			return "", nil, fmt.Errorf("volume %s is attached to vm %s: %w", d.Volume, holder, ErrInUse)
		}
		w.touchVolume(d.Volume)
	}
	return full, vols, nil
}

// newDiskVolume is the volume made for a VM disk given as an image and a
// size, in the VM's project.
func newDiskVolume(name, id string, d *resource.Disk, project string, now time.Time) (*resource.Object, error) {
	spec, err := json.Marshal(&resource.VolumeSpec{SizeMiB: d.SizeMiB, Image: d.Image, Project: project})
	if err != nil {
		return nil, err
	}
	status, err := resource.InitialStatus(resource.KindVolume, now)
	if err != nil {
		return nil, err
	}
	return &resource.Object{Kind: resource.KindVolume, Name: name, ID: id, Spec: spec, Status: status}, nil
}

// diskVolumeID derives the id of the volume made for disk i of the VM with
// id vm: a UUID (version 5 layout) from SHA-256 of both.
func diskVolumeID(vm string, i int) string {
	h := sha256.Sum256([]byte("kumoi/disk-volume/" + vm + "/" + strconv.Itoa(i)))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// deriveMAC is the MAC of NIC i of the VM with id vm: 52:54:00 and three
// bytes of SHA-256 of both (attempt > 0 after a collision).
func deriveMAC(vm string, i, attempt int) string {
	s := "kumoi/mac/" + vm + "/" + strconv.Itoa(i)
	if attempt > 0 {
		s += "/" + strconv.Itoa(attempt)
	}
	h := sha256.Sum256([]byte(s))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

// nextFree finds a free address on network net for VM self (next fit from
// the network's status.next): a usable address that is not the gateway,
// not reserved, not held by another VM and not in own. ok is false when
// there is none.
func (w *writer) nextFree(self, net string, a *netAlloc, own map[string]int) (netip.Addr, bool, error) {
	held, err := w.heldCount(net, self)
	if err != nil {
		return netip.Addr{}, false, err
	}
	for k := range own {
		if strings.HasPrefix(k, net+"\x00") {
			held++
		}
	}
	if held >= a.capacity {
		return netip.Addr{}, false, nil
	}
	next := w.netNext[net]
	if next == "" {
		if _, _, st, err := w.network(net); err == nil && st != nil {
			next = st.Next
		}
	}
	start, err := netip.ParseAddr(next)
	if err != nil || !a.prefix.Contains(start) {
		start = a.prefix.Addr()
	}
	type rng struct{ from, to netip.Addr }
	var reserved []rng
	for _, r := range a.spec.Reserved {
		if from, to, err := r.Bounds(a.prefix); err == nil {
			reserved = append(reserved, rng{from, to})
		}
	}
	addr, wrapped := start, false
	for {
		if !addr.IsValid() || !a.prefix.Contains(addr) {
			if wrapped {
				return netip.Addr{}, false, nil
			}
			wrapped, addr = true, a.prefix.Addr()
		}
		if wrapped && !addr.Less(start) {
			return netip.Addr{}, false, nil
		}
		skipped := false
		for _, r := range reserved {
			if !addr.Less(r.from) && !r.to.Less(addr) {
				addr, skipped = r.to.Next(), true
				break
			}
		}
		if skipped {
			continue
		}
		if resource.UsableAddr(a.prefix, addr) && addr != a.gw {
			if _, mine := own[net+"\x00"+addr.String()]; !mine {
				holder, err := otherHolder(w.txn, self, indexNICAddr, net, addr.String())
				if err != nil {
					return netip.Addr{}, false, err
				}
				if holder == "" {
					return addr, true, nil
				}
			}
		}
		addr = addr.Next()
	}
}

// heldCount counts the addresses VMs other than self hold on network net.
func (w *writer) heldCount(net, self string) (int64, error) {
	n, err := w.netHeld(net)
	if err != nil || self == "" {
		return n, err
	}
	raw, err := w.txn.First(tableObjects, indexID, string(resource.KindVM), self)
	if err != nil {
		return 0, err
	}
	if raw != nil {
		n -= int64(w.addrsOn(raw.(*resource.Object))[net])
	}
	return n, nil
}

// netHeld is how many addresses VMs hold on network net: the network's
// status.allocated as the entry found it (what they held when it last
// changed: every change of a VM's addresses marks its networks, whose
// count is written at commit) plus what the entry moved (heldDeltas).
// The network written in the entry, or none, is counted from the index.
func (w *writer) netHeld(net string) (int64, error) {
	if w.recountNets[net] {
		return w.countHeld(net)
	}
	o, _, st, err := w.network(net)
	if err != nil {
		return 0, err
	}
	if o == nil {
		return w.countHeld(net)
	}
	n := st.Allocated + w.heldDeltas[net]
	if checkApplyCaches {
		if v, err := w.countHeld(net); err != nil || v != n {
			panic(fmt.Sprintf("fsm: network %q: held addresses moved to %d, counted %d (%v)", net, n, v, err))
		}
	}
	return n, nil
}

// countHeld counts the addresses held on network net from the index:
// O(the network's addresses).
func (w *writer) countHeld(net string) (int64, error) {
	it, err := w.txn.Get(tableObjects, indexVMDevice+"_prefix", indexNICAddr, net)
	if err != nil {
		return 0, err
	}
	var n int64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n++
	}
	return n, nil
}

// addrsOn counts the addresses a VM's spec holds on each network, as the
// device index has them (one entry per network and address).
func (w *writer) addrsOn(o *resource.Object) map[string]int {
	var f vmSpecFields
	var ok bool
	if w.caches != nil {
		f, ok = w.caches.spec.decode(o.Spec)
	} else {
		f, ok = (&vmSpecCache{}).decode(o.Spec)
	}
	if !ok {
		return nil // not indexed
	}
	var out map[string]int
	seen := map[[2]string]bool{}
	for _, n := range f.NICs {
		if n.Network == "" || n.IP == "" || seen[[2]string{n.Network, n.IP}] {
			continue
		}
		seen[[2]string{n.Network, n.IP}] = true
		if out == nil {
			out = map[string]int{}
		}
		out[n.Network]++
	}
	return out
}

// moveHeld adds sign × the addresses VM o holds to their networks' counts
// in this entry, and marks those networks (their status.allocated is
// written at commit: a move left unwritten would be lost for good).
func (w *writer) moveHeld(o *resource.Object, sign int64) {
	for net, k := range w.addrsOn(o) {
		if w.heldDeltas == nil {
			w.heldDeltas = map[string]int64{}
		}
		w.heldDeltas[net] += sign * int64(k)
		w.touchNetwork(net)
	}
}

// recountNet makes the entry count network name's addresses from the
// index: its object was created or its status written.
func (w *writer) recountNet(name string) {
	mark(&w.recountNets, name)
}

// netHolders lists the addresses held on network net: address -> VM.
func (w *writer) netHolders(net string) (map[string]string, error) {
	it, err := w.txn.Get(tableObjects, indexVMDevice+"_prefix", indexNICAddr, net)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		o := raw.(*resource.Object)
		f, ok := (&vmSpecCache{}).decode(o.Spec)
		if !ok {
			continue
		}
		for _, nic := range f.NICs {
			if nic.Network == net && nic.IP != "" {
				out[nic.IP] = o.Name
			}
		}
	}
	return out, nil
}

// usersMessage names the VMs that use something: "vms a, b (and 3 more)".
func usersMessage(kind string, names []string) string {
	const show = 5
	word := kind + "s"
	if len(names) == 1 {
		word = kind
	}
	msg := word + " " + strings.Join(names[:min(show, len(names))], ", ")
	if len(names) > show {
		msg += fmt.Sprintf(" (and %d more)", len(names)-show)
	}
	return msg
}

// recomputeDevices writes the status of every touched network (allocated,
// capacity, next) and volume (attached_to), in name order.
func (w *writer) recomputeDevices() error {
	for _, name := range sortedKeys(w.touchedNets) {
		o, spec, st, err := w.network(name)
		if err != nil {
			return err
		}
		if o == nil {
			continue
		}
		// One index entry per held address (no VM holds one twice,
		// and no two VMs one).
		n, err := w.heldCount(name, "")
		if err != nil {
			return err
		}
		nst := *st
		nst.Allocated, nst.Capacity = n, spec.Capacity()
		if next, ok := w.netNext[name]; ok {
			nst.Next = next
		}
		if nst.Allocated == st.Allocated && nst.Capacity == st.Capacity && nst.Next == st.Next {
			continue
		}
		if err := w.putStatus(o, &nst); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(w.touchedVols) {
		o, _, st, err := w.volume(name)
		if err != nil {
			return err
		}
		if o == nil {
			continue
		}
		users, err := vmsByDevice(w.txn, indexVMVolume, name)
		if err != nil {
			return err
		}
		nst := *st
		nst.AttachedTo = ""
		if len(users) > 0 {
			nst.AttachedTo = users[0]
		}
		if nst.AttachedTo == st.AttachedTo {
			continue
		}
		if err := w.putStatus(o, &nst); err != nil {
			return err
		}
	}
	w.touchedNets, w.touchedVols, w.heldDeltas, w.recountNets = nil, nil, nil, nil
	return nil
}

// putStatus writes an object's new status, derived by the state machine.
func (w *writer) putStatus(o *resource.Object, st any) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	n := o.Copy()
	n.Status = raw
	n.ModifyIndex = w.index
	return w.putObject(n, resource.EventUpdated, false)
}
