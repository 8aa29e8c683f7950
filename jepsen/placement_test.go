package jepsen

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// The placement checker must be able to fail: hand-made observation logs,
// worker histories and final lists with a VM on two hosts at once, a host
// over capacity, a missing VM, …, and their valid twins.

var plT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// at is plT0 + sec seconds.
func plAt(sec float64) time.Time { return plT0.Add(time.Duration(sec * float64(time.Second))) }

// ob is one observation: vm's domain started or stopped on host at sec.
func ob(host, vm string, epoch uint64, event string, sec float64) hypervisor.Observation {
	return hypervisor.Observation{Time: plAt(sec), Host: host, Domain: hypervisor.DomainName(vm), VMID: "id-" + vm,
		Epoch: epoch, Event: event}
}

func start(host, vm string, epoch uint64, sec float64) hypervisor.Observation {
	return ob(host, vm, epoch, hypervisor.ObserveStart, sec)
}

func stop(host, vm string, epoch uint64, sec float64) hypervisor.Observation {
	return ob(host, vm, epoch, hypervisor.ObserveStop, sec)
}

// exitAt is the SIGKILL of host's worker seen at sec; startAt its restart.
func exitAt(host string, sec float64) testcluster.ProcEvent {
	return testcluster.ProcEvent{Node: host, Kind: testcluster.ProcExit, Time: plAt(sec), Expected: true, Signal: "killed"}
}

func startAt(host string, sec float64) testcluster.ProcEvent {
	return testcluster.ProcEvent{Node: host, Kind: testcluster.ProcStart, Time: plAt(sec)}
}

// createOp is a create of vm (its size in the input) with status st.
func createOp(vm string, cpus, mem int64, st Status) Op {
	return Op{Kind: "create", Key: vm, Input: Value{Value: vmSize{CPUs: cpus, MemoryMiB: mem}.String()}, Status: st}
}

func running(vm, host string, epoch uint64) placedVM {
	return placedVM{Name: vm, ID: "id-" + vm, Power: resource.PowerRunning, Phase: resource.PhaseRunning, Host: host, Epoch: epoch}
}

// plCase is a placement check: two hosts of 4 CPUs and 4096 MiB each;
// the history starts at plT0 and the logs were read at 100 s.
type plCase struct {
	name  string
	ops   []Op
	obs   []hypervisor.Observation
	lives []testcluster.ProcEvent
	final []placedVM
	want  []string // anomaly types, in order; none: valid
	// setup, if set, adjusts the workload before the check (the
	// project, the quota poller's reads, the final usage).
	setup func(p *Placement)
}

func (tc plCase) check(t *testing.T) Check {
	t.Helper()
	p := &Placement{
		capacity: map[string]resource.Resources{"h1": {CPUs: 4, MemoryMiB: 4096}, "h2": {CPUs: 4, MemoryMiB: 4096}},
		start:    plT0, end: plAt(100), final: tc.final,
		obs:   map[string][]hypervisor.Observation{},
		lives: map[string][]testcluster.ProcEvent{},
	}
	for _, o := range tc.obs {
		p.obs[o.Host] = append(p.obs[o.Host], o)
	}
	for _, l := range tc.lives {
		p.lives[l.Node] = append(p.lives[l.Node], l)
	}
	if p.final == nil {
		p.final = []placedVM{}
	}
	if tc.setup != nil {
		tc.setup(p)
	}
	return p.Check(tc.ops, nil, t.TempDir())
}

func anomalyTypes(chk Check) []string {
	var got []string
	for _, a := range chk.Anomalies {
		got = append(got, a.Type)
	}
	return got
}

