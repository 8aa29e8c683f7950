package cli

import (
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/sim"
)

// newDriver builds the worker's hypervisor driver from the flags.
func newDriver(c *cli.Context, nodeID string, memMiB int64) (hypervisor.Driver, error) {
	obs, err := observationLog(c)
	if err != nil {
		return nil, err
	}
	switch c.String("hypervisor") {
	case "sim":
		// Simulated hosts of other worker processes on this machine
		// deliver their live migrations through a directory of this
		// host's own, next to its volumes (sim.Options.MigrationDir).
		return sim.New(sim.Options{Host: nodeID, CPUs: c.Int("cpus"), MemoryMiB: memMiB, ObservationLog: obs, StorageDir: poolDir(c),
			MigrationDir:      filepath.Join(filepath.Dir(poolDir(c)), "sim-incoming", nodeID),
			MigrationDowntime: c.Duration("sim-migration-downtime"), MigrationLatency: c.Duration("sim-migration-latency")}), nil
	case "libvirt":
		return newLibvirtDriver(c, nodeID, memMiB, obs)
	}
	return nil, usagef("--hypervisor %q: use sim or libvirt", c.String("hypervisor"))
}

// poolDir is the directory of the storage pool "kumoi": DIR/volumes under
// --storage-dir (whose DIR/images is the worker's image cache).
func poolDir(c *cli.Context) string {
	if d := c.String("storage-dir"); d != "" {
		return filepath.Join(d, "volumes")
	}
	return hypervisor.DefaultStorageDir
}

// observationLog opens --observation-log for appending (nil when unset).
// The file stays open for the life of the process; each observation is
// one write(2), so a process killed with -9 loses none that were written.
func observationLog(c *cli.Context) (io.Writer, error) {
	path := c.String("observation-log")
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, usagef("--observation-log: %v", err)
	}
	return f, nil
}
