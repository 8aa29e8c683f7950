package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestUnknownEntryHaltsControllers: a committed log entry this build
// cannot apply (type 99, without the ignorable flag — as a newer build
// might write) takes every controller out of service loudly instead of
// being skipped. There is no API to propose raw bytes, so the test writes
// the entry itself: it stops the converged cluster, appends the same entry
// (next index, last term) to every controller's Raft log on disk, and
// restarts the cluster, whose new leader commits it. Then every
// controller reports health "halted" naming the entry in GET /v1/status,
// refuses writes with 503 "halted", and its `kumoi agent` exits non-zero
// with the reason on stderr.
func TestUnknownEntryHaltsControllers(t *testing.T) {
	c := newCluster(t, testcluster.Options{})
	hc := httpClient()
	c.WaitLeader(leaderTimeout)
	l := newLedger()
	for i := range 5 {
		l.mustCreate(t, c, hc, fmt.Sprintf("before-%d", i), nil)
	}
	c.WaitConverged(convergeWithin)
	c.KillAll() // no hand-off: the logs stay as converged

	// Append the same raw entry to every log.
	var at uint64
	for i := range c.N() {
		idx := appendRawEntry(t, filepath.Join(c.DataDir(i), "raft"), []byte("\x63{}"))
		if at != 0 && idx != at {
			t.Fatalf("the logs differ: %s appended at %d, another node at %d", c.ID(i), idx, at)
		}
		at = idx
	}
	t.Logf("appended an entry of type 99 at index %d on every controller", at)

	c.StartAll()
	for i := range c.N() {
		c.ExpectExit(i) // they exit on their own, non-zero: checked below
	}
	want := fmt.Sprintf("log entry %d (type(99)): unknown command type 99", at)
	for i := range c.N() {
		var st resource.Status
		testcluster.WaitFor(t, leaderTimeout, c.ID(i)+" to report health halted", func() (bool, error) {
			var err error
			st, err = c.Status(i)
			if err != nil {
				return false, err
			}
			return st.Health == resource.HealthHalted, fmt.Errorf("health %q", st.Health)
		})
		for _, w := range []string{want, "Upgrade", "kumoi cluster remove " + c.ID(i)} {
			if !strings.Contains(st.HealthReason, w) {
				t.Errorf("%s: health_reason %q does not mention %q", c.ID(i), st.HealthReason, w)
			}
		}
		if st.AppliedIndex >= at {
			t.Errorf("%s: applied_index %d, want below the halting entry %d", c.ID(i), st.AppliedIndex, at)
		}
		r, err := do(hc, "POST", c.URL(i)+"/v1/vms", createBody("after-halt", nil, 1))
		if err != nil || r.Status != 503 || r.APIError() == nil || r.APIError().Code != resource.CodeHalted {
			t.Errorf("%s: write after the halt: %v %v, want 503 halted", c.ID(i), r, err)
		}
	}
	for i := range c.N() {
		err := c.Wait(i, time.Minute)
		if err == nil || !strings.Contains(err.Error(), "exit status 1") {
			t.Errorf("%s: exit %v, want exit status 1", c.ID(i), err)
		}
		b, rerr := os.ReadFile(c.LogPath(i))
		if rerr != nil {
			t.Fatal(rerr)
		}
		if line := fmt.Sprintf("kumoi: controller %s halted: the state machine has halted at %s", c.ID(i), want); !strings.Contains(string(b), line) {
			t.Errorf("%s: stderr lacks %q", c.ID(i), line)
		}
	}
}

// appendRawEntry appends a command entry with data to the Raft log in
// path (a data directory's raft/, whichever store it is in; the node must
// be stopped), at the next index and in the term of the last entry, and
// returns its index.
func appendRawEntry(t *testing.T, path string, data []byte) uint64 {
	t.Helper()
	store, _, err := controller.OpenRaftLog(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer store.Close()
	last, err := store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var prev raft.Log
	if err := store.GetLog(last, &prev); err != nil {
		t.Fatalf("read entry %d of %s: %v", last, path, err)
	}
	l := &raft.Log{Index: last + 1, Term: prev.Term, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
	if err := store.StoreLog(l); err != nil {
		t.Fatal(err)
	}
	return l.Index
}
