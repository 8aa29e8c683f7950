package examples_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/script"
)

// TestRebalanceOnReadyPolicy runs rebalance-on-ready.star against the real
// API and state machine: four stopped VMs on h1; h2 becomes ready; a dry
// run (as a plain script) prints the moves and moves nothing, the policy's
// handler moves at most 3 of them, cold.
func TestRebalanceOnReadyPolicy(t *testing.T) {
	s := apitest.New(t)
	c, err := client.New(client.Config{Addrs: []string{s.URL}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	host := func(name string) {
		s.MustApply(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: name, ID: "id-" + name,
			State: resource.HostReady, Capacity: resource.Resources{CPUs: 8, MemoryMiB: 4096}})
	}
	host("h1")
	names := []string{"a", "b", "c", "d"}
	place := map[string]string{}
	for _, n := range names {
		if _, err := c.VMs().Create(ctx, n, resource.VMSpec{CPUs: 1, MemoryMiB: 768, Power: resource.PowerStopped}, nil); err != nil {
			t.Fatal(err)
		}
		place[n] = "h1"
	}
	s.Place(t, place)
	var reports []resource.VMReport
	for _, n := range names {
		v, _, err := c.VMs().Get(ctx, n, nil)
		if err != nil {
			t.Fatal(err)
		}
		reports = append(reports, resource.VMReport{VM: n, Epoch: v.Status.Epoch, Phase: resource.PhaseStopped})
	}
	s.MustApply(t, fsm.ReportRequestType, &fsm.ReportRequest{Time: time.Now().UTC(), Host: "h1", Reports: reports})
	host("h2")
	onH2 := func() (n int) {
		for _, name := range names {
			if v, _, err := c.VMs().Get(ctx, name, nil); err == nil && v.Status.Host == "h2" {
				n++
			}
		}
		return n
	}

	out := mustRunExample(t, c, "rebalance-on-ready.star", "--dry-run")
	if !strings.Contains(out, "rebalance-on-ready: asked: would move a h1 -> h2 (cold): spread:") || onH2() != 0 {
		t.Fatalf("dry run moved %d VMs; output:\n%s", onH2(), out)
	}
	if _, err := runExample(t, c, "rebalance-on-ready.star", "--bogus"); err == nil || !strings.Contains(err.Error(), "give --dry-run or --now") {
		t.Fatalf("bad argument: %v", err)
	}

	src, err := os.ReadFile("rebalance-on-ready.star")
	if err != nil {
		t.Fatal(err)
	}
	pout := &syncBuffer{}
	p, err := script.LoadPolicy(ctx, "rebalance-on-ready", string(src), script.Env{Client: c, Out: pout})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Kinds(), []string{"host.ready"}) {
		t.Fatalf("policy kinds %v", p.Kinds())
	}
	ho, _, err := c.Get(ctx, resource.KindHost, "h2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Handle(ctx, script.Event{Type: "host.ready", Kind: resource.KindHost, Name: "h2", Index: ho.ModifyIndex, Object: ho}); err != nil {
		t.Fatal(err)
	}
	got := pout.String()
	if n := strings.Count(got, "rebalance-on-ready: host h2 is ready: moving "); n < 1 || n > 3 || onH2() != n {
		t.Fatalf("the policy moved %d VMs to h2; output:\n%s", onH2(), got)
	}
}
