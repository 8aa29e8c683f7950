package driverutil

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
)

// Observer writes an observation log: one JSON line per transition of a
// domain between inactive and active. A nil *Observer and one with a nil
// writer do nothing. Repeated starts (or stops) of the same domain write
// one line.
type Observer struct {
	w    io.Writer
	host string

	mu     sync.Mutex
	active map[string]bool
	err    error
}

// NewObserver returns an observer writing to w for host (nil if w is nil).
func NewObserver(w io.Writer, host string) *Observer {
	if w == nil {
		return nil
	}
	return &Observer{w: w, host: host, active: map[string]bool{}}
}

// Start records that domain is (or is about to be) active.
func (o *Observer) Start(domain, vmID string, epoch uint64, reason string) {
	o.record(domain, vmID, epoch, hypervisor.ObserveStart, reason, true)
}

// Stop records that domain is no longer active.
func (o *Observer) Stop(domain, vmID string, epoch uint64, reason string) {
	o.record(domain, vmID, epoch, hypervisor.ObserveStop, reason, false)
}

// Err is the first write error, if any.
func (o *Observer) Err() error {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

func (o *Observer) record(domain, vmID string, epoch uint64, event, reason string, active bool) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.active[domain] == active {
		return
	}
	if active {
		o.active[domain] = true
	} else {
		delete(o.active, domain)
	}
	line, err := json.Marshal(hypervisor.Observation{
		Time: time.Now().UTC(), Host: o.host, Domain: domain, VMID: vmID,
		Epoch: epoch, Event: event, Reason: reason,
	})
	if err == nil {
		_, err = o.w.Write(append(line, '\n'))
	}
	if err != nil && o.err == nil {
		o.err = err
	}
}

// Active lists the domains the log last recorded as active.
func (o *Observer) Active() []string {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]string, 0, len(o.active))
	for n := range o.active {
		out = append(out, n)
	}
	return out
}