func TestPlacementCheck(t *testing.T) {
	a1 := createOp("a", 1, 1024, StatusOK)
	b1 := createOp("b", 1, 1024, StatusOK)
	delA := Op{Kind: "delete", Key: "a", Status: StatusOK}
	for _, tc := range []plCase{
		{name: "runs, stops, moves to another host", ops: []Op{a1},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), stop("h1", "a", 5, 5), start("h2", "a", 9, 6)},
			final: []placedVM{running("a", "h2", 9)}},
		{name: "on two hosts at once", ops: []Op{a1},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h2", "a", 9, 6), stop("h1", "a", 5, 7)},
			final: []placedVM{running("a", "h2", 9)},
			want:  []string{"double-run"}},
		{name: "on two hosts at once, one still active at the end", ops: []Op{a1},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h2", "a", 9, 50)},
			final: []placedVM{running("a", "h2", 9)},
			want:  []string{"double-run", "observed-mismatch"}},
		{name: "the killed worker's domains end when it exits", ops: []Op{a1},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h2", "a", 9, 6)},
			lives: []testcluster.ProcEvent{startAt("h1", 0), exitAt("h1", 4), startAt("h1", 8)},
			final: []placedVM{running("a", "h2", 9)}},
		{name: "a restart is not an exit", ops: []Op{a1},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h2", "a", 9, 6)},
			lives: []testcluster.ProcEvent{startAt("h1", 0), startAt("h2", 0)},
			final: []placedVM{running("a", "h2", 9)},
			want:  []string{"double-run", "observed-mismatch"}},
		{name: "killed after the other host started it", ops: []Op{a1},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h2", "a", 9, 6)},
			lives: []testcluster.ProcEvent{startAt("h1", 0), exitAt("h1", 7), startAt("h1", 8)},
			final: []placedVM{running("a", "h2", 9)},
			want:  []string{"double-run"}},
		{name: "restarted on the same host after the worker's restart", ops: []Op{a1},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h1", "a", 5, 9)},
			lives: []testcluster.ProcEvent{startAt("h1", 0), exitAt("h1", 4), startAt("h1", 8)},
			final: []placedVM{running("a", "h1", 5)}},
		{name: "host full but not over", ops: []Op{createOp("a", 2, 1024, StatusOK), createOp("b", 2, 3072, StatusOK)},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h1", "b", 6, 2)},
			final: []placedVM{running("a", "h1", 5), running("b", "h1", 6)}},
		{name: "over capacity in CPUs", ops: []Op{createOp("a", 2, 512, StatusOK), createOp("b", 2, 512, StatusOK), createOp("c", 1, 512, StatusOK)},
			obs: []hypervisor.Observation{start("h1", "a", 5, 1), start("h1", "b", 6, 2), start("h1", "c", 7, 3),
				stop("h1", "c", 7, 4)},
			final: []placedVM{running("a", "h1", 5), running("b", "h1", 6),
				{Name: "c", ID: "id-c", Power: resource.PowerStopped, Phase: resource.PhaseStopped, Host: "h1", Epoch: 7}},
			want: []string{"overcapacity"}},
		{name: "over capacity in memory", ops: []Op{createOp("a", 1, 3072, StatusOK), createOp("b", 1, 2048, StatusOK), delA},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h1", "b", 6, 2), stop("h1", "a", 5, 3)},
			final: []placedVM{running("b", "h1", 6)},
			want:  []string{"overcapacity"}},
		{name: "a start in the instant of another's stop fits", ops: []Op{createOp("a", 3, 512, StatusOK), createOp("b", 3, 512, StatusOK), delA},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), stop("h1", "a", 5, 2), start("h1", "b", 6, 2)},
			final: []placedVM{running("b", "h1", 6)}},
		{name: "a killed worker frees its capacity", ops: []Op{createOp("a", 3, 512, StatusOK), createOp("b", 3, 512, StatusOK), delA},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h1", "b", 6, 5)},
			lives: []testcluster.ProcEvent{startAt("h1", 0), exitAt("h1", 2), startAt("h1", 4)},
			final: []placedVM{running("b", "h1", 6)}},
		{name: "an acknowledged VM is missing", ops: []Op{a1, b1},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1)},
			final: []placedVM{running("a", "h1", 5)},
			want:  []string{"lost"}},
		{name: "deleted, maybe deleted, maybe created", ops: []Op{a1, b1, {Kind: "delete", Key: "b", Status: StatusOK},
			createOp("c", 1, 256, StatusOK), {Kind: "delete", Key: "c", Status: StatusUnknown},
			createOp("d", 1, 256, StatusUnknown)},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h1", "b", 6, 1), stop("h1", "b", 6, 2)},
			final: []placedVM{running("a", "h1", 5)}},
		{name: "deleted, but still there", ops: []Op{a1, {Kind: "delete", Key: "a", Status: StatusOK}},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1)},
			final: []placedVM{running("a", "h1", 5)},
			want:  []string{"unexpected"}},
		{name: "failed create, but there", ops: []Op{createOp("a", 1, 256, StatusFail)},
			final: []placedVM{{Name: "a", ID: "id-a", Power: resource.PowerRunning, Phase: resource.PhasePending, Reason: "no room"}},
			want:  []string{"unexpected"}},
		{name: "pending with a reason, stopped as asked", ops: []Op{a1, b1},
			obs: []hypervisor.Observation{start("h1", "b", 6, 1), stop("h1", "b", 6, 2)},
			final: []placedVM{{Name: "a", ID: "id-a", Power: resource.PowerRunning, Phase: resource.PhasePending, Reason: "host h2 is down; waiting to be placed elsewhere"},
				{Name: "b", ID: "id-b", Power: resource.PowerStopped, Phase: resource.PhaseStopped, Host: "h1", Epoch: 6}}},
		{name: "neither running nor a reason", ops: []Op{a1, b1},
			final: []placedVM{{Name: "a", ID: "id-a", Power: resource.PowerRunning, Phase: resource.PhaseStarting, Host: "h1", Epoch: 5},
				{Name: "b", ID: "id-b", Power: resource.PowerRunning, Phase: resource.PhaseStopped, Host: "h1", Epoch: 6}},
			want: []string{"not-running"}},
		{name: "running for the API, not on the host", ops: []Op{a1},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), stop("h1", "a", 5, 2)},
			final: []placedVM{running("a", "h1", 5)},
			want:  []string{"observed-mismatch"}},
		{name: "a domain nobody created", ops: []Op{a1},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h1", "zz", 5, 1), stop("h1", "zz", 5, 2)},
			final: []placedVM{running("a", "h1", 5)},
			want:  []string{"unknown-domain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chk := tc.check(t)
			got := anomalyTypes(chk)
			if chk.Valid != (len(tc.want) == 0) || !slices.Equal(got, tc.want) {
				t.Fatalf("valid %v, anomalies %v, want %v:\n%+v", chk.Valid, got, tc.want, chk.Anomalies)
			}
		})
	}
}

