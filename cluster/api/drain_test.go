package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// drainEnvSetup gives e two ready hosts (h1 with 1 GiB, h2 with 2 GiB)
// and stopped VMs a, b, c (256 MiB each) on h1, plus big (1.5 GiB) on h2
// when withBig.
func drainEnvSetup(t *testing.T, e *httpEnv, withBig bool, hdr ...string) {
	t.Helper()
	for _, h := range []struct {
		name string
		mem  int64
	}{{"h1", 1024}, {"h2", 2048}} {
		e.b.applyDirect(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: h.name, ID: uuid.NewString(),
			State: resource.HostReady, Capacity: resource.Resources{CPUs: 8, MemoryMiB: h.mem},
			MigrationModes: []string{resource.MigrationLive, resource.MigrationRestart}})
	}
	place := map[string]string{"a": "h1", "b": "h1", "c": "h1"}
	mem := map[string]int{"a": 256, "b": 256, "c": 256}
	if withBig {
		place["big"], mem["big"] = "h2", 1536
	}
	for name, host := range place {
		r := e.call(t, "POST", "/v1/vms", map[string]any{"name": name, "spec": map[string]any{"cpus": 1, "memory_mib": mem[name], "power": "stopped"}}, hdr...)
		wantStatus(t, r, http.StatusCreated)
		res := e.b.applyDirect(t, fsm.PlaceRequestType, &fsm.PlaceRequest{Time: time.Now().UTC(), Placements: []fsm.Placement{{VM: name, Host: host}}})
		if res.Err != nil || (len(res.ItemErrors) > 0 && res.ItemErrors[0] != nil) {
			t.Fatalf("place %s: %v %v", name, res.Err, res.ItemErrors)
		}
		o, _ := e.b.f.State().Get(nil, resource.KindVM, name)
		_, st := resource.VMStateOf(o)
		e.b.applyDirect(t, fsm.ReportRequestType, &fsm.ReportRequest{Time: time.Now().UTC(), Host: host,
			Reports: []resource.VMReport{{VM: name, Epoch: st.Epoch, Phase: resource.PhaseStopped}}})
	}
}

func vmHost(t *testing.T, e *httpEnv, name string) string {
	t.Helper()
	o, _ := e.b.f.State().Get(nil, resource.KindVM, name)
	_, st := resource.VMStateOf(o)
	return st.Host
}

