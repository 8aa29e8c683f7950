package controller

import (
	"context"
	"sort"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/resource"
)

// catchUpSlack is how far (in Raft entries) a server may be behind the
// answering node's commit index and still count as caught up: entries in
// flight between the leader and a healthy follower.
const catchUpSlack = 64

// Cluster returns the raft configuration, each server's role, last applied
// index and health (asked of the server's own API, in parallel), and the
// gossip members.
func (c *Controller) Cluster(ctx context.Context) (resource.Cluster, error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return resource.Cluster{}, mapRaftError(err)
	}
	lid, _ := c.Leader()
	out := resource.Cluster{ClusterID: c.ClusterID(), Leader: lid, Servers: []resource.Server{}, Members: c.members.List()}
	commit := c.raft.CommitIndex()
	var wg sync.WaitGroup
	servers := f.Configuration().Servers
	out.Servers = make([]resource.Server, len(servers))
	for i, s := range servers {
		srv := resource.Server{
			ID:      string(s.ID),
			Address: string(s.Address),
			Voter:   s.Suffrage == raft.Voter,
			Leader:  string(s.ID) == lid,
			Role:    resource.ServerVoter,
		}
		if s.Suffrage != raft.Voter {
			srv.Role = resource.ServerNonvoter
		}
		if string(s.ID) == c.cfg.NodeID {
			srv.Version, srv.Protocol = c.cfg.Version, c.cfg.MaxProtocol
		} else if m, ok := c.members.Controller(string(s.ID)); ok {
			srv.Version, srv.Protocol = m.Meta.Version, max(m.Meta.Proto, 1)
		}
		out.Servers[i] = srv
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.Servers[i].LastIndex, out.Servers[i].Health, out.Servers[i].RaftLogStore = c.serverHealth(ctx, string(s.ID), commit)
		}()
	}
	wg.Wait()
	sort.Slice(out.Servers, func(i, j int) bool { return out.Servers[i].ID < out.Servers[j].ID })
	return out, nil
}

// serverHealth asks a server (this node itself, or another through its
// API) for its applied index, judges it against commit, and says which
// Raft log store it has.
func (c *Controller) serverHealth(ctx context.Context, id string, commit uint64) (uint64, string, string) {
	var applied uint64
	logStore := ""
	if id == c.cfg.NodeID {
		applied, logStore = c.fsm.AppliedIndex(), c.parts.logStore
	} else {
		m, ok := c.members.Controller(id)
		if !ok {
			return 0, resource.ServerUnreachable, ""
		}
		st, err := c.peerStatus(ctx, m.Meta.API)
		if err != nil {
			return 0, resource.ServerUnreachable, ""
		}
		applied, logStore = st.AppliedIndex, st.RaftLogStore
	}
	if applied+catchUpSlack < commit {
		return applied, resource.ServerCatchingUp, logStore
	}
	return applied, resource.ServerOK, logStore
}
