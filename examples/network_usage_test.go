package examples_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// TestNetworkUsage runs network-usage.star against the real API and state
// machine (no worker needed: allocation happens in the state machine).
func TestNetworkUsage(t *testing.T) {
	s := apitest.New(t)
	s.AddHost(t, "h1")
	c, err := client.New(client.Config{Addrs: []string{s.URL}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A /29 holds 5 VM addresses (8 minus network, broadcast and gateway).
	if _, err := c.Networks().Create(ctx, "small", resource.NetworkSpec{CIDR: "10.9.0.0/29"}, map[string]string{"env": "prod"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Networks().Create(ctx, "big", resource.NetworkSpec{CIDR: "10.10.0.0/24", Mode: resource.NetworkIsolated}, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		if _, err := c.VMs().Create(ctx, name, resource.VMSpec{CPUs: 1, MemoryMiB: 64, NICs: []resource.NIC{{Network: "small"}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.VMs().Create(ctx, "web", resource.VMSpec{CPUs: 1, MemoryMiB: 64, NICs: []resource.NIC{{Network: "big", IP: "10.10.0.77"}}}, nil); err != nil {
		t.Fatal(err)
	}
	// A worker reports the big network failed on h1.
	s.MustApply(t, fsm.ReportRequestType, &fsm.ReportRequest{Host: "h1", Resources: []resource.ResourceReport{
		{Kind: resource.KindNetwork, Name: "big", State: resource.HostResourceFailed, Reason: "bridge kb-x: permission denied"}}})

	out := mustRunExample(t, c, "network-usage.star")
	for _, want := range []string{
		"NETWORK          CIDR                 MODE      ADDRESSES    USE   FLAG\n",
		"big              10.10.0.0/24         isolated  1/253        0%    -\n    vm web=10.10.0.77\n    host h1: failed bridge kb-x: permission denied\n",
		"small            10.9.0.0/29          nat       5/5          100%  FULL\n    vm a=10.9.0.2\n",
		"    vm e=10.9.0.6\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out = mustRunExample(t, c, "network-usage.star", "env=prod")
	if strings.Contains(out, "big") || !strings.Contains(out, "small") {
		t.Errorf("selector env=prod:\n%s", out)
	}
	if _, err := runExample(t, c, "network-usage.star", "env=none"); err == nil || !strings.Contains(err.Error(), `no network matches "env=none"`) {
		t.Errorf("no match: %v", err)
	}
}
