package controller

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/kumoi/kumoi/cluster/membership"
)

// startGossip joins the controller to the gossip pool: it advertises its
// API and Raft addresses and --bootstrap-expect, records every member in
// c.members (waking the voter reconciler on each change), joins through
// --join in the background, heals partitions, and starts the bootstrap
// loop of a controller without state. Agents of another cluster are
// refused (membership.Delegate).
func (c *Controller) startGossip() error {
	// A new node advertises its Raft address only once admitted
	// (admission.go).
	fresh := !c.admitted.Load()
	meta := membership.Meta{
		ID: c.cfg.NodeID, Role: membership.RoleController, Cluster: c.ClusterID(),
		Version: c.cfg.Version, Proto: c.cfg.MaxProtocol,
		API: c.cfg.APIAddr(), Raft: c.cfg.RaftAddr(), Expect: c.cfg.BootstrapExpect,
		DownGraceMS: c.cfg.HostDownGrace.Milliseconds(),
	}
	if fresh {
		meta.Raft = ""
	}
	d, err := membership.NewDelegate(meta, c.members, c.triggerReconcile, c.cfg.Logger.Named("gossip"))
	if err != nil {
		return err
	}
	ml, err := membership.Create(membership.Options{
		Name: c.cfg.NodeID, BindIP: c.cfg.BindIP, Port: c.cfg.GossipPort,
		ProbeInterval: c.cfg.GossipProbeInterval, ProbeTimeout: c.cfg.GossipProbeTimeout, SuspicionMult: c.cfg.GossipSuspicionMult,
		Security: c.cfg.GossipSecurity,
		Logger:   c.cfg.Logger.Named("gossip"),
	}, d)
	if err != nil {
		return err
	}
	c.gossipMu.Lock()
	c.gossip, c.gossipDelegate = ml, d
	c.gossipMu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		membership.Reconnect(ml, c.members, c.cfg.NodeID, c.cfg.Join, 2*time.Second, c.shutdownCh)
	}()
	if fresh {
		c.wg.Add(1)
		go c.admit()
	}
	if len(c.cfg.Join) > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			membership.Join(ml, c.cfg.Join, c.logger, c.shutdownCh)
		}()
	}
	// A node that already belongs to a cluster (its log, or its data
	// directory, says so) never bootstraps another.
	if c.cfg.BootstrapExpect > 0 && !c.parts.hasState && c.ClusterID() == "" {
		c.wg.Add(1)
		go c.bootstrapLoop()
	}
	return nil
}

// gossipParts returns the memberlist and delegate (nil before gossip
// starts, and with DisableGossip).
func (c *Controller) gossipParts() (*memberlist.Memberlist, *membership.Delegate) {
	c.gossipMu.Lock()
	defer c.gossipMu.Unlock()
	return c.gossip, c.gossipDelegate
}

// peerCertTimeout bounds one certificate check of a gossip member.
const peerCertTimeout = 2 * time.Second

// peerCertRetry is how long a failed certificate check stands before the
// member is checked again.
const peerCertRetry = 5 * time.Second

// peerCertChecks remembers, per gossip member, the outcome of the last
// check of its certificate (at the address it was made at): with TLS, a
// controller member is made a voter only if its Raft address presents a
// certificate of the cluster CA with the server role, and a worker member
// is made a host only if its gossip address presents one with the worker
// (or server) role. Gossip metadata alone proves nothing: without the
// gossip key, anyone can send memberlist packets.
type peerCertChecks struct {
	mu     sync.Mutex
	checks map[string]*peerCertCheck // "raft/<id>" or "worker/<gossip name>"
}

type peerCertCheck struct {
	addr    string
	running bool
	err     error     // nil: passed (once done)
	at      time.Time // when the last check ended
	logged  time.Time // when its refusal was last logged
}

// maxPeerCertChecks bounds the remembered checks: members come and go,
// and a stranger may announce many names.
const maxPeerCertChecks = 4096

// add records check ch under key (pc.mu held), first forgetting the
// finished checks older than a minute if there are too many.
func (pc *peerCertChecks) add(key string, ch *peerCertCheck) {
	if pc.checks == nil {
		pc.checks = map[string]*peerCertCheck{}
	}
	if len(pc.checks) >= maxPeerCertChecks {
		for k, old := range pc.checks {
			if !old.running && time.Since(old.at) > time.Minute {
				delete(pc.checks, k)
			}
		}
	}
	pc.checks[key] = ch
}

