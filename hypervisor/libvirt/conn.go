//go:build libvirt_dlopen

package libvirt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	lv "libvirt.org/go/libvirt"

	"github.com/kumoi/kumoi/hypervisor"
)

// libvirt's default event loop: registered once per process, before the
// first connection is opened, and run by one goroutine for the life of the
// process.
var (
	loopOnce sync.Once
	loopErr  error
)

func startEventLoop() error {
	loopOnce.Do(func() {
		if err := lv.EventRegisterDefaultImpl(); err != nil {
			loopErr = err
			return
		}
		go func() {
			for {
				if err := lv.EventRunDefaultImpl(); err != nil {
					time.Sleep(100 * time.Millisecond) // a broken loop must not spin
				}
			}
		}()
	})
	return loopErr
}

// rawEvent is a lifecycle event as the callback saw it; the processor
// goroutine adds the Kumoi tag and publishes it.
type rawEvent struct {
	time   time.Time
	name   string
	kind   hypervisor.EventKind
	reason string
}

// connect opens a connection and installs the callbacks; on success it
// becomes the driver's connection.
func (d *Driver) connect() error {
	d.mu.Lock()
	dial := d.dial
	d.mu.Unlock()
	c, err := dial(d.uri)
	if err != nil {
		return fmt.Errorf("open %s: %s", d.uri, message(err))
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if d.opts.DomainType == "" {
		caps, err := c.GetCapabilities()
		if err != nil {
			return fmt.Errorf("capabilities of %s: %s", d.uri, message(err))
		}
		t, err := preferredDomainType(caps)
		if err != nil {
			return fmt.Errorf("%s: %w", d.uri, err)
		}
		d.mu.Lock()
		d.domType = t
		d.mu.Unlock()
	}
	if err := c.SetKeepAlive(d.opts.KeepAliveInterval, d.opts.KeepAliveCount); err != nil {
		d.log.Debug("keepalive not available", "uri", d.uri, "error", message(err))
	}

	d.mu.Lock()
	d.gen++
	gen := d.gen
	d.mu.Unlock()

	cbID, err := c.DomainEventLifecycleRegister(nil, func(_ *lv.Connect, dom *lv.Domain, ev *lv.DomainEventLifecycle) {
		kind, reason, ok := event(ev.Event, ev.Detail)
		if !ok {
			return
		}
		name, err := dom.GetName()
		if err != nil {
			return
		}
		d.pushRaw(rawEvent{time: time.Now(), name: name, kind: kind, reason: reason})
	})
	if err != nil {
		return fmt.Errorf("register lifecycle events on %s: %s", d.uri, message(err))
	}
	if err := c.RegisterCloseCallback(func(_ *lv.Connect, reason lv.ConnectCloseReason) {
		d.lost(gen, fmt.Errorf("connection to %s closed (%s)", d.uri, closeReason(reason)))
	}); err != nil {
		d.log.Debug("close callback not available", "uri", d.uri, "error", message(err))
	}

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		c.DomainEventDeregister(cbID)
		c.UnregisterCloseCallback()
		return fmt.Errorf("%w: %w", hypervisor.ErrUnavailable, hypervisor.ErrClosed)
	}
	d.conn, d.cbID, d.lastErr = c, cbID, nil
	d.mu.Unlock()
	ok = true
	d.log.Info("connected", "uri", d.uri)
	d.syncObservations()
	return nil
}

