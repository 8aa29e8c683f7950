// Package cli is the kumoi command line: one urfave/cli command per noun
// (vm, host, cluster, agent), each with its verbs as subcommands. Commands
// parse flags, call the Go SDK (package client) and render the answer as a
// table, JSON or YAML on the app's Writer; errors go to its ErrWriter as one
// line, with exit code 1 (or 2 for a mistake on the command line).
//
// Except for the agent command, nothing here talks to the cluster other than
// through package client.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
)

// Version is the kumoi version, set at build time with
// -ldflags "-X github.com/kumoi/kumoi/cli.Version=v1.2.3".
var Version = "0.1.0-dev"

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1   // the command failed
	exitUsage       = 2   // the command line is wrong
	exitInterrupted = 130 // SIGINT or SIGTERM
)

const appDescription = `kumoi manages a Kumoi cloud: physical hosts, the virtual machines on them, their
networks, images and volumes, and the controllers that keep the cluster's state. Every resource is an object with
the same verbs (create, get, list, update, delete), whatever its kind.

Every command except agent is a client of the controllers' HTTP API. Point it
at them with --addr or KUMOI_ADDR (several, comma-separated, are tried in
turn); flags may be given before or after the arguments. With ACLs on, give
an ACL token's secret with --token or KUMOI_TOKEN (see 'kumoi acl --help');
with TLS, https:// addresses and --ca-cert (and --client-cert/--client-key).

Examples:
   kumoi agent -dev                                  # a whole cluster in one process, 3 simulated hosts
   kumoi cluster status                              # leader, servers, members
   kumoi vm create web-1 --cpus 2 --memory 2GiB --label app=web --wait
   kumoi vm list -l app=web                          # filter by label
   kumoi vm stop web-1 --wait                        # also start, suspend, resume
   kumoi vm update web-1 --cpus 4                    # read-modify-write with CAS
   kumoi vm get web-1 -o yaml                        # the whole object
   kumoi host list                                   # state, allocated/capacity
   kumoi host drain hv-1                             # no new VMs on hv-1
   kumoi vm migrate web-1 --host hv-2 --wait         # move a stopped VM
   kumoi network create net1 --cidr 10.10.0.0/24     # addresses for VM NICs (nat by default)
   kumoi image create debian --file debian.qcow2     # a disk image in the workers' --image-dir
   kumoi vm create db --cpus 2 --memory 4GiB --network net1 --disk image=debian,size=10GiB
   kumoi volume create data --size 20GiB --persistent && kumoi volume attach data db
   kumoi shell                                       # Starlark REPL: vms("app=web"), ...
   kumoi run examples/capacity-report.star           # a script against the cluster
   kumoi policy apply ha-lost examples/ha-lost.star  # the leader runs it on its events
   kumoi host list -o json | jq '.[].name'
   kumoi vm list -t '{{range .}}{{.name}} {{.status.phase}}{{"\n"}}{{end}}'   # a Go template
   kumoi vm list --watch                             # redrawn on every change (also get, host list, ...)
   kumoi events --kind vm --type deleted             # follow the changes as they happen
   source <(kumoi completion bash)                   # complete commands, flags and object names (zsh, fish too)
   KUMOI_ADDR=10.0.0.1:7400,10.0.0.2:7400 kumoi vm list
   kumoi acl bootstrap                               # once per cluster: the management token
   KUMOI_TOKEN=<SecretID> kumoi acl whoami           # every command sends --token / KUMOI_TOKEN

ENVIRONMENT (a flag given on the command line wins over its variable):
   KUMOI_ADDR          --addr: the controllers' URLs, comma-separated
   KUMOI_TOKEN         --token: the ACL token's secret (also kumoi agent's own)
   KUMOI_OUTPUT        -o: table, json or yaml
   KUMOI_TEMPLATE      -t: a Go template for the output
   KUMOI_CACERT        --ca-cert: the CA to verify the controllers with
   KUMOI_CLIENT_CERT   --client-cert, with KUMOI_CLIENT_KEY (--client-key)
 kumoi agent:
   KUMOI_CONFIG        -config: its HCL configuration file
   KUMOI_NODE_ID       --node-id
   KUMOI_DATA_DIR      --data-dir (also kumoi fence-guard's)
   KUMOI_IMAGE_DIR     --image-dir (worker)
   KUMOI_STORAGE_DIR   --storage-dir (worker)
   KUMOI_RAFT_LOG_STORE  --raft-log-store (controller): wal or boltdb
   KUMOI_RAFT_WAL_SEGMENT_SIZE  --raft-wal-segment-size (controller)
   KUMOI_LOG_LEVEL     --log-level
   KUMOI_GOSSIP_KEY    --encrypt: gossip encryption key(s)
   KUMOI_ACL_INITIAL_MANAGEMENT  --acl-initial-management: the first management token's secret
 set for --fence-command: KUMOI_FENCE_HOST, KUMOI_FENCE_LABELS, KUMOI_FENCE_LABEL_<KEY>, KUMOI_CLUSTER_ID

Run 'kumoi <command> --help' for a command's options.`

