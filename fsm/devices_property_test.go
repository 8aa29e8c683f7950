package fsm_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// TestPropertyIPAM runs random sequences of network, volume and VM
// commands (static and dynamic addresses, MACs, updates, placements,
// deletes, one-entry groups of several commands, snapshots) on two small
// networks and checks after every step that no two VMs hold the same
// (network, ip) or the same MAC, that every held address is assignable,
// that network and volume statuses are what the VMs hold, and that a VM
// lacks an address only while its network is full.
func TestPropertyIPAM(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		f := fsm.TestFSM(rt)
		index := uint64(0)
		apply := func(typ fsm.MessageType, req any) *fsm.Result {
			index++
			return fsm.TestApply(rt, f, index, typ, req)
		}
		for _, n := range []struct{ name, spec string }{
			{"n1", `{"cidr":"10.0.0.0/29","reserved":[{"from":"10.0.0.3"}]}`}, // capacity 4
			{"n2", `{"cidr":"fd00::/126"}`},                                   // capacity 2
		} {
			apply(fsm.CreateRequestType, createReq(network, n.name, fsm.TestID(index+1), nil, n.spec))
		}
		apply(fsm.CreateRequestType, createReq(image, "img", fsm.TestID(index+1), nil, imgSpec))
		apply(fsm.HostStateRequestType, hsReq("h1", resource.HostReady, 64, 65536))
		vmNames := []string{"a", "b", "c", "d", "e", "f", "g"}
		nets := []string{"n1", "n2", "nx"}
		ips := []string{"", "", "", "10.0.0.2", "10.0.0.4", "10.0.0.3", "fd00::2", "10.0.0.1"}
		macs := []string{"", "", "", "02:00:00:00:00:01", "02:00:00:00:00:02"}
		drawNICs := func(rt *rapid.T) string {
			n := rapid.IntRange(0, 2).Draw(rt, "nics")
			s := ""
			for i := range n {
				if i > 0 {
					s += ","
				}
				s += fmt.Sprintf(`{"network":%q`, rapid.SampledFrom(nets).Draw(rt, "net"))
				if ip := rapid.SampledFrom(ips).Draw(rt, "ip"); ip != "" {
					s += fmt.Sprintf(`,"ip":%q`, ip)
				}
				if m := rapid.SampledFrom(macs).Draw(rt, "mac"); m != "" {
					s += fmt.Sprintf(`,"mac":%q`, m)
				}
				s += "}"
			}
			disks := ""
			switch rapid.IntRange(0, 3).Draw(rt, "disk") {
			case 1:
				disks = `,"disks":[{"image":"img","size_mib":1}]`
			case 2:
				disks = `,"disks":[{"volume":"pv"}]`
			}
			return `{"cpus":1,"memory_mib":64,"nics":[` + s + `]` + disks + `}`
		}
		createVM := func(rt *rapid.T) *fsm.CreateRequest {
			return createReq(vm, rapid.SampledFrom(vmNames).Draw(rt, "vm"), fsm.TestID(uint64(rapid.IntRange(1000, 1100).Draw(rt, "id"))), nil, drawNICs(rt))
		}
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for range steps {
			switch rapid.IntRange(0, 8).Draw(rt, "op") {
			case 0, 1:
				// A VM created while its network has room gets an
				// address.
				before := netRoom(f)
				if res := apply(fsm.CreateRequestType, createVM(rt)); res.Err == nil {
					s, _ := resource.DecodeSpec[resource.VMSpec](res.Objects[0])
					for _, n := range s.NICs {
						if n.IP == "" && before[n.Network] > int64(len(s.NICs)) {
							rt.Fatalf("vm %s got no address on %s, which had %d free", res.Objects[0].Name, n.Network, before[n.Network])
						}
					}
				}
			case 2:
				apply(fsm.UpdateRequestType, &fsm.UpdateRequest{Time: fsm.TestTime, Kind: vm, Name: rapid.SampledFrom(vmNames).Draw(rt, "vm"), Spec: raw(drawNICs(rt))})
			case 3:
				apply(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: vm, Name: rapid.SampledFrom(vmNames).Draw(rt, "vm")})
			case 4:
				apply(fsm.PlaceRequestType, &fsm.PlaceRequest{Time: fsm.TestTime, Placements: []fsm.Placement{{VM: rapid.SampledFrom(vmNames).Draw(rt, "vm"), Host: "h1"}}})
			case 5:
				// Several creates raft hands over at once.
				var logs []*raft.Log
				for range rapid.IntRange(2, 4).Draw(rt, "n") {
					index++
					logs = append(logs, fsm.TestLog(rt, index, fsm.CreateRequestType, createVM(rt)))
				}
				f.ApplyBatch(logs)
			case 6:
				batch := &fsm.BatchRequest{Time: fsm.TestTime}
				for range rapid.IntRange(1, 3).Draw(rt, "n") {
					op, err := fsm.NewBatchOp(fsm.CreateRequestType, createVM(rt))
					if err != nil {
						rt.Fatal(err)
					}
					batch.Ops = append(batch.Ops, op)
				}
				apply(fsm.BatchRequestType, batch)
			case 7:
				if rapid.Bool().Draw(rt, "pv") {
					apply(fsm.CreateRequestType, createReq(volume, "pv", fsm.TestID(index+1), nil, `{"size_mib":1,"persistent":true}`))
				} else {
					apply(fsm.DeleteRequestType, &fsm.DeleteRequest{Time: fsm.TestTime, Kind: volume, Name: "pv"})
				}
			case 8:
				r := fsm.TestSnapshotRestore(rt, f)
				if r.State().Digest() != f.State().Digest() {
					rt.Fatalf("restore changed the state")
				}
				f = r
			}
			checkDevices(rt, f)
			checkAssignable(rt, f)
		}
		if propIPAMDebug {
			n, _ := f.State().List(nil, network, nil)
			v, _ := f.State().List(nil, vm, nil)
			for _, o := range append(n, v...) {
				fmt.Println(o.Name, string(o.Spec), string(o.Status))
			}
		}
	})
}

