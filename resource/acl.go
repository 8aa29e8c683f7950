package resource

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ACLs (docs/security.md): tokens (an accessor ID and a secret) bound to
// named ACL policies, whose rules grant an access level on a kind,
// optionally narrowed by a label selector.

// Kinds that appear in ACL rules without being object kinds of their own.
const (
	// KindCluster covers GET /v1/cluster, /metrics, removing Raft
	// servers and /debug/pprof (admin).
	KindCluster Kind = "cluster"
	// KindACL covers ACL policies and tokens (/v1/acl/...). acl:write can
	// create a management token: grant it to administrators only.
	KindACL Kind = "acl"
)

// Event kinds of ACL changes (events of GET /v1/events without an
// object: a token's secret hash is not for event readers).
const (
	EventKindACLPolicy Kind = "acl_policy"
	EventKindACLToken  Kind = "acl_token"
)

// Access levels of a rule, each including the ones before it.
const (
	AccessRead  = "read"  // GET, lists, blocking queries, events
	AccessPower = "power" // VM actions (start, stop, reboot, migrate)
	AccessWrite = "write" // create, update, delete
	AccessAdmin = "admin" // kind-specific administration
)

var accessRank = map[string]int{AccessRead: 1, AccessPower: 2, AccessWrite: 3, AccessAdmin: 4}

// Token types.
const (
	TokenManagement = "management" // may do everything
	TokenClient     = "client"     // has the rights of its policies
	TokenNode       = "node"       // a worker's: its own host only
)

// Errors of authentication and authorization; the API answers them 401
// unauthenticated and 403 permission_denied.
var (
	ErrUnauthenticated  = errors.New("unauthenticated")
	ErrPermissionDenied = errors.New("permission denied")
)

// ACLRule grants Access on Kind, to the objects whose labels match
// Selector (all of them when it is empty).
type ACLRule struct {
	Kind     Kind   `json:"kind"`
	Access   string `json:"access"`
	Selector string `json:"selector,omitempty"`
}

// aclRuleKinds are the kinds a rule may name besides the registered
// object kinds.
var aclRuleKinds = []Kind{KindCluster, KindACL}

// ParseACLRule parses "KIND:ACCESS[:SELECTOR]", e.g. "vm:write:team=web".
func ParseACLRule(s string) (ACLRule, error) {
	parts := strings.SplitN(strings.TrimSpace(s), ":", 3)
	if len(parts) < 2 {
		return ACLRule{}, fmt.Errorf("ACL rule %q: write KIND:ACCESS[:SELECTOR], e.g. vm:read or vm:write:team=web", s)
	}
	r := ACLRule{Kind: Kind(strings.TrimSpace(parts[0])), Access: strings.TrimSpace(parts[1])}
	if len(parts) == 3 {
		r.Selector = strings.TrimSpace(parts[2])
	}
	if err := r.Validate(); err != nil {
		return ACLRule{}, fmt.Errorf("ACL rule %q: %w", s, err)
	}
	return r, nil
}

// Validate checks the rule's kind, access and selector.
func (r ACLRule) Validate() error {
	if _, ok := Lookup(r.Kind); !ok && !slices.Contains(aclRuleKinds, r.Kind) {
		var names []string
		for _, k := range Kinds() {
			names = append(names, string(k.Kind))
		}
		for _, k := range aclRuleKinds {
			names = append(names, string(k))
		}
		slices.Sort(names)
		return Errorf("kind", "unknown kind %q in an ACL rule; the kinds are %s (a management token has everything)", r.Kind, strings.Join(names, ", "))
	}
	if accessRank[r.Access] == 0 {
		return Errorf("access", "unknown access %q; write read, power, write or admin", r.Access)
	}
	if _, err := ParseSelector(r.Selector); err != nil {
		return Errorf("selector", "%v", err)
	}
	return nil
}

// String is the rule's text form, "KIND:ACCESS[:SELECTOR]".
func (r ACLRule) String() string {
	s := string(r.Kind) + ":" + r.Access
	if r.Selector != "" {
		s += ":" + r.Selector
	}
	return s
}

// ACLPolicySpec is the user-written part of an ACL policy.
type ACLPolicySpec struct {
	Description string    `json:"description,omitempty"`
	Rules       []ACLRule `json:"rules"`
}

