package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// resPass is what one pass knows of the networks, images and volumes the
// VMs placed on this host name, and what it made of them.
type resPass struct {
	// complete: every network, volume and image the VMs name was read
	// (those that do not exist are absent from the maps). When false,
	// nothing is removed from the host in this pass.
	complete bool
	networks map[string]*resource.Object
	images   map[string]*resource.Object
	volumes  map[string]*resource.Object
	labels   map[string]string // the host object's
	// listVolumes reads every volume (stale volume removal; nil: none).
	listVolumes func() ([]*resource.Object, error)

	// What the pass made of them.
	nets    map[string]devResult // by network name
	vols    map[string]volResult // by volume name
	reports []resource.ResourceReport
}

// devResult says whether a network or volume is usable by a VM: ready,
// or wait (not yet: retried next pass), or fail (the VM fails).
type devResult struct {
	wait string
	fail string
}

type volResult struct {
	devResult
	info hypervisor.VolumeInfo
}

func newResPass() *resPass {
	return &resPass{networks: map[string]*resource.Object{}, images: map[string]*resource.Object{}, volumes: map[string]*resource.Object{},
		nets: map[string]devResult{}, vols: map[string]volResult{}}
}

// BridgeName is the bridge device of a nat or isolated network of a
// cluster: "kb-" and the first 10 hex digits of sha256(cluster id + "/" +
// network name): 13 characters, within IFNAMSIZ, the same on every host
// and different between clusters sharing a host.
func BridgeName(cluster, network string) string {
	sum := sha256.Sum256([]byte(cluster + "/" + network))
	return "kb-" + hex.EncodeToString(sum[:])[:10]
}

// VolumeFileName is the file of a volume in the pool:
// "<cluster id>_<volume id>.qcow2".
func VolumeFileName(cluster, volumeID string) string {
	return cluster + "_" + volumeID + ".qcow2"
}

// volumeIDOf returns the volume id of a pool file of cluster.
func volumeIDOf(cluster, file string) (string, bool) {
	id, ok := strings.CutPrefix(file, cluster+"_")
	if !ok || cluster == "" {
		return "", false
	}
	id, ok = strings.CutSuffix(id, ".qcow2")
	return id, ok && id != ""
}

// usesDevices reports whether a VM spec has NICs or disks.
func usesDevices(s *resource.VMSpec) bool { return len(s.NICs) > 0 || len(s.Disks) > 0 }

