package resource

import "errors"

// Error codes of the API's limits (docs/api.md, "Limits"). They complete
// the codes in api.go.
const (
	CodeHeadersTooLarge      = "headers_too_large"      // 431: request headers over the server's limit
	CodeUnsupportedMediaType = "unsupported_media_type" // 415: a write without Content-Type: application/json
	CodeTooManyRequests      = "too_many_requests"      // 429: too many concurrent streams (Retry-After is set)
	CodeLimitExceeded        = "limit_exceeded"         // 409: a kind holds MaxObjectsPerKind objects
)

// HeaderNext carries the token of a list's next page (docs/api.md,
// "Pagination"); absent on the last page.
const HeaderNext = "X-Kumoi-Next"

// MaxListLimit is the most objects one list answer carries: the largest
// ?limit=, and the page size of a list without one.
const MaxListLimit = 100_000

// MaxObjectsPerKind caps the objects of one kind: a create beyond it is
// refused by the state machine (409 limit_exceeded). A constant, so that
// every controller applies the same log alike.
const MaxObjectsPerKind = 1_000_000

// ErrLimitExceeded is wrapped by the state machine's refusal of a create
// over MaxObjectsPerKind.
var ErrLimitExceeded = errors.New("limit exceeded")
