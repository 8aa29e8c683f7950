package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// IPAMLabel labels the VMs of an ipam run with the run id.
const IPAMLabel = "jepsen-ipam"

// The ipam workload's network: a /28 of TEST-NET-1 (RFC 5737, never
// routed), 13 addresses for VMs (16 minus the network, broadcast and
// gateway addresses). Nothing realises it unless the run has workers (sim
// workers only: Setup refuses libvirtd-backed ones, which would make a
// real bridge).
const (
	IPAMNetwork = "jepsen-ipam"
	IPAMCIDR    = "192.0.2.0/28"
	// IPAMMaxPerClient is how many VMs a client aims at, at most: with 5
	// clients, 20 against the network's 13 addresses, so the network is
	// full part of the time and has room the rest of it.
	IPAMMaxPerClient = 4
	// IPAMPeriod is the period of the clients' aim (from 1 VM up to
	// IPAMMaxPerClient and back).
	IPAMPeriod = 10 * time.Second
	// IPAMMaxOpsPerClient bounds the operations of one client in a run
	// (the run's duration bounds them too).
	IPAMMaxOpsPerClient = 50000
)

// ipamMaxFill bounds the fill probe's creates.
const ipamMaxFill = 256

// IPAMFinalTimeout bounds the final reads of the ipam workload.
var IPAMFinalTimeout = 30 * time.Second

// IPAM is the ipam workload: clients create VMs with one NIC on a small
// network (no address given: the state machine allocates one when the VM
// is created, or leaves the NIC without one while the network is full)
// and delete them, while the controller nemeses kill, pause and cut off
// controllers. After the heal, a linearizable read of every VM and of
// the network, then a fill probe (create as many VMs as the network has
// free addresses, and one more). The checker asserts:
//
//   - duplicate-address, duplicate-mac: no (network, ip) and no MAC held
//     by two VMs at once, at the end or during the run (from the
//     addresses the creates returned, held at least from the create's
//     return to the invocation of its delete);
//   - address-out-of-range: every address held is assignable (inside the
//     network, not its network, broadcast, gateway or reserved address);
//   - unaddressed: a create acknowledged without an address happened
//     while the network could have been full (at least capacity VMs
//     could have held an address during it); a VM acknowledged with an
//     address still has it at the end (address-changed otherwise);
//   - leaked-address: the network's status.allocated is the number of
//     addresses its live VMs hold, its status.capacity is the spec's,
//     and every free address can be allocated again (the fill probe);
//   - lost, unexpected: every acknowledged create not deleted since is
//     present, nothing whose delete was acknowledged, whose create failed
//     or that was never attempted is.
type IPAM struct {
	final *ipamFinal
	notes []string
}

// ipamFinal is the state the final reads saw.
type ipamFinal struct {
	// Network is the network as read at the end.
	Network ipamNetwork `json:"network"`
	// VMs are every VM of the cluster with a NIC on the network, and the
	// run's VMs (Ours).
	VMs []ipamVM `json:"vms"`
	// Placed says the run had workers: VMs may have been placed, and a
	// VM created without an address may have got one at its placement
	// (and lost it at its delete) unseen by the history.
	Placed bool `json:"placed,omitempty"`
	// Fill is the fill probe (nil: not run, see FillSkipped).
	Fill        []ipamFill `json:"fill,omitempty"`
	FillSkipped string     `json:"fill_skipped,omitempty"`
}

type ipamNetwork struct {
	Spec   resource.NetworkSpec   `json:"spec"`
	Status resource.NetworkStatus `json:"status"`
}

// ipamVM is a VM as the final read saw it.
type ipamVM struct {
	Name   string         `json:"name"`
	ID     string         `json:"id"`
	Ours   bool           `json:"ours"` // labelled with the run id
	NICs   []resource.NIC `json:"nics,omitempty"`
	Phase  string         `json:"phase,omitempty"`
	Reason string         `json:"reason,omitempty"`
}

// ipamFill is one create of the fill probe.
type ipamFill struct {
	Name string `json:"name"`
	IP   string `json:"ip,omitempty"`
	MAC  string `json:"mac,omitempty"`
}

// Name is "ipam".
func (w *IPAM) Name() string { return "ipam" }

