package controller

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/logring"
	"github.com/kumoi/kumoi/internal/tlsutil"
	"github.com/kumoi/kumoi/resource"
)

// Defaults of a controller.
const (
	DefaultAPIPort  = 7400
	DefaultRaftPort = 7401
	// DefaultGossipPort, like the gossip timing defaults, is the
	// membership package's: controllers and workers share it.
	DefaultGossipPort = membership.DefaultGossipPort
	// DefaultHostDownGrace is how long a host stays down before its VMs
	// are evacuated (it must exceed the workers' --fence-after).
	DefaultHostDownGrace = resource.DefaultHostDownGrace
	// DefaultFenceTimeout bounds one run of --fence-command.
	DefaultFenceTimeout = 60 * time.Second

	// The Raft timing of kumoi agent and of a Config that leaves it
	// unset: a follower notices a dead leader within 1–3 heartbeat
	// timeouts (docs/benchmarks.md, Failover).
	DefaultHeartbeatTimeout   = 250 * time.Millisecond
	DefaultElectionTimeout    = 250 * time.Millisecond
	DefaultLeaderLeaseTimeout = 200 * time.Millisecond
)

// Config configures a controller. Zero values take the defaults below.
type Config struct {
	NodeID  string
	DataDir string // required unless InMemory
	// BindIP is the address every listener binds to and advertises.
	BindIP     string
	APIPort    int
	RaftPort   int
	GossipPort int
	// BootstrapExpect: bootstrap the cluster once this many controllers
	// (including this one) are seen in the gossip pool: 3 or 5, or 1 for
	// an explicitly single-node cluster. 0 = never bootstrap (join an
	// existing cluster: the leader adds this node as a voter). A node
	// that already belongs to a cluster never bootstraps another.
	BootstrapExpect int
	// Join lists gossip addresses (host:port) of other agents.
	Join []string
	// TLS, when its files are given (all three or none), makes the API
	// serve HTTPS only, runs Raft over mutual TLS (both ends present a
	// server certificate of the CA) and makes forwarding and the
	// controller's own API calls use https (docs/tls.md).
	TLS tlsutil.Files

	// Raft timing, tuned for a LAN by default (docs/benchmarks.md,
	// Failover).
	HeartbeatTimeout   time.Duration // default DefaultHeartbeatTimeout
	ElectionTimeout    time.Duration // default DefaultElectionTimeout
	LeaderLeaseTimeout time.Duration // default DefaultLeaderLeaseTimeout
	CommitTimeout      time.Duration // default 20ms
	// ApplyTimeout bounds how long a write waits to be enqueued.
	ApplyTimeout time.Duration // default 10s
	// ReconcileInterval is how often the leader checks raft membership
	// against the gossip pool (it also reacts to gossip events at once).
	ReconcileInterval time.Duration // default 5s
	// HostDownGrace is how long a host stays down before its VMs are
	// evacuated (ha=restart VMs placed elsewhere). It must exceed the
	// workers' --fence-after plus a margin: see docs/ha.md.
	HostDownGrace time.Duration // default DefaultHostDownGrace
	// FenceCommand, if set, is run by the leader (/bin/sh -c, with the
	// host's name as $1 and its labels in the environment) for a host
	// that has been down or left for the grace; the host's VMs are
	// evacuated only once it has succeeded for that down period
	// (fence.go, docs/ha.md "External fencing").
	FenceCommand string
	// FenceTimeout bounds one run of the fence command (default 60s).
	FenceTimeout time.Duration
	// PlacementStrategy is the cluster's default placement strategy
	// (binpack or spread; empty: spread, most free memory first), which
	// a project's spec.strategy and a VM's override (docs/scheduling.md).
	PlacementStrategy string
	// FenceRetryMin and FenceRetryMax bound the backoff between failed
	// runs (default 5s doubling up to 60s).
	FenceRetryMin, FenceRetryMax time.Duration
	SnapshotThreshold            uint64        // default 8192
	SnapshotInterval             time.Duration // default 60s
	TrailingLogs                 uint64        // default 10240
	MaxAppendEntries             int           // default 512

	// Gossip timing (memberlist LAN profile, tightened for loopback).
	GossipProbeInterval time.Duration // default membership.DefaultProbeInterval
	GossipProbeTimeout  time.Duration // default membership.DefaultProbeTimeout
	GossipSuspicionMult int           // default membership.DefaultSuspicionMult
	// GossipSecurity: the gossip keyring (--encrypt) and TLS gossip
	// streams; with TLS, the leader also checks a member's certificate
	// before it makes it a voter or a host (gossip.go, docs/gossip.md).
	GossipSecurity membership.Security

	// InMemory keeps the raft log, stable store and snapshots in memory
	// (tests only). Transport, if set, replaces the TCP transport.
	InMemory  bool
	Transport raft.Transport
	// DisableGossip runs without memberlist; with BootstrapServers the
	// cluster is bootstrapped from that fixed list (tests only).
	DisableGossip    bool
	BootstrapServers []raft.Server
	// NoSync turns fsync off on the raft log (benchmarks comparing
	// durability costs only; never in production).
	NoSync bool
	// RaftLogStore is where the Raft log and stable store are kept:
	// LogStoreWAL (raft-wal: one fsync per append) or LogStoreBoltDB
	// (BoltDB's two). "": the store the data directory already has, wal
	// for a new one. A data directory that holds the other one than the
	// store named is converted at start (logstore.go; docs/operations.md,
	// "The Raft log store").
	RaftLogStore string
	// RaftWALSegmentSize is the size in bytes of the wal store's segment
	// files (preallocated; a full one is sealed and the next created); 0:
	// raft-wal's default, 64 MiB. Small ones make the chaos harness's runs
	// rotate often.
	RaftWALSegmentSize int
	// UnsafeStaleReads serves every read from local state, even without
	// ?stale: a deliberate linearizability bug that exists only for the
	// chaos harness's selftest to catch (the hidden agent flag
	// --debug-unsafe-stale-reads, which only a kumoi built with the
	// kumoi_testhooks tag has: make jepsen-selftest). Never in production.
	UnsafeStaleReads bool

	Logger hclog.Logger
	// MaxProtocol limits the log protocol this controller speaks and
	// advertises (default fsm.ProtocolVersion): it applies only that
	// protocol's commands, as a build of it would. For upgrade tests and
	// to hold back new features until every node is upgraded.
	MaxProtocol int

	// OnApply, if set, observes every command the state machine applies
	// (the agent wires the API's metrics to it). It is set before Raft
	// starts, so it sees the entries replayed at start-up too.
	OnApply func(t fsm.MessageType, d time.Duration, err error)
	// Registry is where the agent registers the API's and Raft's metrics
	// (nil: the process-wide registry); the controller itself does not
	// use it.
	Registry *prometheus.Registry
	// Version is this build's version, shown by GET /v1/status and sent
	// as X-Kumoi-Version (default Version).
	Version string

	// ACL enforces ACL tokens on the API (docs/security.md); the zero
	// value (off) is for in-process tests, `kumoi agent --controller`
	// turns it on by default.
	ACL bool
	// ACLInitialManagement, if set (with ACL), is the secret of the
	// management token the leader bootstraps ACLs with when they are not
	// bootstrapped yet (as Consul's initial_management).
	ACLInitialManagement string
	// Logs, if set, keeps the last lines the agent logged, and
	// AgentConfig is the agent's configuration with its secrets
	// redacted: GET /v1/agent/logs and /v1/agent/self serve them (kumoi
	// operator debug).
	Logs        *logring.Ring
	AgentConfig map[string]any
	// Token is the ACL token this controller sends on its own calls to
	// other controllers' APIs (reading the Raft configuration before a
	// new node joins: it needs cluster:read). Empty: the
	// ACLInitialManagement secret, if set (Consul's agent token plays
	// this part).
	Token string
}