// raftCertOK checks (or recalls) that controller member m's Raft address
// presents a certificate of the cluster CA with the server role. Without
// TLS it says yes: gossip and Raft are unauthenticated then (the agent
// warns at start).
func (c *Controller) raftCertOK(m membership.Member) error {
	sec := c.cfg.GossipSecurity
	if !sec.TLS() {
		return nil
	}
	key, addr := "raft/"+m.Meta.ID, m.Meta.Raft
	if addr == "" {
		return errors.New("it advertises no raft address")
	}
	pc := &c.peerCerts
	pc.mu.Lock()
	if pc.checks == nil {
		pc.checks = map[string]*peerCertCheck{}
	}
	ch := pc.checks[key]
	if ch != nil && ch.addr == addr && !ch.at.IsZero() && (ch.err == nil || time.Since(ch.at) < peerCertRetry) {
		err := ch.err
		pc.mu.Unlock()
		return err
	}
	if ch == nil || ch.addr != addr {
		ch = &peerCertCheck{addr: addr}
		pc.add(key, ch)
	}
	pc.mu.Unlock()

	_, err := membership.VerifyPeerRole(addr, net.ParseIP(c.cfg.BindIP), sec.ClientTLS, peerCertTimeout, membership.CertRoleServer)
	if err != nil {
		err = fmt.Errorf("its raft address %s does not present a server certificate of the cluster CA: %w", addr, err)
	}
	c.recordCertCheck(ch, err, "not making a controller a raft server: its certificate is refused", "server", m.Meta.ID, "raft_address", addr)
	return err
}

// workerCertOK reports whether worker member m's gossip address was seen
// to present a certificate of the cluster CA with the worker (or server)
// role. A member not checked yet is checked in the background (false
// until then): the hosts loop asks again within a second. Without TLS it
// says yes.
func (c *Controller) workerCertOK(m membership.Member) bool {
	sec := c.cfg.GossipSecurity
	if !sec.TLS() {
		return true
	}
	key := "worker/" + m.Name
	pc := &c.peerCerts
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.checks == nil {
		pc.checks = map[string]*peerCertCheck{}
	}
	ch := pc.checks[key]
	if ch != nil && ch.addr == m.Addr {
		switch {
		case ch.running:
			return false
		case ch.err == nil:
			return true
		case time.Since(ch.at) < peerCertRetry:
			return false
		}
	} else {
		ch = &peerCertCheck{addr: m.Addr}
		pc.add(key, ch)
	}
	ch.running = true
	go func() {
		_, err := membership.VerifyPeerRole(m.Addr, net.ParseIP(c.cfg.BindIP), sec.ClientTLS, peerCertTimeout, membership.CertRoleWorker, membership.CertRoleServer)
		if err != nil {
			err = fmt.Errorf("its gossip address %s does not present a worker certificate of the cluster CA: %w", m.Addr, err)
		}
		c.recordCertCheck(ch, err, "not making a worker a host: its certificate is refused", "host", m.Meta.ID, "gossip_address", m.Addr)
	}()
	return false
}

// recordCertCheck ends check ch with err, logging a refusal at most every
// 30 s per member.
func (c *Controller) recordCertCheck(ch *peerCertCheck, err error, msg string, kv ...any) {
	pc := &c.peerCerts
	pc.mu.Lock()
	ch.running, ch.err, ch.at = false, err, time.Now()
	log := err != nil && time.Since(ch.logged) > 30*time.Second
	if log {
		ch.logged = ch.at
	}
	pc.mu.Unlock()
	if log {
		c.logger.Warn(msg, append(kv, "error", err)...)
	}
}

// peerCertErr returns the outcome of the last finished certificate check
// of key ("raft/<id>", "worker/<gossip name>"): done is false while none
// has finished.
func (c *Controller) peerCertErr(key string) (done bool, err error) {
	pc := &c.peerCerts
	pc.mu.Lock()
	defer pc.mu.Unlock()
	ch := pc.checks[key]
	if ch == nil || ch.at.IsZero() {
		return false, nil
	}
	return true, ch.err
}
