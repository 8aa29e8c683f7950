package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/kumoi/kumoi/resource"
)

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
	var err error
	body, taken := takeFrameBody(r.Body, a.maxBody) // a framed request's: read already
	if !taken {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody))
	}
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
	// When the body is fine (the hot path of every write) the strict
	// decode has also checked that it is one well-formed JSON value. Only
	// a failure is classified again.
	var err error
	if req, ok := v.(*resource.CreateRequest); ok {
		err = resource.DecodeCreateRequest(body, req) // every create: without reflection
	} else {
		err = resource.DecodeStrict(body, v, "")
	}
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
	if r.URL.RawQuery == "" {
		return nil, nil // no parameters (every write's case): read-only, as a nil Values is
	}
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
