package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/membership"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Controller is one member of the replicated control plane.
type Controller struct {
	// hostSpecMu serializes writes of host specs through this node with
	// the hosts loop's state writes (proposeHostState).
	hostSpecMu sync.Mutex

	cfg    Config
	logger hclog.Logger
	fsm    *fsm.FSM
	raft   *raft.Raft
	parts  *raftParts

	gossipMu       sync.Mutex // guards gossip and gossipDelegate
	gossip         *memberlist.Memberlist
	gossipDelegate *membership.Delegate
	members        *membership.Table

	// clusterID is the cluster's identity as this node knows it
	// (identity.go).
	idMu      sync.Mutex
	clusterID string
	nodeUUID  string // this node's own identity (identity.go)

	// readyTerm is the raft term in which this node, as leader, completed
	// its leadership barrier; linearizable reads need it to be the
	// current term.
	readyTerm atomic.Uint64
	metrics   *metrics
	// leaderChange is closed, and replaced, each time this node learns
	// of another leader (LeaderChanged).
	leaderMu     sync.Mutex
	leaderChange chan struct{}
	// restoreMu serializes snapshot restores (backup.go).
	restoreMu sync.Mutex
	// schedRounds counts the scheduler loop's rounds (SchedulerRounds).
	schedRounds atomic.Uint64

	leaderLoopsMu sync.Mutex
	leaderLoops   []LeaderLoop

	// drain is the drain loop's memory (drain.go).
	drain drainState

	// noHandOff skips the leadership transfer on shutdown (a dev cluster
	// stops all its controllers at once).
	noHandOff atomic.Bool

	// removed remembers servers removed by `cluster remove`, so that the
	// voter reconciler does not add one back while gossip still shows it
	// alive (it takes a few probes to notice a killed node).
	removedMu sync.Mutex
	removed   map[string]time.Time

	// A failure that needs the operator (admission.go).
	failMu   sync.Mutex
	failErr  error
	failedCh chan struct{}
	// admitted: this node takes part in Raft (not a new node that has not
	// checked its id yet).
	admitted atomic.Bool

	// The TLS configurations of Raft and of calls to controllers (nil:
	// TLS is off; tls.go).
	tls *tlsConfigs

	// The client that asks other controllers for their status
	// (bootstrap.go).
	peerClientOnce sync.Once
	peerClient     *http.Client
	// peerCerts remembers the certificate checks of gossip members (gossip.go).
	peerCerts peerCertChecks

	// The policy runner's API client (policies.go).
	policyClientOnce sync.Once
	policyCl         *client.Client
	policyClErr      error
	// internalSecret is this process's secret for its own API calls
	// (acl.go).
	internalSecret string

	// coalesce gathers the creates this node proposes as the leader.
	coalesce *coalescer

	reconcileCh chan struct{}
	shutdownCh  chan struct{}
	shutdownMu  sync.Mutex
	shutdown    bool
	wg          sync.WaitGroup
}

// LeaderLoop is a task that runs only while this controller is the leader.
// Run is started after the leadership barrier and its ctx is cancelled when
// leadership is lost or the controller stops.
type LeaderLoop struct {
	Name string
	Run  func(ctx context.Context)
}