// lost marks connection generation gen as broken; the reconnect loop
// replaces it. Safe to call from libvirt callbacks: it only flips state.
func (d *Driver) lost(gen uint64, cause error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen != gen || d.conn == nil || d.closed {
		return
	}
	d.stale = append(d.stale, staleConn{d.conn, d.cbID})
	d.conn, d.lastErr = nil, cause
	d.log.Warn("lost connection", "uri", d.uri, "error", cause)
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

type staleConn struct {
	c    *lv.Connect
	cbID int
}

func (s staleConn) release() {
	s.c.DomainEventDeregister(s.cbID)
	s.c.UnregisterCloseCallback()
	s.c.Close()
}

// reconnectLoop re-opens the connection whenever it is lost, with
// exponential backoff, until Close.
func (d *Driver) reconnectLoop() {
	defer d.wg.Done()
	for {
		select {
		case <-d.wake:
		case <-d.done:
			return
		}
		backoff := d.opts.ReconnectMin
		for {
			d.mu.Lock()
			stale := d.stale
			d.stale = nil
			need := d.conn == nil && !d.closed
			d.mu.Unlock()
			for _, s := range stale {
				s.release()
			}
			if !need {
				break
			}
			err := d.connect()
			if err == nil {
				d.events.Push(hypervisor.Event{Time: time.Now(), Kind: hypervisor.EventResync, Reason: "reconnected"})
				break
			}
			d.mu.Lock()
			d.lastErr = err
			d.mu.Unlock()
			d.log.Warn("reconnect failed", "uri", d.uri, "error", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-d.done:
				t.Stop()
				return
			}
			if backoff *= 2; backoff > d.opts.ReconnectMax {
				backoff = d.opts.ReconnectMax
			}
		}
	}
}

// acquire returns the live connection with a reference the caller must drop
// (release), or ErrUnavailable.
func (d *Driver) acquire(what string) (*lv.Connect, uint64, func(), error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, 0, nil, fmt.Errorf("%s: %w: %w", what, hypervisor.ErrUnavailable, hypervisor.ErrClosed)
	}
	if d.conn == nil {
		cause := d.lastErr
		if cause == nil {
			cause = errors.New("not connected")
		}
		return nil, 0, nil, fmt.Errorf("%s: %w: %v", what, hypervisor.ErrUnavailable, cause)
	}
	c := d.conn
	if err := c.Ref(); err != nil {
		return nil, 0, nil, fmt.Errorf("%s: %w: %s", what, hypervisor.ErrUnavailable, message(err))
	}
	return c, d.gen, func() { c.Close() }, nil
}

// acquireCtx is acquire for a call under ctx: a call whose context is
// already done fails with the context's error ("what: context canceled")
// before taking the connection.
func (d *Driver) acquireCtx(ctx context.Context, what string) (*lv.Connect, uint64, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, nil, fmt.Errorf("%s: %w", what, err)
	}
	return d.acquire(what)
}

// fail turns a libvirt error into one wrapping a hypervisor sentinel. A
// call that failed on a dead connection marks it lost.
func (d *Driver) fail(c *lv.Connect, gen uint64, what string, err error) error {
	var le lv.Error
	if errors.As(err, &le) {
		switch le.Code {
		case lv.ERR_NO_DOMAIN:
			return fmt.Errorf("%s: %w", what, hypervisor.ErrNotFound)
		case lv.ERR_OPERATION_INVALID:
			return fmt.Errorf("%s: %w: %s", what, hypervisor.ErrInvalidState, le.Message)
		case lv.ERR_NO_SUPPORT, lv.ERR_ARGUMENT_UNSUPPORTED, lv.ERR_OPERATION_UNSUPPORTED:
			return fmt.Errorf("%s: %w: %s", what, hypervisor.ErrUnsupported, le.Message)
		case lv.ERR_DOM_EXIST:
			return fmt.Errorf("%s: %w: %s", what, hypervisor.ErrExists, le.Message)
		case lv.ERR_NO_NETWORK, lv.ERR_NO_STORAGE_POOL, lv.ERR_NO_STORAGE_VOL:
			// A domain's network or volume (or the pool) is gone.
			return fmt.Errorf("%s: %w: %s", what, hypervisor.ErrMissingResource, le.Message)
		}
	}
	if alive, aerr := c.IsAlive(); aerr != nil || !alive {
		d.lost(gen, fmt.Errorf("%s: %s", what, message(err)))
		return fmt.Errorf("%s: %w: %s", what, hypervisor.ErrUnavailable, message(err))
	}
	return fmt.Errorf("%s: %s", what, message(err))
}

// message is a libvirt error's own text, without the Go wrapper's codes.
func message(err error) string {
	var le lv.Error
	if errors.As(err, &le) && le.Message != "" {
		return le.Message
	}
	return err.Error()
}

func isCode(err error, codes ...lv.ErrorNumber) bool {
	var le lv.Error
	if !errors.As(err, &le) {
		return false
	}
	for _, c := range codes {
		if le.Code == c {
			return true
		}
	}
	return false
}

func closeReason(r lv.ConnectCloseReason) string {
	switch r {
	case lv.CONNECT_CLOSE_REASON_ERROR:
		return "error"
	case lv.CONNECT_CLOSE_REASON_EOF:
		return "end of file"
	case lv.CONNECT_CLOSE_REASON_KEEPALIVE:
		return "keepalive timeout"
	case lv.CONNECT_CLOSE_REASON_CLIENT:
		return "closed by client"
	}
	return "unknown"
}

