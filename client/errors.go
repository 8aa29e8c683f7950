package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// Sentinel errors. An *APIError matches the ones that fit its status code
// and error code under errors.Is.
var (
	// ErrNotFound: the object (or server) does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: any 409, i.e. ErrAlreadyExists or ErrCASMismatch.
	ErrConflict = errors.New("conflict")
	// ErrAlreadyExists: an object of that kind and name exists (409).
	ErrAlreadyExists = errors.New("already exists")
	// ErrCASMismatch: the object's modify_index is not the CAS index (409).
	ErrCASMismatch = errors.New("cas mismatch")
	// ErrUnavailable: the controllers answered 503 (no leader, shutting down).
	ErrUnavailable = errors.New("controller unavailable")
	// ErrUnreachable: no controller could be reached at all.
	ErrUnreachable = errors.New("cannot reach any controller")
	// ErrUnknownOutcome: a write may or may not have been applied (the
	// connection broke after the request was sent, or the server answered
	// 504 timeout or 503 unavailable without Retry-After). Read the object
	// to find out.
	ErrUnknownOutcome = errors.New("outcome unknown")
	// ErrUnauthenticated: the request carried no ACL token, or one the
	// cluster does not know (401). Set Config.Token.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the request's ACL token does not grant what it
	// asked for (403). Nothing was done.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrQuotaExceeded: the write would take a project over a quota
	// (409 quota_exceeded; the message names the project and the limit).
	// Nothing was written.
	ErrQuotaExceeded = errors.New("quota exceeded")
)

// Error codes of the ACL answers (resource.CodeUnauthenticated and
// resource.CodePermissionDenied on the server).
const (
	codeUnauthenticated  = resource.CodeUnauthenticated
	codePermissionDenied = resource.CodePermissionDenied
)

// APIError is a non-2xx answer of the API, decoded from
// resource.ErrorResponse.
type APIError struct {
	StatusCode int    // HTTP status code
	Code       string // resource.Code* (may be empty for non-Kumoi answers)
	Message    string // what went wrong and how to fix it
	Field      string // the offending field, e.g. "spec.cpus", if any
	// RetryAfter is the server's Retry-After (503): the request was not
	// carried out and may be sent again after this long.
	RetryAfter time.Duration
	// Method and Path say which request failed, e.g. "GET /v1/vms/web".
	Method, Path string

	hasRetryAfter bool
	header        http.Header
}

// notDone reports whether the server said that it did nothing, so that any
// request may be sent again: 503 no_leader, or a 503 with Retry-After.
func (e *APIError) notDone() bool {
	return e.StatusCode == http.StatusServiceUnavailable && (e.hasRetryAfter || e.Code == resource.CodeNoLeader)
}

// Error returns the server's message, prefixed with the field when the
// message does not name it already: "spec.cpus: must be at least 1 (got 0)".
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.StatusCode))
		if e.Code != "" {
			msg += " (" + e.Code + ")"
		}
		if msg == "" {
			msg = fmt.Sprintf("HTTP status %d", e.StatusCode)
		}
	}
	if e.Field != "" && !strings.HasPrefix(msg, e.Field) {
		msg = e.Field + ": " + msg
	}
	return msg
}

// Is maps the error onto the package's sentinels and onto
// resource.ErrInvalid for 400 answers.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound || e.Code == resource.CodeNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrAlreadyExists:
		return e.Code == resource.CodeAlreadyExists
	case ErrCASMismatch:
		return e.Code == resource.CodeCASMismatch
	case ErrQuotaExceeded:
		return e.Code == resource.CodeQuotaExceeded
	case ErrUnavailable:
		return e.StatusCode == http.StatusServiceUnavailable
	case ErrUnknownOutcome:
		return e.StatusCode == http.StatusGatewayTimeout || e.Code == resource.CodeTimeout ||
			(e.StatusCode == http.StatusServiceUnavailable && !e.notDone())
	case ErrUnauthenticated:
		return e.StatusCode == http.StatusUnauthorized || e.Code == codeUnauthenticated
	case ErrPermissionDenied:
		return e.StatusCode == http.StatusForbidden || e.Code == codePermissionDenied
	case resource.ErrInvalid:
		return e.Code == resource.CodeInvalidArgument || e.Code == resource.CodeInvalidJSON
	}
	return false
}

