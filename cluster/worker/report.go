package worker

import (
	"context"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// report sends req (the VM reports and the network, image and volume
// states) in one request; sent says whether it was delivered. The reports
// go with the next sequence (the caller's slices are left without).
func (w *Worker) report(ctx context.Context, c *client.Client, req resource.ReportRequest) (res *resource.ReportResponse, sent bool, err error) {
	req = w.seq.stampRequest(req)
	res, err = c.ReportAll(ctx, w.cfg.NodeID, req)
	return res, err == nil, err
}

// reportSeq numbers a worker's reports (resource.VMReport.Seq), so that
// the controllers can refuse one delivered after a newer one: a request
// that a partition held back, sent again by TCP once it healed, applied
// by whichever controller leads then (docs/jepsen.md, found so far 8).
// The sequence must grow across restarts of the worker too, without
// anything kept on disk: it is the wall clock in nanoseconds, and never
// at or below the last sequence sent or the highest the controllers
// recorded for this host's VMs (seen), which covers a clock set back.
// Reconcile goroutine only.
type reportSeq struct {
	last uint64 // the last sequence sent
	seen uint64 // the highest status.report_seq read
	now  func() time.Time
}

// observe notes a VM's status.report_seq, read from the controllers.
func (s *reportSeq) observe(recorded uint64) { s.seen = max(s.seen, recorded) }

// next is the sequence of the next request's reports.
func (s *reportSeq) next() uint64 {
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	s.last = max(s.last+1, s.seen+1, uint64(max(now().UnixNano(), 0)))
	return s.last
}

// stampRequest returns req with copies of its reports that carry the
// next sequence (the originals, which the worker remembers as sent, stay
// without one, so that they compare with the next pass's).
func (s *reportSeq) stampRequest(req resource.ReportRequest) resource.ReportRequest {
	if len(req.Reports) == 0 && len(req.Resources) == 0 {
		return req
	}
	seq := s.next()
	if req.Reports != nil {
		reps := make([]resource.VMReport, len(req.Reports))
		for i, r := range req.Reports {
			r.Seq = seq
			reps[i] = r
		}
		req.Reports = reps
	}
	if req.Resources != nil {
		res := make([]resource.ResourceReport, len(req.Resources))
		for i, r := range req.Resources {
			r.Seq = seq
			res[i] = r
		}
		req.Resources = res
	}
	return req
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
		}
		return
	}
	for i, r := range results {
		if i >= len(sent) {
			break
		}
		if r.Error != nil {
			w.logger.Debug("resource report refused", "kind", sent[i].Kind, "name", sent[i].Name, "state", sent[i].State, "error", r.Error.Message)
			continue
		}
		w.resReported[resKey(sent[i].Kind, sent[i].Name)] = sent[i]
	}
}