// ACLPolicy is a named set of rules (GET /v1/acl/policies/{name}).
type ACLPolicy struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Rules       []ACLRule `json:"rules"`
	CreateIndex uint64    `json:"create_index"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Limits of ACL objects.
const (
	MaxACLRules          = 256
	MaxACLDescription    = 1024
	MaxACLTokenPolicies  = 64
	MaxACLTokenNameBytes = 256
)

// Validate checks a policy's name, description and rules.
func (p *ACLPolicy) Validate() error {
	if err := ValidateName(p.Name); err != nil {
		return err
	}
	if len(p.Description) > MaxACLDescription {
		return Errorf("description", "is %d bytes; the limit is %d", len(p.Description), MaxACLDescription)
	}
	if len(p.Rules) == 0 {
		return Errorf("rules", "is empty: give at least one rule such as vm:read")
	}
	if len(p.Rules) > MaxACLRules {
		return Errorf("rules", "has %d rules; the limit is %d", len(p.Rules), MaxACLRules)
	}
	for i, r := range p.Rules {
		if err := r.Validate(); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return Errorf(fmt.Sprintf("rules[%d].%s", i, fe.Field), "%s", fe.Msg)
			}
			return Errorf(fmt.Sprintf("rules[%d]", i), "%v", err)
		}
	}
	return nil
}

// ACLToken is the API shape of a token. SecretID is only in the answers
// of create and bootstrap: the cluster stores only its SHA-256.
type ACLToken struct {
	AccessorID  string    `json:"accessor_id"`
	SecretID    string    `json:"secret_id,omitempty"`
	Name        string    `json:"name,omitempty"`
	Type        string    `json:"type"`
	Policies    []string  `json:"policies,omitempty"`
	Node        string    `json:"node,omitempty"`
	CreateTime  time.Time `json:"create_time"`
	CreateIndex uint64    `json:"create_index"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Validate checks a token's type, name, policies and node (not its IDs).
func (t *ACLToken) Validate() error {
	if len(t.Name) > MaxACLTokenNameBytes {
		return Errorf("name", "is %d bytes; the limit is %d", len(t.Name), MaxACLTokenNameBytes)
	}
	switch t.Type {
	case TokenManagement:
		if len(t.Policies) > 0 || t.Node != "" {
			return Errorf("policies", "a management token has every right: give it no policies and no node")
		}
	case TokenClient:
		if len(t.Policies) == 0 {
			return Errorf("policies", "a client token needs at least one policy (--policy NAME)")
		}
		if t.Node != "" {
			return Errorf("node", "only node tokens speak for a host (--type node)")
		}
		if len(t.Policies) > MaxACLTokenPolicies {
			return Errorf("policies", "has %d policies; the limit is %d", len(t.Policies), MaxACLTokenPolicies)
		}
		for i, p := range t.Policies {
			if err := ValidateName(p); err != nil {
				return Errorf(fmt.Sprintf("policies[%d]", i), "%v", err)
			}
		}
	case TokenNode:
		if len(t.Policies) > 0 {
			return Errorf("policies", "a node token has the fixed rights of a worker: give it no policies")
		}
		if err := ValidateName(t.Node); err != nil {
			return Errorf("node", "a node token needs the host it speaks for (--node HOST): %v", err)
		}
	default:
		return Errorf("type", "unknown token type %q; write client, management or node", t.Type)
	}
	return nil
}

// ACLStatus is GET /v1/status's "acl".
type ACLStatus struct {
	Enabled      bool `json:"enabled"`
	Bootstrapped bool `json:"bootstrapped"`
}

// NewACLSecret returns a new random secret (or accessor ID): a UUID from
// crypto/rand.
func NewACLSecret() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("resource: crypto/rand failed: " + err.Error())
	}
	u, _ := uuid.FromBytes(b[:])
	u[6] = (u[6] & 0x0f) | 0x40 // version 4
	u[8] = (u[8] & 0x3f) | 0x80 // variant RFC 4122
	return u.String()
}

