package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/frames"
	"github.com/kumoi/kumoi/resource"
)

// httpTestBackend is a single-node Backend over a real FSM: Apply encodes the
// command and hands it to fsm.Apply as the next log entry. Knobs make it a
// follower, leaderless, or failing.
type httpTestBackend struct {
	id string
	f  *fsm.FSM

	mu         sync.Mutex
	next       uint64
	leader     bool
	leaderID   string
	leaderAddr string
	applyErr   error // returned by Apply instead of applying
	// protocol, if set, is the cluster's log protocol: Apply refuses a
	// command that needs a later one with resource.ErrUpgradeRequired,
	// as the controller does.
	protocol int
	readErr  error // returned by ConsistentRead
	// notLeaderOnce makes the next Apply/ConsistentRead/Cluster/RemoveServer
	// answer resource.ErrNotLeader although IsLeader said true (leadership moved).
	notLeaderOnce bool
	statusPanics  bool
	servers       []resource.Server
	applies       int // commands applied through Apply
	reads         int // ConsistentRead calls
	// changed is LeaderChanged's channel (nil: the leader never changes).
	changed chan struct{}
}

// LeaderChanged is the controller's: closed when the leader changes.
func (b *httpTestBackend) LeaderChanged() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

var _ Backend = (*httpTestBackend)(nil)

func newHTTPTestBackend(id string, eventBuffer int) *httpTestBackend {
	return &httpTestBackend{
		id:      id,
		f:       fsm.New(fsm.Config{EventBufferSize: eventBuffer}),
		next:    100,
		leader:  true,
		servers: []resource.Server{{ID: id, Address: id + ":7401", Voter: true, Leader: true}},
	}
}

func (b *httpTestBackend) set(fn func(b *httpTestBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn(b)
}

func (b *httpTestBackend) takeNotLeader() bool {
	if b.notLeaderOnce {
		b.notLeaderOnce = false
		return true
	}
	return false
}

func (b *httpTestBackend) NodeID() string { return b.id }
func (b *httpTestBackend) FSM() *fsm.FSM  { return b.f }

func (b *httpTestBackend) IsLeader() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.leader
}

// Leader names leaderID/leaderAddr when set (even on a leader: one that has
// just been deposed without knowing it yet), else itself when leading.
func (b *httpTestBackend) Leader() (string, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.leader && b.leaderID == "" {
		return b.id, "self.invalid:1"
	}
	return b.leaderID, b.leaderAddr
}

func (b *httpTestBackend) appliedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.applies
}

func (b *httpTestBackend) Apply(ctx context.Context, t fsm.MessageType, req any) (*fsm.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.leader || b.takeNotLeader() {
		return nil, resource.ErrNotLeader
	}
	if b.applyErr != nil {
		return nil, b.applyErr
	}
	if need := fsm.RequiredProtocol(t, req); b.protocol > 0 && need > b.protocol {
		return nil, fmt.Errorf("%w: the command needs log protocol %d, the cluster speaks %d", resource.ErrUpgradeRequired, need, b.protocol)
	}
	data, err := fsm.Encode(t, req)
	if err != nil {
		return nil, err
	}
	b.applies++
	return b.applyLocked(data), nil
}

func (b *httpTestBackend) applyLocked(data []byte) *fsm.Result {
	b.next++
	return b.f.Apply(&raft.Log{Index: b.next, Type: raft.LogCommand, Data: data}).(*fsm.Result)
}

// applyDirect writes to this node's FSM whatever its role (a follower
// replicating a log entry).
func (b *httpTestBackend) applyDirect(t testing.TB, typ fsm.MessageType, req any) *fsm.Result {
	t.Helper()
	data, err := fsm.Encode(typ, req)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	res := b.applyLocked(data)
	if res.Err != nil {
		t.Fatalf("apply %s: %v", typ, res.Err)
	}
	return res
}

func (b *httpTestBackend) ConsistentRead(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reads++
	if !b.leader || b.takeNotLeader() {
		return resource.ErrNotLeader
	}
	return b.readErr
}

func (b *httpTestBackend) Status() resource.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.statusPanics {
		panic("status exploded")
	}
	st := resource.Status{NodeID: b.id, RaftState: "Follower", LastContactMS: 42,
		AppliedIndex: b.f.AppliedIndex(), StateIndex: b.f.State().LatestIndex(), Health: resource.HealthOK}
	if err := b.f.Halted(); err != nil {
		st.Health, st.HealthReason = resource.HealthHalted, err.Error()
	}
	if b.leader {
		st.RaftState, st.LeaderID, st.LastContactMS = "Leader", b.id, -1
	} else {
		st.LeaderID, st.LeaderAddr = b.leaderID, b.leaderAddr
	}
	return st
}

func (b *httpTestBackend) Cluster(ctx context.Context) (resource.Cluster, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.takeNotLeader() {
		return resource.Cluster{}, resource.ErrNotLeader
	}
	lead := b.leaderID
	if b.leader {
		lead = b.id
	}
	return resource.Cluster{Leader: lead, Servers: append([]resource.Server(nil), b.servers...)}, nil
}

func (b *httpTestBackend) SaveSnapshot(ctx context.Context, w io.Writer) (resource.SnapshotMeta, error) {
	if !b.IsLeader() {
		return resource.SnapshotMeta{}, resource.ErrNotLeader
	}
	info, err := b.f.SaveSnapshot(w)
	return resource.SnapshotMeta{ClusterID: info.ClusterID, Index: info.AppliedIndex, Version: "test", StateVersion: info.Version,
		Node: b.id, Created: time.Now().UTC(), Objects: info.Objects}, err
}

// RestoreSnapshot validates the stream as the controller does and refuses
// another cluster's without force, then restores it into the bare FSM
// (no Raft here).
func (b *httpTestBackend) RestoreSnapshot(ctx context.Context, state []byte, force bool) (resource.SnapshotRestoreResponse, error) {
	if !b.IsLeader() {
		return resource.SnapshotRestoreResponse{}, resource.ErrNotLeader
	}
	cur := b.f.State().ClusterID(nil)
	b.mu.Lock()
	floor := b.next + 1
	b.mu.Unlock()
	data, info, err := fsm.PrepareRestore(bytes.NewReader(state), floor, func(theirs string) (string, error) {
		if theirs == cur || cur == "" {
			return "", nil
		}
		if !force {
			return "", fmt.Errorf("%w: restore it with force", resource.ErrOtherCluster)
		}
		return cur, nil
	})
	if errors.Is(err, fsm.ErrBadPayload) {
		err = fmt.Errorf("%w: %v", resource.ErrBadSnapshot, err)
	}
	if err != nil {
		return resource.SnapshotRestoreResponse{}, err
	}
	if err := b.f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		return resource.SnapshotRestoreResponse{}, err
	}
	return resource.SnapshotRestoreResponse{ClusterID: info.ClusterID, SnapshotIndex: info.AppliedIndex, Index: floor, Objects: info.Objects}, nil
}

// TransferLeader moves leadership to another of b.servers (no Raft here:
// b then follows it, with no address).
func (b *httpTestBackend) TransferLeader(ctx context.Context, to string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.leader || b.takeNotLeader() {
		return "", resource.ErrNotLeader
	}
	for _, s := range b.servers {
		if s.ID != b.id && (to == "" || s.ID == to) {
			b.leader, b.leaderID = false, s.ID
			return s.ID, nil
		}
	}
	if to == b.id {
		return "", fmt.Errorf("%w: %s already leads", resource.ErrCannotTransfer, to)
	}
	return "", fmt.Errorf("%w: %q", resource.ErrUnknownServer, to)
}

