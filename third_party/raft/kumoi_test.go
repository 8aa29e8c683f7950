package raft

// Kumoi: tests of the LogStager change (dispatchLogs replicates staged
// entries while the leader writes them).

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// stagingStore is an InmemStore that stages (LogStager) and whose writes
// can be held or failed.
type stagingStore struct {
	*InmemStore
	mu      sync.Mutex
	staged  map[uint64]*Log
	hold    chan struct{} // non-nil: StoreLogs waits for it to close
	fail    bool          // the next StoreLogs fails
	holding chan struct{} // closed when a held StoreLogs has begun
}

func newStagingStore() *stagingStore {
	return &stagingStore{InmemStore: NewInmemStore(), staged: map[uint64]*Log{}}
}

func (s *stagingStore) StageLogs(logs []*Log) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range logs {
		s.staged[l.Index] = l
	}
	return true
}

func (s *stagingStore) GetLog(idx uint64, l *Log) error {
	s.mu.Lock()
	if sl, ok := s.staged[idx]; ok {
		*l = *sl
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	return s.InmemStore.GetLog(idx, l)
}

func (s *stagingStore) StoreLogs(logs []*Log) error {
	s.mu.Lock()
	hold, fail, holding := s.hold, s.fail, s.holding
	s.fail = false
	s.mu.Unlock()
	if hold != nil {
		close(holding)
		<-hold
	}
	err := errors.New("disk failed")
	if !fail {
		err = s.InmemStore.StoreLogs(logs)
	}
	s.mu.Lock()
	for _, l := range logs {
		delete(s.staged, l.Index) // written, or forgotten on failure
	}
	s.mu.Unlock()
	return err
}

func (s *stagingStore) StoreLog(l *Log) error { return s.StoreLogs([]*Log{l}) }

// holdWrites makes the next StoreLogs wait until the returned release is
// called; started is closed when it begins waiting.
func (s *stagingStore) holdWrites() (started <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold, s.holding = make(chan struct{}), make(chan struct{})
	hold := s.hold
	var once sync.Once
	return s.holding, func() {
		once.Do(func() {
			s.mu.Lock()
			s.hold = nil
			s.mu.Unlock()
			close(hold)
		})
	}
}

type stagingCluster struct {
	rafts  []*Raft
	stores []*stagingStore
	fsms   []*MockFSM
}

func newStagingCluster(t *testing.T) *stagingCluster {
	t.Helper()
	const n = 3
	c := &stagingCluster{}
	var trans []*InmemTransport
	var servers []Server
	for i := 0; i < n; i++ {
		addr, tr := NewInmemTransport(ServerAddress(fmt.Sprintf("s%d", i)))
		trans = append(trans, tr)
		servers = append(servers, Server{ID: ServerID(addr), Address: addr})
	}
	for i := range trans {
		for j := range trans {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j])
			}
		}
	}
	for i := 0; i < n; i++ {
		conf := DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.HeartbeatTimeout = 50 * time.Millisecond
		conf.ElectionTimeout = 50 * time.Millisecond
		conf.LeaderLeaseTimeout = 50 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.Logger = newTestLogger(t)
		store, fsm, snaps := newStagingStore(), &MockFSM{}, NewInmemSnapshotStore()
		if err := BootstrapCluster(conf, store, store, snaps, trans[i], Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		r, err := NewRaft(conf, fsm, store, store, snaps, trans[i])
		if err != nil {
			t.Fatal(err)
		}
		c.rafts, c.stores, c.fsms = append(c.rafts, r), append(c.stores, store), append(c.fsms, fsm)
	}
	t.Cleanup(func() {
		for _, r := range c.rafts {
			r.Shutdown().Error()
		}
	})
	return c
}

