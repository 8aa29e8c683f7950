// Package testapi is an in-memory fake of the controllers' HTTP API, for the
// tests of the Go SDK (client) and the CLI (cli). It implements the wire
// contract of resource/api.go (objects, blocking queries, label selectors,
// CAS, errors, the event stream, status and cluster) closely enough to test
// a client's behaviour, with knobs to make it fail.
//
// It is a test double, not a server: no Raft, no persistence, no leader
// forwarding. It must never be imported by non-test code.
package testapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kumoi/kumoi/resource"
)

// Now is the fake's clock: every status timestamp it writes.
var Now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// Request is one request the fake received.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Query    url.Values
}

// Server is the fake API. Create it with New.
type Server struct {
	URL string // base URL, e.g. http://127.0.0.1:41234
	srv *httptest.Server

	// Unavailable answers the next N requests with 503 no_leader.
	Unavailable atomic.Int64
	// AlwaysUnavailable answers every request with 503 no_leader (a
	// follower that lost its leader).
	AlwaysUnavailable atomic.Bool
	// UnavailableUnknown answers the next N requests with 503 unavailable
	// without Retry-After (leadership lost while a write was in flight).
	UnavailableUnknown atomic.Int64
	// PageSize, when > 0, is the page size of a list without ?limit (the
	// real API's is resource.MaxListLimit): lists page like the API's
	// (?limit, ?next, X-Kumoi-Next), to exercise clients that follow them.
	PageSize atomic.Int64
	// StreamLimit, when > 0, closes each event stream after that many
	// events, to exercise reconnects.
	StreamLimit atomic.Int64
	// Heartbeat, when > 0 (nanoseconds), makes idle event streams send a
	// heartbeat line that often; Heartbeats counts the lines sent.
	Heartbeat  atomic.Int64
	Heartbeats atomic.Int64
	// Hook, if set, runs before each request is handled (outside the
	// fake's lock, so it may call Put or SetStatus).
	Hook func(r *http.Request)
	// Lifecycle, if set, simulates the scheduler and the workers. It is
	// called with a copy of a VM after the VM is created and after each
	// update that changes its spec, and returns the steps the VM goes
	// through next (placement, phases, a guest powering itself off). The
	// fake applies one step per blocking read of that VM (GET
	// /v1/vms/{name}?index=N), just before answering it, so that a client
	// that waits sees every step in turn, without any timing. A new call
	// replaces the steps not applied yet. It runs under the fake's lock
	// and must not call the fake. Healthy is a ready-made one.
	Lifecycle func(vm *resource.Object) []Step

	mu            sync.Mutex
	index         uint64
	objects       map[resource.Kind]map[string]*resource.Object
	events        []resource.Event
	firstRetained uint64 // events below this index were compacted away
	changed       chan struct{}
	requests      []Request
	status        resource.Status
	cluster       resource.Cluster
	steps         map[string][]Step // VM name → steps not applied yet
}

// Step is one change the simulated cluster makes to a VM.
type Step struct {
	// Status replaces the VM's status. A zero Since becomes Now; a zero
	// Epoch on a step that moves the VM to another host becomes the
	// step's index, as a placement's would.
	Status resource.VMStatus
	// Power, if set, becomes the VM's spec.power with this step, as a
	// worker's report does when a guest powers itself off ("stopped").
	Power string
}

