package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// The side-by-side comparison with etcd (issue 15): `make bench-compare`.
//
// Three etcd members (Debian's etcd-server, fsync on as always in etcd)
// and three Kumoi controllers (fsync on, the default; ACLs off and no TLS,
// like the etcd members, which run without auth and TLS), each on its own
// loopback address, take the same closed-loop write load in turn: W
// writers, each sending one write at a time and the next as soon as the
// answer came, for the run's duration. A write is a record of about 200
// bytes with a unique key: an etcd put of a 200-byte value under
// /bench/<row>/<writer>/<seq> through clientv3 (gRPC, one client per
// member), and a Kumoi create of a VM whose POST /v1/vms body is 200 bytes
// (a padding label) through the Go SDK with request streams (one client
// per controller, Config.Stream: one connection each, many writes in
// flight on it, as clientv3's gRPC connection). Rows: 1, 16
// and 128 writers spread over all members (writer k talks to member k mod
// 3, as real clients do: followers forward to the leader), and the same
// sending to the leader only. Each system gets a fresh cluster for each
// row, and the two run one after the other, row by row, so that both see
// the same machine at nearly the same moment.
//
//	make bench-compare     # or:
//	KUMOI_BENCH_COMPARE=1 KUMOI_BIN=$PWD/bin/kumoi go test -tags libvirt_dlopen -run '^$' \
//	    -bench '^BenchmarkCompare$' -benchtime 1x -timeout 30m ./bench/
//
// It prints one table (and writes it as JSON to $KUMOI_BENCH_OUT/compare-
// <UTC time>.json when that is set). Without KUMOI_BENCH_COMPARE=1 (make
// bench runs every benchmark of ./bench) it says so and does nothing.
//
// For work on the write path: KUMOI_BENCH_ROWS=all-128,leader-1 runs only
// the rows named (target-writers), KUMOI_BENCH_SKIP_ETCD=1 runs Kumoi
// alone (no ratio), KUMOI_BENCH_HTTP=1 sends Kumoi's writes as plain
// HTTP/1.1 requests (keep-alive connections) instead of on streams,
// KUMOI_RAFT_LOG_STORE=boltdb runs Kumoi's controllers with
// --raft-log-store boltdb (they read it from the environment; the table's
// header says which; the default, wal, otherwise),
// and KUMOI_BENCH_PROFILE=DIR saves a CPU profile of the
// leader and of one follower taken during each Kumoi row
// (DIR/<row>-leader.pprof, DIR/<row>-follower.pprof; read them with
// go tool pprof -top bin/kumoi FILE), what they allocated during it
// (DIR/<row>-leader.allocs: go tool pprof -sample_index alloc_space),
// their /metrics after the row (DIR/<row>-leader.metrics: raft's timings
// of each step of a write) and what stays live after a collection at the
// end of the row (DIR/<row>-leader.heap: the state's bytes).

// recordBytes is the size of one written record.
const recordBytes = 200

// compareRow is one line of the table.
type compareRow struct {
	Writers int    `json:"writers"`
	Target  string `json:"target"` // "all" or "leader"
	Etcd    result `json:"etcd"`
	Kumoi   result `json:"kumoi"`
	// Ratio is Kumoi's writes/s over etcd's.
	Ratio float64 `json:"ratio"`
}

