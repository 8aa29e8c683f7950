package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestRaftLogStoreConversion: a controller restarted with the other
// --raft-log-store converts its data directory's Raft log and goes on as
// the same node of the same cluster: every object written before is there,
// with its identity and a term no lower than before; writes after land in
// the new store (they survive the conversion back), and the log's
// snapshot-and-compaction (a low snapshot threshold) works on a WAL too.
// /v1/status names the store in use; a restart without --raft-log-store
// keeps it (boltdb here, not the default's wal).
func TestRaftLogStoreConversion(t *testing.T) {
	dir := t.TempDir()
	var logs syncBuffer
	start := func(kind string) (*Agent, *client.Client) {
		t.Helper()
		a, err := Start(controller.Config{
			NodeID: "ls1", DataDir: dir, BindIP: "127.0.0.120", BootstrapExpect: 1, RaftLogStore: kind,
			SnapshotThreshold: 64, TrailingLogs: 16, SnapshotInterval: 200 * time.Millisecond,
			Logger: hclog.New(&hclog.LoggerOptions{Name: "ls1", Level: hclog.Info, Output: io.MultiWriter(newTestWriter(t), &logs)}),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
		c, err := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
		if err != nil {
			t.Fatal(err)
		}
		return a, c
	}
	create := func(c *client.Client, prefix string, n int) {
		t.Helper()
		for i := range n {
			req := resource.CreateRequest{Name: fmt.Sprintf("%s-%d", prefix, i), Spec: json.RawMessage(`{"cpus":1,"memory_mib":64}`)}
			if _, err := c.Create(context.Background(), resource.KindVM, req); err != nil {
				t.Fatalf("create %s: %v", req.Name, err)
			}
		}
	}
	names := func(c *client.Client) map[string]bool {
		t.Helper()
		vms, _, err := c.List(context.Background(), resource.KindVM, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, o := range vms {
			got[o.Name] = true
		}
		return got
	}
	want := func(c *client.Client, prefixes ...string) {
		t.Helper()
		got := names(c)
		for _, p := range prefixes {
			for i := range 100 {
				if n := fmt.Sprintf("%s-%d", p, i); !got[n] {
					t.Fatalf("vm %s is missing after the conversion (%d VMs)", n, len(got))
				}
			}
		}
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, "raft", name))
		return err == nil
	}

	a, c := start(controller.LogStoreBoltDB)
	id := waitClusterID(t, a)
	create(c, "bolt", 100)
	before := status(t, a)
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	a, c = start(controller.LogStoreWAL)
	if got := waitClusterID(t, a); got != id {
		t.Fatalf("after the conversion the cluster id is %s, want %s", got, id)
	}
	if st := status(t, a); st.NodeUUID != before.NodeUUID || st.Term < before.Term || st.RaftLogStore != controller.LogStoreWAL {
		t.Fatalf("after the conversion: node uuid %s, term %d, raft_log_store %q; before %s, %d, want wal",
			st.NodeUUID, st.Term, st.RaftLogStore, before.NodeUUID, before.Term)
	}
	if !exists("wal") || exists("raft.db") || !exists("raft.db.converted") {
		t.Fatalf("DATA/raft after boltdb → wal: wal %t, raft.db %t, raft.db.converted %t", exists("wal"), exists("raft.db"), exists("raft.db.converted"))
	}
	if !strings.Contains(logs.String(), "converted the Raft log store") {
		t.Fatal("the log does not say the store was converted")
	}
	want(c, "bolt")
	create(c, "wal", 100)
	// The WAL is snapshotted and compacted like the BoltDB log.
	testcluster.WaitFor(t, 15*time.Second, "a snapshot that compacts the WAL", func() (bool, error) {
		snaps, _ := os.ReadDir(filepath.Join(dir, "raft", "snapshots"))
		return len(snaps) > 0 && strings.Contains(logs.String(), "compacting logs"), nil
	})
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	a, c = start(controller.LogStoreBoltDB)
	if got := waitClusterID(t, a); got != id {
		t.Fatalf("after the conversion back the cluster id is %s, want %s", got, id)
	}
	if !exists("raft.db") || exists("wal") || !exists("wal.converted") {
		t.Fatalf("DATA/raft after wal → boltdb: raft.db %t, wal %t, wal.converted %t", exists("raft.db"), exists("wal"), exists("wal.converted"))
	}
	want(c, "bolt", "wal")
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Without --raft-log-store the node keeps the store it has: no
	// conversion back to the default.
	converted := strings.Count(logs.String(), "converted the Raft log store")
	a, c = start("")
	if got := waitClusterID(t, a); got != id {
		t.Fatalf("after a start without --raft-log-store the cluster id is %s, want %s", got, id)
	}
	if st := status(t, a); st.RaftLogStore != controller.LogStoreBoltDB || !exists("raft.db") || exists("wal") ||
		strings.Count(logs.String(), "converted the Raft log store") != converted {
		t.Fatalf("a start without --raft-log-store: raft_log_store %q, raft.db %t, wal %t; want boltdb kept, nothing converted",
			st.RaftLogStore, exists("raft.db"), exists("wal"))
	}
	want(c, "bolt", "wal")
}

// TestNewServerGetsSnapshot: a server added after the leader snapshotted
// and compacted its Raft log (the default store, wal) is sent the
// snapshot, not the whole log from index 1. raft-wal kept answering reads
// of truncated entries still in its tail segment, so the leader replayed
// the whole log to a new server: 13 s instead of 1.3 s for 150,000 VMs
// (docs/benchmarks.md, third_party/raft-wal/KUMOI.md).
func TestNewServerGetsSnapshot(t *testing.T) {
	ips := testcluster.ReserveIPs(t, 2)
	var logs syncBuffer
	raftAddr := func(ip string) raft.ServerAddress {
		return raft.ServerAddress(net.JoinHostPort(ip, strconv.Itoa(controller.DefaultRaftPort)))
	}
	start := func(id, ip string, bootstrap []raft.Server) *Agent {
		t.Helper()
		a, err := Start(controller.Config{
			NodeID: id, DataDir: filepath.Join(t.TempDir(), id), BindIP: ip, BootstrapServers: bootstrap, DisableGossip: true,
			SnapshotThreshold: 64, TrailingLogs: 16, SnapshotInterval: 200 * time.Millisecond,
			Logger: hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Info, Output: io.MultiWriter(newTestWriter(t), &logs)}),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
		return a
	}
	a := start("ns1", ips[0], []raft.Server{{Suffrage: raft.Voter, ID: "ns1", Address: raftAddr(ips[0])}})
	waitClusterID(t, a)
	if st := status(t, a); st.RaftLogStore != controller.LogStoreWAL {
		t.Fatalf("raft_log_store %q, want the default wal", st.RaftLogStore)
	}
	c, err := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		req := resource.CreateRequest{Name: fmt.Sprintf("vm-%d", i), Spec: json.RawMessage(`{"cpus":1,"memory_mib":64}`)}
		if _, err := c.Create(context.Background(), resource.KindVM, req); err != nil {
			t.Fatalf("create %s: %v", req.Name, err)
		}
	}
	r := a.Controller().Raft()
	testcluster.WaitFor(t, 15*time.Second, "a snapshot that compacts the log", func() (bool, error) {
		return strings.Contains(logs.String(), "ns1.raft: compacting logs"), nil
	})
	b := start("ns2", ips[1], nil)
	target := r.LastIndex()
	if err := r.AddNonvoter("ns2", raftAddr(ips[1]), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "the new server to catch up", func() (bool, error) {
		return b.Controller().FSM().AppliedIndex() >= target, nil
	})
	if !strings.Contains(logs.String(), "ns2.raft: copied to local snapshot") {
		t.Fatal("the new server caught up without being sent the snapshot (the leader replayed its compacted log)")
	}
	vms, err := b.Controller().FSM().State().List(nil, resource.KindVM, nil)
	if err != nil || len(vms) != 150 {
		t.Fatalf("the new server holds %d VMs (%v), want 150", len(vms), err)
	}
}
