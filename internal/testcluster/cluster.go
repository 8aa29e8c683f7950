package testcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// Options configures a cluster. The zero value starts three controllers.
type Options struct {
	// Controllers is how many controllers New starts; they bootstrap
	// together (--bootstrap-expect Controllers). Default 3.
	Controllers int
	// BaseIP is the first node's address; node i gets BaseIP+i. Empty
	// picks the first free block among 127.0.0.11, 127.0.1.11, … .
	BaseIP string
	// Bin is the kumoi binary; default $KUMOI_BIN, else built once.
	Bin string
	// ExtraArgs are appended to every node's `kumoi agent` arguments.
	ExtraArgs []string
	// ControllerArgs are appended to the controllers' arguments only,
	// after ExtraArgs.
	ControllerArgs []string
	// LogLevel is passed as --log-level (default "debug"; benchmarks
	// should use "info" or "warn").
	LogLevel string
	// LogDir keeps the node logs (<LogDir>/<node-id>.log) after the test;
	// default: a directory removed with the test's temporary files.
	LogDir string
	// Env is added to the environment of every node.
	Env []string
	// StopTimeout bounds a graceful stop (SIGTERM) before the node is
	// killed and the test failed. Default 15s (stretched under CI).
	StopTimeout time.Duration
	// NoStart creates the nodes of the cluster without starting them.
	NoStart bool
	// TLS runs every node with --tls-ca, --tls-cert and --tls-key:
	// certificates of the test CA (CAPrefix), a server certificate for
	// each controller and a worker certificate for each worker. URL and
	// URLs are then https; NewHTTPClient trusts the test CA.
	TLS bool

	// Workers is how many worker agents (`kumoi agent --worker`) New
	// adds, named WorkerNamePrefix + 1, 2, … (sim-1, sim-2, …), each on
	// its own address after the controllers'. See AddWorker.
	Workers int
	// WorkerArgs are appended to every worker's arguments, after the
	// defaults (--hypervisor sim --cpus 8 --memory 16GiB), which a flag
	// given here overrides (the last value of a flag wins).
	WorkerArgs []string
}

// ImageDir is the workers' --image-dir (before WorkerArgs, which may
// override it): a directory of the test's, empty at first; put the boot
// files of the test's VMs there and name them in their specs.
func (c *Cluster) ImageDir() string { return filepath.Join(c.dir, "images") }

// Node ids are NodeIDPrefix + 1, 2, … .
const NodeIDPrefix = "c"

// Cluster is a set of kumoi controller processes, and of worker
// processes that join them. Controllers and workers are numbered
// separately: the methods that take an index i (Start, Kill, URL, …) are
// about controllers, the Worker… ones (StartWorker, KillWorker, …) about
// workers.
type Cluster struct {
	tb    testing.TB
	opts  Options
	bin   string
	block *addrBlock
	dir   string
	hc    *http.Client

	mu      sync.Mutex
	nodes   []*node // controllers
	workers []*node
	nextIP  int // next free address of the block
}

type node struct {
	idx     int
	id      string
	ip      string
	dataDir string
	logPath string
	expect  int // --bootstrap-expect; 0 for a node that joins later

	worker  bool
	args    []string // a worker's extra arguments
	obsPath string   // a worker's --observation-log

	history []ProcEvent // every start and exit of the process, oldest first

	cmd       *exec.Cmd
	done      chan struct{} // closed when the process has exited
	exitErr   error         // cmd.Wait's answer, valid after done
	expected  bool          // we killed or stopped it
	signalled string        // the last exit-causing signal we sent to this process, "" if none
	paused    bool
	starts    int
	crashes   []string // unexpected exits
}

