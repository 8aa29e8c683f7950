package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/cluster/agent"
	"github.com/kumoi/kumoi/cluster/controller"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/logring"
	"github.com/kumoi/kumoi/internal/tlsutil"
	"github.com/kumoi/kumoi/resource"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run a Kumoi controller (or, with -dev, a whole cluster in one process)",
		UsageText: `kumoi agent -dev [--dev-controllers 3]
   kumoi agent --controller --node-id c1 --data-dir /var/lib/kumoi --bind 10.0.0.1 \
               --bootstrap-expect 3 --join 10.0.0.2:7402 --join 10.0.0.3:7402 \
               [--tls-ca ca.pem --tls-cert c1.pem --tls-key c1-key.pem]
   kumoi agent --worker --node-id hv1 --data-dir /var/lib/kumoi-worker --bind 10.0.0.11 \
               --hypervisor libvirt --join 10.0.0.1:7402`,
		Description: `A controller keeps the cloud's state in a Raft cluster of 3 or 5 controllers.
Each controller serves the HTTP API (--api-port), talks Raft (--raft-port) and
gossips (--gossip-port) on the --bind address. Start every controller of a new
cluster with the same --bootstrap-expect N: they bootstrap together once they
see each other through --join. A controller started later without
--bootstrap-expect joins the existing cluster and is made a voter by the leader.
Remove a dead controller with 'kumoi cluster remove NODE_ID'.

A worker (--worker) makes this host's domains match the VMs placed on it. With
--data-dir it records the identity of its cluster in DIR/cluster_id
(DIR/worker/cluster_id when the process also runs a controller) the first time
it sees its controllers, and tags every domain it defines with it. It never
stops, starts or removes a Kumoi domain of another cluster: such domains show
as foreign_domains in the host's status. A worker whose cluster_id names
another cluster than its --join agents' refuses to start (exit status 1);
remove that cluster_id to move the host to the other cluster, or fix --join.

A libvirt worker's domains outlive it, so it runs a fence guard beside it
('kumoi fence-guard', started detached by the worker: --fence-guard spawn,
the default for libvirt; it needs --data-dir): when nobody can prove that
the controllers still count the host as ready for --fence-after, the guard
stops this cluster's domains on the host, so that a VM restarted elsewhere
never runs twice (docs/ha.md).

With --tls-ca, --tls-cert and --tls-key (all three; make them with 'kumoi tls')
the API serves HTTPS only, Raft runs over mutual TLS between server
certificates of the CA, and forwarding and the calls of workers and fence
guards use TLS, requiring the controllers' server certificates (docs/tls.md).

Gossip (controllers and workers alike): --encrypt KEY (or KUMOI_GOSSIP_KEY)
encrypts it with a key made by 'kumoi operator gossip keygen', the same on
every agent; agents and packets without it are refused. Keys rotate by
rolling restarts: add the new key as a second --encrypt everywhere, then make
it the first, then drop the old one. With TLS files, gossip streams use TLS
too, and the leader makes a gossip member a Raft server or a host only if it
presents a certificate of the cluster CA with the server (or worker) role.
Without them, gossip and Raft are unauthenticated and the agent says so at
start (docs/gossip.md).

-config FILE reads the settings from an HCL file: every flag under its name
with _ for - (node_id = "c1", bootstrap_expect = 3, join = ["10.0.0.2:7402"]),
and blocks for flags with a common prefix (tls { ca = "/etc/kumoi/ca.pem" },
acl { enabled = true }). Flags and environment variables override the file;
unknown settings and bad values are refused with the file's line. Keep
secrets out of it: KUMOI_TOKEN, KUMOI_GOSSIP_KEY, KUMOI_ACL_INITIAL_MANAGEMENT,
or env("NAME") in the file. -validate checks the flags and the file and exits
(docs/operations.md, "Configuration file"; examples/agent.hcl).

SIGTERM or SIGINT stops the agent gracefully: a leader hands leadership to
another controller first. A second signal exits at once.

-dev runs a whole cluster in one process with its state in a temporary
directory (or --data-dir), API on 127.0.0.1:7400 (+10 per extra controller).`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "dev", Usage: "run a whole dev cluster in this process"},
			&cli.IntFlag{Name: "dev-controllers", Value: 1, Usage: "controllers in the dev cluster (1, 3 or 5)"},
			&cli.IntFlag{Name: "dev-hosts", Value: 3, Usage: "simulated hypervisor hosts in the dev cluster"},
			&cli.BoolFlag{Name: "controller", Usage: "run a controller"},
			&cli.BoolFlag{Name: "worker", Usage: "run a worker: make this host's domains match the VMs placed on it"},
			&cli.StringFlag{Name: "hypervisor", Value: "sim", Usage: "worker driver: sim (simulated, in memory) or libvirt"},
			&cli.StringFlag{Name: "libvirt-uri", Value: "qemu:///system", Usage: "libvirt connection URI of the worker (e.g. test:///path/host.xml)"},
			// -- live migration under libvirt (docs/hypervisors.md) --
			&cli.StringFlag{Name: "migration-uri", Usage: "worker (libvirt): the libvirt URI by which the libvirtd of another host reaches this host's libvirtd for a peer-to-peer live migration, e.g. qemu+tls://HOST/system or qemu+tcp://HOST/system (default: --libvirt-uri when it names a host or a unix socket; without one the host does not offer live migration)"},
			&cli.StringFlag{Name: "migration-address", Usage: "worker (libvirt): where an incoming live migration's data stream connects, ADDR[:PORT] or tcp://ADDR[:PORT] (an IP address: listened on only there); default: libvirt's choice (qemu.conf migration_host, else the hostname; a port from migration_port_min..max)"},
			// -- end live migration under libvirt --
			&cli.IntFlag{Name: "cpus", Usage: "worker capacity in CPUs (sim capacity, or an override of what the driver reports)"},
			&cli.StringFlag{Name: "memory", Usage: "worker memory capacity, e.g. 64GiB (sim capacity or an override)"},
			&cli.StringFlag{Name: "observation-log", Usage: "worker: append one JSON line per domain start and stop seen on this host to FILE (read by the chaos harness's placement checker)"},
			&cli.StringSliceFlag{Name: "label", Usage: "worker host label KEY=VALUE (repeatable), set when the host object is created"},
			&cli.StringFlag{Name: "fence-guard", Usage: "worker: how this host's domains are fenced when the worker is gone: spawn (start a detached 'kumoi fence-guard'), external (one runs as its own service) or off; default spawn for --hypervisor libvirt (needs --data-dir), off for sim and the in-process test:/// driver (docs/ha.md)"},
			&cli.DurationFlag{Name: "fence-after", Value: worker.DefaultFenceAfter, Usage: "a worker cut off from the controller quorum this long stops its VMs (< --host-down-grace)"},
			&cli.DurationFlag{Name: "host-down-grace", Value: resource.DefaultHostDownGrace, Usage: "controllers evacuate a host's VMs once the leader has seen it down this long on its own monotonic clock (a new leader waits it again); a host whose worker's --fence-after is not below it is never evacuated"},
			&cli.StringFlag{Name: "placement-strategy", Value: "spread", Usage: "controller: the cluster's default placement strategy, spread (most free memory first) or binpack (least free first); a project's spec.strategy and a VM's override it (docs/scheduling.md)"},
			&cli.StringFlag{Name: "fence-command", Usage: "controller: shell command that fences (powers off) a host down for --host-down-grace before its VMs are moved, e.g. 'fence_ipmilan --ip \"$KUMOI_FENCE_LABEL_BMC\" --username admin --password-script /etc/kumoi/bmc-pass --action off'; run as /bin/sh -c CMD kumoi-fence HOST ($1 is the host; env KUMOI_FENCE_HOST, KUMOI_FENCE_LABELS, KUMOI_FENCE_LABEL_<KEY>, KUMOI_CLUSTER_ID); exit status 0 = fenced (docs/ha.md)"},
			&cli.DurationFlag{Name: "fence-timeout", Value: controller.DefaultFenceTimeout, Usage: "controller: a --fence-command run that takes longer is killed and counts as failed (retried with a backoff of 5s doubling to 60s)"},
			&cli.StringFlag{Name: "node-id", Usage: "unique name of this node (default: the hostname)", EnvVars: []string{"KUMOI_NODE_ID"}},
			&cli.StringFlag{Name: "image-dir", Value: hypervisor.DefaultImageDir, Usage: "worker: the one directory this host boots files from: a VM's boot.image, kernel and initrd are names in it (or absolute paths inside it); anything outside it, a symbolic link out of it, or anything but a regular file fails the VM", EnvVars: []string{"KUMOI_IMAGE_DIR"}},
			&cli.StringFlag{Name: "storage-dir", Value: worker.DefaultStorageDir, Usage: "worker: where this host keeps its volumes (the libvirt storage pool \"kumoi\" in DIR/volumes, files <cluster id>_<volume id>.qcow2) and its image cache (DIR/images: url images downloaded and verified, by sha256)", EnvVars: []string{"KUMOI_STORAGE_DIR"}},
			&cli.DurationFlag{Name: "image-fetch-timeout", Value: worker.DefaultImageFetchTimeout, Usage: "worker: one image download (or the check of a file image's sha256) taking longer fails, and is tried again later"},
			&cli.StringFlag{Name: "image-max-size", Value: "64GiB", Usage: "worker: the most an image download may hold when the image gives no size_bytes (e.g. 64GiB); a larger one fails the VMs that use it"},
			&cli.StringFlag{Name: "data-dir", Usage: "controller: directory for the raft log, snapshots and cluster_id; worker: directory for its cluster_id (DIR/worker when the process runs a controller too; without it a worker remembers no cluster across restarts)", EnvVars: []string{"KUMOI_DATA_DIR"}},
			&cli.StringFlag{Name: "raft-log-store", Usage: "controller: where the Raft log is kept: wal (DATA/raft/wal/, hashicorp/raft-wal: one sync per append) or boltdb (DATA/raft/raft.db: a commit syncs twice); unset, a data directory keeps the store it has and a new one gets wal; a data directory that holds the other one than named is converted when the agent starts, the old one kept aside (docs/operations.md)", EnvVars: []string{"KUMOI_RAFT_LOG_STORE"}},
			&cli.StringFlag{Name: "raft-wal-segment-size", Value: "64MiB", Usage: "controller: the size of the wal Raft log's segment files (preallocated; 1MiB to 1GiB)", EnvVars: []string{"KUMOI_RAFT_WAL_SEGMENT_SIZE"}},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1", Usage: "IP address to bind and advertise"},
			&cli.IntFlag{Name: "api-port", Value: controller.DefaultAPIPort, Usage: "HTTP API port"},
			&cli.IntFlag{Name: "raft-port", Value: controller.DefaultRaftPort, Usage: "Raft port"},
			&cli.IntFlag{Name: "gossip-port", Value: controller.DefaultGossipPort, Usage: "gossip (memberlist) port, TCP and UDP"},
			&cli.IntFlag{Name: "bootstrap-expect", Usage: "bootstrap a new cluster once this many controllers are seen: 3 or 5 (1: an explicitly single-node cluster)"},
			&cli.StringSliceFlag{Name: "join", Usage: "gossip address HOST:PORT of another agent (repeatable)"},
			encryptFlag(),
			&cli.DurationFlag{Name: "heartbeat-timeout", Value: controller.DefaultHeartbeatTimeout, Usage: "raft heartbeat timeout (follower → candidate)"},
			&cli.DurationFlag{Name: "election-timeout", Value: controller.DefaultElectionTimeout, Usage: "raft election timeout"},
			&cli.DurationFlag{Name: "leader-lease-timeout", Value: controller.DefaultLeaderLeaseTimeout, Usage: "raft leader lease (≤ heartbeat timeout)"},
			&cli.BoolFlag{Name: "acl", Value: true, Usage: "controller: enforce ACL tokens on the API (every endpoint but GET /v1/status and POST /v1/acl/bootstrap needs one; docs/security.md); -dev turns ACLs off"},
			&cli.StringFlag{Name: "acl-initial-management", Usage: "controller: secret of the management token the leader bootstraps ACLs with if they are not bootstrapped yet (instead of `kumoi acl bootstrap`; docs/security.md)", EnvVars: []string{"KUMOI_ACL_INITIAL_MANAGEMENT"}},
			&cli.StringFlag{Name: "token", Usage: "ACL token secret of the agent's own API calls: a worker's (and its fence guard's) — a node token for this host (`kumoi acl token create --type node --node ID`) is the least it needs; a controller's calls to other controllers (a new node reads the Raft configuration: cluster:read; default: --acl-initial-management)", EnvVars: []string{"KUMOI_TOKEN"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "trace, debug, info, warn or error", EnvVars: []string{"KUMOI_LOG_LEVEL"}},
			&cli.BoolFlag{Name: "log-json", Usage: "log JSON lines"},
			&cli.StringFlag{Name: "tls-ca", Usage: "TLS: the cluster CA's certificate (kumoi tls ca create); with --tls-cert and --tls-key the API serves HTTPS only, Raft runs over mutual TLS between server certificates, and workers call the controllers over https (docs/tls.md)"},
			&cli.StringFlag{Name: "tls-cert", Usage: "TLS: this node's certificate (kumoi tls cert create: --server for a controller, --worker for a worker)"},
			&cli.StringFlag{Name: "tls-key", Usage: "TLS: the key of --tls-cert"},
			// Migrations: the worker's, and the dev cluster's simulated hosts'.
			&cli.DurationFlag{Name: "migration-timeout", Value: worker.DefaultMigrationTimeout, Usage: "worker: an outgoing migration of a VM taking longer is cancelled, and the VM stays on this host"},
			&cli.DurationFlag{Name: "sim-migration-downtime", Aliases: []string{"dev-migration-downtime"}, Value: sim.DefaultMigrationDowntime, Usage: "sim worker and dev: how long a simulated host's live migration pauses the guest at the switch-over"},
			&cli.DurationFlag{Name: "sim-migration-latency", Aliases: []string{"dev-migration-latency"}, Usage: "sim worker and dev: how long a simulated host's live migration copies the guest, running, before that"},
			// Fault hooks (hidden) exist only in a kumoi_testhooks build.
		}, append(configFileFlags(), testHookFlags()...)...),
		Action: runAgent,
	}
}