// readResources reads the networks, volumes and images the VMs placed
// here name, and the host's labels. A read that fails leaves the pass
// incomplete: VMs that need what was not read wait, and nothing is
// removed.
func (w *Worker) readResources(ctx context.Context, c *client.Client, host *resource.Object, vms []*resource.Object) *resPass {
	rp := newResPass()
	if host != nil {
		rp.labels = host.Labels
	}
	// Bounded well below fence-after: the pass's proof that the host is
	// ready must still be fresh when it starts domains.
	rctx, cancel := context.WithTimeout(ctx, w.cfg.FenceAfter/3)
	defer cancel()
	rp.complete = true
	failed := func(kind resource.Kind, name string, err error) {
		if rp.complete && err.Error() != w.readErr {
			w.readErr = err.Error() // logged once until it changes
			w.logger.Warn("cannot read what this host's VMs use; they wait", "kind", kind, "name", name, "error", err)
		}
		rp.complete = false
	}
	// read reads the named objects of a kind: one by one when they are
	// few, else in one list (a host with many VMs would otherwise make
	// a read per disk every pass).
	read := func(kind resource.Kind, names map[string]bool, into map[string]*resource.Object) {
		if len(names) > 4 {
			all, _, err := c.List(rctx, kind, nil)
			if err != nil {
				failed(kind, "", err)
				return
			}
			for _, o := range all {
				if names[o.Name] {
					into[o.Name] = o
				}
			}
			return
		}
		for _, name := range slices.Sorted(maps.Keys(names)) {
			o, _, err := c.Get(rctx, kind, name, nil)
			switch {
			case err == nil:
				into[name] = o
			case client.IsNotFound(err):
			default:
				failed(kind, name, err)
			}
		}
	}
	netNames, volNames, imgNames := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, o := range append(w.placedHere(vms), w.incomingHere(vms)...) {
		spec, _ := resource.DecodeSpec[resource.VMSpec](o)
		for _, n := range spec.NICs {
			netNames[n.Network] = n.Network != ""
		}
		for _, d := range spec.Disks {
			if d.Volume != "" {
				volNames[d.Volume] = true
			}
			if d.Image != "" {
				imgNames[d.Image] = true
			}
		}
	}
	delete(netNames, "")
	read(resource.KindNetwork, netNames, rp.networks)
	read(resource.KindVolume, volNames, rp.volumes)
	for _, v := range rp.volumes {
		if vs, err := resource.DecodeSpec[resource.VolumeSpec](v); err == nil && vs.Image != "" {
			imgNames[vs.Image] = true
		}
	}
	read(resource.KindImage, imgNames, rp.images)
	if rp.complete {
		w.readErr = ""
	}
	rp.listVolumes = func() ([]*resource.Object, error) {
		lctx, cancel := context.WithTimeout(ctx, w.cfg.FenceAfter/3)
		defer cancel()
		vols, _, err := c.List(lctx, resource.KindVolume, nil)
		return vols, err
	}
	return rp
}

// placedHere returns the VMs whose status places them on this host.
func (w *Worker) placedHere(vms []*resource.Object) []*resource.Object {
	var out []*resource.Object
	for _, o := range vms {
		if st, err := resource.DecodeStatus[resource.VMStatus](o); err == nil && st.Host == w.cfg.NodeID {
			if _, err := resource.DecodeSpec[resource.VMSpec](o); err == nil {
				out = append(out, o)
			}
		}
	}
	return out
}

// convergeResources makes the host's networks and volumes match what the
// VMs placed on it need (before the VMs are converged, so that their
// domains can be defined on them), removes those no VM needs any more
// (when stale is true: every stale domain is gone), and queues the
// resource states that changed in rp.reports.
func (w *Worker) convergeResources(ctx context.Context, rp *resPass, vms []*resource.Object, stale bool) {
	here := w.placedHere(vms)
	nets, nerr := w.drv.ListNetworks(ctx)
	vols, verr := w.drv.ListVolumes(ctx)
	if nerr != nil || verr != nil {
		w.logger.Warn("cannot list this host's networks or volumes", "error", errors.Join(nerr, verr))
		for _, o := range here {
			spec, _ := resource.DecodeSpec[resource.VMSpec](o)
			for _, n := range spec.NICs {
				rp.nets[n.Network] = devResult{wait: "the host's networks cannot be listed"}
			}
			for _, d := range spec.Disks {
				rp.vols[d.Volume] = volResult{devResult: devResult{wait: "the host's volumes cannot be listed"}}
			}
		}
		return
	}
	// The VMs migrating here live need their networks (and DHCP
	// entries) and volumes before the hypervisor is prepared.
	in := w.incomingHere(vms)
	needNets := w.ensureNetworks(ctx, rp, append(here[:len(here):len(here)], in...), nets)
	needVols := w.ensureVolumes(ctx, rp, here, vols)
	for id := range w.ensureIncomingVolumes(ctx, rp, in, vols) {
		needVols[id] = true
	}
	if !stale || !rp.complete {
		return
	}
	w.removeNetworks(ctx, rp, nets, needNets)
	w.removeVolumes(ctx, rp, vols, needVols)
	w.forgetResources(rp)
}

