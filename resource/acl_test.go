package resource

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseACLRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ACLRule
		err  string
	}{
		{in: "vm:read", want: ACLRule{Kind: KindVM, Access: AccessRead}},
		{in: " vm : write : team=web ", want: ACLRule{Kind: KindVM, Access: AccessWrite, Selector: "team=web"}},
		{in: "vm:write:team=web,env!=prod", want: ACLRule{Kind: KindVM, Access: AccessWrite, Selector: "team=web,env!=prod"}},
		{in: "cluster:admin", want: ACLRule{Kind: KindCluster, Access: AccessAdmin}},
		{in: "acl:read", want: ACLRule{Kind: KindACL, Access: AccessRead}},
		{in: "policy:write", want: ACLRule{Kind: KindPolicy, Access: AccessWrite}},
		{in: "host:power", want: ACLRule{Kind: KindHost, Access: AccessPower}},
		{in: "vm", err: "KIND:ACCESS"},
		{in: "", err: "KIND:ACCESS"},
		{in: "*:read", err: "unknown kind"},
		{in: "vms:read", err: "unknown kind"},
		{in: "vm:all", err: "unknown access"},
		{in: "vm:read:=x", err: "selector"},
	} {
		got, err := ParseACLRule(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseACLRule(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseACLRule(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if back, err := ParseACLRule(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q: %+v, %v", got.String(), back, err)
		}
	}
}

func FuzzParseACLRule(f *testing.F) {
	for _, s := range []string{"vm:read", "vm:write:team=web", "cluster:admin", "a:b:c:d", "::", "vm:read:!x,y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseACLRule(s)
		if err != nil {
			return
		}
		back, err := ParseACLRule(r.String())
		if err != nil || back != r {
			t.Fatalf("%q parsed to %+v, whose String %q parses to %+v, %v", s, r, r.String(), back, err)
		}
	})
}

func client(name string, pols ...*ACLPolicy) *ACLIdentity {
	tok := &ACLToken{AccessorID: "acc-" + name, Name: name, Type: TokenClient}
	for _, p := range pols {
		tok.Policies = append(tok.Policies, p.Name)
	}
	return &ACLIdentity{Token: tok, Policies: pols}
}

func pol(name string, rules ...string) *ACLPolicy {
	p := &ACLPolicy{Name: name}
	for _, s := range rules {
		r, err := ParseACLRule(s)
		if err != nil {
			panic(err)
		}
		p.Rules = append(p.Rules, r)
	}
	return p
}

func TestACLAllow(t *testing.T) {
	web := map[string]string{"team": "web"}
	db := map[string]string{"team": "db"}
	readers := client("ci", pol("readers", "vm:read", "host:read"))
	webOps := client("web", pol("web-ops", "vm:write:team=web", "vm:read"))
	powerer := client("pow", pol("p", "vm:power"))
	mgmt := &ACLIdentity{Token: &ACLToken{AccessorID: "m", Type: TokenManagement}}
	node := &ACLIdentity{Token: &ACLToken{AccessorID: "n", Name: "w1", Type: TokenNode, Node: "h1"}}
	for _, tc := range []struct {
		name   string
		id     *ACLIdentity
		kind   Kind
		access string
		obj    string
		labels map[string]string
		ok     bool
	}{
		{"management", mgmt, KindCluster, AccessAdmin, "", nil, true},
		{"management object", mgmt, KindVM, AccessWrite, "x", db, true},
		{"anonymous", nil, KindVM, AccessRead, "", nil, false},
		{"no token", &ACLIdentity{}, KindVM, AccessRead, "", nil, false},
		{"read", readers, KindVM, AccessRead, "web-1", web, true},
		{"read kind", readers, KindVM, AccessRead, "", nil, true},
		{"read is not write", readers, KindVM, AccessWrite, "web-1", web, false},
		{"read is not power", readers, KindVM, AccessPower, "web-1", web, false},
		{"other kind", readers, KindPolicy, AccessRead, "", nil, false},
		{"selector match", webOps, KindVM, AccessWrite, "web-1", web, true},
		{"selector miss", webOps, KindVM, AccessWrite, "db-1", db, false},
		{"selector no labels", webOps, KindVM, AccessWrite, "x", nil, false},
		{"selector is not kind-wide", webOps, KindVM, AccessWrite, "", nil, false},
		{"write includes power", webOps, KindVM, AccessPower, "web-1", web, true},
		{"write is not admin", webOps, KindVM, AccessAdmin, "web-1", web, false},
		{"power includes read", powerer, KindVM, AccessRead, "a", nil, true},
		{"power is not write", powerer, KindVM, AccessWrite, "a", nil, false},
		{"node gets nothing by Allow", node, KindVM, AccessRead, "a", nil, false},
	} {
		err := tc.id.Allow(tc.kind, tc.access, tc.obj, tc.labels)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Allow(%s, %s, %q, %v) = %v; want ok=%v", tc.name, tc.kind, tc.access, tc.obj, tc.labels, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("%s: %v does not wrap ErrPermissionDenied", tc.name, err)
		}
	}
}

