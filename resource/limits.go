package resource

// Error codes of the API's limits (docs/api.md, "Limits"). They complete
// the codes in api.go.
const (
	CodeHeadersTooLarge      = "headers_too_large"      // 431: request headers over the server's limit
	CodeUnsupportedMediaType = "unsupported_media_type" // 415: a write without Content-Type: application/json
	CodeTooManyRequests      = "too_many_requests"      // 429: too many concurrent streams (Retry-After is set)
	CodeLimitExceeded        = "limit_exceeded"         // 409: a kind holds MaxObjectsPerKind objects
)
