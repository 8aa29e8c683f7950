package worker

import (
	"context"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// reportAller is the client call that sends a whole report request: the
// VM reports and the network, image and volume states (POST
// /v1/hosts/{host}/report with resource.ReportRequest). A client without
// it sends the VM reports alone (Report) and no resource states.
type reportAller interface {
	ReportAll(ctx context.Context, host string, req resource.ReportRequest) (*resource.ReportResponse, error)
}

// report sends req; sent says whether its resource states went with it.
func (w *Worker) report(ctx context.Context, c *client.Client, req resource.ReportRequest) (res *resource.ReportResponse, sent bool, err error) {
	if ra, ok := any(c).(reportAller); ok {
		res, err = ra.ReportAll(ctx, w.cfg.NodeID, req)
		return res, err == nil, err
	}
	if len(req.Resources) > 0 && !w.noResReports {
		w.noResReports = true
		w.logger.Warn("this build's API client cannot send network, image and volume states (no ReportAll): they are not reported")
	}
	if len(req.Reports) == 0 {
		return &resource.ReportResponse{}, false, nil
	}
	res, err = c.Report(ctx, w.cfg.NodeID, req.Reports)
	return res, false, err
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
