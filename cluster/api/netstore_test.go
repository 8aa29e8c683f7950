package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

const (
	netSpec    = `{"cidr":"10.10.0.0/24","mode":"nat"}`
	imageSpec  = `{"format":"qcow2","file":"debian.qcow2"}`
	volumeSpec = `{"size_mib":1024}`
)

func (e *httpEnv) createKind(t *testing.T, plural, name, spec string, labels map[string]string) *resource.Object {
	t.Helper()
	r := e.call(t, "POST", "/v1/"+plural, resource.CreateRequest{Name: name, Labels: labels, Spec: json.RawMessage(spec)})
	wantStatus(t, r, http.StatusCreated)
	return r.object(t)
}

func wantField(t *testing.T, r httpResult, status int, field, msg string) {
	t.Helper()
	wantStatus(t, r, status)
	eb := r.errBody(t)
	if eb.Field != field || !strings.Contains(eb.Message, msg) {
		t.Fatalf("error %+v, want field %q with %q", eb, field, msg)
	}
}

// The generic handlers serve the new kinds: every verb, selectors,
// pagination, blocking queries and events.
func TestHTTPNetworkImageVolumeVerbs(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	events := openEvents(t, e.srv.URL, "?kind=network&kind=volume")

	n := e.createKind(t, "networks", "net1", netSpec, map[string]string{"env": "prod"})
	spec, err := resource.DecodeSpec[resource.NetworkSpec](n)
	if err != nil || spec.Gateway != "10.10.0.1" || !spec.DHCPOn() || spec.CIDR != "10.10.0.0/24" {
		t.Fatalf("network spec %+v, %v (defaults must be filled)", spec, err)
	}
	e.createKind(t, "networks", "net2", `{"cidr":"10.20.0.7/24","gateway":"10.20.0.254","dhcp":false,"mtu":9000,"reserved":[{"from":"10.20.0.2","to":"10.20.0.9"}]}`, nil)
	img := e.createKind(t, "images", "debian", `{"file":"debian.qcow2","sha256":"`+strings.Repeat("AB", 32)+`"}`, nil)
	if is, _ := resource.DecodeSpec[resource.ImageSpec](img); is.Format != "qcow2" || is.SHA256 != strings.Repeat("ab", 32) {
		t.Fatalf("image spec %+v", is)
	}
	v := e.createKind(t, "volumes", "v1", `{"size_mib":1024,"persistent":true}`, nil)
	if st, _ := resource.DecodeStatus[resource.VolumeStatus](v); st.Phase != resource.VolumePending {
		t.Fatalf("volume status %+v", st)
	}
	if loc := e.call(t, "POST", "/v1/volumes", `{"name":"v2","spec":`+volumeSpec+`}`).header.Get("Location"); loc != "/v1/volumes/v2" {
		t.Fatalf("Location = %q", loc)
	}

	// Get, list, selector, pagination.
	r := e.call(t, "GET", "/v1/networks/net1", nil)
	wantStatus(t, r, http.StatusOK)
	if got := r.object(t); !got.Equal(n) {
		t.Fatalf("GET = %+v", got)
	}
	var objs []*resource.Object
	r = e.call(t, "GET", "/v1/networks?selector=env%3Dprod", nil)
	wantStatus(t, r, http.StatusOK)
	if err := json.Unmarshal(r.body, &objs); err != nil || len(objs) != 1 || objs[0].Name != "net1" {
		t.Fatalf("selector list: %s", r.body)
	}
	r = e.call(t, "GET", "/v1/volumes?limit=1", nil)
	wantStatus(t, r, http.StatusOK)
	next := r.header.Get(resource.HeaderNext)
	if err := json.Unmarshal(r.body, &objs); err != nil || len(objs) != 1 || objs[0].Name != "v1" || next == "" {
		t.Fatalf("page 1: %s next %q", r.body, next)
	}
	r = e.call(t, "GET", "/v1/volumes?limit=1&next="+next, nil)
	if err := json.Unmarshal(r.body, &objs); err != nil || len(objs) != 1 || objs[0].Name != "v2" || r.header.Get(resource.HeaderNext) != "" {
		t.Fatalf("page 2: %s", r.body)
	}
	wantField(t, e.call(t, "GET", "/v1/networks?host=h1", nil), http.StatusBadRequest, "host", "only VMs")
	wantStatus(t, e.call(t, "GET", "/v1/images/nope", nil), http.StatusNotFound)

	// A blocking get wakes up on the update.
	ch := e.callAsync(t, "GET", "/v1/networks/net1?index="+r.header.Get(headerIndex)+"&wait=1m")
	recvWithin(t, e.blocked, 5*time.Second, "the blocking query to wait")
	up := e.call(t, "PUT", "/v1/networks/net1?cas="+itoa(n.ModifyIndex), `{"labels":{"env":"prod"},"spec":{"cidr":"10.10.0.0/24","mtu":1400}}`)
	wantStatus(t, up, http.StatusOK)
	got := recvWithin(t, ch, 5*time.Second, "the blocking query to answer")
	wantStatus(t, got, http.StatusOK)
	if o := got.object(t); !strings.Contains(string(o.Spec), `"mtu":1400`) {
		t.Fatalf("blocking get: %s", got.body)
	}
	// CAS mismatch on the old index.
	wantStatus(t, e.call(t, "PUT", "/v1/networks/net1?cas="+itoa(n.ModifyIndex), `{"spec":`+netSpec+`}`), http.StatusConflict)

	// Volume resize (grows), delete.
	wantStatus(t, e.call(t, "PUT", "/v1/volumes/v1", `{"spec":{"size_mib":2048,"persistent":true}}`), http.StatusOK)
	wantStatus(t, e.call(t, "DELETE", "/v1/volumes/v2", nil), http.StatusOK)
	wantStatus(t, e.call(t, "DELETE", "/v1/networks/net2", nil), http.StatusOK)

	// Events of the kinds asked for, in order.
	var seen []string
	for len(seen) < 7 {
		ev := events.next(t)
		if ev.Type == resource.EventHeartbeat {
			continue
		}
		seen = append(seen, string(ev.Kind)+"/"+ev.Name+"."+ev.Type)
	}
	want := "network/net1.created network/net2.created volume/v1.created volume/v2.created network/net1.updated volume/v1.updated volume/v2.deleted"
	if strings.Join(seen, " ") != want {
		t.Fatalf("events %v\nwant %s", seen, want)
	}
}

