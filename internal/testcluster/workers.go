package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// Workers are `kumoi agent --worker` processes: one per simulated
// hypervisor host, each on its own address of the cluster's block (after
// the controllers'), gossiping on GossipPort and joining every
// controller. They have no API port. A worker's node id is its host's
// name. With the sim driver a worker's domains live in its process, so
// killing the worker kills its "VMs" too.

// WorkerNamePrefix names the workers of Options.Workers: sim-1, sim-2, … .
const WorkerNamePrefix = "sim-"

// DefaultWorkerArgs come before Options.WorkerArgs and AddWorker's args in
// every worker's arguments; a later value of the same flag wins.
var DefaultWorkerArgs = []string{"--hypervisor", "sim", "--cpus", "8", "--memory", "16GiB"}

// addWorker creates worker name (not started).
func (c *Cluster) addWorker(name string, args []string) *node {
	if err := resource.ValidateName(name); err != nil {
		c.tb.Fatalf("testcluster: worker name %q: %v", name, err)
	}
	if c.Index(name) >= 0 || c.WorkerIndex(name) >= 0 {
		c.tb.Fatalf("testcluster: a node named %q exists already", name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := &node{idx: len(c.workers), id: name, worker: true, args: append([]string(nil), args...)}
	c.place(n)
	c.workers = append(c.workers, n)
	return n
}

// AddWorker creates a worker named name (its host's name) with args
// appended to its arguments (e.g. "--hypervisor", "libvirt",
// "--libvirt-uri", "test:///…"), starts it and returns its worker index.
// It does not wait for the host to be ready: see WaitHostState.
func (c *Cluster) AddWorker(name string, args ...string) int {
	c.tb.Helper()
	n := c.addWorker(name, args)
	c.StartWorker(n.idx)
	return n.idx
}

// Workers is the number of workers (running or not).
func (c *Cluster) Workers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.workers)
}

func (c *Cluster) worker(w int) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w < 0 || w >= len(c.workers) {
		c.tb.Fatalf("testcluster: no worker %d (the cluster has %d)", w, len(c.workers))
	}
	return c.workers[w]
}

// WorkerName is worker w's node id, which is its host's name.
func (c *Cluster) WorkerName(w int) string { return c.worker(w).id }

// WorkerIndex returns the index of the worker named name, or -1.
func (c *Cluster) WorkerIndex(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.workers {
		if n.id == name {
			return n.idx
		}
	}
	return -1
}

// WorkerIP is worker w's address.
func (c *Cluster) WorkerIP(w int) string { return c.worker(w).ip }

// WorkerLogPath is worker w's log file (every start appends to it).
func (c *Cluster) WorkerLogPath(w int) string { return c.worker(w).logPath }

// WorkerAlive reports whether worker w's process is running.
func (c *Cluster) WorkerAlive(w int) bool { return c.alive(c.worker(w)) }

// WorkerArgs are the `kumoi agent` arguments worker w is started with:
// --worker, its name, address and gossip port, its observation log
// (WorkerObservationLog), a --join for every controller,
// DefaultWorkerArgs, --image-dir ImageDir, --storage-dir StorageDir(w), the log level, Options.ExtraArgs, Options.WorkerArgs
// and the worker's own args.
func (c *Cluster) WorkerArgs(w int) []string {
	n := c.worker(w)
	args := []string{"agent", "--worker",
		"--node-id", n.id,
		"--bind", n.ip,
		"--gossip-port", strconv.Itoa(GossipPort),
		"--observation-log", n.obsPath,
	}
	for j := 0; j < c.N(); j++ {
		args = append(args, "--join", c.GossipAddr(j))
	}
	args = append(args, DefaultWorkerArgs...)
	args = append(args, c.tlsArgs(n)...)
	args = append(args, "--image-dir", c.ImageDir(), "--storage-dir", c.StorageDir(w))
	if c.opts.LogLevel != "" {
		args = append(args, "--log-level", c.opts.LogLevel)
	}
	args = append(args, c.opts.ExtraArgs...)
	args = append(args, c.opts.WorkerArgs...)
	return append(args, n.args...)
}

