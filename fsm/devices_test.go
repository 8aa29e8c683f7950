package fsm_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Tests of networks, images, volumes and VM devices (issue 13).

const (
	network = resource.KindNetwork
	image   = resource.KindImage
	volume  = resource.KindVolume
)

// dev is an FSM with an index counter, for the device tests.
type dev struct {
	t *testing.T
	f *fsm.FSM
	i uint64
}

func newDev(t *testing.T) *dev {
	d := &dev{t: t, f: fsm.TestFSM(t)}
	return d
}

func (d *dev) next() uint64 { d.i++; return d.i }

func (d *dev) apply(typ fsm.MessageType, req any) *fsm.Result {
	d.t.Helper()
	return fsm.TestApply(d.t, d.f, d.next(), typ, req)
}

func (d *dev) must(typ fsm.MessageType, req any) *fsm.Result {
	d.t.Helper()
	res := d.apply(typ, req)
	if res.Err != nil {
		d.t.Fatalf("apply %s at %d: %v", typ, d.i, res.Err)
	}
	return res
}

func (d *dev) createReq(kind resource.Kind, name, spec string) *fsm.CreateRequest {
	return &fsm.CreateRequest{Time: fsm.TestTime, Kind: kind, Name: name, ID: fsm.TestID(d.i + 1), Spec: raw(spec)}
}

func (d *dev) create(kind resource.Kind, name, spec string) *fsm.Result {
	d.t.Helper()
	return d.apply(fsm.CreateRequestType, d.createReq(kind, name, spec))
}

func (d *dev) mustCreate(kind resource.Kind, name, spec string) *resource.Object {
	d.t.Helper()
	return d.must(fsm.CreateRequestType, d.createReq(kind, name, spec)).Objects[0]
}

func (d *dev) update(kind resource.Kind, name, spec string) *fsm.Result {
	d.t.Helper()
	return d.apply(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: kind, Name: name, Spec: raw(spec)})
}

func (d *dev) del(kind resource.Kind, name string) *fsm.Result {
	d.t.Helper()
	return d.apply(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: kind, Name: name})
}

func (d *dev) host(name string) {
	d.t.Helper()
	hostState(d.t, d.f, d.next(), name, resource.HostReady, 64, 65536)
}

func (d *dev) nics(name string) []resource.NIC {
	d.t.Helper()
	return vmSpecOf(d.t, d.f, name).NICs
}

func (d *dev) netStatus(name string) resource.NetworkStatus {
	d.t.Helper()
	st, err := resource.DecodeStatus[resource.NetworkStatus](mustGet(d.t, d.f, network, name))
	if err != nil {
		d.t.Fatal(err)
	}
	return *st
}

func (d *dev) volStatus(name string) resource.VolumeStatus {
	d.t.Helper()
	st, err := resource.DecodeStatus[resource.VolumeStatus](mustGet(d.t, d.f, volume, name))
	if err != nil {
		d.t.Fatal(err)
	}
	return *st
}

func wantInErr(t *testing.T, res *fsm.Result, want error, contains ...string) {
	t.Helper()
	if !errors.Is(res.Err, want) {
		t.Fatalf("error = %v, want %v", res.Err, want)
	}
	for _, c := range contains {
		if !strings.Contains(res.Err.Error(), c) {
			t.Errorf("error %q does not say %q", res.Err, c)
		}
	}
}

func wantFieldErr(t *testing.T, res *fsm.Result, field string, contains ...string) {
	t.Helper()
	if got := fieldOf(res.Err); got != field {
		t.Fatalf("error = %v (field %q), want a field error on %s", res.Err, got, field)
	}
	for _, c := range contains {
		if !strings.Contains(res.Err.Error(), c) {
			t.Errorf("error %q does not say %q", res.Err, c)
		}
	}
}

// checkDevices fails t unless no two VMs hold the same (network, ip) or
// the same MAC, every network's status.allocated is what its VMs hold and
// every volume's attached_to is the VM whose spec names it.
func checkDevices(t fsm.TB, f *fsm.FSM) {
	vms, err := f.State().List(nil, vm, nil)
	if err != nil {
		t.Fatalf("%v", err)
	}
	addrs, macs, held, attached := map[string]string{}, map[string]string{}, map[string]int64{}, map[string]string{}
	for _, o := range vms {
		s, err := resource.DecodeSpec[resource.VMSpec](o)
		if err != nil {
			t.Fatalf("%v", err)
		}
		for _, n := range s.NICs {
			if n.IP != "" {
				k := n.Network + " " + n.IP
				if other, dup := addrs[k]; dup {
					t.Fatalf("address %s held by vms %s and %s", k, other, o.Name)
				}
				addrs[k] = o.Name
				held[n.Network]++
			}
			if n.MAC == "" {
				t.Fatalf("vm %s has a nic without a MAC", o.Name)
			}
			if other, dup := macs[n.MAC]; dup {
				t.Fatalf("mac %s held by vms %s and %s", n.MAC, other, o.Name)
			}
			macs[n.MAC] = o.Name
		}
		for _, dk := range s.Disks {
			attached[dk.Volume] = o.Name
		}
	}
	nets, _ := f.State().List(nil, network, nil)
	for _, o := range nets {
		st, _ := resource.DecodeStatus[resource.NetworkStatus](o)
		sp, _ := resource.DecodeSpec[resource.NetworkSpec](o)
		if st.Allocated != held[o.Name] || st.Capacity != sp.Capacity() {
			t.Fatalf("network %s status %+v; its VMs hold %d, capacity %d", o.Name, st, held[o.Name], sp.Capacity())
		}
	}
	vols, _ := f.State().List(nil, volume, nil)
	for _, o := range vols {
		st, _ := resource.DecodeStatus[resource.VolumeStatus](o)
		if st.AttachedTo != attached[o.Name] {
			t.Fatalf("volume %s attached_to %q, want %q", o.Name, st.AttachedTo, attached[o.Name])
		}
	}
}

