package scheduler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Host is a candidate host as the scheduler sees it.
type Host struct {
	Name  string
	Ready bool // state ready and schedulable
	Free  resource.Resources
	Total resource.Resources // schedulable capacity

	// The attributes the expressions read besides capacity: the host
	// object's labels, its state and driver, how many VMs it holds.
	Labels        map[string]string
	State, Driver string
	VMs           int
}

// VM is a pending VM to place.
type VM struct {
	Name        string
	CreateIndex uint64
	Need        resource.Resources
	Reason      string // its current pending reason

	// Host, if set, is the only host the VM may go to: the host holding
	// its volume HostVolume.
	Host, HostVolume string
	// Blocked, if set, says why the VM cannot be placed anywhere (its
	// volumes are on different hosts).
	Blocked string
	// Networks lists a network once per NIC of the VM that still needs
	// an address there.
	Networks []string

	// Placement (issue 14): the VM's project, requirements and rank
	// expressions, strategy and affinity rule.
	Project, Requirements, Rank, Strategy string
	Affinity                              *resource.Affinity

	// volumes are the VM's volumes (FromState resolves Host from them).
	volumes []string
}

// Network is a network's address room, for VMs that need an address.
type Network struct {
	Free, Capacity int64
}

// Plan places vms (oldest first) on hosts with the cluster's default
// strategy (spread: most free memory first, then by name), as PlanWith.
func Plan(hosts []Host, vms []VM) fsm.PlaceRequest { return PlanWith(hosts, vms, Options{}) }

// PlanNetworks is Plan with the networks' free addresses: a VM that needs
// an address on a network with none left stays pending with a reason that
// says so (the state machine would refuse its placement). Networks absent
// from nets are not limited.
func PlanNetworks(hosts []Host, vms []VM, nets map[string]Network) fsm.PlaceRequest {
	return PlanWith(hosts, vms, Options{Networks: nets})
}

// blockedReason says why vm cannot be placed whatever the hosts: its
// volumes, or a network without a free address for it.
func blockedReason(vm VM, nets map[string]Network) string {
	if vm.Blocked != "" {
		return vm.Blocked
	}
	need := map[string]int64{}
	for _, n := range vm.Networks {
		need[n]++
		if nf, ok := nets[n]; ok && nf.Free < need[n] {
			return fmt.Sprintf("network %s is full: %d of %d addresses in use", n, nf.Capacity, nf.Capacity)
		}
	}
	return ""
}

// hostReason is reason, for a VM held to one host by its volumes: why
// that host does not take it.
func (r *reasoner) hostReason(vm VM, hosts []Host) string {
	if vm.Host == "" {
		return r.reason(vm)
	}
	for _, h := range hosts {
		if h.Name != vm.Host {
			continue
		}
		if !h.Ready {
			return fmt.Sprintf("volume %s is on host %s, which is not ready and schedulable", vm.HostVolume, vm.Host)
		}
		return fmt.Sprintf("volume %s is on host %s, which does not have %d CPUs and %s free right now",
			vm.HostVolume, vm.Host, vm.Need.CPUs, resource.FormatMiB(vm.Need.MemoryMiB))
	}
	return fmt.Sprintf("volume %s is on host %s, which is not a known host", vm.HostVolume, vm.Host)
}

func less(a, b Host) bool {
	if a.Free.MemoryMiB != b.Free.MemoryMiB {
		return a.Free.MemoryMiB > b.Free.MemoryMiB
	}
	return a.Name < b.Name
}

// reasoner explains why a VM fits nowhere, from the hosts' state before the
// plan (so that reasons are stable across rounds), in O(frontier) per VM.
type reasoner struct {
	known, ready int
	// frontier holds the ready hosts' capacities that no other ready host
	// beats in both CPUs and memory.
	frontier []resource.Resources
}