// Bad input is refused with a 400 that names the field, and nothing is
// written.
func TestHTTPNetworkImageVolumeBadInput(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.createKind(t, "networks", "net1", netSpec, nil)
	e.createKind(t, "images", "debian", imageSpec, nil)
	e.createKind(t, "volumes", "v1", volumeSpec, nil)
	// A worker published its image directory.
	e.b.applyDirect(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: "h1", ID: "id-h1",
		State: resource.HostReady, Capacity: resource.Resources{CPUs: 8, MemoryMiB: 8192}, ImageDir: "/srv/images"})
	before := e.digest()
	for _, tc := range []struct {
		name, method, path, body, field, msg string
	}{
		{"bad cidr", "POST", "/v1/networks", `{"name":"n2","spec":{"cidr":"10.0.0.0/33"}}`, "spec.cidr", "must be a prefix"},
		{"gateway outside", "POST", "/v1/networks", `{"name":"n2","spec":{"cidr":"10.0.0.0/24","gateway":"10.1.0.1"}}`, "spec.gateway", "outside the network"},
		{"bad mode", "POST", "/v1/networks", `{"name":"n2","spec":{"cidr":"10.0.0.0/24","mode":"vxlan"}}`, "spec.mode", "must be one of"},
		{"bridge without bridge", "POST", "/v1/networks", `{"name":"n2","spec":{"cidr":"10.0.0.0/24","mode":"bridge"}}`, "spec.bridge", "is required"},
		{"bad mtu", "POST", "/v1/networks", `{"name":"n2","spec":{"cidr":"10.0.0.0/24","mtu":10}}`, "spec.mtu", "between"},
		{"reserved outside", "POST", "/v1/networks", `{"name":"n2","spec":{"cidr":"10.0.0.0/24","reserved":[{"from":"10.9.0.1"}]}}`, "spec.reserved[0]", "not inside"},
		{"unknown field", "POST", "/v1/networks", `{"name":"n2","spec":{"cidr":"10.0.0.0/24","vlan":3}}`, "spec.vlan", ""},
		{"image without source", "POST", "/v1/images", `{"name":"i2","spec":{"format":"qcow2"}}`, "spec.file", "give a source"},
		{"image dotdot", "POST", "/v1/images", `{"name":"i2","spec":{"file":"../etc/shadow"}}`, "spec.file", `".."`},
		{"image outside image dir", "POST", "/v1/images", `{"name":"i2","spec":{"file":"/etc/shadow"}}`, "spec.file", "outside the image directory /srv/images of host h1"},
		{"image url without sha", "POST", "/v1/images", `{"name":"i2","spec":{"url":"https://example.com/d.qcow2"}}`, "spec.sha256", "required"},
		{"image bad sha", "POST", "/v1/images", `{"name":"i2","spec":{"file":"d.qcow2","sha256":"xyz"}}`, "spec.sha256", "64 hexadecimal"},
		{"image bad format", "POST", "/v1/images", `{"name":"i2","spec":{"file":"d.img","format":"vmdk"}}`, "spec.format", "qcow2 or raw"},
		{"image control char", "POST", "/v1/images", `{"name":"i2","spec":{"file":"d\u0007.img"}}`, "spec.file", ""},
		{"image immutable", "PUT", "/v1/images/debian", `{"spec":{"format":"raw","file":"debian.qcow2"}}`, "spec", "cannot be changed"},
		{"volume size 0", "POST", "/v1/volumes", `{"name":"v2","spec":{"size_mib":0}}`, "spec.size_mib", "at least 1 MiB"},
		{"volume bad image name", "POST", "/v1/volumes", `{"name":"v2","spec":{"size_mib":1,"image":"Bad_Name"}}`, "spec.image", ""},
		{"volume shrink", "PUT", "/v1/volumes/v1", `{"spec":{"size_mib":512}}`, "spec.size_mib", "cannot shrink"},
		{"vm bad nic ip", "POST", "/v1/vms", `{"name":"w","spec":{"cpus":1,"memory_mib":64,"nics":[{"network":"net1","ip":"nope"}]}}`, "spec.nics[0].ip", "address"},
		{"vm disk without size", "POST", "/v1/vms", `{"name":"w","spec":{"cpus":1,"memory_mib":64,"disks":[{"image":"debian"}]}}`, "spec.disks[0].size_mib", "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantField(t, e.call(t, tc.method, tc.path, tc.body), http.StatusBadRequest, tc.field, tc.msg)
		})
	}
	if e.digest() != before {
		t.Fatal("a refused request wrote")
	}
	// A name in the image directory, and an absolute path inside it, are fine.
	e.createKind(t, "images", "i3", `{"file":"/srv/images/sub/d.qcow2"}`, nil)
}