const net29 = `{"cidr":"10.0.0.0/29"}` // gateway .1; .2-.6 for VMs: capacity 5

func vmNIC(network string, extra string) string {
	return `{"cpus":1,"memory_mib":64,"nics":[{"network":"` + network + `"` + extra + `}]}`
}

func TestNetworkCreate(t *testing.T) {
	d := newDev(t)
	o := d.mustCreate(network, "n1", `{"cidr":"10.0.0.0/29","reserved":[{"from":"10.0.0.5"}]}`)
	s, _ := resource.DecodeSpec[resource.NetworkSpec](o)
	if s.CIDR != "10.0.0.0/29" || s.Gateway != "10.0.0.1" || s.Mode != "nat" || !s.DHCPOn() {
		t.Errorf("spec %s: want the gateway, mode and dhcp defaulted", o.Spec)
	}
	if st := d.netStatus("n1"); st.Capacity != 4 || st.Allocated != 0 {
		t.Errorf("status %+v, want capacity 4 (6 hosts - gateway - 1 reserved)", st)
	}
	wantFieldErr(t, d.create(network, "n2", `{"cidr":"10.0.0.4/30","mode":"isolated"}`), "spec.cidr", "network n1")
	// Bridge networks overlap only on the same bridge.
	d.mustCreate(network, "b1", `{"cidr":"10.0.0.0/24","mode":"bridge","bridge":"br0"}`)
	d.mustCreate(network, "b2", `{"cidr":"10.0.0.0/24","mode":"bridge","bridge":"br1"}`)
	wantFieldErr(t, d.create(network, "b3", `{"cidr":"10.0.0.128/25","mode":"bridge","bridge":"br1"}`), "spec.cidr", "b2")
	wantFieldErr(t, d.create(network, "bad", `{"cidr":"10.0.0.0/24","gateway":"10.1.0.1"}`), "spec.gateway")
	// An update into an overlap is refused too.
	d.mustCreate(network, "n3", `{"cidr":"10.9.0.0/24"}`)
	wantFieldErr(t, d.update(network, "n3", `{"cidr":"10.0.0.0/24"}`), "spec.cidr", "n1")
}

func TestIPAMDynamic(t *testing.T) {
	d := newDev(t)
	d.mustCreate(network, "n1", net29)
	var got []string
	for i := range 5 {
		o := d.mustCreate(vm, fmt.Sprintf("v%d", i), vmNIC("n1", ""))
		s, _ := resource.DecodeSpec[resource.VMSpec](o)
		got = append(got, s.NICs[0].IP)
		if err := resource.ValidateMAC(s.NICs[0].MAC); err != nil || !strings.HasPrefix(s.NICs[0].MAC, "52:54:00:") {
			t.Errorf("vm v%d mac %q: %v", i, s.NICs[0].MAC, err)
		}
	}
	if strings.Join(got, " ") != "10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6" {
		t.Errorf("addresses %v", got)
	}
	if st := d.netStatus("n1"); st.Allocated != 5 || st.Capacity != 5 || st.Next != "10.0.0.7" {
		t.Errorf("network status %+v", st)
	}
	checkDevices(t, d.f)
	// Full: created, pending, no address, a reason naming the network.
	d.mustCreate(vm, "full", vmNIC("n1", ""))
	if n := d.nics("full"); n[0].IP != "" || n[0].MAC == "" {
		t.Errorf("vm on a full network: nics %+v, want a MAC and no address", n)
	}
	if st := vmStatus(t, d.f, "full"); st.Phase != resource.PhasePending || st.Reason != "network n1 is full: 5 of 5 addresses in use" {
		t.Errorf("status %+v", st)
	}
	// Placing it fails while the network is full.
	d.host("h1")
	res := d.must(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "full", Host: "h1"}}})
	if !errors.Is(res.ItemErrors[0], fsm.ErrNoCapacity) || !strings.Contains(res.ItemErrors[0].Error(), "network n1 is full") {
		t.Fatalf("place on a full network: %v", res.ItemErrors[0])
	}
	// A delete releases an address; next fit wraps around to it.
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: vm, Name: "v2"})
	if st := d.netStatus("n1"); st.Allocated != 4 {
		t.Errorf("after a delete: %+v", st)
	}
	res = d.must(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "full", Host: "h1"}}})
	if res.ItemErrors[0] != nil {
		t.Fatal(res.ItemErrors[0])
	}
	if n := d.nics("full"); n[0].IP != "10.0.0.4" {
		t.Errorf("placed VM got %+v, want the released 10.0.0.4", n)
	}
	if st := vmStatus(t, d.f, "full"); st.Phase != resource.PhaseScheduled {
		t.Errorf("status %+v", st)
	}
	checkDevices(t, d.f)
}

