package api

import "github.com/kumoi/kumoi/fsm"

// resourceErrors returns the per-resource-report errors of a report's
// result (fsm.Result.ResourceErrors, once the state machine records
// resource reports; placeholder until then).
func resourceErrors(res *fsm.Result) []error {
	_ = res
	return nil
}