// forgetResources forgets the last recorded state (and the unknown
// outcome) of every network, volume and image that no VM here names any
// more and that this pass reported nothing of: a complete pass read every
// one the VMs name. Nothing reports those states again (a network's
// removal is reported until recorded, by removeNetworks, and forgotten the
// pass after), and a network made again under the same name starts
// afresh; without this the worker kept one entry per resource it ever
// touched.
func (w *Worker) forgetResources(rp *resPass) {
	keep := map[string]bool{}
	for _, r := range rp.reports {
		keep[resKey(r.Kind, r.Name)] = true
	}
	named := func(key string) bool {
		kind, name, _ := strings.Cut(key, "/")
		switch resource.Kind(kind) {
		case resource.KindNetwork:
			return rp.networks[name] != nil
		case resource.KindVolume:
			return rp.volumes[name] != nil
		case resource.KindImage:
			return rp.images[name] != nil
		}
		return true // a VM's (w.unsure): not this pass's to forget
	}
	for key := range w.resReported {
		if !keep[key] && !named(key) {
			delete(w.resReported, key)
		}
	}
	for key := range w.unsure {
		if !keep[key] && !named(key) {
			delete(w.unsure, key)
		}
	}
}

// networkDef is the definition of a network on this host, with the DHCP
// host entries of the NICs of the VMs here.
func (w *Worker) networkDef(o *resource.Object, spec *resource.NetworkSpec, labels map[string]string, here []*resource.Object) hypervisor.NetworkDef {
	def := hypervisor.NetworkDef{Name: hypervisor.NetworkName(o.Name), Mode: spec.Mode, MTU: spec.MTU}
	if def.Mode == "" {
		def.Mode = hypervisor.NetModeNAT
	}
	if def.Mode == hypervisor.NetModeBridge {
		def.Bridge = spec.Bridge
		if b := labels[resource.BridgeLabelPrefix+o.Name]; b != "" {
			def.Bridge = b
		}
		return def.Normal()
	}
	def.Bridge = BridgeName(w.ClusterID(), o.Name)
	def.CIDR, def.Gateway, def.DHCP = spec.CIDR, spec.Gateway, spec.DHCPOn()
	if p, ok := spec.Prefix(); ok && p.Addr().Is6() {
		// libvirt binds DHCPv6 leases to a client's DUID, not its MAC,
		// which Kumoi does not know: on an IPv6 network the guests take
		// the address Kumoi allocated statically (docs/networks-storage.md).
		def.DHCP = false
	}
	if def.DHCP {
		def.Hosts = dhcpHosts(o.Name, here)
	}
	return def.Normal()
}

// dhcpHosts is one entry per NIC on network of the VMs (that has an
// address and a MAC), named after its VM, sorted by MAC.
func dhcpHosts(network string, vms []*resource.Object) []hypervisor.DHCPHost {
	var hosts []hypervisor.DHCPHost
	for _, o := range vms {
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil {
			continue
		}
		for _, n := range spec.NICs {
			if n.Network == network && n.IP != "" && n.MAC != "" {
				hosts = append(hosts, hypervisor.DHCPHost{MAC: n.MAC, IP: n.IP, Name: o.Name})
			}
		}
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].MAC < hosts[j].MAC })
	return hosts
}