// TestPlacementDoubleRunReport: the anomaly names both intervals, their
// hosts and epochs.
func TestPlacementDoubleRunReport(t *testing.T) {
	tc := plCase{ops: []Op{createOp("a", 1, 256, StatusOK), {Kind: "delete", Key: "a", Status: StatusOK, Invoke: 9}},
		obs: []hypervisor.Observation{start("h1", "a", 5, 1), start("h2", "a", 9, 6), stop("h1", "a", 5, 7), stop("h2", "a", 9, 8)}}
	chk := tc.check(t)
	if len(chk.Anomalies) != 1 {
		t.Fatalf("anomalies %+v, want one double-run", chk.Anomalies)
	}
	a := chk.Anomalies[0]
	for _, want := range []string{"on h1 epoch 5 from 1s", "to 7s", "on h2 epoch 9 from 6s", "for 1s"} {
		if !strings.Contains(a.Detail, want) {
			t.Errorf("detail %q does not say %q", a.Detail, want)
		}
	}
	if a.Key != "a" || len(a.Ops) != 2 {
		t.Errorf("key %q, ops %+v; want a and its create and delete", a.Key, a.Ops)
	}
}

// TestPlacementIntervalsFile: intervals.json has every interval with what
// closed it.
func TestPlacementIntervalsFile(t *testing.T) {
	p := &Placement{capacity: map[string]resource.Resources{"h1": {CPUs: 4, MemoryMiB: 4096}}, start: plT0, end: plAt(100),
		final: []placedVM{},
		obs: map[string][]hypervisor.Observation{"h1": {start("h1", "a", 5, 1), stop("h1", "a", 5, 2), start("h1", "a", 5, 3),
			start("h1", "b", 6, 3)}},
		lives: map[string][]testcluster.ProcEvent{"h1": {startAt("h1", 0), exitAt("h1", 4), startAt("h1", 5)}}}
	dir := t.TempDir()
	p.Check([]Op{createOp("a", 1, 256, StatusOK), {Kind: "delete", Key: "a", Status: StatusOK},
		createOp("b", 1, 256, StatusOK), {Kind: "delete", Key: "b", Status: StatusOK}}, nil, dir)
	b, err := os.ReadFile(filepath.Join(dir, "intervals.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Intervals []Interval `json:"intervals"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var by []string
	for _, iv := range got.Intervals {
		by = append(by, iv.VM+":"+iv.ClosedBy+":"+iv.End.Sub(plT0).String())
	}
	if want := []string{"a:stop:2s", "a:exit:4s", "b:exit:4s"}; !slices.Equal(by, want) {
		t.Errorf("intervals %v, want %v", by, want)
	}
}

func TestReadObservations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "obs.jsonl")
	line := func(o hypervisor.Observation) string {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return string(b) + "\n"
	}
	content := line(start("h1", "a", 5, 1)) + "garbage\n" + line(stop("h1", "a", 5, 2)) + `{"time":"2026-01-02T03:04:0`
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	obs, bad, err := ReadObservations(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(obs) != 2 || obs[1].Event != hypervisor.ObserveStop || !obs[0].Time.Equal(plAt(1)) {
		t.Errorf("observations %+v", obs)
	}
	if len(bad) != 1 || !strings.Contains(bad[0], ":2:") {
		t.Errorf("bad lines %q, want line 2 only (the unfinished last line is skipped)", bad)
	}
}

func TestPlacementSettled(t *testing.T) {
	host := func(name, state string, used int) *resource.Object {
		st, err := json.Marshal(resource.HostStatus{State: state, Capacity: resource.Resources{CPUs: 4, MemoryMiB: 4096},
			Allocated: resource.Resources{CPUs: used, MemoryMiB: int64(used) * 1024}})
		if err != nil {
			t.Fatal(err)
		}
		return &resource.Object{Kind: resource.KindHost, Name: name, Status: st}
	}
	pending := placedVM{Name: "pl-0-1-c2m1024", Power: resource.PowerRunning, Phase: resource.PhasePending, Reason: "no host has room"}
	grp := func(v placedVM) placedVM { v.Group, v.AntiAffine = "g0-0", true; return v }
	migrating := grp(placedVM{Name: "a", Power: resource.PowerRunning, Phase: resource.PhaseMigrating, Host: "h2", Migrating: "h1",
		Reason: "live-migrating to h1"})
	for _, tc := range []struct {
		name  string
		hosts []*resource.Object
		final []placedVM
		obs   []hypervisor.Observation
		want  string // "" settled, else part of why not
	}{
		{"running and observed", []*resource.Object{host("h1", "ready", 1)}, []placedVM{running("a", "h1", 5)},
			[]hypervisor.Observation{start("h1", "a", 5, 1)}, ""},
		{"host down", []*resource.Object{host("h1", "down", 1)}, []placedVM{running("a", "h1", 5)},
			[]hypervisor.Observation{start("h1", "a", 5, 1)}, "host h1 is down"},
		{"not started yet", []*resource.Object{host("h1", "ready", 1)}, []placedVM{running("a", "h1", 5)}, nil, "no domain of it is active"},
		{"starting", []*resource.Object{host("h1", "ready", 1)},
			[]placedVM{{Name: "a", Power: resource.PowerRunning, Phase: resource.PhaseStarting, Host: "h1"}}, nil, "without a reason"},
		{"pending, no room", []*resource.Object{host("h1", "ready", 3)}, []placedVM{pending}, nil, ""},
		{"pending but fits", []*resource.Object{host("h1", "ready", 2)}, []placedVM{pending}, nil, "fits on h1"},
		{"a stray domain", []*resource.Object{host("h1", "ready", 0)}, nil, []hypervisor.Observation{start("h1", "a", 5, 1)}, "does not say it runs there"},
		{"pending: its anti-affine partner holds the host with room", []*resource.Object{host("h1", "ready", 1)},
			[]placedVM{grp(running("a", "h1", 5)), grp(pending)}, []hypervisor.Observation{start("h1", "a", 5, 1)}, ""},
		{"pending: its anti-affine partner migrates to the host with room", []*resource.Object{host("h1", "ready", 1)},
			[]placedVM{migrating, grp(pending)}, nil, "vm a is migrating"},
		{"pending in a group, but fits", []*resource.Object{host("h1", "ready", 1)},
			[]placedVM{grp(pending)}, nil, "fits on h1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Placement{capacity: map[string]resource.Resources{"h1": {CPUs: 4, MemoryMiB: 4096}}, start: plT0, end: plAt(100),
				final: tc.final, obs: map[string][]hypervisor.Observation{"h1": tc.obs}}
			ok, why := p.settled(tc.hosts)
			if ok != (tc.want == "") || !strings.Contains(why, tc.want) {
				t.Errorf("settled %v (%s), want %q", ok, why, tc.want)
			}
		})
	}
}

