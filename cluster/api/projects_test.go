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

// A rule scoped to a project: vm:write:project=p1 creates, changes and
// deletes the VMs of p1 only (the selector key project matches the VM's
// spec.project, not a label), and cannot move a VM out of p1.
func TestHTTPACLProjectScope(t *testing.T) {
	e := newACLEnv(t, "n1")
	for _, p := range []string{"p1", "p2"} {
		wantStatus(t, e.as(t, e.mgmt.SecretID, "POST", "/v1/projects", resource.CreateRequest{Name: p, Spec: json.RawMessage(`{}`)}), http.StatusCreated)
	}
	e.policy(t, "p1-ops", "vm:write:project=p1", "project:read:project=p1")
	tok := e.token(t, map[string]any{"name": "p1", "type": resource.TokenClient, "policies": []string{"p1-ops"}})
	vm := func(name, project string, labels map[string]string) resource.CreateRequest {
		spec := `{"cpus":1,"memory_mib":64}`
		if project != "" {
			spec = `{"cpus":1,"memory_mib":64,"project":"` + project + `"}`
		}
		return resource.CreateRequest{Name: name, Labels: labels, Spec: json.RawMessage(spec)}
	}
	wantStatus(t, e.as(t, tok.SecretID, "POST", "/v1/vms", vm("a", "p1", nil)), http.StatusCreated)
	wantCode(t, e.as(t, tok.SecretID, "POST", "/v1/vms", vm("b", "p2", nil)), http.StatusForbidden, resource.CodePermissionDenied, `vm "b"`)
	wantCode(t, e.as(t, tok.SecretID, "POST", "/v1/vms", vm("c", "", nil)), http.StatusForbidden, resource.CodePermissionDenied, `vm "c"`)
	// A label named project does not stand in for the project.
	wantCode(t, e.as(t, tok.SecretID, "POST", "/v1/vms", vm("d", "p2", map[string]string{"project": "p1"})), http.StatusForbidden, resource.CodePermissionDenied, `vm "d"`)
	// Moving a out of p1 is refused; changing it within p1 is not.
	wantCode(t, e.as(t, tok.SecretID, "PUT", "/v1/vms/a", resource.UpdateRequest{Spec: json.RawMessage(`{"cpus":1,"memory_mib":64,"project":"p2"}`)}), http.StatusForbidden, resource.CodePermissionDenied, "")
	wantStatus(t, e.as(t, tok.SecretID, "PUT", "/v1/vms/a", resource.UpdateRequest{Spec: json.RawMessage(`{"cpus":2,"memory_mib":64,"project":"p1"}`)}), http.StatusOK)
	// Others' VMs: not visible, not deletable.
	wantStatus(t, e.as(t, e.mgmt.SecretID, "POST", "/v1/vms", vm("z", "p2", nil)), http.StatusCreated)
	wantStatus(t, e.as(t, tok.SecretID, "DELETE", "/v1/vms/z", nil), http.StatusForbidden)
	r := e.as(t, tok.SecretID, "GET", "/v1/vms", nil)
	wantStatus(t, r, http.StatusOK)
	var objs []*resource.Object
	if err := json.Unmarshal(r.body, &objs); err != nil || len(objs) != 1 || objs[0].Name != "a" {
		t.Fatalf("visible VMs: %s", r.body)
	}
	// The project itself: its own only.
	wantStatus(t, e.as(t, tok.SecretID, "GET", "/v1/projects/p1", nil), http.StatusOK)
	wantStatus(t, e.as(t, tok.SecretID, "GET", "/v1/projects/p2", nil), http.StatusForbidden)
	wantStatus(t, e.as(t, tok.SecretID, "DELETE", "/v1/vms/a", nil), http.StatusOK)
}
