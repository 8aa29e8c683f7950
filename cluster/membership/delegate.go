package membership

import (
	"sync"

	"github.com/hashicorp/memberlist"
)

// Delegate is the memberlist delegate of every agent: it serves the agent's
// own metadata and records membership events in a Table, calling OnChange
// (if set) after each.
type Delegate struct {
	table    *Table
	onChange func()

	mu   sync.Mutex
	meta Meta
	raw  []byte
}

// NewDelegate returns a delegate that advertises meta and records events
// in table. onChange may be nil.
func NewDelegate(meta Meta, table *Table, onChange func()) (*Delegate, error) {
	d := &Delegate{table: table, onChange: onChange}
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

func (d *Delegate) event(n *memberlist.Node, status string) {
	d.table.Set(n, status)
	if d.onChange != nil {
		d.onChange()
	}
}
