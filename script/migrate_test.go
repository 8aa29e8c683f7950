package script

import (
	"context"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// migrationEnv is a real API over a state machine: hosts h1 and h2 (both
// take live migrations), VMs placed on h1, reported running or stopped.
func migrationEnv(t *testing.T, running, stopped []string) (*apitest.Server, *client.Client) {
	t.Helper()
	s := apitest.New(t)
	cl, err := client.New(client.Config{Addrs: []string{s.URL}})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2"} {
		s.MustApply(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: h, ID: "id-" + h,
			State: resource.HostReady, Capacity: resource.Resources{CPUs: 16, MemoryMiB: 16384},
			MigrationModes: []string{resource.MigrationLive, resource.MigrationRestart}})
	}
	phase := map[string]string{}
	for _, n := range running {
		phase[n] = resource.PhaseRunning
	}
	for _, n := range stopped {
		phase[n] = resource.PhaseStopped
	}
	place := map[string]string{}
	for n, ph := range phase {
		power := resource.PowerRunning
		if ph == resource.PhaseStopped {
			power = resource.PowerStopped
		}
		if _, err := cl.VMs().Create(context.Background(), n, resource.VMSpec{CPUs: 1, MemoryMiB: 512, Power: power}, nil); err != nil {
			t.Fatal(err)
		}
		place[n] = "h1"
	}
	s.Place(t, place)
	var reports []resource.VMReport
	for n, ph := range phase {
		_, st := resource.VMStateOf(s.Object(resource.KindVM, n))
		reports = append(reports, resource.VMReport{VM: n, Epoch: st.Epoch, Phase: ph})
	}
	s.MustApply(t, fsm.ReportRequestType, &fsm.ReportRequest{Time: time.Now().UTC(), Host: "h1", Reports: reports})
	return s, cl
}

func TestLiveMigrationDrainRebalanceInScripts(t *testing.T) {
	drainPoll, drainSettle = 10*time.Millisecond, 2
	t.Cleanup(func() { drainPoll, drainSettle = time.Second, 3 })
	s, cl := migrationEnv(t, []string{"web"}, []string{"cold"})
	env := Env{Client: cl, Timeout: time.Minute}
	out, err := runScript(t, env, `
moves = rebalance()
print(len(moves), moves[0].vm, moves[0].source, moves[0].target, moves[0].mode, moves[0].reason.startswith("spread:"), moves[0].error)
print(vm("cold").host.name)
v = vm("web")
v.migrate(live=True)
print(v.phase, v.status.migration.mode, v.status.migration.target, v.status.migration.state)
v.abort_migration()
print(v.phase, v.host.name)
v.migrate(restart=True, host="h2")
print(v.status.migration.mode)
v.migrate(abort=True)
print(v.phase, v.status.migration.state)
h = host("h1")
h.drain(migrate=True)
print(h.schedulable, h.spec.drain.migrate)
h.enable()
print(h.schedulable, h.spec.drain)
`)
	want := "1 cold h1 h2 cold True \nh1\nmigrating live h2 preparing\nrunning h1\nrestart\nmigrating aborting\nFalse True\nTrue None\n"
	if err != nil || out != want {
		t.Fatalf("output %q, %v; want %q", out, err, want)
	}
	// The source ends the aborted restart.
	_, st := resource.VMStateOf(s.Object(resource.KindVM, "web"))
	s.MustApply(t, fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{Time: time.Now().UTC(), Host: "h1",
		Events: []resource.MigrationEvent{{VM: "web", ID: st.Migration.ID, Event: resource.MigrationFailed, Reason: "aborted"}}})
	wantError(t, runErr(t, env, `vm("web").migrate(live=True, restart=True)`), "live and restart exclude each other")
	wantError(t, runErr(t, env, `vm("web").migrate(abort=True, host="h2")`), "abort takes no host")
	wantError(t, runErr(t, env, `host("h1").drain(wait=True)`), "wait needs migrate=True")
	wantError(t, runErr(t, env, `rebalance(max=0)`), `for parameter "max": 0 is not between 1 and 100`)

	// Waited for: the workers' events move it.
	done := make(chan error, 1)
	var got string
	go func() {
		var err error
		got, err = runScript(t, env, `v = vm("web").migrate(live=True, wait=True); print(v.host.name, v.reason)`)
		done <- err
	}()
	testcluster.WaitFor(t, 10*time.Second, "web migrating", func() (bool, error) {
		_, st := resource.VMStateOf(s.Object(resource.KindVM, "web"))
		return st.Migration != nil, nil
	})
	for _, e := range []struct{ host, event string }{{"h2", resource.MigrationPrepared}, {"h1", resource.MigrationDone}} {
		_, st := resource.VMStateOf(s.Object(resource.KindVM, "web"))
		s.MustApply(t, fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{Time: time.Now().UTC(), Host: e.host,
			Events: []resource.MigrationEvent{{VM: "web", ID: st.Migration.ID, Event: e.event, URI: "tcp://h2:49152", DowntimeMS: 7}}})
	}
	select {
	case err := <-done:
		if err != nil || got != "h2 live-migrated from h1 (paused 7 ms)\n" {
			t.Fatalf("migrate(wait=True): %q, %v", got, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("migrate(wait=True) did not return")
	}

	// A drain whose VM cannot move (no other host takes it) fails with why.
	s.MustApply(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: "h1",
		State: resource.HostReady, Capacity: resource.Resources{CPUs: 16, MemoryMiB: 256}})
	wantError(t, runErr(t, env, `host("h2").drain(migrate=True, wait=True, timeout="30s")`), `host "h2" still holds 1 VMs that cannot move: web: live: `)
}

func runErr(t *testing.T, env Env, src string) error {
	t.Helper()
	_, err := runScript(t, env, src)
	return err
}
