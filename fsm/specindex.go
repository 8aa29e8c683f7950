package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// The index of VMs by their devices (issue 13): the VM spec is the truth
// of who holds an address, a MAC or a volume, so this is all IPAM and
// attachment need. One multi-value index (each index costs every insert
// of every object) holds four kinds of value, each led by its tag.
const indexVMDevice = "vm_device"

// Tags of the values of indexVMDevice: the first argument of a query.
const (
	indexNICAddr   = "a" // (network, ip) of a NIC
	indexNICMAC    = "m" // the MAC of a NIC
	indexVMNetwork = "n" // a network a NIC names
	indexVMVolume  = "v" // a volume a disk names
	indexVMGroup   = "g" // the VM's affinity group (affinity.go)
)

// vmSpecFields are the spec fields the device indexes need: decoding only
// them keeps indexing cheap on every insert.
type vmSpecFields struct {
	NICs  []resource.NIC `json:"nics"`
	Disks []struct {
		Volume string `json:"volume"`
	} `json:"disks"`
	Affinity *struct {
		Group string `json:"group"`
	} `json:"affinity"`
}

// vmSpecCache remembers the fields of the last two specs decoded, by
// their bytes, as vmFieldsCache does for statuses.
type vmSpecCache struct {
	mu sync.Mutex
	c  lastTwo[vmSpecFields]
}

func (c *vmSpecCache) decode(spec []byte) (vmSpecFields, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c.get(spec, func(b []byte) (vmSpecFields, bool) {
		var f vmSpecFields
		if !mayHaveIndexed(b) {
			return f, true
		}
		err := json.Unmarshal(b, &f)
		return f, err == nil
	})
}

// primeSpecFields gives the device index's cache what it would decode of
// spec, whose whole decode is v: a VM whose spec the writer decoded is
// about to be written with that spec, and memdb's insert indexes the new
// object and the old one, which then costs no decode. vmSpecFields are
// VMSpec's nics, disks and affinity, under the same names, with types
// that decode whatever VMSpec's decode: the value is the one
// json.Unmarshal gives (the fsm tests check it, checkApplyCaches).
func primeSpecFields(c *indexCaches, spec []byte, v *resource.VMSpec) {
	if c == nil || !mayHaveIndexed(spec) {
		return // nothing to decode: the index skips it
	}
	f := vmSpecFields{NICs: slices.Clone(v.NICs)} // v may change after
	if v.Disks != nil {
		f.Disks = make([]struct {
			Volume string `json:"volume"`
		}, len(v.Disks))
		for i, d := range v.Disks {
			f.Disks[i].Volume = d.Volume
		}
	}
	if v.Affinity != nil {
		f.Affinity = &struct {
			Group string `json:"group"`
		}{v.Affinity.Group}
	}
	primeLast(&c.spec.mu, &c.spec.c, spec, f, "spec")
}

// mayHaveDevices is a cheap test of a VM spec: one without the keys
// "nics" and "disks" has no devices (no need to decode it).
func mayHaveDevices(spec []byte) bool {
	return bytes.Contains(spec, []byte(`"nics"`)) || bytes.Contains(spec, []byte(`"disks"`))
}

// mayHaveIndexed is mayHaveDevices for the index: the affinity group
// (issue 14) is indexed too.
func mayHaveIndexed(spec []byte) bool {
	return mayHaveDevices(spec) || bytes.Contains(spec, []byte(`"affinity"`))
}

// vmSpecIndexer indexes VM objects by values of their spec's devices (a
// multi-value index). Other kinds, and VMs without such values, are not in
// the index.
type vmSpecIndexer struct {
	values func(*vmSpecFields) []string
	last   *vmSpecCache
}

var (
	_ memdb.MultiIndexer  = (*vmSpecIndexer)(nil)
	_ memdb.PrefixIndexer = (*vmSpecIndexer)(nil)
)

func (x *vmSpecIndexer) FromObject(raw any) (bool, [][]byte, error) {
	o, ok := raw.(*resource.Object)
	if !ok {
		return false, nil, fmt.Errorf("fsm: index: unexpected %T", raw)
	}
	if o.Kind != resource.KindVM || len(o.Spec) == 0 {
		return false, nil, nil
	}
	f, ok := x.last.decode(o.Spec)
	if !ok {
		return false, nil, nil // a spec the index cannot read is not indexed
	}
	vals := x.values(&f)
	if len(vals) == 0 {
		return false, nil, nil
	}
	slices.Sort(vals)
	vals = slices.Compact(vals)
	out := make([][]byte, len(vals))
	for i, v := range vals {
		out[i] = []byte(v + "\x00")
	}
	return true, out, nil
}

// FromArgs joins its string arguments: a tag, then (network, ip) for
// indexNICAddr, one value for the others.
func (x *vmSpecIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("fsm: index takes an argument")
	}
	parts := make([]string, len(args))
	for i, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("fsm: index argument must be a string, not %T", a)
		}
		parts[i] = s
	}
	return []byte(strings.Join(parts, "\x00") + "\x00"), nil
}

// PrefixFromArgs is FromArgs: (indexNICAddr, network) lists a network's
// addresses.
func (x *vmSpecIndexer) PrefixFromArgs(args ...any) ([]byte, error) { return x.FromArgs(args...) }

// deviceValues are a VM spec's values of indexVMDevice.
func deviceValues(f *vmSpecFields) []string {
	var out []string
	for _, n := range f.NICs {
		if n.Network != "" && n.IP != "" {
			out = append(out, indexNICAddr+"\x00"+n.Network+"\x00"+n.IP)
		}
		if n.MAC != "" {
			out = append(out, indexNICMAC+"\x00"+n.MAC)
		}
		if n.Network != "" {
			out = append(out, indexVMNetwork+"\x00"+n.Network)
		}
	}
	for _, d := range f.Disks {
		if d.Volume != "" {
			out = append(out, indexVMVolume+"\x00"+d.Volume)
		}
	}
	if a := f.Affinity; a != nil && a.Group != "" {
		out = append(out, indexVMGroup+"\x00"+a.Group)
	}
	return out
}

// specIndexes are the device indexes of the objects table.
func specIndexes(c *vmSpecCache) map[string]*memdb.IndexSchema {
	return map[string]*memdb.IndexSchema{
		indexVMDevice: {Name: indexVMDevice, AllowMissing: true, Indexer: &vmSpecIndexer{values: deviceValues, last: c}},
	}
}

// vmsByDevice lists the names of the VMs with the device value tag, args
// (e.g. indexNICAddr, network, ip), in name order, without duplicates.
func vmsByDevice(txn *memdb.Txn, tag string, args ...any) ([]string, error) {
	it, err := txn.Get(tableObjects, indexVMDevice, append([]any{tag}, args...)...)
	if err != nil {
		return nil, err
	}
	var names []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		names = append(names, raw.(*resource.Object).Name)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// otherHolder is the first VM other than self with the device value tag,
// args, or "".
func otherHolder(txn *memdb.Txn, self, tag string, args ...any) (string, error) {
	names, err := vmsByDevice(txn, tag, args...)
	if err != nil {
		return "", err
	}
	for _, n := range names {
		if n != self {
			return n, nil
		}
	}
	return "", nil
}