// Resource reports: checked, answered per item, and a node token reports
// for its own host only; node tokens read networks, images and volumes.
func TestHTTPResourceReports(t *testing.T) {
	e := newACLEnv(t, "n1")
	for _, h := range []string{"h1", "h2"} {
		e.b.applyDirect(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: h, ID: "id-" + h,
			State: resource.HostReady, Capacity: resource.Resources{CPUs: 8, MemoryMiB: 8192}})
	}
	m := e.mgmt.SecretID
	for _, c := range []struct{ plural, name, spec string }{{"networks", "net1", netSpec}, {"images", "debian", imageSpec}, {"volumes", "v1", volumeSpec}} {
		wantStatus(t, e.as(t, m, "POST", "/v1/"+c.plural, resource.CreateRequest{Name: c.name, Spec: json.RawMessage(c.spec)}), http.StatusCreated)
	}
	node := e.token(t, map[string]any{"type": "node", "node": "h1", "name": "worker-h1"}).SecretID
	for _, p := range []string{"/v1/networks/net1", "/v1/images/debian", "/v1/volumes/v1"} {
		wantStatus(t, e.as(t, node, "GET", p, nil), http.StatusOK)
	}
	for _, p := range []string{"/v1/networks", "/v1/images", "/v1/volumes"} {
		var objs []*resource.Object
		r := e.as(t, node, "GET", p, nil)
		wantStatus(t, r, http.StatusOK)
		if err := json.Unmarshal(r.body, &objs); err != nil || len(objs) != 1 {
			t.Fatalf("%s as the node token: %s", p, r.body)
		}
	}
	// Node tokens read, never write.
	before := e.digest()
	wantStatus(t, e.as(t, node, "POST", "/v1/networks", `{"name":"n9","spec":`+netSpec+`}`), http.StatusForbidden)
	wantStatus(t, e.as(t, node, "DELETE", "/v1/volumes/v1", nil), http.StatusForbidden)
	wantStatus(t, e.as(t, node, "PUT", "/v1/images/debian", `{"spec":`+imageSpec+`}`), http.StatusForbidden)

	rep := map[string]any{"resources": []map[string]any{
		{"kind": "network", "name": "net1", "state": "ready"},
		{"kind": "image", "name": "debian", "state": "failed", "reason": "sha256 mismatch"},
	}}
	wantCode(t, e.as(t, node, "POST", "/v1/hosts/h2/report", rep), http.StatusForbidden, resource.CodePermissionDenied, "only report for its own host h1")
	for _, tc := range []struct {
		name  string
		res   map[string]any
		field string
	}{
		{"bad kind", map[string]any{"kind": "vm", "name": "x", "state": "ready"}, "resources[0].kind"},
		{"bad name", map[string]any{"kind": "network", "name": "X_Y", "state": "ready"}, "resources[0].name"},
		{"bad state", map[string]any{"kind": "network", "name": "net1", "state": "fine"}, "resources[0].state"},
		{"size of a network", map[string]any{"kind": "network", "name": "net1", "state": "ready", "size_mib": 3}, "resources[0].size_mib"},
	} {
		wantField(t, e.as(t, node, "POST", "/v1/hosts/h1/report", map[string]any{"resources": []any{tc.res}}), http.StatusBadRequest, tc.field, "")
	}
	wantField(t, e.as(t, node, "POST", "/v1/hosts/h1/report", map[string]any{}), http.StatusBadRequest, "reports", "is empty")
	if e.digest() != before {
		t.Fatal("a refused request wrote")
	}

	r := e.as(t, node, "POST", "/v1/hosts/h1/report", rep)
	wantStatus(t, r, http.StatusOK)
	var out resource.ReportResponse
	if err := json.Unmarshal(r.body, &out); err != nil || len(out.ResourceResults) != 2 ||
		out.ResourceResults[0].Kind != resource.KindNetwork || out.ResourceResults[0].Name != "net1" ||
		out.ResourceResults[1].Name != "debian" {
		t.Fatalf("report answer: %s", r.body)
	}
	if out.ResourceResults[0].Error != nil || out.ResourceResults[1].Error != nil {
		t.Fatalf("report answer: %s", r.body)
	}
	o, _ := e.b.f.State().Get(nil, resource.KindImage, "debian")
	if st, _ := resource.DecodeStatus[resource.ImageStatus](o); st.Hosts["h1"].State != resource.HostResourceFailed || st.Hosts["h1"].Reason != "sha256 mismatch" {
		t.Fatalf("image status after the report: %s", o.Status)
	}
	// An unknown object is an error of its item, never of the report.
	r = e.as(t, node, "POST", "/v1/hosts/h1/report", map[string]any{"resources": []map[string]any{
		{"kind": "network", "name": "gone", "state": "removed"},
		{"kind": "network", "name": "net1", "state": "ready"},
	}})
	wantStatus(t, r, http.StatusOK)
	out = resource.ReportResponse{}
	if err := json.Unmarshal(r.body, &out); err != nil || len(out.ResourceResults) != 2 || out.ResourceResults[0].Error == nil ||
		out.ResourceResults[0].Error.Code != resource.CodeNotFound || out.ResourceResults[1].Error != nil {
		t.Fatalf("report answer: %s", r.body)
	}
}

