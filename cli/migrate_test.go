package cli

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// migEnv is a real API over a state machine with hosts h1 and h2 (both
// take live migrations) and VMs placed on h1 that the worker reports
// running (power running) or stopped.
func migEnv(t *testing.T, running, stopped []string) *apitest.Server {
	t.Helper()
	s := apitest.New(t)
	for _, h := range []string{"h1", "h2"} {
		s.MustApply(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: h, ID: "id-" + h,
			State: resource.HostReady, Capacity: resource.Resources{CPUs: 16, MemoryMiB: 16384},
			MigrationModes: []string{resource.MigrationLive, resource.MigrationRestart}})
	}
	place := map[string]string{}
	var reports []resource.VMReport
	add := func(names []string, power, phase string) {
		for _, n := range names {
			code := runOK(t, s.URL, "vm", "create", n, "--cpus", "1", "--memory", "512MiB", "--power", power)
			if code != 0 {
				t.Fatalf("create %s: exit %d", n, code)
			}
			place[n] = "h1"
		}
	}
	add(running, resource.PowerRunning, resource.PhaseRunning)
	add(stopped, resource.PowerStopped, resource.PhaseStopped)
	if len(place) > 0 {
		s.Place(t, place)
	}
	for n := range place {
		_, st := resource.VMStateOf(s.Object(resource.KindVM, n))
		phase := resource.PhaseRunning
		for _, x := range stopped {
			if x == n {
				phase = resource.PhaseStopped
			}
		}
		reports = append(reports, resource.VMReport{VM: n, Epoch: st.Epoch, Phase: phase})
	}
	if len(reports) > 0 {
		s.MustApply(t, fsm.ReportRequestType, &fsm.ReportRequest{Time: time.Now().UTC(), Host: "h1", Reports: reports})
	}
	return s
}

func runOK(t *testing.T, addr string, args ...string) int {
	t.Helper()
	_, _, code := runCLI(t, append([]string{"--addr", addr}, args...)...)
	return code
}

func vmStatusOf(s *apitest.Server, name string) *resource.VMStatus {
	_, st := resource.VMStateOf(s.Object(resource.KindVM, name))
	return st
}

// migrationEvent applies a worker's migration event.
func migrationEvent(t *testing.T, s *apitest.Server, host, vm, event string, downtime int64, reason string) {
	t.Helper()
	st := vmStatusOf(s, vm)
	if st.Migration == nil {
		t.Fatalf("vm %s is not migrating: %+v", vm, st)
	}
	res := s.MustApply(t, fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{Time: time.Now().UTC(), Host: host,
		Events: []resource.MigrationEvent{{VM: vm, ID: st.Migration.ID, Event: event, URI: "tcp://" + host + ":49152", DowntimeMS: downtime, Reason: reason}}})
	if len(res.ItemErrors) > 0 && res.ItemErrors[0] != nil {
		t.Fatalf("event %s: %v", event, res.ItemErrors[0])
	}
}

// runAsync runs the CLI in a goroutine.
func runAsync(t *testing.T, args ...string) <-chan [3]string {
	ch := make(chan [3]string, 1)
	go func() {
		out, errOut, code := runCLI(t, args...)
		ch <- [3]string{out, errOut, fmt.Sprint(code)}
	}()
	return ch
}

func TestVMMigrateLiveWait(t *testing.T) {
	s := migEnv(t, []string{"web", "db"}, nil)
	runCases(t, s.URL, []cliCase{
		{name: "live and restart", args: []string{"vm", "migrate", "web", "--live", "--restart"}, code: 2, stderr: "--live and --restart exclude each other"},
		{name: "abort with host", args: []string{"vm", "migrate", "web", "--abort", "--host", "h2"}, code: 2, stderr: "--abort takes no --host"},
		{name: "cold refused", args: []string{"vm", "migrate", "web"}, code: 1, stderr: "stop it first"},
	})

	// Live, waited for: the workers' events move it.
	done := runAsync(t, "--addr", s.URL, "vm", "migrate", "web", "--live", "--wait", "--timeout", "20s")
	testcluster.WaitFor(t, 10*time.Second, "web migrating", func() (bool, error) { return vmStatusOf(s, "web").Migration != nil, nil })
	migrationEvent(t, s, "h2", "web", resource.MigrationPrepared, 0, "")
	migrationEvent(t, s, "h1", "web", resource.MigrationDone, 12, "")
	var r [3]string
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("vm migrate --wait did not end")
	}
	if r[2] != "0" || !strings.Contains(r[1], "web: migrating live from h1 to h2") || !strings.Contains(r[1], "web: moved to h2 (live-migrated from h1 (paused 12 ms))") {
		t.Fatalf("exit %s\nstdout %s\nstderr %s", r[2], r[0], r[1])
	}

	// By restart, failing: the command says it stayed, exit 1.
	done = runAsync(t, "--addr", s.URL, "vm", "migrate", "db", "--restart", "--host", "h2", "--wait", "--timeout", "20s")
	testcluster.WaitFor(t, 10*time.Second, "db migrating", func() (bool, error) { return vmStatusOf(s, "db").Migration != nil, nil })
	if m := vmStatusOf(s, "db").Migration; m.Mode != resource.MigrationRestart || m.Target != "h2" {
		t.Fatalf("db's migration %+v", m)
	}
	migrationEvent(t, s, "h1", "db", resource.MigrationFailed, 0, "shutdown timed out")
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("vm migrate --wait did not end")
	}
	if r[2] != "1" || !strings.Contains(r[1], `kumoi: vm "db" stayed on h1: the migration to h2 failed`) || !strings.Contains(r[1], "shutdown timed out") {
		t.Fatalf("exit %s\nstdout %s\nstderr %s", r[2], r[0], r[1])
	}

	// Abort while the target prepares: cleared at once.
	runCases(t, s.URL, []cliCase{
		{name: "start live", args: []string{"vm", "migrate", "db", "--live", "-o", "json"}, stdout: []string{`"state": "preparing"`}, errExact: "db: migrating live from h1 to h2\n"},
		{name: "abort", args: []string{"vm", "migrate", "db", "--abort", "--wait"}, stdout: []string{"db"}, errExact: "db: not migrating: running on h1 (the migration to h2 was aborted before it began)\n"},
	})
}

