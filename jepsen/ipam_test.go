package jepsen

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// The ipam checker must be able to fail: hand-made histories and final
// reads with one violation each, and their valid twins.

func ipamCreate(name, ip, mac string, st Status, invoke, ret int64) Op {
	op := Op{Process: 0, Kind: "create", Key: name, Input: Value{Value: IPAMNetwork}, Status: st, Invoke: invoke, Return: ret, Ended: ret}
	switch st {
	case StatusOK:
		op.Output = Value{Value: nicValue(ip, mac)}
	case StatusUnknown:
		op.Return = math.MaxInt64
	}
	return op
}

func ipamDelete(name string, st Status, invoke, ret int64) Op {
	op := Op{Process: 0, Kind: "delete", Key: name, Status: st, Invoke: invoke, Return: ret, Ended: ret}
	if st == StatusUnknown {
		op.Return = math.MaxInt64
	}
	return op
}

func mac(i int) string { return fmt.Sprintf("52:54:00:00:00:%02x", i) }

func addr(i int) string { return fmt.Sprintf("192.0.2.%d", i) }

// ipamState builds a final read: vms maps a name to its address ("" for
// none; its MAC is derived from the name's last address byte or given by
// macs); allocated is the network's status (-1: the number of distinct
// addresses held); the fill probe allocates the free addresses in order,
// then none.
type ipamState struct {
	vms       map[string]string
	macs      map[string]string
	allocated int64
	noFill    bool
	placed    bool
	fillEdit  func([]ipamFill) []ipamFill
}

func (s ipamState) final() *ipamFinal {
	spec := ipamSpec()
	f := &ipamFinal{Network: ipamNetwork{Spec: spec}, Placed: s.placed}
	held := map[string]bool{}
	for i, name := range slices.Sorted(maps.Keys(s.vms)) {
		ip := s.vms[name]
		m := mac(100 + i)
		if s.macs[name] != "" {
			m = s.macs[name]
		}
		f.VMs = append(f.VMs, ipamVM{Name: name, ID: "id-" + name, Ours: true, Phase: "pending",
			NICs: []resource.NIC{{Network: IPAMNetwork, IP: ip, MAC: m}}})
		if ip != "" {
			held[ip] = true
		}
	}
	f.Network.Status.Capacity = spec.Capacity()
	f.Network.Status.Allocated = s.allocated
	if s.allocated < 0 {
		f.Network.Status.Allocated = int64(len(held))
	}
	if s.noFill {
		return f
	}
	f.Fill = []ipamFill{}
	p, _ := spec.Prefix()
	k := 0
	for a := p.Addr(); p.Contains(a); a = a.Next() {
		if !spec.Assignable(a) || held[a.String()] {
			continue
		}
		f.Fill = append(f.Fill, ipamFill{Name: fmt.Sprintf("ip-fill-%d", k), IP: a.String(), MAC: mac(200 + k)})
		k++
	}
	f.Fill = append(f.Fill, ipamFill{Name: fmt.Sprintf("ip-fill-%d", k)})
	if s.fillEdit != nil {
		f.Fill = s.fillEdit(f.Fill)
	}
	return f
}

func TestIPAMSpecCapacity(t *testing.T) {
	s := ipamSpec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Capacity() != 13 || s.Gateway != "192.0.2.1" {
		t.Fatalf("capacity %d, gateway %s; want 13 and 192.0.2.1", s.Capacity(), s.Gateway)
	}
	if !s.Assignable(netip.MustParseAddr(addr(14))) || s.Assignable(netip.MustParseAddr(addr(15))) || s.Assignable(netip.MustParseAddr(addr(1))) {
		t.Fatal("assignable addresses are not .2-.14")
	}
}

func TestIPAMTarget(t *testing.T) {
	lo, hi := IPAMMaxPerClient, 0
	for d := time.Duration(0); d < IPAMPeriod; d += IPAMPeriod / 50 {
		n := ipamTarget(d)
		lo, hi = min(lo, n), max(hi, n)
	}
	if lo != 1 || hi != IPAMMaxPerClient {
		t.Fatalf("the target swings between %d and %d; want 1 and %d", lo, hi, IPAMMaxPerClient)
	}
}

