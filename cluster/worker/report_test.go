package worker

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/hypervisor"
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

// TestReportOlderLeader: a leader of a release before log protocol 11
// refuses a report's seq as an unknown field (400, naming it); the worker
// sends the same reports again without it, goes on without for a while,
// then tries again.
func TestReportOlderLeader(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		rw.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(b), `"seq"`) {
			rw.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(rw, `{"error":{"code":"bad_request","message":"unknown field; remove it","field":"reports[0].seq"}}`)
			return
		}
		_, _ = io.WriteString(rw, `{"index":7,"results":[{"vm":"a"}]}`)
	}))
	defer srv.Close()
	c, err := client.New(client.Config{Addrs: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1_800_000_000, 0)
	w := testReporter(func() time.Time { return clock })
	req := resource.ReportRequest{Reports: []resource.VMReport{{VM: "a", Epoch: 3, Phase: resource.PhaseRunning}}}
	sends := func(want ...bool) {
		t.Helper()
		mu.Lock()
		bodies = nil
		mu.Unlock()
		if res, sent, err := w.report(context.Background(), c, req); err != nil || !sent || res.Results[0].Error != nil {
			t.Fatalf("report: %+v, %v, %v", res, sent, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(bodies) != len(want) {
			t.Fatalf("%d requests (%q), want %d", len(bodies), bodies, len(want))
		}
		for i, b := range bodies {
			if strings.Contains(b, `"seq"`) != want[i] {
				t.Fatalf("request %d %s: with seq %v, want %v", i, b, !want[i], want[i])
			}
		}
	}
	sends(true, false) // refused with it, recorded without
	sends(false)       // without, for a while
	clock = clock.Add(seqSuspension)
	sends(true, false) // then it tries again
}

// TestReportUnsure: what a failed request carried is reported again,
// unchanged or not, until a request records it; it may yet be applied
// late, and only a newer report keeps it from standing.
func TestReportUnsure(t *testing.T) {
	fail := true
	answer := `{"index":7,"results":[{"vm":"a"}],"resource_results":[{"kind":"network","name":"n"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		if fail {
			rw.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(rw, `{"error":{"code":"bad_request","message":"no"}}`)
			return
		}
		_, _ = io.WriteString(rw, answer)
	}))
	defer srv.Close()
	c, err := client.New(client.Config{Addrs: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	w := testReporter(nil)
	rep := resource.VMReport{VM: "a", Epoch: 3, Phase: resource.PhaseRunning}
	res := resource.ResourceReport{Kind: resource.KindNetwork, Name: "n", State: resource.HostResourceReady}
	w.reported["a"], w.resReported[resKey(res.Kind, res.Name)] = rep, res // recorded earlier
	if _, changed := w.changed(rep); changed {
		t.Fatal("an unchanged report counts as changed before any failure")
	}
	req := resource.ReportRequest{Reports: []resource.VMReport{rep}, Resources: []resource.ResourceReport{res}}
	if _, sent, err := w.report(context.Background(), c, req); err == nil || sent {
		t.Fatalf("the failing request: sent %v, %v", sent, err)
	}
	rp := &resPass{}
	rp.report(w, res)
	if _, changed := w.changed(rep); !changed || len(rp.reports) != 1 {
		t.Fatalf("after a failed request: VM report changed %v, resource queued %d; want both sent again", changed, len(rp.reports))
	}
	fail = false
	if _, sent, err := w.report(context.Background(), c, req); err != nil || !sent {
		t.Fatalf("the recorded request: sent %v, %v", sent, err)
	}
	rp = &resPass{}
	rp.report(w, res)
	if _, changed := w.changed(rep); changed || len(rp.reports) != 0 || len(w.unsure) != 0 {
		t.Fatalf("after a recorded request: changed %v, queued %d, unsure %v; want nothing to send", changed, len(rp.reports), w.unsure)
	}
	// Objects deleted meanwhile (not_found) are not kept unsure for
	// ever; one refused for another error is.
	fail = true
	if _, _, err := w.report(context.Background(), c, req); err == nil || len(w.unsure) != 2 {
		t.Fatalf("the failing request: %v, unsure %v", err, w.unsure)
	}
	fail = false
	answer = `{"index":8,"results":[{"vm":"a","error":{"code":"not_found","message":"gone"}}],` +
		`"resource_results":[{"kind":"network","name":"n","error":{"code":"invalid_argument","message":"no"}}]}`
	if _, sent, err := w.report(context.Background(), c, req); err != nil || !sent {
		t.Fatalf("the answered request: sent %v, %v", sent, err)
	}
	if len(w.unsure) != 1 || !w.unsure[resKey(res.Kind, res.Name)] {
		t.Fatalf("unsure %v, want only the network (refused for another reason than not_found or stale_epoch)", w.unsure)
	}
}

// testReporter is a Worker with what report, changed and resPass.report
// use.
func testReporter(now func() time.Time) *Worker {
	return &Worker{cfg: Config{NodeID: "h1"}, logger: hclog.NewNullLogger(), seq: reportSeq{now: now},
		reported: map[string]resource.VMReport{}, resReported: map[string]resource.ResourceReport{}, unsure: map[string]bool{}}
}

// TestObserveRemovedSeq: a network's removal recorded for this host (its
// entry gone, the sequence in status.removed_seq) is read as a recorded
// sequence, so that a worker whose clock is behind it numbers its next
// report above it instead of being refused as late on every pass.
func TestObserveRemovedSeq(t *testing.T) {
	clock := time.Unix(1_800_000_000, 0)
	w := testReporter(func() time.Time { return clock })
	w.netUp, w.netRemoved = map[string]bool{}, map[string]bool{}
	removedAt := uint64(clock.Add(time.Hour).UnixNano()) // recorded by a clock ahead of this one
	st, err := json.Marshal(resource.NetworkStatus{Capacity: 5, RemovedSeq: map[string]uint64{"h1": removedAt}})
	if err != nil {
		t.Fatal(err)
	}
	o := &resource.Object{Kind: resource.KindNetwork, Name: "n1", ID: "id-n1", Status: st}
	w.networkState("n1", "kumoi-n1", o, hypervisor.NetworkInfo{}, false)
	if next := w.seq.next(); next <= removedAt {
		t.Fatalf("next sequence %d, want above the recorded removal %d", next, removedAt)
	}
}