// globalHelpFooter closes the help of every verb.
const globalHelpFooter = `
GLOBAL OPTIONS (anywhere on the line; see 'kumoi --help'):
   --addr URL[,URL...]   controllers to talk to [$KUMOI_ADDR]
   -o, --output FORMAT   table, json or yaml [$KUMOI_OUTPUT]
   --timeout DURATION    give up after this long (default: 30s; 5m with --wait)
   --token SECRET        ACL token to send [$KUMOI_TOKEN]
   --ca-cert FILE        CA certificate(s) to verify the controllers with [$KUMOI_CACERT]
   --client-cert FILE    client certificate, with --client-key [$KUMOI_CLIENT_CERT, $KUMOI_CLIENT_KEY]
`

// NewApp returns the kumoi command line. It writes to app.Writer and
// app.ErrWriter (stdout and stderr unless changed), never exits the
// process, and returns errors from Run for Main to report.
func NewApp() *cli.App {
	app := &cli.App{
		Name:                      "kumoi",
		HelpName:                  "kumoi",
		Usage:                     "manage a Kumoi IaaS cloud: VMs, networks, images, volumes, hosts and the controller cluster",
		UsageText:                 "kumoi [global options] <command> <verb> [options] [arguments]",
		Description:               appDescription,
		Version:                   Version,
		HideHelpCommand:           true,
		DisableSliceFlagSeparator: true,
		Flags:                     globalFlags(),
		Commands: []*cli.Command{
			vmCommand(),
			networkCommand(),
			projectCommand(),
			imageCommand(),
			volumeCommand(),
			hostCommand(),
			clusterCommand(),
			eventsCommand(),
			agentCommand(),
			fenceGuardCommand(),
			tlsCommand(),
			operatorCommand(),
			policyCommand(),
			aclCommand(),
			runCommand(),
			shellCommand(),
			completionCommand(),
			versionCommand(),
		},
		Before:         checkGlobalFlags,
		Action:         nounAction,
		OnUsageError:   onUsageError,
		ExitErrHandler: func(*cli.Context, error) {}, // Main reports errors and exits
		Writer:         os.Stdout,
		ErrWriter:      os.Stderr,
	}
	prepare(app.Commands)
	enableCompletion(app)
	return app
}

// prepare sets what urfave/cli does not inherit down the command tree.
func prepare(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.HideHelpCommand = true
		if cmd.OnUsageError == nil {
			cmd.OnUsageError = onUsageError
		}
		if len(cmd.Subcommands) > 0 {
			if cmd.Action == nil {
				cmd.Action = nounAction
			}
			prepare(cmd.Subcommands)
		}
	}
}

// nounAction runs for a command word that needs a verb: without one it
// shows the help, with an unknown one it says so.
func nounAction(c *cli.Context) error {
	if c.NArg() == 0 {
		if c.Command == nil || c.Command.Name == "" || c.Command.HelpName == c.App.HelpName {
			return cli.ShowAppHelp(c)
		}
		return cli.ShowSubcommandHelp(c)
	}
	where := c.App.HelpName
	if c.Command != nil && c.Command.HelpName != "" {
		where = c.Command.HelpName
	}
	return usagef("unknown command %q for '%s'; see '%s --help'", c.Args().First(), where, where)
}

