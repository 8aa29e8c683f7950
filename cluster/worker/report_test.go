package worker

import (
	"testing"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// TestReportSeq: the sequence of a worker's reports grows with every
// request, across a restart (a new reportSeq, as a restarted worker has)
// and when the clock is set back: it is never at or below what it sent
// or what the controllers recorded (status.report_seq).
func TestReportSeq(t *testing.T) {
	clock := time.Unix(1_800_000_000, 0)
	s := &reportSeq{now: func() time.Time { return clock }}
	a := s.next()
	if a != uint64(clock.UnixNano()) {
		t.Fatalf("first sequence %d, want the clock %d", a, clock.UnixNano())
	}
	if b := s.next(); b <= a {
		t.Fatalf("same clock: %d after %d", b, a)
	}
	clock = clock.Add(-time.Hour) // set back
	c := s.next()
	if c <= a+1 {
		t.Fatalf("clock set back: %d after %d", c, a+1)
	}

	// A restarted worker whose clock is behind what its previous
	// incarnation sent: the first pass reads the recorded sequences.
	r := &reportSeq{now: func() time.Time { return clock }}
	r.observe(c)
	r.observe(7) // older ones do not lower it
	if d := r.next(); d <= c {
		t.Fatalf("after a restart: %d, not above the recorded %d", d, c)
	}

	req := resource.ReportRequest{
		Reports:   []resource.VMReport{{VM: "a", Phase: resource.PhaseRunning}, {VM: "b", Phase: resource.PhaseStopped}},
		Resources: []resource.ResourceReport{{Kind: resource.KindNetwork, Name: "n", State: resource.HostResourceReady}},
	}
	out := r.stampRequest(req)
	if seq := out.Reports[0].Seq; seq <= c || out.Reports[1].Seq != seq || out.Resources[0].Seq != seq {
		t.Fatalf("stamped %+v, want one sequence above %d on every report", out, c)
	}
	if req.Reports[0].Seq != 0 || req.Reports[1].Seq != 0 || req.Resources[0].Seq != 0 {
		t.Fatalf("stampRequest changed the reports the worker remembers: %+v", req)
	}
	if got := r.stampRequest(resource.ReportRequest{}); got.Reports != nil || got.Resources != nil || r.last != out.Reports[0].Seq {
		t.Fatalf("an empty request: %+v, and it took a sequence (%d)", got, r.last)
	}
}
