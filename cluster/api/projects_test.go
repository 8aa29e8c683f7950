package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/resource"
)

// Projects and quotas over HTTP (issue 14): a create over a quota is 409
// quota_exceeded naming the limit, an unknown project 400 on
// spec.project, and neither writes anything.
func TestHTTPProjectQuotas(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	p := e.createKind(t, "projects", "p1", `{"max_vms":10,"max_cpus":20,"max_memory_mib":65536}`, nil)
	if st, err := resource.DecodeStatus[resource.ProjectStatus](p); err != nil || st.Usage != (resource.ProjectUsage{}) {
		t.Fatalf("new project status %+v, %v", st, err)
	}
	e.createKind(t, "vms", "a", `{"cpus":18,"memory_mib":1024,"project":"p1"}`, nil)

	before := e.call(t, "GET", "/v1/vms", nil).header.Get(headerIndex)
	r := e.call(t, "POST", "/v1/vms", `{"name":"b","spec":{"cpus":4,"memory_mib":1024,"project":"p1"}}`)
	wantStatus(t, r, http.StatusConflict)
	if eb := r.errBody(t); eb.Code != resource.CodeQuotaExceeded || eb.Message != "project p1: max_cpus 20 exceeded: 18 in use, 4 asked" {
		t.Fatalf("over quota: %+v", eb)
	}
	r = e.call(t, "POST", "/v1/vms", `{"name":"b","spec":{"cpus":1,"memory_mib":1024,"project":"p9"}}`)
	wantField(t, r, http.StatusBadRequest, "spec.project", "no project p9: create it first")
	r = e.call(t, "GET", "/v1/vms/b", nil)
	wantStatus(t, r, http.StatusNotFound)
	if after := e.call(t, "GET", "/v1/vms", nil).header.Get(headerIndex); after != before {
		t.Fatalf("the refused creates wrote something: vms index %s -> %s", before, after)
	}
	// An update over the quota too.
	r = e.call(t, "PUT", "/v1/vms/a", `{"spec":{"cpus":21,"memory_mib":1024,"project":"p1"}}`)
	wantStatus(t, r, http.StatusConflict)
	if eb := r.errBody(t); eb.Code != resource.CodeQuotaExceeded || !strings.Contains(eb.Message, "max_cpus 20") {
		t.Fatalf("update over quota: %+v", eb)
	}

	// The usage is in the project's status.
	r = e.call(t, "GET", "/v1/projects/p1", nil)
	wantStatus(t, r, http.StatusOK)
	var st struct {
		Status resource.ProjectStatus `json:"status"`
	}
	if err := json.Unmarshal(r.body, &st); err != nil || st.Status.Usage != (resource.ProjectUsage{VMs: 1, CPUs: 18, MemoryMiB: 1024}) {
		t.Fatalf("usage: %s", r.body)
	}

	// Delete while in use: 409 naming the VM.
	r = e.call(t, "DELETE", "/v1/projects/p1", nil)
	wantStatus(t, r, http.StatusConflict)
	if eb := r.errBody(t); eb.Code != resource.CodeConflict || !strings.Contains(eb.Message, "vm a") {
		t.Fatalf("delete in use: %+v", eb)
	}
	wantStatus(t, e.call(t, "DELETE", "/v1/vms/a", nil), http.StatusOK)
	wantStatus(t, e.call(t, "DELETE", "/v1/projects/p1", nil), http.StatusOK)

	// A bad quota.
	r = e.call(t, "POST", "/v1/projects", `{"name":"p2","spec":{"max_cpus":-1}}`)
	wantField(t, r, http.StatusBadRequest, "spec.max_cpus", "must not be negative")
}