// checkAssignable: every held address is assignable in its network, and a
// NIC without an address is on a VM that is not placed.
func checkAssignable(t fsm.TB, f *fsm.FSM) {
	netObjs, _ := f.State().List(nil, network, nil)
	specs := map[string]*resource.NetworkSpec{}
	for _, o := range netObjs {
		s, _ := resource.DecodeSpec[resource.NetworkSpec](o)
		specs[o.Name] = s
	}
	vms, _ := f.State().List(nil, vm, nil)
	for _, o := range vms {
		s, _ := resource.DecodeSpec[resource.VMSpec](o)
		for _, n := range s.NICs {
			ns := specs[n.Network]
			if ns == nil {
				t.Fatalf("vm %s names network %s, which does not exist", o.Name, n.Network)
			}
			if n.IP == "" {
				if st, _ := resource.DecodeStatus[resource.VMStatus](o); st.Host != "" {
					t.Fatalf("vm %s is placed on %s without an address on network %s", o.Name, st.Host, n.Network)
				}
				continue
			}
			if a, err := netip.ParseAddr(n.IP); err != nil || !ns.Assignable(a) {
				t.Fatalf("vm %s holds %s on network %s, which is not assignable", o.Name, n.IP, n.Network)
			}
		}
	}
}

const propIPAMDebug = false

// netRoom is each network's free addresses.
func netRoom(f *fsm.FSM) map[string]int64 {
	out := map[string]int64{}
	objs, _ := f.State().List(nil, network, nil)
	for _, o := range objs {
		st, _ := resource.DecodeStatus[resource.NetworkStatus](o)
		out[o.Name] = st.Capacity - st.Allocated
	}
	return out
}
