package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// ModifyAttempts bounds the read-change-write rounds of VMs.Modify,
// Hosts.Modify, Hosts.Drain and Hosts.Enable when the object keeps changing
// between the read and the compare-and-set write.
const ModifyAttempts = 5

// blockingWait is how long one blocking read of a wait loop waits for a
// change before it is sent again.
const blockingWait = 30 * time.Second

// Modify is a read-modify-write of one object with compare-and-set: it
// reads the object, asks change for the object to write (nil: nothing to
// write, the object is returned as read), and writes it with CAS on the
// modify_index it read; when the object changed in between, it reads and
// asks again, up to ModifyAttempts times. The CAS makes the write safe to
// retry: a resent write that had been applied fails with ErrCASMismatch and
// is read again.
func (c *Client) Modify(ctx context.Context, kind resource.Kind, name string, change func(cur *resource.Object) (*resource.Object, error)) (*resource.Object, error) {
	if err := checkName(kind, name); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		cur, _, err := c.Get(ctx, kind, name, nil)
		if err != nil {
			return nil, err
		}
		next, err := change(cur.Copy())
		if err != nil || next == nil {
			if err != nil {
				return nil, err
			}
			return cur, nil
		}
		o, err := c.Update(ctx, kind, name, next, &WriteOptions{CAS: cur.ModifyIndex})
		switch {
		case errors.Is(err, ErrCASMismatch) && attempt < ModifyAttempts:
			continue
		case errors.Is(err, ErrCASMismatch):
			return nil, fmt.Errorf("%s %q kept changing while it was being updated (%d attempts), so nothing was written: %w",
				kind, name, ModifyAttempts, err)
		case err != nil:
			return nil, err
		}
		return o, nil
	}
}

// decodeObject checks that o is an object of kind and decodes its spec
// and status: the common part of NewVM, NewHost and NewPolicy.
func decodeObject[S, T any](o *resource.Object, kind resource.Kind) (*S, *T, error) {
	if o == nil {
		return nil, nil, fmt.Errorf("%s object is nil", kind)
	}
	if o.Kind != kind {
		return nil, nil, fmt.Errorf("%s is not a %s", o, kind)
	}
	spec, err := resource.DecodeSpec[S](o)
	if err != nil {
		return nil, nil, err
	}
	st, err := resource.DecodeStatus[T](o)
	if err != nil {
		return nil, nil, err
	}
	return spec, st, nil
}

// decodeAll decodes objs into their typed views with decode (NewVM,
// NewHost, NewPolicy), failing on the first that does not decode. The
// slice is empty, never nil, when objs is.
func decodeAll[X any](objs []*resource.Object, decode func(*resource.Object) (X, error)) ([]X, error) {
	out := make([]X, 0, len(objs))
	for _, o := range objs {
		x, err := decode(o)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// getAs reads one object of kind and decodes it into its typed view with
// decode; the meta of the read is returned even when decode fails.
func getAs[X any](ctx context.Context, c *Client, kind resource.Kind, name string, opts *QueryOptions, decode func(*resource.Object) (X, error)) (X, *QueryMeta, error) {
	o, meta, err := c.Get(ctx, kind, name, opts)
	if err != nil {
		var none X
		return none, meta, err
	}
	x, err := decode(o)
	return x, meta, err
}

// PatchSpec returns a copy of o whose spec has the fields in changes set,
// keeping the others as they are, including spec fields this client does
// not know (an older client does not drop what a newer server added).
func PatchSpec(o *resource.Object, changes map[string]any) (*resource.Object, error) {
	spec := map[string]json.RawMessage{}
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		return nil, fmt.Errorf("%s: cannot read its spec: %w", o, err)
	}
	for k, v := range changes {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		spec[k] = raw
	}
	next := o.Copy()
	var err error
	if next.Spec, err = json.Marshal(spec); err != nil {
		return nil, err
	}
	return next, nil
}

// encodeSpec returns a copy of o with spec as its spec.
func encodeSpec(o *resource.Object, spec any) (*resource.Object, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: encode spec: %w", o, err)
	}
	// Keep the spec fields this client does not know (a newer server's):
	// the typed spec owns only its own fields, set or cleared.
	var old map[string]json.RawMessage
	if len(o.Spec) > 0 && json.Unmarshal(o.Spec, &old) == nil && len(old) > 0 {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			return nil, fmt.Errorf("%s: encode spec: %w", o, err)
		}
		known := jsonFields(reflect.TypeOf(spec))
		for k, v := range old {
			if _, set := fields[k]; !set && !known[k] {
				fields[k] = v
			}
		}
		if raw, err = json.Marshal(fields); err != nil {
			return nil, fmt.Errorf("%s: encode spec: %w", o, err)
		}
	}
	next := o.Copy()
	next.Spec = raw
	return next, nil
}

// jsonFields lists the JSON names of a struct type's fields (t may be a
// pointer to it).
func jsonFields(t reflect.Type) map[string]bool {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	out := map[string]bool{}
	if t == nil || t.Kind() != reflect.Struct {
		return out
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = true
	}
	return out
}