// A network, image or volume in use cannot be deleted (409, naming the
// user), and nothing is written.
func TestHTTPInUse(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.createKind(t, "networks", "net1", netSpec, nil)
	e.createKind(t, "images", "debian", imageSpec, nil)
	e.createKind(t, "volumes", "v1", `{"size_mib":64,"persistent":true}`, nil)
	vm := e.createKind(t, "vms", "web", `{"cpus":1,"memory_mib":64,"power":"stopped","nics":[{"network":"net1"}],"disks":[{"volume":"v1"},{"image":"debian","size_mib":128}]}`, nil)
	spec, _ := resource.DecodeSpec[resource.VMSpec](vm)
	if len(spec.NICs) != 1 || spec.NICs[0].IP == "" || spec.NICs[0].MAC == "" || spec.Disks[1].Volume != "web-disk1" {
		t.Fatalf("vm spec %s: want an address, a MAC and a disk volume", vm.Spec)
	}
	before := e.digest()
	wantCode(t, e.call(t, "DELETE", "/v1/networks/net1", nil), http.StatusConflict, resource.CodeConflict, "web")
	wantCode(t, e.call(t, "DELETE", "/v1/volumes/v1", nil), http.StatusConflict, resource.CodeConflict, "web")
	wantStatus(t, e.call(t, "DELETE", "/v1/images/debian", nil), http.StatusConflict)
	wantField(t, e.call(t, "POST", "/v1/vms", `{"name":"w2","spec":{"cpus":1,"memory_mib":64,"disks":[{"volume":"nope"}]}}`), http.StatusBadRequest, "spec.disks[0].volume", "")
	if e.digest() != before {
		t.Fatal("a refused request wrote")
	}
	wantStatus(t, e.call(t, "DELETE", "/v1/vms/web", nil), http.StatusOK)
	wantStatus(t, e.call(t, "DELETE", "/v1/networks/net1", nil), http.StatusOK)
	wantStatus(t, e.call(t, "DELETE", "/v1/volumes/v1", nil), http.StatusOK)
	wantStatus(t, e.call(t, "DELETE", "/v1/images/debian", nil), http.StatusOK)
}

