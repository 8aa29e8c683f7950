package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// stateDump is everything a snapshot must bring back, as the API shows
// it: every object of every kind (whole, status and indexes included)
// and the ACL policies.
type stateDump map[string]string // "kind/name" (or "acl-policy/name") -> JSON

// dumpState reads the whole state through node i's API: linearizably,
// retrying until writeDeadline; or, stale, what node i itself holds, once
// (an error is returned as a dump that differs from any state).
func dumpState(t *testing.T, c *testcluster.Cluster, i int, stale bool) stateDump {
	t.Helper()
	q := ""
	if stale {
		q = "?stale"
	}
	get := func(path string, v any) error {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		return testcluster.GetJSON(ctx, c.HTTPClient(), c.URL(i)+path+q, v)
	}
	var out stateDump
	read := func() (bool, error) {
		out = stateDump{}
		for _, k := range resource.Kinds() {
			var objs []*resource.Object
			if err := get("/v1/"+k.Plural, &objs); err != nil {
				return false, err
			}
			for _, o := range objs {
				b, _ := json.Marshal(o)
				out[string(o.Kind)+"/"+o.Name] = string(b)
			}
		}
		var pols []*resource.ACLPolicy
		if err := get("/v1/acl/policies", &pols); err != nil {
			return false, err
		}
		for _, p := range pols {
			b, _ := json.Marshal(p)
			out["acl-policy/"+p.Name] = string(b)
		}
		return true, nil
	}
	if stale {
		if _, err := read(); err != nil {
			return stateDump{"error": err.Error()}
		}
		return out
	}
	testcluster.WaitFor(t, writeDeadline, "the state of "+c.ID(i), read)
	return out
}