func (n *node) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// New creates a cluster of opts.Controllers nodes and starts them (unless
// opts.NoStart). It does not wait for a leader: call WaitLeader. The nodes
// are killed when the test ends.
func New(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	if opts.Controllers == 0 {
		opts.Controllers = 3
	}
	if opts.Controllers < 1 || opts.Controllers > MaxNodes {
		tb.Fatalf("testcluster: Controllers = %d; it must be between 1 and %d", opts.Controllers, MaxNodes)
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 15 * time.Second
	}
	bin := Binary(tb, opts.Bin)
	block, err := reserveBlock(opts.BaseIP, Stretch(time.Minute))
	if err != nil {
		tb.Fatalf("testcluster: %v", err)
	}
	// Absolute: the nodes take paths under it as flags (--image-dir must
	// be absolute), and a Standalone's directory may be relative.
	dir, err := filepath.Abs(tb.TempDir())
	if err != nil {
		tb.Fatalf("testcluster: %v", err)
	}
	c := &Cluster{
		tb:    tb,
		opts:  opts,
		bin:   bin,
		block: block,
		dir:   dir,
		hc:    NewHTTPClient(8, 2*time.Second),
	}
	// Registered after TempDir, so it runs before the directory goes.
	tb.Cleanup(c.cleanup)
	if err := os.MkdirAll(c.ImageDir(), 0o755); err != nil {
		tb.Fatalf("testcluster: image dir: %v", err)
	}
	if opts.LogDir != "" {
		if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
			tb.Fatalf("testcluster: log dir: %v", err)
		}
	}
	if opts.Controllers+opts.Workers > MaxNodes {
		tb.Fatalf("testcluster: %d controllers and %d workers; at most %d nodes per cluster", opts.Controllers, opts.Workers, MaxNodes)
	}
	for i := 0; i < opts.Controllers; i++ {
		c.addNode(opts.Controllers)
	}
	for i := 0; i < opts.Workers; i++ {
		c.addWorker(WorkerNamePrefix+strconv.Itoa(i+1), nil)
	}
	if !opts.NoStart {
		for i := range c.nodes {
			c.Start(i)
		}
		for w := range c.workers {
			c.StartWorker(w)
		}
	}
	return c
}

func (c *Cluster) addNode(expect int) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := len(c.nodes)
	n := &node{idx: i, id: NodeIDPrefix + strconv.Itoa(i+1), expect: expect}
	c.place(n)
	c.nodes = append(c.nodes, n)
	return n
}

// place gives n the next address of the block, a data directory and a
// log file. c.mu is held.
func (c *Cluster) place(n *node) {
	if c.nextIP >= MaxNodes {
		c.tb.Fatalf("testcluster: at most %d nodes (controllers and workers) per cluster", MaxNodes)
	}
	n.ip = c.block.ip(c.nextIP)
	c.nextIP++
	var err error
	if n.dataDir, err = os.MkdirTemp(c.dir, n.id+"-data-"); err != nil {
		c.tb.Fatalf("testcluster: %v", err)
	}
	logDir := c.opts.LogDir
	if logDir == "" {
		logDir = c.dir
	}
	n.logPath = filepath.Join(logDir, n.id+".log")
	if n.worker {
		n.obsPath = filepath.Join(logDir, n.id+ObservationLogSuffix)
	}
}

// Add creates one more controller that joins the running cluster through
// gossip, without --bootstrap-expect (the leader adds it as a voter), and
// starts it. It returns the new node's index.
func (c *Cluster) Add() int {
	c.tb.Helper()
	n := c.addNode(0)
	c.Start(n.idx)
	return n.idx
}

// N is the number of nodes (running or not).
func (c *Cluster) N() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

func (c *Cluster) node(i int) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.nodes) {
		c.tb.Fatalf("testcluster: no node %d (the cluster has %d)", i, len(c.nodes))
	}
	return c.nodes[i]
}

// ID is node i's id (c1, c2, …).
func (c *Cluster) ID(i int) string { return c.node(i).id }

// Index returns the index of the node with id, or -1.
func (c *Cluster) Index(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.id == id {
			return n.idx
		}
	}
	return -1
}

// IP is node i's address.
func (c *Cluster) IP(i int) string { return c.node(i).ip }

// URL is node i's API base URL, e.g. http://127.0.0.12:7400 (https with
// Options.TLS).
func (c *Cluster) URL(i int) string {
	return c.scheme() + net.JoinHostPort(c.node(i).ip, strconv.Itoa(APIPort))
}

// URLs are the API base URLs of every node, running or not.
func (c *Cluster) URLs() []string {
	out := make([]string, c.N())
	for i := range out {
		out[i] = c.URL(i)
	}
	return out
}

