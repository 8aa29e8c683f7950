package fsm

import (
	"encoding/json"
	"fmt"
	"sync"
	"unsafe"

	"github.com/kumoi/kumoi/resource"
)

const (
	indexVMHost  = "vm_host"  // VMs by status.host
	indexVMPhase = "vm_phase" // VMs by status.phase
	// indexVMTarget: VMs by status.migration.target (the host a
	// migration under way reserves, besides status.host).
	indexVMTarget = "vm_target"
)

// vmStatusIndexer indexes VM objects by one field of their status. Other
// kinds, and VMs whose field is empty, are not in the index.
type vmStatusIndexer struct {
	field func(*vmIndexFields) string
	// last is shared by the indexers of one schema: memdb asks each index
	// about the same object in turn, so the status is decoded once.
	last *vmFieldsCache
}

// vmFieldsCache remembers the fields of the last status decoded, by the
// identity of its bytes (an object's status is never changed in place).
type vmFieldsCache struct {
	mu     sync.Mutex
	data   *byte
	n      int
	fields vmIndexFields
	ok     bool
}

func (c *vmFieldsCache) decode(status []byte) (vmIndexFields, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := unsafe.SliceData(status); p != c.data || len(status) != c.n {
		var st vmIndexFields
		err := json.Unmarshal(status, &st)
		c.data, c.n, c.fields, c.ok = p, len(status), st, err == nil
	}
	return c.fields, c.ok
}

// vmIndexFields are the status fields the indexes need: decoding only them
// (no time parsing) keeps indexing cheap on every insert.
type vmIndexFields struct {
	Phase     string `json:"phase"`
	Host      string `json:"host"`
	Migration *struct {
		Target string `json:"target"`
	} `json:"migration"`
}

// target is the host a migration under way moves the VM to ("" if none).
func (f *vmIndexFields) target() string {
	if f.Migration == nil {
		return ""
	}
	return f.Migration.Target
}

func (x *vmStatusIndexer) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*resource.Object)
	if !ok {
		return false, nil, fmt.Errorf("fsm: index: unexpected %T", raw)
	}
	if o.Kind != resource.KindVM || len(o.Status) == 0 {
		return false, nil, nil
	}
	st, ok := x.last.decode(o.Status)
	if !ok {
		// A status the index cannot read is simply not indexed.
		return false, nil, nil
	}
	v := x.field(&st)
	if v == "" {
		return false, nil, nil
	}
	return true, []byte(v + "\x00"), nil
}

func (x *vmStatusIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("fsm: index takes one argument")
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("fsm: index argument must be a string, not %T", args[0])
	}
	return []byte(s + "\x00"), nil
}
