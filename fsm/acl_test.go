package fsm_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

func aclPolicyReq(name string, rules ...string) *fsm.ACLPolicyUpsertRequest {
	p := resource.ACLPolicy{Name: name}
	for _, s := range rules {
		r, err := resource.ParseACLRule(s)
		if err != nil {
			panic(err)
		}
		p.Rules = append(p.Rules, r)
	}
	return &fsm.ACLPolicyUpsertRequest{Time: fsm.TestTime, Policy: p}
}

func TestACLBootstrapOnce(t *testing.T) {
	f := fsm.TestFSM(t)
	if f.State().ACLBootstrapped(nil) {
		t.Fatal("bootstrapped from the start")
	}
	secret := resource.NewACLSecret()
	fsm.TestMustApply(t, f, 1, fsm.ACLBootstrapRequestType, &fsm.ACLBootstrapRequest{
		Time: fsm.TestTime, AccessorID: "acc-1", SecretHash: resource.HashACLSecret(secret), Name: "Bootstrap Token"})
	if !f.State().ACLBootstrapped(nil) {
		t.Fatal("not bootstrapped")
	}
	e := f.State().ACLTokenBySecret(secret)
	if e == nil || e.AccessorID != "acc-1" || e.Type != resource.TokenManagement || e.CreateIndex != 1 || e.SecretID != "" {
		t.Fatalf("token by secret: %+v", e)
	}
	if f.State().ACLTokenBySecret("other") != nil || f.State().ACLTokenBySecret(resource.HashACLSecret(secret)) != nil {
		t.Fatal("found a token by a wrong secret (or by the hash itself)")
	}
	res := fsm.TestApply(t, f, 2, fsm.ACLBootstrapRequestType, &fsm.ACLBootstrapRequest{
		Time: fsm.TestTime, AccessorID: "acc-2", SecretHash: resource.HashACLSecret("x")})
	if !errors.Is(res.Err, fsm.ErrACLBootstrapped) || !strings.Contains(res.Err.Error(), "already bootstrapped") {
		t.Fatalf("second bootstrap: %v", res.Err)
	}
	if len(f.State().ACLTokens(nil)) != 1 {
		t.Fatal("second bootstrap stored a token")
	}
	// Deleting the management token does not allow a new bootstrap.
	fsm.TestMustApply(t, f, 3, fsm.ACLTokenDeleteRequestType, &fsm.ACLTokenDeleteRequest{Time: fsm.TestTime, AccessorID: "acc-1"})
	if res := fsm.TestApply(t, f, 4, fsm.ACLBootstrapRequestType, &fsm.ACLBootstrapRequest{
		Time: fsm.TestTime, AccessorID: "acc-3", SecretHash: resource.HashACLSecret("y")}); !errors.Is(res.Err, fsm.ErrACLBootstrapped) {
		t.Fatalf("bootstrap after deleting the token: %v", res.Err)
	}
}

