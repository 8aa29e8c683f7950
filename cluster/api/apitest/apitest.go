// Package apitest runs the real HTTP API (cluster/api) over a real state
// machine in one process, without Raft: every write is applied as the next
// log entry at once. Tests of the SDK, the CLI and scripts use it where
// the rules of the state machine matter (networks, images, volumes).
package apitest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/cluster/api"
	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// Server is a single-node API over a state machine.
type Server struct {
	URL string
	FSM *fsm.FSM

	mu   sync.Mutex
	next uint64
	srv  *httptest.Server
}

// New starts a server and stops it when the test ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{FSM: fsm.New(fsm.Config{EventBufferSize: 1024}), next: 10}
	s.srv = httptest.NewServer(api.NewHandler(backend{s}, api.Options{Version: "test", HeartbeatInterval: time.Hour}))
	s.URL = s.srv.URL
	tb.Cleanup(s.srv.Close)
	return s
}

// Apply applies a command as the next log entry and returns its result.
func (s *Server) Apply(t fsm.MessageType, req any) (*fsm.Result, error) {
	data, err := fsm.Encode(t, req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	return s.FSM.Apply(&raft.Log{Index: s.next, Type: raft.LogCommand, Data: data}).(*fsm.Result), nil
}

// MustApply is Apply that fails the test on any error.
func (s *Server) MustApply(tb testing.TB, t fsm.MessageType, req any) *fsm.Result {
	tb.Helper()
	res, err := s.Apply(t, req)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		tb.Fatalf("apply %s: %v", t, err)
	}
	return res
}

// AddHost records a ready host with room for VMs, as its worker's join
// would.
func (s *Server) AddHost(tb testing.TB, name string) {
	tb.Helper()
	s.MustApply(tb, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: name, ID: "id-" + name,
		State: resource.HostReady, Capacity: resource.Resources{CPUs: 64, MemoryMiB: 1 << 20}})
}

// Place places VMs on hosts, as the scheduler would.
func (s *Server) Place(tb testing.TB, vmToHost map[string]string) {
	tb.Helper()
	req := &fsm.PlaceRequest{Time: time.Now().UTC()}
	for vm, host := range vmToHost {
		req.Placements = append(req.Placements, fsm.Placement{VM: vm, Host: host})
	}
	s.MustApply(tb, fsm.PlaceRequestType, req)
}

// Object reads an object from the state machine (nil if none).
func (s *Server) Object(kind resource.Kind, name string) *resource.Object {
	o, _ := s.FSM.State().Get(nil, kind, name)
	return o
}

// backend is the api.Backend of a Server: always the leader.
type backend struct{ s *Server }

func (b backend) NodeID() string           { return "n1" }
func (b backend) FSM() *fsm.FSM            { return b.s.FSM }
func (b backend) IsLeader() bool           { return true }
func (b backend) Leader() (string, string) { return "n1", "" }

func (b backend) Apply(ctx context.Context, t fsm.MessageType, req any) (*fsm.Result, error) {
	return b.s.Apply(t, req)
}

func (b backend) ConsistentRead(context.Context) error { return nil }

func (b backend) Status() resource.Status {
	return resource.Status{NodeID: "n1", RaftState: "Leader", LeaderID: "n1", LastContactMS: -1,
		AppliedIndex: b.s.FSM.AppliedIndex(), StateIndex: b.s.FSM.State().LatestIndex(), Health: resource.HealthOK}
}

func (b backend) Cluster(context.Context) (resource.Cluster, error) {
	return resource.Cluster{Leader: "n1", Servers: []resource.Server{{ID: "n1", Address: "n1:7401", Voter: true, Leader: true}}}, nil
}

func (b backend) RemoveServer(context.Context, string) (uint64, error) {
	return 0, resource.ErrUnknownServer
}

// SaveSnapshot writes the state machine's snapshot stream.
func (b backend) SaveSnapshot(ctx context.Context, w io.Writer) (resource.SnapshotMeta, error) {
	info, err := b.s.FSM.SaveSnapshot(w)
	if err != nil {
		return resource.SnapshotMeta{}, err
	}
	return resource.SnapshotMeta{
		ClusterID: info.ClusterID, Index: info.AppliedIndex, Version: "test", Protocol: fsm.ProtocolVersion,
		StateVersion: info.Version, Node: "apitest", Created: time.Now().UTC(),
		Objects: info.Objects, ACLPolicies: info.ACLPolicies, ACLTokens: info.ACLTokens,
	}, nil
}

// RestoreSnapshot is refused: a restore goes through Raft (raft.Restore),
// which this server has not; cluster tests (test/e2e) cover it.
func (b backend) RestoreSnapshot(ctx context.Context, state []byte, force bool) (resource.SnapshotRestoreResponse, error) {
	return resource.SnapshotRestoreResponse{}, errors.New("apitest: a snapshot restore needs Raft; test it on a cluster")
}

// TransferLeader is refused: this server is the only one.
func (b backend) TransferLeader(ctx context.Context, to string) (string, error) {
	return "", fmt.Errorf("%w: apitest runs one server", resource.ErrCannotTransfer)
}
