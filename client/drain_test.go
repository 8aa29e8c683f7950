package client_test

import (
	"context"
	"testing"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/api/apitest"
)

func TestHostsDrainStatusRebalance(t *testing.T) {
	t.Parallel()
	s := apitest.New(t)
	s.AddHost(t, "h1")
	c := newClient(t, s.URL)
	ctx := context.Background()
	hosts := c.Hosts()

	h, err := hosts.DrainWith(ctx, "h1", client.DrainOptions{Migrate: true})
	if err != nil || !h.Spec.Unschedulable || h.Spec.Drain == nil || !h.Spec.Drain.Migrate {
		t.Fatalf("DrainWith = %+v, %v", h, err)
	}
	idx := h.Object.ModifyIndex
	if h, err = hosts.DrainWith(ctx, "h1", client.DrainOptions{Migrate: true}); err != nil || h.Object.ModifyIndex != idx {
		t.Fatalf("DrainWith again wrote: %+v, %v", h, err)
	}
	ds, err := hosts.DrainStatus(ctx, "h1")
	if err != nil || ds.Host != "h1" || !ds.Draining || !ds.Migrate || ds.VMsLeft != 0 || ds.Migrating == nil || ds.Blocked == nil {
		t.Fatalf("DrainStatus = %+v, %v", ds, err)
	}
	if _, err := hosts.DrainStatus(ctx, "nope"); !client.IsNotFound(err) {
		t.Fatalf("DrainStatus(nope) = %v", err)
	}
	if h, err = hosts.Enable(ctx, "h1"); err != nil || h.Spec.Unschedulable || h.Spec.Drain != nil {
		t.Fatalf("Enable = %+v, %v", h, err)
	}
	res, err := hosts.Rebalance(ctx, client.RebalanceOptions{DryRun: true, Max: 3})
	if err != nil || res.Performed || res.Moves == nil || len(res.Moves) != 0 {
		t.Fatalf("Rebalance = %+v, %v", res, err)
	}
	if _, err := hosts.Rebalance(ctx, client.RebalanceOptions{Max: -1}); err == nil {
		t.Fatal("Rebalance with max -1 was accepted")
	}
}
