package jepsen

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/internal/libvirtd"
	"github.com/kumoi/kumoi/internal/testcluster"
)

var dT0 = time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)

func dAt(ms int) time.Time { return dT0.Add(time.Duration(ms) * time.Millisecond) }

// read is a successful read of host over [ms, ms+dur] that found doms
// ("name:id").
func read(host string, ms, dur int, doms ...string) DomainSample {
	s := DomainSample{Host: host, Start: dAt(ms), End: dAt(ms + dur)}
	for _, d := range doms {
		name, id, _ := strings.Cut(d, ":")
		n := 0
		for _, c := range id {
			n = n*10 + int(c-'0')
		}
		s.Domains = append(s.Domains, ActiveDomain{Name: name, ID: n})
	}
	return s
}

// TestDaemonDoubleRuns: the interval logic on synthetic reads. A VM
// certainly active on two daemons at once is found; a move (stopped on
// one, started on the other) is not, however the reads interleave; nor
// are overlaps that only the reads' own windows could explain.
func TestDaemonDoubleRuns(t *testing.T) {
	cases := []struct {
		name    string
		samples []DomainSample
		want    int // double runs found
		from    int // ms: the first one's overlap
		to      int
	}{
		{"double run: the old domain keeps running while the new one starts elsewhere", []DomainSample{
			read("lv-1", 0, 10, "kumoi-a:3"),
			read("lv-2", 5, 10),
			read("lv-1", 150, 10, "kumoi-a:3"),
			read("lv-2", 155, 10, "kumoi-a:7"),
			read("lv-1", 300, 10, "kumoi-a:3"),
			read("lv-2", 305, 10, "kumoi-a:7"),
		}, 1, 165, 300},
		{"sequential move: stopped on lv-1 before it started on lv-2", []DomainSample{
			read("lv-1", 0, 10, "kumoi-a:3"),
			read("lv-1", 150, 10, "kumoi-a:3"),
			read("lv-2", 155, 10),
			read("lv-1", 300, 10),
			read("lv-2", 305, 10, "kumoi-a:7"),
			read("lv-2", 450, 10, "kumoi-a:7"),
		}, 0, 0, 0},
		{"move seen in overlapping slow reads: not certain", []DomainSample{
			read("lv-1", 0, 10, "kumoi-a:3"),
			read("lv-1", 100, 500, "kumoi-a:3"), // a slow read: active at some instant in [100, 600]
			read("lv-2", 200, 10, "kumoi-a:7"),
			read("lv-2", 400, 10, "kumoi-a:7"),
		}, 0, 0, 0},
		{"restart on the same daemon gets a new id: two spans, no double run", []DomainSample{
			read("lv-1", 0, 10, "kumoi-a:3"),
			read("lv-1", 150, 10, "kumoi-a:3"),
			read("lv-1", 300, 10, "kumoi-a:4"),
			read("lv-1", 450, 10, "kumoi-a:4"),
		}, 0, 0, 0},
		{"a single sighting on each daemon proves nothing", []DomainSample{
			read("lv-1", 0, 10, "kumoi-a:3"),
			read("lv-2", 0, 10, "kumoi-a:7"),
		}, 0, 0, 0},
		{"a hung read in between does not break the span", []DomainSample{
			read("lv-1", 0, 10, "kumoi-a:3"),
			{Host: "lv-1", Start: dAt(150), End: dAt(2150), Err: "no answer within 2s"},
			read("lv-2", 500, 10, "kumoi-a:7"),
			read("lv-2", 1000, 10, "kumoi-a:7"),
			read("lv-1", 2300, 10, "kumoi-a:3"),
		}, 1, 510, 1000},
		{"one read of a short activation inside the other daemon's certain span", []DomainSample{
			read("lv-2", 0, 10, "kumoi-a:7"),
			read("lv-1", 100, 10),
			read("lv-1", 250, 10, "kumoi-a:3"), // a stale worker started it, and destroyed it 100 ms later
			read("lv-1", 400, 10),
			read("lv-2", 500, 10, "kumoi-a:7"),
		}, 1, 250, 260},
		{"one read of a short activation overlapping the other's certain span's edge: not certain", []DomainSample{
			read("lv-2", 0, 10, "kumoi-a:7"),
			read("lv-1", 490, 30, "kumoi-a:3"),
			read("lv-2", 500, 10, "kumoi-a:7"),
		}, 0, 0, 0},
		{"different VMs on two daemons", []DomainSample{
			read("lv-1", 0, 10, "kumoi-a:3"),
			read("lv-2", 0, 10, "kumoi-b:3"),
			read("lv-1", 150, 10, "kumoi-a:3"),
			read("lv-2", 150, 10, "kumoi-b:3"),
		}, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := daemonDoubleRuns(domainSpans(tc.samples))
			if len(got) != tc.want {
				t.Fatalf("found %d double runs, want %d: %+v", len(got), tc.want, got)
			}
			if tc.want > 0 && (!got[0].From.Equal(dAt(tc.from)) || !got[0].To.Equal(dAt(tc.to))) {
				t.Fatalf("overlap %s–%s, want %s–%s", got[0].From, got[0].To, dAt(tc.from), dAt(tc.to))
			}
		})
	}
}

