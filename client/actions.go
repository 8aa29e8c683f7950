package client

import (
	"context"
	"encoding/json"

	"github.com/kumoi/kumoi/resource"
)

// VM actions for Action (resource's names).
const (
	ActionStart   = resource.ActionStart
	ActionStop    = resource.ActionStop
	ActionSuspend = resource.ActionSuspend
	ActionResume  = resource.ActionResume
	ActionReboot  = resource.ActionReboot
	ActionMigrate = resource.ActionMigrate
)

// Action runs a verb on a VM (POST /v1/vms/{name}/{action}) and returns the
// VM after it. The server checks the phase when it applies the action: one
// the phase forbids fails with a 409 conflict whose message names the phase.
// Actions state an intent and are safe to repeat.
func (c *Client) Action(ctx context.Context, vm, action string) (*resource.Object, error) {
	return c.ActionWith(ctx, vm, action, nil)
}

// ActionWith is Action with options: Force for stop, Host for migrate.
// Every action but migrate is safe to repeat and is retried where safe; a
// migrate whose outcome is unknown (a timeout, a lost leader) is not resent:
// read the VM to find out where it is.
func (c *Client) ActionWith(ctx context.Context, vm, action string, opts *resource.VMActionRequest) (*resource.Object, error) {
	if err := checkName(resource.KindVM, vm); err != nil {
		return nil, err
	}
	r := &request{method: "POST", path: objectPath(resource.KindVM, vm) + "/" + action, idempotent: action != ActionMigrate}
	if opts != nil && *opts != (resource.VMActionRequest{}) {
		body, err := json.Marshal(opts)
		if err != nil {
			return nil, err
		}
		r.body = body
	}
	var out resource.Object
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