func (b *httpTestBackend) RemoveServer(ctx context.Context, id string) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.leader || b.takeNotLeader() {
		return 0, resource.ErrNotLeader
	}
	for i, s := range b.servers {
		if s.ID == id {
			b.servers = append(b.servers[:i], b.servers[i+1:]...)
			b.next++
			return b.next, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", resource.ErrUnknownServer, id)
}

// httpEnv is a backend with the API in front of it on an httptest server.
type httpEnv struct {
	b   *httpTestBackend
	api *httpAPI
	srv *httptest.Server
	reg *prometheus.Registry
	// forwardedBy records the X-Kumoi-Forwarded header of each request.
	forwardedBy chan string
	// blocked gets a value each time a blocking query starts waiting.
	blocked chan struct{}
}

type httpEnvOpts struct {
	eventBuffer int
	heartbeat   time.Duration
	// acl turns ACLs on; internalSecret is Options.InternalSecret.
	acl            bool
	internalSecret string
}

func newHTTPEnv(t *testing.T, id string, o httpEnvOpts) *httpEnv {
	t.Helper()
	if o.eventBuffer == 0 {
		o.eventBuffer = 1024
	}
	if o.heartbeat == 0 {
		o.heartbeat = time.Hour
	}
	e := &httpEnv{
		b:           newHTTPTestBackend(id, o.eventBuffer),
		reg:         prometheus.NewRegistry(),
		forwardedBy: make(chan string, 1000),
		blocked:     make(chan struct{}, 64),
	}
	e.api = NewHandler(e.b, Options{
		Logger:            hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Debug, Output: io.Discard}),
		Registry:          e.reg,
		HeartbeatInterval: o.heartbeat,
		Version:           "test",
		ACL:               o.acl,
		InternalSecret:    o.internalSecret,
	}).(*httpAPI)
	e.api.onBlock = func() {
		select {
		case e.blocked <- struct{}{}:
		default:
		}
	}
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if by := r.Header.Get(headerForwarded); by != "" {
			select {
			case e.forwardedBy <- by:
			default:
			}
		}
		e.api.ServeHTTP(w, r)
	})
	e.api.frameHandler = record // requests forwarded on a stream
	e.srv = httptest.NewServer(record)
	t.Cleanup(func() {
		e.srv.Close()
		e.api.Close()
	})
	return e
}

func (e *httpEnv) addr() string { return e.srv.Listener.Addr().String() }

// follow makes e a follower of leader.
func (e *httpEnv) follow(leader *httpEnv) {
	e.b.set(func(b *httpTestBackend) {
		b.leader, b.leaderID, b.leaderAddr = false, leader.b.id, leader.addr()
	})
}

func (e *httpEnv) digest() string { return e.b.f.State().Digest() }

// httpResult is a finished request.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func (r httpResult) errBody(t *testing.T) resource.ErrorBody {
	t.Helper()
	var er resource.ErrorResponse
	if err := json.Unmarshal(r.body, &er); err != nil {
		t.Fatalf("error body is not an ErrorResponse: %v: %s", err, r.body)
	}
	return er.Error
}

func (r httpResult) object(t *testing.T) *resource.Object {
	t.Helper()
	var o resource.Object
	if err := json.Unmarshal(r.body, &o); err != nil {
		t.Fatalf("body is not an object: %v: %s", err, r.body)
	}
	return &o
}

func (r httpResult) index(t *testing.T) uint64 {
	t.Helper()
	var n uint64
	if _, err := fmt.Sscan(r.header.Get(headerIndex), &n); err != nil {
		t.Fatalf("%s header %q: %v", headerIndex, r.header.Get(headerIndex), err)
	}
	return n
}

// call sends a request; body is a string (sent raw), nil, or any value
// (sent as JSON).
func (e *httpEnv) call(t *testing.T, method, path string, body any, hdr ...string) httpResult {
	t.Helper()
	return httpCall(t, e.srv.URL, method, path, body, hdr...)
}

func httpCall(t *testing.T, base, method, path string, body any, hdr ...string) httpResult {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost || method == http.MethodPut {
		req.Header.Set("Content-Type", "application/json") // hdr may override it
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}
}

func wantStatus(t *testing.T, r httpResult, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
}

const vmSpec = `{"cpus":2,"memory_mib":512}`

func createBody(name string) string {
	return `{"name":"` + name + `","labels":{"app":"web"},"spec":` + vmSpec + `}`
}

func (e *httpEnv) mustCreate(t *testing.T, plural, name string) *resource.Object {
	t.Helper()
	spec := vmSpec
	if plural == "hosts" {
		spec = `{}`
	}
	r := e.call(t, "POST", "/v1/"+plural, `{"name":"`+name+`","spec":`+spec+`}`)
	wantStatus(t, r, http.StatusCreated)
	return r.object(t)
}

func TestHTTPCreateGetListUpdateDelete(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})

	r := e.call(t, "GET", "/v1/vms", nil)
	wantStatus(t, r, http.StatusOK)
	if string(r.body) != "[]\n" {
		t.Fatalf("empty list = %q, want []", r.body)
	}

	r = e.call(t, "POST", "/v1/vms", createBody("web"))
	wantStatus(t, r, http.StatusCreated)
	if loc := r.header.Get("Location"); loc != "/v1/vms/web" {
		t.Fatalf("Location = %q", loc)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	created := r.object(t)
	if created.Kind != resource.KindVM || created.Name != "web" || created.Labels["app"] != "web" {
		t.Fatalf("created %+v", created)
	}
	if _, err := uuid.Parse(created.ID); err != nil {
		t.Fatalf("id %q is not a UUID", created.ID)
	}
	if created.CreateIndex == 0 || created.ModifyIndex != created.CreateIndex || r.index(t) != created.CreateIndex {
		t.Fatalf("indexes: create %d modify %d header %d", created.CreateIndex, created.ModifyIndex, r.index(t))
	}
	spec, err := resource.DecodeSpec[resource.VMSpec](created)
	if err != nil || spec.Power != resource.PowerRunning || spec.CPUs != 2 {
		t.Fatalf("spec %+v, %v (defaults must be filled)", spec, err)
	}
	st, err := resource.DecodeStatus[resource.VMStatus](created)
	if err != nil || st.Phase != resource.PhasePending {
		t.Fatalf("status %+v, %v", st, err)
	}

	r = e.call(t, "GET", "/v1/vms/web", nil)
	wantStatus(t, r, http.StatusOK)
	if got := r.object(t); !got.Equal(created) {
		t.Fatalf("GET = %+v, want %+v", got, created)
	}
	if r.index(t) != created.ModifyIndex || r.header.Get(headerKnownLeader) != "true" {
		t.Fatalf("read headers %v", r.header)
	}

	// List: name order, selector.
	e.mustCreate(t, "vms", "db")
	e.mustCreate(t, "vms", "zz")
	r = e.call(t, "GET", "/v1/vms", nil)
	var list []*resource.Object
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Name != "db" || list[1].Name != "web" || list[2].Name != "zz" {
		t.Fatalf("list order: %s", r.body)
	}
	if r.index(t) != e.b.f.State().Index(resource.KindVM) {
		t.Fatalf("list index %d, want %d", r.index(t), e.b.f.State().Index(resource.KindVM))
	}
	r = e.call(t, "GET", "/v1/vms?selector=app%3Dweb", nil)
	if err := json.Unmarshal(r.body, &list); err != nil || len(list) != 1 || list[0].Name != "web" {
		t.Fatalf("selector list: %s", r.body)
	}
	r = e.call(t, "GET", "/v1/vms?selector=!app", nil)
	if err := json.Unmarshal(r.body, &list); err != nil || len(list) != 2 {
		t.Fatalf("selector !app: %s", r.body)
	}

	// PUT with GET's exact body works; status and indexes are ignored.
	get := e.call(t, "GET", "/v1/vms/web", nil)
	r = e.call(t, "PUT", "/v1/vms/web", get.body)
	wantStatus(t, r, http.StatusOK)
	upd := r.object(t)
	if upd.ModifyIndex <= created.ModifyIndex || upd.CreateIndex != created.CreateIndex || upd.ID != created.ID ||
		!bytes.Equal(upd.Status, created.Status) || r.index(t) != upd.ModifyIndex {
		t.Fatalf("PUT of GET's body: %+v", upd)
	}

	// Edited body: labels and spec replace; bogus system fields ignored.
	var edit map[string]any
	if err := json.Unmarshal(get.body, &edit); err != nil {
		t.Fatal(err)
	}
	edit["labels"] = map[string]string{"tier": "front"}
	edit["spec"] = map[string]any{"cpus": 4, "memory_mib": 1024, "power": "stopped"}
	edit["status"] = map[string]any{"phase": "running", "host": "h9"}
	edit["modify_index"] = 1
	edit["create_index"] = 1
	edit["id"] = "not-the-id"
	r = e.call(t, "PUT", "/v1/vms/web", edit)
	wantStatus(t, r, http.StatusOK)
	upd2 := r.object(t)
	spec, _ = resource.DecodeSpec[resource.VMSpec](upd2)
	if upd2.Labels["tier"] != "front" || len(upd2.Labels) != 1 || spec.CPUs != 4 || spec.Power != "stopped" ||
		!bytes.Equal(upd2.Status, created.Status) || upd2.ID != created.ID || upd2.CreateIndex != created.CreateIndex {
		t.Fatalf("PUT edit: %+v", upd2)
	}

	// CAS success on PUT and DELETE.
	r = e.call(t, "PUT", fmt.Sprintf("/v1/vms/web?cas=%d", upd2.ModifyIndex), get.body)
	wantStatus(t, r, http.StatusOK)
	upd3 := r.object(t)
	r = e.call(t, "DELETE", fmt.Sprintf("/v1/vms/web?cas=%d", upd3.ModifyIndex), nil)
	wantStatus(t, r, http.StatusOK)
	if del := r.object(t); !del.Equal(upd3) || r.index(t) <= upd3.ModifyIndex {
		t.Fatalf("DELETE returned %+v index %d, want the object as it was", del, r.index(t))
	}
	r = e.call(t, "GET", "/v1/vms/web", nil)
	wantStatus(t, r, http.StatusNotFound)
	if r.errBody(t).Code != resource.CodeNotFound || r.header.Get(headerIndex) == "" {
		t.Fatalf("404 body %s headers %v", r.body, r.header)
	}

	// Plain delete, hosts collection.
	wantStatus(t, e.call(t, "DELETE", "/v1/vms/db", nil), http.StatusOK)
	h := e.mustCreate(t, "hosts", "hv-1")
	if h.Kind != resource.KindHost {
		t.Fatalf("host kind %q", h.Kind)
	}
}

