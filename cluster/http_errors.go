package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/hashicorp/raft"

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
	return errors.Is(err, ErrNotLeader) || errors.Is(err, raft.ErrNotLeader)
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
	case errors.Is(err, fsm.ErrNotFound), errors.Is(err, ErrUnknownServer):
		e.status, e.code = http.StatusNotFound, resource.CodeNotFound
	case errors.Is(err, fsm.ErrExists):
		e.status, e.code = http.StatusConflict, resource.CodeAlreadyExists
	case errors.Is(err, fsm.ErrCASMismatch):
		e.status, e.code = http.StatusConflict, resource.CodeCASMismatch
	case errors.Is(err, fsm.ErrStaleEpoch):
		e.status, e.code = http.StatusConflict, resource.CodeStaleEpoch
	case errors.Is(err, fsm.ErrNoCapacity), errors.Is(err, fsm.ErrHostNotReady), errors.Is(err, fsm.ErrWrongPhase), errors.Is(err, fsm.ErrHostBusy):
		e.status, e.code = http.StatusConflict, resource.CodeConflict
	case errors.Is(err, fsm.ErrBadPayload), errors.Is(err, fsm.ErrUnknownCommand):
		e.msg = "the state machine rejected a command this controller built (a bug; the controller log has details): " + err.Error()
	case errors.Is(err, ErrNoLeader):
		e.status, e.code, e.retryAfter = http.StatusServiceUnavailable, resource.CodeNoLeader, true
	case isNotLeader(err):
		e.status, e.code, e.retryAfter = http.StatusServiceUnavailable, resource.CodeNoLeader, true
		e.msg = "this controller is no longer the leader and could not hand the request on; retry shortly"
	case errors.Is(err, ErrNotReady), errors.Is(err, ErrShuttingDown):
		e.status, e.code, e.retryAfter = http.StatusServiceUnavailable, resource.CodeUnavailable, true
	case errors.Is(err, ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipLost):
		// No Retry-After: a blind retry of a write that did apply may
		// fail (409) or apply twice (updates without ?cas).
		e.status, e.code = http.StatusServiceUnavailable, resource.CodeUnavailable
		e.msg = ErrLeadershipLost.Error() + "; read the object to find out, then retry if needed"
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
	if werr := apiWriteJSON(w, e.status, body); werr != nil {
		a.log.Error("cannot encode error response", "error", werr)
	}
}

// apiWriteJSON answers v as JSON with status.
func apiWriteJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// readBody reads the whole request body, at most a.maxBody bytes; an empty
// body is an error.
func (a *httpAPI) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := a.readOptionalBody(w, r)
	if err == nil && body == nil {
		return nil, badJSON("request body is empty; send a JSON object (see docs/api.md)")
	}
	return body, err
}

// readOptionalBody reads the whole request body, at most a.maxBody bytes;
// an empty (or all-blank) body is nil.
func (a *httpAPI) readOptionalBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	// Hand MaxBytesReader the server's own writer so that it can tell
	// the server to close the connection after an oversized body.
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		w = u.Unwrap()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, &apiError{
			status: http.StatusRequestEntityTooLarge, code: resource.CodeBodyTooLarge,
			msg: fmt.Sprintf("request body is larger than the limit of %d bytes; send a smaller object", tooBig.Limit),
		}
	case err != nil:
		return nil, badJSON("cannot read the request body: %v", err)
	case len(bytes.TrimSpace(body)) == 0:
		return nil, nil
	}
	return body, nil
}

// decodeBody checks that body is one well-formed JSON value (else 400
// invalid_json naming the byte offset) and decodes it strictly into v (else
// 400 invalid_argument naming the field).
func decodeBody(body []byte, v any) error {
	// One pass when the body is fine (the hot path of every write): a
	// strict decode that succeeds has also checked that the body is one
	// well-formed JSON value. Only a failure is classified again.
	err := resource.DecodeStrict(body, v, "")
	if err == nil {
		return nil
	}
	if jerr := checkJSON(body); jerr != nil {
		return jerr
	}
	return err
}

// checkJSON is nil when body is one well-formed JSON value, else a 400
// invalid_json naming the byte offset.
func checkJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var syn *json.SyntaxError
		switch {
		case errors.As(err, &syn):
			return badJSON("malformed JSON at byte %d: %v", syn.Offset, syn)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badJSON("malformed JSON: the body ends early at byte %d (truncated?)", len(body))
		}
		return badJSON("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badJSON("malformed JSON: unexpected data after the JSON value at byte %d", dec.InputOffset())
	}
	return nil
}

// apiQuery parses the query string and rejects parameters the endpoint does
// not know and repeated single-valued parameters. A name in allowed that
// ends in "*" may repeat.
func apiQuery(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badArg("query", "malformed query string: %v", err)
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		switch {
		case slices.Contains(allowed, k+"*"):
		case slices.Contains(allowed, k):
			if len(q[k]) > 1 {
				return nil, badArg(k, "query parameter %q is given %d times; give it once", k, len(q[k]))
			}
		default:
			names := make([]string, len(allowed))
			for i, n := range allowed {
				names[i] = strings.TrimSuffix(n, "*")
			}
			accepts := "no query parameters"
			if len(names) > 0 {
				accepts = "only " + strings.Join(names, ", ")
			}
			return nil, badArg(k, "unknown query parameter %q; %s %s accepts %s", k, r.Method, r.URL.Path, accepts)
		}
	}
	return q, nil
}
