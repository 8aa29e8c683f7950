package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestUnknownEntryHaltsEveryController: an entry of a type this build does
// not know, without the ignorable flag, committed through Raft, halts the
// state machine of every controller at that entry: each reports health
// "halted" with the entry in Status, shuts its Raft node down, applies
// nothing after it, and all halted replicas hold the same state.
func TestUnknownEntryHaltsEveryController(t *testing.T) {
	ic := newInmemCluster(t, 3)
	l := ic.leader(t)
	ctx := context.Background()
	for i := range 5 {
		if _, err := createVM(ctx, ic.ctrls[l], fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range ic.ctrls {
		if st := c.Status(); st.Health != resource.HealthOK || st.HealthReason != "" || c.Halted() != nil {
			t.Fatalf("%s before the entry: health %q (%q), Halted %v", c.NodeID(), st.Health, st.HealthReason, c.Halted())
		}
	}

	// Propose the raw entry (99: unknown, no IgnoreUnknownTypeFlag) and,
	// right behind it, a valid write that must never be applied.
	fut := ic.ctrls[l].Raft().Apply([]byte("\x63{}"), 5*time.Second)
	after := ic.ctrls[l].Raft().Apply(mustEncodeCreate(t, "after"), 5*time.Second)
	if err := fut.Error(); err == nil {
		res, ok := fut.Response().(*fsm.Result)
		if !ok || !errors.Is(res.Err, fsm.ErrHalted) || !errors.Is(res.Err, fsm.ErrUnknownCommand) {
			t.Fatalf("the leader applied the unknown entry: %+v", fut.Response())
		}
	}
	if err := after.Error(); err == nil {
		if res, ok := after.Response().(*fsm.Result); !ok || !errors.Is(res.Err, fsm.ErrHalted) {
			t.Fatalf("the write after the unknown entry was applied: %+v", after.Response())
		}
	}
	haltIndex := fut.Index()

	for _, c := range ic.ctrls {
		testcluster.WaitFor(t, 10*time.Second, c.NodeID()+" to halt and stop raft", func() (bool, error) {
			st := c.Status()
			return st.Health == resource.HealthHalted && c.Raft().State() == raft.Shutdown, fmt.Errorf("health %q raft %s applied %d", st.Health, c.Raft().State(), st.AppliedIndex)
		})
		st := c.Status()
		for _, want := range []string{fmt.Sprintf("log entry %d (type(99))", haltIndex), "unknown command type 99", "Upgrade", "kumoi cluster remove " + c.NodeID()} {
			if !strings.Contains(st.HealthReason, want) {
				t.Errorf("%s: health_reason %q does not mention %q", c.NodeID(), st.HealthReason, want)
			}
		}
		var he *fsm.HaltError
		if err := c.Halted(); !errors.As(err, &he) || he.Index != haltIndex || he.Type != 99 || !errors.Is(err, fsm.ErrUnknownCommand) {
			t.Errorf("%s: Halted() = %v, want the HaltError of entry %d", c.NodeID(), err, haltIndex)
		}
		select {
		case <-c.HaltedCh():
		default:
			t.Errorf("%s: HaltedCh not closed", c.NodeID())
		}
		if got := c.FSM().AppliedIndex(); got >= haltIndex {
			t.Errorf("%s: AppliedIndex %d, want below the halting entry %d", c.NodeID(), got, haltIndex)
		}
		if o, _ := c.FSM().State().Get(nil, resource.KindVM, "after"); o != nil {
			t.Errorf("%s applied the write after the halting entry", c.NodeID())
		}
		if _, err := createVM(ctx, c, "refused"); err == nil {
			t.Errorf("%s accepted a write after halting", c.NodeID())
		}
	}
	// The halted replicas agree (same state, same applied index), and
	// stay as they are.
	d, applied := ic.ctrls[0].FSM().State().Digest(), ic.ctrls[0].FSM().AppliedIndex()
	for _, c := range ic.ctrls {
		if c.FSM().State().Digest() != d || c.FSM().AppliedIndex() != applied || c.FSM().State().Count(resource.KindVM) != 5 {
			t.Errorf("%s: halted state differs: applied %d (want %d), %d VMs", c.NodeID(), c.FSM().AppliedIndex(), applied, c.FSM().State().Count(resource.KindVM))
		}
		res := c.FSM().Apply(&raft.Log{Index: haltIndex + 10, Type: raft.LogCommand, Data: mustEncodeCreate(t, "late")}).(*fsm.Result)
		if !errors.Is(res.Err, fsm.ErrHalted) || c.FSM().State().Digest() != d {
			t.Errorf("%s: a halted FSM applied an entry: %v", c.NodeID(), res.Err)
		}
	}
}

func mustEncodeCreate(t *testing.T, name string) []byte {
	t.Helper()
	data, err := fsm.Encode(fsm.CreateRequestType, &fsm.CreateRequest{
		Time: time.Unix(1700000000, 0).UTC(), Kind: resource.KindVM, Name: name, ID: "id-" + name,
		Spec: []byte(`{"cpus":1,"memory_mib":64}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	return data
}
