package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Spec is implemented by every kind's typed spec.
type Spec interface {
	// Default fills in omitted optional fields.
	Default()
	// Validate checks the spec; errors are *FieldError with paths under
	// "spec".
	Validate() error
}

// KindInfo describes one kind: its names and its typed spec and status.
type KindInfo struct {
	Kind   Kind
	Plural string // the URL collection: /v1/{Plural}
	// NewSpec returns a pointer to a zero spec.
	NewSpec func() Spec
	// NewStatus returns a pointer to a zero status.
	NewStatus func() any
	// InitialStatus returns the status of a newly created object.
	InitialStatus func(now time.Time) any
	// Revise, if set, fills the system-owned fields of a normalized spec
	// being written, from the current one (old is nil on create). It must
	// be deterministic: the FSM calls it.
	Revise func(old, next json.RawMessage) (json.RawMessage, error)
}

var kinds = map[Kind]*KindInfo{}

// Register adds a kind. It is called from init functions only.
func Register(k *KindInfo) {
	if _, dup := kinds[k.Kind]; dup {
		panic("resource: kind registered twice: " + string(k.Kind))
	}
	kinds[k.Kind] = k
}

// Lookup returns the kind's description.
func Lookup(k Kind) (*KindInfo, bool) {
	info, ok := kinds[k]
	return info, ok
}

// LookupPlural finds a kind by its collection name ("vms").
func LookupPlural(plural string) (*KindInfo, bool) {
	for _, info := range kinds {
		if info.Plural == plural {
			return info, true
		}
	}
	return nil, false
}