// TestPlacementDaemonDoubleRunReport: the placement checker reports a
// daemon double run as a double-run anomaly with both daemons, ids and
// times, alongside the log checks.
func TestPlacementDaemonDoubleRunReport(t *testing.T) {
	p := &Placement{start: dT0, end: dAt(1000), daemonSamples: []DomainSample{
		read("lv-1", 0, 10, "kumoi-pl-0-1-c1m256:3"),
		read("lv-2", 100, 10, "kumoi-pl-0-1-c1m256:5"),
		read("lv-1", 300, 10, "kumoi-pl-0-1-c1m256:3"),
		read("lv-2", 400, 10, "kumoi-pl-0-1-c1m256:5"),
	}, daemons: []DaemonTarget{{Host: "lv-1"}, {Host: "lv-2"}}}
	chk := p.Check(nil, nil, t.TempDir())
	if chk.Valid {
		t.Fatalf("valid with a double run: %+v", chk)
	}
	var found bool
	for _, a := range chk.Anomalies {
		if a.Type == "double-run" && strings.Contains(a.Detail, "lv-1") && strings.Contains(a.Detail, "lv-2") &&
			strings.Contains(a.Detail, "id 3") && strings.Contains(a.Detail, "id 5") && strings.Contains(a.Detail, "daemon") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no daemon double-run anomaly naming both daemons and ids: %+v", chk.Anomalies)
	}
}