// TestHTTPBadInput: every bad request gets the right 4xx JSON error, and
// nothing is written.
func TestHTTPBadInput(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	web := e.mustCreate(t, "vms", "web")
	e.mustCreate(t, "hosts", "hv-1")
	webBody := e.call(t, "GET", "/v1/vms/web", nil).body
	big := `{"name":"big","labels":{"a":"` + strings.Repeat("x", 1<<20) + `"},"spec":` + vmSpec + `}`

	cases := []struct {
		name, method, path string
		body               any
		status             int
		code, field, msg   string
		allow              string
	}{
		{"malformed JSON", "POST", "/v1/vms", `{"name" "x"}`, 400, resource.CodeInvalidJSON, "", "at byte 9", ""},
		{"truncated JSON", "POST", "/v1/vms", `{"name":"x",`, 400, resource.CodeInvalidJSON, "", "byte", ""},
		{"trailing data", "POST", "/v1/vms", createBody("x") + ` {}`, 400, resource.CodeInvalidJSON, "", "after the JSON value", ""},
		{"empty body", "POST", "/v1/vms", nil, 400, resource.CodeInvalidJSON, "", "empty", ""},
		{"blank body", "POST", "/v1/vms", "  \n", 400, resource.CodeInvalidJSON, "", "empty", ""},
		{"array body", "POST", "/v1/vms", `[1]`, 400, resource.CodeInvalidArgument, "body", "", ""},
		{"unknown field", "POST", "/v1/vms", `{"nmae":"x","spec":` + vmSpec + `}`, 400, resource.CodeInvalidArgument, "nmae", "unknown field", ""},
		{"unknown spec field", "POST", "/v1/vms", `{"name":"x","spec":{"cpus":1,"memory_mib":1,"cpuz":2}}`, 400, resource.CodeInvalidArgument, "spec.cpuz", "unknown field", ""},
		{"wrong type", "POST", "/v1/vms", `{"name":"x","spec":{"cpus":"two","memory_mib":1}}`, 400, resource.CodeInvalidArgument, "spec.cpus", "integer", ""},
		{"invalid name", "POST", "/v1/vms", createBody("Web_1"), 400, resource.CodeInvalidArgument, "name", "DNS label", ""},
		{"missing name", "POST", "/v1/vms", `{"spec":` + vmSpec + `}`, 400, resource.CodeInvalidArgument, "name", "empty", ""},
		{"bad label", "POST", "/v1/vms", `{"name":"x","labels":{"-bad":"1"},"spec":` + vmSpec + `}`, 400, resource.CodeInvalidArgument, "labels", "", ""},
		{"bad spec value", "POST", "/v1/vms", `{"name":"x","spec":{"cpus":0,"memory_mib":1}}`, 400, resource.CodeInvalidArgument, "spec.cpus", "at least 1", ""},
		{"missing spec", "POST", "/v1/vms", `{"name":"x"}`, 400, resource.CodeInvalidArgument, "spec", "required", ""},
		{"bad host spec", "POST", "/v1/hosts", `{"name":"x","spec":{"cpu_overcommit":100}}`, 400, resource.CodeInvalidArgument, "spec.cpu_overcommit", "", ""},
		{"duplicate name", "POST", "/v1/vms", createBody("web"), 409, resource.CodeAlreadyExists, "", "already exists", ""},
		{"body over 1 MiB", "POST", "/v1/vms", big, 413, resource.CodeBodyTooLarge, "", "1048576", ""},
		{"query param on create", "POST", "/v1/vms?cas=1", createBody("x"), 400, resource.CodeInvalidArgument, "cas", "unknown query parameter", ""},
		{"cas not a number", "PUT", "/v1/vms/web?cas=abc", webBody, 400, resource.CodeInvalidArgument, "cas", "positive integer", ""},
		{"cas zero", "PUT", "/v1/vms/web?cas=0", webBody, 400, resource.CodeInvalidArgument, "cas", "positive integer", ""},
		{"cas negative", "DELETE", "/v1/vms/web?cas=-1", nil, 400, resource.CodeInvalidArgument, "cas", "positive integer", ""},
		{"cas mismatch on PUT", "PUT", fmt.Sprintf("/v1/vms/web?cas=%d", web.ModifyIndex+1000), webBody, 409, resource.CodeCASMismatch, "", "re-read", ""},
		{"cas mismatch on DELETE", "DELETE", fmt.Sprintf("/v1/vms/web?cas=%d", web.ModifyIndex+1000), nil, 409, resource.CodeCASMismatch, "", "", ""},
		{"PUT kind mismatch", "PUT", "/v1/vms/web", `{"kind":"host","name":"web","spec":` + vmSpec + `}`, 400, resource.CodeInvalidArgument, "kind", "URL", ""},
		{"PUT name mismatch", "PUT", "/v1/vms/web", `{"kind":"vm","name":"db","spec":` + vmSpec + `}`, 400, resource.CodeInvalidArgument, "name", "renamed", ""},
		{"PUT unknown field", "PUT", "/v1/vms/web", `{"spec":` + vmSpec + `,"colour":"red"}`, 400, resource.CodeInvalidArgument, "colour", "unknown field", ""},
		{"PUT bad spec", "PUT", "/v1/vms/web", `{"spec":{"cpus":1,"memory_mib":1,"power":"on"}}`, 400, resource.CodeInvalidArgument, "spec.power", "running", ""},
		{"PUT empty body", "PUT", "/v1/vms/web", nil, 400, resource.CodeInvalidJSON, "", "empty", ""},
		{"PUT absent", "PUT", "/v1/vms/nope", `{"spec":` + vmSpec + `}`, 404, resource.CodeNotFound, "", "not found", ""},
		{"DELETE absent", "DELETE", "/v1/vms/nope", nil, 404, resource.CodeNotFound, "", "not found", ""},
		{"GET absent", "GET", "/v1/vms/nope", nil, 404, resource.CodeNotFound, "", `"nope" not found`, ""},
		{"GET invalid name", "GET", "/v1/vms/No_Such", nil, 400, resource.CodeInvalidArgument, "name", "DNS label", ""},
		{"unknown collection", "GET", "/v1/widgets", nil, 404, resource.CodeNotFound, "", "/v1/hosts, /v1/images, /v1/networks, /v1/policies, /v1/projects, /v1/vms, /v1/volumes", ""},
		{"unknown collection item", "PUT", "/v1/widgets/x", `{}`, 404, resource.CodeNotFound, "", `no collection "widgets"`, ""},
		{"v1 root", "GET", "/v1/", nil, 404, resource.CodeNotFound, "", "/v1/vms", ""},
		{"trailing slash", "GET", "/v1/vms/", nil, 404, resource.CodeNotFound, "", "", ""},
		{"unknown action", "POST", "/v1/vms/web/explode", nil, 404, resource.CodeNotFound, "", `"explode"`, ""},
		{"outside v1", "GET", "/v2/vms", nil, 404, resource.CodeNotFound, "", "", ""},
		{"405 on item", "PATCH", "/v1/vms/web", `{}`, 405, resource.CodeMethodNotAllowed, "", "PATCH", "GET, PUT, DELETE"},
		{"405 on collection", "DELETE", "/v1/vms", nil, 405, resource.CodeMethodNotAllowed, "", "", "GET, POST"},
		{"405 on status", "POST", "/v1/status", `{}`, 405, resource.CodeMethodNotAllowed, "", "", "GET"},
		{"405 on metrics", "POST", "/metrics", nil, 405, resource.CodeMethodNotAllowed, "", "", "GET"},
		{"405 on server remove", "GET", "/v1/cluster/servers/n1", nil, 405, resource.CodeMethodNotAllowed, "", "", "DELETE"},
		{"bad selector", "GET", "/v1/vms?selector=%3Dx", nil, 400, resource.CodeInvalidArgument, "selector", "label selector", ""},
		{"bad index", "GET", "/v1/vms?index=abc", nil, 400, resource.CodeInvalidArgument, "index", "non-negative integer", ""},
		{"negative index", "GET", "/v1/vms/web?index=-3", nil, 400, resource.CodeInvalidArgument, "index", "", ""},
		{"repeated index", "GET", "/v1/vms?index=1&index=2", nil, 400, resource.CodeInvalidArgument, "index", "once", ""},
		{"bad wait", "GET", "/v1/vms?index=1&wait=soon", nil, 400, resource.CodeInvalidArgument, "wait", "30s", ""},
		{"negative wait", "GET", "/v1/vms?index=1&wait=-1s", nil, 400, resource.CodeInvalidArgument, "wait", "positive", ""},
		{"zero wait", "GET", "/v1/vms?index=1&wait=0", nil, 400, resource.CodeInvalidArgument, "wait", "positive", ""},
		{"bad stale", "GET", "/v1/vms?stale=maybe", nil, 400, resource.CodeInvalidArgument, "stale", "true or false", ""},
		{"unknown query param", "GET", "/v1/vms?selctor=app", nil, 400, resource.CodeInvalidArgument, "selctor", "selector", ""},
		{"malformed query", "GET", "/v1/vms?index=%zz", nil, 400, resource.CodeInvalidArgument, "query", "malformed", ""},
		{"events unknown kind", "GET", "/v1/events?kind=widget", nil, 400, resource.CodeInvalidArgument, "kind", "host, image, network, policy, project, vm, volume", ""},
		{"events bad index", "GET", "/v1/events?index=x", nil, 400, resource.CodeInvalidArgument, "index", "", ""},
		{"cluster bad param", "GET", "/v1/cluster?index=1", nil, 400, resource.CodeInvalidArgument, "index", "", ""},
		{"remove unknown server", "DELETE", "/v1/cluster/servers/n9", nil, 404, resource.CodeNotFound, "", `"n9"`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.digest()
			r := e.call(t, tc.method, tc.path, tc.body)
			wantStatus(t, r, tc.status)
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			eb := r.errBody(t)
			if eb.Code != tc.code || eb.Field != tc.field || !strings.Contains(eb.Message, tc.msg) {
				t.Errorf("error %+v; want code %q field %q message containing %q", eb, tc.code, tc.field, tc.msg)
			}
			if tc.allow != "" && r.header.Get("Allow") != tc.allow {
				t.Errorf("Allow %q, want %q", r.header.Get("Allow"), tc.allow)
			}
			if after := e.digest(); after != before {
				t.Errorf("state changed by a rejected request")
			}
		})
	}
	if got := e.call(t, "GET", "/v1/vms/web", nil).object(t); !got.Equal(web) {
		t.Fatalf("web changed: %+v", got)
	}
}

