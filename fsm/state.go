package fsm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// Store is the state store: a go-memdb database of objects and per-kind
// change indexes. Readers never block the writer; Restore swaps in a new
// database and closes the old one's abandon channel so blocked readers retry.
type Store struct {
	mu      sync.RWMutex
	db      *memdb.MemDB
	abandon chan struct{}
	// caches are the indexers' caches of every database of this store
	// (a restore's too).
	caches *indexCaches
}

// NewStore returns an empty store.
func NewStore() *Store {
	c := &indexCaches{}
	db, err := memdb.NewMemDB(schema(c))
	if err != nil {
		// The schema is static; this only fails if the code is wrong.
		panic(fmt.Sprintf("fsm: bad schema: %v", err))
	}
	return &Store{db: db, abandon: make(chan struct{}), caches: c}
}

func (s *Store) current() (*memdb.MemDB, chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db, s.abandon
}

// AbandonCh is closed when the store is replaced by a restore.
func (s *Store) AbandonCh() <-chan struct{} {
	_, ch := s.current()
	return ch
}

// swap replaces the database and wakes every blocked reader.
func (s *Store) swap(db *memdb.MemDB) {
	s.mu.Lock()
	old := s.abandon
	s.db = db
	s.abandon = make(chan struct{})
	s.mu.Unlock()
	close(old)
}

// ReadTxn returns a read transaction on the current database.
func (s *Store) ReadTxn() *memdb.Txn {
	db, _ := s.current()
	return db.Txn(false)
}

func indexKey(kind resource.Kind) string { return "objects/" + string(kind) }

// (Snapshots from before LatestIndex was computed may hold an "_all" index
// record: it equals the largest per-kind index, so it changes nothing.)

// Get returns the object kind/name or nil. ws, if non-nil, is added the
// channels that fire when the answer may change.
func (s *Store) Get(ws memdb.WatchSet, kind resource.Kind, name string) (*resource.Object, error) {
	return getTxn(s.ReadTxn(), ws, kind, name)
}

func getTxn(txn *memdb.Txn, ws memdb.WatchSet, kind resource.Kind, name string) (*resource.Object, error) {
	var raw any
	var err error
	if ws == nil {
		// No watch channel: the radix tree makes one only when asked
		// (third_party/go-immutable-radix/KUMOI.md), and a writer's lookups
		// need none; the key is built here, on the stack when it fits
		// (memdb's First boxes its arguments and builds it on the heap).
		var kb [96]byte
		raw = txn.GetUnique(tableObjects, indexID, appendIDKey(kb[:0], string(kind), name))
	} else {
		var ch <-chan struct{}
		ch, raw, err = txn.FirstWatch(tableObjects, indexID, string(kind), name)
		ws.Add(ch)
	}
	if err != nil {
		return nil, fmt.Errorf("fsm: get %s/%s: %w", kind, name, err)
	}
	if raw == nil {
		return nil, nil
	}
	return raw.(*resource.Object), nil
}

// GetWithIndex is Get plus the kind's index, read in one transaction so the
// index is exactly the state the answer reflects.
func (s *Store) GetWithIndex(ws memdb.WatchSet, kind resource.Kind, name string) (*resource.Object, uint64, error) {
	txn := s.ReadTxn()
	o, err := getTxn(txn, ws, kind, name)
	return o, indexTxn(txn, indexKey(kind)), err
}

// ListWithIndex is List plus the kind's index, read in one transaction.
func (s *Store) ListWithIndex(ws memdb.WatchSet, kind resource.Kind, sel resource.Selector) ([]*resource.Object, uint64, error) {
	txn := s.ReadTxn()
	out, err := listTxn(txn, ws, kind, sel)
	return out, indexTxn(txn, indexKey(kind)), err
}

// List returns every object of kind that matches sel, in name order.
func (s *Store) List(ws memdb.WatchSet, kind resource.Kind, sel resource.Selector) ([]*resource.Object, error) {
	return listTxn(s.ReadTxn(), ws, kind, sel)
}

func listTxn(txn *memdb.Txn, ws memdb.WatchSet, kind resource.Kind, sel resource.Selector) ([]*resource.Object, error) {
	it, err := txn.Get(tableObjects, indexKind, kindPrefix(kind))
	if err != nil {
		return nil, fmt.Errorf("fsm: list %s: %w", kind, err)
	}
	watchIter(ws, it)
	out := []*resource.Object{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		o := raw.(*resource.Object)
		if sel.Matches(o.Labels) {
			out = append(out, o)
		}
	}
	// The kind index iterates in insertion-key order (kind, then the
	// radix tree's order of the primary key), which is name order.
	return out, nil
}