// SetDefaults fills the zero fields of c with the defaults.
func (c *Config) SetDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.BindIP == "" {
		c.BindIP = "127.0.0.1"
	}
	if c.APIPort == 0 {
		c.APIPort = DefaultAPIPort
	}
	if c.RaftPort == 0 {
		c.RaftPort = DefaultRaftPort
	}
	if c.GossipPort == 0 {
		c.GossipPort = DefaultGossipPort
	}
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.ElectionTimeout, DefaultElectionTimeout)
	def(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	def(&c.CommitTimeout, 20*time.Millisecond)
	def(&c.ApplyTimeout, 10*time.Second)
	def(&c.ReconcileInterval, 5*time.Second)
	def(&c.HostDownGrace, DefaultHostDownGrace)
	def(&c.FenceTimeout, DefaultFenceTimeout)
	def(&c.FenceRetryMin, 5*time.Second)
	def(&c.FenceRetryMax, 60*time.Second)
	def(&c.SnapshotInterval, 60*time.Second)
	def(&c.GossipProbeInterval, membership.DefaultProbeInterval)
	def(&c.GossipProbeTimeout, membership.DefaultProbeTimeout)
	if c.GossipSuspicionMult == 0 {
		c.GossipSuspicionMult = membership.DefaultSuspicionMult
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = 512
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Version == "" {
		c.Version = Version
	}
	if c.MaxProtocol <= 0 || c.MaxProtocol > fsm.ProtocolVersion {
		c.MaxProtocol = fsm.ProtocolVersion
	}
}

// Version is the version a controller reports when Config.Version is
// empty; the kumoi command passes its own (cli.Version, set by the linker).
var Version = "0.1.0-dev"

// The bounds of RaftWALSegmentSize.
const (
	minWALSegment = 64 << 10
	maxWALSegment = 1 << 30
)

// Validate checks the configuration and says what to fix.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("--node-id is required (a unique name for this controller, e.g. c1)"))
	}
	if !c.InMemory && c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required (where the raft log and snapshots are kept)"))
	}
	if net.ParseIP(c.BindIP) == nil {
		errs = append(errs, fmt.Errorf("--bind %q is not an IP address", c.BindIP))
	}
	for name, p := range map[string]int{"--api-port": c.APIPort, "--raft-port": c.RaftPort, "--gossip-port": c.GossipPort} {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %d is not a port number (1-65535)", name, p))
		}
	}
	switch c.BootstrapExpect {
	case 0, 1, 3, 5:
	default:
		errs = append(errs, fmt.Errorf("--bootstrap-expect %d: use 3 or 5 (a quorum survives one or two failed controllers), 1 for an explicitly single-node cluster, or leave it out to join an existing cluster", c.BootstrapExpect))
	}
	if c.HostDownGrace < 0 || c.HostDownGrace > fsm.MaxTimingMS*time.Millisecond {
		errs = append(errs, fmt.Errorf("--host-down-grace %s must be between 0 and 24h", c.HostDownGrace))
	}
	if c.FenceCommand != "" && strings.TrimSpace(c.FenceCommand) == "" {
		errs = append(errs, errors.New("--fence-command is blank: give the shell command that powers a host off (it gets the host name as $1), or leave the flag out"))
	}
	if c.FenceTimeout < 0 {
		errs = append(errs, fmt.Errorf("--fence-timeout %s must be positive", c.FenceTimeout))
	}
	if c.FenceRetryMin < 0 || c.FenceRetryMax < c.FenceRetryMin {
		errs = append(errs, fmt.Errorf("fence retry backoff %s..%s: the minimum must be positive and not above the maximum", c.FenceRetryMin, c.FenceRetryMax))
	}
	switch c.RaftLogStore {
	case "", LogStoreBoltDB, LogStoreWAL:
	default:
		errs = append(errs, fmt.Errorf("--raft-log-store %q: use wal (one fsync per append) or boltdb; without it a data directory keeps the store it has and a new one gets wal (docs/operations.md)", c.RaftLogStore))
	}
	if n := c.RaftWALSegmentSize; n != 0 && (n < minWALSegment || n > maxWALSegment) {
		errs = append(errs, fmt.Errorf("--raft-wal-segment-size: %d bytes; give 0 (64MiB) or between 64KiB and 1GiB", n))
	}
	if c.NoSync && c.RaftLogStore == LogStoreWAL {
		errs = append(errs, errors.New("NoSync (fsync off) exists for the boltdb Raft log store only"))
	}
	switch c.PlacementStrategy {
	case "", resource.StrategyBinpack, resource.StrategySpread:
	default:
		errs = append(errs, fmt.Errorf("--placement-strategy %q: use spread (most free memory first, the default) or binpack (least free first)", c.PlacementStrategy))
	}
	if c.TLS.Enabled() {
		if err := c.TLS.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("leader lease timeout %s must not exceed heartbeat timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	return errors.Join(errs...)
}

// APIAddr is the host:port the HTTP API listens on.
func (c *Config) APIAddr() string { return net.JoinHostPort(c.BindIP, strconv.Itoa(c.APIPort)) }

// RaftAddr is the host:port Raft listens on.
func (c *Config) RaftAddr() string { return net.JoinHostPort(c.BindIP, strconv.Itoa(c.RaftPort)) }

// GossipAddr is the host:port gossip listens on (TCP and UDP).
func (c *Config) GossipAddr() string { return net.JoinHostPort(c.BindIP, strconv.Itoa(c.GossipPort)) }