func TestHTTPStatusAndCluster(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	r := e.call(t, "GET", "/v1/status", nil)
	wantStatus(t, r, http.StatusOK)
	var st resource.Status
	if err := json.Unmarshal(r.body, &st); err != nil || st.NodeID != "n1" || st.RaftState != "Leader" {
		t.Fatalf("status %s (%v)", r.body, err)
	}
	if r.header.Get("X-Kumoi-Version") != "test" {
		t.Fatalf("version header %q", r.header.Get("X-Kumoi-Version"))
	}

	e.b.set(func(b *httpTestBackend) {
		b.servers = append(b.servers, resource.Server{ID: "n2", Address: "n2:7401", Voter: true})
	})
	r = e.call(t, "GET", "/v1/cluster", nil)
	wantStatus(t, r, http.StatusOK)
	var c resource.Cluster
	if err := json.Unmarshal(r.body, &c); err != nil || c.Leader != "n1" || len(c.Servers) != 2 || c.Members == nil {
		t.Fatalf("cluster %s (%v)", r.body, err)
	}

	before := e.digest()
	r = e.call(t, "DELETE", "/v1/cluster/servers/n2", nil)
	wantStatus(t, r, http.StatusOK)
	var rm struct {
		Removed string `json:"removed"`
		Index   uint64 `json:"index"`
	}
	if err := json.Unmarshal(r.body, &rm); err != nil || rm.Removed != "n2" || rm.Index == 0 || r.index(t) != rm.Index {
		t.Fatalf("remove %s (%v)", r.body, err)
	}
	if e.digest() != before {
		t.Fatalf("removing a server changed the object state")
	}
	wantStatus(t, e.call(t, "DELETE", "/v1/cluster/servers/n2", nil), http.StatusNotFound)
}

// TestHTTPNoLeader: with no known leader, writes and linearizable reads
// answer 503 no_leader with Retry-After; stale reads answer locally.
func TestHTTPNoLeader(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.mustCreate(t, "vms", "web")
	e.b.set(func(b *httpTestBackend) { b.leader, b.leaderID, b.leaderAddr = false, "", "" })
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/v1/vms", createBody("x")},
		{"PUT", "/v1/vms/web", `{"spec":` + vmSpec + `}`},
		{"DELETE", "/v1/vms/web", ""},
		{"GET", "/v1/vms", ""},
		{"GET", "/v1/vms/web", ""},
		{"GET", "/v1/cluster", ""},
		{"GET", "/v1/events", ""},
		{"DELETE", "/v1/cluster/servers/n1", ""},
	} {
		var body any
		if req.body != "" {
			body = req.body
		}
		before := e.digest()
		r := e.call(t, req.method, req.path, body)
		wantStatus(t, r, http.StatusServiceUnavailable)
		if eb := r.errBody(t); eb.Code != resource.CodeNoLeader || r.header.Get("Retry-After") != "1" {
			t.Fatalf("%s %s: %+v Retry-After %q", req.method, req.path, eb, r.header.Get("Retry-After"))
		}
		if e.digest() != before {
			t.Fatalf("%s %s changed the state", req.method, req.path)
		}
	}
	r := e.call(t, "GET", "/v1/vms/web?stale", nil)
	wantStatus(t, r, http.StatusOK)
	if r.header.Get(headerKnownLeader) != "false" || r.header.Get(headerLastContact) != "42" {
		t.Fatalf("stale read headers %v", r.header)
	}
	wantStatus(t, e.call(t, "GET", "/v1/vms?stale=true", nil), http.StatusOK)
	wantStatus(t, e.call(t, "GET", "/v1/cluster?stale", nil), http.StatusOK)
	wantStatus(t, e.call(t, "GET", "/v1/status", nil), http.StatusOK)

	// A leader is known but not its address.
	e.b.set(func(b *httpTestBackend) { b.leaderID = "n2" })
	r = e.call(t, "GET", "/v1/vms", nil)
	wantStatus(t, r, http.StatusServiceUnavailable)
	if eb := r.errBody(t); eb.Code != resource.CodeNoLeader || !strings.Contains(eb.Message, "n2") {
		t.Fatalf("%+v", eb)
	}
}

// TestHTTPUnsafeStaleReads: the selftest's deliberate bug really is one —
// with UnsafeStaleReads a node without a leader answers a linearizable read
// from local state instead of 503 — and it is off by default.
func TestHTTPUnsafeStaleReads(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.mustCreate(t, "vms", "web")
	e.b.set(func(b *httpTestBackend) { b.leader, b.leaderID, b.leaderAddr = false, "", "" })
	wantStatus(t, e.call(t, "GET", "/v1/vms/web", nil), http.StatusServiceUnavailable)
	e.api.unsafe = true
	wantStatus(t, e.call(t, "GET", "/v1/vms/web", nil), http.StatusOK)
	wantStatus(t, e.call(t, "GET", "/v1/vms", nil), http.StatusOK)
	// Writes are unaffected.
	wantStatus(t, e.call(t, "POST", "/v1/vms", createBody("x")), http.StatusServiceUnavailable)
}