// grouped is a create of vm in the run's project "pj" and, if group is
// not empty, in that hard anti-affine group.
func grouped(vm string, cpus, mem int64, group string, st Status) Op {
	return Op{Kind: "create", Key: vm, Input: Value{Value: createInput(vmSize{CPUs: cpus, MemoryMiB: mem}, "pj", group)}, Status: st}
}

// migrateOp is a live migrate of vm invoked at sec with status st.
func migrateOp(vm string, sec float64, st Status, out string) Op {
	return Op{Kind: "migrate", Key: vm, Input: Value{Value: "live"}, Output: Value{Value: out}, Status: st,
		Invoke: int64(sec * float64(time.Second))}
}

// migratedIn is a running VM that arrived on host by live migration.
func migratedIn(vm, from, host string, epoch uint64) placedVM {
	v := running(vm, host, epoch)
	v.Reason = "live-migrated from " + from
	return v
}

func TestCreateInput(t *testing.T) {
	in := createInput(vmSize{CPUs: 2, MemoryMiB: 512}, "jepsen-r1", "g3-1")
	if s, ok := parseSize(in); !ok || s != (vmSize{CPUs: 2, MemoryMiB: 512}) {
		t.Errorf("parseSize(%q) = %v, %v", in, s, ok)
	}
	if g, pj := inputField(in, "group"), inputField(in, "project"); g != "g3-1" || pj != "jepsen-r1" {
		t.Errorf("group %q, project %q from %q", g, pj, in)
	}
	if g := inputField(createInput(vmSize{CPUs: 1, MemoryMiB: 256}, "p", ""), "group"); g != "" {
		t.Errorf("group %q of a create in no group", g)
	}
}

