package worker

import "context"

// pendingShutdown is a graceful shutdown running in the background.
type pendingShutdown struct{ cancel context.CancelFunc }

// startShutdown asks name's guest to shut down (destroying it after
// ShutdownGrace), in the background; the loop is woken when it ends. A
// shutdown already under way is left alone.
func (w *Worker) startShutdown(ctx context.Context, name string) {
	w.smu.Lock()
	defer w.smu.Unlock()
	if w.shutdowns[name] != nil {
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	p := &pendingShutdown{cancel: cancel}
	w.shutdowns[name] = p
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer cancel()
		err := w.drv.Shutdown(sctx, name, w.cfg.ShutdownGrace)
		w.smu.Lock()
		if w.shutdowns[name] == p {
			delete(w.shutdowns, name)
		}
		w.smu.Unlock()
		if err != nil && sctx.Err() == nil {
			w.logger.Warn("shutdown failed", "domain", name, "error", err)
		}
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}()
}

// cancelShutdown stops waiting for name's graceful shutdown, if one is
// under way (the guest may still power off by itself), so that a destroy
// or a start can go ahead.
func (w *Worker) cancelShutdown(name string) {
	w.smu.Lock()
	defer w.smu.Unlock()
	if p := w.shutdowns[name]; p != nil {
		p.cancel()
		delete(w.shutdowns, name)
	}
}

// shuttingDown reports whether a graceful shutdown of name is under way.
func (w *Worker) shuttingDown(name string) bool {
	w.smu.Lock()
	defer w.smu.Unlock()
	return w.shutdowns[name] != nil
}

// wake makes the reconcile loop run a pass soon (never blocks).
func (w *Worker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}
