package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/internal/tlsutil"
)

func tlsCommand() *cli.Command {
	return &cli.Command{
		Name:      "tls",
		Usage:     "create the cluster's CA and the certificates of its controllers, workers and clients",
		UsageText: "kumoi tls <ca|cert> create [options]",
		Description: `Kumoi encrypts and authenticates its API, Raft, forwarding between controllers
and the calls of workers and fence guards with TLS certificates of the
cluster's own CA (ECDSA P-256, made here with Go's crypto/x509: no OpenSSL
needed). A certificate's role is a DNS name in it: server.kumoi (controllers),
worker.kumoi (workers and their fence guards), client.kumoi (operators).
Controllers accept Raft connections only from server certificates of the CA;
workers and controllers check that the controllers they call present one. See
docs/tls.md.

Examples:
   kumoi tls ca create --out /etc/kumoi/tls/ca
   kumoi tls cert create --server --ca /etc/kumoi/tls/ca --node-id c1 --ip 10.0.0.1 --out /etc/kumoi/tls/c1
   kumoi tls cert create --worker --ca /etc/kumoi/tls/ca --node-id hv1 --out /etc/kumoi/tls/hv1
   kumoi tls cert create --client --ca /etc/kumoi/tls/ca --node-id alice --out ~/.kumoi/alice
   kumoi agent --controller ... --tls-ca /etc/kumoi/tls/ca.pem \
       --tls-cert /etc/kumoi/tls/c1.pem --tls-key /etc/kumoi/tls/c1-key.pem`,
		Subcommands: []*cli.Command{
			{
				Name:        "ca",
				Usage:       "the cluster's certificate authority",
				UsageText:   "kumoi tls ca create --out DIR/ca",
				Subcommands: []*cli.Command{tlsCACreateCommand()},
			},
			{
				Name:        "cert",
				Usage:       "certificates signed by the cluster's CA",
				UsageText:   "kumoi tls cert create --server|--worker|--client --ca DIR/ca --node-id ID --out DIR/NAME",
				Subcommands: []*cli.Command{tlsCertCreateCommand()},
			},
		},
	}
}

func tlsCACreateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "create",
		Usage:     "create a new CA: writes PREFIX.pem (give it to every agent and client as --tls-ca / --ca-cert) and PREFIX-key.pem (keep it offline)",
		UsageText: "kumoi tls ca create --out DIR/ca [--days 1825] [--force]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "PREFIX of the files to write: PREFIX.pem and PREFIX-key.pem (mode 0600)"},
			&cli.IntFlag{Name: "days", Value: int(tlsutil.DefaultCAValidity / (24 * time.Hour)), Usage: "how many days the CA is valid"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite existing files (every certificate of the old CA stops being trusted)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			out, err := tlsOut(c)
			if err != nil {
				return err
			}
			if c.Int("days") <= 0 {
				return usagef("--days must be positive")
			}
			if err := tlsutil.CreateCAValid(out, time.Duration(c.Int("days"))*24*time.Hour); err != nil {
				return tlsWriteErr(err)
			}
			_, err = fmt.Fprintf(writer(c), "==> CA certificate: %s\n==> CA key:         %s (keep it secret: it signs certificates)\n",
				tlsutil.CertPath(out), tlsutil.KeyPath(out))
			return err
		},
	})
}

func tlsCertCreateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:  "create",
		Usage: "create a certificate of one role, signed by the CA",
		UsageText: `kumoi tls cert create --server|--worker|--client --ca DIR/ca --node-id ID --out DIR/NAME
                       [--ip IP ...] [--dns NAME ...] [--days 365] [--force]`,
		Description: `Writes DIR/NAME.pem and DIR/NAME-key.pem (mode 0600). The common name is
<role>.<node id>. A --server certificate carries server.kumoi and is valid
for localhost, 127.0.0.1, ::1 and every --ip and --dns given: list the
addresses and names clients dial the controller by (its --bind address at
least); controllers and workers check server.kumoi whatever address they dial.
A --worker certificate carries worker.kumoi, a --client one client.kumoi.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "server", Usage: "a controller's certificate (API, Raft, forwarding)"},
			&cli.BoolFlag{Name: "worker", Usage: "a worker's certificate (its calls and its fence guard's)"},
			&cli.BoolFlag{Name: "client", Usage: "an operator's or a program's client certificate"},
			&cli.StringFlag{Name: "ca", Usage: "PREFIX of the CA (PREFIX.pem, PREFIX-key.pem), as given to 'kumoi tls ca create --out'"},
			&cli.StringFlag{Name: "node-id", Usage: "the node's --node-id (or a client's name): the common name is <role>.<node id>"},
			&cli.StringFlag{Name: "out", Usage: "PREFIX of the files to write: PREFIX.pem and PREFIX-key.pem"},
			&cli.StringSliceFlag{Name: "ip", Usage: "with --server: an address the certificate is valid for (repeatable)"},
			&cli.StringSliceFlag{Name: "dns", Usage: "with --server: a DNS name the certificate is valid for (repeatable)"},
			&cli.IntFlag{Name: "days", Value: int(tlsutil.DefaultCertValidity / (24 * time.Hour)), Usage: "how many days the certificate is valid (at most as long as the CA)"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite existing files"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			var roles []tlsutil.Role
			for _, r := range []tlsutil.Role{tlsutil.RoleServer, tlsutil.RoleWorker, tlsutil.RoleClient} {
				if c.Bool(string(r)) {
					roles = append(roles, r)
				}
			}
			if len(roles) != 1 {
				return usagef("give exactly one of --server, --worker or --client")
			}
			role := roles[0]
			for _, f := range []string{"ca", "node-id", "out"} {
				if c.String(f) == "" {
					return usagef("--%s is required; see 'kumoi tls cert create --help'", f)
				}
			}
			var ips []net.IP
			for _, s := range c.StringSlice("ip") {
				ip := net.ParseIP(s)
				if ip == nil {
					return usagef("--ip %q is not an IP address", s)
				}
				ips = append(ips, ip)
			}
			dns := c.StringSlice("dns")
			if role != tlsutil.RoleServer && (len(ips) > 0 || len(dns) > 0) {
				return usagef("--ip and --dns are for --server certificates (workers and clients are checked by their role)")
			}
			if c.Int("days") <= 0 {
				return usagef("--days must be positive")
			}
			ca := c.String("ca")
			if _, err := os.Stat(tlsutil.KeyPath(ca)); err != nil {
				return usagef("--ca %s: no CA key %s (give the PREFIX used with 'kumoi tls ca create --out')", ca, tlsutil.KeyPath(ca))
			}
			out, err := tlsOut(c)
			if err != nil {
				return err
			}
			err = tlsutil.CreateCertValid(role, ca, c.String("node-id"), ips, dns, out, time.Duration(c.Int("days"))*24*time.Hour)
			if err != nil {
				return tlsWriteErr(err)
			}
			_, err = fmt.Fprintf(writer(c), "==> %s certificate: %s\n==> %s key:         %s\n",
				role, tlsutil.CertPath(out), role, tlsutil.KeyPath(out))
			return err
		},
	})
}

// tlsOut checks --out, makes its directory and, with --force, removes the
// files it names.
func tlsOut(c *cli.Context) (string, error) {
	out := c.String("out")
	if out == "" {
		return "", usagef("--out is required: the prefix of the files to write, such as DIR/ca")
	}
	if filepath.Base(out) == "." || filepath.Base(out) == string(filepath.Separator) {
		return "", usagef("--out must name a file prefix such as DIR/ca")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	for _, p := range []string{tlsutil.CertPath(out), tlsutil.KeyPath(out)} {
		_, err := os.Lstat(p)
		switch {
		case err != nil:
		case !c.Bool("force"):
			return "", fmt.Errorf("%s exists; not overwriting it (use --force to replace it)", p)
		default:
			if err := os.Remove(p); err != nil {
				return "", err
			}
		}
	}
	return out, nil
}

func tlsWriteErr(err error) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w; not overwriting (use --force to replace it)", err)
	}
	return err
}