// While some controller speaks a protocol older than 7, a report's VM
// reports are still recorded; its resource reports each answer
// upgrade_required, and creates of the new kinds are refused (409).
func TestHTTPResourceReportsBeforeProtocol7(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{})
	e.b.applyDirect(t, fsm.HostStateRequestType, &fsm.HostStateRequest{Time: time.Now().UTC(), Name: "h1", ID: "id-h1",
		State: resource.HostReady, Capacity: resource.Resources{CPUs: 8, MemoryMiB: 8192}})
	e.mustCreate(t, "vms", "web")
	e.b.applyDirect(t, fsm.PlaceRequestType, &fsm.PlaceRequest{Time: time.Now().UTC(), Placements: []fsm.Placement{{VM: "web", Host: "h1"}}})
	vm, _ := e.b.f.State().Get(nil, resource.KindVM, "web")
	_, st := resource.VMStateOf(vm)
	e.b.set(func(b *httpTestBackend) { b.protocol = 6 })

	wantCode(t, e.call(t, "POST", "/v1/networks", `{"name":"net1","spec":`+netSpec+`}`), http.StatusConflict, resource.CodeUpgradeRequired, "protocol 7")
	r := e.call(t, "POST", "/v1/hosts/h1/report", map[string]any{
		"reports":   []map[string]any{{"vm": "web", "epoch": st.Epoch, "phase": "running"}},
		"resources": []map[string]any{{"kind": "network", "name": "net1", "state": "ready"}},
	})
	wantStatus(t, r, http.StatusOK)
	var out resource.ReportResponse
	if err := json.Unmarshal(r.body, &out); err != nil || len(out.Results) != 1 || out.Results[0].Error != nil ||
		len(out.ResourceResults) != 1 || out.ResourceResults[0].Error == nil || out.ResourceResults[0].Error.Code != resource.CodeUpgradeRequired {
		t.Fatalf("report answer: %s", r.body)
	}
	vm, _ = e.b.f.State().Get(nil, resource.KindVM, "web")
	if _, st := resource.VMStateOf(vm); st.Phase != resource.PhaseRunning {
		t.Fatalf("the VM report was not recorded: %s", vm.Status)
	}
	// Resources alone: the whole report is refused.
	wantCode(t, e.call(t, "POST", "/v1/hosts/h1/report", map[string]any{
		"resources": []map[string]any{{"kind": "network", "name": "net1", "state": "ready"}},
	}), http.StatusConflict, resource.CodeUpgradeRequired, "")
}

