package worker

import (
	"context"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// report sends req (the VM reports and the network, image and volume
// states) in one request; sent says whether it was delivered.
func (w *Worker) report(ctx context.Context, c *client.Client, req resource.ReportRequest) (res *resource.ReportResponse, sent bool, err error) {
	res, err = c.ReportAll(ctx, w.cfg.NodeID, req)
	return res, err == nil, err
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