// ipamSpec is the network the workload creates.
func ipamSpec() resource.NetworkSpec {
	s := resource.NetworkSpec{CIDR: IPAMCIDR, Mode: resource.NetworkIsolated}
	s.Default()
	return s
}

// Setup creates the network. It refuses libvirtd-backed workers: they
// would realise the network as a real bridge on this machine.
func (w *IPAM) Setup(ctx context.Context, env *Env) error {
	if len(env.Daemons) > 0 {
		return errors.New("the ipam workload runs without workers or with sim workers: libvirtd-backed workers would make its network a real bridge")
	}
	spec, err := json.Marshal(ipamSpec())
	if err != nil {
		return err
	}
	c := env.AnyClient()
	err = retry(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := c.Create(ctx, resource.KindNetwork, resource.CreateRequest{Name: IPAMNetwork,
			Labels: map[string]string{IPAMLabel: env.RunID}, Spec: spec})
		if errors.Is(err, client.ErrAlreadyExists) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create network %s (%s): %w", IPAMNetwork, IPAMCIDR, err)
	}
	return nil
}

// ipamTarget is how many VMs a client aims at, elapsed into the run.
func ipamTarget(elapsed time.Duration) int {
	x := (1 - math.Cos(2*math.Pi*float64(elapsed)/float64(IPAMPeriod))) / 2
	return 1 + int(math.Round(x*float64(IPAMMaxPerClient-1)))
}

// Run creates VMs named ip-<worker>-<n> and deletes them, keeping about
// ipamTarget of them.
func (w *IPAM) Run(ctx context.Context, env *Env, worker int, process func() int, rng *rand.Rand, h *History) {
	c := env.Client(env.URLs[worker%len(env.URLs)])
	proc := process()
	var mine []string // created (ok or unknown) and not known to be deleted
	// Clients are out of phase, so that the total demand swings less
	// than each client's.
	offset := time.Duration(worker) * IPAMPeriod / 7
	began := time.Now()
	for n := 0; n < IPAMMaxOpsPerClient && env.Wait(ctx); n++ {
		target := ipamTarget(time.Since(began) + offset)
		create := len(mine) == 0 || (len(mine) < IPAMMaxPerClient && (len(mine) < target) == (rng.Float64() < 0.8))
		var st Status
		if create {
			name := fmt.Sprintf("ip-%d-%d", worker, n)
			if st = w.create(ctx, env, c, proc, name, h); st != StatusFail {
				mine = append(mine, name)
			}
		} else {
			k := rng.Intn(len(mine))
			var gone bool
			if st, gone = deleteVM(ctx, env, c, proc, mine[k], h); gone {
				mine = append(mine[:k], mine[k+1:]...)
			}
		}
		proc = afterOp(ctx, st, proc, process)
	}
}

// nicValue is the output of a create: the address and MAC of the VM's
// NIC as the create returned them.
func nicValue(ip, mac string) string { return "ip=" + ip + " mac=" + mac }

func parseNICValue(v string) (ip, mac string) {
	for _, f := range strings.Fields(v) {
		if s, ok := strings.CutPrefix(f, "ip="); ok {
			ip = s
		} else if s, ok := strings.CutPrefix(f, "mac="); ok {
			mac = s
		}
	}
	return ip, mac
}

func ipamVMSpec() json.RawMessage {
	b, err := json.Marshal(resource.VMSpec{CPUs: 1, MemoryMiB: 64, NICs: []resource.NIC{{Network: IPAMNetwork}}})
	if err != nil {
		panic(err)
	}
	return b
}

// nicOf returns the address and MAC of o's NIC on the workload's network.
func nicOf(o *resource.Object) (ip, mac string, err error) {
	var spec resource.VMSpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		return "", "", fmt.Errorf("vm %s: spec: %w", o.Name, err)
	}
	for _, n := range spec.NICs {
		if n.Network == IPAMNetwork {
			return n.IP, n.MAC, nil
		}
	}
	return "", "", fmt.Errorf("vm %s has no NIC on %s", o.Name, IPAMNetwork)
}