func TestIPAMStatic(t *testing.T) {
	d := newDev(t)
	d.mustCreate(network, "n1", `{"cidr":"10.0.0.0/24","reserved":[{"from":"10.0.0.100","to":"10.0.0.199"}]}`)
	d.mustCreate(vm, "a", vmNIC("n1", `,"ip":"10.0.0.5","mac":"02:00:00:00:00:01"`))
	if n := d.nics("a"); n[0].IP != "10.0.0.5" || n[0].MAC != "02:00:00:00:00:01" {
		t.Errorf("nics %+v", n)
	}
	wantInErr(t, d.create(vm, "b", vmNIC("n1", `,"ip":"10.0.0.5"`)), fsm.ErrInUse, "address 10.0.0.5 on network n1 is held by vm a")
	wantInErr(t, d.create(vm, "b", vmNIC("n1", `,"mac":"02:00:00:00:00:01"`)), fsm.ErrInUse, "mac 02:00:00:00:00:01 is held by vm a")
	wantFieldErr(t, d.create(vm, "b", vmNIC("n1", `,"ip":"10.1.0.5"`)), "spec.nics[0].ip", "outside network n1")
	wantFieldErr(t, d.create(vm, "b", vmNIC("n1", `,"ip":"10.0.0.255"`)), "spec.nics[0].ip")
	wantInErr(t, d.create(vm, "b", vmNIC("n1", `,"ip":"10.0.0.1"`)), fsm.ErrInUse, "gateway")
	wantInErr(t, d.create(vm, "b", vmNIC("n1", `,"ip":"10.0.0.150"`)), fsm.ErrInUse, "reserved")
	wantFieldErr(t, d.create(vm, "b", vmNIC("nx", "")), "spec.nics[0].network", `no network "nx"`)
	wantFieldErr(t, d.create(vm, "b", `{"cpus":1,"memory_mib":64,"nics":[{"network":"n1","ip":"10.0.0.9"},{"network":"n1","ip":"10.0.0.9"}]}`), "spec.nics[1].ip")
	// Dynamic allocation skips static and reserved addresses.
	d.mustCreate(network, "n2", `{"cidr":"10.2.0.0/28","reserved":[{"from":"10.2.0.2","to":"10.2.0.4"}]}`)
	d.mustCreate(vm, "s", vmNIC("n2", `,"ip":"10.2.0.5"`))
	d.mustCreate(vm, "dyn", vmNIC("n2", ""))
	if n := d.nics("dyn"); n[0].IP != "10.2.0.6" {
		t.Errorf("dynamic address %+v, want 10.2.0.6 (past reserved .2-.4 and static .5)", n)
	}
	checkDevices(t, d.f)
}

// TestIPAMSameEntryBatch: two creates asking for the same static address,
// applied in one ApplyBatch (as raft hands them), and two in one atomic
// batch: exactly one holds it.
func TestIPAMSameEntryBatch(t *testing.T) {
	d := newDev(t)
	d.mustCreate(network, "n1", net29)
	l1 := fsm.TestLog(t, 10, fsm.CreateRequestType, createReq(vm, "a", fsm.TestID(10), nil, vmNIC("n1", `,"ip":"10.0.0.3"`)))
	l2 := fsm.TestLog(t, 11, fsm.CreateRequestType, createReq(vm, "b", fsm.TestID(11), nil, vmNIC("n1", `,"ip":"10.0.0.3"`)))
	l3 := fsm.TestLog(t, 12, fsm.CreateRequestType, createReq(vm, "c", fsm.TestID(12), nil, vmNIC("n1", "")))
	out := d.f.ApplyBatch([]*raft.Log{l1, l2, l3})
	if r := out[0].(*fsm.Result); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := out[1].(*fsm.Result); !errors.Is(r.Err, fsm.ErrInUse) {
		t.Fatalf("second create of the same address: %v", r.Err)
	}
	if r := out[2].(*fsm.Result); r.Err != nil {
		t.Fatal(r.Err)
	}
	if n := d.nics("c"); n[0].IP != "10.0.0.2" {
		t.Errorf("dynamic after static in one batch: %+v", n)
	}
	d.i = 20
	batch := batchOf(t,
		fsm.CreateRequestType, createReq(vm, "x", fsm.TestID(21), nil, vmNIC("n1", `,"ip":"10.0.0.5"`)),
		fsm.CreateRequestType, createReq(vm, "y", fsm.TestID(22), nil, vmNIC("n1", `,"ip":"10.0.0.5"`)))
	wantInErr(t, d.apply(fsm.BatchRequestType, batch), fsm.ErrInUse)
	mustAbsent(t, d.f, vm, "x")
	// Dynamic creates in one atomic batch never share an address.
	batch = batchOf(t,
		fsm.CreateRequestType, createReq(vm, "x", fsm.TestID(23), nil, vmNIC("n1", "")),
		fsm.CreateRequestType, createReq(vm, "y", fsm.TestID(24), nil, vmNIC("n1", "")))
	d.must(fsm.BatchRequestType, batch)
	checkDevices(t, d.f)
	if st := d.netStatus("n1"); st.Allocated != 4 {
		t.Errorf("status %+v", st)
	}
}

// TestIPAMManyNoDuplicates: many creates and deletes on a small network
// never hand one address to two VMs, and a snapshot keeps the allocations
// and next-fit state: the restored FSM allocates as the original does.
func TestIPAMManyNoDuplicates(t *testing.T) {
	d := newDev(t)
	d.mustCreate(network, "n1", `{"cidr":"10.0.0.0/26"}`) // 61 addresses
	live := []string{}
	for i := range 300 {
		name := fmt.Sprintf("v%d", i)
		d.mustCreate(vm, name, vmNIC("n1", ""))
		live = append(live, name)
		if i%3 == 2 {
			victim := live[(i*7)%len(live)]
			d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: vm, Name: victim})
			for j, n := range live {
				if n == victim {
					live = append(live[:j], live[j+1:]...)
					break
				}
			}
		}
	}
	checkDevices(t, d.f)
	r := fsm.TestSnapshotRestore(t, d.f)
	checkDevices(t, r)
	if a, b := d.f.State().Digest(), r.State().Digest(); a != b {
		t.Fatalf("restored digest %s, want %s", b, a)
	}
	req := createReq(vm, "after", fsm.TestID(999), nil, vmNIC("n1", ""))
	a := fsm.TestApply(t, d.f, 1000, fsm.CreateRequestType, req)
	b := fsm.TestApply(t, r, 1000, fsm.CreateRequestType, req)
	if (a.Err == nil) != (b.Err == nil) || (a.Err == nil && string(a.Objects[0].Spec) != string(b.Objects[0].Spec)) {
		t.Fatalf("after restore: %v %v", a, b)
	}
	if d.f.State().Digest() != r.State().Digest() {
		t.Fatal("the restored FSM allocated differently")
	}
	checkDevices(t, r)
}

