package agent

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestDevFailedOnHalt: when the state machine of a dev cluster's
// controller halts on an entry it cannot apply, the dev cluster says so
// (Failed, Err) so that `kumoi agent -dev` exits non-zero instead of
// serving a cluster that takes no writes.
func TestDevFailedOnHalt(t *testing.T) {
	old := HaltExitGrace
	HaltExitGrace = 100 * time.Millisecond
	t.Cleanup(func() { HaltExitGrace = old })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := StartDev(ctx, DevConfig{Controllers: 1, Hosts: 1, BindIP: "127.0.0.77", APIPort: 17400})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		_ = d.Shutdown(sctx)
	})
	select {
	case <-d.Failed():
		t.Fatalf("failed before anything went wrong: %v", d.Err())
	default:
	}
	// A command type this build does not know, committed through Raft as
	// a newer build might write it.
	if err := d.Agents[0].Controller().Raft().Apply([]byte("\x63{}"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Failed():
	case <-time.After(20 * time.Second):
		t.Fatal("the dev cluster did not report its halted controller")
	}
	if err := d.Err(); err == nil || !strings.Contains(err.Error(), "unknown command type 99") {
		t.Fatalf("Err = %v, want the halt's reason", err)
	}
}
