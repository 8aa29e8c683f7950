package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
)

// TestKillLeaderWritesResume kills the leader with SIGKILL while clients
// write, three times in a row: each time a new leader must take writes, and
// the killed node is restarted under load and catches up. At the end every
// acknowledged write is on every node, and nothing else is.
func TestKillLeaderWritesResume(t *testing.T) {
	c := newCluster(t, testcluster.Options{})
	hc := httpClient()
	c.WaitLeader(leaderTimeout)
	l := newLedger()
	for i := range 20 {
		l.mustCreate(t, c, hc, fmt.Sprintf("before-%d", i), map[string]string{"phase": "before"})
	}

	// Writers keep going through the kills; their creates in flight at a
	// leader when it dies have an unknown outcome.
	const writers = 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		killedAt  atomic.Int64 // unix nanos of the last kill
		firstAck  atomic.Int64 // first ack of a create sent after it
		afterKill atomic.Int64 // acks of creates sent after it
		wg        sync.WaitGroup
		errMu     sync.Mutex
		writeErrs []error
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				sent := time.Now().UnixNano()
				wctx, wcancel := context.WithTimeout(ctx, testcluster.Stretch(writeDeadline))
				o, err := l.create(wctx, c, hc, fmt.Sprintf("during-%d-%d", w, i), map[string]string{"phase": "during"})
				wcancel()
				if err != nil {
					if ctx.Err() == nil {
						errMu.Lock()
						writeErrs = append(writeErrs, err)
						errMu.Unlock()
					}
					return
				}
				if k := killedAt.Load(); o != nil && k != 0 && sent > k {
					afterKill.Add(1)
					firstAck.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		}()
	}
	writing := func(what string, n int64, count func() int64) {
		t.Helper()
		testcluster.WaitFor(t, writeDeadline, what, func() (bool, error) {
			errMu.Lock()
			defer errMu.Unlock()
			if len(writeErrs) > 0 {
				return false, fmt.Errorf("a writer failed: %w", writeErrs[0])
			}
			return count() >= n, fmt.Errorf("%d of %d", count(), n)
		})
	}
	writing("the writers to get going", 40, func() int64 { return int64(l.numAcked()) })

	for round := range 3 {
		leader, leaderID := c.WaitLeader(leaderTimeout)
		firstAck.Store(0)
		afterKill.Store(0)
		killedAt.Store(time.Now().UnixNano())
		c.Kill(leader)
		newLeader, newID := c.WaitLeader(leaderTimeout)
		if newLeader == leader {
			t.Fatalf("round %d: the killed node %s is still the leader", round, leaderID)
		}
		writing(fmt.Sprintf("round %d: writes after killing %s", round, leaderID), 15, afterKill.Load)
		t.Logf("round %d: killed leader %s (SIGKILL); new leader %s; first create sent after the kill acknowledged %s after it",
			round, leaderID, newID, time.Duration(firstAck.Load()-killedAt.Load()).Round(time.Millisecond))
		// The killed node comes back while the writers go on.
		c.Start(leader)
		c.WaitLeader(leaderTimeout)
	}
	cancel()
	wg.Wait()
	for _, err := range writeErrs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	for i := range 5 {
		l.mustCreate(t, c, hc, fmt.Sprintf("after-%d", i), map[string]string{"phase": "after"})
	}

	// Every node catches up, and holds exactly what was acknowledged (plus
	// perhaps creates whose outcome was unknown).
	leader, _ := c.WaitLeader(leaderTimeout)
	lst, err := c.Status(leader)
	if err != nil {
		t.Fatal(err)
	}
	state := waitSameEverywhere(t, c, hc)
	for _, i := range c.Live() {
		st, err := c.Status(i)
		if err != nil {
			t.Fatal(err)
		}
		if st.AppliedIndex < lst.CommitIndex {
			t.Errorf("%s: applied index %d < the leader's commit index %d", c.ID(i), st.AppliedIndex, lst.CommitIndex)
		}
		objs, err := list(hc, c.URL(i), true)
		if err != nil {
			t.Fatal(err)
		}
		checkLedger(t, c.ID(i), l, setOf(objs))
	}
	if len(c.Live()) != c.N() {
		t.Errorf("only %v of %d nodes are live", c.Live(), c.N())
	}
	t.Logf("%d creates acknowledged, %d objects, applied index %d", l.numAcked(), len(state), lst.CommitIndex)
}

