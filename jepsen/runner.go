package jepsen

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// Config is one run.
type Config struct {
	// Workload is "register" or "set".
	Workload string
	// Nemeses are the nemesis names; each fault picks one of them at
	// random. Empty: no faults.
	Nemeses []string
	// Duration is how long the workload runs (default 30s).
	Duration time.Duration
	// Concurrency is the number of clients (default 5).
	Concurrency int
	// Seed seeds the fault schedule and the workload's choices (default:
	// the time).
	Seed int64
	// Bin is the kumoi binary (default $KUMOI_BIN, else built).
	Bin string
	// OutDir receives <timestamp>-<name>/ (default jepsen/out).
	OutDir string
	// OpTimeout bounds every operation (default 2s).
	OpTimeout time.Duration
	// Quiet and Fault bound the random time between faults and the time a
	// fault lasts: each is drawn from [d, 2d) (defaults 1s and 2s).
	Quiet, Fault time.Duration
	// Logf logs progress (default: nothing).
	Logf func(format string, args ...any)
}

// FaultWindow is one fault as it happened; times are nanoseconds since the
// start of the history.
type FaultWindow struct {
	Nemesis string `json:"nemesis"`
	What    string `json:"what,omitempty"`
	Start   int64  `json:"start_ns"`
	End     int64  `json:"end_ns"`
	Error   string `json:"error,omitempty"`
	// Ops counts the operations invoked during the fault by outcome
	// (availability).
	Ops Counts `json:"ops"`
	// RecoveryNs is the time from the heal to the return of the first
	// acknowledged write (write, cas, create) invoked after it; -1 if
	// there was none before the end of the run.
	RecoveryNs int64 `json:"recovery_ns"`
	// HealthyNs is how long after the heal every node ran, answered and
	// named the same leader.
	HealthyNs int64 `json:"healthy_ns"`
}

// availability fills in each fault's Ops and RecoveryNs.
func availability(faults []FaultWindow, ops []Op) {
	for i := range faults {
		f := &faults[i]
		var during []Op
		f.RecoveryNs = -1
		for _, op := range ops {
			if op.Invoke >= f.Start && op.Invoke < f.End {
				during = append(during, op)
			}
			if op.Invoke >= f.End && op.Status == StatusOK && op.Kind != "read" && op.Kind != "list" {
				if d := op.Return - f.End; f.RecoveryNs < 0 || d < f.RecoveryNs {
					f.RecoveryNs = d
				}
			}
		}
		f.Ops = Count(during)
	}
}

// Result is what a run wrote to results.json.
type Result struct {
	Valid       bool              `json:"valid"`
	Workload    string            `json:"workload"`
	Nemesis     string            `json:"nemesis"`
	Seed        int64             `json:"seed"`
	Duration    string            `json:"duration"`
	Concurrency int               `json:"concurrency"`
	Counts      Counts            `json:"counts"`
	ByKind      map[string]Counts `json:"counts_by_kind"`
	Anomalies   []Anomaly         `json:"anomalies"`
	Notes       []string          `json:"notes,omitempty"`
	Faults      []FaultWindow     `json:"faults"`
	// Converged says whether every controller served the same state
	// (a stale list of all VMs) after the run; Digests has each one's.
	Converged bool              `json:"converged"`
	Digests   map[string]string `json:"digests,omitempty"`
	// Error is set when the run itself failed (the cluster did not come
	// up, …): then Valid is false and nothing was checked.
	Error string `json:"error,omitempty"`
	// Dir is the run's output directory.
	Dir     string `json:"dir"`
	Elapsed string `json:"elapsed"`
}