func agentLogger(c *cli.Context) (hclog.Logger, error) {
	lvl := hclog.LevelFromString(c.String("log-level"))
	if lvl == hclog.NoLevel {
		return nil, usagef("--log-level %q: use trace, debug, info, warn or error", c.String("log-level"))
	}
	// The last lines are also kept for GET /v1/agent/logs (kumoi
	// operator debug).
	ring := logring.New(logring.DefaultSize)
	c.Context = context.WithValue(c.Context, logRingKey{}, ring)
	return hclog.New(&hclog.LoggerOptions{
		Name:       "kumoi",
		Level:      lvl,
		Output:     io.MultiWriter(c.App.ErrWriter, ring),
		JSONFormat: c.Bool("log-json"),
	}), nil
}

// logRingKey is the cli.Context's value of the agent's log ring.
type logRingKey struct{}

func logRingOf(c *cli.Context) *logring.Ring {
	r, _ := c.Context.Value(logRingKey{}).(*logring.Ring)
	return r
}

// secretFlags are the agent flags whose values GET /v1/agent/self (and
// so kumoi operator debug) never shows.
// --fence-command often carries a fence agent's credentials inline.
var secretFlags = map[string]bool{"token": true, "acl-initial-management": true, "encrypt": true, "fence-command": true}

