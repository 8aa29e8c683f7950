package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestFollowerForwardsWritesAndReads writes through one follower and reads
// at once through both followers: the write is acknowledged (the follower
// forwards it to the leader) and the linearizable reads see it.
func TestFollowerForwardsWritesAndReads(t *testing.T) {
	c := newCluster(t, testcluster.Options{})
	hc := httpClient()
	leader, _ := c.WaitLeader(leaderTimeout)
	// The first linearizable read also waits out the leader's barrier.
	listLinearizable(t, c, hc)
	var followers []int
	for i := range c.N() {
		if i != leader {
			followers = append(followers, i)
		}
	}
	for k := range 20 {
		w, rd := followers[k%2], followers[(k+1)%2]
		name := fmt.Sprintf("fwd-%d", k)
		r, err := do(hc, http.MethodPost, c.URL(w)+"/v1/vms", createBody(name, map[string]string{"k": fmt.Sprint(k)}, 1))
		if err != nil || r.Status != http.StatusCreated {
			t.Fatalf("POST %s through follower %s: %v %v", name, c.ID(w), r, err)
		}
		var created resource.Object
		if err := r.Decode(&created); err != nil {
			t.Fatal(err)
		}
		for _, via := range []int{rd, w} {
			start := time.Now()
			r, err := do(hc, http.MethodGet, c.URL(via)+"/v1/vms/"+name, nil)
			if err != nil || r.Status != http.StatusOK {
				t.Fatalf("GET %s through follower %s right after the write: %v %v", name, c.ID(via), r, err)
			}
			var got resource.Object
			if err := r.Decode(&got); err != nil {
				t.Fatal(err)
			}
			// The system may have written the status since (the
			// scheduler does), which moves modify_index on.
			if g, w := keyOf(&got), keyOf(&created); g.ID != w.ID || g.Labels != w.Labels || g.Spec != w.Spec ||
				g.CreateIndex != w.CreateIndex || g.ModifyIndex < w.ModifyIndex {
				t.Errorf("GET %s through %s = %+v, want %+v (or a later modify_index)", name, c.ID(via), g, w)
			}
			if d := time.Since(start); k == 0 {
				t.Logf("linearizable GET through follower %s took %s", c.ID(via), d)
			}
		}
		objs, err := list(hc, c.URL(rd), false)
		if err != nil {
			t.Fatalf("linearizable list through follower %s: %v", c.ID(rd), err)
		}
		if _, ok := setOf(objs)[name]; !ok {
			t.Errorf("linearizable list through follower %s right after the write misses %s", c.ID(rd), name)
		}
	}
}

// TestNoLeaderAnswers503 kills two of three nodes. The survivor answers
// writes and linearizable reads with 503 and a JSON error and Retry-After,
// promptly; nothing it refused is written.
func TestNoLeaderAnswers503(t *testing.T) {
	c := newCluster(t, testcluster.Options{})
	hc := httpClient()
	leader, _ := c.WaitLeader(leaderTimeout)
	l := newLedger()
	l.mustCreate(t, c, hc, "before", nil)
	// The leader survives, so it must notice that it lost its quorum.
	survivor := leader
	for i := range c.N() {
		if i != survivor {
			c.Kill(i)
		}
	}
	url := c.URL(survivor)

	// Right away, the survivor still thinks it leads: a write must still
	// be answered within the request timeout, not hang.
	start := time.Now()
	l.attempt("during-loss")
	r, err := do(hc, http.MethodPost, url+"/v1/vms", createBody("during-loss", nil, 1))
	if err != nil {
		t.Fatalf("POST right after losing the quorum: no answer within %s: %v", requestTimeout, err)
	}
	t.Logf("POST right after losing the quorum: %s after %s", r, time.Since(start).Round(time.Millisecond))
	wantAPIError(t, "POST right after losing the quorum", r, http.StatusServiceUnavailable,
		[]string{resource.CodeNoLeader, resource.CodeUnavailable}, "")

	// Once it knows there is no leader, it refuses before proposing.
	testcluster.WaitFor(t, leaderTimeout, "the survivor to know it has no leader", func() (bool, error) {
		st, err := c.Status(survivor)
		if err != nil {
			return false, err
		}
		return st.RaftState != "Leader" && st.LeaderID == "", fmt.Errorf("survivor is %s, leader %q", st.RaftState, st.LeaderID)
	})
	for _, req := range []struct {
		method, path string
		body         []byte
	}{
		{http.MethodPost, "/v1/vms", createBody("refused", nil, 1)},
		{http.MethodPut, "/v1/vms/before", []byte(`{"labels":{},"spec":{"cpus":3,"memory_mib":64}}`)},
		{http.MethodDelete, "/v1/vms/before", nil},
		{http.MethodGet, "/v1/vms", nil},
		{http.MethodGet, "/v1/vms/before", nil},
	} {
		what := req.method + " " + req.path + " without a leader"
		start := time.Now()
		r, err := do(hc, req.method, url+req.path, req.body)
		if err != nil {
			t.Errorf("%s: no answer within %s: %v", what, requestTimeout, err)
			continue
		}
		wantAPIError(t, what, r, http.StatusServiceUnavailable, []string{resource.CodeNoLeader, resource.CodeUnavailable}, "")
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After header", what)
		}
		t.Logf("%s: %s after %s", what, r, time.Since(start).Round(time.Millisecond))
	}
	// Stale reads still answer from local state.
	objs, err := list(hc, url, true)
	if err != nil {
		t.Fatalf("stale list without a leader: %v", err)
	}
	if _, ok := setOf(objs)["before"]; !ok {
		t.Errorf("stale list without a leader misses the object written before")
	}

	c.StartAll()
	c.WaitLeader(leaderTimeout)
	state := waitSameEverywhere(t, c, hc)
	if _, ok := state["refused"]; ok {
		t.Errorf("a create refused with 503 no_leader was written")
	}
	if k, w := state["before"], keyOf(l.acked["before"]); k.ID != w.ID || k.Spec != w.Spec || k.Labels != w.Labels {
		t.Errorf("an update or delete refused with 503 was applied: before = %+v, want %+v", k, w)
	}
	checkLedger(t, "cluster", l, state)
}
