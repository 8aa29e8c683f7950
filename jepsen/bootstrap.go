package jepsen

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
)

// BootstrapRace is the workload of the dedicated bootstrap-race mode: no
// clients and no nemeses, but round after round (for Config.Duration, at
// least one round) a new cluster of Config.Nodes controllers, every one
// with an empty data directory and --bootstrap-expect, started with racy
// timing drawn from the seed (BootstrapModes), then checked: the
// controllers must agree on a leader within BootstrapLeaderTimeout and
// pass the identity check (one cluster id, every configuration exactly
// the run's controllers). Two clusters forming, a controller left in
// none, a stranger in a configuration or no leader is an anomaly of type
// bootstrap-race; so is a controller that exits on its own.
const BootstrapRace = "bootstrap-race"

// BootstrapModes are the start-up timings a bootstrap-race round draws
// from:
//
//   - simultaneous: every controller started at the same instant (the
//     goroutines wait on one barrier);
//   - staggered: each controller after its own delay in [0, 2 s);
//   - late-one: all but one at once, the last one 0.5–3 s later (the
//     others wait for it: --bootstrap-expect counts it);
//   - kill-restart: all at once, then one controller is SIGKILLed
//     0–1.5 s later, in the middle of the bootstrap, and started again on
//     its data directory 0–0.5 s after that;
//   - restart-all: all at once, then every controller is SIGKILLed at one
//     instant 0.3–1.5 s later and all are started again together on
//     their data directories;
//   - kill-after-bootstrap: all at once; the harness polls every
//     controller's status until one has bootstrapped (its configuration
//     has all N servers), then SIGKILLs at once a controller that has no
//     log entry yet (a voter of the bootstrap configuration that has
//     received nothing), and starts it again on its data directory
//     0–0.5 s later.
var BootstrapModes = []string{"simultaneous", "staggered", "late-one", "kill-restart", "restart-all", "kill-after-bootstrap"}

// BootstrapLeaderTimeout bounds each round's wait for an agreed leader.
var BootstrapLeaderTimeout = 30 * time.Second

// bootstrapRound is one round's plan, drawn from the seed.
type bootstrapRound struct {
	Mode   string
	Delays []time.Duration // per controller, from the round's start
	Victim int             // kill-restart's controller
	KillAt time.Duration   // kill-restart, restart-all
	Again  time.Duration   // the restart's delay after the kill
}

func (b bootstrapRound) String() string {
	var ds []string
	for _, d := range b.Delays {
		ds = append(ds, d.Round(time.Millisecond).String())
	}
	s := fmt.Sprintf("%s, starts at [%s]", b.Mode, strings.Join(ds, " "))
	switch b.Mode {
	case "kill-restart":
		s += fmt.Sprintf(", SIGKILL c%d at %s, restart %s later", b.Victim+1, b.KillAt.Round(time.Millisecond), b.Again.Round(time.Millisecond))
	case "restart-all":
		s += fmt.Sprintf(", SIGKILL all at %s, restart all", b.KillAt.Round(time.Millisecond))
	case "kill-after-bootstrap":
		s += fmt.Sprintf(", SIGKILL a controller without log entries once one has bootstrapped, restart %s later", b.Again.Round(time.Millisecond))
	}
	return s
}

// drawBootstrapRound draws a round for n controllers, its mode among
// modes (empty: BootstrapModes).
func drawBootstrapRound(rng *rand.Rand, n int, modes []string) bootstrapRound {
	if len(modes) == 0 {
		modes = BootstrapModes
	}
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.Intn(hi-lo)) * time.Millisecond }
	b := bootstrapRound{Mode: modes[rng.Intn(len(modes))], Delays: make([]time.Duration, n), Victim: -1}
	switch b.Mode {
	case "kill-after-bootstrap":
		b.Again = ms(0, 500)
	case "staggered":
		for i := range b.Delays {
			b.Delays[i] = ms(0, 2000)
		}
	case "late-one":
		b.Delays[rng.Intn(n)] = ms(500, 3000)
	case "kill-restart":
		b.Victim, b.KillAt, b.Again = rng.Intn(n), ms(0, 1500), ms(0, 500)
	case "restart-all":
		b.KillAt = ms(300, 1500)
	}
	return b
}