// Healthy returns a Lifecycle that behaves like a healthy cluster with one
// host: a pending VM is scheduled on host, and a placed VM moves through
// the phases to the one its spec.power asks for (starting → running,
// stopping → stopped, suspended).
func Healthy(host string) func(vm *resource.Object) []Step {
	return func(vm *resource.Object) []Step {
		spec, err := resource.DecodeSpec[resource.VMSpec](vm)
		if err != nil {
			return nil
		}
		st, err := resource.DecodeStatus[resource.VMStatus](vm)
		if err != nil {
			return nil
		}
		var steps []Step
		phase, on := st.Phase, st.Host
		add := func(p string) {
			steps = append(steps, Step{Status: resource.VMStatus{Phase: p, Host: on}})
			phase = p
		}
		if on == "" {
			on = host
			add(resource.PhaseScheduled)
		}
		switch spec.Power {
		case resource.PowerRunning:
			if phase != resource.PhaseRunning && phase != resource.PhaseSuspended {
				add(resource.PhaseStarting)
			}
			if phase != resource.PhaseRunning {
				add(resource.PhaseRunning)
			}
		case resource.PowerStopped:
			if phase == resource.PhaseRunning || phase == resource.PhaseSuspended {
				add(resource.PhaseStopping)
			}
			if phase != resource.PhaseStopped {
				add(resource.PhaseStopped)
			}
		case resource.PowerSuspended:
			if phase != resource.PhaseRunning && phase != resource.PhaseSuspended {
				add(resource.PhaseStarting)
			}
			if phase != resource.PhaseSuspended {
				add(resource.PhaseSuspended)
			}
		}
		return steps
	}
}

// New starts a fake and stops it when the test ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := Start()
	tb.Cleanup(s.Close)
	return s
}

// Start starts a fake outside a test (in an Example); the caller must Close
// it.
func Start() *Server {
	s := &Server{
		objects:       map[resource.Kind]map[string]*resource.Object{},
		changed:       make(chan struct{}),
		firstRetained: 1,
		steps:         map[string][]Step{},
	}
	s.srv = httptest.NewServer(s.handler())
	s.URL = s.srv.URL
	s.status = resource.Status{NodeID: "ctl-1", ClusterID: "5b4c006b-1a36-48ab-bc2c-eaa015938bb8", LeaderID: "ctl-1", RaftState: "Leader", APIAddr: s.URL, Version: "test"}
	s.cluster = resource.Cluster{
		ClusterID: "5b4c006b-1a36-48ab-bc2c-eaa015938bb8",
		Leader:    "ctl-1",
		Servers:   []resource.Server{{ID: "ctl-1", Address: "127.0.0.1:7401", Voter: true, Leader: true}},
		Members:   []resource.Member{{Name: "ctl-1", Address: "127.0.0.1:7402", Status: "alive", Role: "controller"}},
	}
	return s
}

// Close stops the fake; event streams end.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// CloseClientConnections drops every open connection (event streams too).
func (s *Server) CloseClientConnections() { s.srv.CloseClientConnections() }

// DeadAddr returns the URL of a local port on which nothing listens, so
// that connecting to it is refused.
func DeadAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testapi: listen: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		tb.Fatalf("testapi: close: %v", err)
	}
	return "http://" + addr
}

// SetCluster replaces what GET /v1/cluster answers.
func (s *Server) SetCluster(c resource.Cluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cluster = c
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Index returns the fake's state index.
func (s *Server) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// Object returns a copy of a stored object, or nil.
func (s *Server) Object(kind resource.Kind, name string) *resource.Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objects[kind][name].Copy()
}

// Put stores an object of any kind as the system would (hosts, or status
// changes of VMs), bumping the index and emitting an event. spec and status
// are marshalled to JSON; nil status keeps the existing one or uses the
// kind's initial status.
func (s *Server) Put(tb testing.TB, kind resource.Kind, name string, labels map[string]string, spec, status any) *resource.Object {
	tb.Helper()
	o, err := s.PutObject(kind, name, labels, spec, status)
	if err != nil {
		tb.Fatalf("testapi: %v", err)
	}
	return o
}

// PutObject is Put for code without a testing.TB (an Example): it returns
// the error instead of failing the test.
func (s *Server) PutObject(kind resource.Kind, name string, labels map[string]string, spec, status any) (*resource.Object, error) {
	rawSpec, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("marshal spec: %w", err)
	}
	normSpec, err := resource.NormalizeSpec(kind, rawSpec)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", kind, name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.objects[kind][name]
	var rawStatus json.RawMessage
	switch {
	case status != nil:
		rawStatus, err = json.Marshal(status)
	case old != nil:
		rawStatus = old.Status
	default:
		rawStatus, err = resource.InitialStatus(kind, Now)
	}
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	o := &resource.Object{Kind: kind, Name: name, Labels: labels, Spec: normSpec, Status: rawStatus}
	if o.Labels == nil {
		o.Labels = map[string]string{}
	}
	if old != nil {
		o.ID, o.CreateIndex = old.ID, old.CreateIndex
	}
	s.storeLocked(o, old == nil)
	return o.Copy(), nil
}