func TestDeriveMACDeterministic(t *testing.T) {
	var macs []string
	for range 2 {
		d := newDev(t)
		d.mustCreate(network, "n1", net29)
		o := d.mustCreate(vm, "a", `{"cpus":1,"memory_mib":64,"nics":[{"network":"n1"},{"network":"n1"}]}`)
		s, _ := resource.DecodeSpec[resource.VMSpec](o)
		if s.NICs[0].MAC == s.NICs[1].MAC {
			t.Fatalf("two nics share a MAC: %+v", s.NICs)
		}
		macs = append(macs, s.NICs[0].MAC+s.NICs[1].MAC)
	}
	if macs[0] != macs[1] {
		t.Errorf("MACs differ between replicas: %v", macs)
	}
}

func TestVMDeviceUpdate(t *testing.T) {
	d := newDev(t)
	d.mustCreate(network, "n1", net29)
	d.mustCreate(network, "n2", `{"cidr":"10.1.0.0/24"}`)
	d.mustCreate(vm, "a", vmNIC("n1", ""))
	before := d.nics("a")
	// The same nic without an address keeps its address and MAC.
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: "a", Spec: raw(`{"cpus":2,"memory_mib":64,"nics":[{"network":"n1"}]}`)})
	if got := d.nics("a"); got[0] != before[0] {
		t.Errorf("update kept %+v, want %+v", got, before)
	}
	// Pending: nics may change; the old address is released.
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: "a", Spec: raw(vmNIC("n2", ""))})
	if st := d.netStatus("n1"); st.Allocated != 0 {
		t.Errorf("n1 after the nic moved: %+v", st)
	}
	if st := d.netStatus("n2"); st.Allocated != 1 {
		t.Errorf("n2: %+v", st)
	}
	// Running: nics and disks may not change; other fields may.
	d.host("h1")
	d.must(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "a", Host: "h1"}}})
	epoch := d.i
	report(t, d.f, d.next(), "h1", "a", epoch, resource.PhaseRunning)
	wantInErr(t, d.update(vm, "a", vmNIC("n1", "")), fsm.ErrWrongPhase, "stop the VM first")
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: "a", Spec: raw(`{"cpus":1,"memory_mib":64,"nics":[{"network":"n2"}]}`)})
	// Stopped: they may.
	report(t, d.f, d.next(), "h1", "a", epoch, resource.PhaseStopped)
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: "a", Spec: raw(vmNIC("n1", ""))})
	checkDevices(t, d.f)
	// In use: no delete, no change of addressing; reserved may not cover
	// a held address; mtu and dhcp may change.
	wantInErr(t, d.del(network, "n1"), fsm.ErrInUse, "network n1 is used by vm a")
	wantInErr(t, d.update(network, "n1", `{"cidr":"10.0.0.0/28"}`), fsm.ErrInUse, "spec.cidr")
	ip := d.nics("a")[0].IP
	wantInErr(t, d.update(network, "n1", `{"cidr":"10.0.0.0/29","reserved":[{"from":"`+ip+`"}]}`), fsm.ErrInUse, ip, "vm a")
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: network, Name: "n1", Spec: raw(`{"cidr":"10.0.0.0/29","mtu":9000,"dhcp":false,"reserved":[{"from":"10.0.0.6"}]}`)})
	if st := d.netStatus("n1"); st.Capacity != 4 {
		t.Errorf("capacity after reserving one: %+v", st)
	}
	// Many users are named, a few at a time.
	for i := range 7 {
		d.mustCreate(vm, fmt.Sprintf("u%d", i), vmNIC("n2", ""))
	}
	wantInErr(t, d.del(network, "n2"), fsm.ErrInUse, "vms u0, u1, u2, u3, u4 (and 2 more)")
	// Unused: deleted.
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: vm, Name: "a"})
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: network, Name: "n1"})
	checkDevices(t, d.f)
}

const imgSpec = `{"file":"debian.qcow2"}`

