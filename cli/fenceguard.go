package cli

import (
	"crypto/tls"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/cluster/fenceguard"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/internal/tlsutil"
)

func fenceGuardCommand() *cli.Command {
	return &cli.Command{
		Name:  "fence-guard",
		Usage: "guard a libvirt worker's domains: stop them when nobody can prove the host is still ready",
		UsageText: `kumoi fence-guard --data-dir /var/lib/kumoi-worker --node-id hv1 --bind 10.0.0.11 \
                  --libvirt-uri qemu:///system --fence-after 2.5s`,
		Description: `The fence guard keeps the promise that no VM runs on two hosts when the
worker process dies, hangs or is restarted while cut off (docs/ha.md). It
is a process of its own, with its own libvirt connection and its own timer.
The worker renews it over DIR/fence-guard.sock after every read that proves
the controllers count the host as ready, and starts a domain only once the
guard holds a fresh proof. When renewals stop, the guard reads the host
object itself (from --bind). When its latest proof is --fence-after old
(before the controllers' --host-down-grace can end), it stops every running
Kumoi domain of the cluster on this host (on qemu:///system by killing its
QEMU process first), records the fence in DIR/fence-guard.json (the worker
reports it on the VMs), and keeps stopping them until a proof taken after
the fence arrives.

A libvirt worker starts one itself (kumoi agent --worker --fence-guard
spawn, the default for --hypervisor libvirt), detached, with
--exit-when-idle. Run it as its own service instead with the worker's
--fence-guard external. Give it the worker's --data-dir, --node-id, --bind,
--libvirt-uri and --fence-after. It exits on SIGTERM or SIGINT, when DIR is
removed, or (--exit-when-idle) when no worker has renewed for that long and
no domain of the cluster runs here (or libvirt has not answered for that
long and none ran when it last did); one guard runs per DIR.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Usage: "the worker's data directory (socket, pid, lock and fence record)", EnvVars: []string{"KUMOI_DATA_DIR"}},
			&cli.StringFlag{Name: "node-id", Usage: "the host's name, as the worker's --node-id", EnvVars: []string{"KUMOI_NODE_ID"}},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1", Usage: "address the guard's API requests leave from (the worker's --bind)"},
			&cli.StringFlag{Name: "libvirt-uri", Value: "qemu:///system", Usage: "libvirt connection URI (the worker's)"},
			&cli.DurationFlag{Name: "fence-after", Value: worker.DefaultFenceAfter, Usage: "fence when the latest proof that the host is ready is this old (the worker's --fence-after)"},
			&cli.DurationFlag{Name: "exit-when-idle", Usage: "exit when no worker has renewed for this long and no domain of the cluster runs, or libvirt has not answered for this long and none ran when it last did (0: never)"},
			&cli.StringSliceFlag{Name: "controller", Usage: "API address HOST:PORT of a controller to read from before a worker says where they are (repeatable)"},
			&cli.StringFlag{Name: "qemu-pid-dir", Value: fenceguard.DefaultQEMUPidDir, Usage: "with --libvirt-uri qemu:///system: where libvirt keeps each guest's pid file; the guard fences a guest by killing its QEMU process from there first (milliseconds; works when libvirtd hangs), then destroys it through libvirt (\"\": libvirt's destroy only)"},
			&cli.StringFlag{Name: "observation-log", Usage: "append one JSON line per domain the guard stops to FILE (the worker's --observation-log)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "trace, debug, info, warn or error", EnvVars: []string{"KUMOI_LOG_LEVEL"}},
			&cli.BoolFlag{Name: "log-json", Usage: "log JSON lines"},
			&cli.StringFlag{Name: "tls-ca", Usage: "TLS: the cluster CA's certificate (the worker's --tls-ca); the guard then reads over https and requires the controllers' server certificates", EnvVars: []string{"KUMOI_CACERT"}},
			&cli.StringFlag{Name: "tls-cert", Usage: "TLS: the certificate the guard presents (the worker's --tls-cert)", EnvVars: []string{"KUMOI_CLIENT_CERT"}},
			&cli.StringFlag{Name: "tls-key", Usage: "TLS: the key of --tls-cert (the worker's --tls-key)", EnvVars: []string{"KUMOI_CLIENT_KEY"}},
		},
		Action: runFenceGuard,
	}
}

func runFenceGuard(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("fence-guard takes no arguments; use flags")
	}
	if c.String("data-dir") == "" {
		return usagef("--data-dir is required: the worker's data directory, where the guard keeps its socket")
	}
	if c.String("node-id") == "" {
		return usagef("--node-id is required: the host's name, as the worker's --node-id")
	}
	if c.Duration("fence-after") <= 0 {
		return usagef("--fence-after must be positive")
	}
	if err := os.MkdirAll(c.String("data-dir"), 0o700); err != nil {
		return usagef("--data-dir: %v", err)
	}
	logger, err := agentLogger(c)
	if err != nil {
		return err
	}
	obs, err := observationLog(c)
	if err != nil {
		return err
	}
	drv, err := newLibvirtDriver(c, c.String("node-id"), 0, obs)
	if err != nil {
		return err
	}
	defer drv.Close()
	tlsFiles, err := agentTLS(c)
	if err != nil {
		return err
	}
	var tlsCfg *tls.Config
	scheme := "http://"
	if tlsFiles.Enabled() {
		if tlsCfg, err = tlsFiles.ClientConfigFor(tlsutil.RoleServer); err != nil {
			return usagef("%v", err)
		}
		scheme = "https://"
	}
	var ctrls []string
	for _, a := range c.StringSlice("controller") {
		ctrls = append(ctrls, scheme+a)
	}
	var kill func(string) error
	// Only the system daemon's guests have their pid files there (a
	// daemon on another socket keeps its own).
	if uri := c.String("libvirt-uri"); (uri == "qemu:///system" || uri == "qemu+unix:///system") && c.String("qemu-pid-dir") != "" {
		kill = fenceguard.QEMUKiller(c.String("qemu-pid-dir"))
	}
	g, err := fenceguard.New(fenceguard.Config{
		Kill:         kill,
		Dir:          c.String("data-dir"),
		NodeID:       c.String("node-id"),
		BindIP:       c.String("bind"),
		Driver:       drv,
		FenceAfter:   c.Duration("fence-after"),
		ExitWhenIdle: c.Duration("exit-when-idle"),
		Controllers:  ctrls,
		TLS:          tlsCfg,
		Logger:       logger,
	})
	if err != nil {
		return usagef("%v", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = g.Run(ctx)
	if errors.Is(err, fenceguard.ErrRunning) {
		logger.Info("not starting", "reason", err.Error())
		return nil
	}
	return err
}

// guardCommand is the command line a worker spawns its guard with.
func guardCommand(c *cli.Context, nodeID, dataDir string) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{exe, "fence-guard",
		"--data-dir", dataDir,
		"--node-id", nodeID,
		"--bind", c.String("bind"),
		"--libvirt-uri", c.String("libvirt-uri"),
		"--fence-after", c.Duration("fence-after").String(),
		"--exit-when-idle", (time.Minute).String(),
		"--log-level", c.String("log-level"),
	}
	if p := c.String("observation-log"); p != "" {
		args = append(args, "--observation-log", p)
	}
	if c.Bool("log-json") {
		args = append(args, "--log-json")
	}
	if f := (tlsutil.Files{CA: c.String("tls-ca"), Cert: c.String("tls-cert"), Key: c.String("tls-key")}); f.Enabled() {
		// The worker's certificate; absolute, whatever directory the
		// guard runs in.
		for _, p := range []struct{ flag, path string }{{"--tls-ca", f.CA}, {"--tls-cert", f.Cert}, {"--tls-key", f.Key}} {
			abs, err := filepath.Abs(p.path)
			if err != nil {
				return nil, err
			}
			args = append(args, p.flag, abs)
		}
	}
	return args, nil
}
