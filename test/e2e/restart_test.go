package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestFullRestartKeepsData writes, updates (with CAS) and deletes objects,
// restarts every node — first gracefully (SIGTERM), then hard (SIGKILL) —
// and checks that the objects are exactly what they were.
func TestFullRestartKeepsData(t *testing.T) {
	c := newCluster(t, testcluster.Options{})
	hc := httpClient()
	c.WaitLeader(leaderTimeout)
	l := newLedger()

	round := func(t *testing.T, tag string, stopAll func()) {
		leader, _ := c.WaitLeader(leaderTimeout)
		url := c.URL(leader)
		for i := range 30 {
			l.mustCreate(t, c, hc, fmt.Sprintf("%s-%d", tag, i), map[string]string{"round": tag, "i": strconv.Itoa(i)})
		}
		// Update every third object with CAS, delete every fifth.
		for i := 0; i < 30; i += 3 {
			name := fmt.Sprintf("%s-%d", tag, i)
			casUpdate(t, hc, url, name, map[string]string{"round": tag, "updated": "yes"}, 2)
		}
		for i := 0; i < 30; i += 5 {
			name := fmt.Sprintf("%s-%d", tag, i)
			r, err := do(hc, http.MethodDelete, url+"/v1/vms/"+name, nil)
			if err != nil || r.Status != http.StatusOK {
				t.Fatalf("DELETE %s: %v %v", name, r, err)
			}
		}
		want := waitSameEverywhere(t, c, hc)
		// Cross-check with what was done.
		for i := range 30 {
			name := fmt.Sprintf("%s-%d", tag, i)
			k, ok := want[name]
			switch {
			case i%5 == 0 && ok:
				t.Errorf("deleted %s is still there", name)
			case i%5 != 0 && !ok:
				t.Errorf("%s is missing before the restart", name)
			case ok && i%3 == 0 && k.Labels != "round="+tag+",updated=yes":
				t.Errorf("updated %s has labels %s", name, k.Labels)
			}
		}

		stopAll()
		for i := range c.N() {
			if c.Alive(i) {
				t.Fatalf("%s still runs", c.ID(i))
			}
		}
		c.StartAll()
		c.WaitLeader(leaderTimeout)
		got := waitSameEverywhere(t, c, hc)
		if d := diff(want, got); d != "" {
			t.Errorf("after restarting every node the objects differ: %s", d)
		}
		t.Logf("%d objects survived the restart", len(got))
	}
	t.Run("graceful", func(t *testing.T) { round(t, "graceful", c.StopAll) })
	if t.Failed() {
		return
	}
	t.Run("hard", func(t *testing.T) { round(t, "hard", c.KillAll) })
}

// casUpdate reads name and writes new labels and cpus with ?cas= its
// modify_index; it fails the test unless the update is acknowledged.
func casUpdate(t *testing.T, hc *http.Client, url, name string, labels map[string]string, cpus int) *resource.Object {
	t.Helper()
	r, err := do(hc, http.MethodGet, url+"/v1/vms/"+name, nil)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("GET %s: %v %v", name, r, err)
	}
	var o resource.Object
	if err := r.Decode(&o); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"labels": labels,
		"spec":   map[string]any{"cpus": cpus, "memory_mib": 128},
	})
	r, err = do(hc, http.MethodPut, fmt.Sprintf("%s/v1/vms/%s?cas=%d", url, name, o.ModifyIndex), body)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("PUT %s?cas=%d: %v %v", name, o.ModifyIndex, r, err)
	}
	var u resource.Object
	if err := r.Decode(&u); err != nil {
		t.Fatal(err)
	}
	if u.ModifyIndex <= o.ModifyIndex {
		t.Errorf("PUT %s: modify_index %d did not grow from %d", name, u.ModifyIndex, o.ModifyIndex)
	}
	return &u
}
