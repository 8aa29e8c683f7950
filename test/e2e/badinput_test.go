package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestBadInput sends bad requests to the leader and to a follower of a
// real cluster: each gets a clean 4xx JSON error that says what is wrong,
// and nothing is written.
func TestBadInput(t *testing.T) {
	c := newCluster(t, testcluster.Options{})
	hc := httpClient()
	leader, _ := c.WaitLeader(leaderTimeout)
	follower := (leader + 1) % c.N()
	l := newLedger()
	dup := l.mustCreate(t, c, hc, "dup", map[string]string{"a": "b"})
	before := waitSameEverywhere(t, c, hc)

	// A create one byte over the 1 MiB cap: a label value pads it.
	head, tail := `{"name":"big","spec":{"cpus":1,"memory_mib":64},"labels":{"pad":"`, `"}}`
	bigBody := []byte(head + strings.Repeat("x", (1<<20)+1-len(head)-len(tail)) + tail)

	cases := []struct {
		name    string
		method  string
		path    string
		body    string
		raw     []byte
		status  int
		code    string
		mention string // the field or a word the error must name
	}{
		{"malformed JSON", "POST", "/v1/vms", `{"name": "x", "spec": {`, nil, 400, resource.CodeInvalidJSON, ""},
		{"trailing garbage", "POST", "/v1/vms", `{"name":"x","spec":{"cpus":1,"memory_mib":64}} {}`, nil, 400, resource.CodeInvalidJSON, ""},
		{"empty body", "POST", "/v1/vms", ``, nil, 400, resource.CodeInvalidJSON, ""},
		{"unknown field", "POST", "/v1/vms", `{"name":"x","colour":"red","spec":{"cpus":1,"memory_mib":64}}`, nil, 400, resource.CodeInvalidArgument, "colour"},
		{"unknown spec field", "POST", "/v1/vms", `{"name":"x","spec":{"cpus":1,"memory_mib":64,"gpus":2}}`, nil, 400, resource.CodeInvalidArgument, "gpus"},
		{"invalid name", "POST", "/v1/vms", `{"name":"Bad_Name!","spec":{"cpus":1,"memory_mib":64}}`, nil, 400, resource.CodeInvalidArgument, "name"},
		{"invalid spec", "POST", "/v1/vms", `{"name":"x","spec":{"cpus":0,"memory_mib":64}}`, nil, 400, resource.CodeInvalidArgument, "spec.cpus"},
		{"duplicate name", "POST", "/v1/vms", `{"name":"dup","spec":{"cpus":1,"memory_mib":64}}`, nil, 409, resource.CodeAlreadyExists, "dup"},
		{"body over 1 MiB", "POST", "/v1/vms", "", bigBody, 413, resource.CodeBodyTooLarge, ""},
		{"CAS mismatch on update", "PUT", fmt.Sprintf("/v1/vms/dup?cas=%d", dup.ModifyIndex+1000),
			`{"labels":{"a":"c"},"spec":{"cpus":2,"memory_mib":64}}`, nil, 409, resource.CodeCASMismatch, ""},
		{"CAS mismatch on delete", "DELETE", fmt.Sprintf("/v1/vms/dup?cas=%d", dup.ModifyIndex+1000), "", nil, 409, resource.CodeCASMismatch, ""},
		{"bad CAS value", "PUT", "/v1/vms/dup?cas=abc", `{"labels":{},"spec":{"cpus":2,"memory_mib":64}}`, nil, 400, resource.CodeInvalidArgument, "cas"},
		{"unknown query parameter", "GET", "/v1/vms?colour=red", "", nil, 400, resource.CodeInvalidArgument, "colour"},
		{"update of a missing object", "PUT", "/v1/vms/nope", `{"labels":{},"spec":{"cpus":2,"memory_mib":64}}`, nil, 404, resource.CodeNotFound, ""},
		{"no such collection", "GET", "/v1/nopes", "", nil, 404, resource.CodeNotFound, ""},
	}
	for _, via := range []struct {
		name string
		node int
	}{{"leader", leader}, {"follower", follower}} {
		t.Run(via.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					body := tc.raw
					if body == nil && tc.body != "" {
						body = []byte(tc.body)
					}
					if body == nil && tc.method == http.MethodPost {
						body = []byte{}
					}
					r, err := do(hc, tc.method, c.URL(via.node)+tc.path, body)
					if err != nil {
						t.Fatalf("%s %s: %v", tc.method, tc.path, err)
					}
					wantAPIError(t, tc.name, r, tc.status, []string{tc.code}, tc.mention)
				})
			}
		})
	}
	after := waitSameEverywhere(t, c, hc)
	if d := diff(before, after); d != "" {
		t.Errorf("bad requests changed the state: %s", d)
	}
}