// ListPageWithIndex is a page of List: in name order, at most limit
// objects of kind whose names are at or after start and that match sel and
// keep (nil keeps all), the name of the next such object ("" when there is
// none), and the kind's index, read in one transaction. It reads the kind
// only up to that next object, so a page costs what it holds, not what the
// kind holds (a walk over 150,000 VMs in pages of 1,000 read every VM for
// every page before). ws gets the channel of the kind's index, which fires
// on every change to the kind.
func (s *Store) ListPageWithIndex(ws memdb.WatchSet, kind resource.Kind, sel resource.Selector, start string, limit int,
	keep func(*resource.Object) bool) ([]*resource.Object, string, uint64, error) {
	txn := s.ReadTxn()
	ch, _, err := txn.FirstWatch(tableIndex, indexID, indexKey(kind))
	if err != nil {
		return nil, "", 0, fmt.Errorf("fsm: list %s: %w", kind, err)
	}
	ws.Add(ch)
	idx := indexTxn(txn, indexKey(kind))
	it, err := txn.LowerBound(tableObjects, indexID, string(kind), start)
	if err != nil {
		return nil, "", 0, fmt.Errorf("fsm: list %s: %w", kind, err)
	}
	out := []*resource.Object{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		o := raw.(*resource.Object)
		if o.Kind != kind {
			break // the next kind's objects
		}
		if !sel.Matches(o.Labels) || keep != nil && !keep(o) {
			continue
		}
		if len(out) == limit {
			return out, o.Name, idx, nil
		}
		out = append(out, o)
	}
	return out, "", idx, nil
}

// watchIter adds the iterator's channel to ws, if there is a watch set: the radix
// tree makes the channel only when asked for it.
func watchIter(ws memdb.WatchSet, it memdb.ResultIterator) {
	if ws != nil {
		ws.Add(it.WatchCh())
	}
}

// Index returns the Raft index of the last change to kind (0 if none).
func (s *Store) Index(kind resource.Kind) uint64 {
	return indexTxn(s.ReadTxn(), indexKey(kind))
}

// IndexWatch is Index, adding to ws a channel that fires when it changes.
func (s *Store) IndexWatch(ws memdb.WatchSet, kind resource.Kind) uint64 {
	ch, raw, err := s.ReadTxn().FirstWatch(tableIndex, indexID, indexKey(kind))
	if err != nil {
		return 0
	}
	ws.Add(ch)
	if raw == nil {
		return 0
	}
	return raw.(*indexEntry).Value
}

// LatestIndex returns the Raft index of the last change of any kind: the
// largest per-kind index (a handful of entries).
func (s *Store) LatestIndex() uint64 {
	it, err := s.ReadTxn().Get(tableIndex, indexID)
	if err != nil {
		return 0
	}
	var latest uint64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		latest = max(latest, raw.(*indexEntry).Value)
	}
	return latest
}

func indexTxn(txn *memdb.Txn, key string) uint64 {
	raw, err := txn.First(tableIndex, indexID, key)
	if err != nil || raw == nil {
		return 0
	}
	return raw.(*indexEntry).Value
}

func bumpIndex(txn *memdb.Txn, kind resource.Kind, index uint64) error {
	key := indexKey(kind)
	if indexTxn(txn, key) >= index {
		return nil
	}
	if err := txn.Insert(tableIndex, &indexEntry{Key: key, Value: index}); err != nil {
		return fmt.Errorf("fsm: update index %s: %w", key, err)
	}
	return nil
}

// Count returns the number of objects of kind.
func (s *Store) Count(kind resource.Kind) int {
	it, err := s.ReadTxn().Get(tableObjects, indexKind, kindPrefix(kind))
	if err != nil {
		return 0
	}
	n := 0
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n++
	}
	return n
}

