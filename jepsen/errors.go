package jepsen

import "github.com/kumoi/kumoi/client"

// writeOutcome classifies the error of a write as the SDK does
// (client.NotApplied): nil is ok; an error that proves the write was not
// carried out (a 4xx, a 503 no_leader or with Retry-After, a connection
// that was never made) is a failure; anything else (a timeout, a broken
// connection, another 5xx, a 503 without Retry-After) may have taken
// effect and is unknown.
func writeOutcome(err error) Status {
	switch {
	case err == nil:
		return StatusOK
	case client.NotApplied(err):
		return StatusFail
	default:
		return StatusUnknown
	}
}