// LiveURLs are the API base URLs of the running, unpaused nodes.
func (c *Cluster) LiveURLs() []string {
	var out []string
	for _, i := range c.Live() {
		out = append(out, c.URL(i))
	}
	return out
}

// GossipAddr is node i's gossip host:port.
func (c *Cluster) GossipAddr(i int) string {
	return net.JoinHostPort(c.node(i).ip, strconv.Itoa(GossipPort))
}

// DataDir is node i's data directory; it survives restarts.
func (c *Cluster) DataDir(i int) string { return c.node(i).dataDir }

// LogPath is node i's log file: its stdout and stderr (every start
// appends to it).
func (c *Cluster) LogPath(i int) string { return c.node(i).logPath }

// ExpectExit marks the exit of node i's running process as expected: a
// test that makes the node exit on its own (and checks how with Wait) does
// not want it reported as a crash.
func (c *Cluster) ExpectExit(i int) {
	n := c.node(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	n.expected = true
}

// HTTPClient is the client the harness polls with (2s timeout).
func (c *Cluster) HTTPClient() *http.Client { return c.hc }

// Pid is the process ID of node i's running process, or 0.
func (c *Cluster) Pid(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[i]; n.running() {
		return n.cmd.Process.Pid
	}
	return 0
}

// Alive reports whether node i's process is running (paused counts).
func (c *Cluster) Alive(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].running()
}

// Live lists the nodes whose process runs and is not paused.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, n := range c.nodes {
		if n.running() && !n.paused {
			out = append(out, n.idx)
		}
	}
	return out
}

// Args are the `kumoi agent` arguments node i is started with.
func (c *Cluster) Args(i int) []string {
	n := c.node(i)
	args := []string{"agent", "--controller",
		"--node-id", n.id,
		"--data-dir", n.dataDir,
		"--bind", n.ip,
		"--api-port", strconv.Itoa(APIPort),
		"--raft-port", strconv.Itoa(RaftPort),
		"--gossip-port", strconv.Itoa(GossipPort),
	}
	if n.expect > 0 {
		args = append(args, "--bootstrap-expect", strconv.Itoa(n.expect))
	}
	// Every other node, first node first: whoever is up lets it in, also
	// when node 0 itself is the one restarting.
	for j := 0; j < c.N(); j++ {
		if j != i {
			args = append(args, "--join", c.GossipAddr(j))
		}
	}
	if c.opts.LogLevel != "" {
		args = append(args, "--log-level", c.opts.LogLevel)
	}
	args = append(args, c.tlsArgs(n)...)
	args = append(args, c.opts.ExtraArgs...)
	return append(args, c.opts.ControllerArgs...)
}

// Start starts node i, which must not be running. Its stdout and stderr
// are appended to its log file (<LogDir>/<node-id>.log, see Options.LogDir).
func (c *Cluster) Start(i int) {
	c.tb.Helper()
	c.start(c.node(i), c.Args(i))
}

// StartExpectExit starts node i like Start, its exit marked as expected
// from the start: for a start that should be refused (the node exits on
// its own, and Wait says how), which must not be reported as a crash
// however soon it exits.
func (c *Cluster) StartExpectExit(i int) {
	c.tb.Helper()
	c.startOpts(c.node(i), c.Args(i), true)
}

// Bin is the kumoi binary the nodes run.
func (c *Cluster) Bin() string { return c.bin }

// start starts n with args.
func (c *Cluster) start(n *node, args []string) {
	c.tb.Helper()
	c.startOpts(n, args, false)
}

