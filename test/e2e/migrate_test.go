package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/jepsen"
	"github.com/kumoi/kumoi/resource"
)

// TestLiveMigrationCLI live-migrates a running VM between two sim worker
// processes through the kumoi CLI (ACLs on): `vm migrate --live --wait`
// moves it with a new epoch and the guest is never active on both hosts
// (the workers' observation logs); `host drain --migrate --wait` moves it
// back; `host enable` ends the drain; `vm migrate --restart` moves it by
// shutting it down and starting it on the other host.
func TestLiveMigrationCLI(t *testing.T) {
	c := newCluster(t, testcluster.Options{Controllers: 1, Workers: 2})
	c.WaitLeader(leaderTimeout)
	_, must := cliOf(t, c)
	vm := func() (*resource.VMStatus, uint64) {
		t.Helper()
		var o resource.Object
		out := must("vm", "get", "web", "-o", "json")
		if err := json.Unmarshal([]byte(out), &o); err != nil {
			t.Fatalf("vm get: %v\n%s", err, out)
		}
		st, err := resource.DecodeStatus[resource.VMStatus](&o)
		if err != nil {
			t.Fatal(err)
		}
		return st, st.Epoch
	}
	waitPhase := func(phase string) *resource.VMStatus {
		t.Helper()
		deadline := time.Now().Add(convergeWithin)
		for {
			st, _ := vm()
			if st.Phase == phase {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("vm web is %s (%s), want %s", st.Phase, st.Reason, phase)
			}
			time.Sleep(100 * time.Millisecond) // polling, with the deadline above
		}
	}
	// Both hosts take live migrations (standalone sim workers deliver
	// them through a directory of the target's).
	for w := range 2 {
		hs := c.WaitHostState(c.WorkerName(w), resource.HostReady, convergeWithin)
		if !hs.CanMigrate(resource.MigrationLive) || !hs.CanMigrate(resource.MigrationRestart) {
			t.Fatalf("host %s migration modes %v, want live and restart", c.WorkerName(w), hs.MigrationModes)
		}
	}

	must("vm", "create", "web", "--cpus", "1", "--memory", "64MiB")
	first := waitPhase(resource.PhaseRunning)
	from := first.Host
	to := c.WorkerName(0)
	if to == from {
		to = c.WorkerName(1)
	}

	out := must("vm", "migrate", "web", "--live", "--host", to, "--wait", "--timeout", "60s")
	if !strings.Contains(out, "web: moved to "+to) {
		t.Errorf("vm migrate --live --wait said:\n%s", out)
	}
	st := waitPhase(resource.PhaseRunning)
	if st.Host != to || st.Epoch <= first.Epoch || st.Migration != nil || !strings.Contains(st.Reason, "live-migrated from "+from) || st.Restarts != 0 {
		t.Errorf("after the live migration: %+v; want running on %s at a new epoch, reason live-migrated from %s, no restart", st, to, from)
	}
	checkNeverOnTwo(t, c)

	// Drain the new host with migrate: the VM goes back, live.
	out = must("host", "drain", to, "--migrate", "--wait", "--timeout", "60s")
	st = waitPhase(resource.PhaseRunning)
	if st.Host != from || !strings.Contains(st.Reason, "live-migrated from "+to) {
		t.Errorf("after host drain %s --migrate: %+v\n%s", to, st, out)
	}
	must("host", "enable", to)
	// The leader marks it ready again (its hosts loop).
	c.WaitHostState(to, resource.HostReady, convergeWithin)

	// Restart mode: shut down here, started there.
	before := st.Epoch
	out = must("vm", "migrate", "web", "--restart", "--host", to, "--wait", "--timeout", "60s")
	st = waitPhase(resource.PhaseRunning)
	if st.Host != to || st.Epoch <= before {
		t.Errorf("after vm migrate --restart: %+v\n%s", st, out)
	}
	checkNeverOnTwo(t, c)
}

// checkNeverOnTwo reads both workers' observation logs and fails if the
// VM web was active on both hosts at any instant (a start on one host
// before the stop on the other).
func checkNeverOnTwo(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	type iv struct {
		host       string
		start, end time.Time
	}
	var ivs []iv
	for w := range 2 {
		obs, bad, err := jepsen.ReadObservations(c.WorkerObservationLog(w))
		if err != nil || len(bad) > 0 {
			t.Fatalf("observation log of %s: %v %v", c.WorkerName(w), err, bad)
		}
		var open *iv
		for _, o := range obs {
			if o.Domain != hypervisor.DomainName("web") {
				continue
			}
			switch o.Event {
			case hypervisor.ObserveStart:
				open = &iv{host: c.WorkerName(w), start: o.Time}
			case hypervisor.ObserveStop:
				if open != nil {
					open.end = o.Time
					ivs = append(ivs, *open)
					open = nil
				}
			}
		}
		if open != nil {
			open.end = time.Now().Add(time.Hour)
			ivs = append(ivs, *open)
		}
	}
	for i := range ivs {
		for j := range ivs {
			a, b := ivs[i], ivs[j]
			if a.host != b.host && a.start.Before(b.end) && b.start.Before(a.end) {
				t.Errorf("web active on %s [%s, %s] and on %s [%s, %s] at once", a.host, a.start.Format(time.StampMicro), a.end.Format(time.StampMicro),
					b.host, b.start.Format(time.StampMicro), b.end.Format(time.StampMicro))
			}
		}
	}
	if len(ivs) < 2 {
		t.Errorf("observation logs show %d intervals of web, want one per host it ran on", len(ivs))
	}
}
