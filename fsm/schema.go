package fsm

import (
	"maps"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

const (
	tableObjects = "objects"
	tableIndex   = "index"
	tableMeta    = "meta"

	indexID  = "id"  // kind + name, unique
	indexUID = "uid" // object id (UUID), unique
	// indexKind lists one kind: a prefix query on the (kind, name) index
	// (no index of its own: each one costs every insert on every node).
	indexKind = indexID + "_prefix"
)

// indexEntry records the Raft index of the last change to a kind.
type indexEntry struct {
	Key   string `json:"key"`
	Value uint64 `json:"value"`
}

// indexCaches are the caches of one state store's indexers, which its
// writers prime (primeStatusFields, primeSpecFields): what they hold
// depends on nothing but the bytes, but stores that share a process (the
// benchmarks' three controllers) would evict each other's entries.
type indexCaches struct {
	status vmFieldsCache
	spec   vmSpecCache
}

func schema(c *indexCaches) *memdb.DBSchema {
	vmFields := &c.status
	s := &memdb.DBSchema{
		Tables: map[string]*memdb.TableSchema{
			tableObjects: {
				Name: tableObjects,
				Indexes: map[string]*memdb.IndexSchema{
					indexID: {
						Name:    indexID,
						Unique:  true,
						Indexer: objectIDIndexer{}, // idindex.go
					},
					indexUID: {
						Name:    indexUID,
						Unique:  true,
						Indexer: objectUIDIndexer{},
					},
					indexVMHost: {
						Name:         indexVMHost,
						AllowMissing: true,
						Indexer:      &vmStatusIndexer{field: func(s *vmIndexFields) string { return s.Host }, last: vmFields},
					},
					indexVMTarget: {
						Name:         indexVMTarget,
						AllowMissing: true,
						Indexer:      &vmStatusIndexer{field: (*vmIndexFields).target, last: vmFields},
					},
					indexVMPhase: {
						Name:         indexVMPhase,
						AllowMissing: true,
						Indexer:      &vmStatusIndexer{field: func(s *vmIndexFields) string { return s.Phase }, last: vmFields},
					},
				},
			},
			tableACLPolicies: {
				Name: tableACLPolicies,
				Indexes: map[string]*memdb.IndexSchema{
					indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
				},
			},
			tableACLTokens: {
				Name: tableACLTokens,
				Indexes: map[string]*memdb.IndexSchema{
					indexID:     {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "AccessorID"}},
					indexSecret: {Name: indexSecret, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "SecretHash"}},
				},
			},
			tableMeta: {
				Name: tableMeta,
				Indexes: map[string]*memdb.IndexSchema{
					indexID: {
						Name:    indexID,
						Unique:  true,
						Indexer: &memdb.StringFieldIndex{Field: "Key"},
					},
				},
			},
			tableIndex: {
				Name: tableIndex,
				Indexes: map[string]*memdb.IndexSchema{
					indexID: {
						Name:    indexID,
						Unique:  true,
						Indexer: &memdb.StringFieldIndex{Field: "Key"},
					},
				},
			},
		},
	}
	for name, ix := range specIndexes(&c.spec) {
		s.Tables[tableObjects].Indexes[name] = ix
	}
	maps.Copy(s.Tables[tableObjects].Indexes, projectIndexes())
	return s
}

// kindPrefix is the argument of an indexKind query: the kind with the
// string indexer's terminator, so that "vm" does not also match a kind
// that starts with "vm".
func kindPrefix(kind resource.Kind) string { return string(kind) + "\x00" }

// hostsPrefix is the id index's prefix of every host (what an indexKind
// query of kindPrefix(resource.KindHost) looks for), made once: every VM
// create asks whether there is any host.
var hostsPrefix = []byte(kindPrefix(resource.KindHost))