// StorageDir is worker w's --storage-dir: its volumes and image cache.
func (c *Cluster) StorageDir(w int) string {
	return filepath.Join(c.dir, "storage", c.worker(w).id)
}

// StartWorker starts worker w, which must not be running. Its stdout and
// stderr are appended to WorkerLogPath(w).
func (c *Cluster) StartWorker(w int) {
	c.tb.Helper()
	c.start(c.worker(w), c.WorkerArgs(w))
}

// KillWorker sends SIGKILL to worker w and waits for it to exit: a crash
// of the host (with the sim driver, its domains die with it). A worker
// that is not running is left alone.
func (c *Cluster) KillWorker(w int) {
	c.tb.Helper()
	c.kill(c.worker(w))
}

// StopWorker stops worker w gracefully (it leaves the gossip pool, so its
// host becomes "left"), like Stop.
func (c *Cluster) StopWorker(w int) time.Duration {
	c.tb.Helper()
	return c.stop(c.worker(w))
}

// ErrNoHost is Host's error for a host object that does not exist.
var ErrNoHost = errors.New("no such host")

// Host reads host name with a linearizable GET /v1/hosts/NAME through the
// live controllers in turn, and decodes its status. A 404 is ErrNoHost.
func (c *Cluster) Host(name string) (*resource.Object, *resource.HostStatus, error) {
	var last error = errors.New("no controller is running")
	for _, u := range c.LiveURLs() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := Do(ctx, c.hc, http.MethodGet, u+"/v1/hosts/"+url.PathEscape(name), nil)
		cancel()
		switch {
		case err != nil:
			last = err
			continue
		case r.Status == http.StatusNotFound:
			return nil, nil, fmt.Errorf("host %s: %w", name, ErrNoHost)
		case r.Status != http.StatusOK:
			last = fmt.Errorf("GET host %s from %s: %s", name, u, r)
			continue
		}
		var o resource.Object
		if err := r.Decode(&o); err != nil {
			return nil, nil, err
		}
		hs, err := resource.DecodeStatus[resource.HostStatus](&o)
		if err != nil {
			return nil, nil, fmt.Errorf("host %s: %w", name, err)
		}
		return &o, hs, nil
	}
	return nil, nil, last
}

// WaitHostState polls until host name's status.state is state, and fails
// the test after timeout (0 = DefaultTimeout; stretched under CI) with the
// last state seen. It returns the host's status.
func (c *Cluster) WaitHostState(name, state string, timeout time.Duration) *resource.HostStatus {
	c.tb.Helper()
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	var hs *resource.HostStatus
	WaitFor(c.tb, timeout, fmt.Sprintf("host %s to be %s", name, state), func() (bool, error) {
		var err error
		_, hs, err = c.Host(name)
		if err != nil {
			if cr := c.crashReport(); cr != "" {
				err = fmt.Errorf("%v; %s", err, cr)
			}
			return false, err
		}
		if hs.State != state {
			return false, fmt.Errorf("host %s is %s (%s)", name, hs.State, hs.Reason)
		}
		return true, nil
	})
	return hs
}

// PauseWorker stops worker w with SIGSTOP (it keeps its sockets but does
// nothing: a hung agent); ResumeWorker continues it.
func (c *Cluster) PauseWorker(w int) {
	c.tb.Helper()
	c.pause(c.worker(w))
}

// ResumeWorker continues a worker paused by PauseWorker with SIGCONT.
func (c *Cluster) ResumeWorker(w int) {
	c.tb.Helper()
	c.resume(c.worker(w))
}

// WorkerPid is the process id of worker w's current (or last) process, 0
// if it never started.
func (c *Cluster) WorkerPid(w int) int {
	n := c.worker(w)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}