// New opens the stores, starts raft and gossip, and returns a
// running controller. Call Shutdown to stop it.
func New(cfg Config) (*Controller, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Controller{
		cfg:         cfg,
		logger:      cfg.Logger.Named("controller").With("node", cfg.NodeID),
		members:     membership.NewTable(),
		reconcileCh: make(chan struct{}, 1),
		failedCh:    make(chan struct{}),
		shutdownCh:  make(chan struct{}),

		internalSecret: resource.NewACLSecret(),
	}
	c.coalesce = &coalescer{c: c}
	var reg prometheus.Registerer // none unless the agent gives one
	if cfg.Registry != nil {
		reg = cfg.Registry
	}
	c.metrics = newMetrics(reg)
	id, err := readClusterID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	c.clusterID = id
	if c.nodeUUID, err = readOrCreateNodeUUID(cfg.DataDir); err != nil {
		return nil, err
	}
	c.fsm = fsm.New(fsm.Config{Logger: cfg.Logger, MaxProtocol: cfg.MaxProtocol})
	c.fsm.OnApply = cfg.OnApply
	if c.tls, err = loadTLS(cfg.TLS); err != nil {
		return nil, err
	}
	parts, err := openRaftParts(&c.cfg, c.tls, c.ClusterID, c.admitted.Load, c.logger)
	if err != nil {
		return nil, err
	}
	c.parts = parts
	rc := cfg.raftConfig()
	notify := make(chan bool, 16)
	rc.NotifyCh = notify
	r, err := raft.NewRaft(rc, c.fsm, parts.logs, parts.stable, parts.snaps, parts.trans)
	if err != nil {
		parts.close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	c.raft = r
	c.watchLeaderChanges()
	c.addLeaderLoop(LeaderLoop{Name: "identity", Run: c.identityLoop})
	c.addLeaderLoop(LeaderLoop{Name: "acl-bootstrap", Run: c.aclBootstrapLoop})
	c.addLeaderLoop(LeaderLoop{Name: "reconcile-voters", Run: c.reconcileVotersLoop})
	c.addLeaderLoop(LeaderLoop{Name: "hosts", Run: c.hostsLoop})
	c.addLeaderLoop(LeaderLoop{Name: "evacuate", Run: c.evacuateLoop})
	c.addLeaderLoop(LeaderLoop{Name: "scheduler", Run: c.schedulerLoop})
	c.addLeaderLoop(LeaderLoop{Name: "policies", Run: c.policiesLoop})
	c.addLeaderLoop(LeaderLoop{Name: "drain", Run: c.drainLoop})

	c.wg.Add(2)
	go c.monitorLeadership(notify)
	go c.watchHalt()

	if len(cfg.BootstrapServers) > 0 && !parts.hasState {
		f := r.BootstrapCluster(raft.Configuration{Servers: cfg.BootstrapServers})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			c.Shutdown(context.Background())
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	if parts.hasState || c.ClusterID() != "" || storeIsOwn(parts.stable, c.nodeUUID) || cfg.DisableGossip {
		if err := markStore(parts.stable, c.nodeUUID); err != nil {
			c.Shutdown(context.Background())
			return nil, err
		}
		c.admitted.Store(true)
	}
	if !cfg.DisableGossip {
		if err := c.startGossip(); err != nil {
			c.Shutdown(context.Background())
			return nil, err
		}
	}
	c.wg.Add(1)
	go c.watchClusterID()
	c.logger.Info("controller started", "raft", cfg.RaftAddr(), "gossip", cfg.GossipAddr(),
		"existing_state", parts.hasState, "bootstrap_expect", cfg.BootstrapExpect, "cluster", c.ClusterID())
	return c, nil
}

// AddLeaderLoop registers a loop to run while this node leads. Loops added
// after leadership was won start at the next leadership change.
func (c *Controller) AddLeaderLoop(l LeaderLoop) { c.addLeaderLoop(l) }

func (c *Controller) addLeaderLoop(l LeaderLoop) {
	c.leaderLoopsMu.Lock()
	defer c.leaderLoopsMu.Unlock()
	c.leaderLoops = append(c.leaderLoops, l)
}

// NodeID returns this controller's id.
func (c *Controller) NodeID() string { return c.cfg.NodeID }

// FSM returns the local state machine.
func (c *Controller) FSM() *fsm.FSM { return c.fsm }

// Raft exposes the raft node (tests and diagnostics).
func (c *Controller) Raft() *raft.Raft { return c.raft }

// Config returns the effective configuration.
func (c *Controller) Config() Config { return c.cfg }

// IsLeader reports whether this node is the raft leader.
func (c *Controller) IsLeader() bool { return c.raft.State() == raft.Leader }

// Leader returns the leader's id and API address, as far as this node knows.
func (c *Controller) Leader() (id, apiAddr string) {
	_, lid := c.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	id = string(lid)
	if id == c.cfg.NodeID {
		return id, c.cfg.APIAddr()
	}
	if m, ok := c.members.Controller(id); ok {
		return id, m.Meta.API
	}
	return id, ""
}

// waitFuture waits for a raft future, or until the controller shuts down
// (or done closes): raft never answers a future it had queued when it
// shuts down, and a leader loop waiting on one would hold Shutdown forever.
func (c *Controller) waitFuture(done <-chan struct{}, f raft.Future) error {
	if u, ok := f.(interface {
		ErrorUntil(a, b <-chan struct{}) (int, error)
	}); ok {
		// The patched raft's futures wait on our channels themselves
		// (third_party/raft/KUMOI.md): no goroutine per write.
		switch which, err := u.ErrorUntil(c.shutdownCh, done); which {
		case 1:
			return raft.ErrRaftShutdown
		case 2:
			return raft.ErrLeadershipLost
		default:
			return err
		}
	}
	res := make(chan error, 1)
	go func() { res <- f.Error() }()
	select {
	case err := <-res:
		return err
	case <-c.shutdownCh:
		return raft.ErrRaftShutdown
	case <-done:
		return raft.ErrLeadershipLost
	}
}

// Apply proposes a command and waits until it is applied here.
func (c *Controller) Apply(ctx context.Context, t fsm.MessageType, req any) (*fsm.Result, error) {
	if err := c.Halted(); err != nil {
		return nil, err // out of service (halt.go)
	}
	proto, err := c.checkProtocolOf(t, req)
	if err != nil {
		return nil, err
	}
	// Creates in the binary encoding once every server speaks it.
	data, err := fsm.EncodeFor(t, req, proto)
	if err != nil {
		return nil, err
	}
	timeout := c.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < timeout {
			timeout = d
		}
	}
	if timeout <= 0 {
		return nil, ctx.Err()
	}
	if writesHostSpec(req) {
		// Serialized with the hosts loop's reads of host specs and its
		// state writes (proposeHostState).
		c.hostSpecMu.Lock()
		defer c.hostSpecMu.Unlock()
	} else if proto >= fsm.MinProtocol(fsm.CreatesBinRequestType) && fsm.MessageType(data[0]) == fsm.CreateBinRequestType {
		// Creates coalesced into one entry under load (coalesce.go).
		return c.coalesce.apply(data, timeout)
	}
	f := c.raft.Apply(data, timeout)
	if err := c.waitFuture(nil, f); err != nil {
		return nil, mapRaftError(err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("unexpected apply response %T", f.Response())
	}
	return res, nil
}

// writesHostSpec says whether a command may change a host's spec (an
// update of a host, as kumoi host drain and enable make, also when made
// for a token).
func writesHostSpec(req any) bool {
	switch r := req.(type) {
	case *fsm.UpdateRequest:
		return r.Kind == resource.KindHost
	case *fsm.AccessorRequest:
		return writesHostSpec(r.Inner())
	}
	return false
}

// Propose applies a command and folds its business error (Result.Err) into
// the returned error: for callers that treat both
// alike (the leader's own loops, tests, benchmarks).
func (c *Controller) Propose(ctx context.Context, t fsm.MessageType, req any) (*fsm.Result, error) {
	res, err := c.Apply(ctx, t, req)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// ConsistentRead waits until the local state reflects every write
// acknowledged before the call: this node must be the leader of the current
// term, have applied its leadership barrier, still be confirmed by a quorum
// (VerifyLeader), and have applied everything committed when the read began.
func (c *Controller) ConsistentRead(ctx context.Context) error {
	if c.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if c.readyTerm.Load() != c.currentTerm() {
		return ErrNotReady
	}
	readIndex := c.raft.CommitIndex()
	if err := c.waitFuture(ctx.Done(), c.raft.VerifyLeader()); err != nil {
		return mapRaftError(err)
	}
	// Acknowledged writes are applied to this FSM before they are
	// acknowledged, and the barrier covered the previous leaders' writes;
	// waiting for raft's applied index closes the remaining window.
	if c.raft.AppliedIndex() >= readIndex {
		return nil
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for c.raft.AppliedIndex() < readIndex {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.shutdownCh:
			return ErrShuttingDown
		case <-tick.C:
		}
	}
	return nil
}

func (c *Controller) currentTerm() uint64 { return c.raft.CurrentTerm() }

// Status describes this controller.
func (c *Controller) Status() resource.Status {
	stats := c.raft.Stats()
	lid, laddr := c.Leader()
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	lastLog, _ := strconv.ParseUint(stats["last_log_index"], 10, 64)
	numPeers, _ := strconv.Atoi(stats["num_peers"])
	st := resource.Status{
		NodeID:       c.cfg.NodeID,
		ClusterID:    c.ClusterID(),
		NodeUUID:     c.nodeUUID,
		Protocol:     c.cfg.MaxProtocol,
		LeaderID:     lid,
		LeaderAddr:   laddr,
		RaftState:    c.raft.State().String(),
		Term:         term,
		CommitIndex:  c.raft.CommitIndex(),
		AppliedIndex: c.fsm.AppliedIndex(),
		LastLogIndex: lastLog,
		StateIndex:   c.fsm.State().LatestIndex(),
		APIAddr:      c.cfg.APIAddr(),
		RaftAddr:     c.cfg.RaftAddr(),
		GossipAddr:   c.cfg.GossipAddr(),
		Version:      c.cfg.Version,
		NumServers:   numPeers + 1,
		RaftLogStore: c.parts.logStore,
	}
	if c.raft.State() == raft.Leader {
		st.LastContactMS = -1
	} else if lc := c.raft.LastContact(); !lc.IsZero() {
		st.LastContactMS = time.Since(lc).Milliseconds()
	}
	c.health(&st)
	return st
}

// IsServerIP reports whether ip is the host of a server's address in the
// Raft configuration (a controller that may forward requests to this one).
func (c *Controller) IsServerIP(ip string) bool {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if h, _, err := net.SplitHostPort(string(s.Address)); err == nil && h == ip {
			return true
		}
	}
	return false
}

// RemoveServer removes a server from the raft configuration (leader only).
func (c *Controller) RemoveServer(ctx context.Context, id string) (uint64, error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return 0, mapRaftError(err)
	}
	found, voter, voters := false, false, 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == id {
			found, voter = true, s.Suffrage == raft.Voter
		}
	}
	if !found {
		return 0, fmt.Errorf("%w: %q (see `kumoi cluster status` for the server ids)", ErrUnknownServer, id)
	}
	if voter && voters == 1 {
		return 0, fmt.Errorf("cannot remove server %q: %w", id, resource.ErrLastVoter)
	}
	rf := c.raft.RemoveServer(raft.ServerID(id), 0, c.cfg.ApplyTimeout)
	if err := rf.Error(); err != nil {
		return 0, mapRaftError(err)
	}
	c.removedMu.Lock()
	if c.removed == nil {
		c.removed = map[string]time.Time{}
	}
	c.removed[id] = time.Now()
	c.removedMu.Unlock()
	c.logger.Info("removed server from the raft configuration", "server", id, "index", rf.Index())
	return rf.Index(), nil
}