func (c *Config) defaults() {
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 5
	}
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano()
	}
	if c.OutDir == "" {
		c.OutDir = filepath.Join("jepsen", "out")
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
	if c.Quiet == 0 {
		c.Quiet = time.Second
	}
	if c.Fault == 0 {
		c.Fault = 2 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Run starts a 3-controller cluster, runs the workload with the nemeses,
// heals, checks, and writes the results to a new directory under
// cfg.OutDir. The error is about the harness (bad configuration, no
// binary, a cluster that never came up); an invalid history is a Result
// with Valid false.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	cfg.defaults()
	wl, err := NewWorkload(cfg.Workload)
	if err != nil {
		return nil, err
	}
	for _, n := range cfg.Nemeses {
		if n == "partition-leader" {
			if err := CanPartition(); err != nil {
				return nil, fmt.Errorf("refusing to run: %w", err)
			}
		}
	}
	nemName := strings.Join(cfg.Nemeses, ",")
	if nemName == "" {
		nemName = "none"
	}
	name := cfg.Workload + "-" + strings.ReplaceAll(nemName, ",", "+")
	dir := filepath.Join(cfg.OutDir, time.Now().UTC().Format("20060102T150405.000Z")+"-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	res = &Result{Workload: cfg.Workload, Nemesis: nemName, Seed: cfg.Seed,
		Duration: cfg.Duration.String(), Concurrency: cfg.Concurrency, Dir: dir, Anomalies: []Anomaly{}, Faults: []FaultWindow{}}
	began := time.Now()
	logDir := filepath.Join(dir, "nodes")

	tb := testcluster.NewStandalone("jepsen-"+name, cfg.Logf)
	tb.KeepDir = filepath.Join(dir, "data") // the nodes' data directories
	defer func() {
		tb.Close() // kills the nodes; reports nodes that exited on their own
		if tb.Failed() && res.Valid {
			res.Valid = false
			res.Anomalies = append(res.Anomalies, Anomaly{Type: "cluster-error",
				Detail: "the cluster harness reported an error (a node exited on its own, or a signal failed): see the node logs and the harness log"})
		}
		res.Elapsed = time.Since(began).Round(time.Millisecond).String()
		if err != nil {
			res.Valid = false
			res.Error = err.Error()
		}
		if res.Valid {
			// Node logs and data directories are kept for failing runs only.
			os.RemoveAll(logDir)
			os.RemoveAll(tb.KeepDir)
		}
		if werr := writeJSON(filepath.Join(dir, "results.json"), res); werr != nil && err == nil {
			err = werr
		}
	}()
	defer testcluster.Recover(&err)

	cl := testcluster.New(tb, testcluster.Options{Bin: cfg.Bin, LogDir: logDir, LogLevel: "info"})
	cl.WaitLeader(0)
	var nems []Nemesis
	for _, n := range cfg.Nemeses {
		nem, err := NewNemesis(n, cl)
		if err != nil {
			return res, err
		}
		nems = append(nems, nem)
	}
	env := &Env{URLs: cl.URLs(), OpTimeout: cfg.OpTimeout, RunID: fmt.Sprintf("r%d", began.UnixNano()), Logf: cfg.Logf}
	defer env.close()
	if err := wl.Setup(ctx, env); err != nil {
		return res, fmt.Errorf("workload setup: %w", err)
	}

	h := NewHistory(time.Now())
	rng := rand.New(rand.NewSource(cfg.Seed))
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var procs atomic.Int64
	process := func() int { return int(procs.Add(1) - 1) }
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wrng := rand.New(rand.NewSource(cfg.Seed + int64(w) + 1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			wl.Run(runCtx, env, w, process, wrng, h)
		}()
	}
	cfg.Logf("jepsen: %s: %d clients for %s, seed %d", name, cfg.Concurrency, cfg.Duration, cfg.Seed)
	faults := schedule(runCtx, ctx, cfg, cl, rng, nems, h)
	wg.Wait()
	res.Faults = faults

	// Heal everything (schedule did), then let the cluster settle.
	for _, n := range nems {
		if err := n.Heal(context.WithoutCancel(ctx)); err != nil {
			res.Notes = append(res.Notes, "heal "+n.Name()+": "+err.Error())
		}
	}
	settle := time.Now()
	cl.WaitLeader(0)
	res.Notes = append(res.Notes, fmt.Sprintf("leader agreed %s after the final heal", time.Since(settle).Round(time.Millisecond)))
	if err := wl.Final(ctx, env, h); err != nil {
		return res, fmt.Errorf("final reads: %w", err)
	}
	ops := h.Ops()
	res.Counts = Count(ops)
	res.ByKind = map[string]Counts{}
	byKind := map[string][]Op{}
	for _, op := range ops {
		byKind[op.Kind] = append(byKind[op.Kind], op)
	}
	for k, kops := range byKind {
		res.ByKind[k] = Count(kops)
	}
	if err := writeJSON(filepath.Join(dir, "history.json"), ops); err != nil {
		return res, err
	}
	availability(faults, ops)
	chk := wl.Check(ops, faults, dir)
	res.Valid = chk.Valid
	res.Anomalies = append(res.Anomalies, chk.Anomalies...)
	res.Notes = append(res.Notes, chk.Notes...)

	digests, converged, err := converge(ctx, env, cl)
	if err != nil {
		return res, err
	}
	res.Digests, res.Converged = digests, converged
	if !converged {
		res.Valid = false
		res.Anomalies = append(res.Anomalies, Anomaly{Type: "divergence",
			Detail: "the controllers did not serve the same state (stale list of every VM) within 30s of the end of the run"})
	}
	return res, nil
}

// schedule injects and heals faults until runCtx ends, drawing the
// nemesis, the quiet time and the fault time from rng; the cluster is
// health-checked before each inject and after each heal. It returns the
// fault windows.
func schedule(runCtx, ctx context.Context, cfg Config, cl *testcluster.Cluster, rng *rand.Rand, nems []Nemesis, h *History) []FaultWindow {
	faults := []FaultWindow{}
	if len(nems) == 0 {
		<-runCtx.Done()
		return faults
	}
	draw := func(d time.Duration) time.Duration { return d + time.Duration(rng.Int63n(int64(d))) }
	sleep := func(d time.Duration) bool {
		select {
		case <-runCtx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for {
		quiet, n, hold := draw(cfg.Quiet), nems[rng.Intn(len(nems))], draw(cfg.Fault)
		if !sleep(quiet) {
			return faults
		}
		// Faults start on a healthy cluster only.
		if _, err := healthy(runCtx, cl); err != nil {
			if runCtx.Err() != nil {
				return faults
			}
			faults = append(faults, FaultWindow{Nemesis: n.Name(), Start: h.Now(), End: h.Now(), RecoveryNs: -1,
				Error: "not injected: " + err.Error()})
			continue
		}
		fw := FaultWindow{Nemesis: n.Name(), Start: h.Now()}
		what, err := n.Inject(runCtx)
		fw.What = what
		if err != nil {
			fw.Error = "inject: " + err.Error()
		}
		cfg.Logf("jepsen: %s: %s %s", time.Duration(fw.Start).Round(time.Millisecond), n.Name(), what)
		sleep(hold)
		if err := n.Heal(context.WithoutCancel(ctx)); err != nil {
			fw.Error = strings.TrimPrefix(fw.Error+"; heal: "+err.Error(), "; ")
		}
		fw.End = h.Now()
		cfg.Logf("jepsen: %s: healed %s", time.Duration(fw.End).Round(time.Millisecond), n.Name())
		// The cluster must become healthy again after a heal; the
		// next quiet time starts when it is (or when this gives up).
		d, err := healthy(context.WithoutCancel(ctx), cl)
		fw.HealthyNs = int64(d)
		if err != nil {
			fw.Error = strings.TrimPrefix(fw.Error+"; after heal: "+err.Error(), "; ")
		}
		faults = append(faults, fw)
	}
}

// converge polls every controller with a stale list of all VMs until they
// all serve the same state, for up to 30s.
func converge(ctx context.Context, env *Env, cl *testcluster.Cluster) (map[string]string, bool, error) {
	var digests map[string]string
	err := testcluster.Poll(ctx, 30*time.Second, func() (bool, error) {
		digests = map[string]string{}
		first := ""
		same := true
		for i, u := range env.URLs {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			objs, _, err := env.Client(u).List(lctx, resource.KindVM, &client.QueryOptions{Stale: true})
			cancel()
			if err != nil {
				return false, fmt.Errorf("%s: %w", cl.ID(i), err)
			}
			b, err := json.Marshal(objs)
			if err != nil {
				return false, err
			}
			sum := sha256.Sum256(b)
			d := fmt.Sprintf("%d objects, sha256 %s", len(objs), hex.EncodeToString(sum[:8]))
			digests[cl.ID(i)] = d
			if first == "" {
				first = d
			} else if d != first {
				same = false
			}
		}
		if !same {
			return false, errors.New("digests differ")
		}
		return true, nil
	})
	if err != nil && ctx.Err() != nil {
		return digests, false, ctx.Err()
	}
	return digests, err == nil, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
