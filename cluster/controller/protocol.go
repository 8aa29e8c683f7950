package controller

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Version gating for rolling upgrades: every controller advertises in
// gossip the highest log protocol it speaks (fsm.ProtocolVersion, or
// Config.MaxProtocol); the leader proposes a command only when every
// server of the Raft configuration (voters and non-voters: all apply the
// log) speaks the protocol it needs. A replica therefore never meets an
// entry it cannot apply (it would halt), and a new feature works once the
// last old node is upgraded (docs/upgrade.md).

// checkProtocol refuses a command that some server cannot apply, naming
// the servers to upgrade.
func (c *Controller) checkProtocol(t fsm.MessageType, req any) error {
	_, err := c.checkProtocolOf(t, req)
	return err
}

// checkProtocolOf is checkProtocol that also returns the protocol every
// server speaks (the encoding to propose req in: fsm.EncodeFor).
func (c *Controller) checkProtocolOf(t fsm.MessageType, req any) (int, error) {
	if ml, _ := c.gossipParts(); ml == nil {
		// No gossip (in-process tests): every node is this build.
		return c.cfg.MaxProtocol, nil
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return 0, mapRaftError(err)
	}
	servers := f.Configuration().Servers
	least := fsm.ProtocolVersion
	for _, s := range servers {
		least = min(least, c.serverProto(s.ID))
	}
	if least >= fsm.ProtocolVersion {
		return least, nil // every server speaks whatever a command can need
	}
	return least, c.refuseOld(servers, least, t, req)
}

// refuseOld is checkProtocol's answer when some server speaks only least.
func (c *Controller) refuseOld(servers []raft.Server, least int, t fsm.MessageType, req any) error {
	// Only now what the command needs, which may decode its spec: no
	// cost for a cluster that is not being upgraded.
	need := fsm.RequiredProtocol(t, req)
	if need <= max(least, 1) {
		return nil // every build speaks protocol 1
	}
	var old []string
	for _, s := range servers {
		if p, v := c.serverProtocol(s.ID); p < need {
			old = append(old, fmt.Sprintf("%s (%s)", s.ID, v))
		}
	}
	if len(old) == 0 {
		return nil
	}
	verb, them := "do", "them"
	if len(old) == 1 {
		verb, them = "does", "it"
	}
	return fmt.Errorf("%w: a %s command needs log protocol %d, which %s %s not speak yet; upgrade %s (docs/upgrade.md), then retry",
		resource.ErrUpgradeRequired, t, need, strings.Join(old, ", "), verb, them)
}

// serverProto is the protocol a server speaks, as far as this node knows
// (serverProtocol without the words).
func (c *Controller) serverProto(id raft.ServerID) int {
	if string(id) == c.cfg.NodeID {
		return c.cfg.MaxProtocol
	}
	m, ok := c.members.Controller(string(id))
	switch {
	case !ok:
		return 0
	case m.Meta.Proto == 0:
		return 1
	}
	return m.Meta.Proto
}

// serverProtocol is the protocol a server speaks, as far as this node
// knows, and how to name its build.
func (c *Controller) serverProtocol(id raft.ServerID) (int, string) {
	if string(id) == c.cfg.NodeID {
		return c.cfg.MaxProtocol, fmt.Sprintf("version %s, protocol %d", c.cfg.Version, c.cfg.MaxProtocol)
	}
	m, ok := c.members.Controller(string(id))
	switch {
	case !ok:
		return 0, "not seen in gossip"
	case m.Meta.Proto == 0:
		return 1, fmt.Sprintf("version %s, protocol 1", cmp.Or(m.Meta.Version, "unknown"))
	}
	return m.Meta.Proto, fmt.Sprintf("version %s, protocol %d", cmp.Or(m.Meta.Version, "unknown"), m.Meta.Proto)
}