// uriFlags may carry a password in their user information.
var uriFlags = map[string]bool{"libvirt-uri": true, "migration-uri": true}

// redactedFlags is the agent's configuration as its flags say (from the
// command line, the environment or the default), secrets replaced by
// "<redacted>" when set.
func redactedFlags(c *cli.Context) map[string]any {
	out := map[string]any{}
	for _, f := range c.Command.VisibleFlags() {
		name := f.Names()[0]
		if name == "help" {
			continue
		}
		v := c.Value(name)
		if _, ok := f.(*cli.StringSliceFlag); ok {
			v = c.StringSlice(name)
		}
		if secretFlags[name] {
			if c.IsSet(name) {
				v = "<redacted>"
			} else {
				v = ""
			}
		}
		if s, ok := v.(string); ok && uriFlags[name] {
			if u, err := url.Parse(s); err == nil && u.User != nil {
				if _, has := u.User.Password(); has {
					u.User = url.UserPassword(u.User.Username(), "redacted")
					v = u.String()
				}
			}
		}
		switch x := v.(type) {
		case time.Duration:
			v = x.String()
		case []string:
			if x == nil {
				x = []string{}
			}
			v = x
		}
		out[name] = v
	}
	return out
}

func runAgent(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("agent takes no arguments (got %q); use flags", strings.Join(c.Args().Slice(), " "))
	}
	if path := c.String("config"); path != "" {
		if err := loadAgentConfig(c, path); err != nil {
			return err
		}
	}
	if c.Bool("validate") {
		return validateAgent(c)
	}
	logger, err := agentLogger(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	agent.TuneGC() // for the process's life

	if c.Bool("dev") {
		if c.IsSet("tls-ca") || c.IsSet("tls-cert") || c.IsSet("tls-key") {
			return usagef("-dev runs without TLS: leave out --tls-ca, --tls-cert and --tls-key")
		}
		return runDev(ctx, c, logger)
	}
	if !c.Bool("controller") && !c.Bool("worker") {
		return usagef("say what to run: --controller, --worker (or both), or -dev for a dev cluster")
	}
	return runNode(ctx, c, logger)
}