// Kinds lists the registered kinds in name order.
func Kinds() []*KindInfo {
	out := make([]*KindInfo, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// NormalizeSpec decodes a kind's spec (unknown fields refused), fills
// defaults, validates it and returns its canonical JSON encoding. It is the
// state machine's check of a logged spec and stays as tolerant as the rules
// older entries were written under; a spec a client sent goes through
// NormalizeRequestSpec first, whose canonical output NormalizeSpec leaves
// unchanged.
func NormalizeSpec(kind Kind, raw json.RawMessage) (json.RawMessage, error) {
	return logSpecs.do(kind, raw)
}

func normalizeSpec(kind Kind, raw json.RawMessage) (json.RawMessage, error) {
	info, err := lookupWith(kind, raw, "spec")
	if err != nil {
		return nil, err
	}
	s := info.NewSpec()
	if err := decodeTolerant(raw, s, "spec"); err != nil {
		return nil, err
	}
	s.Default()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// RequestValidator is implemented by specs with checks of client input
// beyond Validate (string hygiene, lengths): rules added after specs were
// first logged, so that the state machine, which calls Validate only,
// still applies older entries as it did.
type RequestValidator interface {
	ValidateRequest() error
}

// Canonicalizer is implemented by specs that tidy themselves after
// decoding (a VM's empty boot is dropped).
type Canonicalizer interface {
	Canonicalize()
}

// NormalizeRequestSpec is NormalizeSpec for a spec a client sent: decoded
// exactly (DecodeStrict: exact field names, no duplicate keys, unknown
// fields named by their full path, valid UTF-8), with the one rule for
// defaults: an omitted field takes its default, an explicit value is
// validated as given (an explicit 0 where 0 means nothing, such as
// "cpu_overcommit": 0, is refused with the field's range), and then
// checked by ValidateRequest when the spec has it.
func NormalizeRequestSpec(kind Kind, raw json.RawMessage) (json.RawMessage, error) {
	return requestSpecs.do(kind, raw)
}

func normalizeRequestSpec(kind Kind, raw json.RawMessage) (json.RawMessage, error) {
	info, err := lookupWith(kind, raw, "spec")
	if err != nil {
		return nil, err
	}
	s := info.NewSpec()
	s.Default() // the defaults of omitted fields; given ones overwrite them
	if err := DecodeStrict(raw, s, "spec"); err != nil {
		return nil, err
	}
	if c, ok := s.(Canonicalizer); ok {
		c.Canonicalize()
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if rv, ok := s.(RequestValidator); ok {
		if err := rv.ValidateRequest(); err != nil {
			return nil, err
		}
	}
	return json.Marshal(s)
}

// Memos of NormalizeSpec and NormalizeRequestSpec: pure functions of the
// kind and the spec's bytes, asked the same question again and again (a
// create's spec is normalized by the leader's handler, then by every
// server's state machine; VMs made from one template share their spec).
// A spec seen recently is not decoded, validated and encoded again. Only
// successes are kept, specs of at most specMemoMaxBytes, at most
// specMemoEntries of them (when full, the memo starts over: bounded, and
// costs a workload of distinct specs one map insert each).
var (
	logSpecs     = specMemo{normalize: normalizeSpec}
	requestSpecs = specMemo{normalize: normalizeRequestSpec}
)

const (
	specMemoEntries  = 1024
	specMemoMaxBytes = 4096
)

// checkSpecMemo makes every memo hit recompute its value and panic if
// they differ (the resource tests set it).
var checkSpecMemo = false

type specMemo struct {
	normalize func(Kind, json.RawMessage) (json.RawMessage, error)

	mu sync.Mutex
	m  map[Kind]map[string]json.RawMessage
	n  int
}

// do is normalize(kind, raw), from memory when raw was seen.
func (c *specMemo) do(kind Kind, raw json.RawMessage) (json.RawMessage, error) {
	if v, ok := c.get(kind, raw); ok {
		return v, nil
	}
	v, err := c.normalize(kind, raw)
	if err == nil {
		c.put(kind, raw, v)
	}
	return v, err
}

// get returns a copy of what raw normalized to, if remembered.
func (c *specMemo) get(kind Kind, raw json.RawMessage) (json.RawMessage, bool) {
	c.mu.Lock()
	v, ok := c.m[kind][string(raw)]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	if checkSpecMemo {
		if w, err := c.normalize(kind, raw); err != nil || !bytes.Equal(w, v) {
			panic(fmt.Sprintf("resource: memo of %s spec %s is %s, not %s (%v)", kind, raw, v, w, err))
		}
	}
	return bytes.Clone(v), true
}

func (c *specMemo) put(kind Kind, raw, v json.RawMessage) {
	if len(raw) > specMemoMaxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || c.n >= specMemoEntries {
		c.m, c.n = map[Kind]map[string]json.RawMessage{}, 0
	}
	byKind := c.m[kind]
	if byKind == nil {
		byKind = map[string]json.RawMessage{}
		c.m[kind] = byKind
	}
	if _, ok := byKind[string(raw)]; !ok {
		byKind[string(raw)] = bytes.Clone(v)
		c.n++
	}
}

// lookupWith looks kind up for NormalizeSpec and NormalizeStatus, and
// checks that raw, the object's field ("spec", "status"), is given.
func lookupWith(kind Kind, raw json.RawMessage, field string) (*KindInfo, error) {
	info, ok := Lookup(kind)
	if !ok {
		return nil, Errorf("kind", "unknown kind %q", kind)
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil, Errorf(field, "is required")
	}
	return info, nil
}

// ReviseSpec applies the kind's Revise to a normalized spec (see
// KindInfo.Revise); old is nil on create.
func ReviseSpec(kind Kind, old, next json.RawMessage) (json.RawMessage, error) {
	info, ok := Lookup(kind)
	if !ok || info.Revise == nil {
		return next, nil
	}
	return info.Revise(old, next)
}

// NormalizeStatus strictly decodes a kind's status and returns its canonical
// JSON encoding.
func NormalizeStatus(kind Kind, raw json.RawMessage) (json.RawMessage, error) {
	info, err := lookupWith(kind, raw, "status")
	if err != nil {
		return nil, err
	}
	s := info.NewStatus()
	if err := decodeTolerant(raw, s, "status"); err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// InitialStatus returns the canonical JSON status of a new object of kind.
func InitialStatus(kind Kind, now time.Time) (json.RawMessage, error) {
	info, ok := Lookup(kind)
	if !ok {
		return nil, Errorf("kind", "unknown kind %q", kind)
	}
	return json.Marshal(info.InitialStatus(now))
}

// ValidateMeta checks the user-settable metadata of an object.
func ValidateMeta(name string, labels map[string]string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return ValidateLabels(labels)
}

// DecodeSpec decodes o's spec into the kind's typed spec.
func DecodeSpec[T any](o *Object) (*T, error) {
	var v T
	if err := json.Unmarshal(o.Spec, &v); err != nil {
		return nil, fmt.Errorf("%s: decode spec: %w", o, err)
	}
	return &v, nil
}

// DecodeStatus decodes o's status into the kind's typed status.
func DecodeStatus[T any](o *Object) (*T, error) {
	var v T
	if len(o.Status) == 0 {
		return &v, nil
	}
	if err := json.Unmarshal(o.Status, &v); err != nil {
		return nil, fmt.Errorf("%s: decode status: %w", o, err)
	}
	return &v, nil
}

// StateOf decodes an object's spec and status for display, never failing:
// what cannot be decoded (a missing or malformed spec or status) is the
// zero value. Code that must not mistake a broken object for an empty one
// uses DecodeSpec and DecodeStatus, which fail instead.
func StateOf[S, T any](o *Object) (*S, *T) {
	spec, err := DecodeSpec[S](o)
	if err != nil {
		spec = new(S)
	}
	st, err := DecodeStatus[T](o)
	if err != nil {
		st = new(T)
	}
	return spec, st
}

// VMStateOf decodes a VM's spec and status for display, never failing:
// what cannot be decoded (a missing or malformed spec or status) is the
// zero value. Code that must not mistake a broken object for an empty one
// uses DecodeSpec and DecodeStatus (or client.NewVM), which fail instead.
func VMStateOf(o *Object) (*VMSpec, *VMStatus) {
	return StateOf[VMSpec, VMStatus](o)
}

// HostStateOf decodes a host's spec, with its defaults filled in
// (HostSpec.Default: overcommit ratios of 1 when omitted), and its status
// for display, never failing: what cannot be decoded is the zero value, as
// in VMStateOf.
func HostStateOf(o *Object) (*HostSpec, *HostStatus) {
	spec, st := StateOf[HostSpec, HostStatus](o)
	spec.Default()
	return spec, st
}
