package cli

import (
	"cmp"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
)

// raftCommand is 'kumoi operator raft': the Raft servers, under the names
// Consul and Nomad operators know. 'kumoi cluster status' and 'kumoi
// cluster remove' show and do the same (docs/operations.md, "One
// vocabulary").
func raftCommand() *cli.Command {
	return &cli.Command{
		Name:      "raft",
		Usage:     "the controllers' Raft servers: list, remove, hand leadership over",
		UsageText: "kumoi operator raft <list-peers|remove-peer|transfer-leader> [options]",
		Description: `The Raft servers are the controllers that replicate the state. These verbs
are the ones of 'consul operator raft' and 'nomad operator raft'; 'kumoi
cluster status' shows the same servers with the gossip members, and 'kumoi
cluster remove' is remove-peer.

Examples:
   kumoi operator raft list-peers
   kumoi operator raft transfer-leader c2
   kumoi operator raft remove-peer c3`,
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:      "list-peers",
				Usage:     "list the Raft servers: leader, voter, health, last index, version, protocol, Raft log store",
				UsageText: "kumoi operator raft list-peers [-o table|json|yaml]",
				Action:    raftListPeers,
			}),
			leaf(&cli.Command{
				Name:      "remove-peer",
				Usage:     "remove a controller from the Raft configuration (= kumoi cluster remove)",
				UsageText: "kumoi operator raft remove-peer NODE_ID [-o json|yaml]",
				Description: `Removes a controller (by its node ID) from the Raft servers, e.g. after it
was lost for good (docs/operations.md, "Replacing a failed controller").
Keep a majority alive.`,
				Action: clusterRemove,
			}),
			leaf(&cli.Command{
				Name:      "transfer-leader",
				Usage:     "hand leadership to another voter (NODE_ID, or any)",
				UsageText: "kumoi operator raft transfer-leader [NODE_ID] [-o json|yaml]",
				Description: `Asks the leader to hand leadership over — to NODE_ID, or to the voter Raft
picks — and returns once the new leader won, e.g. before maintenance on the
leader's machine (a graceful stop of the leader does the same by itself).
Writes in flight at that moment fail with a retryable error.`,
				Action: raftTransferLeader,
			}),
		},
	}
}

func raftListPeers(c *cli.Context) error {
	cl, err := getCluster(c)
	if err != nil {
		return err
	}
	if done, err := printData(c, cl.Servers); done {
		return err
	}
	t := newTable(writer(c), "NODE", "ADDRESS", "STATE", "VOTER", "LAST-INDEX", "HEALTH", "VERSION", "PROTOCOL", "LOG-STORE")
	for _, s := range cl.Servers {
		state := "follower"
		switch {
		case s.Leader:
			state = "leader"
		case !s.Voter:
			state = cmp.Or(s.Role, "nonvoter")
		}
		t.row(s.ID, s.Address, state, boolCell(s.Voter), uintCell(s.LastIndex), cmp.Or(s.Health, "-"),
			cmp.Or(s.Version, "-"), uintCell(uint64(s.Protocol)), cmp.Or(s.RaftLogStore, "-"))
	}
	return t.flush()
}

func raftTransferLeader(c *cli.Context) error {
	to := ""
	switch c.NArg() {
	case 0:
	case 1:
		to = c.Args().First()
	default:
		return usagef("too many arguments %q: %s takes at most one NODE_ID", c.Args().Slice()[1:], c.Command.HelpName)
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	res, err := s.client.TransferLeader(s.ctx, to)
	switch {
	case client.IsNotFound(err):
		return fmt.Errorf("server %q is not in the Raft configuration; see 'kumoi operator raft list-peers'", to)
	case err != nil:
		return s.fail(err)
	}
	if done, err := printData(c, res); done {
		return err
	}
	_, err = fmt.Fprintf(writer(c), "leadership moved from %s to %s\n", res.From, res.To)
	return err
}