// SetStatus replaces an object's status as the system would (a worker's
// report, a host's state), keeping its spec and labels; it bumps the index
// and emits an event.
func (s *Server) SetStatus(tb testing.TB, kind resource.Kind, name string, status any) *resource.Object {
	tb.Helper()
	raw, err := json.Marshal(status)
	if err != nil {
		tb.Fatalf("testapi: marshal status: %v", err)
	}
	if raw, err = resource.NormalizeStatus(kind, raw); err != nil {
		tb.Fatalf("testapi: %s/%s: %v", kind, name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.objects[kind][name]
	if old == nil {
		tb.Fatalf("testapi: SetStatus: %s/%s does not exist", kind, name)
	}
	o := old.Copy()
	o.Status = raw
	s.storeLocked(o, false)
	return o.Copy()
}

// Remove deletes an object as a user would, emitting its event; it does
// nothing when there is no such object.
func (s *Server) Remove(kind resource.Kind, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.objects[kind][name]; o != nil {
		s.deleteLocked(o)
		if kind == resource.KindVM {
			delete(s.steps, name)
		}
	}
}

// PendingSteps returns how many Lifecycle steps of a VM are not applied yet.
func (s *Server) PendingSteps(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.steps[name])
}

// planLocked asks Lifecycle for the next steps of a VM just written.
func (s *Server) planLocked(o *resource.Object) {
	if s.Lifecycle == nil || o.Kind != resource.KindVM {
		return
	}
	s.steps[o.Name] = s.Lifecycle(o.Copy())
}

// stepLocked applies the next Lifecycle step of a VM, if any.
func (s *Server) stepLocked(name string) {
	steps := s.steps[name]
	old := s.objects[resource.KindVM][name]
	if len(steps) == 0 || old == nil {
		return
	}
	step := steps[0]
	s.steps[name] = steps[1:]
	st := step.Status
	if st.Since.IsZero() {
		st.Since = Now
	}
	cur, _ := resource.DecodeStatus[resource.VMStatus](old)
	if st.Epoch == 0 && cur != nil {
		st.Epoch = cur.Epoch
		if st.Host != cur.Host {
			st.Epoch = s.index + 1
		}
	}
	o := old.Copy()
	o.Status, _ = json.Marshal(st)
	if step.Power != "" {
		spec := map[string]any{}
		if json.Unmarshal(o.Spec, &spec) == nil {
			spec["power"] = step.Power
			o.Spec, _ = resource.NormalizeSpec(resource.KindVM, mustJSON(spec))
		}
	}
	s.storeLocked(o, false)
}

func mustJSON(v any) json.RawMessage {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return data
}

// CreateBatch creates VMs with the given names in one step: one index,
// several events, as a batch command of the real controllers does.
func (s *Server) CreateBatch(tb testing.TB, spec resource.VMSpec, names ...string) uint64 {
	tb.Helper()
	raw, _ := json.Marshal(spec)
	norm, err := resource.NormalizeSpec(resource.KindVM, raw)
	if err != nil {
		tb.Fatalf("testapi: %v", err)
	}
	status, _ := resource.InitialStatus(resource.KindVM, Now)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	if s.objects[resource.KindVM] == nil {
		s.objects[resource.KindVM] = map[string]*resource.Object{}
	}
	for _, name := range names {
		o := &resource.Object{Kind: resource.KindVM, Name: name, ID: uuid.NewString(), Labels: map[string]string{},
			CreateIndex: s.index, ModifyIndex: s.index, Spec: norm, Status: status}
		s.objects[resource.KindVM][name] = o
		s.events = append(s.events, resource.Event{Index: s.index, Type: resource.EventCreated, Kind: o.Kind, Name: name, Object: o.Copy()})
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

// Compact drops the retained events, so that a stream asking for them gets
// a reset.
func (s *Server) Compact() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = nil
	s.firstRetained = s.index + 1
}

// storeLocked writes o at the next index and emits its event.
func (s *Server) storeLocked(o *resource.Object, created bool) {
	s.index++
	if created {
		o.ID = uuid.NewString()
		o.CreateIndex = s.index
	}
	o.ModifyIndex = s.index
	if s.objects[o.Kind] == nil {
		s.objects[o.Kind] = map[string]*resource.Object{}
	}
	s.objects[o.Kind][o.Name] = o
	typ := resource.EventUpdated
	if created {
		typ = resource.EventCreated
	}
	s.emitLocked(resource.Event{Index: s.index, Type: typ, Kind: o.Kind, Name: o.Name, Object: o.Copy()})
}

func (s *Server) deleteLocked(o *resource.Object) {
	s.index++
	delete(s.objects[o.Kind], o.Name)
	s.emitLocked(resource.Event{Index: s.index, Type: resource.EventDeleted, Kind: o.Kind, Name: o.Name, Object: o.Copy()})
}

func (s *Server) emitLocked(ev resource.Event) {
	s.events = append(s.events, ev)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.getStatus)
	mux.HandleFunc("GET /v1/cluster", s.getCluster)
	mux.HandleFunc("DELETE /v1/cluster/servers/{id}", s.removeServer)
	mux.HandleFunc("GET /v1/events", s.streamEvents)
	mux.HandleFunc("GET /v1/{plural}", s.list)
	mux.HandleFunc("POST /v1/{plural}", s.create)
	mux.HandleFunc("GET /v1/{plural}/{name}", s.get)
	mux.HandleFunc("PUT /v1/{plural}/{name}", s.update)
	mux.HandleFunc("DELETE /v1/{plural}/{name}", s.delete)
	mux.HandleFunc("POST /v1/vms/{name}/{action}", s.action)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Query: r.URL.Query()})
		s.mu.Unlock()
		if s.Hook != nil {
			s.Hook(r)
		}
		if s.AlwaysUnavailable.Load() || take(&s.Unavailable) {
			w.Header().Set("Retry-After", "0")
			writeError(w, http.StatusServiceUnavailable, resource.CodeNoLeader, "", "no cluster leader; retry later")
			return
		}
		if take(&s.UnavailableUnknown) {
			writeError(w, http.StatusServiceUnavailable, resource.CodeUnavailable, "", "leadership lost while the request was in flight; it may or may not have been applied")
			return
		}
		if !checkParams(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// take consumes one of a counter's failures, if any are left.
func take(n *atomic.Int64) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// checkParams rejects unknown query parameters, as the real API does, so
// that a client sending a wrong one is caught.
func checkParams(w http.ResponseWriter, r *http.Request) bool {
	var allowed []string
	switch {
	case r.URL.Path == "/v1/events":
		allowed = []string{"index", "kind", "stale"}
	case r.Method == http.MethodGet && r.URL.Path == "/v1/cluster":
		allowed = []string{"stale"}
	case r.Method == http.MethodGet && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 1:
		allowed = []string{"selector", "stale", "index", "wait", "host", "limit", "next"} // a list
	case r.Method == http.MethodGet:
		allowed = []string{"stale", "index", "wait"}
	case r.Method == http.MethodPut, r.Method == http.MethodDelete && !strings.HasPrefix(r.URL.Path, "/v1/cluster/"):
		allowed = []string{"cas"}
	}
	for k := range r.URL.Query() {
		if !slices.Contains(allowed, k) {
			writeError(w, http.StatusBadRequest, resource.CodeInvalidArgument, k, "unknown query parameter %q", k)
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, field, format string, args ...any) {
	writeJSON(w, code, resource.ErrorResponse{Error: resource.ErrorBody{
		Code: errCode, Message: fmt.Sprintf(format, args...), Field: field,
	}})
}

func writeInvalid(w http.ResponseWriter, err error) {
	var fe *resource.FieldError
	if errors.As(err, &fe) {
		writeError(w, http.StatusBadRequest, resource.CodeInvalidArgument, fe.Field, "%s", fe.Error())
		return
	}
	writeError(w, http.StatusBadRequest, resource.CodeInvalidArgument, "", "%s", err.Error())
}

func (s *Server) kind(w http.ResponseWriter, r *http.Request) (*resource.KindInfo, bool) {
	info, ok := resource.LookupPlural(r.PathValue("plural"))
	if !ok {
		writeError(w, http.StatusNotFound, resource.CodeNotFound, "", "no such collection /v1/%s", r.PathValue("plural"))
	}
	return info, ok
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	st := s.status
	st.StateIndex, st.AppliedIndex, st.CommitIndex = s.index, s.index, s.index
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	c := s.cluster
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) removeServer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, srv := range s.cluster.Servers {
		if srv.ID == id {
			s.cluster.Servers = append(s.cluster.Servers[:i:i], s.cluster.Servers[i+1:]...)
			s.index++
			writeJSON(w, http.StatusOK, map[string]any{"removed": id, "index": s.index})
			return
		}
	}
	writeError(w, http.StatusNotFound, resource.CodeNotFound, "", "server %q is not in the cluster", id)
}

// waitLocked implements ?index=N&wait=D: it blocks, with s.mu held on
// return, until the state index passes N or D passes.
func (s *Server) waitLocked(w http.ResponseWriter, r *http.Request) bool {
	q := r.URL.Query()
	if q.Get("index") == "" {
		return true
	}
	min, err := strconv.ParseUint(q.Get("index"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, resource.CodeInvalidArgument, "index", "index must be a non-negative integer")
		return false
	}
	wait := 5 * time.Minute
	if v := q.Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil {
			writeError(w, http.StatusBadRequest, resource.CodeInvalidArgument, "wait", "wait must be a duration such as 30s")
			return false
		}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for s.index <= min {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
		case <-timer.C:
			s.mu.Lock()
			return true
		case <-r.Context().Done():
			s.mu.Lock()
			return true
		}
	}
	return true
}

func (s *Server) readHeaders(w http.ResponseWriter) {
	w.Header().Set("X-Kumoi-Index", strconv.FormatUint(s.index, 10))
	w.Header().Set("X-Kumoi-Known-Leader", "true")
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	info, ok := s.kind(w, r)
	if !ok {
		return
	}
	sel, err := resource.ParseSelector(r.URL.Query().Get("selector"))
	if err != nil {
		writeError(w, http.StatusBadRequest, resource.CodeInvalidArgument, "selector", "%s", err.Error())
		return
	}
	host := r.URL.Query().Get("host")
	if host != "" && info.Kind != resource.KindVM {
		writeError(w, http.StatusBadRequest, resource.CodeInvalidArgument, "host", "only VMs can be listed by host")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.waitLocked(w, r) {
		return
	}
	out := []*resource.Object{}
	for _, o := range s.objects[info.Kind] {
		if !sel.Matches(o.Labels) {
			continue
		}
		if host != "" {
			if st, err := resource.DecodeStatus[resource.VMStatus](o); err != nil || st.Host != host {
				continue
			}
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	limit := int(s.PageSize.Load())
	if l := r.URL.Query().Get("limit"); l != "" {
		limit, _ = strconv.Atoi(l)
	}
	if next := r.URL.Query().Get("next"); next != "" {
		out = out[sort.Search(len(out), func(i int) bool { return out[i].Name >= next }):]
	}
	if limit > 0 && len(out) > limit {
		w.Header().Set(resource.HeaderNext, out[limit].Name) // tokens are opaque
		out = out[:limit]
	}
	s.readHeaders(w)
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	info, ok := s.kind(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	s.mu.Lock()
	defer s.mu.Unlock()
	if info.Kind == resource.KindVM && r.URL.Query().Has("index") {
		s.stepLocked(name)
	}
	if !s.waitLocked(w, r) {
		return
	}
	o := s.objects[info.Kind][name]
	s.readHeaders(w)
	if o == nil {
		writeError(w, http.StatusNotFound, resource.CodeNotFound, "", "%s %q not found", info.Kind, name)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, resource.CodeInvalidJSON, "", "read body: %v", err)
		return false
	}
	if err := resource.DecodeStrict(data, v, ""); err != nil {
		var fe *resource.FieldError
		if errors.As(err, &fe) {
			writeError(w, http.StatusBadRequest, resource.CodeInvalidJSON, fe.Field, "%s", fe.Error())
		} else {
			writeError(w, http.StatusBadRequest, resource.CodeInvalidJSON, "", "%s", err.Error())
		}
		return false
	}
	return true
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	info, ok := s.kind(w, r)
	if !ok {
		return
	}
	if info.Kind != resource.KindVM {
		writeError(w, http.StatusMethodNotAllowed, resource.CodeMethodNotAllowed, "", "%ss are created by the system, not through the API", info.Kind)
		return
	}
	var req resource.CreateRequest
	if !readBody(w, r, &req) {
		return
	}
	if err := resource.ValidateRequestMeta(req.Name, req.Labels); err != nil {
		writeInvalid(w, err)
		return
	}
	spec, err := resource.NormalizeRequestSpec(info.Kind, req.Spec)
	if err != nil {
		writeInvalid(w, err)
		return
	}
	status, _ := resource.InitialStatus(info.Kind, Now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects[info.Kind][req.Name] != nil {
		writeError(w, http.StatusConflict, resource.CodeAlreadyExists, "name", "%s %q already exists", info.Kind, req.Name)
		return
	}
	o := &resource.Object{Kind: info.Kind, Name: req.Name, Labels: req.Labels, Spec: spec, Status: status}
	if o.Labels == nil {
		o.Labels = map[string]string{}
	}
	s.storeLocked(o, true)
	s.planLocked(o)
	writeJSON(w, http.StatusCreated, o)
}

func casParam(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	v := r.URL.Query().Get("cas")
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, resource.CodeInvalidArgument, "cas", "cas must be a non-negative integer")
		return 0, false
	}
	return n, true
}

func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	info, ok := s.kind(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	cas, ok := casParam(w, r)
	if !ok {
		return
	}
	var req resource.UpdateRequest
	if !readBody(w, r, &req) {
		return
	}
	if err := resource.ValidateRequestLabels(req.Labels); err != nil {
		writeInvalid(w, err)
		return
	}
	spec, err := resource.NormalizeRequestSpec(info.Kind, req.Spec)
	if err != nil {
		writeInvalid(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.objects[info.Kind][name]
	if old == nil {
		writeError(w, http.StatusNotFound, resource.CodeNotFound, "", "%s %q not found", info.Kind, name)
		return
	}
	if cas != 0 && old.ModifyIndex != cas {
		writeError(w, http.StatusConflict, resource.CodeCASMismatch, "", "%s %q has modify_index %d, not %d", info.Kind, name, old.ModifyIndex, cas)
		return
	}
	o := old.Copy()
	o.Labels, o.Spec = req.Labels, spec
	if o.Labels == nil {
		o.Labels = map[string]string{}
	}
	s.storeLocked(o, false)
	if !bytes.Equal(old.Spec, spec) {
		s.planLocked(o)
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	info, ok := s.kind(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	cas, ok := casParam(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.objects[info.Kind][name]
	if old == nil {
		writeError(w, http.StatusNotFound, resource.CodeNotFound, "", "%s %q not found", info.Kind, name)
		return
	}
	if cas != 0 && old.ModifyIndex != cas {
		writeError(w, http.StatusConflict, resource.CodeCASMismatch, "", "%s %q has modify_index %d, not %d", info.Kind, name, old.ModifyIndex, cas)
		return
	}
	s.deleteLocked(old)
	if info.Kind == resource.KindVM {
		delete(s.steps, name)
	}
	writeJSON(w, http.StatusOK, old)
}

// streamEvents implements GET /v1/events?index=N&kind=K.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if v := q.Get("index"); v != "" {
		var err error
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, resource.CodeInvalidArgument, "index", "index must be a non-negative integer")
			return
		}
	}
	var kinds []resource.Kind // nil: all
	for _, v := range q["kind"] {
		for k := range strings.SplitSeq(v, ",") {
			if _, ok := resource.Lookup(resource.Kind(k)); !ok {
				writeError(w, http.StatusBadRequest, resource.CodeInvalidArgument, "kind", "unknown kind %q", k)
				return
			}
			kinds = append(kinds, resource.Kind(k))
		}
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	limit := s.StreamLimit.Load()
	var sent int64

	s.mu.Lock()
	if after+1 < s.firstRetained {
		after = s.index
		reset := resource.Event{Index: after, Type: resource.EventReset}
		s.mu.Unlock()
		if enc.Encode(reset) != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		s.mu.Lock()
	}
	for {
		var batch []resource.Event
		for _, ev := range s.events {
			if ev.Index > after && (kinds == nil || slices.Contains(kinds, ev.Kind)) {
				batch = append(batch, ev)
			}
		}
		if n := len(s.events); n > 0 && s.events[n-1].Index > after {
			after = s.events[n-1].Index
		}
		ch := s.changed
		s.mu.Unlock()
		for _, ev := range batch {
			if enc.Encode(ev) != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
			if sent++; limit > 0 && sent >= limit {
				return
			}
		}
		heartbeat := time.NewTimer(time.Hour)
		if d := time.Duration(s.Heartbeat.Load()); d > 0 {
			heartbeat.Reset(d)
		}
		select {
		case <-ch:
		case <-heartbeat.C:
			if enc.Encode(resource.Event{Index: after, Type: "heartbeat"}) != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
			s.Heartbeats.Add(1)
		case <-r.Context().Done():
			heartbeat.Stop()
			return
		}
		heartbeat.Stop()
		s.mu.Lock()
	}
}

// action is POST /v1/vms/{name}/{action}, with the real server's rules
// (fsm's action): start sets power running and places a failed or lost VM
// again; stop sets power stopped in any phase; suspend needs a running VM
// and resume a suspended one (409 conflict naming the phase otherwise);
// reboot needs a running VM. An action that changes nothing writes
// nothing. A write runs Lifecycle, as an update of the spec does.
func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	name, act := r.PathValue("name"), r.PathValue("action")
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.objects[resource.KindVM][name]
	if old == nil {
		writeError(w, http.StatusNotFound, resource.CodeNotFound, "", "vm %q not found", name)
		return
	}
	spec, _ := resource.DecodeSpec[resource.VMSpec](old)
	st, _ := resource.DecodeStatus[resource.VMStatus](old)
	power, nst := spec.Power, *st
	deny := func(why string) {
		writeError(w, http.StatusConflict, resource.CodeConflict, "", "vm %q is %s: operation not allowed in this phase: %s", name, st.Phase, why)
	}
	switch act {
	case "start":
		power = resource.PowerRunning
		if st.Phase == resource.PhaseFailed || st.Phase == resource.PhaseLost {
			nst = resource.VMStatus{Phase: resource.PhasePending, Reason: "started again after it was " + st.Phase + "; waiting for placement", Since: Now}
		}
	case "stop":
		power = resource.PowerStopped
	case "suspend":
		if st.Phase != resource.PhaseRunning {
			deny("only a running VM can be suspended")
			return
		}
		power = resource.PowerSuspended
	case "resume":
		if st.Phase != resource.PhaseSuspended && spec.Power != resource.PowerSuspended {
			deny("only a suspended VM can be resumed")
			return
		}
		power = resource.PowerRunning
	case "reboot":
		if st.Phase != resource.PhaseRunning {
			deny("only a running VM can be rebooted")
			return
		}
		nst.RebootRequested = s.index + 1
	default:
		writeError(w, http.StatusNotFound, resource.CodeNotFound, "", "unknown VM action %q; use start, stop, suspend, resume or reboot", act)
		return
	}
	if power == spec.Power && nst == *st {
		s.readHeaders(w)
		writeJSON(w, http.StatusOK, old)
		return
	}
	o := old.Copy()
	spec.Power = power
	o.Spec, _ = json.Marshal(spec)
	o.Status, _ = json.Marshal(&nst)
	s.storeLocked(o, false)
	s.planLocked(o)
	writeJSON(w, http.StatusOK, o)
}