// startOpts starts n with args; expectExit marks its exit as expected
// before the process can exit.
func (c *Cluster) startOpts(n *node, args []string, expectExit bool) {
	c.tb.Helper()
	c.mu.Lock()
	running := n.running()
	c.mu.Unlock()
	if running {
		c.tb.Fatalf("testcluster: start %s: it is already running", n.id)
	}
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.tb.Fatalf("testcluster: open log: %v", err)
	}
	defer f.Close() // the child has its own copy
	fmt.Fprintf(f, "=== testcluster %s: start %s %s\n", time.Now().Format(time.RFC3339Nano), c.bin, strings.Join(args, " "))
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), nodeEnv()...), c.opts.Env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		c.tb.Fatalf("testcluster: start %s: %v", n.id, err)
	}
	done := make(chan struct{})
	c.mu.Lock()
	n.cmd, n.done, n.exitErr, n.expected, n.paused, n.signalled = cmd, done, nil, expectExit, false, ""
	n.starts++
	n.history = append(n.history, ProcEvent{Node: n.id, Kind: ProcStart, Time: time.Now(), Pid: cmd.Process.Pid})
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		exited := time.Now()
		c.mu.Lock()
		n.exitErr = err
		if !n.expected {
			msg := fmt.Sprintf("%s (pid %d) exited on its own: %v", n.id, cmd.Process.Pid, describeExit(cmd.ProcessState, err))
			n.crashes = append(n.crashes, msg)
		}
		n.history = append(n.history, ProcEvent{Node: n.id, Kind: ProcExit, Time: exited, Pid: cmd.Process.Pid,
			Expected: n.expected, Signal: n.signalled, How: describeExit(cmd.ProcessState, err)})
		c.mu.Unlock()
		if lf, err := os.OpenFile(n.logPath, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			fmt.Fprintf(lf, "=== testcluster %s: %s exited: %v\n", time.Now().Format(time.RFC3339Nano), n.id, describeExit(cmd.ProcessState, err))
			lf.Close()
		}
		close(done)
	}()
}

func describeExit(ps *os.ProcessState, err error) string {
	if ps == nil {
		return fmt.Sprint(err)
	}
	return ps.String() // "exit status 1", "signal: killed"
}

// signal sends sig to n and marks the exit that may follow as ours.
func (c *Cluster) signal(n *node, sig syscall.Signal, expectExit bool) (*node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !n.running() {
		return n, false
	}
	if expectExit {
		n.expected = true
		n.signalled = sig.String()
	}
	if err := n.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.tb.Errorf("testcluster: signal %s to %s: %v", sig, n.id, err)
	}
	return n, true
}

// Kill sends SIGKILL to node i and waits for it to exit. A node that is not
// running is left alone.
func (c *Cluster) Kill(i int) {
	c.tb.Helper()
	c.kill(c.node(i))
}

func (c *Cluster) kill(n *node) {
	c.tb.Helper()
	n, ok := c.signal(n, syscall.SIGKILL, true)
	if !ok {
		return
	}
	select {
	case <-n.done:
	case <-time.After(Stretch(10 * time.Second)):
		c.tb.Fatalf("testcluster: %s did not exit within %s of SIGKILL", n.id, Stretch(10*time.Second))
	}
}

// Terminate sends SIGTERM to node i (waking it first if paused) and
// returns at once; Wait waits for the exit. A node that is not running is
// left alone.
func (c *Cluster) Terminate(i int) {
	c.tb.Helper()
	c.terminate(c.node(i))
}

func (c *Cluster) terminate(n *node) {
	c.tb.Helper()
	c.mu.Lock()
	paused := n.running() && n.paused
	c.mu.Unlock()
	if paused {
		c.resume(n)
	}
	c.signal(n, syscall.SIGTERM, true)
}

// Wait waits up to timeout (stretched under CI) for node i to exit and
// returns how it exited: nil for status 0. It is safe to call from any
// goroutine.
func (c *Cluster) Wait(i int, timeout time.Duration) error {
	return c.wait(c.node(i), timeout)
}

func (c *Cluster) wait(n *node, timeout time.Duration) error {
	c.mu.Lock()
	started := n.cmd != nil
	c.mu.Unlock()
	if !started {
		return nil
	}
	limit := Stretch(timeout)
	select {
	case <-n.done:
	case <-time.After(limit):
		return fmt.Errorf("%s has not exited after %s", n.id, limit)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.exitErr != nil {
		return fmt.Errorf("%s exited with %s", n.id, describeExit(n.cmd.ProcessState, n.exitErr))
	}
	return nil
}

// Stop stops node i gracefully: SIGTERM, then wait up to
// Options.StopTimeout. A node that does not exit in time is killed, and
// that or a non-zero exit status fails the test. It returns how long the
// node took to exit.
func (c *Cluster) Stop(i int) time.Duration {
	c.tb.Helper()
	return c.stop(c.node(i))
}

func (c *Cluster) stop(n *node) time.Duration {
	c.tb.Helper()
	if !c.alive(n) {
		return 0
	}
	start := time.Now()
	c.terminate(n)
	if err := c.stopWait(n); err != nil {
		c.tb.Errorf("testcluster: graceful stop: %v", err)
	}
	return time.Since(start)
}

func (c *Cluster) alive(n *node) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.running()
}

