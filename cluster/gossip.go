package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/resource"
)

// Gossip roles.
const (
	RoleController = "controller"
	RoleWorker     = "worker"
)

// memberMeta is what an agent advertises in its gossip metadata (≤ 512 bytes).
type memberMeta struct {
	ID     string `json:"id"`
	Role   string `json:"role"`
	API    string `json:"api,omitempty"`
	Raft   string `json:"raft,omitempty"`
	Expect int    `json:"expect,omitempty"`
	// Leaving is set (by a meta update) just before a graceful leave:
	// memberlist does not tell a leave from a failure in NotifyLeave.
	Leaving bool `json:"leaving,omitempty"`
}

type member struct {
	name   string
	addr   string
	status string // alive, suspect, dead, left
	meta   memberMeta
	raw    []byte // the whole metadata (role-specific fields)
}

// memberTable tracks every agent seen in the gossip pool, including the
// ones that died or left (until they come back).
type memberTable struct {
	mu      sync.Mutex
	members map[string]*member
	changed chan struct{} // closed and replaced on every change
}

func newMemberTable() *memberTable {
	return &memberTable{members: map[string]*member{}, changed: make(chan struct{})}
}

func (t *memberTable) set(n *memberlist.Node, status string) {
	var meta memberMeta
	if err := json.Unmarshal(n.Meta, &meta); err != nil {
		meta = memberMeta{ID: n.Name}
	}
	t.mu.Lock()
	if prev, ok := t.members[n.Name]; ok && status == "dead" && prev.meta.Leaving {
		status = "left"
	}
	t.members[n.Name] = &member{name: n.Name, addr: n.Address(), status: status, meta: meta, raw: append([]byte(nil), n.Meta...)}
	ch := t.changed
	t.changed = make(chan struct{})
	t.mu.Unlock()
	close(ch)
}

// get returns the controller whose id is id (a worker may share the id).
func (t *memberTable) get(id string) (member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.members {
		if m.meta.ID == id && m.meta.Role == RoleController {
			return *m, true
		}
	}
	return member{}, false
}

func (t *memberTable) waitCh() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

func (t *memberTable) aliveControllers() []member {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []member
	for _, m := range t.members {
		if m.meta.Role == RoleController && m.status == "alive" && m.meta.Raft != "" {
			out = append(out, *m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].meta.ID < out[j].meta.ID })
	return out
}

func (t *memberTable) list() []resource.Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []resource.Member{}
	for _, m := range t.members {
		tags := map[string]string{}
		if m.meta.API != "" {
			tags["api"] = m.meta.API
		}
		if m.meta.Raft != "" {
			tags["raft"] = m.meta.Raft
		}
		if m.meta.Expect > 0 {
			tags["bootstrap_expect"] = strconv.Itoa(m.meta.Expect)
		}
		if m.meta.Role == RoleWorker {
			var wm workerGossipMeta
			if json.Unmarshal(m.raw, &wm) == nil {
				tags["host"] = m.meta.ID
				tags["cpus"] = strconv.Itoa(wm.CPUs)
				tags["memory_mib"] = strconv.FormatInt(wm.MemoryMiB, 10)
				tags["driver"] = wm.Driver
				tags["ready"] = strconv.FormatBool(wm.Ready)
			}
		}
		out = append(out, resource.Member{Name: m.name, Address: m.addr, Status: m.status, Role: m.meta.Role, Tags: tags})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// gossipDelegate serves our metadata and records membership events.
type gossipDelegate struct {
	c    *Controller
	mu   sync.Mutex
	meta []byte
}

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta
}
func (d *gossipDelegate) NotifyMsg([]byte)                {}
func (d *gossipDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(bool) []byte          { return nil }
func (d *gossipDelegate) MergeRemoteState([]byte, bool)   {}
func (d *gossipDelegate) NotifyJoin(n *memberlist.Node)   { d.event(n, "alive") }
func (d *gossipDelegate) NotifyUpdate(n *memberlist.Node) { d.event(n, "alive") }
func (d *gossipDelegate) NotifyLeave(n *memberlist.Node)  { d.event(n, leaveStatus(n)) }
func (d *gossipDelegate) event(n *memberlist.Node, st string) {
	d.c.members.set(n, st)
	d.c.triggerReconcile()
}
func leaveStatus(n *memberlist.Node) string {
	if n.State == memberlist.StateLeft {
		return "left"
	}
	return "dead"
}

// gossipConfig builds a memberlist configuration from ours.
func gossipConfig(name, bindIP string, port int, probeInterval, probeTimeout time.Duration, suspicionMult int, logger hclog.Logger) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	mc.BindAddr = bindIP
	mc.BindPort = port
	mc.AdvertiseAddr = bindIP
	mc.AdvertisePort = port
	mc.ProbeInterval = probeInterval
	mc.ProbeTimeout = probeTimeout
	mc.SuspicionMult = suspicionMult
	mc.GossipInterval = 100 * time.Millisecond
	mc.PushPullInterval = 15 * time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.Logger = logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	mc.LogOutput = nil
	return mc
}

