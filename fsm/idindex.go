package fsm

import (
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// The objects table's two unique indexes, written out: (kind, name) and
// the object id. They make exactly the keys memdb's CompoundIndex of two
// StringFieldIndexes and a StringFieldIndex make ("kind\x00name\x00",
// "id\x00"), so every query, prefix and order is unchanged; without
// reflection (StringFieldIndex finds the field by name on every insert
// and lookup) and with one allocation per key instead of four to six.
// Every insert computes every index's key, and every lookup by name one.

// objectIDIndexer indexes objects by kind and name (indexID; indexKind is
// its prefix query).
type objectIDIndexer struct{}

var (
	_ memdb.SingleIndexer = objectIDIndexer{}
	_ memdb.PrefixIndexer = objectIDIndexer{}
	_ memdb.SingleIndexer = objectUIDIndexer{}
)

func (objectIDIndexer) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*resource.Object)
	if !ok {
		return false, nil, fmt.Errorf("fsm: id index of a %T, not an object", raw)
	}
	if o.Kind == "" || o.Name == "" {
		return false, nil, nil // as the string indexers: an empty field is missing
	}
	return true, idKey(string(o.Kind), o.Name), nil
}

// FromArgs takes the kind and the name.
func (objectIDIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("non-equivalent argument count and index fields")
	}
	kind, ok := args[0].(string)
	name, ok2 := args[1].(string)
	if !ok || !ok2 {
		return nil, fmt.Errorf("arguments must be strings: %#v, %#v", args[0], args[1])
	}
	return idKey(kind, name), nil
}

// PrefixFromArgs takes nothing (every object), a kind prefix, or a kind
// and a name prefix.
func (objectIDIndexer) PrefixFromArgs(args ...any) ([]byte, error) {
	var parts [2]string
	for i, a := range args {
		s, ok := a.(string)
		if !ok || i >= len(parts) {
			return nil, fmt.Errorf("fsm: id index prefix: want at most a kind and a name prefix, got %#v", args)
		}
		parts[i] = s
	}
	switch len(args) {
	case 0:
		return nil, nil
	case 1:
		return []byte(parts[0]), nil
	}
	out := make([]byte, 0, len(parts[0])+1+len(parts[1]))
	out = append(out, parts[0]...)
	out = append(out, 0)
	return append(out, parts[1]...), nil
}

func idKey(kind, name string) []byte {
	return appendIDKey(make([]byte, 0, len(kind)+len(name)+2), kind, name)
}

// appendIDKey appends the id index's key of kind/name to b.
func appendIDKey(b []byte, kind, name string) []byte {
	b = append(b, kind...)
	b = append(b, 0)
	b = append(b, name...)
	return append(b, 0)
}

// objectUIDIndexer indexes objects by id (indexUID).
type objectUIDIndexer struct{}

func (objectUIDIndexer) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*resource.Object)
	if !ok {
		return false, nil, fmt.Errorf("fsm: uid index of a %T, not an object", raw)
	}
	if o.ID == "" {
		return false, nil, nil
	}
	return true, append(append(make([]byte, 0, len(o.ID)+1), o.ID...), 0), nil
}

// FromArgs takes the id.
func (objectUIDIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("must provide only a single argument")
	}
	id, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("argument must be a string: %#v", args[0])
	}
	return append(append(make([]byte, 0, len(id)+1), id...), 0), nil
}
