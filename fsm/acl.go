package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// ACLs as replicated state (docs/security.md): policies by name, tokens
// by accessor ID and by the SHA-256 of their secret (the secret itself is
// never in the log or the state), and the bootstrap mark in the meta
// table. Deleting a policy that tokens name is allowed (as in Nomad): the
// tokens keep the name and simply lose the policy's rules until a policy
// of that name exists again.

const (
	tableACLPolicies = "acl_policies"
	tableACLTokens   = "acl_tokens"
	indexSecret      = "secret"

	// metaACLBootstrap is the meta key of the bootstrap mark: the
	// accessor ID of the first management token.
	metaACLBootstrap = "acl_bootstrap"
)

// Event kinds of ACL changes (their events carry no object: a token's
// secret hash is not for event readers).
const (
	EventKindACLPolicy = resource.EventKindACLPolicy
	EventKindACLToken  = resource.EventKindACLToken
)

// ErrACLBootstrapped refuses a second bootstrap.
var ErrACLBootstrapped = errors.New("ACLs are already bootstrapped: the management token exists (use it, or a token it made, to create others)")

// ACLTokenEntry is a token as stored: the API shape without the secret,
// and the secret's SHA-256 (hex).
type ACLTokenEntry struct {
	resource.ACLToken
	SecretHash string `json:"secret_hash"`
}

// Public returns the token's API shape (no secret).
func (e *ACLTokenEntry) Public() *resource.ACLToken {
	t := e.ACLToken
	t.SecretID = ""
	t.Policies = slices.Clone(e.Policies)
	return &t
}

// ACLBootstrapRequest creates the first management token, once.
type ACLBootstrapRequest struct {
	Time       time.Time `json:"time"`
	AccessorID string    `json:"accessor_id"`
	SecretHash string    `json:"secret_hash"`
	Name       string    `json:"name,omitempty"`
}

// ACLPolicyUpsertRequest creates or replaces a policy. CAS, when non-zero,
// must equal its modify_index; Create refuses an existing policy.
type ACLPolicyUpsertRequest struct {
	Time   time.Time          `json:"time"`
	Policy resource.ACLPolicy `json:"policy"`
	Create bool               `json:"create,omitempty"`
	CAS    uint64             `json:"cas,omitempty"`
}

// ACLPolicyDeleteRequest deletes a policy.
type ACLPolicyDeleteRequest struct {
	Time time.Time `json:"time"`
	Name string    `json:"name"`
}

// ACLTokenCreateRequest creates a token; the proposer picks the accessor
// ID and the secret, and sends the secret's hash only.
type ACLTokenCreateRequest struct {
	Time       time.Time         `json:"time"`
	Token      resource.ACLToken `json:"token"`
	SecretHash string            `json:"secret_hash"`
}

// ACLTokenDeleteRequest deletes a token.
type ACLTokenDeleteRequest struct {
	Time       time.Time `json:"time"`
	AccessorID string    `json:"accessor_id"`
}

// AccessorRequest carries another command (a batch included) with the
// accessor ID of the token that made it: the FSM records it on the
// objects the command writes (ModifiedBy) and on its events (Accessor).
// One envelope for every command, so that no command's payload changes.
type AccessorRequest struct {
	Accessor string          `json:"accessor"`
	Type     MessageType     `json:"type"`
	Payload  json.RawMessage `json:"payload"`

	// inner is the typed request Payload encodes, when the envelope was
	// built by WithAccessor (for RequiredProtocol); nil once decoded.
	inner any
}

// WithAccessor wraps a command in an AccessorRequest; with an empty
// accessor it returns the command as it is.
func WithAccessor(accessor string, t MessageType, req any) (MessageType, any, error) {
	if accessor == "" {
		return t, req, nil
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return t, nil, fmt.Errorf("fsm: encode %s: %w", t, err)
	}
	return AccessorRequestType, &AccessorRequest{Accessor: accessor, Type: t, Payload: payload, inner: req}, nil
}

// Inner is the typed request the envelope carries, when it was made by
// WithAccessor (nil for one decoded from the log).
func (r *AccessorRequest) Inner() any { return r.inner }

// decodeAccessor decodes an AccessorRequest and the command it carries.
func decodeAccessor(payload []byte, maxProto int) (func(*writer) error, error) {
	var req AccessorRequest
	if err := decodePayload(payload, &req); err != nil {
		return nil, err
	}
	if req.Type == AccessorRequestType {
		return func(*writer) error {
			return fmt.Errorf("%w: accessor envelopes do not nest", ErrBadPayload)
		}, nil
	}
	run, err := decode(req.Type, req.Payload, maxProto)
	if errors.Is(err, ErrUnknownCommand) && req.Type&IgnoreUnknownTypeFlag != 0 {
		return func(*writer) error { return nil }, nil
	}
	if err != nil {
		return nil, fmt.Errorf("command with accessor (%s): %w", req.Type, err)
	}
	return asAccessor(req.Accessor, run), nil
}