// IsNotFound reports whether err says the object does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsConflict reports whether err is a 409: the name is taken or a CAS
// update lost against a concurrent change.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// IsUnauthenticated reports whether err is a 401: the request had no
// token, or one that the cluster does not know (deleted, mistyped).
func IsUnauthenticated(err error) bool { return errors.Is(err, ErrUnauthenticated) }

// IsPermissionDenied reports whether err is a 403: the token is valid but
// its policies do not allow the request.
func IsPermissionDenied(err error) bool { return errors.Is(err, ErrPermissionDenied) }

// UnreachableError says that none of the controllers could be reached.
type UnreachableError struct {
	Addrs []string // the addresses that were tried
	Err   error    // the last transport error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach any controller at %s: %s",
		strings.Join(e.Addrs, ", "), describeNetError(e.Err))
}

// Unwrap returns the last transport error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) true.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// unknownOutcomeError wraps a transport error after which a non-idempotent
// request may have been applied.
type unknownOutcomeError struct {
	method, addr string
	err          error
}

func (e *unknownOutcomeError) Error() string {
	return fmt.Sprintf("%s to %s failed after it was sent, so it may or may not have been applied: %s",
		e.method, e.addr, describeNetError(e.err))
}

func (e *unknownOutcomeError) Unwrap() []error { return []error{ErrUnknownOutcome, e.err} }

// NotApplied reports whether err, returned by a request of this package,
// proves that the request was not carried out: it failed and changed
// nothing, so that a write may be counted as not having happened (and
// sent again). That is the case when
//
//   - the server answered with a 4xx (an *APIError: it refused the
//     request, e.g. ErrNotFound, ErrConflict, resource.ErrInvalid), or
//     with a 503 that promises nothing was done (code no_leader, or a
//     Retry-After header), the one answer after which the client itself
//     resends a write;
//   - or the request never reached a server: the connection could not be
//     made (dial error, connection refused, no route to host, network
//     unreachable, unknown host), on its own or as the last error of an
//     *UnreachableError.
//
// It reports false for nil and for every other error, after which the
// request may have been applied: a timeout, or a connection broken after
// the request was sent (for a write, an error that matches
// ErrUnknownOutcome); any other 5xx (500; 504 and a 503 without that
// promise, which match ErrUnknownOutcome); an ended context; and the
// errors the client raises before it sends anything (a nil object, an
// empty name), about which it does not speak. After false for a write,
// read the object to find out.
//
// An *UnreachableError keeps the last transport error only: an idempotent
// request (a read, a VM action other than migrate, a report,
// RemoveServer) that a client with several addresses tried on more than
// one may have reached an earlier one. With one address, or for the other
// writes, which are never resent once they may have been sent, the last
// error is the whole story.
func NotApplied(err error) bool {
	if err == nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return (ae.StatusCode >= 400 && ae.StatusCode < 500) || ae.notDone()
	}
	return neverSent(err)
}

// neverSent reports whether a transport error happened before the request
// could reach a server (dial failure, refused connection, unknown host, a
// failed TLS handshake), so that it is safe to send any request elsewhere.
func neverSent(err error) bool {
	var ns *notSentError
	if errors.As(err, &ns) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	// A failed TLS handshake (a certificate refused by either side, a
	// server that does not speak TLS): no server processes a request
	// before its side of the handshake has succeeded.
	var (
		verify *tls.CertificateVerificationError
		alert  tls.AlertError
		record tls.RecordHeaderError
		unk    x509.UnknownAuthorityError
		host   x509.HostnameError
	)
	if errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &record) || errors.As(err, &unk) || errors.As(err, &host) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}

// describeNetError shortens a transport error to its cause ("connection
// refused"), dropping the Go-specific "Get \"http://...\": dial tcp ..."
// prefixes that repeat what the caller already knows.
func describeNetError(err error) string {
	var dns *net.DNSError
	var te *attemptTimeoutError
	switch {
	case err == nil:
		return "unknown error"
	case errors.As(err, &te):
		return te.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by peer"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "no route to host"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network is unreachable"
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return "no such host " + dns.Name
		}
		return "cannot resolve " + dns.Name + ": " + dns.Err
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