func TestACLTokensAndPolicies(t *testing.T) {
	f := fsm.TestFSM(t)
	fsm.TestMustApply(t, f, 1, fsm.ACLPolicyUpsertRequestType, aclPolicyReq("readers", "vm:read"))
	// Unknown policy, duplicate secret, duplicate accessor, bad types.
	for _, tc := range []struct {
		req  *fsm.ACLTokenCreateRequest
		want error
	}{
		{&fsm.ACLTokenCreateRequest{Time: fsm.TestTime, SecretHash: resource.HashACLSecret("a"),
			Token: resource.ACLToken{AccessorID: "x", Type: resource.TokenClient, Policies: []string{"nope"}}}, resource.ErrInvalid},
		{&fsm.ACLTokenCreateRequest{Time: fsm.TestTime, SecretHash: "short",
			Token: resource.ACLToken{AccessorID: "x", Type: resource.TokenClient, Policies: []string{"readers"}}}, resource.ErrInvalid},
		{&fsm.ACLTokenCreateRequest{Time: fsm.TestTime, SecretHash: resource.HashACLSecret("a"),
			Token: resource.ACLToken{Type: resource.TokenClient, Policies: []string{"readers"}}}, resource.ErrInvalid},
		{&fsm.ACLTokenCreateRequest{Time: fsm.TestTime, SecretHash: resource.HashACLSecret("a"),
			Token: resource.ACLToken{AccessorID: "x", Type: resource.TokenNode}}, resource.ErrInvalid},
	} {
		if res := fsm.TestApply(t, f, 2, fsm.ACLTokenCreateRequestType, tc.req); !errors.Is(res.Err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.req, res.Err, tc.want)
		}
	}
	fsm.TestMustApply(t, f, 2, fsm.ACLTokenCreateRequestType, &fsm.ACLTokenCreateRequest{Time: fsm.TestTime,
		SecretHash: resource.HashACLSecret("ci"), Token: resource.ACLToken{AccessorID: "ci", Name: "ci", Type: resource.TokenClient, Policies: []string{"readers"}}})
	for _, tok := range []resource.ACLToken{
		{AccessorID: "ci", Type: resource.TokenManagement},  // same accessor
		{AccessorID: "ci2", Type: resource.TokenManagement}, // same secret
	} {
		res := fsm.TestApply(t, f, 3, fsm.ACLTokenCreateRequestType, &fsm.ACLTokenCreateRequest{Time: fsm.TestTime, SecretHash: resource.HashACLSecret("ci"), Token: tok})
		if !errors.Is(res.Err, fsm.ErrExists) {
			t.Errorf("duplicate %+v: %v", tok, res.Err)
		}
	}
	e := f.State().ACLTokenBySecret("ci")
	if id := f.State().ACLIdentity(e); len(id.Policies) != 1 || id.Allow(resource.KindVM, resource.AccessRead, "", nil) != nil {
		t.Fatalf("identity %+v", id)
	}
	// Deleting a policy a token names is allowed: the token keeps the
	// name and loses the rules, until the policy exists again.
	fsm.TestMustApply(t, f, 3, fsm.ACLPolicyDeleteRequestType, &fsm.ACLPolicyDeleteRequest{Time: fsm.TestTime, Name: "readers"})
	id := f.State().ACLIdentity(f.State().ACLTokenBySecret("ci"))
	err := id.Allow(resource.KindVM, resource.AccessRead, "", nil)
	if len(id.Token.Policies) != 1 || err == nil || !strings.Contains(err.Error(), "missing: readers") {
		t.Fatalf("after deleting the policy: %+v, %v", id, err)
	}
	fsm.TestMustApply(t, f, 4, fsm.ACLPolicyUpsertRequestType, aclPolicyReq("readers", "vm:read"))
	if err := f.State().ACLIdentity(f.State().ACLTokenBySecret("ci")).Allow(resource.KindVM, resource.AccessRead, "", nil); err != nil {
		t.Fatalf("after re-creating the policy: %v", err)
	}
	// Policy create and CAS.
	if res := fsm.TestApply(t, f, 5, fsm.ACLPolicyUpsertRequestType, &fsm.ACLPolicyUpsertRequest{Time: fsm.TestTime, Create: true, Policy: aclPolicyReq("readers", "vm:read").Policy}); !errors.Is(res.Err, fsm.ErrExists) {
		t.Errorf("create of an existing policy: %v", res.Err)
	}
	up := aclPolicyReq("readers", "vm:write")
	up.CAS = 3
	if res := fsm.TestApply(t, f, 5, fsm.ACLPolicyUpsertRequestType, up); !errors.Is(res.Err, fsm.ErrCASMismatch) {
		t.Errorf("stale CAS: %v", res.Err)
	}
	up.CAS = 4
	fsm.TestMustApply(t, f, 5, fsm.ACLPolicyUpsertRequestType, up)
	if p := f.State().ACLPolicy(nil, "readers"); p.CreateIndex != 4 || p.ModifyIndex != 5 || p.Rules[0].Access != resource.AccessWrite {
		t.Errorf("policy after update: %+v", p)
	}
	fsm.TestMustApply(t, f, 6, fsm.ACLTokenDeleteRequestType, &fsm.ACLTokenDeleteRequest{Time: fsm.TestTime, AccessorID: "ci"})
	if f.State().ACLTokenBySecret("ci") != nil || f.State().ACLToken(nil, "ci") != nil {
		t.Fatal("deleted token still found")
	}
	if res := fsm.TestApply(t, f, 7, fsm.ACLTokenDeleteRequestType, &fsm.ACLTokenDeleteRequest{Time: fsm.TestTime, AccessorID: "ci"}); !errors.Is(res.Err, fsm.ErrNotFound) {
		t.Errorf("delete of a missing token: %v", res.Err)
	}
	var evs []string
	all, _, _, _ := f.Events().Since(0, 0)
	for _, ev := range all {
		if ev.Object != nil {
			t.Errorf("ACL event with an object: %+v", ev)
		}
		evs = append(evs, ev.Type+" "+string(ev.Kind)+"/"+ev.Name)
	}
	want := "created acl_policy/readers,created acl_token/ci,deleted acl_policy/readers,created acl_policy/readers,updated acl_policy/readers,deleted acl_token/ci"
	if strings.Join(evs, ",") != want {
		t.Errorf("events %v\nwant %s", evs, want)
	}
}