// asAccessor runs run with the writer's accessor set to acc (an
// envelope's, or a binary create's), refusing one that is no accessor ID.
func asAccessor(acc string, run func(*writer) error) func(*writer) error {
	return func(w *writer) error {
		if len(acc) > 64 {
			return resource.Errorf("accessor", "is %d bytes; an accessor ID is a UUID", len(acc))
		}
		prev := w.accessor
		w.accessor = acc
		defer func() { w.accessor = prev }()
		return run(w)
	}
}

// metricType is the type an entry counts as in metrics (OnApply): a
// command with an accessor counts as the command it carries.
func metricType(t MessageType, payload []byte) MessageType {
	if t == CreateBinRequestType {
		return CreateRequestType // the same command, encoded otherwise
	}
	if t != AccessorRequestType {
		return t
	}
	var env struct {
		Type MessageType `json:"type"`
	}
	if json.Unmarshal(payload, &env) != nil || env.Type == AccessorRequestType {
		return t
	}
	return env.Type
}

func (w *writer) aclEvent(kind resource.Kind, evType, name string) {
	w.events = append(w.events, resource.Event{Index: w.index, Type: evType, Kind: kind, Name: name, Accessor: w.accessor})
}

func checkTime(t time.Time) error {
	if _, err := t.UTC().MarshalJSON(); err != nil {
		return resource.Errorf("time", "is out of range: %v", err)
	}
	return nil
}

func validHash(h string) error {
	if len(h) != 64 {
		return resource.Errorf("secret_hash", "must be a SHA-256 in hex (64 characters)")
	}
	for _, c := range h {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return resource.Errorf("secret_hash", "must be a SHA-256 in lower-case hex")
		}
	}
	return nil
}

func validAccessor(a string) error {
	if a == "" || len(a) > 64 {
		return resource.Errorf("accessor_id", "must be set by the proposer (a UUID)")
	}
	return nil
}

// insertToken stores a new token (its accessor and secret hash unique).
func (w *writer) insertToken(e *ACLTokenEntry) error {
	if err := validAccessor(e.AccessorID); err != nil {
		return err
	}
	if err := validHash(e.SecretHash); err != nil {
		return err
	}
	if raw, err := w.txn.First(tableACLTokens, indexID, e.AccessorID); err != nil {
		return err
	} else if raw != nil {
		return fmt.Errorf("token %s: %w", e.AccessorID, ErrExists)
	}
	if raw, err := w.txn.First(tableACLTokens, indexSecret, e.SecretHash); err != nil {
		return err
	} else if raw != nil {
		return fmt.Errorf("a token with this secret: %w", ErrExists)
	}
	e.SecretID = ""
	e.CreateIndex, e.ModifyIndex = w.index, w.index
	w.wrote = true
	if err := w.txn.Insert(tableACLTokens, e); err != nil {
		return fmt.Errorf("fsm: insert token: %w", err)
	}
	w.aclEvent(EventKindACLToken, resource.EventCreated, e.AccessorID)
	return nil
}

func (w *writer) aclBootstrap(req *ACLBootstrapRequest) error {
	if err := checkTime(req.Time); err != nil {
		return err
	}
	raw, err := w.txn.First(tableMeta, indexID, metaACLBootstrap)
	if err != nil {
		return err
	}
	if raw != nil {
		return ErrACLBootstrapped
	}
	e := &ACLTokenEntry{
		ACLToken: resource.ACLToken{
			AccessorID: req.AccessorID, Name: req.Name, Type: resource.TokenManagement,
			CreateTime: req.Time.UTC(),
		},
		SecretHash: req.SecretHash,
	}
	if err := e.Validate(); err != nil {
		return err
	}
	if err := w.insertToken(e); err != nil {
		return err
	}
	if err := w.txn.Insert(tableMeta, &metaEntry{Key: metaACLBootstrap, Value: req.AccessorID}); err != nil {
		return fmt.Errorf("fsm: insert bootstrap mark: %w", err)
	}
	return nil
}

func (w *writer) aclPolicyUpsert(req *ACLPolicyUpsertRequest) error {
	if err := checkTime(req.Time); err != nil {
		return err
	}
	p := req.Policy
	p.Rules = slices.Clone(p.Rules)
	if err := p.Validate(); err != nil {
		return err
	}
	raw, err := w.txn.First(tableACLPolicies, indexID, p.Name)
	if err != nil {
		return err
	}
	evType := resource.EventCreated
	p.CreateIndex = w.index
	if raw != nil {
		cur := raw.(*resource.ACLPolicy)
		if req.Create {
			return fmt.Errorf("ACL policy %q: %w", p.Name, ErrExists)
		}
		if req.CAS != 0 && cur.ModifyIndex != req.CAS {
			return fmt.Errorf("ACL policy %q: %w: it is %d, the request expected %d (re-read it and retry)", p.Name, ErrCASMismatch, cur.ModifyIndex, req.CAS)
		}
		evType = resource.EventUpdated
		p.CreateIndex = cur.CreateIndex
	} else if req.CAS != 0 {
		return fmt.Errorf("ACL policy %q: %w", p.Name, ErrNotFound)
	}
	p.ModifyIndex = w.index
	w.wrote = true
	if err := w.txn.Insert(tableACLPolicies, &p); err != nil {
		return fmt.Errorf("fsm: insert ACL policy: %w", err)
	}
	w.aclEvent(EventKindACLPolicy, evType, p.Name)
	return nil
}