// Digest returns a hash of the whole replicated state (objects, indexes
// and the cluster's identity), equal on two stores exactly when their states are equal.
func (s *Store) Digest() string {
	h := sha256.New()
	txn := s.ReadTxn()
	it, err := txn.Get(tableObjects, indexID)
	if err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			b, _ := json.Marshal(canonical(raw.(*resource.Object)))
			_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
			h.Write(b)
		}
	}
	it, err = txn.Get(tableIndex, indexID)
	if err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			e := raw.(*indexEntry)
			fmt.Fprintf(h, "%s=%d;", e.Key, e.Value)
		}
	}
	it, err = txn.Get(tableMeta, indexID)
	if err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			e := raw.(*metaEntry)
			fmt.Fprintf(h, "meta:%q=%q;", e.Key, e.Value)
		}
	}
	it, err = txn.Get(tableACLPolicies, indexID)
	if err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			b, _ := json.Marshal(raw)
			fmt.Fprintf(h, "acl_policy:%s;", b)
		}
	}
	it, err = txn.Get(tableACLTokens, indexID)
	if err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			b, _ := json.Marshal(raw)
			fmt.Fprintf(h, "acl_token:%s;", b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// canonical normalises the representation differences that do not matter
// (nil vs empty labels).
func canonical(o *resource.Object) *resource.Object {
	c := *o
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	return &c
}

// Watch blocks until ws fires, ctx ends or the store is restored. It
// returns false when ctx ended. A caller that read the state before calling
// Watch should have added AbandonCh() to ws before that read, or a restore in
// between goes unnoticed; BlockingQuery does so.
func (s *Store) Watch(ctx context.Context, ws memdb.WatchSet) bool {
	ws.Add(s.AbandonCh())
	return ws.WatchCtx(ctx) == nil
}

// BlockingQuery runs query until the index it returns exceeds minIndex, or
// ctx ends (typically the ?wait deadline), and returns the last result's
// index. query must add what it reads to ws.
func (s *Store) BlockingQuery(ctx context.Context, minIndex uint64, query func(ws memdb.WatchSet) (uint64, error)) (uint64, error) {
	for {
		// Take the abandon channel before reading, so that a Restore
		// landing between the read and the wait still wakes us.
		ws := memdb.NewWatchSet()
		ws.Add(s.AbandonCh())
		idx, err := query(ws)
		if err != nil || minIndex == 0 || idx > minIndex {
			return idx, err
		}
		if ws.WatchCtx(ctx) != nil {
			return idx, nil
		}
	}
}

// entryLabels is the labels map of an object written from a command: the
// command's own, which its applier decoded from the log entry and
// nothing else holds (so no copy), or an empty one.
func entryLabels(l map[string]string) map[string]string {
	if l == nil {
		return map[string]string{}
	}
	return l
}

func cloneLabels(l map[string]string) map[string]string {
	if len(l) == 0 {
		return map[string]string{}
	}
	return maps.Clone(l)
}

// VMsInPhase returns the VMs whose status.phase is phase, in name order.
func (s *Store) VMsInPhase(ws memdb.WatchSet, phase string) ([]*resource.Object, error) {
	return s.vmsBy(ws, indexVMPhase, phase)
}

// VMsOnHost returns the VMs whose status.host is host, in name order.
func (s *Store) VMsOnHost(ws memdb.WatchSet, host string) ([]*resource.Object, error) {
	return s.vmsBy(ws, indexVMHost, host)
}

// VMsMigratingTo returns the VMs whose migration under way targets host,
// in name order.
func (s *Store) VMsMigratingTo(ws memdb.WatchSet, host string) ([]*resource.Object, error) {
	return s.vmsBy(ws, indexVMTarget, host)
}

// VMsForHostWithIndex is what a host's worker reads: the VMs on host and
// those migrating to it (name order, each once), plus the VM kind's
// index, read in one transaction (for blocking queries).
func (s *Store) VMsForHostWithIndex(ws memdb.WatchSet, host string) ([]*resource.Object, uint64, error) {
	txn := s.ReadTxn()
	on, err := vmsByTxn(txn, ws, indexVMHost, host)
	if err != nil {
		return nil, 0, err
	}
	in, err := vmsByTxn(txn, ws, indexVMTarget, host)
	if err != nil {
		return nil, 0, err
	}
	if len(in) > 0 {
		on = append(on, in...)
		slices.SortFunc(on, func(a, b *resource.Object) int { return strings.Compare(a.Name, b.Name) })
	}
	return on, indexTxn(txn, indexKey(resource.KindVM)), nil
}

// VMsOnHostWithIndex is VMsOnHost plus the VM kind's index, read in one
// transaction (for blocking queries).
func (s *Store) VMsOnHostWithIndex(ws memdb.WatchSet, host string) ([]*resource.Object, uint64, error) {
	txn := s.ReadTxn()
	out, err := vmsByTxn(txn, ws, indexVMHost, host)
	return out, indexTxn(txn, indexKey(resource.KindVM)), err
}

func (s *Store) vmsBy(ws memdb.WatchSet, index, value string) ([]*resource.Object, error) {
	return vmsByTxn(s.ReadTxn(), ws, index, value)
}

func vmsByTxn(txn *memdb.Txn, ws memdb.WatchSet, index, value string) ([]*resource.Object, error) {
	it, err := txn.Get(tableObjects, index, value)
	if err != nil {
		return nil, fmt.Errorf("fsm: list vms by %s: %w", index, err)
	}
	watchIter(ws, it)
	// A non-unique index orders its entries by the primary key (kind,
	// name) after the value: this is name order already.
	out := []*resource.Object{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*resource.Object))
	}
	return out, nil
}

// WatchPhase adds to ws a channel that fires when the set of VMs in phase
// (or one of them) changes, without reading them.
func (s *Store) WatchPhase(ws memdb.WatchSet, phase string) error {
	it, err := s.ReadTxn().Get(tableObjects, indexVMPhase, phase)
	if err != nil {
		return err
	}
	watchIter(ws, it)
	return nil
}

// VMPhaseCounts counts the VMs in each of the phases given (through the
// phase index: no VM is decoded), in one read transaction.
func (s *Store) VMPhaseCounts(phases []string) map[string]int {
	txn := s.ReadTxn()
	out := make(map[string]int, len(phases))
	for _, p := range phases {
		it, err := txn.Get(tableObjects, indexVMPhase, p)
		if err != nil {
			continue
		}
		n := 0
		for raw := it.Next(); raw != nil; raw = it.Next() {
			n++
		}
		out[p] = n
	}
	return out
}
