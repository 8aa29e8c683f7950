package script

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/resource"
)

func TestLoadPolicyRejectsBadDeclarations(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name, src, want string }{
		{"no events", "def on_event(ev):\n    pass\n", `no events list: declare the events the policy handles at the top level, e.g. events = ["vm.failed", "host.down"]`},
		{"events a string", "events = \"vm.failed\"\ndef on_event(ev):\n    pass\n", "events is string; it must be a list of event types"},
		{"events empty", "events = []\ndef on_event(ev):\n    pass\n", "events is empty"},
		{"events not strings", "events = [\"vm.failed\", 3]\ndef on_event(ev):\n    pass\n", `events[1] is int, not a string such as "vm.failed"`},
		{"unknown type", "events = [\"vm.failed\", \"vm.exploded\"]\ndef on_event(ev):\n    pass\n", `events element 1: "vm.exploded" is not an event type; the vm events are vm.created, vm.updated, vm.deleted, vm.pending`},
		{"unknown kind", "events = [\"disk.full\"]\ndef on_event(ev):\n    pass\n", `"disk" is not a kind; use one of host, image, network, project, vm, volume`},
		{"no handler", "events = [\"vm.failed\"]\n", "no on_event function: define def on_event(ev):"},
		{"handler not a function", "events = [\"vm.failed\"]\non_event = 3\n", "on_event is int; it must be a function"},
		{"handler without parameter", "events = [\"vm.failed\"]\ndef on_event():\n    pass\n", "ha.star:2:1: on_event must take one argument"},
		{"handler with two parameters", "events = [\"vm.failed\"]\ndef on_event(a, b):\n    pass\n", "on_event must take one argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadPolicy(ctx, "ha", tc.src, Env{})
			wantError(t, err, tc.want)
			if !errors.Is(err, ErrPolicy) {
				t.Errorf("errors.Is(ErrPolicy) false for %v", err)
			}
		})
	}
	// Syntax errors and top-level errors are reported as in any script.
	_, err := LoadPolicy(ctx, "ha", "events = [\"vm.failed\"\ndef on_event(ev):\n", Env{})
	wantError(t, err, "ha.star:2:4: got def, want ']'", "    def on_event(ev):\n       ^")
	_, err = LoadPolicy(ctx, "ha.star", "events = [\"vm.failed\"]\nx = 1 // 0\n", Env{})
	wantError(t, err, "ha.star:2:7: in <toplevel>", "Error: floored division by zero")
	_, err = LoadPolicy(ctx, "loop", "events = [\"vm\"]\nwhile True:\n    pass\n", Env{})
	wantError(t, err, "script stopped: step limit of 1000000 exceeded")
	if !errors.Is(err, ErrStepLimit) {
		t.Errorf("errors.Is(ErrStepLimit) false for %v", err)
	}
	// Handlers with defaults or *args are fine.
	for _, src := range []string{
		"events = [\"vm\"]\ndef on_event(ev, verbose=False):\n    pass\n",
		"events = (\"vm\",)\ndef on_event(*args):\n    pass\n",
	} {
		if _, err := LoadPolicy(ctx, "ok", src, Env{}); err != nil {
			t.Errorf("LoadPolicy(%q): %v", src, err)
		}
	}
}

func vmObject(name, phase string) *resource.Object {
	return &resource.Object{Kind: resource.KindVM, Name: name, Labels: map[string]string{"ha": "restart"},
		Spec:   []byte(`{"cpus":1,"memory_mib":256,"power":"running","ha":"none"}`),
		Status: []byte(`{"phase":"` + phase + `","host":"hv-1","reason":"guest crashed"}`)}
}