func (w *writer) aclPolicyDelete(req *ACLPolicyDeleteRequest) error {
	raw, err := w.txn.First(tableACLPolicies, indexID, req.Name)
	if err != nil {
		return err
	}
	if raw == nil {
		return fmt.Errorf("ACL policy %q: %w", req.Name, ErrNotFound)
	}
	w.wrote = true
	if err := w.txn.Delete(tableACLPolicies, raw); err != nil {
		return fmt.Errorf("fsm: delete ACL policy: %w", err)
	}
	w.aclEvent(EventKindACLPolicy, resource.EventDeleted, req.Name)
	return nil
}

func (w *writer) aclTokenCreate(req *ACLTokenCreateRequest) error {
	if err := checkTime(req.Time); err != nil {
		return err
	}
	e := &ACLTokenEntry{ACLToken: req.Token, SecretHash: req.SecretHash}
	e.Policies = slices.Clone(e.Policies)
	e.CreateTime = req.Time.UTC()
	if err := e.Validate(); err != nil {
		return err
	}
	for i, name := range e.Policies {
		raw, err := w.txn.First(tableACLPolicies, indexID, name)
		if err != nil {
			return err
		}
		if raw == nil {
			return resource.Errorf(fmt.Sprintf("policies[%d]", i), "no ACL policy %q: create it first", name)
		}
	}
	return w.insertToken(e)
}

func (w *writer) aclTokenDelete(req *ACLTokenDeleteRequest) error {
	raw, err := w.txn.First(tableACLTokens, indexID, req.AccessorID)
	if err != nil {
		return err
	}
	if raw == nil {
		return fmt.Errorf("token %q: %w", req.AccessorID, ErrNotFound)
	}
	w.wrote = true
	if err := w.txn.Delete(tableACLTokens, raw); err != nil {
		return fmt.Errorf("fsm: delete token: %w", err)
	}
	w.aclEvent(EventKindACLToken, resource.EventDeleted, req.AccessorID)
	return nil
}

// ACLBootstrapped reports whether ACLs were bootstrapped (with ws: fires
// when that changes).
func (s *Store) ACLBootstrapped(ws memdb.WatchSet) bool {
	ch, raw, err := s.ReadTxn().FirstWatch(tableMeta, indexID, metaACLBootstrap)
	if err != nil {
		return false
	}
	ws.Add(ch)
	return raw != nil
}

// ACLTokenBySecret finds a token by its secret in O(1): by the secret's
// hash (nil when there is none).
func (s *Store) ACLTokenBySecret(secret string) *ACLTokenEntry {
	raw, err := s.ReadTxn().First(tableACLTokens, indexSecret, resource.HashACLSecret(secret))
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*ACLTokenEntry)
}

// ACLToken finds a token by accessor ID (nil when there is none).
func (s *Store) ACLToken(ws memdb.WatchSet, accessor string) *ACLTokenEntry {
	ch, raw, err := s.ReadTxn().FirstWatch(tableACLTokens, indexID, accessor)
	if err != nil {
		return nil
	}
	ws.Add(ch)
	if raw == nil {
		return nil
	}
	return raw.(*ACLTokenEntry)
}

// ACLTokens lists the tokens in accessor order.
func (s *Store) ACLTokens(ws memdb.WatchSet) []*ACLTokenEntry {
	it, err := s.ReadTxn().Get(tableACLTokens, indexID)
	if err != nil {
		return nil
	}
	watchIter(ws, it)
	var out []*ACLTokenEntry
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*ACLTokenEntry))
	}
	return out
}

// ACLPolicy finds a policy by name (nil when there is none). The result
// is shared: do not modify it.
func (s *Store) ACLPolicy(ws memdb.WatchSet, name string) *resource.ACLPolicy {
	ch, raw, err := s.ReadTxn().FirstWatch(tableACLPolicies, indexID, name)
	if err != nil {
		return nil
	}
	ws.Add(ch)
	if raw == nil {
		return nil
	}
	return raw.(*resource.ACLPolicy)
}

// ACLPolicies lists the policies in name order.
func (s *Store) ACLPolicies(ws memdb.WatchSet) []*resource.ACLPolicy {
	it, err := s.ReadTxn().Get(tableACLPolicies, indexID)
	if err != nil {
		return nil
	}
	watchIter(ws, it)
	var out []*resource.ACLPolicy
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*resource.ACLPolicy))
	}
	return out
}

// ACLIdentity resolves a token's policies as they are now (a deleted
// policy is missing).
func (s *Store) ACLIdentity(e *ACLTokenEntry) *resource.ACLIdentity {
	id := &resource.ACLIdentity{Token: e.Public()}
	for _, name := range e.Policies {
		if p := s.ACLPolicy(nil, name); p != nil {
			id.Policies = append(id.Policies, p)
		}
	}
	return id
}