// TestHTTPBackendErrors maps Backend errors onto status codes.
func TestHTTPBackendErrors(t *testing.T) {
	cases := []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter string
		msg        string
	}{
		{"no leader", resource.ErrNoLeader, 503, resource.CodeNoLeader, "1", "no cluster leader"},
		{"not ready", resource.ErrNotReady, 503, resource.CodeUnavailable, "1", "catching up"},
		{"shutting down", resource.ErrShuttingDown, 503, resource.CodeUnavailable, "1", "shutting down"},
		{"leadership lost", fmt.Errorf("%w (raft: leadership lost)", resource.ErrLeadershipLost), 503, resource.CodeUnavailable, "", "may or may not"},
		{"deadline", context.DeadlineExceeded, 504, resource.CodeTimeout, "", "may or may not"},
		{"upgrade required", fmt.Errorf("%w: a migrate command needs log protocol 2, which c3 does not speak yet", resource.ErrUpgradeRequired), 409, resource.CodeUpgradeRequired, "", "c3 does not speak"},
		{"other", errors.New("disk on fire"), 500, resource.CodeInternal, "", "disk on fire"},
		// A result the FSM refused as malformed although it understood
		// it (an empty batch): the controller built a bad command.
		{"refused batch result", fmt.Errorf("%w: batch has no operations", fsm.ErrBadPayload), 500, resource.CodeInternal, "", "bug"},
		// The FSM halted on the write's own entry (an unknown type, a
		// payload that does not decode): out of service, and the write
		// may have been applied by other nodes (no Retry-After).
		{"halting entry result", &fsm.HaltError{Index: 7, Type: 77, Cause: fmt.Errorf("%w 77", fsm.ErrUnknownCommand)}, 503, resource.CodeHalted, "", "log entry 7 (type(77)): unknown command type 77"},
		{"bad payload halt", &fsm.HaltError{Index: 7, Type: 1, Cause: fmt.Errorf("%w: trailing data", fsm.ErrBadPayload)}, 503, resource.CodeHalted, "", "Upgrade it"},
		{"entry after a halt", fmt.Errorf("%w: log entry 8 not applied", fsm.ErrHalted), 503, resource.CodeHalted, "", "out of service"},
	}
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.mustCreate(t, "vms", "web")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.b.set(func(b *httpTestBackend) { b.applyErr, b.readErr = tc.err, tc.err })
			defer e.b.set(func(b *httpTestBackend) { b.applyErr, b.readErr = nil, nil })
			for _, req := range []struct{ method, path, body string }{
				{"POST", "/v1/vms", createBody("x")},
				{"GET", "/v1/vms/web", ""},
			} {
				var body any
				if req.body != "" {
					body = req.body
				}
				r := e.call(t, req.method, req.path, body)
				wantStatus(t, r, tc.status)
				eb := r.errBody(t)
				if eb.Code != tc.code || !strings.Contains(eb.Message, tc.msg) || r.header.Get("Retry-After") != tc.retryAfter {
					t.Fatalf("%s %s: %+v Retry-After %q", req.method, req.path, eb, r.header.Get("Retry-After"))
				}
			}
		})
	}
}

func TestHTTPPanicRecovered(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.b.set(func(b *httpTestBackend) { b.statusPanics = true })
	r := e.call(t, "GET", "/v1/status", nil)
	wantStatus(t, r, http.StatusInternalServerError)
	if eb := r.errBody(t); eb.Code != resource.CodeInternal {
		t.Fatalf("%+v", eb)
	}
	e.b.set(func(b *httpTestBackend) { b.statusPanics = false })
	wantStatus(t, e.call(t, "GET", "/v1/status", nil), http.StatusOK)
}

// blockedSignal drops stale block signals and returns the channel that
// reports when a blocking query starts waiting.
func (e *httpEnv) blockedSignal() <-chan struct{} {
	for {
		select {
		case <-e.blocked:
		default:
			return e.blocked
		}
	}
}

func recvWithin[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
	panic("unreachable")
}

// callAsync runs a request in the background.
func (e *httpEnv) callAsync(t *testing.T, method, path string) <-chan httpResult {
	ch := make(chan httpResult, 1)
	go func() {
		var r httpResult
		defer func() { ch <- r }()
		req, err := http.NewRequest(method, e.srv.URL+path, nil)
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r = httpResult{status: resp.StatusCode, header: resp.Header, body: b}
	}()
	return ch
}

func TestHTTPBlockingQuery(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	blocked := e.blockedSignal()
	e.mustCreate(t, "vms", "web")
	r := e.call(t, "GET", "/v1/vms", nil)
	idx := r.index(t)

	t.Run("list wakes on a write", func(t *testing.T) {
		res := e.callAsync(t, "GET", fmt.Sprintf("/v1/vms?index=%d&wait=1m", idx))
		recvWithin(t, blocked, 10*time.Second, "the query to block")
		e.mustCreate(t, "vms", "new")
		r := recvWithin(t, res, 10*time.Second, "the blocking query to answer")
		wantStatus(t, r, http.StatusOK)
		if r.index(t) <= idx || !bytes.Contains(r.body, []byte(`"name":"new"`)) {
			t.Fatalf("index %d (was %d), body %s", r.index(t), idx, r.body)
		}
		idx = r.index(t)
	})

	t.Run("get ignores other objects and wakes on its own", func(t *testing.T) {
		web := e.call(t, "GET", "/v1/vms/web", nil)
		res := e.callAsync(t, "GET", fmt.Sprintf("/v1/vms/web?index=%d&wait=1m", web.index(t)))
		recvWithin(t, blocked, 10*time.Second, "the query to block")
		e.mustCreate(t, "vms", "other")
		// A write to another object may wake the query, but it must
		// block again, not answer.
		select {
		case r := <-res:
			t.Fatalf("answered after an unrelated write: %d %s", r.status, r.body)
		default:
		}
		wantStatus(t, e.call(t, "PUT", "/v1/vms/web", web.body), http.StatusOK)
		r := recvWithin(t, res, 10*time.Second, "the blocking get to answer")
		wantStatus(t, r, http.StatusOK)
		if got := r.object(t); got.ModifyIndex <= web.index(t) || r.index(t) != got.ModifyIndex {
			t.Fatalf("blocking get: %+v index %d", got, r.index(t))
		}
	})

	t.Run("get of an absent object wakes on its creation", func(t *testing.T) {
		r := e.call(t, "GET", "/v1/vms/later", nil)
		wantStatus(t, r, http.StatusNotFound)
		res := e.callAsync(t, "GET", fmt.Sprintf("/v1/vms/later?index=%d&wait=1m", r.index(t)))
		recvWithin(t, blocked, 10*time.Second, "the query to block")
		e.mustCreate(t, "vms", "later")
		r = recvWithin(t, res, 10*time.Second, "the blocking get to answer")
		wantStatus(t, r, http.StatusOK)
	})

	t.Run("times out at wait with the same index", func(t *testing.T) {
		idx := e.call(t, "GET", "/v1/vms", nil).index(t)
		for _, wait := range []string{"50ms", "0.05"} {
			start := time.Now()
			r := e.call(t, "GET", fmt.Sprintf("/v1/vms?index=%d&wait=%s", idx, wait), nil)
			wantStatus(t, r, http.StatusOK)
			if r.index(t) != idx {
				t.Fatalf("index %d after timeout, want %d", r.index(t), idx)
			}
			if el := time.Since(start); el < 50*time.Millisecond {
				t.Fatalf("wait=%s answered after %s", wait, el)
			}
			recvWithin(t, blocked, time.Second, "the block signal")
		}
	})

	t.Run("stale blocking query", func(t *testing.T) {
		idx := e.call(t, "GET", "/v1/vms?stale", nil).index(t)
		res := e.callAsync(t, "GET", fmt.Sprintf("/v1/vms?stale&index=%d&wait=1m", idx))
		recvWithin(t, blocked, 10*time.Second, "the query to block")
		e.mustCreate(t, "vms", "stale-new")
		r := recvWithin(t, res, 10*time.Second, "the stale blocking query")
		wantStatus(t, r, http.StatusOK)
		if r.index(t) <= idx {
			t.Fatalf("index did not move")
		}
	})

	t.Run("index 0 and empty kinds never block", func(t *testing.T) {
		r := e.call(t, "GET", "/v1/hosts?index=0&wait=10m", nil)
		wantStatus(t, r, http.StatusOK)
		if r.index(t) != 1 {
			t.Fatalf("empty kind index %d, want 1 (never 0)", r.index(t))
		}
	})
}

// eventStream reads NDJSON lines from /v1/events.
type eventStream struct {
	resp   *http.Response
	lines  chan resource.Event
	cancel context.CancelFunc
}

func openEvents(t *testing.T, base, query string, hdr ...string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &eventStream{resp: resp, lines: make(chan resource.Event, 1024), cancel: cancel}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("events: %d %s", resp.StatusCode, b)
	}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev resource.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = resource.Event{Type: "BAD LINE: " + sc.Text()}
			}
			s.lines <- ev
		}
	}()
	return s
}

func (s *eventStream) next(t *testing.T) resource.Event {
	t.Helper()
	ev, ok := <-recvChan(t, s.lines)
	if !ok {
		t.Fatal("event stream ended")
	}
	return ev
}

