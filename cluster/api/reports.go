package api

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// resourceReportKinds are the kinds a worker reports per host.
var resourceReportKinds = []resource.Kind{resource.KindNetwork, resource.KindImage, resource.KindVolume}

// resourceReportStates are the states a resource report may carry.
var resourceReportStates = []string{
	resource.HostResourceReady, resource.HostResourcePending, resource.HostResourceMissing,
	resource.HostResourceFailed, resource.HostResourceRemoved, resource.HostResourceRecreate,
}

// maxResourceReasonBytes bounds a resource report's reason.
const maxResourceReasonBytes = 4096

// report: POST /v1/hosts/{name}/report with a resource.ReportRequest. Each
// report is checked on its own (host owns the VM, epoch is current) and the
// answer says, per VM, whether it was recorded; likewise, per network,
// image and volume (resources), in resource_results.
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
			if len(req.Reports) == 0 && len(req.Resources) == 0 {
				return badArg("reports", "is empty; send at least one report (or resource report)")
			}
			if len(req.Reports) > fsm.MaxBatchOps {
				return badArg("reports", "has %d reports; the limit is %d", len(req.Reports), fsm.MaxBatchOps)
			}
			if err := checkResourceReports(req.Resources); err != nil {
				return err
			}
			freq := &fsm.ReportRequest{Time: time.Now().UTC(), Host: host, Reports: req.Reports, Resources: req.Resources}
			res, err := a.propose(r.Context(), fsm.ReportRequestType, freq)
			var resErr error // the error of every resource report, when they were not sent
			// A worker may be upgraded before the controllers: while some
			// controller does not speak a field's protocol, record the
			// report without that field (newest first).
			for errors.Is(err, resource.ErrUpgradeRequired) {
				switch {
				case freq.UsesSeq():
					// Protocol 11: recorded, not ordered (a report
					// delivered late is recorded too, as before).
					freq = freq.WithoutSeq()
				case len(freq.Resources) > 0 && len(freq.Reports) > 0:
					// Protocol 7: the VM reports alone; each resource
					// report says why it was not recorded.
					resErr = err
					freq = freq.WithoutResources()
				case freq.UsesRestarts():
					// Protocol 4: what happened (phase, reason) without
					// the restart count.
					freq = freq.WithoutRestarts()
				default:
					return err
				}
				res, err = a.propose(r.Context(), fsm.ReportRequestType, freq)
			}
			if err != nil {
				return err
			}
			out := resource.ReportResponse{Index: res.Index, Results: make([]resource.ReportResult, len(req.Reports))}
			for i, rep := range req.Reports {
				out.Results[i].VM = rep.VM
				if i < len(res.ItemErrors) && res.ItemErrors[i] != nil {
					out.Results[i].Error = errorBody(res.ItemErrors[i])
				}
			}
			if len(req.Resources) > 0 {
				errs := res.ResourceErrors
				out.ResourceResults = make([]resource.ResourceResult, len(req.Resources))
				for i, rep := range req.Resources {
					out.ResourceResults[i] = resource.ResourceResult{Kind: rep.Kind, Name: rep.Name}
					switch {
					case resErr != nil:
						out.ResourceResults[i].Error = errorBody(resErr)
					case i < len(errs) && errs[i] != nil:
						out.ResourceResults[i].Error = errorBody(errs[i])
					}
				}
			}
			w.Header().Set(headerIndex, strconv.FormatUint(res.Index, 10))
			return writeJSON(w, http.StatusOK, out)
		})
	}
}

func errorBody(err error) *resource.ErrorBody {
	e := toAPIError(err)
	return &resource.ErrorBody{Code: e.code, Message: e.msg, Field: e.field}
}

// checkResourceReports refuses (400, naming the field) a resource report
// of another kind, with a bad name or id, or an unknown state.
func checkResourceReports(reps []resource.ResourceReport) error {
	if len(reps) > fsm.MaxBatchOps {
		return badArg("resources", "has %d resource reports; the limit is %d", len(reps), fsm.MaxBatchOps)
	}
	for i, rep := range reps {
		f := "resources[" + strconv.Itoa(i) + "]"
		if !slices.Contains(resourceReportKinds, rep.Kind) {
			return badArg(f+".kind", "must be network, image or volume (got %q)", rep.Kind)
		}
		if err := resource.ValidateName(rep.Name); err != nil {
			return badArg(f+".name", "%s", fieldMsgOf(err))
		}
		if len(rep.ID) > 64 {
			return badArg(f+".id", "is %d bytes long; an object id is at most 64", len(rep.ID))
		}
		if !slices.Contains(resourceReportStates, rep.State) {
			return badArg(f+".state", "must be one of ready, pending, missing, failed, removed or recreated (got %q)", rep.State)
		}
		if rep.Kind != resource.KindVolume && rep.SizeMiB != 0 {
			return badArg(f+".size_mib", "is for volumes only")
		}
		if rep.SizeMiB < 0 || rep.SizeMiB > resource.MaxVolumeSizeMiB {
			return badArg(f+".size_mib", "must be between 0 and %d (got %d)", int64(resource.MaxVolumeSizeMiB), rep.SizeMiB)
		}
		if len(rep.Reason) > maxResourceReasonBytes {
			return badArg(f+".reason", "is %d bytes long; the limit is %d", len(rep.Reason), maxResourceReasonBytes)
		}
	}
	return nil
}

func fieldMsgOf(err error) string {
	var fe *resource.FieldError
	if errors.As(err, &fe) {
		return fe.Msg
	}
	return err.Error()
}

// migrationEvents: POST /v1/hosts/{name}/migrations with a
// resource.MigrationEventsRequest: a worker's word on the migrations its
// host takes part in (fsm.MigrationEventRequest). Each event is checked on
// its own; the answer says, per event, whether it was recorded.
func (a *httpAPI) migrationEvents(host string) apiHandler {
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
			var req resource.MigrationEventsRequest
			if err := decodeBody(body, &req); err != nil {
				return err
			}
			if len(req.Events) == 0 {
				return badArg("events", "is empty; send at least one migration event")
			}
			if len(req.Events) > fsm.MaxBatchOps {
				return badArg("events", "has %d events; the limit is %d", len(req.Events), fsm.MaxBatchOps)
			}
			for i, e := range req.Events {
				if err := resource.ValidateName(e.VM); err != nil {
					return badArg("events["+strconv.Itoa(i)+"].vm", "%s", fieldMsgOf(err))
				}
				if err := fsm.CheckMigrationEvent(e); err != nil {
					var fe *resource.FieldError
					if errors.As(err, &fe) {
						return badArg("events["+strconv.Itoa(i)+"]."+fe.Field, "%s", fe.Msg)
					}
					return err
				}
			}
			res, err := a.propose(r.Context(), fsm.MigrationEventRequestType, &fsm.MigrationEventRequest{Time: time.Now().UTC(), Host: host, Events: req.Events})
			if err != nil {
				return err
			}
			out := resource.MigrationEventsResponse{Index: res.Index, Results: make([]resource.ReportResult, len(req.Events))}
			for i, e := range req.Events {
				out.Results[i].VM = e.VM
				if i < len(res.ItemErrors) && res.ItemErrors[i] != nil {
					out.Results[i].Error = errorBody(res.ItemErrors[i])
				}
			}
			w.Header().Set(headerIndex, strconv.FormatUint(res.Index, 10))
			return writeJSON(w, http.StatusOK, out)
		})
	}
}