func TestIPAMCheck(t *testing.T) {
	// The clean run: a keeps .2; b holds .3 and is deleted, then c gets
	// .3; d's create is unknown and it holds .4 at the end; e's create
	// failed; g's delete is unknown and it is gone.
	base := []Op{
		ipamCreate("a", addr(2), mac(2), StatusOK, 0, 10),
		ipamCreate("b", addr(3), mac(3), StatusOK, 20, 30),
		ipamDelete("b", StatusOK, 40, 50),
		ipamCreate("c", addr(3), mac(4), StatusOK, 60, 70),
		ipamCreate("d", "", "", StatusUnknown, 80, 0),
		ipamCreate("e", "", "", StatusFail, 90, 95),
		ipamCreate("g", addr(5), mac(5), StatusOK, 100, 110),
		ipamDelete("g", StatusUnknown, 120, 0),
		ipamDelete("x", StatusFail, 130, 135), // a delete of a VM that never was: 404
	}
	baseVMs := map[string]string{"a": addr(2), "c": addr(3), "d": addr(4)}
	baseMACs := map[string]string{"a": mac(2), "c": mac(4)}
	with := func(ops []Op, more ...Op) []Op { return append(slices.Clone(ops), more...) }
	edit := func(m map[string]string, k, v string) map[string]string {
		m = maps.Clone(m)
		if v == "-" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	// full: 13 VMs hold every address while f's create is acknowledged
	// without one.
	var full []Op
	fullVMs := map[string]string{}
	for i := 2; i <= 14; i++ {
		n := fmt.Sprintf("v%d", i)
		full = append(full, ipamCreate(n, addr(i), mac(i), StatusOK, int64(i), int64(i)+1))
		fullVMs[n] = addr(i)
	}
	fullMACs := map[string]string{}
	for i := 2; i <= 14; i++ {
		fullMACs[fmt.Sprintf("v%d", i)] = mac(i)
	}

	for _, tc := range []struct {
		name  string
		ops   []Op
		state ipamState
		want  []string // anomaly types, sorted
	}{
		{"clean", base, ipamState{vms: baseVMs, macs: baseMACs, allocated: -1}, nil},
		{"clean, fill probe skipped", base, ipamState{vms: baseVMs, macs: baseMACs, allocated: -1, noFill: true}, nil},
		{"duplicate address at the end",
			with(base, ipamCreate("h", addr(2), mac(6), StatusOK, 140, 150)),
			ipamState{vms: edit(baseVMs, "h", addr(2)), macs: edit(baseMACs, "h", mac(6)), allocated: -1},
			[]string{"duplicate-address"}},
		{"duplicate address during the run",
			// c is given .3 while b, whose delete is invoked later,
			// still holds it.
			[]Op{
				ipamCreate("a", addr(2), mac(2), StatusOK, 0, 10),
				ipamCreate("b", addr(3), mac(3), StatusOK, 20, 30),
				ipamCreate("c", addr(3), mac(4), StatusOK, 35, 45),
				ipamDelete("b", StatusOK, 50, 60),
			},
			ipamState{vms: map[string]string{"a": addr(2), "c": addr(3)}, macs: baseMACs, allocated: -1},
			[]string{"duplicate-address"}},
		{"address reused after an unknown delete was invoked",
			[]Op{
				ipamCreate("b", addr(3), mac(3), StatusOK, 20, 30),
				ipamDelete("b", StatusUnknown, 40, 0),
				ipamCreate("c", addr(3), mac(4), StatusOK, 45, 55),
			},
			ipamState{vms: map[string]string{"c": addr(3)}, macs: map[string]string{"c": mac(4)}, allocated: -1},
			nil},
		{"duplicate MAC at the end", base,
			ipamState{vms: baseVMs, macs: edit(baseMACs, "d", mac(2)), allocated: -1},
			[]string{"duplicate-mac"}},
		{"acknowledged VM missing", base,
			ipamState{vms: edit(baseVMs, "a", "-"), macs: baseMACs, allocated: -1},
			[]string{"lost"}},
		{"acknowledged delete present",
			base,
			ipamState{vms: edit(baseVMs, "b", addr(6)), macs: baseMACs, allocated: -1},
			[]string{"unexpected"}},
		{"never attempted present", base,
			ipamState{vms: edit(baseVMs, "zz", addr(7)), macs: baseMACs, allocated: -1},
			[]string{"unexpected"}},
		{"leaked allocation in the status", base,
			ipamState{vms: baseVMs, macs: baseMACs, allocated: 4},
			[]string{"leaked-address"}},
		{"leaked address: the fill probe finds the network full too soon", base,
			ipamState{vms: baseVMs, macs: baseMACs, allocated: -1, fillEdit: func(f []ipamFill) []ipamFill {
				return append(f[:len(f)-2], ipamFill{Name: "ip-fill-9"})
			}},
			[]string{"leaked-address"}},
		{"over capacity: the fill probe gets one address too many", base,
			ipamState{vms: baseVMs, macs: baseMACs, allocated: -1, fillEdit: func(f []ipamFill) []ipamFill {
				f[len(f)-1].IP = addr(15)
				return f
			}},
			[]string{"leaked-address"}},
		{"fill probe given a held address", base,
			ipamState{vms: baseVMs, macs: baseMACs, allocated: -1, fillEdit: func(f []ipamFill) []ipamFill {
				f[0].IP = addr(2)
				return f
			}},
			[]string{"leaked-address"}},
		{"acknowledged without an address on a network with room",
			with(base, ipamCreate("f", "", mac(9), StatusOK, 140, 150)),
			ipamState{vms: edit(baseVMs, "f", ""), macs: edit(baseMACs, "f", mac(9)), allocated: -1},
			[]string{"unaddressed"}},
		{"acknowledged without an address on a full network",
			with(full, ipamCreate("f", "", mac(99), StatusOK, 140, 150)),
			ipamState{vms: edit(fullVMs, "f", ""), macs: edit(fullMACs, "f", mac(99)), allocated: -1},
			nil},
		{"acknowledged without an address after a delete made room",
			with(full, ipamDelete("v2", StatusOK, 120, 130), ipamCreate("f", "", mac(99), StatusOK, 140, 150)),
			ipamState{vms: edit(edit(fullVMs, "v2", "-"), "f", ""), macs: edit(fullMACs, "f", mac(99)), allocated: -1},
			[]string{"unaddressed"}},
		{"acknowledged without an address while a delete was in flight",
			with(full, ipamDelete("v2", StatusOK, 120, 145), ipamCreate("f", "", mac(99), StatusOK, 140, 150)),
			ipamState{vms: edit(edit(fullVMs, "v2", "-"), "f", ""), macs: edit(fullMACs, "f", mac(99)), allocated: -1},
			nil},
		{"acknowledged without an address after a delete made room, with workers",
			// v15 was created without an address, may have been
			// placed (and given one) and deleted, unseen.
			with(full, ipamCreate("v15", "", mac(15), StatusOK, 50, 60), ipamDelete("v15", StatusOK, 150, 160),
				ipamDelete("v2", StatusOK, 120, 130), ipamCreate("f", "", mac(99), StatusOK, 140, 150)),
			ipamState{vms: edit(edit(fullVMs, "v2", "-"), "f", ""), macs: edit(fullMACs, "f", mac(99)), allocated: -1, placed: true},
			nil},
		{"address changed", base,
			ipamState{vms: edit(baseVMs, "a", addr(9)), macs: baseMACs, allocated: -1},
			[]string{"address-changed"}},
		{"gateway handed out",
			with(base, ipamCreate("h", addr(1), mac(6), StatusOK, 140, 150)),
			ipamState{vms: edit(baseVMs, "h", addr(1)), macs: edit(baseMACs, "h", mac(6)), allocated: -1},
			[]string{"address-out-of-range"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &IPAM{final: tc.state.final()}
			chk := w.Check(tc.ops, nil, "")
			var got []string
			for _, a := range chk.Anomalies {
				if !slices.Contains(got, a.Type) {
					got = append(got, a.Type)
				}
			}
			slices.Sort(got)
			if chk.Valid != (len(tc.want) == 0) || !slices.Equal(got, tc.want) {
				t.Fatalf("valid %v, anomalies %v; want %v\n%+v", chk.Valid, got, tc.want, chk.Anomalies)
			}
			t.Logf("VALID=%v %v notes %q", chk.Valid, got, chk.Notes)
		})
	}
}

// TestIPAMCheckNoFinal: without a final read the run is not valid.
func TestIPAMCheckNoFinal(t *testing.T) {
	if chk := (&IPAM{}).Check(nil, nil, ""); chk.Valid {
		t.Fatal("valid without a final read")
	}
}

func TestParseNICValue(t *testing.T) {
	ip, m := parseNICValue(nicValue(addr(3), mac(3)))
	if ip != addr(3) || m != mac(3) {
		t.Fatalf("got %q %q", ip, m)
	}
	if ip, m := parseNICValue(nicValue("", "")); ip != "" || m != "" {
		t.Fatalf("got %q %q", ip, m)
	}
}

func TestIPAMWorkloadListed(t *testing.T) {
	wl, err := NewWorkload("ipam")
	if err != nil || wl.Name() != "ipam" || !slices.Contains(Workloads, "ipam") {
		t.Fatalf("NewWorkload(ipam) = %v, %v; Workloads %v", wl, err, Workloads)
	}
	// Real libvirt daemons would make the network a real bridge.
	err = (&IPAM{}).Setup(t.Context(), &Env{Daemons: []DaemonTarget{{}}})
	if err == nil {
		t.Fatal("Setup accepted libvirtd-backed workers")
	}
}

func TestSome(t *testing.T) {
	var items []string
	for i := range 12 {
		items = append(items, fmt.Sprint(i))
	}
	if got, want := some(items, ", "), "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … and 2 more"; got != want {
		t.Fatalf("some = %q, want %q", got, want)
	}
	if got := some(items[:2], ", "); got != "0, 1" {
		t.Fatalf("some = %q", got)
	}
}