// recvChan waits (bounded) for one value of ch and hands it on, so that
// next can tell a closed stream from a value.
func recvChan(t *testing.T, ch chan resource.Event) chan resource.Event {
	t.Helper()
	out := make(chan resource.Event, 1)
	select {
	case ev, ok := <-ch:
		if ok {
			out <- ev
		} else {
			close(out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for an event line")
	}
	return out
}

func TestHTTPEvents(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	a := e.mustCreate(t, "vms", "a")
	b := e.mustCreate(t, "vms", "b")
	h := e.mustCreate(t, "hosts", "hv-1")

	t.Run("from index 0", func(t *testing.T) {
		s := openEvents(t, e.srv.URL, "?index=0")
		if ct := s.resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Fatalf("Content-Type %q", ct)
		}
		for _, want := range []*resource.Object{a, b, h} {
			ev := s.next(t)
			if ev.Type != resource.EventCreated || ev.Index != want.CreateIndex || ev.Name != want.Name || ev.Kind != want.Kind || !ev.Object.Equal(want) {
				t.Fatalf("event %+v, want created %s", ev, want)
			}
		}
		// New events arrive on the open stream.
		wantStatus(t, e.call(t, "DELETE", "/v1/vms/a", nil), http.StatusOK)
		if ev := s.next(t); ev.Type != resource.EventDeleted || ev.Name != "a" {
			t.Fatalf("event %+v, want deleted a", ev)
		}
	})

	t.Run("resume by index", func(t *testing.T) {
		s := openEvents(t, e.srv.URL, fmt.Sprintf("?index=%d", b.CreateIndex))
		if ev := s.next(t); ev.Index != h.CreateIndex || ev.Name != "hv-1" {
			t.Fatalf("first event after %d: %+v", b.CreateIndex, ev)
		}
	})

	t.Run("kind filter", func(t *testing.T) {
		s := openEvents(t, e.srv.URL, "?index=0&kind=host")
		if ev := s.next(t); ev.Kind != resource.KindHost || ev.Name != "hv-1" {
			t.Fatalf("kind=host gave %+v", ev)
		}
		e.mustCreate(t, "vms", "skipped")
		e.mustCreate(t, "hosts", "hv-2")
		if ev := s.next(t); ev.Kind != resource.KindHost || ev.Name != "hv-2" {
			t.Fatalf("kind=host gave %+v", ev)
		}
		s2 := openEvents(t, e.srv.URL, "?index=0&kind=vm,hosts")
		if ev := s2.next(t); ev.Name != "a" {
			t.Fatalf("kind=vm,hosts gave %+v", ev)
		}
	})

	t.Run("without index only new events", func(t *testing.T) {
		latest := e.b.f.State().LatestIndex()
		s := openEvents(t, e.srv.URL, "")
		if got := s.resp.Header.Get(headerIndex); got != fmt.Sprint(latest) {
			t.Fatalf("%s %q, want %d", headerIndex, got, latest)
		}
		n := e.mustCreate(t, "vms", "fresh")
		if ev := s.next(t); ev.Name != "fresh" || ev.Index != n.CreateIndex {
			t.Fatalf("first event %+v, want the new one", ev)
		}
	})

	t.Run("stale stream on a follower", func(t *testing.T) {
		f := newHTTPEnv(t, "f1", httpEnvOpts{})
		f.b.set(func(b *httpTestBackend) { b.leader = false })
		s := openEvents(t, f.srv.URL, "?stale&index=0")
		f.b.applyDirect(t, fsm.CreateRequestType, &fsm.CreateRequest{
			Time: time.Unix(1, 0), Kind: resource.KindVM, Name: "local", ID: uuid.NewString(),
			Spec: json.RawMessage(vmSpec),
		})
		if ev := s.next(t); ev.Name != "local" {
			t.Fatalf("stale stream %+v", ev)
		}
	})
}

func TestHTTPEventsReset(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{eventBuffer: 2})
	var objs []*resource.Object
	for i := range 5 {
		objs = append(objs, e.mustCreate(t, "vms", fmt.Sprintf("vm-%d", i)))
	}
	s := openEvents(t, e.srv.URL, fmt.Sprintf("?index=%d", objs[0].CreateIndex))
	ev := s.next(t)
	floor := objs[2].CreateIndex // the ring holds the last two: vm-3, vm-4
	if ev.Type != resource.EventReset || ev.Index != floor || ev.Object != nil {
		t.Fatalf("first line %+v, want reset at %d", ev, floor)
	}
	for _, want := range objs[3:] {
		if ev := s.next(t); ev.Type != resource.EventCreated || ev.Name != want.Name {
			t.Fatalf("after reset: %+v, want %s", ev, want.Name)
		}
	}
	// Events still retained need no reset.
	s2 := openEvents(t, e.srv.URL, fmt.Sprintf("?index=%d", floor))
	if ev := s2.next(t); ev.Type != resource.EventCreated || ev.Name != "vm-3" {
		t.Fatalf("%+v", ev)
	}
}

func TestHTTPEventsHeartbeat(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{heartbeat: 20 * time.Millisecond})
	o := e.mustCreate(t, "vms", "a")
	s := openEvents(t, e.srv.URL, "?kind=host")
	ev := s.next(t)
	if ev.Type != resource.EventHeartbeat || ev.Index != o.CreateIndex {
		t.Fatalf("got %+v, want a heartbeat at %d", ev, o.CreateIndex)
	}
	// A filtered-out event still moves the heartbeat's index on.
	o2 := e.mustCreate(t, "vms", "b")
	for ev.Index != o2.CreateIndex {
		if ev = s.next(t); ev.Type != resource.EventHeartbeat {
			t.Fatalf("got %+v, want heartbeats only", ev)
		}
	}
	// A non-stale stream ends when its node stops leading.
	e.b.set(func(b *httpTestBackend) { b.leader = false })
	for {
		select {
		case _, ok := <-s.lines:
			if !ok {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("stream did not end after leadership was lost")
		}
	}
}