// HashACLSecret is what the cluster stores of a secret: its SHA-256, hex.
func HashACLSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// ACLIdentity is who makes a request: a token and, for a client token,
// its policies as they are now (a policy that no longer exists is simply
// missing). The zero identity (no token) may do nothing.
type ACLIdentity struct {
	Token    *ACLToken
	Policies []*ACLPolicy
}

// Accessor is the token's accessor ID ("" without a token).
func (id *ACLIdentity) Accessor() string {
	if id == nil || id.Token == nil {
		return ""
	}
	return id.Token.AccessorID
}

// IsManagement reports whether the identity has every right.
func (id *ACLIdentity) IsManagement() bool {
	return id != nil && id.Token != nil && id.Token.Type == TokenManagement
}

// Node is the host a node token speaks for ("" for other tokens).
func (id *ACLIdentity) Node() string {
	if id == nil || id.Token == nil || id.Token.Type != TokenNode {
		return ""
	}
	return id.Token.Node
}

// describe names the token in messages: `token "ci"`.
func (id *ACLIdentity) describe() string {
	if id == nil || id.Token == nil {
		return "a request without a token"
	}
	name := id.Token.Name
	if name == "" {
		name = id.Token.AccessorID
	}
	return fmt.Sprintf("%s token %q", id.Token.Type, name)
}

// grants reports whether a rule grants access on kind to an object with
// these labels (object false: to the kind as a whole, which only a rule
// without selector grants).
func (r ACLRule) grants(kind Kind, access string, object bool, labels map[string]string) bool {
	if r.Kind != kind || accessRank[r.Access] < accessRank[access] {
		return false
	}
	if r.Selector == "" {
		return true
	}
	if !object {
		return false
	}
	sel, err := ParseSelector(r.Selector)
	return err == nil && sel.Matches(labels)
}

// rules lists the identity's rules, over all its policies.
func (id *ACLIdentity) rules() []ACLRule {
	var out []ACLRule
	for _, p := range id.Policies {
		if p != nil {
			out = append(out, p.Rules...)
		}
	}
	return out
}

// Allow decides whether the identity may have access on kind: on the
// object name with labels, or, with name "", on the kind as a whole (only
// rules without a selector grant that). A node token gets nothing here:
// its rights depend on where objects are (AllowObject, AllowReport). The
// error wraps ErrPermissionDenied and names the rule that is missing.
func (id *ACLIdentity) Allow(kind Kind, access string, name string, labels map[string]string) error {
	if id.IsManagement() {
		return nil
	}
	if id != nil && id.Token != nil && id.Token.Type == TokenClient {
		for _, r := range id.rules() {
			if r.grants(kind, access, name != "", labels) {
				return nil
			}
		}
	}
	return id.denied(kind, access, name)
}

func (id *ACLIdentity) denied(kind Kind, access, name string) error {
	what := string(kind)
	if name != "" {
		what = fmt.Sprintf("%s %q", kind, name)
	} else if info, ok := Lookup(kind); ok {
		what = info.Plural
	}
	needs := string(kind) + ":" + access
	var why string
	switch {
	case id == nil || id.Token == nil:
		why = "needs " + needs
	case id.Token.Type == TokenNode:
		why = fmt.Sprintf("a node token (host %s) may only read its own host, read the VMs placed on it, read networks, images and volumes, and report for its host", id.Token.Node)
	default:
		var names []string
		for _, p := range id.Policies {
			if p != nil {
				names = append(names, p.Name)
			}
		}
		pol := "none"
		if len(names) > 0 {
			pol = strings.Join(names, ", ")
		}
		if len(names) < len(id.Token.Policies) {
			pol += "; missing: " + strings.Join(missingPolicies(id.Token.Policies, names), ", ")
		}
		why = fmt.Sprintf("needs %s", needs)
		if name != "" && id.hasSelectorRule(kind, access) {
			why += " with a selector that its labels match"
		}
		why += fmt.Sprintf(" (policies: %s)", pol)
	}
	return fmt.Errorf("%w: %s may not %s %s: %s", ErrPermissionDenied, id.describe(), access, what, why)
}

func (id *ACLIdentity) hasSelectorRule(kind Kind, access string) bool {
	for _, r := range id.rules() {
		if r.Kind == kind && accessRank[r.Access] >= accessRank[access] && r.Selector != "" {
			return true
		}
	}
	return false
}