func (c *Controller) startGossip() error {
	meta, err := json.Marshal(memberMeta{
		ID: c.cfg.NodeID, Role: RoleController, API: c.cfg.apiAddr(), Raft: c.cfg.raftAddr(), Expect: c.cfg.BootstrapExpect,
	})
	if err != nil {
		return err
	}
	d := &gossipDelegate{c: c, meta: meta}
	c.gossipDelegate = d
	mc := gossipConfig(c.cfg.NodeID, c.cfg.BindIP, c.cfg.GossipPort, c.cfg.GossipProbeInterval,
		c.cfg.GossipProbeTimeout, c.cfg.GossipSuspicionMult, c.cfg.Logger.Named("gossip"))
	mc.Delegate = d
	mc.Events = d
	if err := useBoundTransport(mc); err != nil {
		return err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start gossip on %s: %w", c.cfg.gossipAddr(), err)
	}
	c.gossip = ml
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		reconnectLoop(ml, c.members, c.cfg.NodeID, c.cfg.Join, 2*time.Second, c.shutdownCh)
	}()
	if len(c.cfg.Join) > 0 {
		c.wg.Add(1)
		go c.retryJoin()
	}
	if c.cfg.BootstrapExpect > 0 && !c.parts.hasState {
		c.wg.Add(1)
		go c.bootstrapLoop()
	}
	return nil
}

// retryJoin joins the gossip pool through the --join addresses, retrying
// until one answers.
func (c *Controller) retryJoin() {
	defer c.wg.Done()
	backoff := 200 * time.Millisecond
	for {
		n, err := c.gossip.Join(c.cfg.Join)
		if n > 0 {
			c.logger.Info("joined the gossip pool", "contacted", n)
			return
		}
		c.logger.Warn("could not join the gossip pool yet; retrying", "join", c.cfg.Join, "error", err)
		select {
		case <-c.shutdownCh:
			return
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

// bootstrapLoop bootstraps raft once --bootstrap-expect controllers are
// seen, unless one of them already belongs to a cluster (then the leader
// adds us as a voter).
func (c *Controller) bootstrapLoop() {
	defer c.wg.Done()
	for {
		wait := c.members.waitCh()
		done, err := c.tryBootstrap()
		if done {
			return
		}
		if err != nil {
			c.logger.Info("not bootstrapping yet", "reason", err)
		}
		select {
		case <-c.shutdownCh:
			return
		case <-wait:
		case <-time.After(time.Second):
		}
	}
}

func (c *Controller) tryBootstrap() (done bool, err error) {
	if _, lid := c.raft.LeaderWithID(); lid != "" {
		return true, nil // someone already leads us
	}
	if last := c.raft.LastIndex(); last > 0 {
		return true, nil
	}
	peers := c.members.aliveControllers()
	if len(peers) < c.cfg.BootstrapExpect {
		return false, fmt.Errorf("%d of %d expected controllers seen", len(peers), c.cfg.BootstrapExpect)
	}
	var servers []raft.Server
	for _, p := range peers {
		if p.meta.Expect != 0 && p.meta.Expect != c.cfg.BootstrapExpect {
			return false, fmt.Errorf("controller %s has --bootstrap-expect %d, this one %d: they must agree", p.meta.ID, p.meta.Expect, c.cfg.BootstrapExpect)
		}
		if p.meta.ID != c.cfg.NodeID {
			st, err := peerStatus(p.meta.API)
			if err != nil {
				return false, fmt.Errorf("cannot ask %s whether it already has a cluster: %v", p.meta.ID, err)
			}
			if st.LeaderID != "" || st.LastLogIndex > 0 {
				c.logger.Info("a peer already belongs to a cluster; waiting to be added as a voter", "peer", p.meta.ID)
				return true, nil
			}
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.meta.ID), Address: raft.ServerAddress(p.meta.Raft)})
	}
	c.logger.Info("bootstrapping the raft cluster", "servers", len(servers))
	if err := c.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && err != raft.ErrCantBootstrap {
		return false, fmt.Errorf("bootstrap: %w", err)
	}
	return true, nil
}

func peerStatus(apiAddr string) (*resource.Status, error) {
	if apiAddr == "" {
		return nil, fmt.Errorf("no API address advertised")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+apiAddr+"/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	var st resource.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// deadAddrs returns the gossip addresses of members that failed (not the
// ones that left on purpose).
func (t *memberTable) deadAddrs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, m := range t.members {
		if m.status == "dead" {
			out = append(out, m.addr)
		}
	}
	sort.Strings(out)
	return out
}

func (t *memberTable) anyAlive(self string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, m := range t.members {
		if name != self && m.status == "alive" {
			return true
		}
	}
	return false
}

// reconnectLoop heals gossip after a partition. memberlist stops probing a
// member it declared dead, so two sides that lost each other never merge
// again by themselves: like serf's reconnect, keep trying the failed members
// (and the --join addresses when nobody is left), until done is closed.
func reconnectLoop(ml *memberlist.Memberlist, t *memberTable, self string, join []string, every time.Duration, done <-chan struct{}) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		addrs := t.deadAddrs()
		if !t.anyAlive(self) {
			addrs = append(addrs, join...)
		}
		if len(addrs) > 0 {
			_, _ = ml.Join(addrs)
		}
	}
}

// boundTransport is memberlist's NetTransport, except that its TCP
// connections (push-pull, fallback probes) leave from the agent's own
// address, like its UDP packets do: a partition made with iptables on that
// address then cuts gossip both ways.
type boundTransport struct {
	*memberlist.NetTransport
	local net.IP
}

func (t *boundTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *boundTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: t.local}}
	return d.Dial("tcp", a.Addr)
}

// useBoundTransport gives mc a boundTransport on its bind address and port.
func useBoundTransport(mc *memberlist.Config) error {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{mc.BindAddr},
		BindPort:  mc.BindPort,
		Logger:    mc.Logger,
	})
	if err != nil {
		return fmt.Errorf("gossip on %s:%d: %w", mc.BindAddr, mc.BindPort, err)
	}
	mc.Transport = &boundTransport{NetTransport: nt, local: net.ParseIP(mc.BindAddr)}
	return nil
}