func (w *IPAM) create(ctx context.Context, env *Env, c *client.Client, proc int, name string, h *History) Status {
	op := Op{Process: proc, Kind: "create", Key: name, Input: Value{Value: IPAMNetwork}, Invoke: h.Now()}
	octx, cancel := context.WithTimeout(ctx, env.OpTimeout)
	defer cancel()
	obj, err := c.Create(octx, resource.KindVM, resource.CreateRequest{Name: name,
		Labels: map[string]string{IPAMLabel: env.RunID}, Spec: ipamVMSpec()})
	st := writeOutcome(err)
	if err == nil {
		ip, mac, derr := nicOf(obj)
		if derr != nil {
			op.Error = derr.Error()
		}
		op.Output = Value{Value: nicValue(ip, mac)}
	}
	h.Add(op, st, err)
	return st
}

// Final reads, after the heal, every VM and the network with linearizable
// reads (VMs, network, VMs again, until both lists of VMs agree), then
// runs the fill probe when the run has no workers (a worker's placement
// may give an address to a VM that had none while the probe runs).
func (w *IPAM) Final(ctx context.Context, env *Env, h *History) error {
	c := env.AnyClient()
	var final *ipamFinal
	var invoke int64
	err := retry(ctx, IPAMFinalTimeout, func(ctx context.Context) error {
		invoke = h.Now()
		f, err := readIPAM(ctx, c, env.RunID)
		if err != nil {
			return err
		}
		again, err := readIPAM(ctx, c, env.RunID)
		if err != nil {
			return err
		}
		if !sameVMs(f.VMs, again.VMs) {
			return errors.New("the VMs changed between two final reads")
		}
		final = f
		return nil
	})
	if err != nil {
		h.Add(Op{Process: -1, Kind: "list", Invoke: invoke}, StatusFail, err)
		return fmt.Errorf("final read: %w", err)
	}
	h.Add(Op{Process: -1, Kind: "list", Invoke: invoke, Output: Value{Value: fmt.Sprintf("%d VMs, network allocated %d of %d",
		len(final.VMs), final.Network.Status.Allocated, final.Network.Status.Capacity)}}, StatusOK, nil)
	w.final = final
	if env.Cluster != nil && env.Cluster.Workers() > 0 {
		final.Placed = true
		final.FillSkipped = "the run has workers: placement may allocate addresses while the probe runs"
		return nil
	}
	if err := w.fill(ctx, env, c); err != nil {
		return err
	}
	// A write of the run that was still in flight (an unknown create
	// sent to a paused controller) could have landed during the probe:
	// then the probe proves nothing.
	after, err := readIPAM(ctx, c, env.RunID)
	if err != nil {
		return fmt.Errorf("read after the fill probe: %w", err)
	}
	if !sameVMs(ours(final.VMs), ours(after.VMs)) {
		final.Fill, final.FillSkipped = nil, "inconclusive: the run's VMs changed while the probe ran (a write of unknown outcome landed late)"
	}
	return nil
}

// ours is the VMs of the run.
func ours(vms []ipamVM) []ipamVM {
	var out []ipamVM
	for _, v := range vms {
		if v.Ours {
			out = append(out, v)
		}
	}
	return out
}

// sameVMs says two reads saw the same VMs with the same NICs.
func sameVMs(a, b []ipamVM) bool {
	return slices.EqualFunc(a, b, func(a, b ipamVM) bool {
		return a.Name == b.Name && a.ID == b.ID && slices.Equal(a.NICs, b.NICs)
	})
}

