package fsm

import (
	"testing"

	"github.com/google/uuid"
	iradix "github.com/hashicorp/go-immutable-radix"
	"github.com/kumoi/kumoi/resource"
)

// BenchmarkUIDIndexInsert inserts ids, 32 per transaction (a batch of
// creates applied together), into a radix tree that holds 100,000 ids
// already, as the uid index does: random ids (version 4, Kumoi's object
// ids before 2026-12-04) against resource.NewObjectID's time-ordered ones.
//
//	go test -run '^$' -bench UIDIndexInsert -benchmem ./fsm/
func BenchmarkUIDIndexInsert(b *testing.B) {
	for _, c := range []struct {
		name string
		id   func() string
	}{{"random-v4", uuid.NewString}, {"ordered-v7", resource.NewObjectID}} {
		b.Run(c.name, func(b *testing.B) {
			txn := iradix.New().Txn()
			for range 100000 {
				txn.Insert([]byte(c.id()+"\x00"), struct{}{})
			}
			t := txn.Commit()
			keys := make([][]byte, b.N)
			for i := range keys {
				keys[i] = []byte(c.id() + "\x00")
			}
			b.ResetTimer()
			for i := 0; i < b.N; i += 32 {
				txn := t.Txn()
				for _, k := range keys[i:min(i+32, b.N)] {
					txn.Insert(k, struct{}{})
				}
				t = txn.Commit()
			}
		})
	}
}