// ensureNetworks ensures every network a VM here uses and returns their
// names.
func (w *Worker) ensureNetworks(ctx context.Context, rp *resPass, here []*resource.Object, listed []hypervisor.NetworkInfo) map[string]bool {
	need := map[string]bool{}
	for _, o := range here {
		spec, _ := resource.DecodeSpec[resource.VMSpec](o)
		for _, n := range spec.NICs {
			need[n.Network] = true
		}
	}
	byName := map[string]hypervisor.NetworkInfo{}
	for _, n := range listed {
		byName[n.Name] = n
	}
	for _, name := range slices.Sorted(maps.Keys(need)) {
		o, ok := rp.networks[name]
		if !ok {
			if rp.complete {
				rp.nets[name] = devResult{fail: "network " + name + " does not exist"}
			} else {
				rp.nets[name] = devResult{wait: "network " + name + " could not be read"}
			}
			continue
		}
		spec, err := resource.DecodeSpec[resource.NetworkSpec](o)
		if err != nil {
			rp.nets[name] = devResult{fail: err.Error()}
			continue
		}
		spec.Default()
		def := w.networkDef(o, spec, rp.labels, here)
		info, present := byName[def.Name]
		state, reason := w.networkState(name, def.Name, o, info, present)
		prev, ensured := w.netDefs[name]
		if !ensured || !present || !info.Active || !netDefEqual(prev, def) {
			if err := w.drv.EnsureNetwork(ctx, def); err != nil {
				w.logger.Warn("cannot ensure network", "network", name, "error", err)
				why := fmt.Sprintf("network %s on host %s: %v", name, w.cfg.NodeID, err)
				if errors.Is(err, hypervisor.ErrInvalidState) {
					// A change that needs the network restarted while
					// an active domain uses it: applied once none does.
					rp.nets[name] = devResult{wait: why}
					continue
				}
				if errors.Is(err, hypervisor.ErrUnavailable) || ctx.Err() != nil {
					rp.nets[name] = devResult{wait: why}
				} else {
					rp.nets[name] = devResult{fail: why}
				}
				rp.report(w, resource.ResourceReport{Kind: resource.KindNetwork, Name: name, ID: o.ID, State: resource.HostResourceFailed, Reason: why})
				delete(w.netDefs, name)
				continue
			}
			w.netDefs[name] = def
		}
		w.netUp[name] = true
		delete(w.netRemoved, name)
		delete(w.netRemoving, name)
		rp.nets[name] = devResult{}
		rp.report(w, resource.ResourceReport{Kind: resource.KindNetwork, Name: name, ID: o.ID, State: state, Reason: reason})
	}
	return need
}

// networkState is the state to report of a network about to be ensured:
// "recreated" (with the reason) when it was up here and is gone or
// stopped, or was recreated before and still lives; else ready.
func (w *Worker) networkState(name, lvName string, o *resource.Object, info hypervisor.NetworkInfo, present bool) (state, reason string) {
	var hs resource.HostResourceState
	if st, err := resource.DecodeStatus[resource.NetworkStatus](o); err == nil {
		hs = st.Hosts[w.cfg.NodeID]
		w.seq.observe(st.RemovedSeq[w.cfg.NodeID]) // a removal's, once the entry is gone
	}
	w.seq.observe(hs.Seq)
	wasUp := w.netUp[name] || (hs.State == resource.HostResourceReady || hs.State == resource.HostResourceRecreate) && !w.netRemoved[name]
	last := w.resReported[resKey(resource.KindNetwork, name)]
	switch {
	case wasUp && (!present || !info.Active):
		what := "removed"
		if present {
			what = "stopped"
		}
		w.logger.Warn("a network was "+what+" behind Kumoi's back; recreating it", "network", name)
		return resource.HostResourceRecreate, fmt.Sprintf("the libvirt network %s was %s outside Kumoi; recreated at %s", lvName, what, time.Now().UTC().Format(time.RFC3339))
	case last.State == resource.HostResourceRecreate && last.ID == o.ID:
		// (Not a network of the same name deleted and made again.)
		return last.State, last.Reason
	case hs.State == resource.HostResourceRecreate && !w.netRemoved[name]:
		return hs.State, hs.Reason
	}
	return resource.HostResourceReady, ""
}