// Shutdown stops the controller. If it leads, it first hands leadership to
// another voter so the cluster does not wait for an election timeout.
func (c *Controller) Shutdown(ctx context.Context) error {
	c.shutdownMu.Lock()
	if c.shutdown {
		c.shutdownMu.Unlock()
		return nil
	}
	c.shutdown = true
	c.shutdownMu.Unlock()

	c.HandOffLeadership()
	close(c.shutdownCh)
	var errs []error
	if c.gossip != nil {
		// Announce the leave in our metadata: memberlist's leave event
		// does not tell a leave from a failure.
		c.gossipMu.Lock()
		if d := c.gossipDelegate; d != nil {
			m := d.Meta()
			m.Leaving = true
			if d.SetMeta(m) == nil {
				_ = c.gossip.UpdateNode(time.Second)
			}
		}
		c.gossipMu.Unlock()
		if err := c.gossip.Leave(2 * time.Second); err != nil {
			c.logger.Warn("gossip leave", "error", err)
		}
		errs = append(errs, c.gossip.Shutdown())
	}
	if c.raft != nil {
		errs = append(errs, c.raft.Shutdown().Error())
	}
	c.wg.Wait()
	if c.parts != nil {
		c.parts.close()
	}
	c.logger.Info("controller stopped")
	return errors.Join(errs...)
}