// fill creates, after the final read, one VM more than the network has
// free addresses: each but the last must get a free address, the last
// none (the network is then full). The probe is not part of the history
// (its writes would count as the first acknowledged writes after the last
// heal): ipam-final.json has it.
func (w *IPAM) fill(ctx context.Context, env *Env, c *client.Client) error {
	spec := w.final.Network.Spec
	free := spec.Capacity() - int64(len(assignableHeld(spec, heldAddrs(w.final.VMs))))
	if free < 0 {
		free = 0
	}
	vmSpec := ipamVMSpec()
	w.final.Fill = []ipamFill{}
	for i := int64(0); i <= free && i <= ipamMaxFill; i++ {
		name := fmt.Sprintf("ip-fill-%d", i)
		var obj *resource.Object
		err := retry(ctx, IPAMFinalTimeout, func(ctx context.Context) error {
			var err error
			obj, err = c.Create(ctx, resource.KindVM, resource.CreateRequest{Name: name, Labels: map[string]string{IPAMLabel + "-fill": env.RunID}, Spec: vmSpec})
			if errors.Is(err, client.ErrAlreadyExists) { // our own retried create
				obj, _, err = c.Get(ctx, resource.KindVM, name, nil)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("fill probe: create %s: %w", name, err)
		}
		ip, mac, err := nicOf(obj)
		if err != nil {
			return fmt.Errorf("fill probe: %w", err)
		}
		w.final.Fill = append(w.final.Fill, ipamFill{Name: name, IP: ip, MAC: mac})
	}
	return nil
}

// readIPAM lists every VM and reads the network, linearizably.
func readIPAM(ctx context.Context, c *client.Client, runID string) (*ipamFinal, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	objs, _, err := c.List(rctx, resource.KindVM, nil)
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	f := &ipamFinal{VMs: []ipamVM{}}
	for _, o := range objs {
		vm, err := client.NewVM(o)
		if err != nil {
			return nil, err
		}
		v := ipamVM{Name: o.Name, ID: o.ID, Ours: o.Labels[IPAMLabel] == runID, Phase: vm.Status.Phase, Reason: vm.Status.Reason}
		for _, n := range vm.Spec.NICs {
			if n.Network == IPAMNetwork {
				v.NICs = append(v.NICs, n)
			}
		}
		if v.Ours || len(v.NICs) > 0 {
			f.VMs = append(f.VMs, v)
		}
	}
	n, _, err := c.Get(rctx, resource.KindNetwork, IPAMNetwork, nil)
	if err != nil {
		return nil, fmt.Errorf("get network %s: %w", IPAMNetwork, err)
	}
	if err := json.Unmarshal(n.Spec, &f.Network.Spec); err != nil {
		return nil, fmt.Errorf("network %s: spec: %w", IPAMNetwork, err)
	}
	if len(n.Status) > 0 {
		if err := json.Unmarshal(n.Status, &f.Network.Status); err != nil {
			return nil, fmt.Errorf("network %s: status: %w", IPAMNetwork, err)
		}
	}
	return f, nil
}

// heldAddrs maps each address held on the network to the VMs that hold
// it, in VM order.
func heldAddrs(vms []ipamVM) map[string][]string {
	held := map[string][]string{}
	for _, v := range vms {
		for _, n := range v.NICs {
			if n.IP != "" {
				held[n.IP] = append(held[n.IP], v.Name)
			}
		}
	}
	return held
}

// assignableHeld is the held addresses that the network may hand out
// (the others take nothing from its capacity).
func assignableHeld(spec resource.NetworkSpec, held map[string][]string) []string {
	var out []string
	for ip := range held {
		if a, err := netip.ParseAddr(ip); err == nil && spec.Assignable(a) {
			out = append(out, ip)
		}
	}
	return out
}

// ipamLife is what the history says of one VM name.
type ipamLife struct {
	create  Op
	created bool // a create of it is in the history
	deletes []Op
	ip, mac string // as the acknowledged create returned them
}

// goneAt is the earliest time the VM is certainly gone: the return of
// its first acknowledged delete (MaxInt64: never).
func (l *ipamLife) goneAt() int64 {
	t := int64(math.MaxInt64)
	for _, d := range l.deletes {
		if d.Status == StatusOK && d.Return < t {
			t = d.Return
		}
	}
	return t
}

// heldUntil is until when the VM certainly held what its create returned:
// the invocation of its first delete that may have taken effect.
func (l *ipamLife) heldUntil() int64 {
	t := int64(math.MaxInt64)
	for _, d := range l.deletes {
		if d.Status != StatusFail && d.Invoke < t {
			t = d.Invoke
		}
	}
	return t
}

// mayBeDeleted says a delete of it may have taken effect.
func (l *ipamLife) mayBeDeleted() bool {
	for _, d := range l.deletes {
		if d.Status != StatusFail {
			return true
		}
	}
	return false
}

// Check checks the history against the final reads.
func (w *IPAM) Check(ops []Op, _ []FaultWindow, out string) Check {
	var chk Check
	f := w.final
	if f == nil {
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "no-final-read", Detail: "the final read did not happen: nothing can be checked"})
		return chk
	}
	if out != "" {
		if err := writeJSON(filepath.Join(out, "ipam-final.json"), f); err != nil {
			chk.Notes = append(chk.Notes, "ipam-final.json: "+err.Error())
		}
	}
	spec := f.Network.Spec
	capacity := spec.Capacity()

	lives := map[string]*ipamLife{}
	life := func(name string) *ipamLife {
		l := lives[name]
		if l == nil {
			l = &ipamLife{}
			lives[name] = l
		}
		return l
	}
	for _, op := range ops {
		switch op.Kind {
		case "create":
			l := life(op.Key)
			l.create, l.created = op, true
			if op.Status == StatusOK {
				l.ip, l.mac = parseNICValue(op.Output.Value)
			}
		case "delete":
			l := life(op.Key)
			l.deletes = append(l.deletes, op)
		}
	}
	createsOf := func(names []string) []Op {
		var out []Op
		for _, n := range names {
			if l := lives[n]; l != nil && l.created {
				out = append(out, l.create)
			}
		}
		sortOps(out)
		return out
	}
	final := map[string]ipamVM{}
	for _, v := range f.VMs {
		final[v.Name] = v
	}
	finalIP := func(name string) string {
		for _, n := range final[name].NICs {
			if n.IP != "" {
				return n.IP
			}
		}
		return ""
	}

	// (a) One holder per address and per MAC: at the end, and during the
	// run from what the acknowledged creates returned.
	type dupKey struct{ typ, value string }
	dups := map[dupKey]map[string]bool{}
	addDup := func(typ, value string, names ...string) {
		k := dupKey{typ, value}
		if dups[k] == nil {
			dups[k] = map[string]bool{}
		}
		for _, n := range names {
			dups[k][n] = true
		}
	}
	held := heldAddrs(f.VMs)
	macs := map[string][]string{}
	var outOfRange []string
	for _, v := range f.VMs {
		for _, n := range v.NICs {
			if n.MAC != "" {
				macs[strings.ToLower(n.MAC)] = append(macs[strings.ToLower(n.MAC)], v.Name)
			}
			if n.IP == "" {
				continue
			}
			if a, err := netip.ParseAddr(n.IP); err != nil || !spec.Assignable(a) {
				outOfRange = append(outOfRange, fmt.Sprintf("%s holds %s", v.Name, n.IP))
			}
		}
	}
	for ip, names := range held {
		if len(names) > 1 {
			addDup("duplicate-address", ip, names...)
		}
	}
	for mac, names := range macs {
		if len(names) > 1 {
			addDup("duplicate-mac", mac, names...)
		}
	}
	type hold struct {
		name     string
		from, to int64
	}
	byIP, byMAC := map[string][]hold{}, map[string][]hold{}
	for name, l := range lives {
		if !l.created || l.create.Status != StatusOK {
			continue
		}
		hd := hold{name: name, from: l.create.Return, to: l.heldUntil()}
		if l.ip != "" {
			byIP[l.ip] = append(byIP[l.ip], hd)
			if a, err := netip.ParseAddr(l.ip); err != nil || !spec.Assignable(a) {
				outOfRange = append(outOfRange, fmt.Sprintf("the create of %s returned %s", name, l.ip))
			}
		}
		if l.mac != "" {
			byMAC[strings.ToLower(l.mac)] = append(byMAC[strings.ToLower(l.mac)], hd)
		}
	}
	overlaps := func(typ string, by map[string][]hold) {
		for v, hs := range by {
			sort.Slice(hs, func(i, j int) bool { return hs[i].from < hs[j].from })
			for i := range hs {
				for j := i + 1; j < len(hs) && hs[j].from < hs[i].to; j++ {
					addDup(typ, v, hs[i].name, hs[j].name)
				}
			}
		}
	}
	overlaps("duplicate-address", byIP)
	overlaps("duplicate-mac", byMAC)
	dupKeys := make([]dupKey, 0, len(dups))
	for k := range dups {
		dupKeys = append(dupKeys, k)
	}
	sort.Slice(dupKeys, func(i, j int) bool {
		if dupKeys[i].typ != dupKeys[j].typ {
			return dupKeys[i].typ < dupKeys[j].typ
		}
		return dupKeys[i].value < dupKeys[j].value
	})
	for _, k := range dupKeys {
		names := make([]string, 0, len(dups[k]))
		for n := range dups[k] {
			names = append(names, n)
		}
		sort.Strings(names)
		what := "address " + k.value + " on network " + IPAMNetwork
		if k.typ == "duplicate-mac" {
			what = "MAC " + k.value
		}
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: k.typ, Key: k.value,
			Detail: fmt.Sprintf("%s was held by %d VMs at once (%s): at the end, or from the return of their creates to the invocation of their deletes",
				what, len(names), strings.Join(names, ", ")),
			Ops: capOps(createsOf(names))})
	}
	if len(outOfRange) > 0 {
		sort.Strings(outOfRange)
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "address-out-of-range",
			Detail: fmt.Sprintf("%d addresses are not assignable on %s (%s, gateway %s): %s", len(outOfRange), IPAMNetwork, spec.CIDR, spec.Gateway,
				some(outOfRange, "; "))})
	}

	// (b) No address only while the network was full; an address, once
	// acknowledged, kept.
	var unaddressed, changed []string
	var unaddressedOps, changedOps []Op
	fullCreates := 0
	for name, l := range lives {
		if !l.created || l.create.Status != StatusOK {
			continue
		}
		if l.ip == "" {
			fullCreates++
			inv, ret := l.create.Invoke, l.create.Return
			could := 0
			for other, m := range lives {
				if other == name || !m.created || m.create.Status == StatusFail {
					continue
				}
				if m.create.Status == StatusOK && m.ip == "" && finalIP(other) == "" && !f.Placed {
					// Created without an address and never placed
					// (no workers): it never held one.
					continue
				}
				if m.create.Invoke < ret && m.goneAt() > inv {
					could++
				}
			}
			if int64(could) < capacity {
				unaddressed = append(unaddressed, fmt.Sprintf("%s (at most %d of %d addresses can have been held during its create)", name, could, capacity))
				unaddressedOps = append(unaddressedOps, l.create)
			}
			continue
		}
		if v, ok := final[name]; ok && !l.mayBeDeleted() {
			if got := finalIP(name); got != l.ip {
				changed = append(changed, fmt.Sprintf("%s: created with %s, holds %q at the end (%d NICs on the network)", name, l.ip, got, len(v.NICs)))
				changedOps = append(changedOps, l.create)
			}
		}
	}
	if len(unaddressed) > 0 {
		sort.Strings(unaddressed)
		sortOps(unaddressedOps)
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "unaddressed",
			Detail: fmt.Sprintf("%d creates were acknowledged without an address while the network cannot have been full: %s", len(unaddressed), some(unaddressed, "; ")),
			Ops:    capOps(unaddressedOps)})
	}
	if len(changed) > 0 {
		sort.Strings(changed)
		sortOps(changedOps)
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "address-changed",
			Detail: fmt.Sprintf("%d VMs do not hold at the end the address their acknowledged create returned: %s", len(changed), some(changed, "; ")),
			Ops:    capOps(changedOps)})
	}

	// (c) No leak: the network counts exactly the addresses held, and
	// every free address can be allocated again.
	st := f.Network.Status
	if st.Allocated != int64(len(held)) {
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "leaked-address", Key: IPAMNetwork,
			Detail: fmt.Sprintf("network %s says %d addresses are allocated, but its live VMs hold %d", IPAMNetwork, st.Allocated, len(held))})
	}
	if st.Capacity != capacity {
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "leaked-address", Key: IPAMNetwork,
			Detail: fmt.Sprintf("network %s says its capacity is %d; its spec (%s, gateway %s) gives %d", IPAMNetwork, st.Capacity, spec.CIDR, spec.Gateway, capacity)})
	}
	if f.Fill != nil {
		free := capacity - int64(len(assignableHeld(spec, held)))
		var bad []string
		seen := map[string]string{}
		for i, fl := range f.Fill {
			switch {
			case int64(i) < free && fl.IP == "":
				bad = append(bad, fmt.Sprintf("%s got no address with %d of %d free before the probe", fl.Name, free-int64(i), capacity))
			case int64(i) >= free && fl.IP != "":
				bad = append(bad, fmt.Sprintf("%s got %s on a full network (%d held before the probe, capacity %d)", fl.Name, fl.IP, len(held), capacity))
			}
			if fl.IP == "" {
				continue
			}
			if hs := held[fl.IP]; len(hs) > 0 {
				bad = append(bad, fmt.Sprintf("%s got %s, held by %s", fl.Name, fl.IP, strings.Join(hs, ", ")))
			}
			if o, ok := seen[fl.IP]; ok {
				bad = append(bad, fmt.Sprintf("%s got %s, as %s did", fl.Name, fl.IP, o))
			}
			seen[fl.IP] = fl.Name
			if a, err := netip.ParseAddr(fl.IP); err != nil || !spec.Assignable(a) {
				bad = append(bad, fmt.Sprintf("%s got %s, not assignable", fl.Name, fl.IP))
			}
		}
		if int64(len(f.Fill)) != max(free, 0)+1 {
			bad = append(bad, fmt.Sprintf("the probe made %d creates, want %d", len(f.Fill), max(free, 0)+1))
		}
		if len(bad) > 0 {
			chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "leaked-address", Key: IPAMNetwork,
				Detail: "the fill probe after the final read: " + some(bad, "; ")})
		} else {
			chk.Notes = append(chk.Notes, fmt.Sprintf("fill probe: the %d free addresses of %d allocated again, then the network was full", max(free, 0), capacity))
		}
	} else if f.FillSkipped != "" {
		chk.Notes = append(chk.Notes, "fill probe skipped: "+f.FillSkipped)
	}

	// (d) Acknowledged creates not deleted since are there; acknowledged
	// deletes, failed creates and names never attempted are not.
	var lost, unexpectedOps []Op
	var lostNames, unexpected []string
	for name, l := range lives {
		_, present := final[name]
		if l.created && l.create.Status == StatusOK && !l.mayBeDeleted() && !present {
			lost = append(lost, l.create)
			lostNames = append(lostNames, name)
		}
		if !present {
			continue
		}
		switch {
		case !l.created:
			unexpected = append(unexpected, name+" (never created)")
		case l.create.Status == StatusFail:
			unexpected = append(unexpected, name+" (its create failed)")
			unexpectedOps = append(unexpectedOps, l.create)
		case l.goneAt() != math.MaxInt64:
			unexpected = append(unexpected, name+" (its delete was acknowledged)")
			unexpectedOps = append(unexpectedOps, l.create)
		}
	}
	for _, v := range f.VMs {
		if _, ok := lives[v.Name]; !ok && v.Ours {
			unexpected = append(unexpected, v.Name+" (never attempted)")
		}
	}
	if len(lost) > 0 {
		sortOps(lost)
		sort.Strings(lostNames)
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "lost",
			Detail: fmt.Sprintf("%d acknowledged creates, never deleted, are missing from the final read: %s", len(lost), some(lostNames, ", ")), Ops: capOps(lost)})
	}
	if len(unexpected) > 0 {
		sort.Strings(unexpected)
		sortOps(unexpectedOps)
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "unexpected",
			Detail: fmt.Sprintf("%d VMs are present that should not be: %s", len(unexpected), some(unexpected, ", ")), Ops: capOps(unexpectedOps)})
	}

	var ours, addressed int
	for _, v := range f.VMs {
		if v.Ours {
			ours++
		}
		for _, n := range v.NICs {
			if n.IP != "" {
				addressed++
			}
		}
	}
	chk.Notes = append(chk.Notes,
		fmt.Sprintf("network %s %s: capacity %d, status allocated %d of %d; final read: %d VMs of the run, %d NICs with an address",
			IPAMNetwork, spec.CIDR, capacity, st.Allocated, st.Capacity, ours, addressed),
		fmt.Sprintf("creates acknowledged without an address: %d", fullCreates))
	chk.Notes = append(chk.Notes, w.notes...)
	chk.Valid = len(chk.Anomalies) == 0
	return chk
}

// some joins the first ten items, and says how many more there are.
func some(items []string, sep string) string {
	const n = 10
	if len(items) <= n {
		return strings.Join(items, sep)
	}
	return strings.Join(items[:n], sep) + fmt.Sprintf("%s… and %d more", sep, len(items)-n)
}

// capOps keeps the first 200 operations of an anomaly (results.json).
func capOps(ops []Op) []Op {
	if len(ops) > 200 {
		return ops[:200]
	}
	return ops
}
