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
	"slices"
	"strconv"
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
	// Workload is "register", "set", "placement", "ipam" or
	// "bootstrap-race".
	Workload string
	// Nemeses are the nemesis names; each fault picks one of them at
	// random. Empty: no faults.
	Nemeses []string
	// Nodes is the number of controllers, 3 or 5 (default 3).
	Nodes int
	// Workers is the number of sim workers (default 0, and 2 for the
	// placement workload, which needs some).
	Workers int
	// WorkerDriver is the workers' hypervisor driver: "sim" (default),
	// "libvirt" (libvirt's test:/// driver, in the worker's process, with
	// a host file of the workload's capacity) or "libvirtd" (one libvirt
	// daemon of the run's own per worker, internal/libvirtd: the domains
	// live in the daemon and outlive the worker; see daemons.go).
	WorkerDriver string
	// Duration is how long the workload runs (default 30s).
	Duration time.Duration
	// Concurrency is the number of clients (default 5).
	Concurrency int
	// Rate limits the operations of all clients together to this many
	// per second (0: as fast as they go).
	Rate float64
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
	// fault lasts: each is drawn from [d, 2d) (defaults 1s and 2s; 5s
	// for the placement workload).
	Quiet, Fault time.Duration
	// Steps, if set, is the fault schedule to follow instead of drawing
	// one (a replay: LoadPlan).
	Steps []Step
	// UnsafeStaleReads starts the controllers with the hidden
	// --debug-unsafe-stale-reads: reads skip the leader check. Only for
	// the selftest, which must find the anomaly. The flag exists only in
	// a kumoi built with the tag kumoi_testhooks: Run refuses a Bin
	// without it.
	UnsafeStaleReads bool
	// TLS runs the cluster with TLS: every node has a certificate of the
	// test CA (testcluster.Options.TLS), the API is HTTPS only, Raft and
	// gossip streams are mutual TLS. ACLs are always on (the nodes
	// bootstrap with testcluster.ManagementToken).
	TLS bool
	// Stream makes the workloads' clients send their writes on request
	// streams (client.Config.Stream: one multiplexed connection per
	// controller) instead of one HTTP request each; reads stay HTTP.
	Stream bool
	// RaftLogStore is the controllers' --raft-log-store (empty: the
	// agent's default, wal).
	RaftLogStore string
	// WALSegmentSize is the controllers' --raft-wal-segment-size (empty:
	// the agent's default, 64MiB); a small one makes the Raft log rotate
	// its segments often during the run.
	WALSegmentSize string
	// BootstrapModes restricts the rounds of the bootstrap-race workload
	// to these modes (empty: every one of BootstrapModes).
	BootstrapModes []string
	// KeepLogs keeps the node logs and data directories of valid runs too
	// (they are always kept for invalid ones).
	KeepLogs bool
	// Logf logs progress (default: nothing).
	Logf func(format string, args ...any)
}

// Step is one fault of a schedule: wait Quiet (after the cluster is
// healthy), inject Nemesis, hold it for Hold, heal.
type Step struct {
	Quiet   time.Duration `json:"quiet_ns"`
	Nemesis string        `json:"nemesis"`
	Hold    time.Duration `json:"hold_ns"`
}

// Plan is what a run saves in plan.json so that --replay can run it again:
// its configuration, its seed and the fault schedule it followed. The
// victims of the random nemeses come from the seed; the leader-targeting
// ones hit whoever leads at the time.
type Plan struct {
	Workload         string   `json:"workload"`
	Nemeses          []string `json:"nemeses"`
	Nodes            int      `json:"nodes"`
	Workers          int      `json:"workers"`
	WorkerDriver     string   `json:"worker_driver,omitempty"`
	Duration         string   `json:"duration"`
	Concurrency      int      `json:"concurrency"`
	Rate             float64  `json:"rate,omitempty"`
	Seed             int64    `json:"seed"`
	OpTimeout        string   `json:"op_timeout"`
	UnsafeStaleReads bool     `json:"unsafe_stale_reads,omitempty"`
	Stream           bool     `json:"stream,omitempty"`
	RaftLogStore     string   `json:"raft_log_store,omitempty"`
	WALSegmentSize   string   `json:"raft_wal_segment_size,omitempty"`
	BootstrapModes   []string `json:"bootstrap_modes,omitempty"`
	Steps            []Step   `json:"steps"`
}

