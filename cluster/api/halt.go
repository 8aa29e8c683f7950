package api

import (
	"net/http"
	"strings"

	"github.com/kumoi/kumoi/resource"
)

// A controller whose state machine has halted (fsm: a committed log entry
// this build cannot apply) is out of service: GET /v1/status (health
// "halted" and the reason) and /metrics (kumoi_fsm_halted 1) still
// answer; every other request is refused with 503 and code "halted",
// before anything is done (so Retry-After is set: another controller may
// serve it).

// halted answers a request to a halted controller.
func (a *httpAPI) halted(w http.ResponseWriter, r *http.Request) error {
	return &apiError{
		status: http.StatusServiceUnavailable, code: resource.CodeHalted, retryAfter: true,
		msg: haltedMessage(a.b.FSM().Halted()),
	}
}

// haltedMessage says why a controller is out of service and what to do.
func haltedMessage(err error) string {
	msg := "this controller is out of service: " + err.Error()
	if !strings.Contains(msg, "Upgrade") {
		msg += ". This build of kumoi cannot apply the cluster's replicated log; it stopped rather than diverge from the other replicas. " +
			"Upgrade it, or remove it (kumoi cluster remove) and replace it with a new node"
	}
	return msg + "; GET /v1/status shows the reason, and another controller may serve the request"
}