// leaf finishes a verb's definition.
func leaf(cmd *cli.Command) *cli.Command {
	cmd.CustomHelpTemplate = cli.CommandHelpTemplate + globalHelpFooter
	return cmd
}

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, NewApp(), args)
}

// run runs app and reports its error on app.ErrWriter.
func run(ctx context.Context, app *cli.App, args []string) int {
	// A completion request (the shell scripts of kumoi completion) ends
	// with --generate-bash-completion: the words before it are permuted
	// as any command line's, the flag stays last.
	if n := len(args); n > 1 && args[n-1] == "--"+cli.BashCompletionFlag.Names()[0] {
		args = append(permuteArgs(app, args[:n-1]), args[n-1])
	} else {
		args = permuteArgs(app, args)
	}
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	code := exitError
	var ue *usageError
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ue):
		code = exitUsage
	case errors.As(err, &ec):
		code = ec.ExitCode()
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		code = exitInterrupted
	}
	if msg := describe(err); msg != "" {
		fmt.Fprintf(app.ErrWriter, "kumoi: %s\n", msg)
	}
	return code
}

// describe turns an error into the one line printed after "kumoi: ".
func describe(err error) string {
	var te *timeoutError
	var unreachable *client.UnreachableError
	var unknownCA x509.UnknownAuthorityError
	msg := err.Error()
	switch {
	case errors.As(err, &unknownCA):
		msg += " (give the CA certificate of the controllers with --ca-cert or KUMOI_CACERT)"
	case errors.As(err, &unreachable):
		msg += " (is the agent running? set --addr or KUMOI_ADDR)"
	case client.IsUnauthenticated(err):
		msg = unauthenticatedText(err)
	case errors.As(err, &te):
		msg = te.Error()
	case errors.Is(err, context.Canceled):
		msg = "interrupted"
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
}

// timeoutError is a command that ran out of --timeout.
type timeoutError struct {
	limit time.Duration
	err   error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("no answer within %s (raise --timeout, or check 'kumoi cluster status'): %v", e.limit, e.err)
}

func (e *timeoutError) Unwrap() error { return e.err }

// session is what a client command needs: a client, a context bounded by
// --timeout, and the output.
type session struct {
	ctx     context.Context
	cancel  context.CancelFunc
	client  *client.Client
	timeout time.Duration
}

// defaultWaitTimeout bounds a command run with --wait when --timeout is not
// given: VMs take a while to be placed and to boot.
const defaultWaitTimeout = 5 * time.Minute

// connect makes a client from the global flags. Call s.close when done.
func connect(c *cli.Context) (*session, error) { return dial(c, false) }

// connectWait is connect for a verb with a --wait flag: when it waits and
// --timeout is not given, it may take defaultWaitTimeout.
func connectWait(c *cli.Context) (*session, error) { return dial(c, c.Bool("wait")) }

// connectNamed starts a verb on one named object: it takes the verb's one
// NAME argument (what names the object in messages: "VM", "host") and
// connects. Call s.close when done.
func connectNamed(c *cli.Context, what string) (name string, s *session, err error) {
	return dialNamed(c, what, false)
}

// connectNamedWait is connectNamed for a verb with a --wait flag (see
// connectWait).
func connectNamedWait(c *cli.Context, what string) (name string, s *session, err error) {
	return dialNamed(c, what, c.Bool("wait"))
}

func dialNamed(c *cli.Context, what string, wait bool) (string, *session, error) {
	name, err := oneName(c, what)
	if err != nil {
		return "", nil, err
	}
	s, err := dial(c, wait)
	if err != nil {
		return "", nil, err
	}
	return name, s, nil
}

func dial(c *cli.Context, wait bool) (*session, error) {
	as, err := addrs(c)
	if err != nil {
		return nil, err
	}
	timeout := c.Duration(flagTimeout)
	attempt := timeout // one request against one controller
	if wait {
		if !c.IsSet(flagTimeout) {
			timeout = defaultWaitTimeout
		}
		attempt = min(timeout, client.DefaultTimeout)
	}
	cfg, err := clientConfig(c, as)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = attempt
	cl, err := client.New(cfg)
	if err != nil {
		return nil, usagef("%v", err)
	}
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	return &session{ctx: ctx, cancel: cancel, client: cl, timeout: timeout}, nil
}

func (s *session) close() { s.cancel() }

// fail wraps err for reporting: timeouts name --timeout.
func (s *session) fail(err error) error {
	var unreachable *client.UnreachableError
	if errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &unreachable) && s.ctx.Err() != nil {
		return &timeoutError{limit: s.timeout, err: err}
	}
	return err
}

func versionCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "version",
		Usage:     "print the version of this kumoi binary",
		UsageText: "kumoi version [-o json|yaml]",
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			v := map[string]string{
				"version": Version,
				"go":      runtime.Version(),
				"os_arch": runtime.GOOS + "/" + runtime.GOARCH,
			}
			if done, err := printData(c, v); done {
				return err
			}
			_, err := fmt.Fprintf(c.App.Writer, "kumoi %s (%s %s)\n", Version, v["go"], v["os_arch"])
			return err
		},
	})
}

// writer is a shorthand for the command's standard output.
func writer(c *cli.Context) io.Writer { return c.App.Writer }

// Names of the global flags that say who the client is and how it trusts
// the controllers.
const (
	flagToken      = "token"
	flagCACert     = "ca-cert"
	flagClientCert = "client-cert"
	flagClientKey  = "client-key"
)

// securityFlags are the global flags of ACLs and TLS (docs/security.md).
func securityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    flagToken,
			Usage:   "`SECRET` of the ACL token to send with every request (the secret_id of 'kumoi acl bootstrap' or 'kumoi acl token create')",
			EnvVars: []string{client.EnvToken},
		},
		&cli.StringFlag{
			Name:      flagCACert,
			Usage:     "PEM `FILE` of the CA certificate(s) that the controllers' HTTPS certificates must be signed by",
			EnvVars:   []string{"KUMOI_CACERT"},
			TakesFile: true,
		},
		&cli.StringFlag{
			Name:      flagClientCert,
			Usage:     "PEM `FILE` of the client certificate to present over HTTPS (with --client-key)",
			EnvVars:   []string{"KUMOI_CLIENT_CERT"},
			TakesFile: true,
		},
		&cli.StringFlag{
			Name:      flagClientKey,
			Usage:     "PEM `FILE` of the private key of --client-cert",
			EnvVars:   []string{"KUMOI_CLIENT_KEY"},
			TakesFile: true,
		},
	}
}

// clientConfig is the one place where the global flags become a
// client.Config: every command that talks to the cluster (and the scripts
// it runs) sends the same token and trusts the same certificates.
func clientConfig(c *cli.Context, addrs []string) (client.Config, error) {
	cfg := client.Config{Addrs: addrs, Token: strings.TrimSpace(c.String(flagToken)), UserAgent: "kumoi/" + Version}
	tlsCfg, err := tlsConfigFromFlags(c)
	if err != nil {
		return cfg, err
	}
	cfg.TLS = tlsCfg
	return cfg, nil
}

// tlsConfigFromFlags builds the client side of TLS from --ca-cert,
// --client-cert and --client-key: nil, nil when none is set (the system's
// roots then verify an https:// address).
func tlsConfigFromFlags(c *cli.Context) (*tls.Config, error) {
	caFile, certFile, keyFile := c.String(flagCACert), c.String(flagClientCert), c.String(flagClientKey)
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	if (certFile == "") != (keyFile == "") {
		return nil, usagef("--client-cert and --client-key go together (KUMOI_CLIENT_CERT, KUMOI_CLIENT_KEY): give both or neither")
	}
	return client.TLSConfigFromFiles(caFile, certFile, keyFile)
}

// unauthenticatedText explains a 401: the request had no token, or one the
// cluster does not know.
func unauthenticatedText(err error) string {
	msg := "the API refused the request without a valid token (401): set --token or KUMOI_TOKEN"
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Message != "" {
		msg += " (the API said: " + ae.Message + ")"
	}
	return msg
}