func TestVolumes(t *testing.T) {
	d := newDev(t)
	wantFieldErr(t, d.create(volume, "v1", `{"size_mib":10,"image":"debian"}`), "spec.image", "unknown image")
	d.mustCreate(image, "debian", imgSpec)
	d.mustCreate(volume, "v1", `{"size_mib":10,"image":"debian","persistent":true}`)
	wantFieldErr(t, d.create(vm, "a", `{"cpus":1,"memory_mib":64,"disks":[{"image":"nope","size_mib":5}]}`), "spec.disks[0].image", "unknown image")
	wantFieldErr(t, d.create(vm, "a", `{"cpus":1,"memory_mib":64,"disks":[{"volume":"nope"}]}`), "spec.disks[0].volume", `no volume "nope"`)
	res := d.must(fsm.CreateRequestType, d.createReq(vm, "a", `{"cpus":1,"memory_mib":64,"disks":[{"image":"debian","size_mib":5},{"volume":"v1"}]}`))
	if len(res.Objects) < 2 || res.Objects[0].Kind != vm || res.Objects[1].Name != "a-disk0" {
		t.Fatalf("Result.Objects %v: want the VM first, then its volume", names(res.Objects))
	}
	vmID := res.Objects[0].ID
	s := vmSpecOf(t, d.f, "a")
	if s.Disks[0].Volume != "a-disk0" || s.Disks[1].Volume != "v1" {
		t.Errorf("disks %+v", s.Disks)
	}
	dv := mustGet(t, d.f, volume, "a-disk0")
	vs, _ := resource.DecodeSpec[resource.VolumeSpec](dv)
	if vs.Image != "debian" || vs.SizeMiB != 5 || vs.Persistent {
		t.Errorf("disk volume spec %+v", vs)
	}
	if len(dv.ID) != 36 || dv.ID[14] != '5' || dv.ID == vmID {
		t.Errorf("disk volume id %q: want a UUID (version 5 layout)", dv.ID)
	}
	if st := d.volStatus("a-disk0"); st.AttachedTo != "a" || st.Phase != resource.VolumePending {
		t.Errorf("disk volume status %+v", st)
	}
	if st := d.volStatus("v1"); st.AttachedTo != "a" {
		t.Errorf("v1 status %+v", st)
	}
	checkDevices(t, d.f)
	wantInErr(t, d.create(vm, "b", `{"cpus":1,"memory_mib":64,"disks":[{"volume":"v1"}]}`), fsm.ErrInUse, "volume v1 is attached to vm a")
	wantInErr(t, d.del(volume, "v1"), fsm.ErrInUse, "volume v1 is attached to vm a")
	wantInErr(t, d.del(image, "debian"), fsm.ErrInUse, "image debian is used by volumes a-disk0, v1")
	// The disk volume's name is taken: 409.
	d.mustCreate(volume, "c-disk0", `{"size_mib":1}`)
	wantInErr(t, d.create(vm, "c", `{"cpus":1,"memory_mib":64,"disks":[{"image":"debian","size_mib":5}]}`), fsm.ErrExists, "c-disk0")
	// Placement binds the volumes to the host; they hold the VM there.
	d.host("h1")
	d.host("h2")
	d.must(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "a", Host: "h1"}}})
	epoch := d.i
	if st := d.volStatus("v1"); st.Host != "h1" || st.Phase != resource.VolumePending {
		t.Errorf("v1 after placement %+v", st)
	}
	report(t, d.f, d.next(), "h1", "a", epoch, resource.PhaseRunning)
	// Resize while attached to a running VM: refused; stopped: fine.
	wantInErr(t, d.update(volume, "v1", `{"size_mib":20,"image":"debian","persistent":true}`), fsm.ErrWrongPhase, "stop vm a first")
	report(t, d.f, d.next(), "h1", "a", epoch, resource.PhaseStopped)
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: volume, Name: "v1", Spec: raw(`{"size_mib":20,"image":"debian","persistent":true}`)})
	// A failed VM placed again may only go to its volumes' host.
	d.must(fsm.ActionRequestType, &fsm.ActionRequest{Time: fsm.TestTime, VM: "a", Action: resource.ActionStart})
	report(t, d.f, d.next(), "h1", "a", epoch, resource.PhaseFailed)
	d.must(fsm.ActionRequestType, &fsm.ActionRequest{Time: fsm.TestTime, VM: "a", Action: resource.ActionStart})
	if st := vmStatus(t, d.f, "a"); st.Phase != resource.PhasePending {
		t.Fatalf("vm a %+v, want pending", st)
	}
	res = d.must(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "a", Host: "h2"}}})
	if !errors.Is(res.ItemErrors[0], fsm.ErrHostNotReady) || !strings.Contains(res.ItemErrors[0].Error(), "volume a-disk0 is on host h1") {
		t.Fatalf("placement away from the volumes' host: %v", res.ItemErrors[0])
	}
	// VM delete: non-persistent volumes go with it, persistent ones are
	// detached.
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: vm, Name: "a"})
	mustAbsent(t, d.f, volume, "a-disk0")
	if st := d.volStatus("v1"); st.AttachedTo != "" || st.Host != "h1" {
		t.Errorf("v1 after its VM's delete %+v", st)
	}
	wantInErr(t, d.del(image, "debian"), fsm.ErrInUse, "volume v1")
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: volume, Name: "v1"})
	d.must(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: image, Name: "debian"})
	checkDevices(t, d.f)
}

func TestVMDiskUpdate(t *testing.T) {
	d := newDev(t)
	d.mustCreate(image, "debian", imgSpec)
	d.mustCreate(volume, "v1", `{"size_mib":10}`)
	d.mustCreate(vm, "a", `{"cpus":1,"memory_mib":64,"disks":[{"image":"debian","size_mib":5}]}`)
	// Re-sending the disk without its volume keeps the volume.
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: "a", Spec: raw(`{"cpus":2,"memory_mib":64,"disks":[{"image":"debian","size_mib":5}]}`)})
	if s := vmSpecOf(t, d.f, "a"); s.Disks[0].Volume != "a-disk0" {
		t.Errorf("disks %+v", s.Disks)
	}
	// Attach v1 (pending VM), then detach it.
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: "a", Spec: raw(`{"cpus":2,"memory_mib":64,"disks":[{"volume":"a-disk0"},{"volume":"v1"}]}`)})
	if st := d.volStatus("v1"); st.AttachedTo != "a" {
		t.Errorf("v1 %+v", st)
	}
	checkDevices(t, d.f)
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: "a", Spec: raw(`{"cpus":2,"memory_mib":64,"disks":[{"volume":"a-disk0"}]}`)})
	if st := d.volStatus("v1"); st.AttachedTo != "" {
		t.Errorf("v1 after detach %+v", st)
	}
	checkDevices(t, d.f)
	// A volume created for a placed, stopped VM is bound to its host.
	d.host("h1")
	d.must(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "a", Host: "h1"}}})
	epoch := d.i
	report(t, d.f, d.next(), "h1", "a", epoch, resource.PhaseStopped)
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: "a", Spec: raw(`{"cpus":2,"memory_mib":64,"disks":[{"volume":"a-disk0"},{"image":"debian","size_mib":1}]}`)})
	if st := d.volStatus("a-disk1"); st.Host != "h1" || st.AttachedTo != "a" {
		t.Errorf("a-disk1 %+v", st)
	}
	// A volume bound to another host cannot be attached to a placed VM.
	d.host("h2")
	d.mustCreate(vm, "b", `{"cpus":1,"memory_mib":64,"disks":[{"volume":"v1"}]}`)
	d.must(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "b", Host: "h2"}}})
	report(t, d.f, d.next(), "h2", "b", d.i-1, resource.PhaseStopped)
	d.must(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: "b", Spec: raw(`{"cpus":1,"memory_mib":64}`)})
	wantInErr(t, d.update(vm, "a", `{"cpus":2,"memory_mib":64,"disks":[{"volume":"a-disk0"},{"volume":"a-disk1"},{"volume":"v1"}]}`), fsm.ErrHostNotReady, "volume v1 is on host h2")
	checkDevices(t, d.f)
}

