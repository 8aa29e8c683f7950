package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newInmemClusterWith is newInmemCluster with a grace and a log.
func newInmemClusterWith(tb testing.TB, n int, grace time.Duration, logs *lockedBuffer) *inmemCluster {
	tb.Helper()
	ic := &inmemCluster{}
	var servers []raft.Server
	for i := 0; i < n; i++ {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("inmem-g%d", i)))
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
		c, err := New(Config{
			NodeID: string(servers[i].ID), InMemory: true, Transport: ic.trans[i], DisableGossip: true, BootstrapServers: servers,
			HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
			HostDownGrace: grace,
			Logger:        hclog.New(&hclog.LoggerOptions{Name: string(servers[i].ID), Level: hclog.Info, Output: logs}),
		})
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

// TestNewLeaderWaitsAFullGrace: the grace is measured by the leader on its
// own monotonic clock from when it first saw the host's down period, and a
// new leader measures again. A host down for longer than the grace (kept
// from evacuation by a worker fence-after that is not below the grace,
// which the leader logs) changes leader and then publishes a good
// fence-after: the new leader still waits a whole grace from its election
// before it evacuates (status.since, long past, plays no part).
func TestNewLeaderWaitsAFullGrace(t *testing.T) {
	const grace = 2 * time.Second
	var logs lockedBuffer
	ic := newInmemClusterWith(t, 3, grace, &logs)
	l := ic.leader(t)
	ctx := context.Background()
	hs := func(fenceAfterMS int64, state string) *fsm.HostStateRequest {
		return &fsm.HostStateRequest{Time: time.Now().UTC(), Name: "h1", ID: uuid.NewString(), State: state,
			Capacity: resource.Resources{CPUs: 4, MemoryMiB: 4096}, FenceAfterMS: fenceAfterMS, DownGraceMS: grace.Milliseconds()}
	}
	if _, err := ic.ctrls[l].Propose(ctx, fsm.HostStateRequestType, hs(5000, resource.HostReady)); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.ctrls[l].Propose(ctx, fsm.CreateRequestType, &fsm.CreateRequest{Time: time.Now().UTC(), Kind: resource.KindVM, Name: "web",
		ID: uuid.NewString(), Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"ha":"restart"}`)}); err != nil {
		t.Fatal(err)
	}
	vm := func(c *Controller) *resource.VMStatus {
		o, _ := c.FSM().State().Get(nil, resource.KindVM, "web")
		if o == nil {
			return nil
		}
		st, _ := resource.DecodeStatus[resource.VMStatus](o)
		return st
	}
	testcluster.WaitFor(t, 10*time.Second, "web placed on h1", func() (bool, error) {
		st := vm(ic.ctrls[l])
		return st != nil && st.Host == "h1", nil
	})
	if _, err := ic.ctrls[l].Propose(ctx, fsm.HostStateRequestType, hs(5000, resource.HostDown)); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 10*time.Second, "the leader to refuse the evacuation (fence-after 5s ≥ grace 2s)", func() (bool, error) {
		return strings.Contains(logs.String(), "not evacuating a down host"), nil
	})
	if st := vm(ic.ctrls[l]); st.Host != "h1" || st.Phase == resource.PhasePending {
		t.Fatalf("web = %+v; want it kept on h1", st)
	}

	transfer := time.Now()
	if err := ic.ctrls[l].Raft().LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	var n int
	testcluster.WaitFor(t, 10*time.Second, "a new leader", func() (bool, error) {
		n = ic.leader(t)
		return n != l, nil
	})
	fixed := time.Now()
	if _, err := ic.ctrls[n].Propose(ctx, fsm.HostStateRequestType, hs(1000, resource.HostDown)); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 10*time.Second, "web evacuated by the new leader", func() (bool, error) {
		st := vm(ic.ctrls[n])
		return st != nil && st.Phase == resource.PhasePending, nil
	})
	evacuated := time.Now()
	t.Logf("new leader: fence-after fixed %s after the transfer, web evacuated %s after it",
		fixed.Sub(transfer).Round(time.Millisecond), evacuated.Sub(transfer).Round(time.Millisecond))
	if fixed.Sub(transfer) >= grace {
		t.Fatalf("the new leader took %s to fix the host, not less than the grace: the test proves nothing", fixed.Sub(transfer))
	}
	if evacuated.Sub(transfer) < grace {
		t.Errorf("the new leader evacuated %s after it was elected, before a whole grace (%s) of its own", evacuated.Sub(transfer), grace)
	}
}