func netDefEqual(a, b hypervisor.NetworkDef) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// removeNetworks removes the Kumoi networks no VM here needs: those of
// this cluster (a nat or isolated network on this cluster's bridge name)
// and bridge-mode ones (which carry no cluster mark).
func (w *Worker) removeNetworks(ctx context.Context, rp *resPass, listed []hypervisor.NetworkInfo, need map[string]bool) {
	kept := map[string]bool{} // this cluster's, still here: not removed
	for _, n := range listed {
		name, ok := strings.CutPrefix(n.Name, hypervisor.DomainPrefix)
		if !ok || need[name] {
			continue
		}
		if n.Foreign || n.Mode != hypervisor.NetModeBridge && n.Bridge != "" && n.Bridge != BridgeName(w.ClusterID(), name) {
			continue // not Kumoi's, or another cluster's
		}
		if err := w.drv.RemoveNetwork(ctx, n.Name); err != nil {
			w.logger.Debug("cannot remove a network no VM here needs; trying again later", "network", name, "error", err)
			kept[name] = true
			continue
		}
		w.logger.Info("removed a network no VM on this host needs", "network", name)
		delete(w.netUp, name)
		delete(w.netDefs, name)
		w.netRemoved[name] = true
		w.netRemoving[name] = true
	}
	// Every removal the controllers have not recorded yet is reported
	// (again: a request that failed, or that left it out, lost it, and
	// the network, gone from the host, is not listed any more), until
	// recordResources settles it (removalSettled).
	for _, name := range slices.Sorted(maps.Keys(w.netRemoving)) {
		if !need[name] && !kept[name] {
			rp.report(w, resource.ResourceReport{Kind: resource.KindNetwork, Name: name, State: resource.HostResourceRemoved})
		}
	}
}

// ensureVolumes ensures the volume of every disk of the VMs here (and the
// images they start from) and returns the ids of those volumes.
func (w *Worker) ensureVolumes(ctx context.Context, rp *resPass, here []*resource.Object, listed []hypervisor.VolumeInfo) map[string]bool {
	need := map[string]bool{}
	byName := map[string]hypervisor.VolumeInfo{}
	for _, v := range listed {
		byName[v.Name] = v
	}
	for _, o := range here {
		spec, _ := resource.DecodeSpec[resource.VMSpec](o)
		for _, d := range spec.Disks {
			if d.Volume == "" {
				continue
			}
			if _, done := rp.vols[d.Volume]; done {
				continue
			}
			if v, ok := rp.volumes[d.Volume]; ok {
				need[v.ID] = true
			}
			rp.vols[d.Volume] = w.ensureVolume(ctx, rp, d.Volume, byName)
		}
	}
	return need
}

