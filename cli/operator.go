package cli

import (
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/cluster/membership"
)

// operatorCommand is 'kumoi operator': tools for the cluster's operator
// (snapshots; gossip keys, made locally without a cluster).
func operatorCommand() *cli.Command {
	return &cli.Command{
		Name:  "operator",
		Usage: "operator tools: snapshots (backup and restore), Raft servers, debug bundles, gossip keys",
		Subcommands: []*cli.Command{
			snapshotCommand(),
			raftCommand(),
			debugCommand(),
			{
				Name:  "gossip",
				Usage: "gossip encryption",
				Subcommands: []*cli.Command{
					leaf(&cli.Command{
						Name:      "keygen",
						Usage:     "print a new random gossip encryption key (32 bytes, base64) for 'kumoi agent --encrypt'",
						UsageText: "kumoi operator gossip keygen [-o json|yaml]",
						Description: `Prints a new AES-256 key for gossip encryption. Give the same key to every
agent of the cluster (controllers and workers) with --encrypt KEY or
KUMOI_GOSSIP_KEY; agents without it cannot join, and packets without it are
dropped. To rotate keys with rolling restarts: add the new key as the second
--encrypt everywhere, then make it the first, then drop the old one
(docs/gossip.md).`,
						Action: func(c *cli.Context) error {
							if err := noArgs(c); err != nil {
								return err
							}
							k, err := membership.GenerateKey()
							if err != nil {
								return err
							}
							if done, err := printData(c, map[string]string{"key": k}); done {
								return err
							}
							_, err = fmt.Fprintln(writer(c), k)
							return err
						},
					}),
				},
			},
		},
	}
}

// encryptFlag is the agent's --encrypt (controllers and workers alike).
func encryptFlag() cli.Flag {
	return &cli.StringSliceFlag{
		Name:    "encrypt",
		EnvVars: []string{"KUMOI_GOSSIP_KEY"},
		Usage: "gossip encryption `KEY`: base64 of 16, 24 or 32 bytes ('kumoi operator gossip keygen'), the same on every agent; " +
			"repeatable or comma-separated: the first encrypts, all decrypt (rotate: add the new key second everywhere, then first, then drop the old; docs/gossip.md)",
	}
}

// gossipSecurity is the agent's gossip protection from its flags:
// --encrypt (the TLS configurations join it when the agent has TLS files).
func gossipSecurity(c *cli.Context) (membership.Security, error) {
	keys, err := membership.ParseKeys(c.StringSlice("encrypt"))
	if err != nil {
		return membership.Security{}, usagef("%v", err)
	}
	sec := membership.Security{Keys: keys}
	// With the agent's TLS files, gossip streams are TLS too (the peer's
	// role is checked by membership itself: not MutualServerConfig, or
	// workers could not join).
	files, err := agentTLS(c)
	if err != nil || !files.Enabled() {
		return sec, err
	}
	if sec.ServerTLS, err = files.ServerConfig(); err != nil {
		return sec, usagef("%v", err)
	}
	if sec.ClientTLS, err = files.ClientConfig(); err != nil {
		return sec, usagef("%v", err)
	}
	return sec, nil
}

// warnGossip warns, once the agent has started, of what its gossip
// flags leave open (docs/gossip.md).
func warnGossip(c *cli.Context, logger hclog.Logger) {
	if sec, err := gossipSecurity(c); err == nil {
		membership.WarnUnprotected(logger, sec)
	}
}