// placedWithDevices creates network n1, image debian, volume v1 and VM
// a (with v1 and a NIC on n1) and places a on h1.
func (d *dev) placedWithDevices() {
	d.t.Helper()
	d.mustCreate(network, "n1", net29)
	d.mustCreate(image, "debian", imgSpec)
	d.mustCreate(volume, "v1", `{"size_mib":10}`)
	d.mustCreate(vm, "a", `{"cpus":1,"memory_mib":64,"disks":[{"volume":"v1"}],"nics":[{"network":"n1"}]}`)
	d.must(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "a", Host: "h1"}}})
}

func TestResourceReports(t *testing.T) {
	d := newDev(t)
	d.host("h1")
	d.placedWithDevices()
	volID := mustGet(t, d.f, volume, "v1").ID
	res := d.must(fsm.ReportRequestType, &fsm.ReportRequest{Time: reportTime, Host: "h1", Resources: []resource.ResourceReport{
		{Kind: network, Name: "n1", State: resource.HostResourceReady},
		{Kind: image, Name: "debian", State: resource.HostResourceFailed, Reason: "sha256 mismatch"},
		{Kind: volume, Name: "v1", ID: volID, State: resource.HostResourceReady, SizeMiB: 10},
		{Kind: network, Name: "nope", State: resource.HostResourceReady},
		{Kind: volume, Name: "v1", ID: "00000000-0000-4000-8000-000000000999", State: resource.HostResourceMissing},
		{Kind: vm, Name: "a", State: resource.HostResourceReady},
		{Kind: image, Name: "debian", State: "exploded"},
	}})
	if len(res.ResourceErrors) != 7 || res.ResourceErrors[0] != nil || res.ResourceErrors[1] != nil || res.ResourceErrors[2] != nil ||
		!errors.Is(res.ResourceErrors[3], fsm.ErrNotFound) || !errors.Is(res.ResourceErrors[4], fsm.ErrStaleEpoch) ||
		fieldOf(res.ResourceErrors[5]) != "kind" || fieldOf(res.ResourceErrors[6]) != "state" {
		t.Fatalf("ResourceErrors %v", res.ResourceErrors)
	}
	if st := d.netStatus("n1"); st.Hosts["h1"].State != resource.HostResourceReady || st.Hosts["h1"].Since != reportTime {
		t.Errorf("network hosts %+v", st.Hosts)
	}
	ist, _ := resource.DecodeStatus[resource.ImageStatus](mustGet(t, d.f, image, "debian"))
	if h := ist.Hosts["h1"]; h.State != resource.HostResourceFailed || h.Reason != "sha256 mismatch" {
		t.Errorf("image hosts %+v", ist.Hosts)
	}
	if st := d.volStatus("v1"); st.Phase != resource.VolumeReady || st.SizeMiB != 10 || st.Host != "h1" || st.AttachedTo != "a" {
		t.Errorf("volume status %+v", st)
	}
	// Another host may not report the volume; removed drops a host entry.
	hostState(t, d.f, d.next(), "h2", resource.HostReady, 4, 4096)
	res = d.must(fsm.ReportRequestType, &fsm.ReportRequest{Time: reportTime, Host: "h2", Resources: []resource.ResourceReport{
		{Kind: volume, Name: "v1", State: resource.HostResourceMissing},
	}})
	if !errors.Is(res.ResourceErrors[0], fsm.ErrStaleEpoch) {
		t.Errorf("volume report from another host: %v", res.ResourceErrors[0])
	}
	d.must(fsm.ReportRequestType, &fsm.ReportRequest{Time: reportTime, Host: "h1", Resources: []resource.ResourceReport{
		{Kind: network, Name: "n1", State: resource.HostResourceRemoved},
		{Kind: volume, Name: "v1", State: resource.HostResourceMissing, Reason: "removed outside Kumoi"},
	}})
	if st := d.netStatus("n1"); len(st.Hosts) != 0 {
		t.Errorf("network hosts after removed: %+v", st.Hosts)
	}
	if st := d.volStatus("v1"); st.Phase != resource.VolumeMissing || st.Reason != "removed outside Kumoi" {
		t.Errorf("volume %+v", st)
	}
	// A report of nothing new writes nothing.
	before := d.f.State().Digest()
	d.must(fsm.ReportRequestType, &fsm.ReportRequest{Time: reportTime, Host: "h1", Resources: []resource.ResourceReport{
		{Kind: volume, Name: "v1", State: resource.HostResourceMissing, Reason: "removed outside Kumoi"},
		{Kind: volume, Name: "v1", State: resource.HostResourcePending},
	}})
	if d.f.State().Digest() != before {
		t.Error("a report of nothing new changed the state")
	}
}