// ensureVolume makes one volume exist on this host (never recreating one
// that was ready here and is gone) and reports its state.
func (w *Worker) ensureVolume(ctx context.Context, rp *resPass, name string, listed map[string]hypervisor.VolumeInfo) volResult {
	wait := func(why string) volResult { return volResult{devResult: devResult{wait: why}} }
	o, ok := rp.volumes[name]
	if !ok {
		if rp.complete {
			return volResult{devResult: devResult{fail: "volume " + name + " does not exist"}}
		}
		return wait("volume " + name + " could not be read")
	}
	spec, err := resource.DecodeSpec[resource.VolumeSpec](o)
	st, err2 := resource.DecodeStatus[resource.VolumeStatus](o)
	if err != nil || err2 != nil {
		return volResult{devResult: devResult{fail: "volume " + name + ": " + errors.Join(err, err2).Error()}}
	}
	switch st.Host {
	case w.cfg.NodeID:
		w.seq.observe(st.ReportSeq)
	case "":
		return wait("volume " + name + " is not placed on a host yet")
	default:
		return volResult{devResult: devResult{fail: "volume " + name + " is held by host " + st.Host}}
	}
	report := func(state, reason string, size int64) {
		rp.report(w, resource.ResourceReport{Kind: resource.KindVolume, Name: name, ID: o.ID, State: state, Reason: reason, SizeMiB: size})
	}
	file := VolumeFileName(w.ClusterID(), o.ID)
	info, present := listed[file]
	if !present && (w.volMade[o.ID] || st.Phase == resource.VolumeReady || st.Phase == resource.VolumeMissing) {
		why := fmt.Sprintf("volume %s is missing on host %s: removed outside Kumoi", name, w.cfg.NodeID)
		if st.Phase != resource.VolumeMissing {
			w.logger.Warn("a volume was removed behind Kumoi's back; it is not recreated", "volume", name, "file", file)
		}
		report(resource.HostResourceMissing, why, 0)
		return volResult{devResult: devResult{fail: why}}
	}
	def := hypervisor.VolumeDef{Name: file, SizeMiB: spec.SizeMiB}
	if spec.Image != "" {
		img, ok := rp.images[spec.Image]
		if !ok {
			if rp.complete {
				why := "volume " + name + ": unknown image " + spec.Image
				report(resource.HostResourceFailed, why, 0)
				return volResult{devResult: devResult{fail: why}}
			}
			return wait("image " + spec.Image + " could not be read")
		}
		is := w.imageState(ctx, rp, img)
		switch is.state {
		case resource.HostResourcePending:
			if is.progress != "" {
				return wait("fetching image " + spec.Image + ": " + is.progress)
			}
			return wait("fetching image " + spec.Image)
		case resource.HostResourceFailed:
			if !is.permanent {
				return wait(is.err.Error())
			}
			report(resource.HostResourceFailed, is.err.Error(), 0)
			return volResult{devResult: devResult{fail: is.err.Error()}}
		}
		def.Backing, def.BackingFormat = is.path, is.format
	}
	if !present || info.SizeMiB < def.SizeMiB || !w.volMade[o.ID] {
		got, err := w.drv.EnsureVolume(ctx, def)
		if err != nil && present && errors.Is(err, hypervisor.ErrUnsupported) {
			// A driver that cannot grow a volume: it stays as it is,
			// and says so.
			why := fmt.Sprintf("volume %s on host %s stays at %d MiB: %v", name, w.cfg.NodeID, info.SizeMiB, err)
			w.volMade[o.ID] = true
			report(resource.HostResourceReady, why, info.SizeMiB)
			return volResult{info: info}
		}
		if err != nil {
			why := fmt.Sprintf("volume %s on host %s: %v", name, w.cfg.NodeID, err)
			w.logger.Warn("cannot ensure volume", "volume", name, "error", err)
			if errors.Is(err, hypervisor.ErrUnavailable) || ctx.Err() != nil {
				return wait(why)
			}
			report(resource.HostResourceFailed, why, 0)
			return volResult{devResult: devResult{fail: why}}
		}
		info = got
		w.volMade[o.ID] = true
	}
	report(resource.HostResourceReady, "", info.SizeMiB)
	return volResult{info: info}
}

// imageState looks the image up in the cache and reports its state on
// this host.
func (w *Worker) imageState(ctx context.Context, rp *resPass, img *resource.Object) imageState {
	spec, err := resource.DecodeSpec[resource.ImageSpec](img)
	if err != nil {
		return imageState{state: resource.HostResourceFailed, err: err, permanent: true}
	}
	spec.Default()
	if st, err := resource.DecodeStatus[resource.ImageStatus](img); err == nil {
		w.seq.observe(max(st.Hosts[w.cfg.NodeID].Seq, st.RemovedSeq[w.cfg.NodeID]))
	}
	is := w.images.lookup(ctx, img, spec)
	reason := ""
	if is.err != nil {
		reason = is.err.Error()
	}
	rp.report(w, resource.ResourceReport{Kind: resource.KindImage, Name: img.Name, ID: img.ID, State: is.state, Reason: reason})
	return is
}