func TestACLDeniedMessage(t *testing.T) {
	id := client("ci", pol("readers", "vm:read"))
	id.Token.Policies = append(id.Token.Policies, "gone")
	err := id.Allow(KindVM, AccessWrite, "web-1", nil)
	want := `token "ci" may not write vm "web-1": needs vm:write (policies: readers; missing: gone)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v; want it to contain %s", err, want)
	}
	web := client("web", pol("web-ops", "vm:write:team=web"))
	err = web.Allow(KindVM, AccessWrite, "db-1", map[string]string{"team": "db"})
	if err == nil || !strings.Contains(err.Error(), "with a selector that its labels match") {
		t.Fatalf("selector miss: %v", err)
	}
	err = (&ACLIdentity{}).Allow(KindCluster, AccessRead, "", nil)
	if err == nil || !strings.Contains(err.Error(), "needs cluster:read") {
		t.Fatalf("no token: %v", err)
	}
}

func TestACLNodeToken(t *testing.T) {
	node := &ACLIdentity{Token: &ACLToken{AccessorID: "n", Type: TokenNode, Node: "h1"}}
	vm := func(name, host string) *Object {
		st, _ := json.Marshal(VMStatus{Host: host})
		return &Object{Kind: KindVM, Name: name, Status: st}
	}
	host := func(name string) *Object { return &Object{Kind: KindHost, Name: name} }
	for _, tc := range []struct {
		o      *Object
		access string
		ok     bool
	}{
		{host("h1"), AccessRead, true},
		{host("h2"), AccessRead, false},
		{host("h1"), AccessWrite, false},
		{vm("a", "h1"), AccessRead, true},
		{vm("b", "h2"), AccessRead, false},
		{vm("c", ""), AccessRead, false},
		{vm("a", "h1"), AccessPower, false},
		{&Object{Kind: KindPolicy, Name: "p"}, AccessRead, false},
	} {
		if err := node.AllowObject(tc.o, tc.access); (err == nil) != tc.ok {
			t.Errorf("AllowObject(%s, %s) = %v; want ok=%v", tc.o, tc.access, err, tc.ok)
		}
	}
	if err := node.AllowReport("h1", nil); err != nil {
		t.Errorf("own report: %v", err)
	}
	if err := node.AllowReport("h2", nil); err == nil || !strings.Contains(err.Error(), "only report for its own host h1") {
		t.Errorf("other report: %v", err)
	}
	if err := node.AllowSome(KindVM, AccessRead); err != nil {
		t.Errorf("AllowSome vm: %v", err)
	}
	if err := node.AllowSome(KindPolicy, AccessRead); err == nil {
		t.Error("AllowSome policy allowed")
	}
	admin := client("a", pol("hosts", "host:admin"))
	if err := admin.AllowReport("h2", nil); err != nil {
		t.Errorf("host:admin report: %v", err)
	}
	if err := client("w", pol("hw", "host:write")).AllowReport("h2", nil); err == nil {
		t.Error("host:write may report")
	}
}

func TestACLTokenValidate(t *testing.T) {
	for _, tc := range []struct {
		tok ACLToken
		err string
	}{
		{ACLToken{Type: TokenManagement}, ""},
		{ACLToken{Type: TokenManagement, Policies: []string{"a"}}, "no policies"},
		{ACLToken{Type: TokenClient, Policies: []string{"a"}}, ""},
		{ACLToken{Type: TokenClient}, "at least one policy"},
		{ACLToken{Type: TokenClient, Policies: []string{"a"}, Node: "h"}, "only node tokens"},
		{ACLToken{Type: TokenNode, Node: "h1"}, ""},
		{ACLToken{Type: TokenNode}, "needs the host"},
		{ACLToken{Type: TokenNode, Node: "h1", Policies: []string{"a"}}, "no policies"},
		{ACLToken{Type: "root"}, "unknown token type"},
	} {
		err := tc.tok.Validate()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: %v; want %q", tc.tok, err, tc.err)
		}
	}
	p := pol("p", "vm:read")
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	p.Rules = append(p.Rules, ACLRule{Kind: "zz", Access: "read"})
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "rules[1].kind") {
		t.Errorf("bad rule: %v", err)
	}
}

func TestACLSecrets(t *testing.T) {
	a, b := NewACLSecret(), NewACLSecret()
	if a == b || len(a) != 36 {
		t.Fatalf("secrets %q %q", a, b)
	}
	if h := HashACLSecret(a); len(h) != 64 || h == HashACLSecret(b) || h != HashACLSecret(a) {
		t.Fatalf("hash %q", h)
	}
}

func TestACLAllowEvent(t *testing.T) {
	vmOnly := client("v", pol("v", "vm:read:team=web"))
	web := &Object{Kind: KindVM, Name: "a", Labels: map[string]string{"team": "web"}}
	db := &Object{Kind: KindVM, Name: "b", Labels: map[string]string{"team": "db"}}
	for _, tc := range []struct {
		ev Event
		ok bool
	}{
		{Event{Type: EventCreated, Kind: KindVM, Name: "a", Object: web}, true},
		{Event{Type: EventDeleted, Kind: KindVM, Name: "b", Object: db}, false},
		{Event{Type: EventCreated, Kind: KindHost, Name: "h", Object: &Object{Kind: KindHost, Name: "h"}}, false},
		{Event{Type: EventCreated, Kind: EventKindACLToken, Name: "x"}, false},
		{Event{Type: EventHeartbeat, Index: 3}, true},
		{Event{Type: EventReset, Index: 3}, true},
	} {
		if err := vmOnly.AllowEvent(&tc.ev); (err == nil) != tc.ok {
			t.Errorf("AllowEvent(%+v) = %v; want ok=%v", tc.ev, err, tc.ok)
		}
	}
	if err := client("a", pol("a", "acl:read")).AllowEvent(&Event{Type: EventCreated, Kind: EventKindACLPolicy, Name: "p"}); err != nil {
		t.Errorf("acl:read and an ACL event: %v", err)
	}
}

func TestACLProjectScope(t *testing.T) {
	p1 := client("p1", pol("p1-ops", "vm:write:project=p1", "volume:read:project=default"))
	for _, tc := range []struct {
		name string
		kind Kind
		spec string
		lbl  map[string]string
		acc  string
		ok   bool
	}{
		{"in p1", KindVM, `{"cpus":1,"project":"p1"}`, nil, AccessWrite, true},
		{"in p2", KindVM, `{"cpus":1,"project":"p2"}`, nil, AccessWrite, false},
		{"default", KindVM, `{"cpus":1}`, nil, AccessWrite, false},
		{"label does not count", KindVM, `{"cpus":1,"project":"p2"}`, map[string]string{"project": "p1"}, AccessWrite, false},
		{"volume in default", KindVolume, `{"size_mib":1}`, nil, AccessRead, true},
		{"volume in p1", KindVolume, `{"size_mib":1,"project":"p1"}`, nil, AccessRead, false},
	} {
		o := &Object{Kind: tc.kind, Name: "x", Labels: tc.lbl, Spec: []byte(tc.spec)}
		if err := p1.AllowObject(o, tc.acc); (err == nil) != tc.ok {
			t.Errorf("%s: AllowObject = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if l := ACLLabels(KindProject, "p1", map[string]string{"a": "b"}, nil); l["project"] != "p1" || l["a"] != "b" {
		t.Errorf("project labels %v", l)
	}
	if l := ACLLabels(KindHost, "h", map[string]string{"project": "x"}, []byte(`{"project":"y"}`)); l["project"] != "x" {
		t.Errorf("host labels %v: only VMs, volumes and projects have a project", l)
	}
}