// runNode runs the roles the flags ask for (--worker, --controller, or
// both in one process) until a signal, then stops them gracefully.
func runNode(ctx context.Context, c *cli.Context, logger hclog.Logger) error {
	if _, err := gossipSecurity(c); err != nil {
		return err // a bad --encrypt stops the agent before anything starts
	}
	nodeID := c.String("node-id")
	if nodeID == "" {
		h, err := os.Hostname()
		if err != nil {
			return usagef("--node-id is required (the hostname is unknown: %v)", err)
		}
		nodeID = h
	}
	var w *worker.Worker
	if c.Bool("worker") {
		var err error
		if w, err = startWorker(c, nodeID, logger); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "kumoi worker %s: hypervisor %s\n", nodeID, c.String("hypervisor"))
	}
	if !c.Bool("controller") {
		warnGossip(c, logger)
		notifySystemd(logger, "READY=1\nSTATUS=worker of host "+nodeID+" running")
		select {
		case <-ctx.Done():
		case <-w.Done():
			_ = w.Shutdown(context.Background())
			return w.Err()
		}
		notifySystemd(logger, "STOPPING=1\nSTATUS=leaving the cluster")
		return shutdownWithSecondSignal(logger, w.Shutdown)
	}
	cfg, err := controllerConfig(c, nodeID, logger)
	if err == nil {
		var a *agent.Agent
		if a, err = agent.Start(cfg); err == nil {
			warnGossip(c, logger)
			return serveController(ctx, c, logger, a, w)
		}
	}
	if w != nil {
		_ = w.Shutdown(context.Background())
	}
	return err
}

