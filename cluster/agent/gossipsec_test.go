package agent

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/cluster/membership/membershiptest"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestGossipEncryptionAndTLS binds 127.0.76.x (no other test uses that
// range): a controller and a worker with the gossip key and certificates
// of the cluster CA form a cluster (the worker a ready host); a worker
// with another key, and one whose certificate is from another CA, never
// get in (the controller logs the refused TLS stream); a controller whose
// gossip is in order but whose Raft address presents no server
// certificate is never made a Raft server.
func TestGossipEncryptionAndTLS(t *testing.T) {
	ca, other := membershiptest.NewCA(t), membershiptest.NewCA(t)
	key := func(b byte) [][]byte {
		k, err := membership.ParseKeys([]string{base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune(b)), 32)))})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	sec := func(ca *membershiptest.CA, role, node string, keys [][]byte) membership.Security {
		s, c := ca.Configs(t, role, node)
		return membership.Security{Keys: keys, ServerTLS: s, ClientTLS: c}
	}
	var logs syncBuffer
	logger := func(name string) hclog.Logger {
		return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Info, Output: &logs})
	}
	startCtrl := func(id, ip string, expect int, s membership.Security, join ...string) *Agent {
		a, err := Start(controller.Config{NodeID: id, DataDir: t.TempDir(), BindIP: ip, BootstrapExpect: expect, Join: join,
			GossipSecurity: s, Logger: logger(id)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
		return a
	}
	startWorker := func(name, ip string, s membership.Security) {
		drv := sim.New(sim.Options{Host: name, CPUs: 2, MemoryMiB: 2048})
		t.Cleanup(func() { drv.Close() })
		w, err := worker.Start(worker.Config{NodeID: name, BindIP: ip, Join: []string{"127.0.76.1:7402"},
			Driver: drv, DriverName: "sim", GossipSecurity: s, Logger: logger(name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Kill)
	}

	a := startCtrl("gs-c1", "127.0.76.1", 1, sec(ca, "server", "gs-c1", key('a')))
	c, _ := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
	startWorker("gs-w1", "127.0.76.2", sec(ca, "worker", "gs-w1", key('a')))
	startWorker("gs-w2", "127.0.76.3", sec(ca, "worker", "gs-w2", key('b')))    // another key
	startWorker("gs-w3", "127.0.76.4", sec(other, "worker", "gs-w3", key('a'))) // another CA
	testcluster.WaitFor(t, 20*time.Second, "gs-w1 ready", func() (bool, error) {
		return hostState(t, c, "gs-w1") == resource.HostReady, nil
	})
	testcluster.WaitFor(t, 10*time.Second, "the controller to refuse gs-w3's TLS stream", func() (bool, error) {
		return strings.Contains(logs.String(), "refusing a gossip stream"), nil
	})

	// A controller with the key and a good gossip certificate, whose Raft
	// address speaks no TLS (no server certificate there).
	startCtrl("gs-c2", "127.0.76.5", 0, sec(ca, "server", "gs-c2", key('a')), "127.0.76.1:7402")
	testcluster.WaitFor(t, 20*time.Second, "the leader to refuse gs-c2 as a raft server", func() (bool, error) {
		return strings.Contains(logs.String(), "not making a controller a raft server"), nil
	})
	var cl resource.Cluster
	if err := getCluster(c, &cl); err != nil {
		t.Fatal(err)
	}
	for _, s := range cl.Servers {
		if s.ID != "gs-c1" {
			t.Errorf("%s is a raft server", s.ID)
		}
	}
	members := map[string]bool{}
	for _, m := range cl.Members {
		members[m.Name] = true
	}
	if !members["gs-c2"] || !members["gs-w1"] || members["gs-w2"] || members["gs-w3"] {
		t.Errorf("members %v: want gs-c2 and gs-w1 in, gs-w2 and gs-w3 out", members)
	}
	for _, h := range []string{"gs-w2", "gs-w3"} {
		if st := hostState(t, c, h); st != "" {
			t.Errorf("%s is a host (%s)", h, st)
		}
	}
}

func getCluster(c *client.Client, v *resource.Cluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := c.Cluster(ctx)
	if err != nil {
		return fmt.Errorf("GET /v1/cluster: %w", err)
	}
	*v = *cl
	return nil
}
