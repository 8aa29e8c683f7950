package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

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

// SnapshotMeta describes a snapshot (the meta.json of its archive).
type SnapshotMeta = resource.SnapshotMeta

// SnapshotRestoreResult is the answer of PUT /v1/operator/snapshot.
type SnapshotRestoreResult = resource.SnapshotRestoreResponse

// snapshotTimeout bounds a snapshot's download or upload and restore.
const snapshotTimeout = 10 * time.Minute

// SaveSnapshot copies a consistent snapshot of the cluster's state (GET
// /v1/operator/snapshot: an archive the leader writes, internal/snapfile
// in the Kumoi repository; kumoi operator snapshot inspect reads one) to
// w. It needs cluster:admin. The archive carries its own checksum: check
// it (kumoi operator snapshot save does) before trusting a copy.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) error {
	return c.GetRaw(ctx, "/v1/operator/snapshot", w)
}

// RestoreSnapshot replaces the whole cluster's state with a snapshot
// archive's (PUT /v1/operator/snapshot), through Raft: every controller
// takes it. A snapshot of another cluster is refused (409 conflict)
// unless force, which also gives this cluster the snapshot's identity. It
// needs cluster:admin. Writes in flight when it lands fail.
func (c *Client) RestoreSnapshot(ctx context.Context, archive []byte, force bool) (*SnapshotRestoreResult, error) {
	r := &request{method: "PUT", path: "/v1/operator/snapshot", body: archive, wait: snapshotTimeout, contentType: "application/gzip"}
	if force {
		r.query = url.Values{"force": {"true"}}
	}
	var out SnapshotRestoreResult
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TransferLeaderResult is the answer of POST /v1/operator/raft/transfer-leader.
type TransferLeaderResult = resource.TransferLeaderResponse

// TransferLeader asks the leader to hand leadership to the voter to (any
// voter when ""), and returns once a new leader won. It fails with
// ErrNotFound when to is not a server, and ErrConflict when to already
// leads, does not vote yet, or there is no other voter. Needs
// cluster:admin.
func (c *Client) TransferLeader(ctx context.Context, to string) (*TransferLeaderResult, error) {
	body, err := json.Marshal(resource.TransferLeaderRequest{To: to})
	if err != nil {
		return nil, err
	}
	var out TransferLeaderResult
	r := &request{method: "POST", path: "/v1/operator/raft/transfer-leader", body: body}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AgentSelf is the answer of GET /v1/agent/self.
type AgentSelf = resource.AgentSelf

// AgentSelf returns the answering controller's status and its agent's
// configuration, secrets redacted (GET /v1/agent/self; cluster:admin).
// Ask a Client with one address to choose the controller.
func (c *Client) AgentSelf(ctx context.Context) (*AgentSelf, error) {
	var out AgentSelf
	r := &request{method: "GET", path: "/v1/agent/self", idempotent: true}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetRaw copies the body of GET path (with its query, e.g.
// "/debug/pprof/goroutine?debug=2", "/metrics", "/v1/agent/logs") to w,
// for the answers that are not JSON objects. API errors are returned as
// by the other methods.
func (c *Client) GetRaw(ctx context.Context, path string, w io.Writer) error {
	p, q, _ := strings.Cut(path, "?")
	r := &request{method: "GET", path: p, idempotent: true, stream: true}
	if q != "" {
		vs, err := url.ParseQuery(q)
		if err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
		r.query = vs
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("%s: %w", r, err)
	}
	return nil
}
