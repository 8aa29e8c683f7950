package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/cluster"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run a Kumoi controller (or, with -dev, a whole cluster in one process)",
		UsageText: `kumoi agent -dev [--dev-controllers 3]
   kumoi agent --controller --node-id c1 --data-dir /var/lib/kumoi --bind 10.0.0.1 \
               --bootstrap-expect 3 --join 10.0.0.2:7402 --join 10.0.0.3:7402`,
		Description: `A controller keeps the cloud's state in a Raft cluster of 3 or 5 controllers.
Each controller serves the HTTP API (--api-port), talks Raft (--raft-port) and
gossips (--gossip-port) on the --bind address. Start every controller of a new
cluster with the same --bootstrap-expect N: they bootstrap together once they
see each other through --join. A controller started later without
--bootstrap-expect joins the existing cluster and is made a voter by the leader.
Remove a dead controller with 'kumoi cluster remove NODE_ID'.

SIGTERM or SIGINT stops the agent gracefully: a leader hands leadership to
another controller first. A second signal exits at once.

-dev runs a whole cluster in one process with its state in a temporary
directory (or --data-dir), API on 127.0.0.1:7400 (+10 per extra controller).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dev", Usage: "run a whole dev cluster in this process"},
			&cli.IntFlag{Name: "dev-controllers", Value: 1, Usage: "controllers in the dev cluster (1, 3 or 5)"},
			&cli.BoolFlag{Name: "controller", Usage: "run a controller"},
			&cli.StringFlag{Name: "node-id", Usage: "unique name of this node (default: the hostname)", EnvVars: []string{"KUMOI_NODE_ID"}},
			&cli.StringFlag{Name: "data-dir", Usage: "directory for the raft log and snapshots", EnvVars: []string{"KUMOI_DATA_DIR"}},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1", Usage: "IP address to bind and advertise"},
			&cli.IntFlag{Name: "api-port", Value: cluster.DefaultAPIPort, Usage: "HTTP API port"},
			&cli.IntFlag{Name: "raft-port", Value: cluster.DefaultRaftPort, Usage: "Raft port"},
			&cli.IntFlag{Name: "gossip-port", Value: cluster.DefaultGossipPort, Usage: "gossip (memberlist) port, TCP and UDP"},
			&cli.IntFlag{Name: "bootstrap-expect", Usage: "bootstrap a new cluster once this many controllers are seen (3 or 5)"},
			&cli.StringSliceFlag{Name: "join", Usage: "gossip address HOST:PORT of another agent (repeatable)"},
			&cli.DurationFlag{Name: "heartbeat-timeout", Value: 400 * time.Millisecond, Usage: "raft heartbeat timeout (follower → candidate)"},
			&cli.DurationFlag{Name: "election-timeout", Value: 400 * time.Millisecond, Usage: "raft election timeout"},
			&cli.DurationFlag{Name: "leader-lease-timeout", Value: 300 * time.Millisecond, Usage: "raft leader lease (≤ heartbeat timeout)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "trace, debug, info, warn or error", EnvVars: []string{"KUMOI_LOG_LEVEL"}},
			&cli.BoolFlag{Name: "log-json", Usage: "log JSON lines"},
		},
		Action: runAgent,
	}
}

func agentLogger(c *cli.Context) (hclog.Logger, error) {
	lvl := hclog.LevelFromString(c.String("log-level"))
	if lvl == hclog.NoLevel {
		return nil, usagef("--log-level %q: use trace, debug, info, warn or error", c.String("log-level"))
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "kumoi",
		Level:      lvl,
		Output:     c.App.ErrWriter,
		JSONFormat: c.Bool("log-json"),
	}), nil
}

func runAgent(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("agent takes no arguments (got %q); use flags", strings.Join(c.Args().Slice(), " "))
	}
	logger, err := agentLogger(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if c.Bool("dev") {
		return runDev(ctx, c, logger)
	}
	if !c.Bool("controller") {
		return usagef("say what to run: --controller (workers arrive in a later release), or -dev for a dev cluster")
	}
	nodeID := c.String("node-id")
	if nodeID == "" {
		h, err := os.Hostname()
		if err != nil {
			return usagef("--node-id is required (the hostname is unknown: %v)", err)
		}
		nodeID = h
	}
	cfg := cluster.Config{
		NodeID:             nodeID,
		DataDir:            c.String("data-dir"),
		BindIP:             c.String("bind"),
		APIPort:            c.Int("api-port"),
		RaftPort:           c.Int("raft-port"),
		GossipPort:         c.Int("gossip-port"),
		BootstrapExpect:    c.Int("bootstrap-expect"),
		Join:               c.StringSlice("join"),
		HeartbeatTimeout:   c.Duration("heartbeat-timeout"),
		ElectionTimeout:    c.Duration("election-timeout"),
		LeaderLeaseTimeout: c.Duration("leader-lease-timeout"),
		Logger:             logger,
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	a, err := cluster.StartAgent(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "kumoi controller %s: API on http://%s\n", nodeID, a.APIAddr())
	select {
	case <-ctx.Done():
	case err := <-a.Served():
		logger.Error("API server stopped", "error", err)
	}
	return shutdownWithSecondSignal(logger, func(ctx context.Context) error { return a.Shutdown(ctx) })
}

func runDev(ctx context.Context, c *cli.Context, logger hclog.Logger) error {
	n := c.Int("dev-controllers")
	api := c.Int("api-port")
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d, err := cluster.StartDev(startCtx, cluster.DevConfig{
		Controllers: n,
		BindIP:      c.String("bind"),
		APIPort:     api,
		DataDir:     c.String("data-dir"),
		Logger:      logger,
	})
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "\nKumoi dev cluster is up: %d controller(s), state in %s", n, d.DataDir())
	if d.Temporary() {
		fmt.Fprint(w, " (removed on exit)")
	}
	fmt.Fprintf(w, "\nPoint the CLI at it from another terminal:\n\n    export KUMOI_ADDR=%s\n    kumoi cluster status\n    kumoi vm create web --cpus 1 --memory 512MiB\n    kumoi vm list\n\nPress Ctrl-C to stop.\n\n", strings.Join(d.Addrs(), ","))
	<-ctx.Done()
	return shutdownWithSecondSignal(logger, d.Shutdown)
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
