package jepsen

import (
	"errors"
	"net"
	"net/http"
	"syscall"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// writeOutcome classifies the error of a write: nil is ok; an answer in
// which the server says it did nothing (4xx, 503 no_leader or with
// Retry-After) or a connection that was never made is a failure; anything
// else (timeout, broken connection, 5xx, 503 without Retry-After) may have
// taken effect and is unknown.
func writeOutcome(err error) Status {
	if err == nil {
		return StatusOK
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.StatusCode >= 400 && ae.StatusCode < 500:
			return StatusFail
		case ae.StatusCode == http.StatusServiceUnavailable && (ae.RetryAfter > 0 || ae.Code == resource.CodeNoLeader):
			return StatusFail
		default:
			return StatusUnknown
		}
	}
	if neverSent(err) {
		return StatusFail
	}
	return StatusUnknown
}

// neverSent reports whether a transport error happened before the request
// could reach a server (as the SDK decides it).
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}