func newReasoner(hosts []Host) *reasoner {
	r := &reasoner{known: len(hosts)}
	var caps []resource.Resources
	for _, h := range hosts {
		if h.Ready {
			r.ready++
			caps = append(caps, h.Total)
		}
	}
	sort.Slice(caps, func(i, j int) bool {
		if caps[i].CPUs != caps[j].CPUs {
			return caps[i].CPUs > caps[j].CPUs
		}
		return caps[i].MemoryMiB > caps[j].MemoryMiB
	})
	var best int64 = -1
	for _, c := range caps {
		if c.MemoryMiB > best {
			r.frontier = append(r.frontier, c)
			best = c.MemoryMiB
		}
	}
	return r
}

func (r *reasoner) reason(vm VM) string {
	need := fmt.Sprintf("%d CPUs and %s", vm.Need.CPUs, resource.FormatMiB(vm.Need.MemoryMiB))
	switch {
	case r.known == 0:
		return resource.ReasonNoHosts
	case r.ready == 0:
		return fmt.Sprintf("no host is ready and schedulable (%d hosts known)", r.known)
	}
	for _, c := range r.frontier {
		if c.CPUs >= vm.Need.CPUs && c.MemoryMiB >= vm.Need.MemoryMiB {
			return fmt.Sprintf("no ready host has %s free right now (%d ready hosts)", need, r.ready)
		}
	}
	return fmt.Sprintf("larger than any host: needs %s; no ready host has that much capacity", need)
}

// Cache remembers decoded pending VMs between rounds, keyed by name and
// valid for one modify_index, so that a round costs decoding only what
// changed. It is used by one goroutine at a time.
type Cache struct {
	vms       map[string]cachedVM
	hostIndex [3]uint64 // the hosts', networks' and volumes' indexes when the cached VMs were planned
	// seenIndex is the highest modify index of a pending VM in the last
	// round: every VM at or below it was pending then, as it is (one
	// snapshot of the state holds every write up to its VMs' indexes).
	seenIndex uint64
}

type cachedVM struct {
	modify uint64
	vm     VM
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{vms: map[string]cachedVM{}} }

