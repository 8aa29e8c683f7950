package controller

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// monitorLeadership turns raft's leadership notifications into the
// leader-only lifecycle: on winning, a barrier (so every earlier entry is
// applied here) and then the leader loops; on losing, cancel them.
func (c *Controller) monitorLeadership(notify <-chan bool) {
	defer c.wg.Done()
	var (
		cancel context.CancelFunc
		loops  sync.WaitGroup
	)
	stop := func() {
		if cancel != nil {
			c.readyTerm.Store(0)
			cancel()
			loops.Wait()
			cancel = nil
			c.logger.Info("leader loops stopped")
		}
	}
	defer stop()
	for {
		select {
		case <-c.shutdownCh:
			return
		case isLeader := <-notify:
			if !isLeader {
				stop()
				continue
			}
			if cancel != nil {
				continue
			}
			ctx, cancelFn := context.WithCancel(context.Background())
			cancel = cancelFn
			loops.Add(1)
			go func() {
				defer loops.Done()
				c.establishLeadership(ctx, &loops)
			}()
		}
	}
}

// establishLeadership waits for the barrier, marks the node ready for
// linearizable reads in this term, and starts the leader loops.
func (c *Controller) establishLeadership(ctx context.Context, loops *sync.WaitGroup) {
	term := c.raft.CurrentTerm()
	for {
		err := c.waitFuture(ctx.Done(), c.raft.Barrier(c.cfg.ApplyTimeout))
		if err == nil {
			break
		}
		c.logger.Warn("leadership barrier failed; retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		if c.raft.State() != raft.Leader {
			return
		}
	}
	if ctx.Err() != nil || c.raft.CurrentTerm() != term {
		return
	}
	c.readyTerm.Store(term)
	c.logger.Info("leadership established", "term", term, "applied", c.fsm.AppliedIndex())
	c.leaderLoopsMu.Lock()
	ls := append([]LeaderLoop(nil), c.leaderLoops...)
	c.leaderLoopsMu.Unlock()
	for _, l := range ls {
		loops.Add(1)
		go func() {
			defer loops.Done()
			c.logger.Debug("leader loop started", "loop", l.Name)
			l.Run(ctx)
		}()
	}
}
