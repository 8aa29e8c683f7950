package cli

import (
	"cmp"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:      "cluster",
		Usage:     "inspect and change the controller cluster",
		UsageText: "kumoi cluster <status|members|remove> [options]",
		Description: `The controllers replicate the cluster's state with Raft (the servers) and
watch every node with gossip (the members: controllers and workers).

Examples:
   kumoi cluster status
   kumoi cluster members
   kumoi cluster remove ctl-3`,
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:      "status",
				Usage:     "show the leader, the Raft servers and the gossip members",
				UsageText: "kumoi cluster status [-o table|json|yaml]",
				Description: `Shows the cluster's identity, who leads, each Raft server's role (voter, or
nonvoter while a new controller catches up before the leader promotes it),
the last index it applied, its health (ok, catching-up, unreachable), its
version and the log protocol it speaks (docs/upgrade.md), and which nodes
gossip reports alive. -o json prints the GET /v1/cluster object
unchanged.`,
				Action: clusterStatus,
			}),
			leaf(&cli.Command{
				Name:      "members",
				Usage:     "list the gossip members (controllers and workers)",
				UsageText: "kumoi cluster members [-o table|json|yaml]",
				Action:    clusterMembers,
			}),
			leaf(&cli.Command{
				Name:      "remove",
				Usage:     "remove a controller from the Raft configuration",
				UsageText: "kumoi cluster remove NODE_ID",
				Description: `Removes a controller (by its node ID, the SERVER column of 'kumoi cluster
status') from the Raft voters, e.g. after it was lost for good. Removing
servers can cost the cluster its quorum: keep a majority alive.

Example:
   kumoi cluster remove ctl-3`,
				Action: clusterRemove,
			}),
		},
	}
}

func getCluster(c *cli.Context) (*resource.Cluster, error) {
	cl, _, err := getClusterStatus(c)
	return cl, err
}

// getClusterStatus reads GET /v1/cluster and, for the ACL line of
// 'cluster status', the answering controller's GET /v1/status (nil if it
// cannot be read).
func getClusterStatus(c *cli.Context) (*resource.Cluster, *resource.Status, error) {
	if err := noArgs(c); err != nil {
		return nil, nil, err
	}
	s, err := connect(c)
	if err != nil {
		return nil, nil, err
	}
	defer s.close()
	cl, err := s.client.Cluster(s.ctx)
	if err != nil {
		return nil, nil, s.fail(err)
	}
	st, err := s.client.Status(s.ctx)
	if err != nil {
		st = nil
	}
	return cl, st, nil
}

// aclLine says whether ACLs are on and bootstrapped.
func aclLine(st *resource.Status) string {
	switch {
	case st == nil:
		return "unknown"
	case !st.ACL.Enabled:
		return "off (anyone who reaches the API may do anything)"
	case !st.ACL.Bootstrapped:
		return "on, not bootstrapped (kumoi acl bootstrap)"
	}
	return "on"
}

func clusterStatus(c *cli.Context) error {
	cl, st, err := getClusterStatus(c)
	if err != nil {
		return err
	}
	if done, err := printData(c, cl); done {
		return err
	}
	w := writer(c)
	leader := cl.Leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(w, "Cluster: %s\n", cmp.Or(cl.ClusterID, "(no identity yet: the cluster has not elected its first leader)"))
	fmt.Fprintf(w, "Leader: %s\n", leader)
	fmt.Fprintf(w, "ACLs: %s\n\n", aclLine(st))
	t := newTable(w, "SERVER", "ADDRESS", "VOTER", "LEADER", "ROLE", "LAST-INDEX", "HEALTH", "VERSION", "PROTOCOL")
	for _, s := range cl.Servers {
		t.row(s.ID, s.Address, boolCell(s.Voter), boolCell(s.Leader), cmp.Or(s.Role, "-"), uintCell(s.LastIndex), cmp.Or(s.Health, "-"),
			cmp.Or(s.Version, "-"), uintCell(uint64(s.Protocol)))
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return membersTable(w, cl.Members)
}

func membersTable(w io.Writer, members []resource.Member) error {
	t := newTable(w, "MEMBER", "ADDRESS", "STATUS", "ROLE")
	for _, m := range members {
		t.row(m.Name, m.Address, m.Status, m.Role)
	}
	return t.flush()
}

func clusterMembers(c *cli.Context) error {
	cl, err := getCluster(c)
	if err != nil {
		return err
	}
	if done, err := printData(c, cl.Members); done {
		return err
	}
	return membersTable(writer(c), cl.Members)
}

func clusterRemove(c *cli.Context) error {
	id, s, err := connectNamed(c, "node ID")
	if err != nil {
		return err
	}
	defer s.close()
	res, err := s.client.RemoveServer(s.ctx, id)
	if client.IsNotFound(err) {
		return fmt.Errorf("server %q is not in the Raft configuration; see 'kumoi cluster status'", id)
	}
	if err != nil {
		return s.fail(err)
	}
	if done, err := printData(c, res); done {
		return err
	}
	_, err = fmt.Fprintf(writer(c), "removed server %s (raft index %d)\n", res.Removed, res.Index)
	return err
}