// TestPlacementCheckRules: the hard anti-affinity groups, the project's
// quota and live migrations. The sim model of a live migration: the
// target holds the arrival paused from its prepare until the epoch has
// passed to it; the source pauses the guest for the downtime, then stops
// it; so in the workers' logs the source's stop comes before (or at the
// instant of) the target's start, never after.
func TestPlacementCheckRules(t *testing.T) {
	a, b := grouped("a", 1, 1024, "g0-0", StatusOK), grouped("b", 1, 1024, "g0-0", StatusOK)
	c := grouped("c", 1, 1024, "", StatusOK)
	delA := Op{Kind: "delete", Key: "a", Status: StatusOK}
	withProject := func(max int64, usage *resource.ProjectUsage, settled bool, reads quotaReads) func(p *Placement) {
		return func(p *Placement) {
			p.project, p.maxVMs, p.finalUsage, p.settledOK, p.quotaReads = "pj", max, usage, settled, reads
			for i := range p.final {
				if p.final[i].Project == "" {
					p.final[i].Project = "pj"
				}
			}
		}
	}
	stoppedVM := func(vm string) placedVM {
		return placedVM{Name: vm, ID: "id-" + vm, Power: resource.PowerStopped, Phase: resource.PhaseStopped, CPUs: 1, MemoryMiB: 256}
	}
	var many []Op
	var manyFinal []placedVM
	for i := 0; i < 13; i++ {
		vm := "v" + string(rune('a'+i))
		many = append(many, grouped(vm, 1, 256, "", StatusOK))
		manyFinal = append(manyFinal, stoppedVM(vm))
	}
	for _, tc := range []plCase{
		// Hard anti-affinity.
		{name: "anti-affine members on two hosts at once", ops: []Op{a, b},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h2", "b", 6, 1)},
			final: []placedVM{running("a", "h1", 5), running("b", "h2", 6)}},
		{name: "anti-affine members on one host at once", ops: []Op{a, b, delA},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h1", "b", 6, 5), stop("h1", "a", 5, 8)},
			final: []placedVM{running("b", "h1", 6)},
			want:  []string{"anti-affinity"}},
		{name: "an anti-affine member on the host the other left at that instant", ops: []Op{a, b, delA},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), stop("h1", "a", 5, 5), start("h1", "b", 6, 5)},
			final: []placedVM{running("b", "h1", 6)}},
		{name: "a member that outlives its worker's exit is not counted after it", ops: []Op{a, b},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h2", "a", 7, 9), start("h1", "b", 6, 9)},
			lives: []testcluster.ProcEvent{startAt("h1", 0), exitAt("h1", 4), startAt("h1", 8)},
			final: []placedVM{running("a", "h2", 7), running("b", "h1", 6)}},
		{name: "VMs in no group share a host", ops: []Op{a, c},
			obs:   []hypervisor.Observation{start("h1", "a", 5, 1), start("h1", "c", 6, 1)},
			final: []placedVM{running("a", "h1", 5), running("c", "h1", 6)}},

		// Live migration.
		{name: "migrated: the source stops, then the target starts", ops: []Op{c, migrateOp("c", 2, StatusOK, "from=h1 to=h2 id=7 mode=live")},
			obs:   []hypervisor.Observation{start("h1", "c", 5, 1), stop("h1", "c", 5, 3), start("h2", "c", 9, 3.5)},
			final: []placedVM{migratedIn("c", "h1", "h2", 9)}},
		{name: "migrated: the source's stop and the arrival's start at one instant", ops: []Op{c, migrateOp("c", 2, StatusOK, "from=h1 to=h2 id=7 mode=live")},
			obs:   []hypervisor.Observation{start("h1", "c", 5, 1), stop("h1", "c", 5, 3), start("h2", "c", 5, 3)},
			final: []placedVM{migratedIn("c", "h1", "h2", 9)}},
		{name: "the paused arrival logged as a start at prepare", ops: []Op{c, migrateOp("c", 2, StatusOK, "from=h1 to=h2 id=7 mode=live")},
			obs:   []hypervisor.Observation{start("h1", "c", 5, 1), start("h2", "c", 5, 2.5), stop("h1", "c", 5, 3)},
			final: []placedVM{migratedIn("c", "h1", "h2", 9)},
			want:  []string{"double-run"}},
		{name: "an arrival logged as started, never resumed, while the VM starts anew on the source", ops: []Op{c, migrateOp("c", 2, StatusOK, "from=h1 to=h2 id=7 mode=live")},
			obs: []hypervisor.Observation{start("h1", "c", 5, 1), stop("h1", "c", 5, 3), start("h2", "c", 5, 3),
				start("h1", "c", 12, 9), stop("h2", "c", 5, 9.5)},
			final: []placedVM{running("c", "h1", 12)},
			want:  []string{"double-run"}},
		{name: "the source still runs after the migration", ops: []Op{c, migrateOp("c", 2, StatusUnknown, "")},
			obs:   []hypervisor.Observation{start("h1", "c", 5, 1), start("h2", "c", 9, 3)},
			final: []placedVM{migratedIn("c", "h1", "h2", 9)},
			want:  []string{"double-run", "observed-mismatch"}},
		{name: "a failed migration: the VM stays on the source", ops: []Op{c, migrateOp("c", 2, StatusOK, "from=h1 to=h2 id=7 mode=live")},
			obs: []hypervisor.Observation{start("h1", "c", 5, 1)},
			final: []placedVM{{Name: "c", ID: "id-c", Power: resource.PowerRunning, Phase: resource.PhaseRunning, Host: "h1", Epoch: 5,
				Reason: "the migration to h2 failed (h1 says: x); the VM stays on h1"}}},
		{name: "a migration of an anti-affine member onto its partner's host", ops: []Op{a, b, migrateOp("a", 2, StatusOK, "from=h1 to=h2 id=7 mode=live")},
			obs: []hypervisor.Observation{start("h1", "a", 5, 1), start("h2", "b", 6, 1), stop("h1", "a", 5, 3),
				start("h2", "a", 9, 3)},
			final: []placedVM{migratedIn("a", "h1", "h2", 9), running("b", "h2", 6)},
			want:  []string{"anti-affinity"}},

		// The project's quota.
		{name: "within the quota, usage as listed", ops: []Op{c},
			obs:   []hypervisor.Observation{start("h1", "c", 5, 1)},
			final: []placedVM{{Name: "c", ID: "id-c", Power: resource.PowerRunning, Phase: resource.PhaseRunning, Host: "h1", Epoch: 5, CPUs: 1, MemoryMiB: 1024}},
			setup: withProject(1, &resource.ProjectUsage{VMs: 1, CPUs: 1, MemoryMiB: 1024}, true, quotaReads{Reads: 5, MaxListed: 1, MaxUsage: 1})},
		{name: "a read saw the project over its quota", ops: []Op{c},
			obs:   []hypervisor.Observation{start("h1", "c", 5, 1)},
			final: []placedVM{{Name: "c", ID: "id-c", Power: resource.PowerRunning, Phase: resource.PhaseRunning, Host: "h1", Epoch: 5, CPUs: 1, MemoryMiB: 1024}},
			setup: withProject(1, &resource.ProjectUsage{VMs: 1, CPUs: 1, MemoryMiB: 1024}, true,
				quotaReads{Reads: 5, MaxListed: 2, MaxUsage: 1, OverCount: 1, Over: []quotaOver{{Start: plAt(2), End: plAt(2.1), Listed: 2, Usage: 1}}}),
			want: []string{"quota"}},
		{name: "the final list over the quota", ops: many, final: manyFinal,
			setup: withProject(12, &resource.ProjectUsage{VMs: 13, CPUs: 13, MemoryMiB: 13 * 256}, true, quotaReads{}),
			want:  []string{"quota"}},
		{name: "usage disagrees with the listed VMs once settled", ops: many[:2], final: manyFinal[:2],
			setup: withProject(12, &resource.ProjectUsage{VMs: 3, CPUs: 2, MemoryMiB: 512}, true, quotaReads{}),
			want:  []string{"quota"}},
		{name: "usage not compared when the cluster did not settle", ops: many[:2], final: manyFinal[:2],
			setup: withProject(12, &resource.ProjectUsage{VMs: 3, CPUs: 2, MemoryMiB: 512}, false, quotaReads{})},
		{name: "a VM of the run outside its project", ops: many[:1],
			final: []placedVM{{Name: "va", ID: "id-va", Power: resource.PowerStopped, Phase: resource.PhaseStopped, CPUs: 1, MemoryMiB: 256, Project: "default"}},
			setup: withProject(12, &resource.ProjectUsage{}, true, quotaReads{}),
			want:  []string{"quota"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chk := tc.check(t)
			got := anomalyTypes(chk)
			if chk.Valid != (len(tc.want) == 0) || !slices.Equal(got, tc.want) {
				t.Fatalf("valid %v, anomalies %v, want %v:\n%+v", chk.Valid, got, tc.want, chk.Anomalies)
			}
		})
	}
}