// TestHTTPForwarding: a follower forwards writes and linearizable reads to
// the leader and serves stale reads itself.
func TestHTTPForwarding(t *testing.T) {
	l := newHTTPEnv(t, "leader", httpEnvOpts{})
	f := newHTTPEnv(t, "follower", httpEnvOpts{})
	f.follow(l)

	expectForwarded := func(t *testing.T, by string) {
		t.Helper()
		if got := recvWithin(t, l.forwardedBy, 5*time.Second, "a forwarded request at the leader"); got != by {
			t.Fatalf("forwarded by %q, want %q", got, by)
		}
	}

	// Write through the follower.
	r := f.call(t, "POST", "/v1/vms", createBody("web"))
	wantStatus(t, r, http.StatusCreated)
	expectForwarded(t, "follower")
	created := r.object(t)
	if r.header.Get("Location") != "/v1/vms/web" || r.index(t) != created.CreateIndex {
		t.Fatalf("forwarded response headers %v", r.header)
	}
	if o, _ := l.b.f.State().Get(nil, resource.KindVM, "web"); o == nil || !o.Equal(created) {
		t.Fatalf("object not on the leader: %+v", o)
	}
	if o, _ := f.b.f.State().Get(nil, resource.KindVM, "web"); o != nil {
		t.Fatal("follower applied the write itself")
	}

	// Linearizable read: the leader answers.
	r = f.call(t, "GET", "/v1/vms/web", nil)
	wantStatus(t, r, http.StatusOK)
	expectForwarded(t, "follower")
	if !r.object(t).Equal(created) {
		t.Fatalf("forwarded read %s", r.body)
	}
	r = f.call(t, "GET", "/v1/vms", nil)
	wantStatus(t, r, http.StatusOK)
	expectForwarded(t, "follower")

	// Stale read: the follower answers from its own (empty) state.
	r = f.call(t, "GET", "/v1/vms/web?stale", nil)
	wantStatus(t, r, http.StatusNotFound)
	if r.header.Get(headerKnownLeader) != "true" {
		t.Fatalf("stale headers %v", r.header)
	}
	r = f.call(t, "GET", "/v1/vms?stale", nil)
	if string(r.body) != "[]\n" {
		t.Fatalf("stale list %s", r.body)
	}
	select {
	case by := <-l.forwardedBy:
		t.Fatalf("stale read was forwarded by %s", by)
	default:
	}

	// Bad input is answered by the leader, verbatim.
	before := l.digest()
	r = f.call(t, "POST", "/v1/vms", `{"name":"x","spec":{"cpus":1,"memory_mib":1,"gpu":1}}`)
	wantStatus(t, r, http.StatusBadRequest)
	expectForwarded(t, "follower")
	if eb := r.errBody(t); eb.Field != "spec.gpu" {
		t.Fatalf("%+v", eb)
	}
	if l.digest() != before {
		t.Fatal("bad input changed the leader's state")
	}

	// Update and delete through the follower.
	get := f.call(t, "GET", "/v1/vms/web", nil)
	expectForwarded(t, "follower")
	r = f.call(t, "PUT", fmt.Sprintf("/v1/vms/web?cas=%d", created.ModifyIndex), get.body)
	wantStatus(t, r, http.StatusOK)
	expectForwarded(t, "follower")
	r = f.call(t, "DELETE", "/v1/vms/web", nil)
	wantStatus(t, r, http.StatusOK)
	expectForwarded(t, "follower")
	if l.b.f.State().Count(resource.KindVM) != 0 {
		t.Fatal("delete did not land on the leader")
	}

	// Cluster endpoints.
	r = f.call(t, "GET", "/v1/cluster", nil)
	wantStatus(t, r, http.StatusOK)
	expectForwarded(t, "follower")
	if !bytes.Contains(r.body, []byte(`"leader":"leader"`)) {
		t.Fatalf("cluster %s", r.body)
	}
	r = f.call(t, "GET", "/v1/cluster?stale", nil)
	wantStatus(t, r, http.StatusOK)
	if r.header.Get(headerKnownLeader) != "true" {
		t.Fatalf("stale cluster headers %v", r.header)
	}

	// A blocking query passes through the follower.
	blocked := l.blockedSignal()
	idx := f.call(t, "GET", "/v1/vms", nil).index(t)
	expectForwarded(t, "follower")
	res := f.callAsync(t, "GET", fmt.Sprintf("/v1/vms?index=%d&wait=1m", idx))
	recvWithin(t, blocked, 10*time.Second, "the forwarded query to block on the leader")
	expectForwarded(t, "follower")
	l.mustCreate(t, "vms", "late")
	r = recvWithin(t, res, 10*time.Second, "the forwarded blocking query")
	wantStatus(t, r, http.StatusOK)
	if r.index(t) <= idx || !bytes.Contains(r.body, []byte(`"late"`)) {
		t.Fatalf("forwarded blocking query: %d %s", r.index(t), r.body)
	}

	// The event stream is streamed through from the leader.
	s := openEvents(t, f.srv.URL, "")
	expectForwarded(t, "follower")
	n := l.mustCreate(t, "vms", "streamed")
	if ev := s.next(t); ev.Name != "streamed" || ev.Index != n.CreateIndex {
		t.Fatalf("forwarded stream: %+v", ev)
	}
	s.cancel()

	// The status endpoint is always local.
	r = f.call(t, "GET", "/v1/status", nil)
	if !bytes.Contains(r.body, []byte(`"node_id":"follower"`)) {
		t.Fatalf("status %s", r.body)
	}

	// Metrics count forwarded requests.
	if v := counterValue(t, f.reg, "kumoi_forwarded_requests_total"); v < 10 {
		t.Fatalf("kumoi_forwarded_requests_total = %v", v)
	}
	if l.b.appliedCount() == 0 || f.b.appliedCount() != 0 {
		t.Fatalf("applies: leader %d follower %d", l.b.appliedCount(), f.b.appliedCount())
	}
}

func TestHTTPForwardingFailures(t *testing.T) {
	l := newHTTPEnv(t, "leader", httpEnvOpts{})

	t.Run("loop guard", func(t *testing.T) {
		// f2 thinks f1 leads; f1 thinks l leads. f1 must not forward
		// what it was forwarded.
		f1 := newHTTPEnv(t, "f1", httpEnvOpts{})
		f2 := newHTTPEnv(t, "f2", httpEnvOpts{})
		f1.follow(l)
		f2.follow(f1)
		before := l.digest()
		r := f2.call(t, "POST", "/v1/vms", createBody("loop"))
		wantStatus(t, r, http.StatusServiceUnavailable)
		if eb := r.errBody(t); eb.Code != resource.CodeNoLeader || r.header.Get("Retry-After") != "1" || !strings.Contains(eb.Message, "f2") {
			t.Fatalf("%+v", eb)
		}
		select {
		case by := <-l.forwardedBy:
			t.Fatalf("request went a second hop (forwarded by %s)", by)
		default:
		}
		if l.digest() != before {
			t.Fatal("state changed")
		}
		// A follower that is sent a forwarded request answers 503.
		r = f1.call(t, "GET", "/v1/vms", nil, headerForwarded, "someone")
		wantStatus(t, r, http.StatusServiceUnavailable)
	})

	t.Run("leader changes while it does not answer", func(t *testing.T) {
		// A leader cut off after the connection was made: it never
		// answers. The follower gives up when it learns of a new leader.
		// Three such leaders: one that takes the forwarding stream and
		// reads the write but never answers it (the write may have been
		// applied), one that takes no streams and never answers the
		// HTTP request (likewise), one that never answers the stream's
		// upgrade (the write never left: safe to retry).
		stuck := make(chan struct{})
		hold := func(r *http.Request) {
			select {
			case <-stuck:
			case <-r.Context().Done():
			}
		}
		streamSilent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != frames.Path {
				hold(r)
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + frames.Proto + "\r\n\r\n")
			brw.Flush()
			go io.Copy(io.Discard, brw) // reads every frame, answers none
			<-stuck
		}))
		defer streamSilent.Close()
		httpSilent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == frames.Path {
				http.NotFound(w, r) // an older build
				return
			}
			hold(r)
		}))
		defer httpSilent.Close()
		upgradeSilent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hold(r) }))
		defer upgradeSilent.Close()
		defer close(stuck) // before the servers close: they wait for their handlers
		f := newHTTPEnv(t, "f4", httpEnvOpts{})
		for _, tc := range []struct {
			leader       *httptest.Server
			method, path string
			body         any
			code, msg    string
		}{
			{streamSilent, "POST", "/v1/vms", createBody("x"), resource.CodeUnavailable, "may or may not have been applied"},
			{httpSilent, "POST", "/v1/vms", createBody("x"), resource.CodeUnavailable, "may or may not have been applied"},
			{upgradeSilent, "POST", "/v1/vms", createBody("x"), resource.CodeNoLeader, "the leader changed while this request was forwarded to old"},
			{streamSilent, "GET", "/v1/vms", nil, resource.CodeNoLeader, "the leader changed while this request was forwarded to old"},
		} {
			ch := make(chan struct{})
			f.b.set(func(b *httpTestBackend) {
				b.leader, b.leaderID, b.leaderAddr, b.changed = false, "old", tc.leader.Listener.Addr().String(), ch
			})
			time.AfterFunc(200*time.Millisecond, func() {
				// Another node leads now: as the controller does, a new
				// channel for the next change, then the old one closed.
				f.b.set(func(b *httpTestBackend) { b.leaderID, b.changed = "new", make(chan struct{}) })
				close(ch)
			})
			r := f.call(t, tc.method, tc.path, tc.body)
			wantStatus(t, r, http.StatusServiceUnavailable)
			if eb := r.errBody(t); eb.Code != tc.code || !strings.Contains(eb.Message, tc.msg) {
				t.Errorf("%s %s to %s: %+v", tc.method, tc.path, tc.leader.URL, eb)
			}
		}
	})

	t.Run("leader unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		f := newHTTPEnv(t, "f3", httpEnvOpts{})
		f.b.set(func(b *httpTestBackend) { b.leader, b.leaderID, b.leaderAddr = false, "gone", dead })
		r := f.call(t, "POST", "/v1/vms", createBody("x"))
		wantStatus(t, r, http.StatusServiceUnavailable)
		if eb := r.errBody(t); eb.Code != resource.CodeNoLeader || !strings.Contains(eb.Message, "cannot reach the leader gone") {
			t.Fatalf("%+v", eb)
		}
	})

	t.Run("leadership moves mid-request", func(t *testing.T) {
		// IsLeader says yes, then Apply/ConsistentRead say resource.ErrNotLeader:
		// nothing was proposed, so the request is forwarded once.
		n := newHTTPEnv(t, "n", httpEnvOpts{})
		n.b.set(func(b *httpTestBackend) { b.leaderID, b.leaderAddr = "leader", l.addr() })
		setMoved := func() { n.b.set(func(b *httpTestBackend) { b.notLeaderOnce = true }) }

		setMoved()
		r := n.call(t, "POST", "/v1/vms", createBody("moved"))
		wantStatus(t, r, http.StatusCreated)
		if o, _ := l.b.f.State().Get(nil, resource.KindVM, "moved"); o == nil {
			t.Fatal("write was not forwarded to the leader")
		}
		setMoved()
		r = n.call(t, "GET", "/v1/vms/moved", nil)
		wantStatus(t, r, http.StatusOK)
		setMoved()
		wantStatus(t, n.call(t, "GET", "/v1/cluster", nil), http.StatusOK)

		// A forwarded request whose target turns out not to lead is
		// not forwarded again.
		setMoved()
		r = n.call(t, "GET", "/v1/vms/moved", nil, headerForwarded, "x")
		wantStatus(t, r, http.StatusServiceUnavailable)
		if r.errBody(t).Code != resource.CodeNoLeader {
			t.Fatalf("%s", r.body)
		}
	})
}

func counterValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestHTTPMetrics(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.mustCreate(t, "vms", "web")
	wantStatus(t, e.call(t, "GET", "/v1/vms/web", nil), http.StatusOK)
	r := e.call(t, "GET", "/metrics", nil)
	wantStatus(t, r, http.StatusOK)
	for _, want := range []string{
		`kumoi_http_request_duration_seconds_count{code="201",method="POST",route="/v1/vms"} 1`,
		`kumoi_http_request_duration_seconds_count{code="200",method="GET",route="/v1/vms/{name}"} 1`,
		`kumoi_http_requests_in_flight 1`, // this very request
		`kumoi_raft_apply_duration_seconds_count 1`,
		`kumoi_forwarded_requests_total 0`,
		`kumoi_fsm_apply_errors_total{type="create"} 0`,
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// NewMetrics tolerates the same registry twice and shares the series.
	m1 := NewMetrics(e.reg)
	m2 := NewMetrics(e.reg)
	m1.ObserveApply(fsm.CreateRequestType, time.Millisecond, nil)
	m2.ObserveApply(fsm.CreateRequestType, time.Millisecond, fsm.ErrExists)
	if v := counterValue(t, e.reg, "kumoi_fsm_apply_duration_seconds"); v != 2 {
		t.Fatalf("apply observations %v, want 2", v)
	}
	if v := counterValue(t, e.reg, "kumoi_fsm_apply_errors_total"); v != 1 {
		t.Fatalf("apply errors %v, want 1", v)
	}
	// A nil *Metrics records nothing and does not panic.
	var none *Metrics
	none.ObserveApply(fsm.UpdateRequestType, time.Millisecond, nil)

	// A handler without a registry serves its own.
	h := NewHandler(e.b, Options{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/vms", nil))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `kumoi_http_request_duration_seconds_count{code="200",method="GET",route="/v1/vms"} 1`) {
		t.Fatalf("private registry: %s", rec.Body.String())
	}
}

// TestHTTPConcurrentCreates: many clients racing to create the same names
// get exactly one 201 per name.
func TestHTTPConcurrentCreates(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	var created atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", e.srv.URL+"/v1/vms", strings.NewReader(createBody(fmt.Sprintf("vm-%d", i%10))))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	if created.Load() != 10 || e.b.f.State().Count(resource.KindVM) != 10 {
		t.Fatalf("%d created, %d stored; want 10", created.Load(), e.b.f.State().Count(resource.KindVM))
	}
}

// TestHTTPEventsBatches: one log entry (a batch) carries several events with
// one index; the stream must deliver every one of them even where a batch
// straddles the stream's internal read size, or exceeds it.
func TestHTTPEventsBatches(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	create := func(name string) *fsm.CreateRequest {
		return &fsm.CreateRequest{Time: time.Unix(1, 0), Kind: resource.KindVM, Name: name, ID: uuid.NewString(), Spec: json.RawMessage(vmSpec)}
	}
	batch := func(prefix string, n int) {
		var ops []fsm.BatchOp
		for i := range n {
			op, err := fsm.NewBatchOp(fsm.CreateRequestType, create(fmt.Sprintf("%s-%d", prefix, i)))
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, op)
		}
		e.b.applyDirect(t, fsm.BatchRequestType, &fsm.BatchRequest{Time: time.Unix(1, 0), Ops: ops})
	}
	for i := range eventsBatch - 6 {
		e.b.applyDirect(t, fsm.CreateRequestType, create(fmt.Sprintf("single-%d", i)))
	}
	batch("straddle", 10)
	batch("huge", eventsBatch+44)
	want := eventsBatch - 6 + 10 + eventsBatch + 44

	s := openEvents(t, e.srv.URL, "?index=0")
	seen := map[string]bool{}
	var lastIndex uint64
	for range want {
		ev := s.next(t)
		if ev.Type != resource.EventCreated || ev.Index < lastIndex || seen[ev.Name] {
			t.Fatalf("event %d: %+v (last index %d)", len(seen), ev, lastIndex)
		}
		seen[ev.Name], lastIndex = true, ev.Index
	}
	if e.b.f.State().Count(resource.KindVM) != want {
		t.Fatalf("%d objects, want %d", e.b.f.State().Count(resource.KindVM), want)
	}
	e.mustCreate(t, "vms", "after")
	if ev := s.next(t); ev.Name != "after" {
		t.Fatalf("after the batches: %+v", ev)
	}
}

// TestHTTPHalted: once the node's state machine halts (here on a committed
// entry of an unknown type), GET /v1/status answers with health "halted"
// and the reason, /metrics shows kumoi_fsm_halted 1 and the halt among the
// apply errors, and every other request is refused with 503 "halted"
// (Retry-After: nothing was done) and reaches neither the FSM nor Raft.
func TestHTTPHalted(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.b.f.OnApply = e.api.m.ObserveApply
	e.mustCreate(t, "vms", "web")
	var st resource.Status
	r := e.call(t, "GET", "/v1/status", nil)
	if err := json.Unmarshal(r.body, &st); err != nil || st.Health != resource.HealthOK || st.HealthReason != "" {
		t.Fatalf("status before the halt: %s (%v)", r.body, err)
	}
	if !bytes.Contains(e.call(t, "GET", "/metrics", nil).body, []byte("kumoi_fsm_halted 0")) {
		t.Fatalf("/metrics lacks kumoi_fsm_halted 0")
	}

	var at uint64
	e.b.set(func(b *httpTestBackend) {
		b.next++
		at = b.next
		res := b.f.Apply(&raft.Log{Index: b.next, Type: raft.LogCommand, Data: []byte("\x63{}")}).(*fsm.Result)
		if !errors.Is(res.Err, fsm.ErrHalted) {
			t.Errorf("unknown entry: %v, want a halt", res.Err)
		}
	})
	applies, digest := e.b.appliedCount(), e.b.f.State().Digest()

	r = e.call(t, "GET", "/v1/status", nil)
	wantStatus(t, r, http.StatusOK)
	if err := json.Unmarshal(r.body, &st); err != nil || st.Health != resource.HealthHalted ||
		!strings.Contains(st.HealthReason, fmt.Sprintf("log entry %d (type(99)): unknown command type 99", at)) {
		t.Fatalf("status after the halt: %s (%v)", r.body, err)
	}
	m := e.call(t, "GET", "/metrics", nil)
	wantStatus(t, m, http.StatusOK)
	for _, want := range []string{"kumoi_fsm_halted 1", `kumoi_fsm_apply_errors_total{type="type(99)"} 1`} {
		if !bytes.Contains(m.body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, req := range []struct{ method, path, body string }{
		{"GET", "/v1/vms", ""},
		{"GET", "/v1/vms/web?stale", ""},
		{"POST", "/v1/vms", createBody("x")},
		{"PUT", "/v1/vms/web", createBody("web")},
		{"DELETE", "/v1/vms/web", ""},
		{"POST", "/v1/vms/web/stop", ""},
		{"GET", "/v1/cluster", ""},
		{"DELETE", "/v1/cluster/servers/n2", ""},
		{"GET", "/v1/events", ""},
		{"GET", "/v1/nope", ""},
	} {
		var body any
		if req.body != "" {
			body = req.body
		}
		r := e.call(t, req.method, req.path, body)
		wantStatus(t, r, http.StatusServiceUnavailable)
		eb := r.errBody(t)
		if eb.Code != resource.CodeHalted || r.header.Get("Retry-After") != "1" {
			t.Errorf("%s %s: %+v, Retry-After %q", req.method, req.path, eb, r.header.Get("Retry-After"))
		}
		for _, want := range []string{"out of service", fmt.Sprintf("log entry %d (type(99))", at), "Upgrade it", "/v1/status"} {
			if !strings.Contains(eb.Message, want) {
				t.Errorf("%s %s: message %q does not mention %q", req.method, req.path, eb.Message, want)
			}
		}
	}
	if e.b.appliedCount() != applies || e.b.f.State().Digest() != digest {
		t.Errorf("a halted node applied a request")
	}
}