// result is what one system did in one row.
type result struct {
	PerSecond float64 `json:"writes_per_s"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	Acked     int     `json:"acked"`
	Failed    int     `json:"failed"`
	FirstErr  string  `json:"first_error,omitempty"`
	// Elections is how many Raft terms began during a Kumoi row (an
	// election under load: shorter timeouts must not cause them).
	Elections uint64 `json:"elections,omitempty"`
	// ServerCPU is the CPU time (user and system) the three servers
	// used during the row per acknowledged write, in microseconds;
	// ClientCPU the benchmark process's (the load generator). Unlike
	// writes/s they hardly move with what else the machine does.
	ServerCPU float64 `json:"server_cpu_us_per_write,omitempty"`
	ClientCPU float64 `json:"client_cpu_us_per_write,omitempty"`
	// ServerFaults is the minor page faults of the three servers per
	// acknowledged write: each is a page of memory the process touched
	// for the first time, or again after its runtime gave it back to
	// the kernel, which the kernel (and on a ballooned virtual machine,
	// the host) had to supply.
	ServerFaults float64 `json:"server_minor_faults_per_write,omitempty"`
}

func resultOf(r *createsResult, cpu cpuUse) result {
	res := result{PerSecond: r.perSecond(), P50ms: r.percentile(0.5), P99ms: r.percentile(0.99),
		Acked: r.acked, Failed: r.failed, FirstErr: r.firstErr}
	if r.acked > 0 {
		res.ServerCPU = float64(cpu.server.Microseconds()) / float64(r.acked)
		res.ClientCPU = float64(cpu.client.Microseconds()) / float64(r.acked)
		res.ServerFaults = float64(cpu.faults) / float64(r.acked)
	}
	return res
}

// cpuUse is the CPU time the servers and the benchmark process used
// during a row, and the servers' minor page faults.
type cpuUse struct {
	server, client time.Duration
	faults         int64
}

// measureCPU reads the CPU time of the processes pids and of this
// process, and returns what reads how much each used since.
func measureCPU(b *testing.B, pids []int) func() cpuUse {
	server := func() (time.Duration, int64) {
		var sum time.Duration
		var faults int64
		for _, pid := range pids {
			t, f, err := procCPU(pid)
			if err != nil {
				b.Fatalf("CPU time of process %d: %v", pid, err)
			}
			sum += t
			faults += f
		}
		return sum, faults
	}
	self := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatalf("getrusage: %v", err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s0, f0 := server()
	c0 := self()
	return func() cpuUse {
		s, f := server()
		return cpuUse{server: s - s0, client: self() - c0, faults: f - f0}
	}
}

// procCPU is the user and system CPU time of process pid so far, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s: the
// USER_HZ of Linux on every architecture Kumoi builds for), and its minor
// page faults (field 10).
func procCPU(pid int) (time.Duration, int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("no command name in /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var n [3]int64
	for k, s := range [3]string{f[7], f[11], f[12]} { // minflt, utime, stime: fields 10, 14, 15
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
		}
		n[k] = v
	}
	return time.Duration(n[1]+n[2]) * 10 * time.Millisecond, n[0], nil
}

// compareReport is the JSON file of a run.
type compareReport struct {
	Time     time.Time `json:"time"`
	Duration string    `json:"duration"`
	Etcd     string    `json:"etcd_version"`
	Kumoi    string    `json:"kumoi_binary"`
	// LogStore is the Kumoi controllers' Raft log store: wal (the
	// default for their new data directories) or KUMOI_RAFT_LOG_STORE,
	// which they read from the environment.
	LogStore string       `json:"kumoi_raft_log_store"`
	LoadAvg  string       `json:"loadavg_before"`
	Rows     []compareRow `json:"rows"`
}

func BenchmarkCompare(b *testing.B) {
	if os.Getenv("KUMOI_BENCH_COMPARE") != "1" {
		b.Skip("the etcd comparison runs with KUMOI_BENCH_COMPARE=1 (make bench-compare)")
	}
	etcdBin := os.Getenv("KUMOI_ETCD_BIN")
	if etcdBin == "" {
		var err error
		if etcdBin, err = exec.LookPath("etcd"); err != nil {
			b.Fatalf("no etcd binary: install Debian's etcd-server (make deps does, as root) or set KUMOI_ETCD_BIN")
		}
	}
	version, err := exec.Command(etcdBin, "--version").Output()
	if err != nil {
		b.Fatalf("%s --version: %v", etcdBin, err)
	}
	d := runDuration(b)
	report := compareReport{Time: time.Now().UTC(), Duration: d.String(), Kumoi: testcluster.Binary(b, ""), LogStore: "wal"}
	if ls := os.Getenv("KUMOI_RAFT_LOG_STORE"); ls != "" {
		report.LogStore = ls
	}
	report.Etcd, _, _ = strings.Cut(strings.TrimPrefix(string(version), "etcd Version: "), "\n")
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		report.LoadAvg = strings.TrimSpace(string(la))
	}
	for range b.N {
		report.Rows = nil
		for _, target := range []string{"all", "leader"} {
			for _, writers := range []int{1, 16, 128} {
				row := compareRow{Writers: writers, Target: target}
				prefix := fmt.Sprintf("%s-%d", target, writers)
				if !rowWanted(prefix) {
					continue
				}
				if os.Getenv("KUMOI_BENCH_SKIP_ETCD") != "1" {
					row.Etcd = resultOf(etcdRow(b, etcdBin, writers, target == "leader", d, prefix))
				}
				res, cpu, elections := kumoiRow(b, writers, target == "leader", d, prefix)
				row.Kumoi = resultOf(res, cpu)
				row.Kumoi.Elections = elections
				if row.Etcd.PerSecond > 0 {
					row.Ratio = row.Kumoi.PerSecond / row.Etcd.PerSecond
				}
				b.Logf("%d writers to %s: etcd %.0f/s, kumoi %.0f/s, ratio %.2f", writers, target, row.Etcd.PerSecond, row.Kumoi.PerSecond, row.Ratio)
				report.Rows = append(report.Rows, row)
			}
		}
	}
	b.ReportMetric(0, "ns/op")
	for _, r := range report.Rows {
		if r.Target == "all" && r.Writers == 128 {
			b.ReportMetric(r.Ratio, "ratio-128-all")
		}
	}
	printCompare(os.Stdout, &report)
	if dir := os.Getenv("KUMOI_BENCH_OUT"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(dir, "compare-"+report.Time.Format("20060102T150405Z")+".json")
		data, _ := json.MarshalIndent(&report, "", "  ")
		if err := os.WriteFile(p, append(data, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("written to %s\n", p)
	}
	for _, r := range report.Rows {
		if r.Etcd.Failed > 0 || r.Kumoi.Failed > 0 {
			b.Logf("note: failed writes in %d writers to %s: etcd %d (%s), kumoi %d (%s)", r.Writers, r.Target,
				r.Etcd.Failed, r.Etcd.FirstErr, r.Kumoi.Failed, r.Kumoi.FirstErr)
		}
	}
}

// rowWanted says whether KUMOI_BENCH_ROWS (a comma-separated list of
// target-writers, e.g. all-128) is unset or names the row.
func rowWanted(row string) bool {
	rows := os.Getenv("KUMOI_BENCH_ROWS")
	return rows == "" || slices.Contains(strings.Split(rows, ","), row)
}

// printCompare prints the table.
func printCompare(f *os.File, r *compareReport) {
	fmt.Fprintf(f, "\netcd %s vs %s (Raft log: %s), 3 members each, fsync on, %s per row, %d-byte records; load average before: %s\n\n",
		r.Etcd, filepath.Base(r.Kumoi), r.LogStore, r.Duration, recordBytes, r.LoadAvg)
	w := tabwriter.NewWriter(f, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "writers\tto\tetcd writes/s\tp50 ms\tp99 ms\tcpu µs/w\tfaults/w\tkumoi writes/s\tp50 ms\tp99 ms\tcpu µs/w\tfaults/w\tkumoi/etcd\tkumoi elections\t")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%d\t%s\t%.0f\t%.2f\t%.2f\t%s\t%.2f\t%.0f\t%.2f\t%.2f\t%s\t%.2f\t%.2f\t%d\t\n", row.Writers, row.Target,
			row.Etcd.PerSecond, row.Etcd.P50ms, row.Etcd.P99ms, cpuColumn(row.Etcd), row.Etcd.ServerFaults,
			row.Kumoi.PerSecond, row.Kumoi.P50ms, row.Kumoi.P99ms, cpuColumn(row.Kumoi), row.Kumoi.ServerFaults, row.Ratio, row.Kumoi.Elections)
	}
	w.Flush()
	fmt.Fprintln(f)
}

// cpuColumn is a system's CPU per write in a row: the servers' + the
// load generator's, in microseconds.
func cpuColumn(r result) string {
	return fmt.Sprintf("%.0f+%.0f", r.ServerCPU, r.ClientCPU)
}

// kumoiRow runs one row on a fresh Kumoi cluster and says what CPU it
// used and how many elections happened during it.
func kumoiRow(b *testing.B, writers int, leaderOnly bool, d time.Duration, prefix string) (*createsResult, cpuUse, uint64) {
	c, hc := benchCluster(b, false)
	defer c.StopAll()
	leader, _ := c.WaitLeader(30 * time.Second)
	before, err := c.Status(leader)
	if err != nil {
		b.Fatalf("status of the leader: %v", err)
	}
	elections := func() uint64 {
		var term uint64
		sts, _ := c.Statuses()
		for _, st := range sts {
			term = max(term, st.Term)
		}
		return term - min(term, before.Term)
	}
	targets := c.URLs()
	if leaderOnly {
		targets = []string{c.URL(leader)}
	}
	if dir := os.Getenv("KUMOI_BENCH_PROFILE"); dir != "" {
		follower := ""
		for _, u := range c.URLs() {
			if u != c.URL(leader) {
				follower = u
				break
			}
		}
		secs := max(int(d/time.Second)-1, 1)
		var wg sync.WaitGroup
		for role, u := range map[string]string{"leader": c.URL(leader), "follower": follower} {
			wg.Go(func() { saveProfile(b, hc, u, secs, filepath.Join(dir, prefix+"-"+role+".pprof")) })
			// What was allocated during the row (a delta profile).
			wg.Go(func() {
				saveURL(b, hc, fmt.Sprintf("%s/debug/pprof/allocs?seconds=%d", u, secs), filepath.Join(dir, prefix+"-"+role+".allocs"))
			})
		}
		defer wg.Wait()
		// At the end of the row: raft's and Kumoi's metrics, whose
		// summaries time each step of a write (kumoi_raft_commitTime,
		// kumoi_raft_rpc_appendEntries_storeLogs, ...).
		defer func() {
			for role, u := range map[string]string{"leader": c.URL(leader), "follower": follower} {
				saveURL(b, hc, u+"/metrics", filepath.Join(dir, prefix+"-"+role+".metrics"))
				// What stays live after a collection: the state's bytes.
				saveURL(b, hc, u+"/debug/pprof/heap?gc=1", filepath.Join(dir, prefix+"-"+role+".heap"))
			}
		}()
	}
	var pids []int
	for i := range c.N() {
		pids = append(pids, c.Pid(i))
	}
	cpu := measureCPU(b, pids)
	var res *createsResult
	if os.Getenv("KUMOI_BENCH_HTTP") == "1" {
		res = runCreatesOf(hc, targets, writers, d, prefix, paddedCreateBody)
	} else {
		res = runCreatesSDK(b, targets, writers, d, prefix)
	}
	return res, cpu(), elections()
}

// runCreatesSDK is runCreatesOf through the Go SDK: one client with
// request streams per target, writer k using target k mod len(targets),
// each create's body paddedCreateBody's.
func runCreatesSDK(b *testing.B, targets []string, writers int, d time.Duration, prefix string) *createsResult {
	clients := make([]*client.Client, len(targets))
	for i, u := range targets {
		cl, err := client.New(client.Config{Addrs: []string{u}, Stream: true, Timeout: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		clients[i] = cl
	}
	spec := json.RawMessage(`{"cpus":1,"memory_mib":64}`)
	return runWrites(writers, d, func(k, seq int) error {
		name := fmt.Sprintf("%s-%d-%d", prefix, k, seq)
		req := resource.CreateRequest{Name: name, Labels: map[string]string{"bench": "compare", "pad": padFor(name)}, Spec: spec}
		_, err := clients[k%len(clients)].Create(context.Background(), resource.KindVM, req)
		return err
	})
}

// padFor is the padding label's value that makes name's create body
// recordBytes long (as paddedCreateBody's).
func padFor(name string) string {
	head := `{"name":"` + name + `","labels":{"bench":"compare","pad":"`
	tail := `"},"spec":{"cpus":1,"memory_mib":64}}`
	return strings.Repeat("p", max(recordBytes-len(head)-len(tail), 1))
}

// saveProfile fetches a CPU profile of secs seconds from the controller at
// url (GET /debug/pprof/profile) into path.
func saveProfile(b *testing.B, hc *http.Client, url string, secs int, path string) {
	saveURL(b, hc, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", url, secs), path)
}

// saveURL saves what a GET of url answers into path.
func saveURL(b *testing.B, hc *http.Client, url, path string) {
	resp, err := hc.Get(url)
	if err != nil {
		b.Logf("profile of %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Logf("profile of %s: status %d, %v", url, resp.StatusCode, err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Logf("profile: %v", err)
		return
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Logf("profile: %v", err)
	}
}

// paddedCreateBody is createBody with a padding label that makes it
// recordBytes long (for the names of this benchmark).
func paddedCreateBody(name string) []byte {
	return []byte(`{"name":"` + name + `","labels":{"bench":"compare","pad":"` + padFor(name) + `"},"spec":{"cpus":1,"memory_mib":64}}`)
}

// etcdRow runs one row on a fresh etcd cluster.
func etcdRow(b *testing.B, bin string, writers int, leaderOnly bool, d time.Duration, prefix string) (*createsResult, cpuUse) {
	e := startEtcd(b, bin)
	defer e.stop()
	eps := e.endpoints
	if leaderOnly {
		eps = []string{e.leader(b)}
	}
	clients := make([]*clientv3.Client, len(eps))
	for i, ep := range eps {
		cl, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatalf("etcd client of %s: %v", ep, err)
		}
		defer cl.Close()
		clients[i] = cl
	}
	value := strings.Repeat("v", recordBytes)
	var pids []int
	for _, p := range e.procs {
		pids = append(pids, p.Process.Pid)
	}
	cpu := measureCPU(b, pids)
	res := runWrites(writers, d, func(k, seq int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := clients[k%len(clients)].Put(ctx, fmt.Sprintf("/bench/%s/%d/%d", prefix, k, seq), value)
		return err
	})
	return res, cpu()
}

// runWrites has writers goroutines call write(k, seq) in a closed loop
// until d passes or maxCreates were sent, and measures the successful
// ones.
func runWrites(writers int, d time.Duration, write func(k, seq int) error) *createsResult {
	var (
		sent    atomic.Int64
		mu      sync.Mutex
		res     = &createsResult{}
		wg      sync.WaitGroup
		stopped atomic.Bool
	)
	start := time.Now()
	timer := time.AfterFunc(d, func() { stopped.Store(true) })
	defer timer.Stop()
	for k := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			failed, firstErr := 0, ""
			for seq := 0; !stopped.Load() && sent.Add(1) <= maxCreates; seq++ {
				t0 := time.Now()
				if err := write(k, seq); err != nil {
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.failed += failed
			if res.firstErr == "" {
				res.firstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.acked = len(res.lat)
	slices.Sort(res.lat)
	return res
}

// etcdCluster is three etcd members on loopback addresses of their own.
type etcdCluster struct {
	endpoints []string
	procs     []*exec.Cmd
	done      []chan struct{}
}

// startEtcd starts three members on a block of loopback addresses that no
// test cluster holds (client port 2379, peer port 2380), each with its own
// data directory, and waits until a put succeeds.
func startEtcd(b *testing.B, bin string) *etcdCluster {
	b.Helper()
	ips := testcluster.ReserveIPs(b, 3)
	var initial []string
	for i, ip := range ips {
		initial = append(initial, fmt.Sprintf("e%d=http://%s:2380", i+1, ip))
	}
	e := &etcdCluster{}
	dir := b.TempDir()
	for i, ip := range ips {
		name := fmt.Sprintf("e%d", i+1)
		client := "http://" + ip + ":2379"
		cmd := exec.Command(bin,
			"--name", name,
			"--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", "http://"+ip+":2380", "--initial-advertise-peer-urls", "http://"+ip+":2380",
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "kumoi-bench",
			"--logger", "zap", "--log-level", "warn",
		)
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			b.Fatalf("start %s: %v", bin, err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(done) }()
		e.endpoints = append(e.endpoints, client)
		e.procs = append(e.procs, cmd)
		e.done = append(e.done, done)
	}
	b.Cleanup(e.stop)
	cl, err := clientv3.New(clientv3.Config{Endpoints: e.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		b.Fatalf("etcd client: %v", err)
	}
	defer cl.Close()
	testcluster.WaitFor(b, 30*time.Second, "etcd to take writes", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cl.Put(ctx, "/bench/warmup", "x")
		return err == nil, err
	})
	return e
}

// leader is the client URL of the member that leads.
func (e *etcdCluster) leader(b *testing.B) string {
	b.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: e.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		b.Fatalf("etcd client: %v", err)
	}
	defer cl.Close()
	for _, ep := range e.endpoints {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cl.Status(ctx, ep)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return ep
		}
	}
	b.Fatalf("no etcd member says it leads")
	return ""
}

// stop kills the members (SIGKILL: their data goes with the test) and
// waits for them. It may be called more than once.
func (e *etcdCluster) stop() {
	for i, p := range e.procs {
		if p.Process != nil {
			_ = p.Process.Kill()
		}
		<-e.done[i]
	}
	e.procs, e.done = nil, nil
}