// TestPlacementMigrationReport: a double run around a live migration says
// so; the notes count the migrations, the VMs moved by them and the
// refusals by quota and hard anti-affinity.
func TestPlacementMigrationReport(t *testing.T) {
	tc := plCase{ops: []Op{grouped("a", 1, 256, "g0-0", StatusOK), grouped("b", 1, 256, "g0-0", StatusOK),
		grouped("c", 1, 256, "", StatusOK),
		{Kind: "create", Key: "d", Input: Value{Value: createInput(vmSize{CPUs: 1, MemoryMiB: 256}, "pj", "")}, Output: Value{Value: refusedQuota}, Status: StatusFail},
		migrateOp("c", 2, StatusOK, "from=h1 to=h2 id=7 mode=live"),
		migrateOp("a", 3, StatusFail, refusedAffinity),
		migrateOp("b", 4, StatusUnknown, "")},
		obs: []hypervisor.Observation{start("h1", "a", 5, 1), start("h2", "b", 6, 1), start("h1", "c", 5, 1),
			start("h2", "c", 9, 2.5), stop("h1", "c", 5, 3)},
		final: []placedVM{running("a", "h1", 5), running("b", "h2", 6), migratedIn("c", "h1", "h2", 9)},
		setup: func(p *Placement) {
			p.project, p.maxVMs = "pj", 3
			p.quotaReads.Stayed = map[string]string{"a: the migration to h2 failed (h1 says: x); the VM stays on h1": "h1"}
		}}
	for i := range tc.final {
		tc.final[i].Project = "pj"
	}
	chk := tc.check(t)
	if got := anomalyTypes(chk); !slices.Equal(got, []string{"double-run"}) {
		t.Fatalf("anomalies %v, want one double-run: %+v", got, chk.Anomalies)
	}
	if d := chk.Anomalies[0].Detail; !strings.Contains(d, "around its live migration: ok invoked at 2s (from=h1 to=h2 id=7 mode=live)") {
		t.Errorf("detail %q does not name the migration", d)
	}
	notes := strings.Join(chk.Notes, "\n")
	for _, want := range []string{
		"migrations: 3 attempted; acknowledged 1 begun (live), 0 cold (the VM ran nowhere); failed 1 (refused by hard anti-affinity 1; other: none); unknown 1",
		"1 VMs seen arrived on another host by migration",
		"c@9 on h2: live-migrated from h1",
		"1 creates refused by the quota",
		"1 ended without moving the VM, as the reads saw them: the migration to h2 failed 1",
		"hard anti-affine groups: 2 creates named one (2 not refused, in 1 groups)",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes do not say %q:\n%s", want, notes)
		}
	}
}