func TestHostDrainMigrateAndRebalance(t *testing.T) {
	drainPoll, drainSettle = 10*time.Millisecond, 2
	t.Cleanup(func() { drainPoll, drainSettle = time.Second, 3 })
	s := migEnv(t, []string{"run-1"}, []string{"cold-1", "cold-2"})
	runCases(t, s.URL, []cliCase{
		{name: "wait needs migrate", args: []string{"host", "drain", "h1", "--wait"}, code: 2, stderr: "--wait needs --migrate"},
		{name: "rebalance bad max", args: []string{"host", "rebalance", "--max", "0"}, code: 2, stderr: "--max 0: give 1 to 100"},
		{name: "rebalance dry run", args: []string{"host", "rebalance", "--dry-run", "--max", "1"},
			stdout: []string{"VM", "FROM", "MODE", "RESULT", "REASON", "cold-1   h1     h2   cold   planned   spread: h1 has 91% of its memory free, h2 100%"}},
		{name: "rebalance dry run json", args: []string{"host", "rebalance", "--dry-run", "-o", "json"}, stdout: []string{`"performed": false`, `"mode": "cold"`}},
	})
	if h := vmStatusOf(s, "cold-1").Host; h != "h1" {
		t.Fatalf("a dry run moved cold-1 to %s", h)
	}
	// Drain with migrate: the spec asks the leader (there is none in
	// this API-only test), and the status says what would block each VM.
	runCases(t, s.URL, []cliCase{
		{name: "drain migrate", args: []string{"host", "drain", "h1", "--migrate"},
			exact: "host \"h1\" drained: no new VMs will be placed on it; the leader moves its VMs off (follow it with 'kumoi host drain h1 --migrate --wait')\n"},
		{name: "drain migrate again", args: []string{"host", "drain", "h1", "--migrate", "-o", "json"}, stdout: []string{`"unschedulable": true`, `"migrate": true`}},
		{name: "get shows the drain", args: []string{"host", "get", "h1"}, stdout: []string{"migrate: live, restart (the migrations", "drain:   the leader moves its VMs off"}},
	})
	// The "leader" moves the VMs (as the drain loop would); h2 cannot
	// take run-1 live once it is full.
	for _, n := range []string{"cold-1", "cold-2"} {
		s.MustApply(t, fsm.MigrateRequestType, &fsm.MigrateRequest{Time: time.Now().UTC(), VM: n, Host: "h2", PhaseOnly: true})
	}
	s.MustApply(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: "h2",
		State: resource.HostReady, Capacity: resource.Resources{CPUs: 16, MemoryMiB: 1024}, MigrationModes: []string{resource.MigrationRestart}})
	stdout, stderr, code := runCLI(t, "--addr", s.URL, "host", "drain", "h1", "--migrate", "--wait")
	if code != 1 || !strings.Contains(stderr, "h1: 0 of 1 VMs moved; run-1 cannot move: live: ") ||
		!strings.Contains(stderr, `kumoi: host "h1" still holds 1 VM that cannot move: run-1: live: `) {
		t.Fatalf("drain --wait: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	// Enable clears both.
	runCases(t, s.URL, []cliCase{
		{name: "enable", args: []string{"host", "enable", "h1"}, exact: "host \"h1\" is schedulable again: new VMs may be placed on it\n"},
	})
	if spec := string(s.Object(resource.KindHost, "h1").Spec); strings.Contains(spec, "drain") || strings.Contains(spec, `"unschedulable":true`) {
		t.Fatalf("h1's spec after enable: %s", spec)
	}
	// An empty host drains at once.
	s.AddHost(t, "h3")
	runCases(t, s.URL, []cliCase{
		{name: "drain empty wait", args: []string{"host", "drain", "h3", "--migrate", "--wait"}, exact: "host \"h3\" drained: no VM is left on it\n",
			errExact: "h3: 0 of 0 VMs moved\n"},
		{name: "rebalance nothing", args: []string{"host", "rebalance"},
			exact: "nothing to move: no migration would bring the cluster closer to its placement strategy\n"},
	})
}