// TestPausedLeaderStepsDown freezes the leader (SIGSTOP): the others elect
// a new leader and keep taking writes; when the old leader wakes up it
// steps down and catches up, and no acknowledged write is lost.
func TestPausedLeaderStepsDown(t *testing.T) {
	c := newCluster(t, testcluster.Options{})
	hc := httpClient()
	leader, leaderID := c.WaitLeader(leaderTimeout)
	l := newLedger()
	for i := range 10 {
		l.mustCreate(t, c, hc, fmt.Sprintf("before-%d", i), nil)
	}
	c.Pause(leader)
	newLeader, newID := c.WaitLeader(leaderTimeout)
	if newLeader == leader {
		t.Fatalf("the paused node %s is still the leader", leaderID)
	}
	for i := range 10 {
		l.mustCreate(t, c, hc, fmt.Sprintf("paused-%d", i), nil)
	}
	c.Resume(leader)
	if li, _ := c.WaitLeader(leaderTimeout); li == leader {
		t.Logf("note: %s won leadership back after waking up", leaderID)
	}
	state := waitSameEverywhere(t, c, hc)
	for _, i := range c.Live() {
		objs, err := list(hc, c.URL(i), true)
		if err != nil {
			t.Fatal(err)
		}
		checkLedger(t, c.ID(i), l, setOf(objs))
	}
	t.Logf("paused %s, new leader %s; %d objects everywhere after it woke up", leaderID, newID, len(state))
}

// TestLeaderSIGTERMTransfersLeadership stops the leader gracefully: it
// hands leadership over before it exits, so writes barely pause.
func TestLeaderSIGTERMTransfersLeadership(t *testing.T) {
	c := newCluster(t, testcluster.Options{})
	hc := httpClient()
	leader, leaderID := c.WaitLeader(leaderTimeout)
	l := newLedger()
	l.mustCreate(t, c, hc, "warmup", nil)

	var others []string
	for i := range c.N() {
		if i != leader {
			others = append(others, c.URL(i))
		}
	}
	start := time.Now()
	c.Terminate(leader)
	// Write through the other nodes until one write is acknowledged.
	var gap time.Duration
	testcluster.WaitFor(t, writeDeadline, "a write after SIGTERM to the leader", func() (bool, error) {
		for k, u := range others {
			name := fmt.Sprintf("after-term-%d-%d", k, time.Since(start).Microseconds())
			l.attempt(name)
			r, err := do(hc, http.MethodPost, u+"/v1/vms", createBody(name, nil, 1))
			if err != nil {
				return false, err
			}
			if r.Status == http.StatusCreated {
				gap = time.Since(start)
				return true, nil
			}
			if r.Status != http.StatusServiceUnavailable {
				return false, fmt.Errorf("POST %s: %s", u, r)
			}
		}
		return false, nil
	})
	if err := c.Wait(leader, 15*time.Second); err != nil {
		t.Errorf("the leader after SIGTERM: %v", err)
	}
	newLeader, newID := c.WaitLeader(leaderTimeout)
	if newLeader == leader {
		t.Fatalf("%s still leads after SIGTERM", leaderID)
	}
	t.Logf("SIGTERM to leader %s: first acknowledged write after %s, process exited after %s; new leader %s",
		leaderID, gap.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), newID)
	// The survivors still take writes and the stopped node rejoins.
	l.mustCreate(t, c, hc, "after-new-leader", nil)
	c.Start(leader)
	state := waitSameEverywhere(t, c, hc)
	checkLedger(t, "cluster", l, state)
}
