// Package client is Kumoi's Go SDK: a thin, typed layer over the controllers'
// HTTP/JSON API (/v1/...). The kumoi CLI, the Starlark scripting layer and the
// chaos harness talk to the cluster only through this package.
//
// Every kind is handled by the same verbs (Create, Get, List, Update, Delete)
// on resource.Object values, plus Events for the change stream and Status,
// Cluster and RemoveServer for the control plane.
//
// # Addresses and retries
//
// A Client is given the base URLs of one or more controllers. A request is
// sent to the address that last answered and, when a controller cannot be
// reached, to the next one in turn. A 503 answer is tried on the next
// address and then, after a backoff (honouring Retry-After), again, until
// Config.RetryDeadline:
//
//   - reads (GET), worker reports and VM actions (which state an intent)
//     are retried after any transport error and any 503;
//   - other writes (POST create, PUT, DELETE) are retried only when the
//     request cannot have been carried out (a resent CAS write or delete
//     that had been applied would fail with cas_mismatch or not_found): the connection was never made,
//     or the server answered 503 no_leader or a 503 with Retry-After (its
//     promise that nothing was done). Otherwise the error matches
//     ErrUnknownOutcome: read the object to find out.
//
// # Errors
//
// An HTTP error answer is returned as *APIError. Use errors.Is with the
// sentinels (ErrNotFound, ErrConflict, ErrCASMismatch, ErrAlreadyExists,
// ErrUnavailable, ErrUnknownOutcome, resource.ErrInvalid) or the helpers
// IsNotFound and IsConflict. When no controller could be reached at all the
// error is *UnreachableError, which matches ErrUnreachable.
//
// The package must not depend on the server side (fsm, cluster): it speaks the
// wire contract in resource/api.go and nothing else.
package client
