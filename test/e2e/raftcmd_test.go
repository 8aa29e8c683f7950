package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestOperatorRaft runs kumoi operator raft's verbs against a
// 3-controller cluster (ACLs on): list-peers shows every server and one
// leader; transfer-leader hands leadership to the server named, then to
// any other; a transfer to the leader itself or to an unknown server is
// refused; remove-peer removes a stopped controller. list-peers also
// shows each server's Raft log store.
func TestOperatorRaft(t *testing.T) {
	c := newCluster(t, testcluster.Options{Controllers: 3})
	c.WaitLeader(leaderTimeout)
	kumoi, must := cliOf(t, c)
	peers := func() []resource.Server {
		t.Helper()
		var ss []resource.Server
		if err := json.Unmarshal([]byte(must("operator", "raft", "list-peers", "-o", "json")), &ss); err != nil {
			t.Fatal(err)
		}
		return ss
	}
	leaderOf := func(ss []resource.Server) string {
		t.Helper()
		var ls []string
		for _, s := range ss {
			if s.Leader {
				ls = append(ls, s.ID)
			}
		}
		if len(ls) != 1 {
			t.Fatalf("leaders %v among %+v", ls, ss)
		}
		return ls[0]
	}

	ss := peers()
	if len(ss) != 3 {
		t.Fatalf("list-peers: %+v", ss)
	}
	table := must("operator", "raft", "list-peers")
	for _, s := range ss {
		if !strings.Contains(table, s.ID) {
			t.Errorf("list-peers table lacks %s:\n%s", s.ID, table)
		}
		// Every data directory here is new: the default store.
		if s.RaftLogStore != "wal" {
			t.Errorf("list-peers: %s has raft_log_store %q, want wal", s.ID, s.RaftLogStore)
		}
	}
	if !strings.Contains(table, "LOG-STORE") || strings.Count(table, " wal") != len(ss) {
		t.Errorf("list-peers table does not show each server's log store:\n%s", table)
	}
	first := leaderOf(ss)
	var target string
	for _, s := range ss {
		if s.ID != first {
			target = s.ID
			break
		}
	}
	out := must("operator", "raft", "transfer-leader", target)
	if want := fmt.Sprintf("leadership moved from %s to %s", first, target); !strings.Contains(out, want) {
		t.Errorf("transfer-leader: %q, want %q", out, want)
	}
	testcluster.WaitFor(t, leaderTimeout, target+" to lead", func() (bool, error) {
		_, id := c.Leader()
		return id == target, fmt.Errorf("leader %q", id)
	})

	out = must("operator", "raft", "transfer-leader", "-o", "json")
	var res resource.TransferLeaderResponse
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.From != target || res.To == target || res.To == "" {
		t.Errorf("transfer-leader to any: %+v %v (%s)", res, err, out)
	}
	testcluster.WaitFor(t, leaderTimeout, res.To+" to lead", func() (bool, error) {
		_, id := c.Leader()
		return id == res.To, fmt.Errorf("leader %q", id)
	})

	for _, tc := range []struct{ to, mention string }{
		{res.To, "already leads"},
		{"nosuch", "not in the Raft configuration"},
	} {
		out, err := kumoi("operator", "raft", "transfer-leader", tc.to)
		if err == nil || !strings.Contains(out, tc.mention) {
			t.Errorf("transfer-leader %s: %v, want a refusal mentioning %q:\n%s", tc.to, err, tc.mention, out)
		}
	}

	// remove-peer: a stopped non-leader.
	var gone int
	for i := range c.N() {
		if c.ID(i) != res.To {
			gone = i
			break
		}
	}
	c.Stop(gone)
	must("operator", "raft", "remove-peer", c.ID(gone))
	testcluster.WaitFor(t, leaderTimeout, c.ID(gone)+" to be removed", func() (bool, error) {
		ss := peers()
		for _, s := range ss {
			if s.ID == c.ID(gone) {
				return false, fmt.Errorf("still a peer: %+v", ss)
			}
		}
		return len(ss) == 2, fmt.Errorf("peers %+v", ss)
	})
}
