package controller

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// TestRestoreRefusedWhileWorkersRun: a snapshot restore is refused, and
// changes nothing, while a host is ready or draining (its worker runs);
// once every host is down it goes through.
func TestRestoreRefusedWhileWorkersRun(t *testing.T) {
	ic := newInmemCluster(t, 1)
	c := ic.ctrls[ic.leader(t)]
	ctx := context.Background()
	hostState := func(name, state string) {
		t.Helper()
		if _, err := c.Propose(ctx, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: name, ID: uuid.NewString(),
			State: state, Capacity: resource.Resources{CPUs: 8, MemoryMiB: 8192}}); err != nil {
			t.Fatal(err)
		}
	}
	hostState("h1", resource.HostReady)
	hostState("h2", resource.HostReady)
	var snap bytes.Buffer
	if _, err := c.SaveSnapshot(ctx, &snap); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Propose(ctx, fsm.CreateRequestType, &fsm.CreateRequest{Time: time.Now().UTC(), Kind: resource.KindNetwork, Name: "after-save",
		ID: uuid.NewString(), Spec: []byte(`{"cidr":"10.9.0.0/24"}`)}); err != nil {
		t.Fatal(err)
	}
	present := func() bool {
		o, err := c.FSM().State().Get(nil, resource.KindNetwork, "after-save")
		return err == nil && o != nil
	}
	_, err := c.RestoreSnapshot(ctx, snap.Bytes(), false)
	if !errors.Is(err, resource.ErrWorkersRunning) || !strings.Contains(err.Error(), "h1, h2") {
		t.Fatalf("restore with two ready hosts: %v; want ErrWorkersRunning naming h1, h2", err)
	}
	if !present() {
		t.Fatal("a refused restore changed the state")
	}
	hostState("h1", resource.HostDown)
	if _, err := c.RestoreSnapshot(ctx, snap.Bytes(), false); !errors.Is(err, resource.ErrWorkersRunning) || !strings.Contains(err.Error(), "(h2)") {
		t.Fatalf("restore with h2 ready: %v; want ErrWorkersRunning naming h2", err)
	}
	hostState("h2", resource.HostDown)
	if _, err := c.RestoreSnapshot(ctx, snap.Bytes(), false); err != nil {
		t.Fatalf("restore with every host down: %v", err)
	}
	if present() {
		t.Fatal("the restore did not roll the state back")
	}
}
