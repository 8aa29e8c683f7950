package fsm

import (
	"encoding/json"
	"fmt"

	"github.com/kumoi/kumoi/resource"
)

const (
	indexVMHost  = "vm_host"  // VMs by status.host
	indexVMPhase = "vm_phase" // VMs by status.phase
)

// vmStatusIndexer indexes VM objects by one field of their status. Other
// kinds, and VMs whose field is empty, are not in the index.
type vmStatusIndexer struct {
	field func(*vmIndexFields) string
}

// vmIndexFields are the status fields the indexes need: decoding only them
// (no time parsing) keeps indexing cheap on every insert.
type vmIndexFields struct {
	Phase string `json:"phase"`
	Host  string `json:"host"`
}

func (x *vmStatusIndexer) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*resource.Object)
	if !ok {
		return false, nil, fmt.Errorf("fsm: index: unexpected %T", raw)
	}
	if o.Kind != resource.KindVM || len(o.Status) == 0 {
		return false, nil, nil
	}
	var st vmIndexFields
	if err := json.Unmarshal(o.Status, &st); err != nil {
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
