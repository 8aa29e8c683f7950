package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

type inmemCluster struct {
	ctrls []*Controller
	trans []*raft.InmemTransport
}

// newInmemCluster starts n controllers on raft's in-memory transport, all
// connected, bootstrapped together.
func newInmemCluster(tb testing.TB, n int, tweak ...func(*Config)) *inmemCluster {
	tb.Helper()
	ic := &inmemCluster{}
	var servers []raft.Server
	for i := 0; i < n; i++ {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("inmem-%d", i)))
		ic.trans = append(ic.trans, tr)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(fmt.Sprintf("c%d", i)), Address: addr})
	}
	for i := range ic.trans {
		for j := range ic.trans {
			if i != j {
				ic.trans[i].Connect(ic.trans[j].LocalAddr(), ic.trans[j])
			}
		}
	}
	for i := 0; i < n; i++ {
		c, err := newTweaked(Config{
			NodeID:             string(servers[i].ID),
			InMemory:           true,
			Transport:          ic.trans[i],
			DisableGossip:      true,
			BootstrapServers:   servers,
			HeartbeatTimeout:   100 * time.Millisecond,
			ElectionTimeout:    100 * time.Millisecond,
			LeaderLeaseTimeout: 50 * time.Millisecond,
		}, tweak...)
		if err != nil {
			tb.Fatal(err)
		}
		ic.ctrls = append(ic.ctrls, c)
	}
	tb.Cleanup(func() {
		for _, c := range ic.ctrls {
			_ = c.Shutdown(context.Background())
		}
	})
	return ic
}