// stopWait waits for a terminated node and kills it if it hangs. It
// reports only through its result, so any goroutine may call it.
func (c *Cluster) stopWait(n *node) error {
	err := c.wait(n, c.opts.StopTimeout)
	if err != nil && c.alive(n) {
		c.signal(n, syscall.SIGKILL, true)
		<-n.done
		return fmt.Errorf("%v of SIGTERM; killed it", err)
	}
	if err != nil {
		return fmt.Errorf("%v after SIGTERM, want a clean exit (status 0)", err)
	}
	return nil
}

// StopAll stops every running node gracefully, the workers first (so
// that they can still tell the controllers they leave), each group at the
// same time (SIGTERM to all, then wait for all), failing the test like
// Stop.
func (c *Cluster) StopAll() {
	c.tb.Helper()
	c.mu.Lock()
	groups := [][]*node{append([]*node(nil), c.workers...), append([]*node(nil), c.nodes...)}
	c.mu.Unlock()
	for _, group := range groups {
		var running []*node
		for _, n := range group {
			if c.alive(n) {
				c.terminate(n)
				running = append(running, n)
			}
		}
		errs := make([]error, len(running))
		var wg sync.WaitGroup
		for k, n := range running {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[k] = c.stopWait(n)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				c.tb.Errorf("testcluster: graceful stop: %v", err)
			}
		}
	}
}

// KillAll kills every running node, workers included.
func (c *Cluster) KillAll() {
	c.tb.Helper()
	for _, n := range c.allNodes() {
		c.kill(n)
	}
}

// StartAll starts every node that is not running: controllers, then
// workers.
func (c *Cluster) StartAll() {
	c.tb.Helper()
	for i := 0; i < c.N(); i++ {
		if !c.Alive(i) {
			c.Start(i)
		}
	}
	for w := 0; w < c.Workers(); w++ {
		if !c.WorkerAlive(w) {
			c.StartWorker(w)
		}
	}
}

// allNodes lists the controllers, then the workers.
func (c *Cluster) allNodes() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(append([]*node(nil), c.nodes...), c.workers...)
}

// Pause stops node i with SIGSTOP: it keeps its sockets but answers
// nothing, like a machine that hangs.
func (c *Cluster) Pause(i int) {
	c.tb.Helper()
	c.pause(c.node(i))
}

func (c *Cluster) pause(n *node) {
	c.tb.Helper()
	c.recordSignal(n, ProcPause)
	if _, ok := c.signal(n, syscall.SIGSTOP, false); !ok {
		c.tb.Fatalf("testcluster: pause: %s is not running", n.id)
	}
	c.mu.Lock()
	n.paused = true
	c.mu.Unlock()
}

// recordSignal adds a pause or resume to n's history, if it runs.
func (c *Cluster) recordSignal(n *node, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.running() {
		n.history = append(n.history, ProcEvent{Node: n.id, Kind: kind, Time: time.Now(), Pid: n.cmd.Process.Pid})
	}
}

// Resume continues a paused node with SIGCONT.
func (c *Cluster) Resume(i int) {
	c.tb.Helper()
	c.resume(c.node(i))
}

func (c *Cluster) resume(n *node) {
	c.tb.Helper()
	c.recordSignal(n, ProcResume)
	if _, ok := c.signal(n, syscall.SIGCONT, false); !ok {
		c.tb.Fatalf("testcluster: resume: %s is not running", n.id)
	}
	c.mu.Lock()
	n.paused = false
	c.mu.Unlock()
}