// FromState builds the scheduler's view from the state store: every host,
// and the pending VMs. cache may be nil. With a cache, and unless full is
// set, a round whose hosts have not changed since the last one returns only
// the VMs that were not pending (or were changed) then: the others did not
// fit on these same hosts, and placements and deletions change the hosts.
func FromState(st *fsm.Store, cache *Cache, full bool) ([]Host, []VM, error) {
	hostIndexes := func() [3]uint64 {
		return [3]uint64{st.Index(resource.KindHost), st.Index(resource.KindNetwork), st.Index(resource.KindVolume)}
	}
	hostIndex := hostIndexes()
	hosts, err := HostsFromState(st)
	if err != nil {
		return nil, nil, err
	}
	pending, err := st.VMsInPhase(nil, resource.PhasePending)
	if err != nil {
		return nil, nil, err
	}
	if cache == nil {
		cache = NewCache()
	}
	// The hosts, the pending VMs and the indexes are separate reads: a
	// host written between them makes this round a whole one (the hosts
	// read may be the new ones), and the next too (the cache keeps the
	// index from before).
	onlyNew := !full && hostIndex == cache.hostIndex && hostIndexes() == hostIndex
	cache.hostIndex = hostIndex
	var seen map[string]bool
	if !onlyNew {
		seen = make(map[string]bool, len(pending))
	}
	var vms []VM // not sized to pending: with no hosts, most are skipped
	seenIndex := uint64(0)
	for _, o := range pending {
		if seen != nil {
			seen[o.Name] = true
		}
		seenIndex = max(seenIndex, o.ModifyIndex)
		if onlyNew && o.ModifyIndex <= cache.seenIndex {
			// Pending and unchanged in the last round, on these same
			// hosts: it was skipped or planned then, and would be skipped
			// now (below) — found without a look at its status or a map
			// lookup, which with no host at all, and thousands pending,
			// was a twentieth of the leader's CPU each round.
			continue
		}
		if len(hosts) == 0 && bytes.Contains(o.Status, noHostsReason) && !namesDevices(o.Spec) {
			// Nowhere to place it, and its status says so already (the
			// state machine writes that reason when a VM is created
			// with no host at all): a round would change nothing, and
			// decoding every such VM cost a write's CPU its tenth. A
			// VM with volumes or NICs is read: a volume bound to a
			// host that is gone, or a full network, is the better
			// reason.
			continue
		}
		if c, ok := cache.vms[o.Name]; ok && c.modify == o.ModifyIndex {
			if !onlyNew {
				vms = append(vms, volumeHost(st, c.vm))
			}
			continue
		}
		spec, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil {
			continue
		}
		vm := VM{Name: o.Name, CreateIndex: o.CreateIndex, Need: resource.Resources{CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB},
			Project: spec.Project, Requirements: spec.Requirements, Rank: spec.Rank, Strategy: spec.Strategy, Affinity: spec.Affinity}
		if vs, err := resource.DecodeStatus[resource.VMStatus](o); err == nil {
			vm.Reason = vs.Reason
		}
		for _, n := range spec.NICs {
			if n.IP == "" {
				vm.Networks = append(vm.Networks, n.Network)
			}
		}
		for _, d := range spec.Disks {
			if d.Volume != "" {
				vm.volumes = append(vm.volumes, d.Volume)
			}
		}
		cache.vms[o.Name] = cachedVM{modify: o.ModifyIndex, vm: vm}
		vms = append(vms, volumeHost(st, vm))
	}
	cache.seenIndex = seenIndex
	// Forget VMs that left pending (only on full rounds: it needs the
	// whole set).
	for name := range cache.vms {
		if seen != nil && !seen[name] {
			delete(cache.vms, name)
		}
	}
	return hosts, vms, nil
}

// noHostsReason is how a VM's status JSON says resource.ReasonNoHosts.
var noHostsReason = func() []byte {
	b, err := json.Marshal(struct {
		Reason string `json:"reason"`
	}{resource.ReasonNoHosts})
	if err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(bytes.TrimPrefix(b, []byte("{")), []byte("}"))
}()

// namesDevices says whether a VM's spec (JSON) may name a volume or a
// network: a spec that has neither key names neither; one that has the
// word anywhere (in a key or a value) is read in full.
func namesDevices(spec []byte) bool {
	return bytes.Contains(spec, []byte(`"volume"`)) || bytes.Contains(spec, []byte(`"network"`))
}

// volumeHost sets vm's Host (or Blocked) from its volumes' hosts, as the
// state has them now.
func volumeHost(st *fsm.Store, vm VM) VM {
	vm.Host, vm.HostVolume, vm.Blocked = "", "", ""
	for _, v := range vm.volumes {
		o, err := st.Get(nil, resource.KindVolume, v)
		if err != nil || o == nil {
			continue
		}
		vs, err := resource.DecodeStatus[resource.VolumeStatus](o)
		if err != nil || vs.Host == "" {
			continue
		}
		switch vm.Host {
		case "":
			vm.Host, vm.HostVolume = vs.Host, v
		case vs.Host:
		default:
			vm.Blocked = fmt.Sprintf("its volumes are on different hosts: %s on %s, %s on %s", vm.HostVolume, vm.Host, v, vs.Host)
			return vm
		}
	}
	return vm
}

// NetworksFromState returns the address room of every network.
func NetworksFromState(st *fsm.Store) (map[string]Network, error) {
	objs, err := st.List(nil, resource.KindNetwork, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Network, len(objs))
	for _, o := range objs {
		ns, err := resource.DecodeStatus[resource.NetworkStatus](o)
		if err != nil {
			continue
		}
		out[o.Name] = Network{Free: ns.Capacity - ns.Allocated, Capacity: ns.Capacity}
	}
	return out, nil
}