func (d stateDump) diff(want stateDump) string {
	var lines []string
	for k, v := range want {
		if got, ok := d[k]; !ok {
			lines = append(lines, "missing "+k)
		} else if got != v {
			lines = append(lines, fmt.Sprintf("%s differs:\n  want %s\n  got  %s", k, v, got))
		}
	}
	for k := range d {
		if _, ok := want[k]; !ok {
			lines = append(lines, "unexpected "+k)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestSnapshotSaveRestore backs a cluster up and restores it with the
// CLI (ACLs on): `operator snapshot save` writes a file that `inspect`
// describes; a restore into the same cluster brings back the state of the
// save (an object created since is gone, one deleted since is back); a
// damaged file is refused by inspect and restore alike and changes
// nothing; then every controller's data is destroyed and a new cluster
// bootstrapped in their place: it refuses the old cluster's snapshot
// without -force, takes it with -force — every object as it was, on every
// controller, and the old cluster's identity — takes writes, and keeps it
// all across a controller's restart.
func TestSnapshotSaveRestore(t *testing.T) {
	c := newCluster(t, testcluster.Options{Controllers: 3})
	c.WaitLeader(leaderTimeout)
	oldID := clusterID(t, c)
	kumoi, must := cliOf(t, c)
	refused := func(mention string, args ...string) {
		t.Helper()
		out, err := kumoi(args...)
		if err == nil || !strings.Contains(out, mention) {
			t.Fatalf("kumoi %s: %v, want a failure mentioning %q:\n%s", strings.Join(args, " "), err, mention, out)
		}
	}

	// A state with several kinds, labels, an ACL policy and token.
	for i := range 12 {
		must("vm", "create", fmt.Sprintf("vm-%02d", i), "--cpus", "1", "--memory", "64MiB", "--label", fmt.Sprintf("tier=t%d", i%3))
	}
	must("network", "create", "net1", "--cidr", "10.77.0.0/29", "--gateway", "10.77.0.1", "--mode", "nat", "--label", "env=prod")
	must("project", "create", "team-a", "--max-vms", "5")
	must("acl", "policy", "create", "readers", "--rule", "vm:read")
	must("acl", "token", "create", "--policy", "readers", "--name", "ro")
	saved := dumpState(t, c, 0, false)

	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	out := must("operator", "snapshot", "save", file)
	if !strings.Contains(out, oldID) {
		t.Errorf("save does not name the cluster %s:\n%s", oldID, out)
	}
	var meta struct {
		File string `json:"file"`
		resource.SnapshotMeta
	}
	if err := json.Unmarshal([]byte(must("operator", "snapshot", "inspect", file, "-o", "json")), &meta); err != nil {
		t.Fatal(err)
	}
	if meta.ClusterID != oldID || meta.Objects[resource.KindVM] != 12 || meta.Objects[resource.KindNetwork] != 1 ||
		meta.ACLPolicies < 1 || meta.ACLTokens < 2 || meta.Index == 0 || meta.SHA256 == "" || meta.Format != 1 {
		t.Errorf("inspect: %+v", meta)
	}

	// Same cluster: the restore rolls the state back to the save.
	must("vm", "create", "late", "--cpus", "1", "--memory", "64MiB")
	must("vm", "delete", "vm-00")
	out = must("operator", "snapshot", "restore", file)
	t.Logf("restore: %s", out)
	if d := dumpState(t, c, 0, false).diff(saved); d != "" {
		t.Fatalf("after restoring into the same cluster:\n%s", d)
	}

	// A damaged file: refused, nothing changes.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "damaged.snap")
	damaged := slices.Clone(raw)
	damaged[len(damaged)/2] ^= 0xff
	if err := os.WriteFile(bad, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.snap")
	if err := os.WriteFile(truncated, raw[:len(raw)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	must("vm", "create", "after-restore", "--cpus", "1", "--memory", "64MiB")
	before := dumpState(t, c, 0, false)
	for _, f := range []string{bad, truncated} {
		refused("not a valid kumoi snapshot", "operator", "snapshot", "inspect", f)
		refused("not a valid kumoi snapshot", "operator", "snapshot", "restore", f)
	}
	refused("not a valid kumoi snapshot", "operator", "snapshot", "inspect", filepath.Join("..", "..", "go.mod"))
	if d := dumpState(t, c, 0, false).diff(before); d != "" {
		t.Fatalf("a refused restore changed the state:\n%s", d)
	}

	// Every controller's data lost: a new cluster in their place.
	c.StopAll()
	for i := range c.N() {
		c.Wipe(i)
	}
	c.StartAll()
	c.WaitLeader(leaderTimeout)
	newID := clusterID(t, c)
	if newID == oldID {
		t.Fatalf("the rebuilt cluster kept the identity %s", oldID)
	}
	empty := dumpState(t, c, 0, false)
	refused("-force", "operator", "snapshot", "restore", file)
	if d := dumpState(t, c, 0, false).diff(empty); d != "" {
		t.Fatalf("a refused restore changed the new cluster:\n%s", d)
	}
	out = must("operator", "snapshot", "restore", "-force", file)
	if !strings.Contains(out, newID) || !strings.Contains(out, oldID) {
		t.Errorf("a forced restore should name the identity replaced (%s) and the new one (%s):\n%s", newID, oldID, out)
	}
	for i := range c.N() {
		testcluster.WaitFor(t, convergeWithin, fmt.Sprintf("%s to hold the snapshot's state and identity", c.ID(i)), func() (bool, error) {
			st, err := c.Status(i)
			if err != nil {
				return false, err
			}
			if st.ClusterID != oldID {
				return false, fmt.Errorf("%s says cluster %s", c.ID(i), st.ClusterID)
			}
			if id := readID(t, c.DataDir(i)); id != oldID {
				return false, fmt.Errorf("%s's data directory says cluster %s", c.ID(i), id)
			}
			return true, nil
		})
	}
	if d := dumpState(t, c, 0, false).diff(saved); d != "" {
		t.Fatalf("after restoring into a new cluster:\n%s", d)
	}

	// It takes writes, and a restarted controller comes back with it all.
	must("vm", "create", "new-era", "--cpus", "1", "--memory", "64MiB")
	want := dumpState(t, c, 0, false)
	c.Stop(2)
	c.Start(2)
	c.WaitConverged(convergeWithin)
	for i := range c.N() {
		testcluster.WaitFor(t, convergeWithin, c.ID(i)+" to hold the state", func() (bool, error) {
			if d := dumpState(t, c, i, true).diff(want); d != "" {
				return false, fmt.Errorf("%s", d)
			}
			return true, nil
		})
	}
}