// Rejoin kills node i if it runs, empties its data directory and starts
// it again without --bootstrap-expect, so that it joins the running
// cluster as a new server (the leader adds it as a voter once gossip
// shows it alive), as an operator re-adds a controller that was removed
// with `kumoi cluster remove`. It keeps its node id and address, and
// later restarts keep joining that way.
func (c *Cluster) Rejoin(i int) {
	c.tb.Helper()
	c.Kill(i)
	c.Wipe(i)
	n := c.node(i)
	c.mu.Lock()
	n.expect = 0
	c.mu.Unlock()
	c.Start(i)
}

// Wipe empties node i's data directory, as if its disk were lost; the
// node must not be running. Its command line does not change: started
// again (Start), it runs with the same arguments on an empty data
// directory.
func (c *Cluster) Wipe(i int) {
	c.tb.Helper()
	n := c.node(i)
	if c.alive(n) {
		c.tb.Fatalf("testcluster: wipe %s: it is running", n.id)
	}
	ents, err := os.ReadDir(n.dataDir)
	if err != nil {
		c.tb.Fatalf("testcluster: wipe %s: %v", n.id, err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(n.dataDir, e.Name())); err != nil {
			c.tb.Fatalf("testcluster: wipe %s: %v", n.id, err)
		}
	}
}

// Status asks node i for GET /v1/status.
func (c *Cluster) Status(i int) (resource.Status, error) {
	var st resource.Status
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := GetJSON(ctx, c.hc, c.URL(i)+"/v1/status", &st)
	return st, err
}

// Statuses asks every live node for its status; unreachable nodes are
// missing from the map.
func (c *Cluster) Statuses() (map[int]resource.Status, map[int]error) {
	live := c.Live()
	type answer struct {
		i   int
		st  resource.Status
		err error
	}
	ch := make(chan answer, len(live))
	for _, i := range live {
		go func() {
			st, err := c.Status(i)
			ch <- answer{i, st, err}
		}()
	}
	sts, errs := map[int]resource.Status{}, map[int]error{}
	for range live {
		a := <-ch
		if a.err != nil {
			errs[a.i] = a.err
		} else {
			sts[a.i] = a.st
		}
	}
	return sts, errs
}

// Leader returns the live node that says it is the leader (the one with
// the highest term if several do), or -1 and "".
func (c *Cluster) Leader() (int, string) {
	sts, _ := c.Statuses()
	best, term := -1, uint64(0)
	for i, st := range sts {
		if st.RaftState == "Leader" && (best < 0 || st.Term > term) {
			best, term = i, st.Term
		}
	}
	if best < 0 {
		return -1, ""
	}
	return best, c.ID(best)
}

// agreedLeader checks that every live node answers and names the same
// leader, which is live and says it leads.
func (c *Cluster) agreedLeader() (int, string, error) {
	live := c.Live()
	if len(live) == 0 {
		return -1, "", errors.New("no node is running")
	}
	sts, errs := c.Statuses()
	if len(errs) > 0 {
		var msgs []string
		for i, err := range errs {
			msgs = append(msgs, fmt.Sprintf("%s: %v", c.ID(i), err))
		}
		sort.Strings(msgs)
		return -1, "", fmt.Errorf("unreachable: %s", strings.Join(msgs, "; "))
	}
	lid := ""
	var views []string
	agree := true
	for _, i := range live {
		st := sts[i]
		views = append(views, fmt.Sprintf("%s: %s leader=%q term=%d", c.ID(i), st.RaftState, st.LeaderID, st.Term))
		if st.LeaderID == "" || (lid != "" && st.LeaderID != lid) {
			agree = false
		}
		if lid == "" {
			lid = st.LeaderID
		}
	}
	if !agree {
		return -1, "", fmt.Errorf("no agreed leader (%s)", strings.Join(views, "; "))
	}
	li := c.Index(lid)
	if li < 0 {
		return -1, "", fmt.Errorf("the nodes name leader %q, which is not one of ours", lid)
	}
	st, ok := sts[li]
	if !ok || st.RaftState != "Leader" {
		return -1, "", fmt.Errorf("the nodes name leader %s, which is not live or does not lead (%s)", lid, strings.Join(views, "; "))
	}
	// With ACLs on, the leader bootstraps them with ManagementToken
	// (--acl-initial-management) once it leads: until every node has
	// applied that, the harness's token is refused (401).
	for _, i := range live {
		if a := sts[i].ACL; a.Enabled && !a.Bootstrapped {
			return -1, "", fmt.Errorf("leader %s, but ACLs are not bootstrapped yet on %s", lid, c.ID(i))
		}
	}
	return li, lid, nil
}

