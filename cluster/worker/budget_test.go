package worker

import (
	"context"
	"testing"
	"time"
)

// TestFenceBudget: the reports of a pass end by the pass's fence deadline
// (its last successful read + fence-after), so a pass blocked on cut-off
// controllers cannot hold the host's domains past it; before any contact
// there is no deadline.
func TestFenceBudget(t *testing.T) {
	w := &Worker{cfg: Config{FenceAfter: 3 * time.Second}}
	ctx, cancel := w.fenceBudget(context.Background())
	if _, ok := ctx.Deadline(); ok {
		t.Error("a deadline before any contact")
	}
	cancel()

	w.lastContact = time.Now().Add(-2900 * time.Millisecond)
	ctx, cancel = w.fenceBudget(context.Background())
	defer cancel()
	dl, ok := ctx.Deadline()
	if !ok || !dl.Equal(w.lastContact.Add(3*time.Second)) {
		t.Fatalf("deadline %v (%t), want last contact + fence-after", dl, ok)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the report's context outlived the fence deadline")
	}

	w.lastContact = time.Now().Add(-time.Minute)
	ctx, cancel = w.fenceBudget(context.Background())
	defer cancel()
	if ctx.Err() == nil {
		t.Error("a pass past its fence deadline may still report")
	}
}
