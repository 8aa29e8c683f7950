package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor/sim"
)

// DevConfig configures `kumoi agent -dev`: a whole cluster in one process.
type DevConfig struct {
	Controllers int    // default 1
	BindIP      string // default 127.0.0.1
	APIPort     int    // first controller's API port (default 7400); others use +10, +20, …
	// DataDir keeps state across runs; empty means a temporary directory
	// removed on shutdown.
	DataDir string
	// Hosts is the number of simulated hypervisor hosts (workers with the
	// sim driver) started alongside (default 0 here; the CLI defaults to 3).
	Hosts int
	// HostCPUs and HostMemoryMiB size each simulated host (8, 16384).
	HostCPUs      int
	HostMemoryMiB int64
	// MigrationDowntime and MigrationLatency tune the simulated hosts'
	// live migrations (sim.Options; they migrate to one another in this
	// process); MigrationTimeout bounds one (worker.Config).
	MigrationDowntime time.Duration
	MigrationLatency  time.Duration
	MigrationTimeout  time.Duration
	Logger            hclog.Logger
}

// DevCluster is a running dev cluster.
type DevCluster struct {
	Agents  []*Agent
	Workers []*worker.Worker
	Drivers []*sim.Driver
	// workerCfgs are the workers' configurations (RestartWorker).
	workerCfgs []worker.Config
	dataDir    string
	tempDir    bool

	failOnce sync.Once
	failMu   sync.Mutex
	failed   chan struct{}
	failErr  error
}

// Failed is closed when any controller of the dev cluster is out of
// service (Agent.Failed); Err says which and why.
func (d *DevCluster) Failed() <-chan struct{} {
	d.failOnce.Do(func() {
		d.failed = make(chan struct{})
		for _, a := range d.Agents {
			go func() {
				<-a.Failed()
				d.failMu.Lock()
				defer d.failMu.Unlock()
				if d.failErr == nil {
					d.failErr = a.Err()
					close(d.failed)
				}
			}()
		}
	})
	return d.failed
}

// Err is why the dev cluster is out of service, once Failed is closed.
func (d *DevCluster) Err() error {
	d.failMu.Lock()
	defer d.failMu.Unlock()
	return d.failErr
}