// leader waits for a leader and returns its position.
func (c *stagingCluster) leader(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, r := range c.rafts {
			if r.State() == Leader {
				if err := r.Barrier(5 * time.Second).Error(); err == nil {
					return i
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader")
	return -1
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestStagedEntriesReplicateWhileTheLeaderWrites: with the leader's
// write of an entry held, the followers receive and store it (upstream
// sends it only after the leader's write); the leader applies it, and
// answers, only once its own write is done.
func TestStagedEntriesReplicateWhileTheLeaderWrites(t *testing.T) {
	c := newStagingCluster(t)
	l := c.leader(t)
	started, release := c.stores[l].holdWrites()
	t.Cleanup(release) // before the servers' shutdown (cleanups run last first)
	f := c.rafts[l].Apply([]byte("staged"), 10*time.Second)
	<-started
	index, _ := c.rafts[l].getLastLog()
	var target uint64
	waitFor(t, "the followers to store the entry the leader is writing", func() bool {
		for i, s := range c.stores {
			if i == l {
				continue
			}
			last, _ := s.LastIndex()
			if last <= index {
				return false
			}
			target = last
		}
		return true
	})
	select {
	case <-f.(*logFuture).errCh:
		t.Fatal("the leader answered before its own write of the entry was done")
	default:
	}
	if last, _ := c.stores[l].InmemStore.LastIndex(); last >= target {
		t.Fatalf("the leader's store has index %d while its write is held (entry after %d, followers at %d)", last, index, target)
	}
	release()
	if err := f.Error(); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for i, fsm := range c.fsms {
		i, fsm := i, fsm
		waitFor(t, fmt.Sprintf("server %d to apply the entry", i), func() bool {
			logs := fsm.Logs()
			return len(logs) == 1 && string(logs[0]) == "staged"
		})
	}
}

// TestStagedEntriesForgottenWhenTheWriteFails: a leader whose write fails
// answers with the error and steps down; the entry it staged is not in its
// log. The cluster goes on (with an entry the followers may have kept:
// an uncommitted entry of the old term, which Raft resolves), and every
// server ends up with the same log.
func TestStagedEntriesForgottenWhenTheWriteFails(t *testing.T) {
	c := newStagingCluster(t)
	l := c.leader(t)
	c.stores[l].mu.Lock()
	c.stores[l].fail = true
	c.stores[l].mu.Unlock()
	before, _ := c.rafts[l].getLastLog()
	if err := c.rafts[l].Apply([]byte("lost"), 5*time.Second).Error(); err == nil {
		t.Fatal("an apply whose leader write failed succeeded")
	}
	var entry Log
	if err := c.stores[l].GetLog(before+1, &entry); err == nil && string(entry.Data) == "lost" {
		t.Fatal("the failed leader still reads the entry it never wrote")
	}
	l2 := c.leader(t)
	if err := c.rafts[l2].Apply([]byte("after"), 5*time.Second).Error(); err != nil {
		t.Fatalf("apply after the failure: %v", err)
	}
	if err := c.rafts[l2].Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(c.fsms[l2].Logs())
	for i, fsm := range c.fsms {
		i, fsm := i, fsm
		waitFor(t, fmt.Sprintf("server %d to apply what the leader applied", i), func() bool {
			return fmt.Sprint(fsm.Logs()) == want
		})
	}
}

// Kumoi: ErrorUntil answers as Error does, or says which of its channels
// closed first; a future it gave up on still answers Error later.
func TestKumoiErrorUntil(t *testing.T) {
	var d deferError
	d.init()
	a, b := make(chan struct{}), make(chan struct{})
	close(b)
	if which, err := d.ErrorUntil(a, b); which != 2 || err != nil {
		t.Fatalf("b closed: %d, %v", which, err)
	}
	close(a)
	if which, err := d.ErrorUntil(a, nil); which != 1 || err != nil {
		t.Fatalf("a closed: %d, %v", which, err)
	}
	d.respond(ErrLeadershipLost)
	if which, err := d.ErrorUntil(nil, nil); which != 0 || err != ErrLeadershipLost {
		t.Fatalf("answered: %d, %v", which, err)
	}
	if err := d.Error(); err != ErrLeadershipLost {
		t.Fatalf("Error after ErrorUntil: %v", err)
	}
	var ok deferError
	ok.init()
	ok.respond(nil)
	if which, err := ok.ErrorUntil(make(chan struct{}), nil); which != 0 || err != nil {
		t.Fatalf("answered nil: %d, %v", which, err)
	}
	var down deferError
	down.init()
	down.ShutdownCh = make(chan struct{})
	close(down.ShutdownCh)
	if which, err := down.ErrorUntil(nil, nil); which != 0 || err != ErrRaftShutdown {
		t.Fatalf("raft shut down: %d, %v", which, err)
	}
}

// TestKumoiSetNewLogs: a follower's request carries the entries from its
// next index up to the last or MaxAppendEntries of them, in order, each
// its own Log, the slice no larger than they are.
func TestKumoiSetNewLogs(t *testing.T) {
	store := NewInmemStore()
	for i := uint64(1); i <= 10; i++ {
		if err := store.StoreLog(&Log{Index: i, Term: 1, Type: LogCommand, Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	r := &Raft{logs: store, logger: newTestLogger(t)}
	conf := DefaultConfig()
	conf.MaxAppendEntries = 4
	r.conf.Store(*conf)
	for _, c := range []struct{ next, last, want uint64 }{{3, 10, 4}, {3, 4, 2}, {10, 10, 1}, {11, 10, 0}} {
		var req AppendEntriesRequest
		if err := r.setNewLogs(&req, c.next, c.last); err != nil {
			t.Fatal(err)
		}
		if uint64(len(req.Entries)) != c.want || cap(req.Entries) != len(req.Entries) {
			t.Fatalf("next %d last %d: %d entries (cap %d), want %d", c.next, c.last, len(req.Entries), cap(req.Entries), c.want)
		}
		for i, l := range req.Entries {
			if l.Index != c.next+uint64(i) || string(l.Data) != fmt.Sprint(l.Index) {
				t.Fatalf("next %d: entry %d is %d %q", c.next, i, l.Index, l.Data)
			}
			l.Data = nil // each its own Log
		}
		for i, l := range req.Entries {
			if i > 0 && l == req.Entries[i-1] {
				t.Fatal("two entries share a Log")
			}
		}
	}
}

// TestKumoiApplyLogNoTimerWithRoom: ApplyLog enqueues a write at once when
// the apply channel has room, whatever its timeout (no timer is made, so
// one that expired already cannot win the select); with no room it waits
// for the timeout, as upstream; after shutdown it says so.
func TestKumoiApplyLogNoTimerWithRoom(t *testing.T) {
	r := &Raft{applyCh: make(chan *logFuture, 4), shutdownCh: make(chan struct{})}
	for i := 0; i < 4; i++ {
		f := r.ApplyLog(Log{Data: []byte{byte(i)}}, time.Nanosecond)
		if _, ok := f.(*logFuture); !ok {
			t.Fatalf("write %d with room: %T %v, want it enqueued", i, f, f.Error())
		}
	}
	if err := r.ApplyLog(Log{Data: []byte{4}}, time.Millisecond).Error(); err != ErrEnqueueTimeout {
		t.Fatalf("no room: %v, want ErrEnqueueTimeout", err)
	}
	close(r.shutdownCh) // with no room: nothing else is ready
	if err := r.ApplyLog(Log{Data: []byte{5}}, 0).Error(); err != ErrRaftShutdown {
		t.Fatalf("shut down: %v, want ErrRaftShutdown", err)
	}
	for i := 0; i < 4; i++ {
		if l := <-r.applyCh; l.log.Data[0] != byte(i) || l.log.Type != LogCommand {
			t.Fatalf("enqueued %d: %+v", i, l.log)
		}
	}
}

// TestKumoiVerifyCountsOnlyLaterRequests: a follower's "still the
// leader" counts for a verify future only if the request it answers was
// sent after the future was registered. An answer to an earlier request
// (a heartbeat in flight while the leader was paused) leaves the future
// waiting; a later one counts; a "not the leader" ends it whatever its
// request's time.
func TestKumoiVerifyCountsOnlyLaterRequests(t *testing.T) {
	s := &followerReplication{notify: map[*verifyFuture]struct{}{}}
	register := func() (*verifyFuture, chan *verifyFuture) {
		ch := make(chan *verifyFuture, 1)
		v := &verifyFuture{quorumSize: 2, votes: 1, notifyCh: ch, registered: time.Now()}
		s.notifyLock.Lock()
		s.notify[v] = struct{}{}
		s.notifyLock.Unlock()
		return v, ch
	}
	sentBefore := time.Now()
	time.Sleep(time.Millisecond) // the monotonic clock moves on
	v, ch := register()
	s.notifyAll(true, sentBefore)
	if v.votes != 1 || len(ch) != 0 {
		t.Fatalf("an answer to a request sent before the future counted: %d votes", v.votes)
	}
	s.notifyLock.Lock()
	_, waiting := s.notify[v]
	s.notifyLock.Unlock()
	if !waiting {
		t.Fatal("the future no longer waits for a later answer")
	}
	s.notifyAll(true, time.Now())
	if v.votes != 2 || len(ch) != 1 {
		t.Fatalf("an answer to a later request: %d votes, %d notified", v.votes, len(ch))
	}
	if len(s.notify) != 0 {
		t.Fatalf("%d futures still waiting after the vote", len(s.notify))
	}

	w, wch := register()
	s.notifyAll(false, sentBefore)
	if w.votes != 1 || len(wch) != 1 {
		t.Fatalf("a false answer did not end the future: %d votes, %d notified", w.votes, len(wch))
	}
}