// removeVolumes removes the volumes of this cluster in the pool that no
// VM here uses and whose volume no longer exists or is not this host's.
func (w *Worker) removeVolumes(ctx context.Context, rp *resPass, listed []hypervisor.VolumeInfo, need map[string]bool) {
	cluster := w.ClusterID()
	var cand []hypervisor.VolumeInfo
	for _, v := range listed {
		if id, ok := volumeIDOf(cluster, v.Name); ok && !need[id] {
			cand = append(cand, v)
		}
	}
	if len(cand) == 0 || rp.listVolumes == nil {
		return
	}
	all, err := rp.listVolumes()
	if err != nil {
		w.logger.Debug("cannot list volumes; stale ones stay for now", "error", err)
		return
	}
	keep := map[string]bool{}
	for _, o := range all {
		if st, err := resource.DecodeStatus[resource.VolumeStatus](o); err == nil && st.Host == w.cfg.NodeID {
			keep[o.ID] = true
		}
	}
	for _, v := range cand {
		id, _ := volumeIDOf(cluster, v.Name)
		if keep[id] {
			continue
		}
		if err := w.drv.RemoveVolume(ctx, v.Name); err != nil {
			w.logger.Warn("cannot remove a volume whose object is gone", "file", v.Name, "error", err)
			continue
		}
		w.logger.Info("removed a volume whose object no longer exists (or is not this host's)", "file", v.Name)
		delete(w.volMade, id)
	}
}

// vmDevices returns a VM's disks (its volumes, in order) and NICs, or
// why it must wait, or why it fails.
func (w *Worker) vmDevices(v *vmPass) (disks []hypervisor.DomainDisk, nics []hypervisor.DomainNIC, wait, fail string) {
	rp := w.res
	if !usesDevices(v.spec) {
		return nil, nil, "", ""
	}
	if rp == nil {
		return nil, nil, "its networks and volumes were not read", ""
	}
	for i, d := range v.spec.Disks {
		if d.Volume == "" {
			return nil, nil, fmt.Sprintf("disk %d has no volume yet", i), ""
		}
		r, ok := rp.vols[d.Volume]
		switch {
		case !ok:
			return nil, nil, "volume " + d.Volume + " was not looked at", ""
		case r.fail != "":
			return nil, nil, "", r.fail
		case r.wait != "":
			return nil, nil, r.wait, ""
		}
		format := r.info.Format
		if format == "" {
			format = hypervisor.ImageQCOW2
		}
		disks = append(disks, hypervisor.DomainDisk{Path: r.info.Path, Format: format})
	}
	for i, n := range v.spec.NICs {
		if n.MAC == "" {
			return nil, nil, fmt.Sprintf("nic %d has no MAC yet", i), ""
		}
		r, ok := rp.nets[n.Network]
		switch {
		case !ok:
			return nil, nil, "network " + n.Network + " was not looked at", ""
		case r.fail != "":
			return nil, nil, "", r.fail
		case r.wait != "":
			return nil, nil, r.wait, ""
		}
		mtu := 0
		if o := rp.networks[n.Network]; o != nil {
			if s, err := resource.DecodeSpec[resource.NetworkSpec](o); err == nil {
				mtu = s.MTU
			}
		}
		nics = append(nics, hypervisor.DomainNIC{Network: hypervisor.NetworkName(n.Network), MAC: n.MAC, MTU: mtu})
	}
	return disks, nics, "", ""
}

func resKey(kind resource.Kind, name string) string { return string(kind) + "/" + name }

// report queues a resource state if it differs from the one last
// recorded (or was in a request of unknown outcome since: report.go), and
// from one already queued in this pass.
func (rp *resPass) report(w *Worker, r resource.ResourceReport) {
	r.Reason = truncate(r.Reason, maxReportReason)
	if last, ok := w.resReported[resKey(r.Kind, r.Name)]; ok && last == r && !w.unsure[resKey(r.Kind, r.Name)] {
		return
	}
	for i, q := range rp.reports {
		if q.Kind == r.Kind && q.Name == r.Name {
			rp.reports[i] = r
			return
		}
	}
	rp.reports = append(rp.reports, r)
}

// maxReportReason bounds a resource state's reason (the API refuses more
// than 4096 bytes, and with it the whole report).
const maxReportReason = 1024

// truncate cuts s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
