package fenceguard

import (
	"fmt"
	"path/filepath"
	"time"
)

// Files of a guard in its directory (the worker's data directory).
const (
	SocketFile = "fence-guard.sock" // renewals (unix socket)
	PIDFile    = "fence-guard.pid"  // the running guard's pid
	LockFile   = "fence-guard.lock" // held (flock) by the running guard
	LogFile    = "fence-guard.log"  // a spawned guard's output
	RecordFile = "fence-guard.json" // the last fence (FenceRecord)
	// ControllersFile keeps the controllers' API addresses the worker last
	// gave, so that a guard started again (with no worker yet) can read
	// the host from them.
	ControllersFile = "fence-guard-controllers.json"
)

// SocketPath is the guard's socket in dir.
func SocketPath(dir string) string { return filepath.Join(dir, SocketFile) }

// maxSocketPath is the longest path a unix socket may have on Linux.
const maxSocketPath = 107

// CheckDir says why dir cannot hold a guard's socket ("" if it can).
func CheckDir(dir string) error {
	if p := SocketPath(dir); len(p) > maxSocketPath {
		return fmt.Errorf("the fence guard's socket %s would be %d bytes long; a unix socket path may have %d: use a shorter --data-dir", p, len(p), maxSocketPath)
	}
	return nil
}

// Renewal is what a worker sends the guard, one JSON line per message.
type Renewal struct {
	Seq uint64 `json:"seq"`
	// Host is the worker's host name (the guard refuses another host's).
	Host string `json:"host"`
	// Cluster is the worker's cluster identity ("" until it knows it):
	// the guard stops only this cluster's domains.
	Cluster string `json:"cluster,omitempty"`
	// Controllers are the API addresses (http://host:port) the worker
	// reaches the controllers at: the guard reads from them itself when
	// renewals stop.
	Controllers []string `json:"controllers,omitempty"`
	// Proof is the start, on the boot-time clock (Now), of the worker's
	// latest linearizable read that showed the host ready or draining;
	// 0: none (the worker is alive but cannot prove the host ready).
	Proof time.Duration `json:"proof_ns,omitempty"`
}

// Ack answers a Renewal.
type Ack struct {
	Seq uint64 `json:"seq"`
	// Proof is the freshest proof the guard holds after the renewal.
	Proof time.Duration `json:"proof_ns"`
	// FenceAfter is the guard's own --fence-after.
	FenceAfter time.Duration `json:"fence_after_ns"`
	// Fence is the guard's latest fence, if any (also after a restart of
	// the worker: it explains domains the worker finds shut off).
	Fence *FenceRecord `json:"fence,omitempty"`
	// Error: the renewal was refused (e.g. another host's).
	Error string `json:"error,omitempty"`
}

// FenceRecord is one fence by the guard.
type FenceRecord struct {
	Seq uint64 `json:"seq"`
	// At is the wall-clock time, for people (reasons, logs) only.
	At time.Time `json:"at"`
	// Why the guard fenced.
	Why string `json:"why"`
	// Domains are the ones it destroyed (or found already off), by name.
	Domains []string `json:"domains"`
}