func TestACLSnapshotRoundTrip(t *testing.T) {
	f := fsm.TestFSM(t)
	seed(t, f)
	fsm.TestMustApply(t, f, 4, fsm.ACLBootstrapRequestType, &fsm.ACLBootstrapRequest{Time: fsm.TestTime, AccessorID: "m", SecretHash: resource.HashACLSecret("m")})
	fsm.TestMustApply(t, f, 5, fsm.ACLPolicyUpsertRequestType, aclPolicyReq("p", "vm:write:app=web", "cluster:read"))
	fsm.TestMustApply(t, f, 6, fsm.ACLTokenCreateRequestType, &fsm.ACLTokenCreateRequest{Time: fsm.TestTime, SecretHash: resource.HashACLSecret("c"),
		Token: resource.ACLToken{AccessorID: "c", Type: resource.TokenClient, Policies: []string{"p"}}})
	data := fsm.TestPersist(t, f)
	if !strings.HasPrefix(string(data), `{"version":3,`) {
		t.Fatalf("snapshot with ACLs is not version 3: %.40s", data)
	}
	if strings.Contains(string(data), `"secret_id"`) {
		t.Fatal("snapshot holds a secret")
	}
	r := fsm.TestRestore(t, data)
	if r.State().Digest() != f.State().Digest() || !r.State().ACLBootstrapped(nil) {
		t.Fatal("restored state differs")
	}
	if e := r.State().ACLTokenBySecret("c"); e == nil || e.AccessorID != "c" || r.State().ACLPolicy(nil, "p") == nil {
		t.Fatalf("restored token %+v", e)
	}
}