// runBootstrapRace runs the bootstrap-race mode for cfg (see
// BootstrapRace) and writes the run's directory like Run.
func runBootstrapRace(ctx context.Context, cfg Config) (res *Result, err error) {
	if cfg.Nodes != 3 && cfg.Nodes != 5 {
		return nil, fmt.Errorf("nodes = %d: run 3 or 5 controllers", cfg.Nodes)
	}
	for _, m := range cfg.BootstrapModes {
		if !slices.Contains(BootstrapModes, m) {
			return nil, fmt.Errorf("unknown bootstrap mode %q (%s)", m, strings.Join(BootstrapModes, ", "))
		}
	}
	if len(cfg.Nemeses) > 0 || cfg.Workers > 0 || cfg.UnsafeStaleReads {
		return nil, fmt.Errorf("%s takes no nemeses, workers or selftest: its rounds are the faults (--nemesis none)", BootstrapRace)
	}
	name, _ := cfg.runName()
	dir := filepath.Join(cfg.OutDir, time.Now().UTC().Format("20060102T150405.000Z")+"-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, name: name, dir: dir, fw: &Firewall{}, began: time.Now()}
	r.res = &Result{Workload: cfg.Workload, Nemesis: "none", Seed: cfg.Seed, Nodes: cfg.Nodes,
		Duration: cfg.Duration.String(), Dir: dir, Anomalies: []Anomaly{}, Faults: []FaultWindow{}, ByKind: map[string]Counts{}}
	res = r.res
	r.tb = testcluster.NewStandalone("jepsen-"+name, cfg.Logf)
	r.tb.KeepDir = filepath.Join(dir, "data")
	defer func() { err = r.finish(ctx, err) }()

	rng := rand.New(rand.NewSource(cfg.Seed))
	deadline := time.Now().Add(cfg.Duration)
	valid, rounds := 0, 0
	for k := 1; k == 1 || time.Now().Before(deadline); k++ {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		plan := drawBootstrapRound(rng, cfg.Nodes, cfg.BootstrapModes)
		key := fmt.Sprintf("round %d (%s)", k, plan)
		cfg.Logf("jepsen: %s: %s", name, key)
		anomalies, note, rerr := bootstrapRoundRun(ctx, cfg, dir, k, plan)
		if rerr != nil {
			return res, fmt.Errorf("%s: %w", key, rerr)
		}
		rounds++
		for i := range anomalies {
			anomalies[i].Key = key
		}
		res.Anomalies = append(res.Anomalies, anomalies...)
		if len(anomalies) == 0 {
			valid++
			res.Notes = append(res.Notes, fmt.Sprintf("round %d (%s): %s", k, plan, note))
		}
	}
	res.Counts = Counts{OK: valid, Fail: rounds - valid}
	res.ByKind["round"] = res.Counts
	res.Valid = len(res.Anomalies) == 0
	res.Converged = res.Valid
	res.Notes = append([]string{fmt.Sprintf("%d rounds of %d controllers started with racy timing (counts: ok = rounds that formed one cluster of exactly them, fail = the others)", rounds, cfg.Nodes)}, res.Notes...)
	return res, nil
}

// bootstrapRoundRun runs one round: a new cluster started as plan says,
// then the leader and identity checks. It returns the round's anomalies
// (keys unset) and, for a good round, a note; err is about the harness.
// The nodes' logs and data directories are kept for bad rounds only.
func bootstrapRoundRun(ctx context.Context, cfg Config, dir string, k int, plan bootstrapRound) (anomalies []Anomaly, note string, err error) {
	sub := fmt.Sprintf("round-%d", k)
	tb := testcluster.NewStandalone(fmt.Sprintf("jepsen-bootstrap-%d", k), cfg.Logf)
	tb.KeepDir = filepath.Join(dir, "data", sub)
	logDir := filepath.Join(dir, "nodes", sub)
	defer func() {
		tb.Close()
		if tb.Failed() {
			anomalies = append(anomalies, Anomaly{Type: AnomalyBootstrapRace,
				Detail: "the cluster harness reported an error (a controller exited on its own, or a signal failed): see " + logDir})
		}
		if len(anomalies) == 0 && err == nil && !cfg.KeepLogs {
			os.RemoveAll(tb.KeepDir)
			os.RemoveAll(logDir)
		}
	}()
	var cl *testcluster.Cluster
	if ferr := fatal(func() {
		cl = testcluster.New(tb, testcluster.Options{Bin: cfg.Bin, LogDir: logDir, LogLevel: "info", Controllers: cfg.Nodes, NoStart: true, TLS: cfg.TLS})
	}); ferr != nil {
		return nil, "", ferr
	}
	began := time.Now()
	if err := startRacy(ctx, cl, plan); err != nil {
		anomalies = append(anomalies, Anomaly{Type: AnomalyBootstrapRace, Detail: "starting the controllers: " + err.Error()})
		return anomalies, "", nil
	}
	var lid string
	if err := fatal(func() { _, lid = cl.WaitLeader(BootstrapLeaderTimeout) }); err != nil {
		anomalies = append(anomalies, Anomaly{Type: AnomalyBootstrapRace, Detail: fmt.Sprintf("no agreed leader within %s of the start: %v; identity: %s",
			BootstrapLeaderTimeout, err, describeViews(identityViews(ctx, cl)))})
		return anomalies, "", nil
	}
	leaderAfter := time.Since(began)
	var st IdentityState
	if a := checkIdentity(ctx, cl, &st, AnomalyBootstrapRace, "", IdentityTimeout); a != nil {
		return append(anomalies, *a), "", nil
	}
	return nil, fmt.Sprintf("leader %s %s after the first start, one cluster %s of exactly the %d controllers", lid, leaderAfter.Round(time.Millisecond), st.ClusterID, cl.N()), nil
}

// startRacy starts every controller of cl (none running) as plan says;
// it returns when every start (and restart) has been made.
func startRacy(ctx context.Context, cl *testcluster.Cluster, plan bootstrapRound) error {
	barrier := make(chan struct{})
	errs := make([]error, cl.N())
	var wg sync.WaitGroup
	for i := 0; i < cl.N(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-barrier
			if !sleepCtx(ctx, plan.Delays[i]) {
				errs[i] = ctx.Err()
				return
			}
			errs[i] = fatal(func() { cl.Start(i) })
		}()
	}
	t0 := time.Now()
	close(barrier)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	var victims []int
	switch plan.Mode {
	case "kill-after-bootstrap":
		v, err := afterBootstrap(ctx, cl)
		if err != nil {
			return err
		}
		victims = []int{v}
		plan.KillAt = 0
	case "kill-restart":
		victims = []int{plan.Victim}
	case "restart-all":
		for i := 0; i < cl.N(); i++ {
			victims = append(victims, i)
		}
	default:
		return nil
	}
	if !sleepCtx(ctx, time.Until(t0.Add(plan.KillAt))) {
		return ctx.Err()
	}
	for _, i := range victims {
		if err := fatal(func() { cl.Kill(i) }); err != nil {
			return err
		}
	}
	if !sleepCtx(ctx, plan.Again) {
		return ctx.Err()
	}
	return parallel(victims, func(i int) error { return fatal(func() { cl.Start(i) }) })
}

// afterBootstrap polls every controller's status until one has
// bootstrapped (it counts all N servers) and returns a controller that
// has no log entry yet, or, if every one has some by then, one of those
// that did not bootstrap.
func afterBootstrap(ctx context.Context, cl *testcluster.Cluster) (int, error) {
	victim := -1
	err := testcluster.Poll(ctx, 15*time.Second, func() (bool, error) {
		sts, _ := cl.Statuses()
		boot, empty, other := -1, -1, -1
		for i, st := range sts {
			switch {
			case st.NumServers == cl.N() && st.LastLogIndex > 0 && boot < 0:
				boot = i
			case st.LastLogIndex == 0 && empty < 0:
				empty = i
			case other < 0:
				other = i
			}
		}
		if boot < 0 {
			return false, fmt.Errorf("no controller has bootstrapped yet")
		}
		victim = empty
		if victim < 0 {
			victim = other
		}
		return victim >= 0, nil
	})
	return victim, err
}

// parallel runs f on every index at once and joins the errors.
func parallel(idx []int, f func(int) error) error {
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	barrier := make(chan struct{})
	for k, i := range idx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-barrier
			errs[k] = f(i)
		}()
	}
	close(barrier)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