func TestPolicyHandle(t *testing.T) {
	ctx := context.Background()
	out := &syncBuffer{}
	p, err := LoadPolicy(ctx, "ha", `
events = ["vm.failed", "host.down", "vm.*"]

def describe(ev):
    return "%s %s %s %d %s %s" % (ev.type, ev.kind, ev.name, ev.index, ev.object.phase, ev.object.labels)

def on_event(ev):
    if ev.name == "bad":
        explode(ev)
    if ev.name == "spin":
        while True:
            pass
    print(describe(ev))

def explode(ev):
    fail("cannot handle " + ev.name)
`, Env{Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Kinds(); !slices.Equal(got, []string{"vm.failed", "host.down", "vm"}) {
		t.Errorf("Kinds() = %q", got)
	}
	if p.Name() != "ha" || !p.Wants("vm.failed") || !p.Wants("vm.created") || !p.Wants("host.down") || p.Wants("host.ready") {
		t.Error("Wants is wrong")
	}
	if got := p.ResourceKinds(); !slices.Equal(got, []resource.Kind{resource.KindVM, resource.KindHost}) {
		t.Errorf("ResourceKinds() = %v", got)
	}

	if err := p.Handle(ctx, Event{Type: "vm.failed", Index: 42, Kind: resource.KindVM, Name: "web", Object: vmObject("web", "failed")}); err != nil {
		t.Fatal(err)
	}
	if want := "vm.failed vm web 42 failed {\"ha\": \"restart\"}\n"; out.String() != want {
		t.Errorf("handler printed %q, want %q", out.String(), want)
	}

	// A handler that raises: the error has the backtrace.
	err = p.Handle(ctx, Event{Type: "vm.failed", Index: 43, Kind: resource.KindVM, Name: "bad", Object: vmObject("bad", "failed")})
	se := wantError(t, err, "Traceback (most recent call last):", "ha.star:9:16: in on_event", "ha.star:16:9: in explode", "Error: fail: cannot handle bad")
	if se.Msg != "fail: cannot handle bad" {
		t.Errorf("Msg = %q", se.Msg)
	}

	// A runaway handler is stopped; the policy still works afterwards.
	start := time.Now()
	err = p.Handle(ctx, Event{Type: "vm.failed", Index: 44, Kind: resource.KindVM, Name: "spin", Object: vmObject("spin", "failed")})
	wantError(t, err, "script stopped: step limit of 1000000 exceeded", "in on_event")
	if !errors.Is(err, ErrStepLimit) {
		t.Errorf("errors.Is(ErrStepLimit) false for %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("runaway handler ran for %s", d)
	}
	slow, err := LoadPolicy(ctx, "slow", "events = [\"vm\"]\ndef on_event(ev):\n    sleep(3600)\n", Env{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = slow.Handle(ctx, Event{Type: "vm.created", Kind: resource.KindVM, Name: "x"})
	wantError(t, err, "script stopped: time limit of 100ms exceeded", "slow.star:3:10: in on_event")
	if !errors.Is(err, ErrTimeLimit) {
		t.Errorf("errors.Is(ErrTimeLimit) false for %v", err)
	}

	// An event without an object: ev.object is None.
	out2 := &syncBuffer{}
	none, err := LoadPolicy(ctx, "none", "events = [\"*\"]\ndef on_event(ev):\n    print(ev.object, ev)\n", Env{Out: out2})
	if err != nil {
		t.Fatal(err)
	}
	if err := none.Handle(ctx, Event{Type: "vm.deleted", Index: 7, Kind: resource.KindVM, Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if want := "None event(vm.deleted vm/gone at 7)\n"; out2.String() != want {
		t.Errorf("printed %q, want %q", out2.String(), want)
	}
	// The policy's globals are frozen: a handler cannot keep state.
	st, err := LoadPolicy(ctx, "state", "events = [\"vm\"]\nseen = []\ndef on_event(ev):\n    seen.append(ev.name)\n", Env{})
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, st.Handle(ctx, Event{Type: "vm.created", Kind: resource.KindVM, Name: "x"}), "cannot append to frozen list")
}

func TestEventMapper(t *testing.T) {
	m := NewEventMapper()
	types := func(ev resource.Event) string {
		var out []string
		for _, e := range m.Events(ev) {
			out = append(out, e.Type)
		}
		return strings.Join(out, ",")
	}
	host := func(state string) *resource.Object {
		return &resource.Object{Kind: resource.KindHost, Name: "hv-1", Spec: []byte(`{}`), Status: []byte(`{"state":"` + state + `"}`)}
	}
	steps := []struct {
		ev   resource.Event
		want string
	}{
		{resource.Event{Index: 1, Type: "created", Kind: "vm", Name: "web", Object: vmObject("web", "pending")}, "vm.created,vm.pending"},
		{resource.Event{Index: 2, Type: "updated", Kind: "vm", Name: "web", Object: vmObject("web", "running")}, "vm.updated,vm.running"},
		{resource.Event{Index: 3, Type: "updated", Kind: "vm", Name: "web", Object: vmObject("web", "running")}, "vm.updated"},
		{resource.Event{Index: 4, Type: "updated", Kind: "vm", Name: "web", Object: vmObject("web", "failed")}, "vm.updated,vm.failed"},
		{resource.Event{Index: 5, Type: "updated", Kind: "host", Name: "hv-1", Object: host("ready")}, "host.updated,host.ready"},
		{resource.Event{Index: 6, Type: "updated", Kind: "host", Name: "hv-1", Object: host("down")}, "host.updated,host.down"},
		{resource.Event{Index: 7, Type: "deleted", Kind: "vm", Name: "web", Object: vmObject("web", "failed")}, "vm.deleted"},
		{resource.Event{Index: 8, Type: "created", Kind: "vm", Name: "web", Object: vmObject("web", "failed")}, "vm.created,vm.failed"},
		{resource.Event{Index: 9, Type: "heartbeat"}, ""},
		{resource.Event{Index: 10, Type: "reset"}, ""},
		{resource.Event{Index: 11, Type: "updated", Kind: "host", Name: "hv-1", Object: host("down")}, "host.updated,host.down"},
	}
	for _, s := range steps {
		if got := types(s.ev); got != s.want {
			t.Errorf("event %d %s: %q, want %q", s.ev.Index, s.ev.Type, got, s.want)
		}
	}
	mt, err := NewMatcher([]string{"vm.failed", "host", "vm.failed"})
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[string]bool{"vm.failed": true, "vm.running": false, "host.down": true, "host.created": true} {
		if mt.Match(typ) != want {
			t.Errorf("Match(%q) = %v", typ, !want)
		}
	}
	if mt.String() != `["vm.failed", "host"]` {
		t.Errorf("String() = %s", mt)
	}
	if all, _ := NewMatcher([]string{"*", "vm"}); all.ResourceKinds() != nil || !all.Match("host.left") {
		t.Error("* does not match everything")
	}
}