// TestResourceReportSeq: a worker's network, image and volume reports
// with a sequence are recorded only in order (per host for a network or
// image, per volume for a volume): one sent before a recorded one and
// delivered late is refused and changes nothing; the sequence alone is
// recorded; a volume moved to another host starts it again.
func TestResourceReportSeq(t *testing.T) {
	d := newDev(t)
	d.host("h1")
	d.host("h2")
	d.placedWithDevices()
	send := func(host string, seq uint64, rs ...resource.ResourceReport) []error {
		t.Helper()
		for i := range rs {
			rs[i].Seq = seq
		}
		return d.must(fsm.ReportRequestType, &fsm.ReportRequest{Time: reportTime, Host: host, Resources: rs}).ResourceErrors
	}
	ready := []resource.ResourceReport{
		{Kind: network, Name: "n1", State: resource.HostResourceReady},
		{Kind: image, Name: "debian", State: resource.HostResourceReady},
		{Kind: volume, Name: "v1", State: resource.HostResourceReady, SizeMiB: 10},
	}
	if errs := send("h1", 10, slices.Clone(ready)...); errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("ready at 10: %v", errs)
	}
	if errs := send("h2", 3, resource.ResourceReport{Kind: network, Name: "n1", State: resource.HostResourceReady}); errs[0] != nil {
		t.Fatalf("another host's own sequence: %v", errs)
	}
	if errs := send("h1", 12, slices.Clone(ready)...); errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("the same states at 12: %v", errs)
	}
	if st := d.netStatus("n1"); st.Hosts["h1"].Seq != 12 || st.Hosts["h2"].Seq != 3 {
		t.Fatalf("network hosts %+v: want seq 12 on h1 (the sequence alone is recorded), 3 on h2", st.Hosts)
	}
	before := d.f.State().Digest()
	errs := send("h1", 11,
		resource.ResourceReport{Kind: network, Name: "n1", State: resource.HostResourceFailed, Reason: "late"},
		resource.ResourceReport{Kind: image, Name: "debian", State: resource.HostResourceRemoved},
		resource.ResourceReport{Kind: volume, Name: "v1", State: resource.HostResourceMissing, Reason: "late"},
		resource.ResourceReport{Kind: volume, Name: "v1", State: resource.HostResourcePending},
	)
	for i, err := range errs {
		if !errors.Is(err, fsm.ErrStaleEpoch) || !strings.Contains(err.Error(), "late delivery") {
			t.Errorf("late report %d: %v, want refused as a late delivery", i, err)
		}
	}
	if d.f.State().Digest() != before {
		t.Fatal("refused late reports changed the state")
	}
	if errs := send("h1", 13, resource.ResourceReport{Kind: volume, Name: "v1", State: resource.HostResourcePending}); errs[0] != nil {
		t.Fatalf("pending at 13: %v", errs)
	}
	if st := d.volStatus("v1"); st.Phase != resource.VolumeReady || st.ReportSeq != 13 {
		t.Fatalf("volume %+v: want still ready, report_seq 13", st)
	}
	// No sequence (a worker of an earlier release): recorded, the
	// sequence kept.
	if errs := send("h1", 0, resource.ResourceReport{Kind: network, Name: "n1", State: resource.HostResourceFailed, Reason: "old worker"}); errs[0] != nil {
		t.Fatalf("no sequence: %v", errs)
	}
	if h := d.netStatus("n1").Hosts["h1"]; h.State != resource.HostResourceFailed || h.Seq != 12 {
		t.Fatalf("network on h1 %+v: want failed, seq 12 kept", h)
	}
	// A removal drops the entry and keeps its sequence: a report sent
	// before it, delivered late, does not put the entry back.
	if errs := send("h1", 20, resource.ResourceReport{Kind: network, Name: "n1", State: resource.HostResourceRemoved}); errs[0] != nil {
		t.Fatalf("removed at 20: %v", errs)
	}
	if st := d.netStatus("n1"); len(st.Hosts) != 1 || st.RemovedSeq["h1"] != 20 {
		t.Fatalf("network after removal: %+v, want h1's entry gone, removed_seq 20", st)
	}
	before = d.f.State().Digest()
	if errs := send("h1", 15, resource.ResourceReport{Kind: network, Name: "n1", State: resource.HostResourceReady}); !errors.Is(errs[0], fsm.ErrStaleEpoch) {
		t.Fatalf("ready at 15, after the removal at 20: %v, want refused as a late delivery", errs[0])
	}
	if errs := send("h1", 20, resource.ResourceReport{Kind: network, Name: "n1", State: resource.HostResourceRemoved}); !errors.Is(errs[0], fsm.ErrStaleEpoch) {
		t.Fatalf("the removal at 20 again: %v, want refused", errs[0])
	}
	if d.f.State().Digest() != before {
		t.Fatal("refused late reports changed the state")
	}
	// The sequence of a removal of what is not there is recorded too.
	if errs := send("h1", 21, resource.ResourceReport{Kind: network, Name: "n1", State: resource.HostResourceRemoved}); errs[0] != nil {
		t.Fatalf("removed again at 21: %v", errs)
	}
	if st := d.netStatus("n1"); st.RemovedSeq["h1"] != 21 {
		t.Fatalf("network %+v: want removed_seq 21", st)
	}
	// A newer report puts the entry back with its sequence.
	if errs := send("h1", 22, resource.ResourceReport{Kind: network, Name: "n1", State: resource.HostResourceReady}); errs[0] != nil {
		t.Fatalf("ready at 22: %v", errs)
	}
	if st := d.netStatus("n1"); st.Hosts["h1"].Seq != 22 || st.Hosts["h1"].State != resource.HostResourceReady || st.RemovedSeq != nil {
		t.Fatalf("network %+v: want h1 ready at 22, no removed_seq", st)
	}
	// Images keep it the same way.
	if errs := send("h1", 23, resource.ResourceReport{Kind: image, Name: "debian", State: resource.HostResourceRemoved}); errs[0] != nil {
		t.Fatalf("image removed at 23: %v", errs)
	}
	if errs := send("h1", 14, resource.ResourceReport{Kind: image, Name: "debian", State: resource.HostResourceReady}); !errors.Is(errs[0], fsm.ErrStaleEpoch) {
		t.Fatalf("image ready at 14, after its removal at 23: %v, want refused", errs[0])
	}
}

