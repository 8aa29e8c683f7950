package fsm

import (
	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

const (
	tableObjects = "objects"
	tableIndex   = "index"

	indexID   = "id"   // kind + name, unique
	indexUID  = "uid"  // object id (UUID), unique
	indexKind = "kind" // kind, for listing
)

// indexEntry records the Raft index of the last change to a kind.
type indexEntry struct {
	Key   string `json:"key"`
	Value uint64 `json:"value"`
}

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{
		Tables: map[string]*memdb.TableSchema{
			tableObjects: {
				Name: tableObjects,
				Indexes: map[string]*memdb.IndexSchema{
					indexID: {
						Name:   indexID,
						Unique: true,
						Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
							&memdb.StringFieldIndex{Field: "Kind"},
							&memdb.StringFieldIndex{Field: "Name"},
						}},
					},
					indexUID: {
						Name:    indexUID,
						Unique:  true,
						Indexer: &memdb.StringFieldIndex{Field: "ID"},
					},
					indexKind: {
						Name:    indexKind,
						Indexer: &memdb.StringFieldIndex{Field: "Kind"},
					},
					indexVMHost: {
						Name:         indexVMHost,
						AllowMissing: true,
						Indexer:      &vmStatusIndexer{field: func(s *resource.VMStatus) string { return s.Host }},
					},
					indexVMPhase: {
						Name:         indexVMPhase,
						AllowMissing: true,
						Indexer:      &vmStatusIndexer{field: func(s *resource.VMStatus) string { return s.Phase }},
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
}
