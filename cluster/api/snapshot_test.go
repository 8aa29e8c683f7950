package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/snapfile"
	"github.com/kumoi/kumoi/resource"
)

const gzipType = "application/gzip"

// TestHTTPSnapshot checks GET and PUT /v1/operator/snapshot over the test
// backend: a save is a valid archive of the state (through a follower
// too), a restore brings that state back, and every bad request is
// refused with a clear error and changes nothing.
func TestHTTPSnapshot(t *testing.T) {
	leader := newHTTPEnv(t, "n1", httpEnvOpts{})
	follower := newHTTPEnv(t, "n2", httpEnvOpts{})
	follower.follow(leader)
	const id = "0b7c6f0e-6a0e-4c5e-9d43-0f5d6a1d2b3c"
	leader.b.applyDirect(t, fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{Time: time.Now().UTC(), ID: id})
	leader.mustCreate(t, "vms", "a")
	leader.mustCreate(t, "vms", "b")

	r := follower.call(t, "GET", "/v1/operator/snapshot", nil)
	wantStatus(t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != gzipType {
		t.Errorf("Content-Type %q", ct)
	}
	if by := <-leader.forwardedBy; by != "n2" {
		t.Errorf("forwarded by %q", by)
	}
	archive := r.body
	meta, state, err := snapfile.Read(bytes.NewReader(archive), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if meta.ClusterID != id || meta.Objects[resource.KindVM] != 2 || meta.Index != r.index(t) || meta.Node != "n1" {
		t.Errorf("meta %+v, index header %d", meta, r.index(t))
	}
	if info, err := fsm.ValidateSnapshot(bytes.NewReader(state)); err != nil || info.CountObjects() != 2 {
		t.Errorf("state: %+v %v", info, err)
	}
	names := func() string {
		t.Helper()
		r := leader.call(t, "GET", "/v1/vms", nil)
		wantStatus(t, r, http.StatusOK)
		var objs []*resource.Object
		if err := json.Unmarshal(r.body, &objs); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range objs {
			out = append(out, o.Name)
		}
		return strings.Join(out, ",")
	}

	// Refusals change nothing.
	leader.mustCreate(t, "vms", "late")
	changed := leader.digest()
	for _, tc := range []struct {
		name, method, path string
		body               any
		ctype              string
		status             int
		code, mention      string
	}{
		{"json type", "PUT", "/v1/operator/snapshot", archive, "application/json", 415, resource.CodeUnsupportedMediaType, "application/gzip"},
		{"empty", "PUT", "/v1/operator/snapshot", nil, gzipType, 400, resource.CodeInvalidArgument, "body is empty"},
		{"not an archive", "PUT", "/v1/operator/snapshot", "hello", gzipType, 400, resource.CodeInvalidArgument, "not a valid kumoi snapshot"},
		{"truncated", "PUT", "/v1/operator/snapshot", archive[:len(archive)/2], gzipType, 400, resource.CodeInvalidArgument, "not a valid kumoi snapshot"},
		{"bad force", "PUT", "/v1/operator/snapshot?force=maybe", archive, gzipType, 400, resource.CodeInvalidArgument, "force"},
		{"unknown parameter", "GET", "/v1/operator/snapshot?x=1", nil, "", 400, resource.CodeInvalidArgument, "x"},
		{"method", "DELETE", "/v1/operator/snapshot", nil, "", 405, resource.CodeMethodNotAllowed, "GET (save) or PUT (restore)"},
	} {
		var hdr []string
		if tc.ctype != "" {
			hdr = []string{"Content-Type", tc.ctype}
		}
		r := leader.call(t, tc.method, tc.path, tc.body, hdr...)
		if r.status != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, r.status, tc.status, r.body)
			continue
		}
		if e := r.errBody(t); e.Code != tc.code || !strings.Contains(e.Message, tc.mention) {
			t.Errorf("%s: %+v, want %s mentioning %q", tc.name, e, tc.code, tc.mention)
		}
	}
	if leader.digest() != changed {
		t.Fatal("a refused restore changed the state")
	}

	// Another cluster's snapshot: refused without force.
	other := newHTTPEnv(t, "o1", httpEnvOpts{})
	other.b.applyDirect(t, fsm.ClusterInitRequestType, &fsm.ClusterInitRequest{Time: time.Now().UTC(), ID: "1d0c4f37-4b1e-4d6c-8a3f-2b1f5e6d7c8a"})
	other.mustCreate(t, "vms", "theirs")
	r = other.call(t, "GET", "/v1/operator/snapshot", nil)
	wantStatus(t, r, http.StatusOK)
	foreign := r.body
	r = leader.call(t, "PUT", "/v1/operator/snapshot", foreign, "Content-Type", gzipType)
	if e := r.errBody(t); r.status != 409 || e.Code != resource.CodeConflict || !strings.Contains(e.Message, "force") {
		t.Errorf("foreign snapshot: %d %+v", r.status, e)
	}
	if leader.digest() != changed {
		t.Fatal("a refused restore changed the state")
	}

	// Our own snapshot, through the follower: the state of the save.
	r = follower.call(t, "PUT", "/v1/operator/snapshot", archive, "Content-Type", gzipType)
	wantStatus(t, r, http.StatusOK)
	if got := names(); got != "a,b" {
		t.Errorf("vms after the restore: %s, want a,b", got)
	}
	// The foreign one, forced.
	r = leader.call(t, "PUT", "/v1/operator/snapshot?force=true", foreign, "Content-Type", gzipType)
	wantStatus(t, r, http.StatusOK)
	if got := names(); got != "theirs" {
		t.Errorf("vms after the forced restore: %s, want theirs", got)
	}
}
