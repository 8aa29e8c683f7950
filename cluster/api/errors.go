package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// apiError is an error with its HTTP answer decided.
type apiError struct {
	status     int
	code       string
	msg        string
	field      string
	retryAfter bool // set Retry-After: 1
}

func (e *apiError) Error() string { return e.msg }

func badArg(field, format string, args ...any) *apiError {
	return &apiError{
		status: http.StatusBadRequest, code: resource.CodeInvalidArgument,
		field: field, msg: fmt.Sprintf(format, args...),
	}
}

func badJSON(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: resource.CodeInvalidJSON, msg: fmt.Sprintf(format, args...)}
}

func noLeader(msg string) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: resource.CodeNoLeader, msg: msg, retryAfter: true}
}

// isNotLeader reports whether err says this node is not (or no longer) the
// leader, before anything was proposed.
func isNotLeader(err error) bool {
	return errors.Is(err, resource.ErrNotLeader)
}

// toAPIError maps business errors (fsm.Result.Err), Backend errors and
// context errors onto the API's status codes and error codes.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	e := &apiError{status: http.StatusInternalServerError, code: resource.CodeInternal, msg: err.Error()}
	var fe *resource.FieldError
	switch {
	case errors.As(err, &fe):
		e.status, e.code, e.field = http.StatusBadRequest, resource.CodeInvalidArgument, fe.Field
	case errors.Is(err, resource.ErrInvalid):
		e.status, e.code = http.StatusBadRequest, resource.CodeInvalidArgument
	case errors.Is(err, resource.ErrLimitExceeded):
		e.status, e.code = http.StatusConflict, resource.CodeLimitExceeded
	case errors.Is(err, resource.ErrBadSnapshot):
		e.status, e.code = http.StatusBadRequest, resource.CodeInvalidArgument
	case errors.Is(err, resource.ErrLastVoter), errors.Is(err, resource.ErrOtherCluster), errors.Is(err, resource.ErrCannotTransfer),
		errors.Is(err, resource.ErrWorkersRunning):
		e.status, e.code = http.StatusConflict, resource.CodeConflict
	case errors.Is(err, resource.ErrUpgradeRequired):
		e.status, e.code = http.StatusConflict, resource.CodeUpgradeRequired
	case errors.Is(err, fsm.ErrNotFound), errors.Is(err, resource.ErrUnknownServer):
		e.status, e.code = http.StatusNotFound, resource.CodeNotFound
	case errors.Is(err, fsm.ErrExists):
		e.status, e.code = http.StatusConflict, resource.CodeAlreadyExists
	case errors.Is(err, fsm.ErrCASMismatch):
		e.status, e.code = http.StatusConflict, resource.CodeCASMismatch
	case errors.Is(err, fsm.ErrQuotaExceeded):
		e.status, e.code = http.StatusConflict, resource.CodeQuotaExceeded
	case errors.Is(err, fsm.ErrStaleEpoch):
		e.status, e.code = http.StatusConflict, resource.CodeStaleEpoch
	case errors.Is(err, fsm.ErrNoCapacity), errors.Is(err, fsm.ErrHostNotReady), errors.Is(err, fsm.ErrWrongPhase), errors.Is(err, fsm.ErrHostBusy),
		errors.Is(err, fsm.ErrInUse):
		e.status, e.code = http.StatusConflict, resource.CodeConflict
	case errors.Is(err, fsm.ErrHalted):
		// The write's entry (or one before it) halted this node's state
		// machine: other nodes may have applied it. No Retry-After.
		e.status, e.code, e.msg = http.StatusServiceUnavailable, resource.CodeHalted, haltedMessage(err)
	case errors.Is(err, fsm.ErrBadPayload), errors.Is(err, fsm.ErrUnknownCommand):
		e.msg = "the state machine rejected a command this controller built (a bug; the controller log has details): " + err.Error()
	case errors.Is(err, resource.ErrNoLeader):
		e.status, e.code, e.retryAfter = http.StatusServiceUnavailable, resource.CodeNoLeader, true
	case isNotLeader(err):
		e.status, e.code, e.retryAfter = http.StatusServiceUnavailable, resource.CodeNoLeader, true
		e.msg = "this controller is no longer the leader and could not hand the request on; retry shortly"
	case errors.Is(err, resource.ErrNotReady), errors.Is(err, resource.ErrShuttingDown):
		e.status, e.code, e.retryAfter = http.StatusServiceUnavailable, resource.CodeUnavailable, true
	case errors.Is(err, resource.ErrLeadershipLost):
		// No Retry-After: a blind retry of a write that did apply may
		// fail (409) or apply twice (updates without ?cas).
		e.status, e.code = http.StatusServiceUnavailable, resource.CodeUnavailable
		e.msg = resource.ErrLeadershipLost.Error() + "; read the object to find out, then retry if needed"
	case errors.Is(err, context.DeadlineExceeded):
		e.status, e.code = http.StatusGatewayTimeout, resource.CodeTimeout
		e.msg = "the request timed out (" + err.Error() + "); a write may or may not have been applied: read the object to find out"
	case errors.Is(err, context.Canceled):
		e.status, e.code = http.StatusServiceUnavailable, resource.CodeUnavailable
		e.msg = "the request was cancelled (" + err.Error() + ")"
	}
	return e
}

// writeError answers err as resource.ErrorResponse JSON.
func (a *httpAPI) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := toAPIError(err)
	if e.status >= 500 && e.code == resource.CodeInternal {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	} else {
		a.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", e.status, "code", e.code, "error", err)
	}
	if e.retryAfter {
		w.Header().Set("Retry-After", "1")
	}
	// Headers meant for a success (a stream's type, a length) must not
	// describe the error body.
	w.Header().Del("Content-Length")
	w.Header().Del("Location")
	body := resource.ErrorResponse{Error: resource.ErrorBody{Code: e.code, Message: e.msg, Field: e.field}}
	if werr := writeJSON(w, e.status, body); werr != nil {
		a.log.Error("cannot encode error response", "error", werr)
	}
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return writeJSONBytes(w, status, b)
}

// writeObjectsJSON is writeJSON of objects from the state store, with
// their hand-written encoding (the same bytes, resource.AppendObjectsJSON):
// encoding/json re-scans every object's spec and status.
func writeObjectsJSON(w http.ResponseWriter, status int, objs []*resource.Object) error {
	b, err := resource.AppendObjectsJSON(make([]byte, 0, 64+400*len(objs)), objs)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return writeJSONBytes(w, status, b)
}

// The values of the headers every JSON answer carries, shared by them
// (never changed in place: Header.Add and Set replace or copy them).
var (
	jsonContentType = []string{"application/json"}
	noSniff         = []string{"nosniff"}
)

// writeJSONBytes answers status with b, a JSON value, and a newline; b
// is the answer's from then on.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) error {
	h := w.Header()
	h["Content-Type"], h["X-Content-Type-Options"] = jsonContentType, noSniff // shared: Set allocates
	w.WriteHeader(status)
	writeOwned(w, append(b, '\n'))
	return nil
}