// TestProtocol6Unchanged: entries an older build (protocol 6) wrote apply
// on this build exactly as on an FSM limited to protocol 6 (they use none
// of the protocol 7 features), and the state they make is the same.
func TestProtocol6Unchanged(t *testing.T) {
	old, cur := fsm.New(fsm.Config{MaxProtocol: 6}), fsm.TestFSM(t)
	entries := []struct {
		t   fsm.MessageType
		req any
	}{
		{fsm.HostStateRequestType, hsReq("h1", resource.HostReady, 4, 4096)},
		{fsm.CreateRequestType, createReq(vm, "a", fsm.TestID(2), nil, `{"cpus":1,"memory_mib":64}`)},
		{fsm.CreateRequestType, createReq(vm, "b", fsm.TestID(3), nil, `{"cpus":1,"memory_mib":64,"boot":{"image":"d.qcow2"}}`)},
		{fsm.PlaceRequestType, place("a@h1", "b@h1")},
		{fsm.ReportRequestType, &fsm.ReportRequest{Time: reportTime, Host: "h1", Reports: []fsm.VMReport{{VM: "a", Epoch: 4, Phase: resource.PhaseRunning}}}},
		{fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: "a", Spec: raw(`{"cpus":2,"memory_mib":64}`)}},
		{fsm.CreateRequestType, createReq("gadget", "x", fsm.TestID(7), nil, `{}`)},
		{fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: vm, Name: "b"}},
		{fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: host, Name: "h1"}},
	}
	for i, e := range entries {
		if fsm.RequiredProtocol(e.t, e.req) > 6 {
			t.Fatalf("entry %d needs protocol %d", i, fsm.RequiredProtocol(e.t, e.req))
		}
		a := fsm.TestApply(t, old, uint64(i+1), e.t, e.req)
		b := fsm.TestApply(t, cur, uint64(i+1), e.t, e.req)
		if fmt.Sprint(a.Err) != fmt.Sprint(b.Err) || fmt.Sprint(a.ItemErrors) != fmt.Sprint(b.ItemErrors) || b.ResourceErrors != nil {
			t.Fatalf("entry %d: protocol 6 %v %v, this build %v %v", i, a.Err, a.ItemErrors, b.Err, b.ItemErrors)
		}
	}
	if old.State().Digest() != cur.State().Digest() {
		t.Fatal("the states differ")
	}
	// A protocol 7 entry needs protocol 7.
	spec, _ := json.Marshal(map[string]any{"cpus": 1, "memory_mib": 64, "nics": []map[string]string{{"network": "n"}}})
	if p := fsm.RequiredProtocol(fsm.CreateRequestType, createReq(vm, "c", fsm.TestID(99), nil, string(spec))); p != 7 {
		t.Errorf("protocol %d", p)
	}
}

// TestMigrateKeepsVolumesHost: a VM whose volumes are bound to a host
// does not move to another.
func TestMigrateKeepsVolumesHost(t *testing.T) {
	d := newDev(t)
	d.host("h1")
	d.host("h2")
	d.mustCreate(image, "debian", imgSpec)
	d.mustCreate(vm, "a", `{"cpus":1,"memory_mib":64,"disks":[{"image":"debian","size_mib":5}]}`)
	d.must(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: "a", Host: "h1"}}})
	report(t, d.f, d.next(), "h1", "a", d.i-1, resource.PhaseStopped)
	d.must(fsm.ActionRequestType, &fsm.ActionRequest{Time: fsm.TestTime, VM: "a", Action: resource.ActionStop})
	wantInErr(t, d.apply(fsm.MigrateRequestType, &fsm.MigrateRequest{Time: fsm.TestTime, VM: "a", Host: "h2"}), fsm.ErrHostNotReady, "volume a-disk0 is on host h1")
}

// TestStatusWriteRecomputed: a status write cannot make a network's
// allocation or a volume's attachment disagree with the VMs.
func TestStatusWriteRecomputed(t *testing.T) {
	d := newDev(t)
	d.mustCreate(network, "n1", net29)
	d.mustCreate(volume, "v1", `{"size_mib":1}`)
	d.mustCreate(vm, "a", `{"cpus":1,"memory_mib":64,"nics":[{"network":"n1"}],"disks":[{"volume":"v1"}]}`)
	d.must(fsm.StatusRequestType, &fsm.StatusRequest{Time: fsm.TestTime, Kind: network, Name: "n1", Status: raw(`{"allocated":0,"capacity":99}`)})
	d.must(fsm.StatusRequestType, &fsm.StatusRequest{Time: fsm.TestTime, Kind: volume, Name: "v1", Status: raw(`{"phase":"ready","attached_to":"zz"}`)})
	checkDevices(t, d.f)
}