// controllerConfig is the controller's configuration from the flags.
func controllerConfig(c *cli.Context, nodeID string, logger hclog.Logger) (controller.Config, error) {
	cfg := controller.Config{
		NodeID:             nodeID,
		DataDir:            c.String("data-dir"),
		RaftLogStore:       c.String("raft-log-store"),
		BindIP:             c.String("bind"),
		APIPort:            c.Int("api-port"),
		RaftPort:           c.Int("raft-port"),
		GossipPort:         c.Int("gossip-port"),
		BootstrapExpect:    c.Int("bootstrap-expect"),
		Join:               c.StringSlice("join"),
		HeartbeatTimeout:   c.Duration("heartbeat-timeout"),
		ElectionTimeout:    c.Duration("election-timeout"),
		LeaderLeaseTimeout: c.Duration("leader-lease-timeout"),
		HostDownGrace:      c.Duration("host-down-grace"),
		FenceCommand:       c.String("fence-command"),
		PlacementStrategy:  c.String("placement-strategy"),
		FenceTimeout:       c.Duration("fence-timeout"),
		UnsafeStaleReads:   unsafeStaleReads(c, logger),
		Version:            Version,
		Logger:             logger,

		ACL:                  c.Bool("acl"),
		ACLInitialManagement: c.String("acl-initial-management"),
		Token:                c.String("token"),

		Logs:        logRingOf(c),
		AgentConfig: redactedFlags(c),
	}
	if !cfg.ACL {
		logger.Warn("ACLs are off (--acl=false): anyone who can reach the API may do anything")
	} else if cfg.ACLInitialManagement != "" && len(cfg.ACLInitialManagement) < 16 {
		return cfg, usagef("--acl-initial-management: the secret is %d characters; use a long random one (e.g. cat /proc/sys/kernel/random/uuid)", len(cfg.ACLInitialManagement))
	}
	seg, err := resource.ParseMemoryMiB(c.String("raft-wal-segment-size"))
	if err != nil || seg < 1 || seg > 1024 {
		return cfg, usagef("--raft-wal-segment-size %q: give a size from 1MiB to 1GiB, such as 64MiB", c.String("raft-wal-segment-size"))
	}
	cfg.RaftWALSegmentSize = int(seg) << 20
	if cfg.TLS, err = agentTLS(c); err != nil {
		return cfg, err
	}
	if cfg.GossipSecurity, err = gossipSecurity(c); err != nil {
		return cfg, err
	}
	if c.IsSet("fence-command") && strings.TrimSpace(cfg.FenceCommand) == "" {
		return cfg, usagef("--fence-command is empty: give the shell command that powers a host off (the host name is $1; see docs/ha.md \"External fencing\"), or leave the flag out to move a down host's VMs without external fencing")
	}
	if c.Duration("fence-timeout") <= 0 {
		return cfg, usagef("--fence-timeout %s must be positive (how long one --fence-command run may take, e.g. 60s)", c.Duration("fence-timeout"))
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("%v", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return cfg, nil
}

// serveController waits for a signal (or the API server's end) and stops
// the worker (if any) and the controller.
func serveController(ctx context.Context, c *cli.Context, logger hclog.Logger, a *agent.Agent, w *worker.Worker) error {
	fmt.Fprintf(c.App.Writer, "kumoi controller %s: API on %s\n", a.Controller().NodeID(), a.APIURL())
	readyCtx, cancel := context.WithTimeout(ctx, time.Minute)
	if err := a.WaitServing(readyCtx); err == nil {
		notifySystemd(logger, "READY=1\nSTATUS=serving the API on "+a.APIURL())
	} else {
		logger.Warn("not telling systemd the agent is ready", "error", err)
	}
	cancel()
	var workerDone <-chan struct{}
	if w != nil {
		workerDone = w.Done()
	}
	var failure error
	select {
	case <-ctx.Done():
	case err := <-a.Served():
		logger.Error("API server stopped", "error", err)
	case <-a.Failed():
		// Out of service (a refused new node, a halted state machine):
		// exit non-zero, saying why (docs/operations.md).
		failure = a.Err()
	case <-workerDone:
		// The worker refused to start: so does the agent.
		failure = w.Err()
	}
	notifySystemd(logger, "STOPPING=1\nSTATUS=leaving the cluster")
	err := shutdownWithSecondSignal(logger, func(ctx context.Context) error {
		var errs []error
		if w != nil {
			errs = append(errs, w.Shutdown(ctx))
		}
		return errors.Join(append(errs, a.Shutdown(ctx))...)
	})
	if failure != nil {
		return failure // exit non-zero, the reason on stderr
	}
	return err
}

func runDev(ctx context.Context, c *cli.Context, logger hclog.Logger) error {
	logger.Warn("ACLs are off in -dev mode")
	n := c.Int("dev-controllers")
	api := c.Int("api-port")
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d, err := agent.StartDev(startCtx, agent.DevConfig{
		Controllers: n,
		BindIP:      c.String("bind"),
		APIPort:     api,
		DataDir:     c.String("data-dir"),
		Hosts:       c.Int("dev-hosts"),
		Logger:      logger,

		MigrationDowntime: c.Duration("sim-migration-downtime"),
		MigrationLatency:  c.Duration("sim-migration-latency"),
		MigrationTimeout:  c.Duration("migration-timeout"),
	})
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "\nKumoi dev cluster is up: %d controller(s), %d simulated host(s), state in %s", n, len(d.Workers), d.DataDir())
	if d.Temporary() {
		fmt.Fprint(w, " (removed on exit)")
	}
	fmt.Fprintf(w, "\nPoint the CLI at it from another terminal:\n\n    export KUMOI_ADDR=%s\n    kumoi cluster status\n    kumoi vm create web --cpus 1 --memory 512MiB --wait\n    kumoi vm list\n\nPress Ctrl-C to stop.\n\n", strings.Join(d.Addrs(), ","))
	var failure error
	select {
	case <-ctx.Done():
	case <-d.Failed():
		// A controller is out of service (its state machine halted):
		// stop, and exit non-zero saying why, as a lone controller does.
		failure = d.Err()
		logger.Error("a dev controller is out of service; stopping the dev cluster", "error", failure)
	}
	if err := shutdownWithSecondSignal(logger, d.Shutdown); failure == nil {
		return err
	}
	return failure
}

// shutdownWithSecondSignal runs a graceful shutdown bounded in time; a
// second SIGINT/SIGTERM abandons it.
func shutdownWithSecondSignal(logger hclog.Logger, shutdown func(context.Context) error) error {
	logger.Info("shutting down (signal again to exit at once)")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan error, 1)
	go func() { done <- shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			logger.Warn("shutdown finished with errors", "error", err)
		}
		return nil
	case <-sig:
		return errors.New("interrupted during shutdown")
	}
}