// StartDev starts cfg.Controllers controllers on consecutive port blocks and
// waits until they have elected a leader.
func StartDev(ctx context.Context, cfg DevConfig) (*DevCluster, error) {
	if cfg.Controllers == 0 {
		cfg.Controllers = 1
	}
	if cfg.Controllers != 1 && cfg.Controllers != 3 && cfg.Controllers != 5 {
		return nil, fmt.Errorf("--dev-controllers %d: use 1, 3 or 5", cfg.Controllers)
	}
	if cfg.BindIP == "" {
		cfg.BindIP = "127.0.0.1"
	}
	if cfg.APIPort == 0 {
		cfg.APIPort = controller.DefaultAPIPort
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	d := &DevCluster{dataDir: cfg.DataDir}
	if d.dataDir == "" {
		dir, err := os.MkdirTemp("", "kumoi-dev-")
		if err != nil {
			return nil, err
		}
		d.dataDir, d.tempDir = dir, true
	}
	firstGossip := net.JoinHostPort(cfg.BindIP, strconv.Itoa(cfg.APIPort+2))
	for i := 0; i < cfg.Controllers; i++ {
		id := "dev" + strconv.Itoa(i+1)
		base := cfg.APIPort + 10*i
		c := controller.Config{
			NodeID:          id,
			DataDir:         filepath.Join(d.dataDir, id),
			BindIP:          cfg.BindIP,
			APIPort:         base,
			RaftPort:        base + 1,
			GossipPort:      base + 2,
			BootstrapExpect: cfg.Controllers,
			Logger:          cfg.Logger.Named(id),
		}
		if i > 0 {
			c.Join = []string{firstGossip}
		}
		a, err := Start(c)
		if err != nil {
			d.Shutdown(context.Background())
			return nil, fmt.Errorf("start dev controller %s: %w", id, err)
		}
		d.Agents = append(d.Agents, a)
	}
	for _, a := range d.Agents {
		if err := a.Controller().WaitForLeader(ctx); err != nil {
			d.Shutdown(context.Background())
			return nil, fmt.Errorf("dev cluster elected no leader: %w", err)
		}
	}
	if cfg.HostCPUs == 0 {
		cfg.HostCPUs = 8
	}
	if cfg.HostMemoryMiB == 0 {
		cfg.HostMemoryMiB = 16384
	}
	// The simulated hosts boot nothing, but check boot paths as real ones
	// do: in the dev cluster's own image directory.
	imageDir := filepath.Join(d.dataDir, "images")
	if err := os.MkdirAll(imageDir, 0o755); err != nil {
		d.Shutdown(context.Background())
		return nil, fmt.Errorf("dev image directory: %w", err)
	}
	for i := 0; i < cfg.Hosts; i++ {
		name := "sim-" + strconv.Itoa(i+1)
		// Each simulated host keeps its image cache (and its pool's
		// name space) in a storage directory of its own.
		storageDir := filepath.Join(d.dataDir, "storage", name)
		drv := sim.New(sim.Options{Host: name, CPUs: cfg.HostCPUs, MemoryMiB: cfg.HostMemoryMiB, BootLatency: 100 * time.Millisecond,
			StorageDir:        filepath.Join(storageDir, "volumes"),
			MigrationDowntime: cfg.MigrationDowntime, MigrationLatency: cfg.MigrationLatency})
		wcfg := worker.Config{
			NodeID: name, BindIP: cfg.BindIP, GossipPort: cfg.APIPort + 100 + i,
			Join: []string{firstGossip}, Driver: drv, DriverName: "sim",
			ImageDir: imageDir, StorageDir: storageDir, Logger: cfg.Logger.Named(name),
			MigrationTimeout: cfg.MigrationTimeout,
		}
		w, err := worker.Start(wcfg)
		if err != nil {
			d.Shutdown(context.Background())
			return nil, fmt.Errorf("start simulated host %s: %w", name, err)
		}
		d.Workers = append(d.Workers, w)
		d.Drivers = append(d.Drivers, drv)
		d.workerCfgs = append(d.workerCfgs, wcfg)
	}
	return d, nil
}

// RestartWorker starts simulated host i's worker again, on the same
// driver, after it was stopped (Kill or Shutdown): tests.
func (d *DevCluster) RestartWorker(i int) error {
	w, err := worker.Start(d.workerCfgs[i])
	if err != nil {
		return err
	}
	d.Workers[i] = w
	return nil
}

// DataDir is where the dev cluster keeps its state.
func (d *DevCluster) DataDir() string { return d.dataDir }

// Temporary reports whether the data dir is removed on shutdown.
func (d *DevCluster) Temporary() bool { return d.tempDir }

// Addrs lists the controllers' API URLs.
func (d *DevCluster) Addrs() []string {
	out := make([]string, len(d.Agents))
	for i, a := range d.Agents {
		out[i] = "http://" + a.APIAddr()
	}
	return out
}

// Shutdown stops every controller (no leadership hand-offs: they all go)
// and removes a temporary data dir.
func (d *DevCluster) Shutdown(ctx context.Context) error {
	var errs []error
	for _, w := range d.Workers {
		errs = append(errs, w.Shutdown(ctx))
	}
	for _, drv := range d.Drivers {
		errs = append(errs, drv.Close())
	}
	for _, a := range d.Agents {
		a.Controller().DisableHandOff()
	}
	for _, a := range d.Agents {
		errs = append(errs, a.Shutdown(ctx))
	}
	if d.tempDir {
		errs = append(errs, os.RemoveAll(d.dataDir))
	}
	return errors.Join(errs...)
}
