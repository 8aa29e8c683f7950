package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
)

// Kind names an object kind, e.g. "vm" or "host".
type Kind string

// Object is the uniform shape of every Kumoi object. Spec is what users want,
// Status what the system observed. Spec and Status are kept as canonical JSON
// (produced by the kind's typed structs) so that the state store can treat
// every kind alike; read them with DecodeSpec and DecodeStatus (or, for
// display, VMStateOf and HostStateOf).
//
// Objects returned by the state store are shared and must not be modified:
// Copy first.
type Object struct {
	Kind        Kind              `json:"kind"`
	Name        string            `json:"name"`
	ID          string            `json:"id"`
	Labels      map[string]string `json:"labels"`
	CreateIndex uint64            `json:"create_index"`
	ModifyIndex uint64            `json:"modify_index"`
	// ModifiedBy is the accessor ID of the token of the last write made
	// with one (the controllers' own writes keep it; omitted with ACLs
	// off). A policy runs with this accessor's rights.
	ModifiedBy string          `json:"modified_by,omitempty"`
	Spec       json.RawMessage `json:"spec"`
	Status     json.RawMessage `json:"status"`
}

// Copy returns a deep copy of o.
func (o *Object) Copy() *Object {
	if o == nil {
		return nil
	}
	c := *o
	c.Labels = maps.Clone(o.Labels)
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	c.Spec = bytes.Clone(o.Spec)
	c.Status = bytes.Clone(o.Status)
	return &c
}

// Equal reports whether two objects are identical field by field.
func (o *Object) Equal(p *Object) bool {
	if o == nil || p == nil {
		return o == p
	}
	return o.Kind == p.Kind && o.Name == p.Name && o.ID == p.ID &&
		o.CreateIndex == p.CreateIndex && o.ModifyIndex == p.ModifyIndex && o.ModifiedBy == p.ModifiedBy &&
		maps.Equal(o.Labels, p.Labels) && bytes.Equal(o.Spec, p.Spec) &&
		bytes.Equal(o.Status, p.Status)
}

// String is a short human form: "vm/web".
func (o *Object) String() string { return fmt.Sprintf("%s/%s", o.Kind, o.Name) }

// SortedLabelKeys returns the label keys in order, for stable output.
func SortedLabelKeys(l map[string]string) []string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CreateRequest is the body of POST /v1/{kind}s.
type CreateRequest struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Spec   json.RawMessage   `json:"spec"`
}

// UpdateRequest is the body of PUT /v1/{kind}s/{name}. It takes an object
// exactly as GET returned it: the system-owned fields (kind, name, id,
// indexes, status) are accepted and ignored; labels and spec replace the
// stored ones.
type UpdateRequest struct {
	Kind        Kind              `json:"kind,omitempty"`
	Name        string            `json:"name,omitempty"`
	ID          string            `json:"id,omitempty"`
	Labels      map[string]string `json:"labels"`
	CreateIndex uint64            `json:"create_index,omitempty"`
	ModifyIndex uint64            `json:"modify_index,omitempty"`
	ModifiedBy  string            `json:"modified_by,omitempty"`
	Spec        json.RawMessage   `json:"spec"`
	Status      json.RawMessage   `json:"status,omitempty"`
}