// startWorker builds the hypervisor driver and starts the worker.
func startWorker(c *cli.Context, nodeID string, logger hclog.Logger) (*worker.Worker, error) {
	cfg, err := workerConfig(c, nodeID, logger, true)
	if err != nil {
		return nil, err
	}
	return worker.Start(cfg)
}

// workerConfig is the worker's configuration from the flags; with
// driver, it opens the hypervisor driver too (-validate does not).
func workerConfig(c *cli.Context, nodeID string, logger hclog.Logger, driver bool) (worker.Config, error) {
	var mem int64
	if m := c.String("memory"); m != "" {
		v, err := resource.ParseMemoryMiB(m)
		if err != nil {
			return worker.Config{}, usagef("--memory: %v", err)
		}
		mem = v
	}
	if c.Duration("fence-after") >= c.Duration("host-down-grace") {
		return worker.Config{}, usagef("--fence-after (%s) must be shorter than --host-down-grace (%s): a cut-off worker must stop its VMs before they are restarted elsewhere", c.Duration("fence-after"), c.Duration("host-down-grace"))
	}
	tlsFiles, err := agentTLS(c)
	if err != nil {
		return worker.Config{}, err
	}
	var drv hypervisor.Driver
	switch h := c.String("hypervisor"); {
	case driver:
		if drv, err = newDriver(c, nodeID, mem); err != nil {
			return worker.Config{}, err
		}
	case h != "sim" && h != "libvirt":
		return worker.Config{}, usagef("--hypervisor %q: use sim or libvirt", h)
	}
	gossipName, port := nodeID, c.Int("gossip-port")
	dataDir := c.String("data-dir")
	if c.Bool("controller") {
		// Sharing a process (and a node id) with a controller: gossip
		// under another name, on the next port, and keep its files in
		// a directory of its own.
		gossipName, port = nodeID+"-worker", port+1
		if dataDir != "" {
			dataDir = filepath.Join(dataDir, "worker")
		}
	}
	guardMode := c.String("fence-guard")
	if guardMode == "" {
		guardMode = worker.GuardOff
		// test:/// is libvirt's test driver inside the worker process:
		// its domains die with it, as the sim's do.
		if c.String("hypervisor") == "libvirt" && !strings.HasPrefix(c.String("libvirt-uri"), "test:///") {
			guardMode = worker.GuardSpawn
		}
	}
	switch guardMode {
	case worker.GuardOff, worker.GuardSpawn, worker.GuardExternal:
	default:
		return worker.Config{}, usagef("--fence-guard %q: use spawn, external or off", guardMode)
	}
	if guardMode != worker.GuardOff && dataDir == "" {
		return worker.Config{}, usagef("--fence-guard %s needs --data-dir: the fence guard keeps its socket there (or say --fence-guard off, and accept that a killed worker's domains keep running: docs/ha.md)", guardMode)
	}
	var guardCmd []string
	if guardMode == worker.GuardSpawn {
		var err error
		if guardCmd, err = guardCommand(c, nodeID, dataDir); err != nil {
			return worker.Config{}, err
		}
	}
	sec, err := gossipSecurity(c)
	if err != nil {
		return worker.Config{}, err
	}
	maxImage, err := resource.ParseMemoryMiB(c.String("image-max-size"))
	if err != nil || maxImage <= 0 {
		return worker.Config{}, usagef("--image-max-size %q: give a size such as 64GiB", c.String("image-max-size"))
	}
	if c.Duration("image-fetch-timeout") <= 0 {
		return worker.Config{}, usagef("--image-fetch-timeout %s must be positive", c.Duration("image-fetch-timeout"))
	}
	labels := map[string]string{}
	for _, kv := range c.StringSlice("label") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return worker.Config{}, usagef("--label %q: write KEY=VALUE", kv)
		}
		labels[k] = v
	}
	return worker.Config{
		Labels:     labels,
		NodeID:     nodeID,
		GossipName: gossipName,
		BindIP:     c.String("bind"),
		GossipPort: port,
		Join:       c.StringSlice("join"),
		Driver:     drv,
		DriverName: c.String("hypervisor"),
		CPUs:       c.Int("cpus"),
		MemoryMiB:  mem,
		FenceAfter: c.Duration("fence-after"),
		DataDir:    dataDir,
		ImageDir:   c.String("image-dir"),
		Logger:     logger,

		StorageDir:        c.String("storage-dir"),
		ImageFetchTimeout: c.Duration("image-fetch-timeout"),
		ImageMaxBytes:     maxImage << 20,
		MigrationTimeout:  c.Duration("migration-timeout"),

		FenceGuard:   guardMode,
		GuardCommand: guardCmd,
		TLS:          tlsFiles,
		Token:        c.String("token"),

		GossipSecurity: sec,
	}, nil
}

