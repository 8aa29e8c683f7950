package client

import (
	"context"
	"errors"
	"net/url"

	"github.com/kumoi/kumoi/resource"
)

// Status returns the answering controller's view of itself
// (GET /v1/status). With several addresses, that is the first one that
// answers; use a Client with one address to ask a given controller.
func (c *Client) Status(ctx context.Context) (*resource.Status, error) {
	var out resource.Status
	r := &request{method: "GET", path: "/v1/status", idempotent: true}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Cluster returns the leader, the Raft servers and the gossip members
// (GET /v1/cluster).
func (c *Client) Cluster(ctx context.Context) (*resource.Cluster, error) {
	var out resource.Cluster
	r := &request{method: "GET", path: "/v1/cluster", idempotent: true}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	if out.Servers == nil {
		out.Servers = []resource.Server{}
	}
	if out.Members == nil {
		out.Members = []resource.Member{}
	}
	return &out, nil
}

// RemoveServerResult is the answer of DELETE /v1/cluster/servers/{id}.
type RemoveServerResult = resource.RemoveServerResponse

// RemoveServer removes a controller from the Raft configuration. It fails
// with ErrNotFound when id is not a member.
func (c *Client) RemoveServer(ctx context.Context, id string) (*RemoveServerResult, error) {
	if id == "" {
		return nil, errors.New("server id is empty")
	}
	var out RemoveServerResult
	r := &request{method: "DELETE", path: "/v1/cluster/servers/" + url.PathEscape(id), idempotent: true}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