func TestHTTPDrainStatus(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	drainEnvSetup(t, e, false)
	var ds DrainStatus
	r := e.call(t, "GET", "/v1/hosts/h1/drain", nil)
	wantStatus(t, r, http.StatusOK)
	if err := json.Unmarshal(r.body, &ds); err != nil {
		t.Fatal(err)
	}
	if ds.Host != "h1" || ds.Draining || ds.Migrate || ds.VMsLeft != 3 || ds.VMsTotal != 3 || len(ds.Blocked) != 0 || len(ds.Migrating) != 0 {
		t.Fatalf("drain status %s", r.body)
	}
	// h2 shrinks: no VM fits there any more, and each is blocked with the
	// reason MigrationTargetFor gives (this backend has no drain loop).
	r = e.call(t, "POST", "/v1/vms", map[string]any{"name": "huge", "spec": map[string]any{"cpus": 1, "memory_mib": 256, "power": "stopped"}})
	wantStatus(t, r, http.StatusCreated)
	if res := e.b.applyDirect(t, fsm.PlaceRequestType, &fsm.PlaceRequest{Time: time.Now().UTC(), Placements: []fsm.Placement{{VM: "huge", Host: "h1"}}}); len(res.ItemErrors) > 0 && res.ItemErrors[0] != nil {
		t.Fatal(res.ItemErrors[0])
	}
	e.b.applyDirect(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: "h2",
		State: resource.HostReady, Capacity: resource.Resources{CPUs: 8, MemoryMiB: 128}, MigrationModes: []string{resource.MigrationRestart}})
	e.b.applyDirect(t, fsm.UpdateRequestType, &fsm.UpdateRequest{Time: time.Now().UTC(), Kind: resource.KindHost, Name: "h1",
		Spec: json.RawMessage(`{"unschedulable":true,"drain":{"migrate":true}}`)})
	r = e.call(t, "GET", "/v1/hosts/h1/drain", nil)
	wantStatus(t, r, http.StatusOK)
	ds = DrainStatus{}
	if err := json.Unmarshal(r.body, &ds); err != nil {
		t.Fatal(err)
	}
	if !ds.Draining || !ds.Migrate || ds.VMsLeft != 4 || len(ds.Blocked) != 4 || ds.Blocked[3].VM != "huge" || !strings.Contains(ds.Blocked[0].Reason, "cannot migrate") {
		t.Fatalf("drain status %s", r.body)
	}

	// With the leader's drain loop, its blockers and count.
	e.api.b = fakeDrainer{httpTestBackend: e.b, blockers: map[string]string{"b": "no room"}, moved: 2}
	r = e.call(t, "GET", "/v1/hosts/h1/drain", nil)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"vms_total":6,"vms_left":4,"migrating":[],"blocked":[{"vm":"b","reason":"no room"}]`) {
		t.Fatalf("drain status from the drain loop: %s", r.body)
	}

	// Bad input.
	wantCode(t, e.call(t, "GET", "/v1/hosts/nope/drain", nil), http.StatusNotFound, resource.CodeNotFound, `host "nope" not found`)
	r = e.call(t, "GET", "/v1/hosts/h1/drain?x=1", nil)
	wantStatus(t, r, http.StatusBadRequest)
	if f := r.errBody(t).Field; f != "x" {
		t.Fatalf("field %q, want x", f)
	}
	wantStatus(t, e.call(t, "POST", "/v1/hosts/h1/drain", `{}`), http.StatusMethodNotAllowed)
}

func TestHTTPRebalance(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	drainEnvSetup(t, e, false)
	var rr RebalanceResponse
	r := e.call(t, "POST", "/v1/rebalance", map[string]any{"dry_run": true, "max": 1})
	wantStatus(t, r, http.StatusOK)
	if err := json.Unmarshal(r.body, &rr); err != nil {
		t.Fatal(err)
	}
	if rr.Performed || len(rr.Moves) != 1 || rr.Moves[0].From != "h1" || rr.Moves[0].To != "h2" || rr.Moves[0].Mode != "cold" || rr.Moves[0].Reason == "" {
		t.Fatalf("dry run %s", r.body)
	}
	if h := vmHost(t, e, rr.Moves[0].VM); h != "h1" {
		t.Fatalf("a dry run moved %s to %s", rr.Moves[0].VM, h)
	}
	r = e.call(t, "POST", "/v1/rebalance", map[string]any{"max": 5})
	wantStatus(t, r, http.StatusOK)
	rr = RebalanceResponse{}
	if err := json.Unmarshal(r.body, &rr); err != nil {
		t.Fatal(err)
	}
	if !rr.Performed || len(rr.Moves) == 0 {
		t.Fatalf("rebalance %s", r.body)
	}
	for _, m := range rr.Moves {
		if m.Error != "" || vmHost(t, e, m.VM) != m.To {
			t.Fatalf("move %+v not done: on %s", m, vmHost(t, e, m.VM))
		}
	}
	// Nothing left to do: no moves (an empty list, not null).
	r = e.call(t, "POST", "/v1/rebalance", nil)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"moves":[]`) {
		t.Fatalf("balanced cluster: %s", r.body)
	}

	// Bad input names the field.
	for _, tc := range []struct{ body, field string }{
		{`{"max":-1}`, "max"},
		{`{"max":1000}`, "max"},
		{`{"dry_run":"yes"}`, "dry_run"},
		{`{"maximum":3}`, "maximum"},
	} {
		r := e.call(t, "POST", "/v1/rebalance", tc.body)
		wantStatus(t, r, http.StatusBadRequest)
		if eb := r.errBody(t); eb.Field != tc.field || eb.Code != resource.CodeInvalidArgument {
			t.Errorf("%s: error %+v, want field %s", tc.body, eb, tc.field)
		}
	}
	wantStatus(t, e.call(t, "POST", "/v1/rebalance", `{"max":`), http.StatusBadRequest)
	wantStatus(t, e.call(t, "GET", "/v1/rebalance", nil), http.StatusMethodNotAllowed)
}

func TestACLDrainAndRebalance(t *testing.T) {
	e := newACLEnv(t, "n1")
	drainEnvSetup(t, e.httpEnv, false, auth(e.mgmt.SecretID)...)
	e.policy(t, "readers", "vm:read", "host:read")
	e.policy(t, "power", "vm:power", "host:read")
	e.policy(t, "vmonly", "vm:power")
	readers := e.token(t, map[string]any{"name": "ci", "policies": []string{"readers"}})
	power := e.token(t, map[string]any{"name": "pow", "policies": []string{"power"}})
	vmonly := e.token(t, map[string]any{"name": "vmo", "policies": []string{"vmonly"}})

	wantStatus(t, e.call(t, "GET", "/v1/hosts/h1/drain", nil), http.StatusUnauthorized)
	wantStatus(t, e.call(t, "POST", "/v1/rebalance", `{"dry_run":true}`), http.StatusUnauthorized)
	wantStatus(t, e.as(t, readers.SecretID, "GET", "/v1/hosts/h1/drain", nil), http.StatusOK)
	wantCode(t, e.as(t, vmonly.SecretID, "GET", "/v1/hosts/h1/drain", nil), http.StatusForbidden, resource.CodePermissionDenied, "host")

	wantStatus(t, e.as(t, readers.SecretID, "POST", "/v1/rebalance", `{"dry_run":true}`), http.StatusOK)
	wantCode(t, e.as(t, readers.SecretID, "POST", "/v1/rebalance", `{}`), http.StatusForbidden, resource.CodePermissionDenied, "vm")
	wantCode(t, e.as(t, vmonly.SecretID, "POST", "/v1/rebalance", `{}`), http.StatusForbidden, resource.CodePermissionDenied, "host")
	wantStatus(t, e.as(t, power.SecretID, "POST", "/v1/rebalance", `{"max":1}`), http.StatusOK)
	wantStatus(t, e.as(t, e.mgmt.SecretID, "POST", "/v1/rebalance", `{"max":1}`), http.StatusOK)
}

type fakeDrainer struct {
	*httpTestBackend
	blockers map[string]string
	moved    int
}

func (f fakeDrainer) DrainStatus(string) (map[string]string, int, bool) {
	return f.blockers, f.moved, true
}
