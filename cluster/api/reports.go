package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// report: POST /v1/hosts/{name}/report with a resource.ReportRequest. Each
// report is checked on its own (host owns the VM, epoch is current) and the
// answer says, per VM, whether it was recorded.
func (a *httpAPI) report(host string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := apiQuery(r); err != nil {
			return err
		}
		if err := resource.ValidateName(host); err != nil {
			return err
		}
		body, err := a.readBody(w, r)
		if err != nil {
			return err
		}
		return a.onLeader(w, r, body, func() error {
			if err := a.allowReport(r, host); err != nil {
				return err
			}
			var req resource.ReportRequest
			if err := decodeBody(body, &req); err != nil {
				return err
			}
			if len(req.Reports) == 0 {
				return badArg("reports", "is empty; send at least one report")
			}
			if len(req.Reports) > fsm.MaxBatchOps {
				return badArg("reports", "has %d reports; the limit is %d", len(req.Reports), fsm.MaxBatchOps)
			}
			freq := &fsm.ReportRequest{Time: time.Now().UTC(), Host: host, Reports: req.Reports}
			res, err := a.propose(r.Context(), fsm.ReportRequestType, freq)
			if errors.Is(err, resource.ErrUpgradeRequired) && freq.UsesRestarts() {
				// Some controller does not speak protocol 4 yet: record
				// what happened (phase, reason) without the restart count.
				res, err = a.propose(r.Context(), fsm.ReportRequestType, freq.WithoutRestarts())
			}
			if err != nil {
				return err
			}
			out := resource.ReportResponse{Index: res.Index, Results: make([]resource.ReportResult, len(req.Reports))}
			for i, rep := range req.Reports {
				out.Results[i].VM = rep.VM
				if i < len(res.ItemErrors) && res.ItemErrors[i] != nil {
					e := toAPIError(res.ItemErrors[i])
					out.Results[i].Error = &resource.ErrorBody{Code: e.code, Message: e.msg, Field: e.field}
				}
			}
			w.Header().Set(headerIndex, strconv.FormatUint(res.Index, 10))
			return writeJSON(w, http.StatusOK, out)
		})
	}
}
