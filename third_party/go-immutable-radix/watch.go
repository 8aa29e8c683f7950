package iradix

import "sync/atomic"

// Kumoi: a node's (and a leaf's) mutation channel is made when a watcher
// first asks for it (GetWatch, SeekPrefixWatch), not with every node.
// Upstream makes a channel for each node and leaf a write creates: two
// allocations of 96 bytes for each key written, kept for as long as the
// node lives, and a map entry per copied node to close them at commit,
// although almost no node is ever watched. Here a node holds an empty
// watch until a reader asks; a transaction remembers the watches of the
// nodes it replaces, and at commit each is set to an already-closed
// channel, closing the one a reader took, if any. The order of the two
// atomic operations is what keeps upstream's guarantee: a reader that
// asks before the commit gets a channel the commit closes; one that asks
// after gets a closed one (its node was replaced).
type watch struct{ p atomic.Pointer[watchBox] }

// watchBox holds a node's channel; one without a channel is a
// transaction's mark (newMark).
type watchBox struct{ ch chan struct{} }

// newMark is a mark for a transaction's nodes: a box without a channel,
// unique for as long as a node holds it. Kumoi: a node a transaction made
// carries its mark until a reader asks for the node's channel, which
// replaces it; the transaction writes in place exactly the nodes that
// still hold its mark (Txn.writable). A mark is allocated (never a
// shared value) so that no later transaction's mark can equal the one an
// old, published node still holds.
func newMark() *watchBox { return new(watchBox) }

// closedBox is the watch of a node that was replaced.
var closedBox = func() *watchBox {
	b := &watchBox{ch: make(chan struct{})}
	close(b.ch)
	return b
}()

// ch is the channel closed when the node is replaced.
func (w *watch) ch() chan struct{} {
	for {
		old := w.p.Load()
		if old != nil && old.ch != nil {
			return old.ch
		}
		// None yet (nil, or a transaction's mark: the transaction copies
		// the node before it writes it from now on).
		b := &watchBox{ch: make(chan struct{})}
		if w.p.CompareAndSwap(old, b) {
			return b.ch
		}
	}
}

// notify says the node was replaced: it closes the channel a reader took
// and gives later readers a closed one. Notifying twice is harmless.
func (w *watch) notify() {
	if b := w.p.Swap(closedBox); b != nil && b != closedBox && b.ch != nil {
		close(b.ch)
	}
}

// Watch is the mutation channel of a node, made when Ch is first called
// (Kumoi: so that an iterator whose caller never watches makes none).
// The zero Watch has a nil channel.
type Watch struct{ w *watch }

// Ch is the channel closed when the node is replaced, as
// SeekPrefixWatch returns it; nil for the zero Watch.
func (w Watch) Ch() <-chan struct{} {
	if w.w == nil {
		return nil
	}
	return w.w.ch()
}

// SeekPrefixLazyWatch is SeekPrefixWatch, with the channel made only if
// it is asked for.
func (i *Iterator) SeekPrefixLazyWatch(prefix []byte) Watch {
	return Watch{i.seekPrefix(prefix)}
}

// SeekPrefixLazyWatch is SeekPrefixWatch, with the channel made only if
// it is asked for.
func (ri *ReverseIterator) SeekPrefixLazyWatch(prefix []byte) Watch {
	return Watch{ri.i.seekPrefix(prefix)}
}