// LoadPlan reads dir/plan.json and returns the Config that replays it
// (Bin, OutDir and Logf are left for the caller).
func LoadPlan(dir string) (Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, "plan.json"))
	if err != nil {
		return Config{}, err
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return Config{}, fmt.Errorf("%s/plan.json: %w", dir, err)
	}
	d, err := time.ParseDuration(p.Duration)
	if err != nil {
		return Config{}, fmt.Errorf("%s/plan.json: duration: %w", dir, err)
	}
	ot, err := time.ParseDuration(p.OpTimeout)
	if err != nil {
		return Config{}, fmt.Errorf("%s/plan.json: op_timeout: %w", dir, err)
	}
	steps := p.Steps
	if steps == nil {
		steps = []Step{}
	}
	return Config{Workload: p.Workload, Nemeses: p.Nemeses, Nodes: p.Nodes, Workers: p.Workers, WorkerDriver: p.WorkerDriver, Duration: d,
		Concurrency: p.Concurrency, Rate: p.Rate, Seed: p.Seed, OpTimeout: ot, Steps: steps,
		UnsafeStaleReads: p.UnsafeStaleReads, Stream: p.Stream, RaftLogStore: p.RaftLogStore, WALSegmentSize: p.WALSegmentSize, BootstrapModes: p.BootstrapModes}, nil
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
	// FailoverNs is the time from the inject to the return of the first
	// acknowledged write invoked after it (for kill-leader: the time to
	// recover from the loss of the leader); -1 if none.
	FailoverNs int64 `json:"failover_ns"`
}

