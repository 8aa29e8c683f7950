package fsm

import (
	"bytes"
	"testing"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// FuzzIDIndexers: the hand-written indexers of the objects table make
// exactly the keys (and errors) of the memdb indexers they replace, for
// objects, lookups and prefix queries.
func FuzzIDIndexers(f *testing.F) {
	f.Add("vm", "web-1", "6a1f4e0c-2b7d-4c39-9a51-0d3e8f7b2c11", "we")
	f.Add("host", "", "", "")
	f.Add("", "x", "id", "x")
	f.Add("vm\x00", "a\x00b", "é", "\x00")
	idWas := &memdb.CompoundIndex{Indexes: []memdb.Indexer{
		&memdb.StringFieldIndex{Field: "Kind"},
		&memdb.StringFieldIndex{Field: "Name"},
	}}
	uidWas := &memdb.StringFieldIndex{Field: "ID"}
	id, uid := objectIDIndexer{}, objectUIDIndexer{}
	same := func(t *testing.T, what string, gotOK bool, got []byte, gotErr error, wantOK bool, want []byte, wantErr error) {
		t.Helper()
		if gotOK != wantOK || !bytes.Equal(got, want) || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%s: %v %q %v, memdb's indexer %v %q %v", what, gotOK, got, gotErr, wantOK, want, wantErr)
		}
	}
	f.Fuzz(func(t *testing.T, kind, name, oid, prefix string) {
		o := &resource.Object{Kind: resource.Kind(kind), Name: name, ID: oid}
		ok, got, err := id.FromObject(o)
		wok, want, werr := idWas.FromObject(o)
		same(t, "id FromObject", ok, got, err, wok, want, werr)
		ok, got, err = uid.FromObject(o)
		wok, want, werr = uidWas.FromObject(o)
		same(t, "uid FromObject", ok, got, err, wok, want, werr)

		got, err = id.FromArgs(kind, name)
		want, werr = idWas.FromArgs(kind, name)
		same(t, "id FromArgs", true, got, err, true, want, werr)
		got, err = id.FromArgs(kind)
		want, werr = idWas.FromArgs(kind)
		same(t, "id FromArgs, one argument", true, got, err, true, want, werr)
		got, err = uid.FromArgs(oid)
		want, werr = uidWas.FromArgs(oid)
		same(t, "uid FromArgs", true, got, err, true, want, werr)
		for _, args := range [][]any{{}, {kind}, {kind, prefix}, {kind, name, prefix}, {1}} {
			got, err = id.PrefixFromArgs(args...)
			want, werr = idWas.PrefixFromArgs(args...)
			same(t, "id PrefixFromArgs", true, got, err, true, want, werr)
		}
	})
}