// agentTLS reads --tls-ca, --tls-cert and --tls-key: all three or none,
// and they must load (the certificate signed by the CA, matching its key).
func agentTLS(c *cli.Context) (tlsutil.Files, error) {
	f := tlsutil.Files{CA: c.String("tls-ca"), Cert: c.String("tls-cert"), Key: c.String("tls-key")}
	if !f.Enabled() {
		return f, nil
	}
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return f, usagef("give --tls-ca, --tls-cert and --tls-key together (or none of them to run without TLS)")
	}
	if err := f.Validate(); err != nil {
		return f, usagef("%v", err)
	}
	return f, nil
}

// validateAgent is kumoi agent -validate: it builds what the agent would
// run from the flags (and -config file) and reports, without starting
// anything or touching the data directory.
func validateAgent(c *cli.Context) error {
	if _, err := agentLogger(c); err != nil {
		return err
	}
	roles := []string{}
	switch {
	case c.Bool("dev"):
		roles = append(roles, "dev cluster")
	case !c.Bool("controller") && !c.Bool("worker"):
		return usagef("say what to run: --controller, --worker (or both), or -dev for a dev cluster (controller = true in the file)")
	}
	if _, err := gossipSecurity(c); err != nil {
		return err
	}
	if !c.Bool("dev") && c.Bool("controller") {
		cfg, err := controllerConfig(c, cmp.Or(c.String("node-id"), "(hostname)"), hclog.NewNullLogger())
		if err != nil {
			return err
		}
		cfg.SetDefaults()
		if err := cfg.Validate(); err != nil {
			return usagef("%v", err)
		}
		roles = append(roles, "controller")
	}
	if !c.Bool("dev") && c.Bool("worker") {
		if _, err := workerConfig(c, cmp.Or(c.String("node-id"), "(hostname)"), hclog.NewNullLogger(), false); err != nil {
			return err
		}
		roles = append(roles, "worker")
	}
	what := "the flags"
	if p := c.String("config"); p != "" {
		what = p
	}
	_, err := fmt.Fprintf(c.App.Writer, "%s: valid (%s)\n", what, strings.Join(roles, " and "))
	return err
}

// notifySystemd tells systemd (a Type=notify unit: NOTIFY_SOCKET set) the
// agent's state, e.g. "READY=1" once it serves; nothing without it.
func notifySystemd(logger hclog.Logger, state string) {
	if sent, err := daemon.SdNotify(false, state); err != nil {
		logger.Warn("cannot notify systemd", "state", state, "error", err)
	} else if sent {
		logger.Debug("notified systemd", "state", state)
	}
}