// ACL rules name the new kinds like any other, selectors included.
func TestACLRulesOnNewKinds(t *testing.T) {
	e := newACLEnv(t, "n1")
	m := e.mgmt.SecretID
	for _, c := range []struct{ plural, name, spec, team string }{
		{"networks", "net1", netSpec, "a"}, {"volumes", "va", volumeSpec, "a"}, {"volumes", "vb", volumeSpec, "b"}, {"images", "debian", imageSpec, "a"},
	} {
		wantStatus(t, e.as(t, m, "POST", "/v1/"+c.plural, resource.CreateRequest{Name: c.name, Labels: map[string]string{"team": c.team}, Spec: json.RawMessage(c.spec)}), http.StatusCreated)
	}
	e.policy(t, "team-a", "network:read", "volume:write:team=a")
	tok := e.token(t, map[string]any{"policies": []string{"team-a"}}).SecretID
	wantStatus(t, e.as(t, tok, "GET", "/v1/networks/net1", nil), http.StatusOK)
	wantCode(t, e.as(t, tok, "DELETE", "/v1/networks/net1", nil), http.StatusForbidden, resource.CodePermissionDenied, "needs network:write")
	wantCode(t, e.as(t, tok, "GET", "/v1/images/debian", nil), http.StatusForbidden, resource.CodePermissionDenied, "needs image:read")
	wantStatus(t, e.as(t, tok, "PUT", "/v1/volumes/va", `{"labels":{"team":"a"},"spec":{"size_mib":2048}}`), http.StatusOK)
	wantStatus(t, e.as(t, tok, "PUT", "/v1/volumes/vb", `{"labels":{"team":"b"},"spec":{"size_mib":2048}}`), http.StatusForbidden)
	var objs []*resource.Object
	r := e.as(t, tok, "GET", "/v1/volumes", nil)
	wantStatus(t, r, http.StatusOK)
	if err := json.Unmarshal(r.body, &objs); err != nil || len(objs) != 1 || objs[0].Name != "va" {
		t.Fatalf("volumes visible to team a: %s", r.body)
	}
	wantStatus(t, e.as(t, tok, "POST", "/v1/volumes", `{"name":"vc","labels":{"team":"a"},"spec":`+volumeSpec+`}`), http.StatusCreated)
	wantStatus(t, e.as(t, tok, "POST", "/v1/volumes", `{"name":"vd","labels":{"team":"b"},"spec":`+volumeSpec+`}`), http.StatusForbidden)
}
