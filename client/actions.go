package client

import (
	"context"

	"github.com/kumoi/kumoi/resource"
)

// VM actions for Action.
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionSuspend = "suspend"
	ActionResume  = "resume"
	ActionReboot  = "reboot"
)

// Action runs a verb on a VM (POST /v1/vms/{name}/{action}) and returns the
// VM after it. The server checks the phase when it applies the action: one
// the phase forbids fails with a 409 conflict whose message names the phase.
// Actions state an intent and are safe to repeat.
func (c *Client) Action(ctx context.Context, vm, action string) (*resource.Object, error) {
	if err := checkName(resource.KindVM, vm); err != nil {
		return nil, err
	}
	var out resource.Object
	r := &request{method: "POST", path: objectPath(resource.KindVM, vm) + "/" + action, idempotent: true}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