// DisableHandOff makes Shutdown skip the leadership transfer (a dev
// cluster stops all its controllers at once).
func (c *Controller) DisableHandOff() { c.noHandOff.Store(true) }

// HandOffLeadership transfers leadership to another voter if this node
// leads, so that the cluster does not wait an election timeout when it stops.
func (c *Controller) HandOffLeadership() {
	if c.raft == nil || c.noHandOff.Load() || c.raft.State() != raft.Leader || c.numVoters() < 2 {
		return
	}
	c.logger.Info("transferring leadership before shutdown")
	if err := c.raft.LeadershipTransfer().Error(); err != nil {
		c.logger.Warn("leadership transfer failed", "error", err)
	}
}

func (c *Controller) numVoters() int {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// WaitForLeader blocks until some leader is known or ctx ends.
func (c *Controller) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if id, _ := c.Leader(); id != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// TransferLeader hands leadership to the voter to (any voter, chosen by
// Raft, when to is "") and waits until that is done; it returns the new
// leader's id. Leader only. ErrUnknownServer when to is not a server;
// resource.ErrLastVoter-like refusals (to is this node, a non-voter, or
// there is no other voter) are conflicts.
func (c *Controller) TransferLeader(ctx context.Context, to string) (string, error) {
	if c.raft.State() != raft.Leader {
		return "", ErrNotLeader
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", mapRaftError(err)
	}
	var target *raft.Server
	voters := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == to {
			target = &s
		}
	}
	switch {
	case to != "" && target == nil:
		return "", fmt.Errorf("%w: %q (see `kumoi operator raft list-peers` for the server ids)", ErrUnknownServer, to)
	case to == c.cfg.NodeID:
		return "", fmt.Errorf("%w: %s already leads", resource.ErrCannotTransfer, to)
	case target != nil && target.Suffrage != raft.Voter:
		return "", fmt.Errorf("%w: %s is not a voter yet (it is catching up; the leader promotes it when it has)", resource.ErrCannotTransfer, to)
	case voters < 2:
		return "", fmt.Errorf("%w: there is no other voter to lead", resource.ErrCannotTransfer)
	}
	var fut raft.Future
	if target == nil {
		fut = c.raft.LeadershipTransfer()
	} else {
		fut = c.raft.LeadershipTransferToServer(target.ID, target.Address)
	}
	c.logger.Info("transferring leadership on request", "to", cmp.Or(to, "(any voter)"))
	if err := c.waitFuture(ctx.Done(), fut); err != nil {
		return "", mapRaftError(err)
	}
	// Done: this node stepped down for a successor that won; name it
	// once this node has heard from it.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, _ := c.Leader(); id != "" && id != c.cfg.NodeID {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-c.shutdownCh:
			return "", ErrShuttingDown
		case <-tick.C:
		}
	}
}

// LeaderChanged returns a channel that is closed when this node next
// learns of a leader change (a new leader, or none): the API's forwarding
// gives up on a request to a leader that is no longer one, instead of
// waiting for an answer that a partitioned old leader never sends.
func (c *Controller) LeaderChanged() <-chan struct{} {
	c.leaderMu.Lock()
	defer c.leaderMu.Unlock()
	return c.leaderChange
}

// watchLeaderChanges feeds LeaderChanged from Raft's leader observations.
func (c *Controller) watchLeaderChanges() {
	c.leaderMu.Lock()
	c.leaderChange = make(chan struct{})
	c.leaderMu.Unlock()
	obs := make(chan raft.Observation, 16)
	c.raft.RegisterObserver(raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}))
	go func() {
		for {
			select {
			case <-obs:
				c.leaderMu.Lock()
				close(c.leaderChange)
				c.leaderChange = make(chan struct{})
				c.leaderMu.Unlock()
			case <-c.shutdownCh:
				return
			}
		}
	}()
}
