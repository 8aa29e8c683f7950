package fsm

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// Indexes of VMs by their devices (issue 13): the VM spec is the truth of
// who holds an address, a MAC or a volume, so these are all IPAM and
// attachment need.
const (
	indexNICAddr   = "vm_nic_addr" // VMs by (network, ip) of their NICs
	indexNICMAC    = "vm_nic_mac"  // VMs by the MACs of their NICs
	indexVMNetwork = "vm_network"  // VMs by the networks their NICs name
	indexVMVolume  = "vm_volume"   // VMs by the volumes their disks name
)

// vmSpecFields are the spec fields the device indexes need: decoding only
// them keeps indexing cheap on every insert.
type vmSpecFields struct {
	NICs  []resource.NIC `json:"nics"`
	Disks []struct {
		Volume string `json:"volume"`
	} `json:"disks"`
}

// vmSpecCache remembers the fields of the last spec decoded, by the
// identity of its bytes (an object's spec is never changed in place), as
// vmFieldsCache does for statuses.
type vmSpecCache struct {
	mu     sync.Mutex
	data   *byte
	n      int
	fields vmSpecFields
	ok     bool
}

func (c *vmSpecCache) decode(spec []byte) (vmSpecFields, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := unsafe.SliceData(spec); p != c.data || len(spec) != c.n {
		var f vmSpecFields
		// Cheap reject: a spec without devices has neither key.
		if !strings.Contains(unsafe.String(unsafe.SliceData(spec), len(spec)), `"nics"`) &&
			!strings.Contains(unsafe.String(unsafe.SliceData(spec), len(spec)), `"disks"`) {
			c.data, c.n, c.fields, c.ok = p, len(spec), f, true
			return c.fields, c.ok
		}
		err := json.Unmarshal(spec, &f)
		c.data, c.n, c.fields, c.ok = p, len(spec), f, err == nil
	}
	return c.fields, c.ok
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

// FromArgs joins its string arguments: (network, ip) for indexNICAddr,
// one value for the others.
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

// PrefixFromArgs is FromArgs: indexNICAddr's (network) prefix lists a
// network's addresses.
func (x *vmSpecIndexer) PrefixFromArgs(args ...any) ([]byte, error) { return x.FromArgs(args...) }

func nicAddrValues(f *vmSpecFields) []string {
	var out []string
	for _, n := range f.NICs {
		if n.Network != "" && n.IP != "" {
			out = append(out, n.Network+"\x00"+n.IP)
		}
	}
	return out
}

func nicMACValues(f *vmSpecFields) []string {
	var out []string
	for _, n := range f.NICs {
		if n.MAC != "" {
			out = append(out, n.MAC)
		}
	}
	return out
}

func vmNetworkValues(f *vmSpecFields) []string {
	var out []string
	for _, n := range f.NICs {
		if n.Network != "" {
			out = append(out, n.Network)
		}
	}
	return out
}

func vmVolumeValues(f *vmSpecFields) []string {
	var out []string
	for _, d := range f.Disks {
		if d.Volume != "" {
			out = append(out, d.Volume)
		}
	}
	return out
}

// specIndexes are the device indexes of the objects table.
func specIndexes() map[string]*memdb.IndexSchema {
	c := &vmSpecCache{}
	mk := func(name string, values func(*vmSpecFields) []string) *memdb.IndexSchema {
		return &memdb.IndexSchema{Name: name, AllowMissing: true, Indexer: &vmSpecIndexer{values: values, last: c}}
	}
	return map[string]*memdb.IndexSchema{
		indexNICAddr:   mk(indexNICAddr, nicAddrValues),
		indexNICMAC:    mk(indexNICMAC, nicMACValues),
		indexVMNetwork: mk(indexVMNetwork, vmNetworkValues),
		indexVMVolume:  mk(indexVMVolume, vmVolumeValues),
	}
}

// vmsByDevice lists the names of the VMs in index with the value args, in
// name order, without duplicates.
func vmsByDevice(txn *memdb.Txn, index string, args ...any) ([]string, error) {
	it, err := txn.Get(tableObjects, index, args...)
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

// otherHolder is the first VM other than self in index with value args,
// or "".
func otherHolder(txn *memdb.Txn, self, index string, args ...any) (string, error) {
	names, err := vmsByDevice(txn, index, args...)
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