func TestAccessorStamps(t *testing.T) {
	f := fsm.TestFSM(t)
	seed(t, f) // vm/a@1, vm/b@2, host/h1@3
	apply := func(index uint64, acc string, mt fsm.MessageType, req any) *fsm.Result {
		t.Helper()
		wt, wreq, err := fsm.WithAccessor(acc, mt, req)
		if err != nil {
			t.Fatal(err)
		}
		if acc != "" && wt != fsm.AccessorRequestType {
			t.Fatalf("WithAccessor gave %s", wt)
		}
		return fsm.TestMustApply(t, f, index, wt, wreq)
	}
	apply(4, "acc-1", fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Labels: map[string]string{"x": "y"}, Spec: raw(vmSpec2)})
	o, _ := f.State().Get(nil, vm, "a")
	if o.ModifiedBy != "acc-1" {
		t.Fatalf("modified_by %q", o.ModifiedBy)
	}
	// The controllers' own writes keep it.
	fsm.TestMustApply(t, f, 5, fsm.UpdateRequestType, &fsm.UpdateRequest{Kind: vm, Name: "a", Spec: raw(vmSpec1)})
	if o, _ := f.State().Get(nil, vm, "a"); o.ModifiedBy != "acc-1" || o.ModifyIndex != 5 {
		t.Fatalf("after a system write: %+v", o)
	}
	// A batch with an accessor: every object and event.
	apply(6, "acc-2", fsm.BatchRequestType, batchOf(t,
		fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "b"},
		fsm.CreateRequestType, createReq(vm, "c", "id-c", nil, vmSpec1)))
	if o, _ := f.State().Get(nil, vm, "c"); o.ModifiedBy != "acc-2" {
		t.Fatalf("batch create: %+v", o)
	}
	evs := eventsAt(t, f, 6)
	if len(evs) != 2 || evs[0].Accessor != "acc-2" || evs[1].Accessor != "acc-2" {
		t.Fatalf("batch events %+v", evs)
	}
	if evs := eventsAt(t, f, 5); len(evs) == 0 || evs[0].Accessor != "" {
		t.Fatalf("system write's events %+v", evs)
	}
	// Nested envelopes are refused; a long accessor too.
	nested := &fsm.AccessorRequest{Accessor: "a", Type: fsm.AccessorRequestType, Payload: raw(`{"accessor":"b","type":3,"payload":{}}`)}
	if res := fsm.TestApply(t, f, 7, fsm.AccessorRequestType, nested); !errors.Is(res.Err, fsm.ErrBadPayload) {
		t.Fatalf("nested: %v", res.Err)
	}
	wt, long, _ := fsm.WithAccessor(strings.Repeat("x", 65), fsm.DeleteRequestType, &fsm.DeleteRequest{Kind: vm, Name: "c"})
	if res := fsm.TestApply(t, f, 7, wt, long); !errors.Is(res.Err, resource.ErrInvalid) {
		t.Fatalf("long accessor: %v", res.Err)
	}
}

func TestACLProtocolGating(t *testing.T) {
	for _, mt := range []fsm.MessageType{fsm.ACLBootstrapRequestType, fsm.ACLPolicyUpsertRequestType, fsm.ACLPolicyDeleteRequestType,
		fsm.ACLTokenCreateRequestType, fsm.ACLTokenDeleteRequestType, fsm.AccessorRequestType} {
		if p := fsm.MinProtocol(mt); p != 6 {
			t.Errorf("%s: protocol %d", mt, p)
		}
	}
	wt, req, _ := fsm.WithAccessor("a", fsm.CreateRequestType, &fsm.CreateRequest{})
	if p := fsm.RequiredProtocol(wt, req); p != 6 {
		t.Errorf("envelope: %d", p)
	}
	// A protocol 5 node does not know the ACL commands: it halts, as a
	// build of protocol 5 would (the leader never proposes them to it).
	old := fsm.New(fsm.Config{MaxProtocol: 5})
	data, err := fsm.Encode(fsm.ACLBootstrapRequestType, &fsm.ACLBootstrapRequest{Time: fsm.TestTime, AccessorID: "a", SecretHash: resource.HashACLSecret("s")})
	if err != nil {
		t.Fatal(err)
	}
	res := fsm.TestApplyLog(t, old, &raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: data})
	if !errors.Is(res.Err, fsm.ErrHalted) || !strings.Contains(res.Err.Error(), "needs log protocol 6") {
		t.Fatalf("protocol 5 node: %v", res.Err)
	}
}

func TestAccessorMetricType(t *testing.T) {
	f := fsm.TestFSM(t)
	var got []fsm.MessageType
	f.OnApply = func(mt fsm.MessageType, _ time.Duration, _ error) { got = append(got, mt) }
	wt, req, _ := fsm.WithAccessor("a", fsm.CreateRequestType, createReq(vm, "x", "id-x", nil, vmSpec1))
	fsm.TestMustApply(t, f, 1, wt, req)
	if len(got) != 1 || got[0] != fsm.CreateRequestType {
		t.Fatalf("OnApply saw %v, want the carried create", got)
	}
}
