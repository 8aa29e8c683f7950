package worker

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// report sends req (the VM reports and the network, image and volume
// states) in one request; sent says whether it was delivered. The reports
// go with the next sequence (the caller's slices are left without); a
// leader of an earlier release, which refuses the field, gets them
// without one, and so does every request for a while after. Whatever a
// request that failed carried is reported again, changed or not, until
// one records it: that request may still be applied later (a partition
// held it back), and only a newer report, with a higher sequence, keeps
// it from putting back an older state.
func (w *Worker) report(ctx context.Context, c *client.Client, req resource.ReportRequest) (res *resource.ReportResponse, sent bool, err error) {
	res, err = c.ReportAll(ctx, w.cfg.NodeID, w.seq.stampRequest(req))
	if refusesSeq(err) {
		w.seq.suspend()
		w.logger.Info("the leader does not take report sequences (a release before log protocol 11): reporting without them for now",
			"for", seqSuspension)
		res, err = c.ReportAll(ctx, w.cfg.NodeID, req)
	}
	if err != nil {
		for _, r := range req.Reports {
			w.unsure[resKey(resource.KindVM, r.VM)] = true
		}
		for _, r := range req.Resources {
			w.unsure[resKey(r.Kind, r.Name)] = true
		}
		return nil, false, err
	}
	for i, r := range res.Results {
		if i < len(req.Reports) && settles(r.Error) {
			delete(w.unsure, resKey(resource.KindVM, req.Reports[i].VM))
		}
	}
	for i, r := range res.ResourceResults {
		if i < len(req.Resources) && settles(r.Error) {
			delete(w.unsure, resKey(req.Resources[i].Kind, req.Resources[i].Name))
		}
	}
	return res, true, nil
}

// settles: an answer after which a request of unknown outcome that
// carried the same object can do no harm: this newer report was
// recorded, or a newer one was (stale_epoch), or the object is gone
// (not_found: the old request would find it gone too, or made again with
// another id, which reports name).
func settles(e *resource.ErrorBody) bool {
	return e == nil || e.Code == resource.CodeStaleEpoch || e.Code == resource.CodeNotFound
}

// refusesSeq: the answer of a build from before log protocol 11, whose
// API refuses a report's seq as an unknown field (400, naming it).
func refusesSeq(err error) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest && strings.HasSuffix(ae.Field, ".seq")
}

// seqSuspension is how long reports go without a sequence after a leader
// refused one; then the worker tries again (the leader may have been
// upgraded meanwhile).
const seqSuspension = time.Minute

// reportSeq numbers a worker's reports (resource.VMReport.Seq), so that
// the controllers can refuse one delivered after a newer one: a request
// that a partition held back, sent again by TCP once it healed, applied
// by whichever controller leads then (docs/jepsen.md, found so far 8).
// The sequence must grow across restarts of the worker too, without
// anything kept on disk: it is the wall clock in nanoseconds, and never
// at or below the last sequence sent or the highest the controllers
// recorded for this host's VMs, volumes, networks and images (seen),
// which covers a clock set back. Reconcile goroutine only.
type reportSeq struct {
	last uint64 // the last sequence sent
	seen uint64 // the highest recorded sequence read
	// off: until when requests go without a sequence (suspend).
	off time.Time
	now func() time.Time
}

// observe notes a recorded sequence read from the controllers.
func (s *reportSeq) observe(recorded uint64) { s.seen = max(s.seen, recorded) }

func (s *reportSeq) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// next is the sequence of the next request's reports.
func (s *reportSeq) next() uint64 {
	s.last = max(s.last+1, s.seen+1, uint64(max(s.clock().UnixNano(), 0)))
	return s.last
}

// suspend sends requests without a sequence for seqSuspension.
func (s *reportSeq) suspend() { s.off = s.clock().Add(seqSuspension) }

// stampRequest returns req with copies of its reports that carry the
// next sequence (the originals, which the worker remembers as sent, stay
// without one, so that they compare with the next pass's); req itself
// while suspended.
func (s *reportSeq) stampRequest(req resource.ReportRequest) resource.ReportRequest {
	if len(req.Reports) == 0 && len(req.Resources) == 0 || s.clock().Before(s.off) {
		return req
	}
	seq := s.next()
	req.Reports = stamped(req.Reports, func(r *resource.VMReport) { r.Seq = seq })
	req.Resources = stamped(req.Resources, func(r *resource.ResourceReport) { r.Seq = seq })
	return req
}

// stamped returns a copy of xs with stamp applied to each (nil for nil).
func stamped[T any](xs []T, stamp func(*T)) []T {
	if xs == nil {
		return nil
	}
	out := make([]T, len(xs))
	copy(out, xs)
	for i := range out {
		stamp(&out[i])
	}
	return out
}

// recordResources remembers the resource states the controllers
// recorded. Controllers that answer no resource results at all (a build
// that does not know them) are taken as having nothing more to hear of
// these states: they are not sent again until they change.
func (w *Worker) recordResources(sent []resource.ResourceReport, results []resource.ResourceResult, delivered bool) {
	if !delivered {
		return
	}
	if results == nil && len(sent) > 0 {
		w.logger.Debug("the controllers answered no resource results", "count", len(sent))
		for _, r := range sent {
			w.resReported[resKey(r.Kind, r.Name)] = r
			w.removalSettled(r, false)
		}
		return
	}
	for i, r := range results {
		if i >= len(sent) {
			break
		}
		if settles(r.Error) {
			w.removalSettled(sent[i], r.Error == nil || r.Error.Code == resource.CodeNotFound)
		}
		if r.Error != nil {
			w.logger.Debug("resource report refused", "kind", sent[i].Kind, "name", sent[i].Name, "state", sent[i].State, "error", r.Error.Message)
			if r.Error.Code == resource.CodeNotFound {
				// Deleted: what was recorded of it means nothing for
				// one made again under its name.
				delete(w.resReported, resKey(sent[i].Kind, sent[i].Name))
			}
			continue
		}
		w.resReported[resKey(sent[i].Kind, sent[i].Name)] = sent[i]
	}
}

// removalSettled stops reporting a network's removal here once its report
// was recorded, or is moot (the network is gone, or a newer state was
// recorded: stale_epoch). Recorded (from a controller that answers
// resource results), or the network deleted, the controllers' status
// holds no entry of this host, which netRemoved stood for meanwhile
// (networkState), so that is forgotten too; otherwise netRemoved stays
// until the network is up here again, as before.
func (w *Worker) removalSettled(r resource.ResourceReport, recorded bool) {
	if r.Kind == resource.KindNetwork && r.State == resource.HostResourceRemoved {
		delete(w.netRemoving, r.Name)
		if recorded {
			delete(w.netRemoved, r.Name)
		}
	}
}
