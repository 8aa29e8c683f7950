package script

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.starlark.net/starlark"

	"github.com/kumoi/kumoi/resource"
)

// Event is one thing that happened in the cluster, as scripts and policies
// see it. Type is "<kind>.<what>":
//
//   - "vm.created", "vm.updated", "vm.deleted" (and the same for host and
//     every other kind): an object change, one per change of the event
//     stream (GET /v1/events);
//   - "vm.<phase>", e.g. "vm.failed", "vm.running", "vm.lost": a VM entered
//     that phase;
//   - "host.<state>", e.g. "host.down", "host.ready", "host.draining": a
//     host entered that state;
//   - "volume.<phase>", e.g. "volume.ready", "volume.missing": a volume
//     entered that phase ("network.created", "image.deleted", … are the
//     changes of the other kinds).
//
// An EventMapper derives them from the stream.
type Event struct {
	Type   string
	Index  uint64 // the Raft index of the change
	Kind   resource.Kind
	Name   string
	Object *resource.Object // after the change (before it, for a delete); may be nil
}

// Change types of every kind.
var changeTypes = []string{resource.EventCreated, resource.EventUpdated, resource.EventDeleted}

// vmPhases are the VM phases, each an event type "vm.<phase>".
var vmPhases = []string{
	resource.PhasePending, resource.PhaseScheduled, resource.PhaseStarting, resource.PhaseRunning,
	resource.PhaseSuspended, resource.PhaseStopping, resource.PhaseStopped, resource.PhaseMigrating,
	resource.PhaseFailed, resource.PhaseLost,
}

// hostStates are the host states, each an event type "host.<state>".
var hostStates = []string{resource.HostReady, resource.HostDown, resource.HostLeft, resource.HostDraining}

// volumePhases are the volume phases, each an event type "volume.<phase>".
var volumePhases = []string{resource.VolumePending, resource.VolumeReady, resource.VolumeMissing, resource.VolumeFailed}

// EventTypes returns the event types of kind: its changes, and its phases
// (VM, volume) or states (host).
func EventTypes(kind resource.Kind) []string {
	var out []string
	for _, t := range changeTypes {
		out = append(out, string(kind)+"."+t)
	}
	var extra []string
	switch kind {
	case resource.KindVM:
		extra = vmPhases
	case resource.KindHost:
		extra = hostStates
	case resource.KindVolume:
		extra = volumePhases
	}
	for _, t := range extra {
		out = append(out, string(kind)+"."+t)
	}
	return out
}

// EventMapper turns the object changes of the event stream into Events:
// the change itself and, when a VM's phase or a host's state differs from
// the one it last saw for that object (or it saw none: the first change
// after a new mapper, such as a new leader's, repeats it), the phase or
// state event. Use one mapper per stream, from one goroutine.
type EventMapper struct {
	last map[string]string // "vm/web" → phase, "host/hv-1" → state, "volume/v1" → phase
}

// NewEventMapper returns a mapper that has seen nothing.
func NewEventMapper() *EventMapper { return &EventMapper{last: map[string]string{}} }

// Events returns the events of one change of the stream, in order: the
// change, then a phase or state event. A reset of the stream (events no
// longer retained) makes the mapper forget what it saw and returns none;
// re-list the objects.
func (m *EventMapper) Events(ev resource.Event) []Event {
	switch ev.Type {
	case resource.EventReset:
		clear(m.last)
		return nil
	case resource.EventCreated, resource.EventUpdated, resource.EventDeleted:
	default:
		return nil // heartbeats and types this binary does not know
	}
	kind, name := ev.Kind, ev.Name
	if ev.Object != nil {
		kind, name = ev.Object.Kind, ev.Object.Name
	}
	base := Event{Index: ev.Index, Kind: kind, Name: name, Object: ev.Object}
	change := base
	change.Type = string(kind) + "." + ev.Type
	out := []Event{change}
	key := string(kind) + "/" + name
	if ev.Type == resource.EventDeleted {
		delete(m.last, key)
		return out
	}
	if ev.Object == nil {
		return out
	}
	var now string
	switch kind {
	case resource.KindVM:
		_, st := resource.VMStateOf(ev.Object)
		now = st.Phase
	case resource.KindHost:
		_, st := resource.HostStateOf(ev.Object)
		now = st.State
	case resource.KindVolume:
		_, st := resource.StateOf[resource.VolumeSpec, resource.VolumeStatus](ev.Object)
		now = st.Phase
	default:
		return out
	}
	if now != "" && m.last[key] != now {
		m.last[key] = now
		ph := base
		ph.Type = string(kind) + "." + now
		out = append(out, ph)
	}
	return out
}