// ---- events -------------------------------------------------------------------

func (d *Driver) pushRaw(e rawEvent) {
	d.rawMu.Lock()
	if !d.rawClosed {
		d.raw = append(d.raw, e)
	}
	d.rawMu.Unlock()
	select {
	case d.rawWake <- struct{}{}:
	default:
	}
}

// processEvents tags raw events and publishes them, in order.
func (d *Driver) processEvents() {
	defer d.wg.Done()
	for {
		d.rawMu.Lock()
		batch := d.raw
		d.raw = nil
		d.rawMu.Unlock()
		for _, r := range batch {
			d.publish(r)
		}
		select {
		case <-d.rawWake:
		case <-d.done:
			return
		}
	}
}

func (d *Driver) publish(r rawEvent) {
	t := d.lookupTag(r.name)
	// Events can arrive late (a "started" after the domain was destroyed
	// again): the observation log records a change only when the domain's
	// current state confirms it, so that it never shows a domain stopped
	// while it runs, or running after it stopped.
	// The check and the record hold the domain's observation lock, which
	// Start and Destroy hold across their change and its record.
	switch {
	case r.kind == hypervisor.EventStarted:
		unlock := d.obsLock(r.name)
		if d.activeNow(r.name) == 1 {
			d.obs.Start(r.name, t.VMID, t.Epoch, "event "+r.reason)
		}
		unlock()
	case r.kind == hypervisor.EventStopped:
		unlock := d.obsLock(r.name)
		if d.activeNow(r.name) == 0 {
			d.obs.Stop(r.name, t.VMID, t.Epoch, "event "+r.reason)
		}
		unlock()
	case r.kind == hypervisor.EventUndefined:
		d.mu.Lock()
		delete(d.tags, r.name)
		d.mu.Unlock()
	}
	d.events.Push(hypervisor.Event{Time: r.time, Kind: r.kind, Domain: r.name, VMID: t.VMID, Epoch: t.Epoch, Reason: r.reason})
}

// lookupTag reads a domain's Kumoi tag from libvirt, falling back to the
// last one seen when the domain is gone (or the connection is).
func (d *Driver) lookupTag(name string) tag {
	if c, _, release, err := d.acquire("tag"); err == nil {
		defer release()
		if dom, err := c.LookupDomainByName(name); err == nil {
			defer dom.Free()
			meta, err := dom.GetMetadata(lv.DOMAIN_METADATA_ELEMENT, Namespace, lv.DOMAIN_AFFECT_CURRENT)
			switch {
			case err == nil:
				t := parseTag(meta)
				d.rememberTag(name, t)
				return t
			case isCode(err, lv.ERR_NO_DOMAIN_METADATA):
				d.rememberTag(name, tag{})
				return tag{}
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tags[name]
}

func (d *Driver) rememberTag(name string, t tag) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t.ok() {
		d.tags[name] = t
	} else {
		delete(d.tags, name)
	}
}

// syncObservations brings the observation log in line with what is active
// now: after a (re)connect, domains may have started or stopped unseen.
func (d *Driver) syncObservations() {
	if d.obs == nil {
		return
	}
	list, err := d.list("observe")
	if err != nil {
		d.log.Warn("cannot list domains for the observation log", "error", err)
		return
	}
	active := map[string]bool{}
	for _, in := range list {
		if in.State.Active() {
			active[in.Name] = true
			unlock := d.obsLock(in.Name)
			if d.activeNow(in.Name) == 1 {
				d.obs.Start(in.Name, in.VMID, in.Epoch, "seen active")
			}
			unlock()
		}
	}
	for _, name := range d.obs.Active() {
		if !active[name] {
			t := d.lookupTag(name)
			unlock := d.obsLock(name)
			if d.activeNow(name) == 0 {
				d.obs.Stop(name, t.VMID, t.Epoch, "seen inactive")
			}
			unlock()
		}
	}
}

// activeNow returns 1 if the domain is active, 0 if it is not (or gone), -1
// if that cannot be told (no connection).
func (d *Driver) activeNow(name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := d.Get(ctx, name)
	switch {
	case errors.Is(err, hypervisor.ErrNotFound):
		return 0
	case err != nil:
		return -1
	case info.State.Active():
		return 1
	}
	return 0
}
