package worker

import (
	"context"
	"errors"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/resource"
)

// removeDomain destroys and undefines a domain; it reports whether the
// domain is no longer running (an undefine failure leaves it defined but
// off, which holds no capacity).
func (w *Worker) removeDomain(ctx context.Context, d hypervisor.DomainInfo) bool {
	w.cancelShutdown(d.Name)
	w.stopping[d.Name] = true
	if d.State.Active() {
		if err := w.drv.Destroy(ctx, d.Name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			w.logger.Warn("destroy failed", "domain", d.Name, "error", err)
			return false
		}
	}
	if err := w.drv.Undefine(ctx, d.Name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		w.logger.Warn("undefine failed", "domain", d.Name, "error", err)
	}
	return true
}

// fence destroys every Kumoi domain of this worker's cluster on this host
// (another cluster's are not its to stop).
func (w *Worker) fence(ctx context.Context) {
	w.fenced = true
	// An outgoing migration is cancelled first (the guest runs here
	// again, and is destroyed with the rest); an arrival, paused or not,
	// is destroyed as any domain of this cluster is.
	w.cancelMigrations()
	doms, err := w.drv.List(ctx)
	if err != nil {
		return
	}
	for _, d := range doms {
		if d.Kumoi && d.State.Active() && !w.isForeign(d) {
			w.cancelShutdown(d.Name)
			w.stopping[d.Name] = true
			if err := w.drv.Destroy(ctx, d.Name); err != nil {
				w.logger.Warn("fencing: destroy failed", "domain", d.Name, "error", err)
			}
		}
	}
	w.reported = map[string]resource.VMReport{}
	clear(w.unsure)
}
