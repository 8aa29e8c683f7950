package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

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

// vmFieldsCache remembers the fields of the last two statuses decoded,
// by their bytes (memdb asks each index about an updated object's new
// and old version in turn).
type vmFieldsCache struct {
	mu sync.Mutex
	c  lastTwo[vmIndexFields]
}

func (c *vmFieldsCache) decode(status []byte) (vmIndexFields, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c.get(status, func(b []byte) (vmIndexFields, bool) {
		var st vmIndexFields
		err := json.Unmarshal(b, &st)
		return st, err == nil
	})
}

// primeStatusFields gives the status indexes' cache what they would
// decode of status, whose whole decode is st: a VM status the writer
// decoded (its object is about to be replaced) or encoded (the new
// object's), which memdb's insert indexes in turn, then without a
// decode. (On a placement these decodes were a tenth of the apply.)
// vmIndexFields are VMStatus's phase, host and migration target under
// the same names and types, so the value is the one json.Unmarshal
// gives (the fsm tests check it, checkApplyCaches).
func primeStatusFields(c *indexCaches, status []byte, st *resource.VMStatus) {
	if c == nil || len(status) == 0 {
		return // not indexed
	}
	f := vmIndexFields{Phase: st.Phase, Host: st.Host}
	if st.Migration != nil {
		f.Migration = &struct {
			Target string `json:"target"`
		}{st.Migration.Target}
	}
	primeLast(&c.status.mu, &c.status.c, status, f, "status")
}

// primeLast remembers v as what b decodes to in c (guarded by mu): v is
// what the writer knows b decodes to. With checkApplyCaches (the fsm
// tests) it first checks that against json.Unmarshal, and panics (a
// halt, in an apply) if they differ; what names the fields.
func primeLast[T any](mu *sync.Mutex, c *lastTwo[T], b []byte, v T, what string) {
	if checkApplyCaches {
		var want T
		if err := json.Unmarshal(b, &want); err != nil || !reflect.DeepEqual(want, v) {
			panic(fmt.Sprintf("fsm: %s fields primed as %+v, not %+v (%v)", what, v, want, err))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	c.put(b, v, true)
}

// lastTwo remembers the values decoded from the last two byte strings
// (copies of them: a value depends on nothing but the bytes).
type lastTwo[T any] struct {
	data [2][]byte
	v    [2]T
	ok   [2]bool
	set  [2]bool
	next int
}

// get is decode(b), from memory if b is one of the last two.
func (c *lastTwo[T]) get(b []byte, decode func([]byte) (T, bool)) (T, bool) {
	for i := range c.data {
		if c.set[i] && bytes.Equal(c.data[i], b) {
			return c.v[i], c.ok[i]
		}
	}
	v, ok := decode(b)
	c.put(b, v, ok)
	return v, ok
}

// put remembers (v, ok) as what b decodes to, in place of the older of
// the two.
func (c *lastTwo[T]) put(b []byte, v T, ok bool) {
	for i := range c.data {
		if c.set[i] && bytes.Equal(c.data[i], b) {
			return
		}
	}
	i := c.next
	c.data[i], c.v[i], c.ok[i], c.set[i] = bytes.Clone(b), v, ok, true
	c.next = 1 - i
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
