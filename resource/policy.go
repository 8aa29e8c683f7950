package resource

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// KindPolicy is the kind of event-driven policy scripts: Starlark source
// stored in the cluster, run by the leader on the events it declares
// (docs/scripting.md, "Policies").
const KindPolicy Kind = "policy"

// Limits and defaults of a policy.
const (
	MaxPolicySourceBytes   = 256 << 10
	DefaultPolicyMaxSteps  = 1_000_000
	MaxPolicyMaxSteps      = 1_000_000_000
	DefaultPolicyTimeout   = 30 * time.Second
	MinPolicyTimeout       = 100 * time.Millisecond
	MaxPolicyTimeout       = 10 * time.Minute
	MaxPolicyRecentErrors  = 5
	MaxPolicyRecentOutput  = 20
	MaxPolicyOutputLineLen = 500
)

// Policy states (status.state).
const (
	PolicyPending  = "pending"  // stored, not yet loaded by a leader
	PolicyActive   = "active"   // loaded; its handler runs on its events
	PolicyBroken   = "error"    // the script does not load: status.error says why
	PolicyDisabled = "disabled" // spec.disabled
)

// PolicySpec is what a user stores: the script and its limits.
type PolicySpec struct {
	// Source is the Starlark script: it defines `events = [...]` and
	// `def on_event(ev):`.
	Source string `json:"source"`
	// Version counts the changes of the policy's source, limits and
	// disabled flag: 1 when created, +1 on each update that changes one of
	// them. It is set by the cluster; a value sent by a client is ignored.
	Version uint64 `json:"version,omitempty"`
	// Disabled stops the policy from running without deleting it.
	Disabled bool `json:"disabled,omitempty"`
	// MaxSteps bounds one on_event call (Starlark steps; default 1e6).
	MaxSteps uint64 `json:"max_steps,omitempty"`
	// Timeout bounds one on_event call (a Go duration; default 30s).
	Timeout string `json:"timeout,omitempty"`
}

// Default fills in the limits.
func (s *PolicySpec) Default() {
	if s.MaxSteps == 0 {
		s.MaxSteps = DefaultPolicyMaxSteps
	}
	if s.Timeout == "" {
		s.Timeout = DefaultPolicyTimeout.String()
	}
}

// Validate checks the source's size and the limits. Whether the script
// loads is checked by the leader (status.state "error" says why) and by
// `kumoi policy apply` before it stores it.
func (s *PolicySpec) Validate() error {
	switch {
	case s.Source == "":
		return Errorf("spec.source", "is empty: give the policy's Starlark source")
	case len(s.Source) > MaxPolicySourceBytes:
		return Errorf("spec.source", "is %d bytes; the limit is %d", len(s.Source), MaxPolicySourceBytes)
	case !utf8.ValidString(s.Source):
		return Errorf("spec.source", "is not valid UTF-8")
	case s.MaxSteps < 1 || s.MaxSteps > MaxPolicyMaxSteps:
		return Errorf("spec.max_steps", "must be between 1 and %d (got %d); omit it for the default %d", uint64(MaxPolicyMaxSteps), s.MaxSteps, DefaultPolicyMaxSteps)
	}
	d, err := time.ParseDuration(s.Timeout)
	if err != nil {
		return Errorf("spec.timeout", "%q is not a duration such as 30s or 2m", s.Timeout)
	}
	if d < MinPolicyTimeout || d > MaxPolicyTimeout {
		return Errorf("spec.timeout", "must be between %s and %s (got %s)", MinPolicyTimeout, MaxPolicyTimeout, d)
	}
	return nil
}

// TimeoutDuration is Timeout parsed (the default when it does not parse).
func (s *PolicySpec) TimeoutDuration() time.Duration {
	if d, err := time.ParseDuration(s.Timeout); err == nil && d > 0 {
		return d
	}
	return DefaultPolicyTimeout
}

// PolicyStatus is what the leader's policy runner reports.
type PolicyStatus struct {
	State string `json:"state"`
	// Version is the spec version the runner loaded.
	Version uint64 `json:"version,omitempty"`
	// Events are the event patterns the script declared.
	Events []string `json:"events,omitempty"`
	// Error says why the script does not load (state "error").
	Error string `json:"error,omitempty"`
	// Node is the controller that runs the policy (the leader).
	Node string `json:"node,omitempty"`
	// LastIndex is the Raft index up to which events have been handled:
	// a new leader resumes after it, so every event is delivered at least
	// once (events handled after the last checkpoint are delivered again).
	LastIndex uint64 `json:"last_index,omitempty"`
	// Handled and Failed count on_event calls since the version loaded.
	Handled uint64 `json:"handled,omitempty"`
	Failed  uint64 `json:"failed,omitempty"`
	// Missed notes events the runner could not deliver because they were
	// no longer retained (e.g. after a long outage): "3 events between
	// index 10 and 40".
	Missed string `json:"missed,omitempty"`
	// RecentErrors are the last handler errors, newest last.
	RecentErrors []PolicyFailure `json:"recent_errors,omitempty"`
	// RecentOutput are the last lines the handler printed, newest last.
	RecentOutput []string  `json:"recent_output,omitempty"`
	Since        time.Time `json:"since,omitzero"`
}

// PolicyFailure is one failed on_event call.
type PolicyFailure struct {
	Time    time.Time `json:"time"`
	Index   uint64    `json:"index"`
	Event   string    `json:"event"` // "vm.failed vm/web-1"
	Message string    `json:"message"`
}

// revisePolicy makes spec.version system-owned: 1 on create, and +1 on an
// update that changes anything else in the spec.
func revisePolicy(old, next json.RawMessage) (json.RawMessage, error) {
	var n PolicySpec
	if err := json.Unmarshal(next, &n); err != nil {
		return nil, fmt.Errorf("policy spec: %w", err)
	}
	if old == nil {
		n.Version = 1
		return json.Marshal(&n)
	}
	var o PolicySpec
	if err := json.Unmarshal(old, &o); err != nil {
		return nil, fmt.Errorf("policy spec: %w", err)
	}
	n.Version = o.Version
	o.Version = 0
	cmp := n
	cmp.Version = 0
	if cmp != o {
		n.Version++
	}
	return json.Marshal(&n)
}

func init() {
	Register(&KindInfo{
		Kind:      KindPolicy,
		Plural:    "policies",
		NewSpec:   func() Spec { return new(PolicySpec) },
		NewStatus: func() any { return new(PolicyStatus) },
		InitialStatus: func(now time.Time) any {
			return &PolicyStatus{State: PolicyPending, Since: now.UTC()}
		},
		Revise: revisePolicy,
	})
}