func TestRefusalClass(t *testing.T) {
	for in, want := range map[string]string{
		`vm "pl-0-0-c2m256": host "sim-1" cannot migrate VMs live (its worker offers []): host does not take placements`: `host "…" cannot migrate VMs live`,
		`no cluster leader is known; an election may be in progress`:                                                     `no cluster leader is known`,
		`cannot reach any controller at https://127.0.0.12:7400: connection refused`:                                     `cannot reach any controller at URL connection refused`,
	} {
		if got := refusalClass(in); got != want {
			t.Errorf("refusalClass(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPlacementMigrateMode(t *testing.T) {
	for _, tc := range []struct {
		modes map[string][]string
		want  string
	}{
		{map[string][]string{"h1": {"live", "restart"}, "h2": {"live", "restart"}}, "live"},
		{map[string][]string{"h1": {"restart"}, "h2": {"restart"}}, "restart"},
		{map[string][]string{"h1": {"live", "restart"}, "h2": {"restart"}}, "restart"},
		{map[string][]string{"h1": nil, "h2": {"restart"}}, "live"},
		{nil, "live"},
	} {
		if got := placementMigrateMode(tc.modes); got != tc.want {
			t.Errorf("placementMigrateMode(%v) = %s, want %s", tc.modes, got, tc.want)
		}
	}
}