// leader waits for a ready leader (one that serves linearizable reads).
func (ic *inmemCluster) leader(tb testing.TB, among ...int) int {
	tb.Helper()
	if len(among) == 0 {
		for i := range ic.ctrls {
			among = append(among, i)
		}
	}
	found := -1
	testcluster.WaitFor(tb, 5*time.Second, "a ready leader", func() (bool, error) {
		for _, i := range among {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := ic.ctrls[i].ConsistentRead(ctx)
			cancel()
			if err == nil {
				found = i
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// isolate cuts node i off from every other node, both ways.
func (ic *inmemCluster) isolate(i int) {
	for j := range ic.trans {
		if j != i {
			ic.trans[i].Disconnect(ic.trans[j].LocalAddr())
			ic.trans[j].Disconnect(ic.trans[i].LocalAddr())
		}
	}
}

func (ic *inmemCluster) heal() {
	for i := range ic.trans {
		for j := range ic.trans {
			if i != j {
				ic.trans[i].Connect(ic.trans[j].LocalAddr(), ic.trans[j])
			}
		}
	}
}

func createVM(ctx context.Context, c *Controller, name string) (*fsm.Result, error) {
	return c.Propose(ctx, fsm.CreateRequestType, &fsm.CreateRequest{
		Time: time.Unix(1700000000, 0).UTC(), Kind: resource.KindVM, Name: name, ID: uuid.NewString(),
		Spec: json.RawMessage(`{"cpus":1,"memory_mib":64}`),
	})
}

// TestPartitionedLeader: a leader cut off from the majority must stop
// serving linearizable reads and acknowledging writes; the majority elects a
// new leader and goes on; after healing, every acknowledged write is on
// every node and all nodes agree.
func TestPartitionedLeader(t *testing.T) {
	ic := newInmemCluster(t, 3)
	old := ic.leader(t)
	ctx := context.Background()

	acked := map[string]bool{}
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("before-%d", i)
		if _, err := createVM(ctx, ic.ctrls[old], name); err != nil {
			t.Fatalf("write before partition: %v", err)
		}
		acked[name] = true
	}

	ic.isolate(old)

	// The old leader soon refuses linearizable reads: it cannot confirm its
	// leadership with a quorum. (A heartbeat already in flight when the
	// partition starts may still confirm one read; that is safe because no
	// other leader can be elected before the followers' heartbeat timeout.)
	testcluster.WaitFor(t, 2*time.Second, "the partitioned leader to refuse linearizable reads", func() (bool, error) {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		return ic.ctrls[old].ConsistentRead(rctx) != nil, nil
	})

	var others []int
	for i := range ic.ctrls {
		if i != old {
			others = append(others, i)
		}
	}
	nl := ic.leader(t, others...)

	// Writes to the old leader are never acknowledged; writes to the new
	// leader are.
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if _, err := createVM(wctx, ic.ctrls[old], "on-old-leader"); err == nil {
		t.Fatal("partitioned old leader acknowledged a write")
	}
	cancel()
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("after-%d", i)
		if _, err := createVM(ctx, ic.ctrls[nl], name); err != nil {
			t.Fatalf("write to new leader: %v", err)
		}
		acked[name] = true
	}
	// A linearizable read on the new leader sees every acknowledged write.
	if err := ic.ctrls[nl].ConsistentRead(ctx); err != nil {
		t.Fatal(err)
	}
	for name := range acked {
		if o, _ := ic.ctrls[nl].FSM().State().Get(nil, resource.KindVM, name); o == nil {
			t.Fatalf("new leader lost acknowledged write %s", name)
		}
	}
	// The old node still refuses linearizable reads while cut off.
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if err := ic.ctrls[old].ConsistentRead(rctx); err == nil {
		t.Fatal("partitioned old leader served a linearizable read after a new leader was elected")
	}
	cancel()

	ic.heal()
	testcluster.WaitFor(t, 10*time.Second, "all nodes to converge", func() (bool, error) {
		d := ic.ctrls[0].FSM().State().Digest()
		for _, c := range ic.ctrls[1:] {
			if c.FSM().State().Digest() != d {
				return false, nil
			}
		}
		return ic.ctrls[old].FSM().State().Count(resource.KindVM) == len(acked) ||
			ic.ctrls[old].FSM().State().Count(resource.KindVM) == len(acked)+1, nil
	})
	for i, c := range ic.ctrls {
		for name := range acked {
			if o, _ := c.FSM().State().Get(nil, resource.KindVM, name); o == nil {
				t.Fatalf("node %d lost acknowledged write %s", i, name)
			}
		}
	}
}

// TestApplyOnFollowerIsNotLeader: a follower refuses writes and
// linearizable reads with ErrNotLeader (the API forwards them).
func TestApplyOnFollowerIsNotLeader(t *testing.T) {
	ic := newInmemCluster(t, 3)
	l := ic.leader(t)
	f := (l + 1) % 3
	if _, err := createVM(context.Background(), ic.ctrls[f], "x"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write on follower: got %v, want ErrNotLeader", err)
	}
	if err := ic.ctrls[f].ConsistentRead(context.Background()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("read on follower: got %v, want ErrNotLeader", err)
	}
	// A follower learns who leads from the leader's first append (a
	// heartbeat), which may come after the leader knows it leads.
	testcluster.WaitFor(t, 5*time.Second, "the follower to learn the leader", func() (bool, error) {
		id, _ := ic.ctrls[f].Leader()
		return id == ic.ctrls[l].NodeID(), fmt.Errorf("follower thinks the leader is %q, want %q", id, ic.ctrls[l].NodeID())
	})
}

// TestLeaderLoopsFollowLeadership: leader loops run only on the leader and
// move with leadership.
func TestLeaderLoopsFollowLeadership(t *testing.T) {
	ic := newInmemCluster(t, 3)
	running := make([]chan bool, 3)
	for i, c := range ic.ctrls {
		running[i] = make(chan bool, 64)
		ch := running[i]
		c.AddLeaderLoop(LeaderLoop{Name: "probe", Run: func(ctx context.Context) {
			ch <- true
			<-ctx.Done()
			ch <- false
		}})
	}
	// Loops registered after the first leadership start on the next one:
	// force a change so every node's registration is in effect.
	l := ic.leader(t)
	if err := ic.ctrls[l].Raft().LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	nl := -1
	testcluster.WaitFor(t, 5*time.Second, "the loop to start on the new leader", func() (bool, error) {
		for i := range ic.ctrls {
			select {
			case v := <-running[i]:
				if v && i != l {
					nl = i
					return true, nil
				}
			default:
			}
		}
		return false, nil
	})
	ic.isolate(nl)
	testcluster.WaitFor(t, 5*time.Second, "the loop to stop on the deposed leader", func() (bool, error) {
		for {
			select {
			case v := <-running[nl]:
				if !v {
					return true, nil
				}
			default:
				return false, nil
			}
		}
	})
}

func newTweaked(cfg Config, tweak ...func(*Config)) (*Controller, error) {
	for _, f := range tweak {
		f(&cfg)
	}
	return New(cfg)
}