// DefaultTimeout is the wait of WaitLeader and WaitConverged when they
// are given 0.
const DefaultTimeout = 30 * time.Second

// WaitLeader polls the live nodes until they all name the same leader,
// that node says it leads, and (ACLs on) every node has applied the ACL
// bootstrap, so that the harness's token works everywhere. It fails the test after timeout (0 =
// DefaultTimeout; stretched under CI), reporting each node's view and any
// node that exited.
func (c *Cluster) WaitLeader(timeout time.Duration) (int, string) {
	c.tb.Helper()
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	var (
		idx int
		id  string
	)
	err := Poll(context.Background(), timeout, func() (bool, error) {
		var err error
		idx, id, err = c.agreedLeader()
		if err == nil {
			return true, nil
		}
		if cr := c.crashReport(); cr != "" {
			return false, fmt.Errorf("%v; %s", err, cr)
		}
		return false, err
	})
	if err != nil {
		c.tb.Fatalf("testcluster: waiting for a leader: %v", err)
	}
	return idx, id
}

// WaitConverged polls until every live node reports the same commit,
// applied and last log index (so every entry is applied everywhere; do
// not write meanwhile), and returns that applied index. timeout 0 means
// DefaultTimeout.
func (c *Cluster) WaitConverged(timeout time.Duration) uint64 {
	c.tb.Helper()
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	var applied uint64
	err := Poll(context.Background(), timeout, func() (bool, error) {
		live := c.Live()
		sts, errs := c.Statuses()
		if len(errs) > 0 || len(sts) != len(live) {
			return false, fmt.Errorf("not every live node answers: %v", errs)
		}
		var first *resource.Status
		var views []string
		same := true
		for _, i := range live {
			st := sts[i]
			views = append(views, fmt.Sprintf("%s: commit=%d applied=%d last=%d", c.ID(i), st.CommitIndex, st.AppliedIndex, st.LastLogIndex))
			if first == nil {
				first = &st
				continue
			}
			if st.CommitIndex != first.CommitIndex || st.AppliedIndex != first.AppliedIndex || st.LastLogIndex != first.LastLogIndex {
				same = false
			}
		}
		if !same || first.CommitIndex != first.LastLogIndex {
			return false, fmt.Errorf("indexes differ: %s", strings.Join(views, "; "))
		}
		applied = first.AppliedIndex
		return true, nil
	})
	if err != nil {
		c.tb.Fatalf("testcluster: waiting for the nodes to converge: %v", err)
	}
	return applied
}

// crashReport describes nodes that exited without being told to.
func (c *Cluster) crashReport() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var msgs []string
	for _, n := range c.nodes {
		msgs = append(msgs, n.crashes...)
	}
	for _, n := range c.workers {
		msgs = append(msgs, n.crashes...)
	}
	return strings.Join(msgs, "; ")
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	ring := make([]string, 0, n)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if len(ring) == n {
			ring = ring[1:]
		}
		ring = append(ring, sc.Text())
	}
	return strings.Join(ring, "\n")
}

// LogTailLines is how many lines of each node's log a failed test prints.
const LogTailLines = 40

func (c *Cluster) cleanup() {
	nodes := c.allNodes()
	for _, n := range nodes {
		c.mu.Lock()
		running := n.running()
		if running {
			n.expected = true
			n.signalled = syscall.SIGKILL.String()
			_ = n.cmd.Process.Signal(syscall.SIGKILL)
		}
		c.mu.Unlock()
		if running {
			<-n.done
		}
	}
	if cr := c.crashReport(); cr != "" {
		c.tb.Errorf("testcluster: a node exited without being told to: %s", cr)
	}
	if c.tb.Failed() {
		for _, n := range nodes {
			if n.starts == 0 {
				continue
			}
			c.tb.Logf("--- last %d lines of %s (%s) ---\n%s", LogTailLines, n.id, n.logPath, tail(n.logPath, LogTailLines))
		}
	}
	c.block.release()
	c.hc.CloseIdleConnections()
}