// TestDaemonNewIDPerStart checks, on a real daemon of internal/libvirtd,
// what the checker's soundness rests on: the test driver gives a domain a
// new id at each start; and that the poller reads it.
func TestDaemonNewIDPerStart(t *testing.T) {
	d := libvirtd.StartT(t)
	ctx := context.Background()
	xml := filepath.Join(t.TempDir(), "dom.xml")
	if err := os.WriteFile(xml, []byte(`<domain type='test'><name>kumoi-idcheck</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := libvirtd.Virsh(ctx, d.URI, "define", xml); err != nil {
		t.Fatal(err)
	}
	// Reads of a stopped daemon (below) give up after 500 ms.
	old := DaemonReadTimeout
	DaemonReadTimeout = 500 * time.Millisecond
	defer func() { DaemonReadTimeout = old }()
	p := startDomainPoller([]DaemonTarget{{Host: "lv-1", URI: d.URI}})
	defer p.Stop()
	ids := map[int]bool{}
	for i := 0; i < 3; i++ {
		if _, err := libvirtd.Virsh(ctx, d.URI, "start", "kumoi-idcheck"); err != nil {
			t.Fatal(err)
		}
		out, err := libvirtd.Virsh(ctx, d.URI, "domid", "kumoi-idcheck")
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimSpace(out)
		n := 0
		for _, c := range id {
			n = n*10 + int(c-'0')
		}
		if ids[n] {
			t.Fatalf("start %d got id %d again (ids so far %v)", i+1, n, ids)
		}
		ids[n] = true
		testcluster.WaitFor(t, 10*time.Second, "the poller to see kumoi-idcheck with id "+id, func() (bool, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, s := range p.samples {
				for _, dom := range s.Domains {
					if dom.Name == "kumoi-idcheck" && dom.ID == n {
						return true, nil
					}
				}
			}
			return false, nil
		})
		if _, err := libvirtd.Virsh(ctx, d.URI, "destroy", "kumoi-idcheck"); err != nil {
			t.Fatal(err)
		}
	}
	// A paused daemon: reads time out, and resume afterwards.
	if err := d.Pause(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * p.timeout) // the fault itself: a daemon that hangs this long
	if err := d.Resume(); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 20*time.Second, "a successful read after the resume", func() (bool, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		n := len(p.samples)
		return n > 0 && p.samples[n-1].Err == "", nil
	})
	samples := p.Stop()
	failed := 0
	for _, s := range samples {
		if s.Err != "" {
			failed++
		}
	}
	if failed == 0 {
		t.Fatalf("no read failed while the daemon was paused (%d reads)", len(samples))
	}
	t.Logf("%d reads, %d failed while paused; ids %v", len(samples), failed, ids)
}

// TestLibvirtdPauseClosesLogIntervals: in the libvirtd mode a worker's
// pause closes its open log intervals (it no longer observes its domains;
// a stop it logs after the resume is late), so a VM moved while the
// worker was paused is not a log double run; with sim it still is (the
// domains are frozen in the paused process, and keep "running").
func TestLibvirtdPauseClosesLogIntervals(t *testing.T) {
	pauseAt := testcluster.ProcEvent{Node: "h1", Kind: testcluster.ProcPause, Time: plAt(2)}
	resumeAt := testcluster.ProcEvent{Node: "h1", Kind: testcluster.ProcResume, Time: plAt(10)}
	obs := map[string][]hypervisor.Observation{
		"h1": {start("h1", "a", 1, 1), stop("h1", "a", 1, 10.1)}, // stopped by a guard at ≈ 5 s, logged on resume
		"h2": {start("h2", "a", 2, 8)},
	}
	lives := map[string][]testcluster.ProcEvent{"h1": {startAt("h1", 0), pauseAt, resumeAt}, "h2": {startAt("h2", 0)}}
	for _, tc := range []struct {
		name    string
		daemons []DaemonTarget
		doubles int
	}{{"sim", nil, 1}, {"libvirtd", []DaemonTarget{{Host: "h1"}, {Host: "h2"}}, 0}} {
		p := &Placement{start: plT0, end: plAt(20), obs: obs, lives: lives, daemons: tc.daemons}
		var chk Check
		p.checkDoubleRuns(&chk, p.intervals(), indexPlacementOps(nil))
		if len(chk.Anomalies) != tc.doubles {
			t.Errorf("%s: %d log double runs, want %d: %+v", tc.name, len(chk.Anomalies), tc.doubles, chk.Anomalies)
		}
	}
}

// TestDaemonMismatches: in the libvirtd mode the final state is compared
// with each daemon's last successful read.
func TestDaemonMismatches(t *testing.T) {
	p := &Placement{start: dT0, daemons: []DaemonTarget{{Host: "lv-1"}, {Host: "lv-2"}},
		final: []placedVM{running("a", "lv-1", 1), running("b", "lv-2", 1)}}
	p.daemonSamples = []DomainSample{
		read("lv-1", 0, 10, "kumoi-a:3"),
		read("lv-2", 0, 10, "kumoi-b:4"),
		{Host: "lv-1", Start: dAt(100), End: dAt(2100), Err: "no answer within 2s"},
	}
	if mm := p.mismatches(nil); len(mm) != 0 {
		t.Fatalf("mismatches where the daemons agree: %v", mm)
	}
	p.daemonSamples = append(p.daemonSamples, read("lv-1", 3000, 10, "kumoi-a:3", "kumoi-c:5"), read("lv-2", 3000, 10))
	mm := p.mismatches(nil)
	if len(mm) != 2 || !strings.Contains(strings.Join(mm, "\n"), "kumoi-c") || !strings.Contains(strings.Join(mm, "\n"), "vm b is running on lv-2") {
		t.Fatalf("mismatches = %v; want kumoi-c active on lv-1 and b not listed by lv-2", mm)
	}
}
