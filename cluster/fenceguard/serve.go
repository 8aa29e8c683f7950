package fenceguard

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"slices"
	"sync"
	"time"
)

// serve accepts workers' connections.
func (g *Guard) serve(ctx context.Context, ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.conn(ctx, conn)
		}()
	}
}

// conn answers one worker's renewals until it hangs up.
func (g *Guard) conn(ctx context.Context, c net.Conn) {
	defer c.Close()
	go func() { <-ctx.Done(); c.Close() }()
	r := bufio.NewScanner(c)
	r.Buffer(make([]byte, 64<<10), 64<<10)
	enc := json.NewEncoder(c)
	for r.Scan() {
		var rn Renewal
		var ack Ack
		if err := json.Unmarshal(r.Bytes(), &rn); err != nil {
			ack.Error = "bad renewal: " + err.Error()
		} else {
			ack = g.renew(rn)
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		if err := enc.Encode(ack); err != nil {
			return
		}
	}
}

// renew takes a worker's renewal.
func (g *Guard) renew(rn Renewal) Ack {
	g.sweep.Lock() // before mu: no proof in the middle of a sweep (Guard.sweep)
	defer g.sweep.Unlock()
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	ack := Ack{Seq: rn.Seq, FenceAfter: g.cfg.FenceAfter}
	if rn.Host != g.cfg.NodeID {
		ack.Error = "this guard guards host " + g.cfg.NodeID + ", not " + rn.Host
		return ack
	}
	if rn.Cluster != "" && g.cluster != rn.Cluster {
		g.cluster = rn.Cluster
	}
	if len(rn.Controllers) > 0 && !slices.Equal(rn.Controllers, g.controllers) {
		g.controllers = slices.Clone(rn.Controllers)
		g.writeFile(ControllersFile, g.controllers)
	}
	g.lastRenewal = now
	// A proof from the future (another clock) is not one.
	if rn.Proof != 0 && rn.Proof <= now {
		g.proveLocked(rn.Proof, "the worker")
	}
	ack.Proof = g.proof
	if g.record != nil {
		r := *g.record
		ack.Fence = &r
	}
	return ack
}