// availability fills in each fault's Ops and RecoveryNs.
func availability(faults []FaultWindow, ops []Op) {
	for i := range faults {
		f := &faults[i]
		var during []Op
		f.RecoveryNs, f.FailoverNs = -1, -1
		for _, op := range ops {
			if op.Invoke >= f.Start && op.Invoke < f.End {
				during = append(during, op)
			}
			if op.Invoke >= f.Start && op.Status == StatusOK && op.Kind != "read" && op.Kind != "list" {
				if d := op.Return - f.Start; f.FailoverNs < 0 || d < f.FailoverNs {
					f.FailoverNs = d
				}
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
	Valid    bool   `json:"valid"`
	Workload string `json:"workload"`
	Nemesis  string `json:"nemesis"`
	Seed     int64  `json:"seed"`
	Nodes    int    `json:"nodes"`
	Workers  int    `json:"workers,omitempty"`
	// WorkerDriver is the workers' driver: sim or libvirt.
	WorkerDriver string            `json:"worker_driver,omitempty"`
	Duration     string            `json:"duration"`
	Concurrency  int               `json:"concurrency"`
	Rate         float64           `json:"rate,omitempty"`
	Unsafe       bool              `json:"unsafe_stale_reads,omitempty"`
	TLS          bool              `json:"tls"`                             // the cluster ran with TLS (ACLs are always on)
	Stream       bool              `json:"stream,omitempty"`                // the clients wrote on request streams
	RaftLogStore string            `json:"raft_log_store,omitempty"`        // the controllers' --raft-log-store, when set
	WALSegment   string            `json:"raft_wal_segment_size,omitempty"` // the controllers' --raft-wal-segment-size, when set
	Counts       Counts            `json:"counts"`
	ByKind       map[string]Counts `json:"counts_by_kind"`
	Anomalies    []Anomaly         `json:"anomalies"`
	Notes        []string          `json:"notes,omitempty"`
	Faults       []FaultWindow     `json:"faults"`
	// Converged says whether every controller served the same state
	// (a digest of stale lists of every kind) after the run; Digests has each one's.
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
	if c.Workers == 0 {
		c.Workers = workloadNeedsWorkers(c.Workload)
	}
	if c.Nodes == 0 {
		c.Nodes = 3
	}
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
		if c.Workload == "placement" {
			// A killed or cut-off worker's VMs are placed anew only
			// after the controllers saw it down (≈ 1–1.5 s) plus
			// --host-down-grace (3.5 s): most faults of 5–10 s get that
			// far, the others end just before or around it.
			c.Fault = 5 * time.Second
		}
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Run starts a cluster, runs the workload with the nemeses, heals, checks,
// and writes the results to a new directory under cfg.OutDir. The error
// is about the harness (bad configuration, no binary, a cluster that
// never came up); an invalid history is a Result with Valid false.
//
// The steps: validate the configuration (and, for UnsafeStaleReads, that
// the binary has the fault hook); start the cluster and wait for
// its leader and its workers' hosts; set the workload up; run the clients
// and the fault schedule for cfg.Duration; heal everything; make the final
// reads and check the history; check that the controllers converged.
// Whatever happens, finish removes the partition rules, stops the cluster
// and writes plan.json and results.json.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	cfg.defaults()
	if cfg.Workload == BootstrapRace {
		return runBootstrapRace(ctx, cfg)
	}
	wl, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if err := checkTestHooks(ctx, cfg); err != nil {
		return nil, fmt.Errorf("refusing to run: %w", err)
	}
	name, nemName := cfg.runName()
	dir := filepath.Join(cfg.OutDir, time.Now().UTC().Format("20060102T150405.000Z")+"-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, name: name, dir: dir, fw: &Firewall{}, began: time.Now(), findings: &Findings{}}
	r.res = &Result{Workload: cfg.Workload, Nemesis: nemName, Seed: cfg.Seed, Nodes: cfg.Nodes, Workers: cfg.Workers, WorkerDriver: cfg.WorkerDriver,
		Duration: cfg.Duration.String(), Concurrency: cfg.Concurrency, Rate: cfg.Rate, Unsafe: cfg.UnsafeStaleReads, TLS: cfg.TLS,
		Stream: cfg.Stream, RaftLogStore: cfg.RaftLogStore, WALSegment: cfg.WALSegmentSize, Dir: dir, Anomalies: []Anomaly{}, Faults: []FaultWindow{}}
	res = r.res
	r.tb = testcluster.NewStandalone("jepsen-"+name, cfg.Logf)
	r.tb.KeepDir = filepath.Join(dir, "data") // the nodes' data directories
	defer func() { err = r.finish(ctx, err) }()
	defer testcluster.Recover(&err)

	opts, err := r.clusterOptions(wl)
	if err != nil {
		return res, err
	}
	cl := testcluster.New(r.tb, opts)
	if cfg.WorkerDriver == DriverLibvirtd {
		if err := r.lv.start(ctx, cl, cfg.Workers, cfg.Logf); err != nil {
			return res, err
		}
	}
	cl.WaitLeader(0)
	env := &Env{URLs: cl.URLs(), OpTimeout: cfg.OpTimeout, Stream: cfg.Stream, RunID: fmt.Sprintf("r%d", r.began.UnixNano()), Logf: cfg.Logf,
		Cluster: cl, Dir: dir, Daemons: r.lv.targets()}
	env.limit = newLimiter(cfg.Rate)
	defer env.close()
	for w := 0; w < cl.Workers(); w++ {
		if err := waitHost(ctx, env, cl.WorkerName(w), 60*time.Second); err != nil {
			return res, err
		}
	}
	// bootstrap-race: the controllers, started together with
	// --bootstrap-expect, must have formed one cluster of exactly them.
	r.checkIdentity(ctx, cl, AnomalyBootstrapRace, "start")
	nems, err := newNemeses(cfg.Nemeses, &Target{C: cl, Rng: rand.New(rand.NewSource(cfg.Seed ^ 0x6e656d)), Env: env, FW: r.fw, Findings: r.findings,
		Daemons: r.lv.daemons})
	if err != nil {
		return res, err
	}
	if err := wl.Setup(ctx, env); err != nil {
		return res, fmt.Errorf("workload setup: %w", err)
	}
	h := NewHistory(time.Now())
	faults := r.runWorkload(ctx, wl, env, cl, nems, h)
	res.Faults = faults
	if err := r.healAll(ctx, cl, nems); err != nil {
		return res, err
	}
	r.checkIdentity(ctx, cl, AnomalyIdentity, "final")
	if err := r.checkHistory(ctx, wl, env, h, faults); err != nil {
		return res, err
	}
	return res, r.checkConverged(ctx, env, cl)
}

// validate checks the configuration (after defaults) and returns its
// workload.
func (c *Config) validate() (Workload, error) {
	if c.Nodes != 3 && c.Nodes != 5 {
		return nil, fmt.Errorf("nodes = %d: run 3 or 5 controllers", c.Nodes)
	}
	if c.Workers < 0 || c.Nodes+c.Workers > testcluster.MaxNodes {
		return nil, fmt.Errorf("workers = %d: at most %d controllers and workers together", c.Workers, testcluster.MaxNodes)
	}
	wl, err := NewWorkload(c.Workload)
	if err != nil {
		return nil, err
	}
	for _, n := range c.Nemeses {
		if !slices.Contains(Nemeses, n) {
			return nil, fmt.Errorf("unknown nemesis %q (%s)", n, strings.Join(Nemeses, ", "))
		}
		if PartitionNemesis(n) {
			if err := CanPartition(); err != nil {
				return nil, fmt.Errorf("refusing to run: %w", err)
			}
		}
		if WorkerNemesis(n) && c.Workers == 0 {
			return nil, fmt.Errorf("nemesis %s needs workers (--workers N)", n)
		}
		if n == "libvirt-hang" && c.WorkerDriver != DriverLibvirtd {
			return nil, fmt.Errorf("nemesis libvirt-hang pauses a worker's libvirtd: it needs --worker-driver %s", DriverLibvirtd)
		}
		if (n == "partition-ring" || n == "partition-bridge") && c.Nodes != 5 {
			return nil, fmt.Errorf("nemesis %s needs 5 controllers (--nodes 5)", n)
		}
	}
	for _, st := range c.Steps {
		if !slices.Contains(c.Nemeses, st.Nemesis) {
			return nil, fmt.Errorf("the plan's step %q is not one of its nemeses %v", st.Nemesis, c.Nemeses)
		}
	}
	return wl, nil
}

// runName is the run's name, the end of its directory's name
// (register-n3-kill-leader), and its nemeses as results.json names them
// (kill-leader,pause-random; none).
func (c *Config) runName() (name, nemeses string) {
	nemeses = strings.Join(c.Nemeses, ",")
	if nemeses == "" {
		nemeses = "none"
	}
	nemPart := strings.ReplaceAll(nemeses, ",", "+")
	if len(c.Nemeses) > 3 {
		nemPart = fmt.Sprintf("mix%d", len(c.Nemeses))
	}
	name = fmt.Sprintf("%s-n%d-%s", c.Workload, c.Nodes, nemPart)
	if c.UnsafeStaleReads {
		name += "-unsafe"
	}
	return name, nemeses
}

// run is one Run in progress.
type run struct {
	cfg   Config
	name  string
	dir   string
	res   *Result
	tb    *testcluster.Standalone
	fw    *Firewall
	began time.Time
	steps []Step // the fault schedule followed, for plan.json
	// findings has the nemeses' and the identity check's notes and
	// anomalies; finish adds them to the result.
	findings *Findings
	// lv has the libvirt daemons of --worker-driver libvirtd.
	lv libvirtdWorkers
	// idChecks counts the identity checks that passed, by when
	// ("start", "after heals", "final").
	idMu     sync.Mutex
	idChecks map[string]int
}

// IdentityTimeout bounds each identity check (bootstrap-race).
var IdentityTimeout = 30 * time.Second

// checkIdentity runs the identity check (identity.go) on cl; a failure
// is an anomaly of type typ, recorded in r.findings.
func (r *run) checkIdentity(ctx context.Context, cl *testcluster.Cluster, typ, key string) {
	a := checkIdentity(context.WithoutCancel(ctx), cl, &r.findings.Identity, typ, key, IdentityTimeout)
	if a != nil {
		r.cfg.Logf("jepsen: %s: identity check %s failed: %s", r.name, key, a.Detail)
		r.findings.Anomaly(*a)
		return
	}
	when := key
	if strings.HasPrefix(key, "after ") {
		when = "after heals"
	}
	r.idMu.Lock()
	defer r.idMu.Unlock()
	if r.idChecks == nil {
		r.idChecks = map[string]int{}
	}
	r.idChecks[when]++
}

// logDir receives the nodes' logs.
func (r *run) logDir() string { return filepath.Join(r.dir, "nodes") }

// finish ends the run whatever happened, err being Run's error: it
// removes the partition rules, stops the cluster, marks the result
// invalid on a harness error, drops the node logs and data directories of
// a valid run, and writes plan.json and results.json. It returns err, or
// the error of writing them.
func (r *run) finish(ctx context.Context, err error) error {
	cfg, res := r.cfg, r.res
	// Partition rules go first, whatever happened.
	if ferr := r.fw.Clear(context.WithoutCancel(ctx)); ferr != nil {
		res.Notes = append(res.Notes, "removing iptables rules: "+ferr.Error())
	}
	r.tb.Close() // kills the nodes; reports nodes that exited on their own
	// Then what outlives the workers: their fence guards, the daemons.
	if notes := r.lv.close(r.logDir()); len(notes) > 0 {
		res.Notes = append(res.Notes, notes...)
	}
	if r.findings != nil {
		notes, anomalies := r.findings.take()
		r.idMu.Lock()
		if len(r.idChecks) > 0 {
			notes = append(notes, fmt.Sprintf("identity check (bootstrap-race): one cluster id %s, exactly the run's servers: passed at start %d, after heals that restart controllers %d, final %d",
				cmpOr(r.findings.Identity.ClusterID, "?"), r.idChecks["start"], r.idChecks["after heals"], r.idChecks["final"]))
		}
		r.idMu.Unlock()
		res.Notes = append(res.Notes, notes...)
		if len(anomalies) > 0 {
			res.Anomalies = append(res.Anomalies, anomalies...)
			res.Valid = false
		}
	}
	if r.tb.Failed() && res.Valid {
		res.Valid = false
		res.Anomalies = append(res.Anomalies, Anomaly{Type: "cluster-error",
			Detail: "the cluster harness reported an error (a node exited on its own, or a signal failed): see the node logs and the harness log"})
	}
	res.Elapsed = time.Since(r.began).Round(time.Millisecond).String()
	if err != nil {
		res.Valid = false
		res.Error = err.Error()
	}
	if res.Valid && !cfg.KeepLogs {
		// Node logs and data directories are kept for failing runs only.
		os.RemoveAll(r.logDir())
		os.RemoveAll(r.tb.KeepDir)
	}
	plan := Plan{Workload: cfg.Workload, Nemeses: cfg.Nemeses, Nodes: cfg.Nodes, Workers: cfg.Workers, WorkerDriver: cfg.WorkerDriver,
		Duration: cfg.Duration.String(), Concurrency: cfg.Concurrency, Rate: cfg.Rate, Seed: cfg.Seed,
		OpTimeout: cfg.OpTimeout.String(), UnsafeStaleReads: cfg.UnsafeStaleReads, Stream: cfg.Stream, RaftLogStore: cfg.RaftLogStore, WALSegmentSize: cfg.WALSegmentSize, BootstrapModes: cfg.BootstrapModes, Steps: r.steps}
	if werr := writeJSON(filepath.Join(r.dir, "plan.json"), plan); werr != nil && err == nil {
		err = werr
	}
	if werr := writeJSON(filepath.Join(r.dir, "results.json"), res); werr != nil && err == nil {
		err = werr
	}
	return err
}

// clusterOptions are the options of the run's cluster: its controllers,
// and its workers with the workload's arguments and the driver
// cfg.WorkerDriver (for libvirt, a host file in the run's directory).
func (r *run) clusterOptions(wl Workload) (testcluster.Options, error) {
	cfg := r.cfg
	opts := testcluster.Options{Bin: cfg.Bin, LogDir: r.logDir(), LogLevel: "info", Controllers: cfg.Nodes, Workers: cfg.Workers, TLS: cfg.TLS}
	if cfg.UnsafeStaleReads {
		opts.ControllerArgs = append(opts.ControllerArgs, "--debug-unsafe-stale-reads")
	}
	if cfg.RaftLogStore != "" {
		opts.ControllerArgs = append(opts.ControllerArgs, "--raft-log-store", cfg.RaftLogStore)
	}
	if cfg.WALSegmentSize != "" {
		opts.ControllerArgs = append(opts.ControllerArgs, "--raft-wal-segment-size", cfg.WALSegmentSize)
	}
	if wa, ok := wl.(workerArgser); ok {
		opts.WorkerArgs = append(opts.WorkerArgs, wa.WorkerArgs()...)
	}
	switch cfg.WorkerDriver {
	case "", "sim":
	case DriverLibvirtd:
		// Each worker gets its own daemon and data directory, so Run
		// adds them (libvirtdWorkers.start) once the controllers run.
		opts.Workers = 0
	case "libvirt":
		// libvirt's test driver runs inside each worker process, from a
		// host file (read, never written): one file serves every worker,
		// and a worker's domains die with its process, as sim's do.
		hostFile := filepath.Join(r.dir, "libvirt-host.xml")
		cpus, mem := 16, int64(16384)
		if c, m, ok := workerCapacity(opts.WorkerArgs); ok {
			cpus, mem = c, m
		}
		if err := os.WriteFile(hostFile, []byte(libvirtHostXML(cpus, mem)), 0o644); err != nil {
			return opts, err
		}
		abs, err := filepath.Abs(hostFile)
		if err != nil {
			return opts, err
		}
		opts.WorkerArgs = append(opts.WorkerArgs, "--hypervisor", "libvirt", "--libvirt-uri", "test://"+abs)
	default:
		return opts, fmt.Errorf("worker driver %q: use sim, libvirt or libvirtd", cfg.WorkerDriver)
	}
	return opts, nil
}

// newNemeses returns the nemeses called names, acting on t.
func newNemeses(names []string, t *Target) ([]Nemesis, error) {
	var nems []Nemesis
	for _, n := range names {
		nem, err := NewNemesis(n, t)
		if err != nil {
			return nil, err
		}
		nems = append(nems, nem)
	}
	return nems, nil
}

// runWorkload runs cfg.Concurrency clients of the workload and the fault
// schedule for cfg.Duration, recording in h. It returns the fault windows
// and keeps the steps it followed for plan.json.
func (r *run) runWorkload(ctx context.Context, wl Workload, env *Env, cl *testcluster.Cluster, nems []Nemesis, h *History) []FaultWindow {
	cfg := r.cfg
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
	cfg.Logf("jepsen: %s: %d clients for %s, seed %d", r.name, cfg.Concurrency, cfg.Duration, cfg.Seed)
	afterHeal := func(name string, end int64) {
		if RestartsControllers(name) {
			r.checkIdentity(ctx, cl, AnomalyIdentity, fmt.Sprintf("after %s healed at %s", name, time.Duration(end).Round(time.Millisecond)))
		}
	}
	faults, steps := schedule(runCtx, ctx, cfg, cl, rng, nems, h, afterHeal)
	r.steps = steps
	wg.Wait()
	return faults
}

// healAll heals every nemesis (schedule did; a heal is a no-op then) and
// removes every partition rule, then waits for the cluster to agree on a
// leader.
func (r *run) healAll(ctx context.Context, cl *testcluster.Cluster, nems []Nemesis) error {
	res := r.res
	for _, n := range nems {
		if err := n.Heal(context.WithoutCancel(ctx)); err != nil {
			res.Notes = append(res.Notes, "heal "+n.Name()+": "+err.Error())
		}
	}
	if err := r.fw.Clear(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("removing iptables rules: %w", err)
	}
	settle := time.Now()
	cl.WaitLeader(0)
	res.Notes = append(res.Notes, fmt.Sprintf("leader agreed %s after the final heal", time.Since(settle).Round(time.Millisecond)))
	return nil
}

// checkHistory makes the workload's final reads, counts the operations,
// writes history.json, fills in the faults' availability, runs the
// workload's checker and draws the plots.
func (r *run) checkHistory(ctx context.Context, wl Workload, env *Env, h *History, faults []FaultWindow) error {
	res := r.res
	if err := wl.Final(ctx, env, h); err != nil {
		return fmt.Errorf("final reads: %w", err)
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
	if err := writeJSON(filepath.Join(r.dir, "history.json"), ops); err != nil {
		return err
	}
	availability(faults, ops)
	chk := wl.Check(ops, faults, r.dir)
	res.Valid = chk.Valid
	res.Anomalies = append(res.Anomalies, chk.Anomalies...)
	res.Notes = append(res.Notes, chk.Notes...)
	if err := plots(r.dir, ops, faults, h.Now()); err != nil {
		res.Notes = append(res.Notes, "plots: "+err.Error())
	}
	return nil
}

// checkConverged records each controller's digest and makes the run
// invalid if they did not converge.
func (r *run) checkConverged(ctx context.Context, env *Env, cl *testcluster.Cluster) error {
	res := r.res
	digests, why, err := converge(ctx, env, cl)
	if err != nil {
		return err
	}
	res.Digests, res.Converged = digests, why == nil
	if why != nil {
		res.Valid = false
		res.Anomalies = append(res.Anomalies, Anomaly{Type: "divergence",
			Detail: "the controllers did not serve the same state (a digest of stale lists of every kind) within 30s of the end of the run: " + why.Error()})
	}
	return nil
}

// schedule injects and heals faults until runCtx ends, following
// cfg.Steps or drawing the nemesis, the quiet time and the fault time from
// rng; the cluster is health-checked before each inject and after each
// heal. It returns the fault windows and the steps it followed.
func schedule(runCtx, ctx context.Context, cfg Config, cl *testcluster.Cluster, rng *rand.Rand, nems []Nemesis, h *History, afterHeal func(nemesis string, end int64)) ([]FaultWindow, []Step) {
	faults := []FaultWindow{}
	steps := []Step{}
	if len(nems) == 0 {
		<-runCtx.Done()
		return faults, steps
	}
	byName := map[string]Nemesis{}
	for _, n := range nems {
		byName[n.Name()] = n
	}
	draw := func(d time.Duration) time.Duration { return d + time.Duration(rng.Int63n(int64(d))) }
	for k := 0; ; k++ {
		var st Step
		if cfg.Steps != nil {
			if k >= len(cfg.Steps) {
				<-runCtx.Done()
				return faults, steps
			}
			st = cfg.Steps[k]
		} else {
			st.Quiet, st.Nemesis, st.Hold = draw(cfg.Quiet), nems[rng.Intn(len(nems))].Name(), draw(cfg.Fault)
		}
		n := byName[st.Nemesis]
		if !sleepCtx(runCtx, st.Quiet) {
			return faults, steps
		}
		steps = append(steps, st)
		// Faults start on a healthy cluster only.
		if _, err := healthy(runCtx, cl); err != nil {
			if runCtx.Err() != nil {
				return faults, steps
			}
			faults = append(faults, FaultWindow{Nemesis: n.Name(), Start: h.Now(), End: h.Now(), RecoveryNs: -1, FailoverNs: -1,
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
		sleepCtx(runCtx, st.Hold)
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
		if afterHeal != nil {
			afterHeal(n.Name(), fw.End)
		}
		faults = append(faults, fw)
	}
}

// converge polls every controller with stale lists of every kind until
// they all serve the same state, for up to 30s. A controller's digest is
// the sha256 of the JSON of its lists, in kind order. why says why they
// did not converge (nil: they did); err is about the harness (ctx ended).
func converge(ctx context.Context, env *Env, cl *testcluster.Cluster) (digests map[string]string, why, err error) {
	err = testcluster.Poll(ctx, 30*time.Second, func() (bool, error) {
		digests = map[string]string{}
		first := ""
		same := true
		for i, u := range env.URLs {
			d, err := digest(ctx, env.Client(u))
			if err != nil {
				return false, fmt.Errorf("%s: %w", cl.ID(i), err)
			}
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
		return digests, err, ctx.Err()
	}
	return digests, err, nil
}

// digest summarises a controller's local state: every object of every
// kind, from stale lists.
func digest(ctx context.Context, c *client.Client) (string, error) {
	h := sha256.New()
	var counts []string
	for _, k := range resource.Kinds() {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		objs, _, err := c.List(lctx, k.Kind, &client.QueryOptions{Stale: true})
		cancel()
		if err != nil {
			return "", fmt.Errorf("list %s: %w", k.Plural, err)
		}
		b, err := json.Marshal(objs)
		if err != nil {
			return "", err
		}
		h.Write([]byte(k.Kind))
		h.Write(b)
		counts = append(counts, fmt.Sprintf("%d %s", len(objs), k.Plural))
	}
	return fmt.Sprintf("%s, sha256 %s", strings.Join(counts, " "), hex.EncodeToString(h.Sum(nil)[:8])), nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// libvirtHostXML is a libvirt test-driver host file: a node with cpus and
// memoryMiB and no domains.
func libvirtHostXML(cpus int, memoryMiB int64) string {
	return fmt.Sprintf(`<node><cpu><mhz>2000</mhz><model>x86_64</model><active>%d</active><max>%d</max>`+
		`<nodes>1</nodes><sockets>1</sockets><cores>%d</cores><threads>1</threads></cpu><memory>%d</memory></node>`,
		cpus, cpus, cpus, memoryMiB*1024)
}

// workerCapacity finds --cpus N and --memory NMiB in worker arguments.
func workerCapacity(args []string) (cpus int, memoryMiB int64, ok bool) {
	cpus, memoryMiB = -1, -1
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--cpus":
			if n, err := strconv.Atoi(args[i+1]); err == nil {
				cpus = n
			}
		case "--memory":
			if n, err := resource.ParseMemoryMiB(args[i+1]); err == nil {
				memoryMiB = n
			}
		}
	}
	return cpus, memoryMiB, cpus > 0 && memoryMiB > 0
}