// Matcher selects events by type. Its patterns are a kind ("vm": all of
// its events, also written "vm.*"), an event type ("host.down") or "*"
// (everything).
type Matcher struct {
	patterns []string // validated; empty matches everything
}

// NewMatcher checks patterns; the error names the first wrong one and
// says what would be right. No patterns match every event.
func NewMatcher(patterns []string) (*Matcher, error) {
	m := &Matcher{}
	for i, p := range patterns {
		p = strings.TrimSpace(p)
		if err := checkPattern(p); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		if kind, ok := strings.CutSuffix(p, ".*"); ok {
			p = kind
		}
		if !slices.Contains(m.patterns, p) {
			m.patterns = append(m.patterns, p)
		}
	}
	return m, nil
}

func checkPattern(p string) error {
	if p == "*" {
		return nil
	}
	kind, what, typed := strings.Cut(p, ".")
	// Policies' own changes are not events (a policy runner writes its
	// status as it goes: reacting to that would loop).
	if _, ok := resource.Lookup(resource.Kind(kind)); !ok || resource.Kind(kind) == resource.KindPolicy {
		var kinds []string
		for _, k := range resource.Kinds() {
			if k.Kind != resource.KindPolicy {
				kinds = append(kinds, string(k.Kind))
			}
		}
		return fmt.Errorf("%q: %q is not a kind; use one of %s (e.g. \"vm.failed\", \"host.down\", \"vm\" for all VM events)",
			p, kind, strings.Join(kinds, ", "))
	}
	if !typed || what == "*" {
		return nil
	}
	types := EventTypes(resource.Kind(kind))
	if !slices.Contains(types, p) {
		return fmt.Errorf("%q is not an event type; the %s events are %s", p, kind, strings.Join(types, ", "))
	}
	return nil
}

// Match reports whether an event of type typ is selected.
func (m *Matcher) Match(typ string) bool {
	if len(m.patterns) == 0 {
		return true
	}
	kind, _, _ := strings.Cut(typ, ".")
	for _, p := range m.patterns {
		if p == "*" || p == typ || p == kind {
			return true
		}
	}
	return false
}

// Patterns returns the patterns, normalised ("vm.*" is "vm").
func (m *Matcher) Patterns() []string { return slices.Clone(m.patterns) }

// ResourceKinds returns the kinds whose changes the matcher needs, for
// client.Events (none: all kinds).
func (m *Matcher) ResourceKinds() []resource.Kind {
	var out []resource.Kind
	for _, p := range m.patterns {
		if p == "*" {
			return nil
		}
		kind, _, _ := strings.Cut(p, ".")
		if !slices.Contains(out, resource.Kind(kind)) {
			out = append(out, resource.Kind(kind))
		}
	}
	return out
}

func (m *Matcher) String() string {
	quoted := make([]string, len(m.patterns))
	for i, p := range m.patterns {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// eventValue is an Event as a Starlark value: ev.type, ev.kind, ev.name,
// ev.index, ev.object.
type eventValue struct {
	ev     Event
	object starlark.Value
}

func newEventValue(s *Session, ev Event) *eventValue {
	return &eventValue{ev: ev, object: newObject(s, ev.Object)}
}

func (e *eventValue) String() string {
	return fmt.Sprintf("event(%s %s/%s at %d)", e.ev.Type, e.ev.Kind, e.ev.Name, e.ev.Index)
}
func (e *eventValue) Type() string          { return "event" }
func (e *eventValue) Freeze()               {}
func (e *eventValue) Truth() starlark.Bool  { return starlark.True }
func (e *eventValue) Hash() (uint32, error) { return 0, errors.New("unhashable type: event") }
func (e *eventValue) AttrNames() []string   { return []string{"index", "kind", "name", "object", "type"} }

func (e *eventValue) Attr(name string) (starlark.Value, error) {
	switch name {
	case "type":
		return starlark.String(e.ev.Type), nil
	case "kind":
		return starlark.String(e.ev.Kind), nil
	case "name":
		return starlark.String(e.ev.Name), nil
	case "index":
		return starlark.MakeUint64(e.ev.Index), nil
	case "object":
		return e.object, nil
	}
	return nil, nil
}
