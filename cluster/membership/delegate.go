package membership

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// Delegate is the memberlist delegate of every agent: it serves the agent's
// own metadata, records membership events in a Table, calling OnChange (if
// set) after each, and refuses peers that belong to another cluster (both
// sides' Meta.Cluster known and different): they never enter the pool, so
// two clusters never merge through gossip.
type Delegate struct {
	table    *Table
	onChange func()
	logger   hclog.Logger

	refusedMu   sync.Mutex
	refused     map[string]time.Time // peer → when its refusal was last logged
	refusals    uint64               // peers refused so far
	lastRefusal error                // the latest refusal

	mu   sync.Mutex
	meta Meta
	raw  []byte
}

// NewDelegate returns a delegate that advertises meta and records events
// in table. onChange and logger may be nil.
func NewDelegate(meta Meta, table *Table, onChange func(), logger hclog.Logger) (*Delegate, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	d := &Delegate{table: table, onChange: onChange, logger: logger, refused: map[string]time.Time{}}
	if err := d.SetMeta(meta); err != nil {
		return nil, err
	}
	return d, nil
}

// Meta returns the metadata this agent advertises.
func (d *Delegate) Meta() Meta {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta
}

// SetMeta replaces the advertised metadata. It is sent to the pool by the
// next memberlist UpdateNode (or push-pull).
func (d *Delegate) SetMeta(m Meta) error {
	raw, err := m.Encode()
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.meta, d.raw = m, raw
	d.mu.Unlock()
	return nil
}

// NodeMeta implements memberlist.Delegate.
func (d *Delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.raw
}

// NotifyMsg implements memberlist.Delegate (no user messages).
func (d *Delegate) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate (no user broadcasts).
func (d *Delegate) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState implements memberlist.Delegate (no push-pull state).
func (d *Delegate) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (d *Delegate) MergeRemoteState([]byte, bool) {}

// NotifyJoin implements memberlist.EventDelegate.
func (d *Delegate) NotifyJoin(n *memberlist.Node) { d.event(n, StatusAlive) }

// NotifyUpdate implements memberlist.EventDelegate.
func (d *Delegate) NotifyUpdate(n *memberlist.Node) { d.event(n, StatusAlive) }

// NotifyLeave implements memberlist.EventDelegate: a member that left on
// purpose is left, one that failed is dead.
func (d *Delegate) NotifyLeave(n *memberlist.Node) {
	st := StatusDead
	if n.State == memberlist.StateLeft {
		st = StatusLeft
	}
	d.event(n, st)
}

// NotifyAlive implements memberlist.AliveDelegate: an agent of another
// cluster is not a peer.
func (d *Delegate) NotifyAlive(peer *memberlist.Node) error {
	return d.checkCluster(peer)
}

// NotifyMerge implements memberlist.MergeDelegate: a push/pull (a join)
// with a pool that holds an agent of another cluster is refused whole.
func (d *Delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, p := range peers {
		if err := d.checkCluster(p); err != nil {
			return err
		}
	}
	return nil
}

// ErrOtherCluster: a peer belongs to another cluster.
var ErrOtherCluster = errors.New("the peer belongs to another cluster")

// OtherClusterError is a refusal of a peer of another cluster; it wraps
// ErrOtherCluster.
type OtherClusterError struct {
	Peer, Address string
	PeerCluster   string // the peer's cluster
	Cluster       string // this agent's
}

func (e *OtherClusterError) Error() string {
	return fmt.Sprintf("%v: %s (%s) is in cluster %s, this agent in cluster %s", ErrOtherCluster, e.Peer, e.Address, e.PeerCluster, e.Cluster)
}

func (e *OtherClusterError) Unwrap() error { return ErrOtherCluster }

func (d *Delegate) checkCluster(peer *memberlist.Node) error {
	theirs := DecodeMeta(peer.Name, peer.Meta).Cluster
	mine := d.Meta().Cluster
	if mine == "" || theirs == "" || mine == theirs {
		return nil
	}
	err := &OtherClusterError{Peer: peer.Name, Address: peer.Address(), PeerCluster: theirs, Cluster: mine}
	d.refusedMu.Lock()
	d.refusals++
	d.lastRefusal = err
	last, seen := d.refused[peer.Name]
	if !seen || time.Since(last) > 30*time.Second {
		d.refused[peer.Name] = time.Now()
		d.refusedMu.Unlock()
		d.logger.Error("refusing a gossip peer of another cluster (check its --join addresses, or whether its data directory belongs here)",
			"peer", peer.Name, "address", peer.Address(), "peer_cluster", theirs, "cluster", mine)
	} else {
		d.refusedMu.Unlock()
	}
	return err
}

// refusalCount returns how many peers were refused so far and the latest
// refusal.
func (d *Delegate) refusalCount() (uint64, error) {
	d.refusedMu.Lock()
	defer d.refusedMu.Unlock()
	return d.refusals, d.lastRefusal
}

func (d *Delegate) event(n *memberlist.Node, status string) {
	d.table.Set(n, status)
	if d.onChange != nil {
		d.onChange()
	}
}