// HostsFromState returns every host as the scheduler sees it.
func HostsFromState(st *fsm.Store) ([]Host, error) {
	hostObjs, err := st.List(nil, resource.KindHost, nil)
	if err != nil {
		return nil, err
	}
	hosts := make([]Host, 0, len(hostObjs))
	for _, o := range hostObjs {
		spec, err := resource.DecodeSpec[resource.HostSpec](o)
		if err != nil {
			continue
		}
		spec.Default()
		hs, err := resource.DecodeStatus[resource.HostStatus](o)
		if err != nil {
			continue
		}
		total := resource.Schedulable(spec, hs)
		vms, err := st.VMsOnHost(nil, o.Name)
		if err != nil {
			return nil, err
		}
		// A VM migrating here counts here too (the state machine
		// reserves both hosts while it migrates).
		incoming, err := st.VMsMigratingTo(nil, o.Name)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, Host{
			Name:   o.Name,
			Ready:  hs.State == resource.HostReady && !spec.Unschedulable,
			Total:  total,
			Free:   resource.Resources{CPUs: total.CPUs - hs.Allocated.CPUs, MemoryMiB: total.MemoryMiB - hs.Allocated.MemoryMiB},
			Labels: o.Labels, State: hs.State, Driver: hs.Driver, VMs: len(vms) + len(incoming),
		})
	}
	return hosts, nil
}

// PickHost chooses where to move a VM that needs need, other than from:
// the ready host with the most free memory that fits it (as Plan orders
// hosts). When none fits, reason says why.
func PickHost(hosts []Host, need resource.Resources, from string) (host, reason string) {
	var best *Host
	others := 0
	for i := range hosts {
		h := &hosts[i]
		if h.Name == from || !h.Ready {
			continue
		}
		others++
		if h.Free.CPUs >= need.CPUs && h.Free.MemoryMiB >= need.MemoryMiB && (best == nil || less(*h, *best)) {
			best = h
		}
	}
	if best != nil {
		return best.Name, ""
	}
	if others == 0 {
		return "", "no other host is ready and schedulable"
	}
	return "", fmt.Sprintf("no other ready host has %d CPUs and %s free (%d ready hosts besides %q)",
		need.CPUs, resource.FormatMiB(need.MemoryMiB), others, from)
}

// GroupsFromState returns the placed members of the affinity groups the
// VMs name.
func GroupsFromState(st *fsm.Store, vms []VM) (map[string]*Group, error) {
	out := map[string]*Group{}
	for _, vm := range vms {
		a := vm.Affinity
		if a == nil {
			continue
		}
		if _, ok := out[a.Group]; ok {
			continue
		}
		g := &Group{}
		out[a.Group] = g
		members, err := st.PlacedGroupMembers(a.Group)
		if err != nil {
			return nil, err
		}
		for _, m := range members {
			g.add(m.Host, m.Hard && m.Rule == resource.AffinityAntiAffine)
			if m.Target != "" {
				g.add(m.Target, m.Hard && m.Rule == resource.AffinityAntiAffine)
			}
		}
	}
	return out, nil
}

// ProjectStrategies returns the strategy (spec.strategy) of the projects
// the VMs belong to that set one.
func ProjectStrategies(st *fsm.Store, vms []VM) (map[string]string, error) {
	out := map[string]string{}
	seen := map[string]bool{}
	for _, vm := range vms {
		p := resource.ProjectOf(vm.Project)
		if seen[p] {
			continue
		}
		seen[p] = true
		o, err := st.Get(nil, resource.KindProject, p)
		if err != nil {
			return nil, err
		}
		if o == nil {
			continue
		}
		if ps, err := resource.DecodeSpec[resource.ProjectSpec](o); err == nil && ps.Strategy != "" {
			out[p] = ps.Strategy
		}
	}
	return out, nil
}