func missingPolicies(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// AllowSome reports whether the identity may have access on some objects
// of kind (a rule for the kind, with or without selector; a node token:
// read of hosts, VMs, networks, images and volumes): whether a list or an event stream of the kind
// is worth serving, filtered by AllowObject.
func (id *ACLIdentity) AllowSome(kind Kind, access string) error {
	if id.IsManagement() {
		return nil
	}
	if id != nil && id.Token != nil {
		switch id.Token.Type {
		case TokenClient:
			for _, r := range id.rules() {
				if r.Kind == kind && accessRank[r.Access] >= accessRank[access] {
					return nil
				}
			}
		case TokenNode:
			if access == AccessRead && (kind == KindVM || kind == KindHost || nodeReadsAll(kind)) {
				return nil
			}
		}
	}
	return id.denied(kind, access, "")
}

// nodeReadsAll reports whether a node token may read every object of
// kind: the networks, images and volumes its worker realises (which of
// them a host needs follows from the VMs placed on it, which change
// faster than a rule could say).
func nodeReadsAll(kind Kind) bool {
	return kind == KindNetwork || kind == KindImage || kind == KindVolume
}

// ACLProjectKey is the selector key of a rule scoped to a project: in
// the rules of VMs, volumes and projects, "project=p1" matches the
// object's project (a VM's or volume's spec.project, "default" when it
// names none; a project's name), not a label of that name.
const ACLProjectKey = "project"

// ACLLabels are the labels an ACL rule's selector sees on an object of
// kind with this name, labels and spec: its labels, and for VMs, volumes
// and projects the key project (ACLProjectKey) set to its project,
// which overrides a label of that name.
func ACLLabels(kind Kind, name string, labels map[string]string, spec json.RawMessage) map[string]string {
	var p string
	switch kind {
	case KindProject:
		p = name
	case KindVM, KindVolume:
		p = DefaultProject
		if bytes.Contains(spec, []byte(`"project"`)) {
			var s struct {
				Project string `json:"project"`
			}
			_ = json.Unmarshal(spec, &s)
			p = ProjectOf(s.Project)
		}
	default:
		return labels
	}
	out := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		out[k] = v
	}
	out[ACLProjectKey] = p
	return out
}

// AllowObject decides access on a stored object: Allow with its labels,
// and for a node token read of its own host, of the VMs placed on it
// (status.host) or migrating to it (status.migration.target) and of
// every network, image and volume.
func (id *ACLIdentity) AllowObject(o *Object, access string) error {
	if n := id.Node(); n != "" && access == AccessRead {
		if nodeReadsAll(o.Kind) {
			return nil
		}
		switch o.Kind {
		case KindHost:
			if o.Name == n {
				return nil
			}
		case KindVM:
			if st, err := DecodeStatus[VMStatus](o); err == nil && (st.Host == n || (st.Migration != nil && st.Migration.Target == n)) {
				return nil
			}
		}
	}
	return id.Allow(o.Kind, access, o.Name, ACLLabels(o.Kind, o.Name, o.Labels, o.Spec))
}

// AllowReport decides whether the identity may post host's report: a
// node token for exactly that host, or host:admin.
func (id *ACLIdentity) AllowReport(host string, labels map[string]string) error {
	if n := id.Node(); n != "" {
		if n == host {
			return nil
		}
		return fmt.Errorf("%w: %s may only report for its own host %s, not %s", ErrPermissionDenied, id.describe(), n, host)
	}
	return id.Allow(KindHost, AccessAdmin, host, labels)
}

// AllowEvent decides whether the identity may see an event: read of its
// object (ACL changes: acl:read). Heartbeats and resets are for anyone.
func (id *ACLIdentity) AllowEvent(ev *Event) error {
	switch {
	case id.IsManagement() || ev.Type == EventHeartbeat || ev.Type == EventReset:
		return nil
	case ev.Kind == EventKindACLPolicy || ev.Kind == EventKindACLToken:
		return id.Allow(KindACL, AccessRead, "", nil)
	case ev.Object != nil:
		return id.AllowObject(ev.Object, AccessRead)
	}
	return id.Allow(ev.Kind, AccessRead, ev.Name, nil)
}
