package conformance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
)

// Hooks are what the suite needs of a driver beyond the Driver interface.
// Nil hooks skip the tests that need them.
type Hooks struct {
	// PowerOffFromGuest makes the guest of a running domain power itself
	// off, behind the driver's back.
	PowerOffFromGuest func(t *testing.T, d hypervisor.Driver, name string)
	// Crash makes a running domain crash (or its hypervisor process die).
	Crash func(t *testing.T, d hypervisor.Driver, name string)
	// DefineForeign defines an untagged domain, behind the driver's back,
	// with the given size, running if running is true.
	DefineForeign func(t *testing.T, d hypervisor.Driver, name string, cpus int, memoryMiB int64, running bool)
	// IgnoreShutdown makes a running domain's guest ignore ACPI shutdown
	// requests, so that Shutdown must destroy it after its grace.
	IgnoreShutdown func(t *testing.T, d hypervisor.Driver, name string)
	// CutConnection makes the driver lose its hypervisor and stay cut off
	// until RestoreConnection.
	CutConnection     func(t *testing.T, d hypervisor.Driver)
	RestoreConnection func(t *testing.T, d hypervisor.Driver)
	// GuestReady waits until the guest of a running domain can answer an
	// ACPI shutdown request (a real guest must have booted first). Nil: at
	// once.
	GuestReady func(t *testing.T, d hypervisor.Driver, name string)
	// Observations returns what the driver has written to its observation
	// log so far.
	Observations func(t *testing.T, d hypervisor.Driver) []hypervisor.Observation

	// DefineForeignNetwork defines and starts a network, behind the
	// driver's back and without Kumoi's marker.
	DefineForeignNetwork func(t *testing.T, d hypervisor.Driver, def hypervisor.NetworkDef)
	// VanishNetwork and VanishVolume remove a network or a volume behind
	// the driver's back.
	VanishNetwork func(t *testing.T, d hypervisor.Driver, name string)
	VanishVolume  func(t *testing.T, d hypervisor.Driver, name string)
	// BackingImage returns the absolute path of a qcow2 image a volume
	// can be an overlay on.
	BackingImage func(t *testing.T, d hypervisor.Driver) string

	// Boot is what test domains boot (default: nothing, an empty machine).
	Boot hypervisor.Boot
	// CPUs and MemoryMiB size each test domain (default 1 and 64).
	CPUs      int
	MemoryMiB int64
	// Timeout bounds each wait for a state or an event (default 10s,
	// tripled when CI is set).
	Timeout time.Duration
	// Parallel is how many domains the concurrency test runs (default 8).
	Parallel int

	// SlowMigrations makes the driver's next migrations take several
	// seconds before they switch over (the migration tests cancel one
	// meanwhile). Nil: the cancel case is skipped.
	SlowMigrations func(t *testing.T, d hypervisor.Driver)
}

func (h *Hooks) defaults() {
	if h.CPUs <= 0 {
		h.CPUs = 1
	}
	if h.MemoryMiB <= 0 {
		h.MemoryMiB = 64
	}
	if h.Timeout <= 0 {
		h.Timeout = 10 * time.Second
	}
	if os.Getenv("CI") != "" {
		h.Timeout *= 3
	}
	if h.Parallel <= 0 {
		h.Parallel = 8
	}
}

// Run runs the suite. newDriver must return a fresh driver for each test;
// the suite closes it.
func Run(t *testing.T, newDriver func(t *testing.T) hypervisor.Driver, h Hooks) {
	h.defaults()
	tests := []struct {
		name string
		fn   func(*env)
	}{
		{"Capabilities", testCapabilities},
		{"Define", testDefine},
		{"DefineInvalid", testDefineInvalid},
		{"DefineWhileRunning", testDefineWhileRunning},
		{"Lifecycle", testLifecycle},
		{"Idempotent", testIdempotent},
		{"InvalidState", testInvalidState},
		{"NotFound", testNotFound},
		{"Unsupported", testUnsupported},
		{"Stats", testStats},
		{"Foreign", testForeign},
		{"ClusterTag", testClusterTag},
		{"GuestPowerOff", testGuestPowerOff},
		{"Crash", testCrash},
		{"ShutdownGrace", testShutdownGrace},
		{"ShutdownNoGrace", testShutdownNoGrace},
		{"CanceledContext", testCanceledContext},
		{"Concurrent", testConcurrent},
		{"ObservationLog", testObservationLog},
		{"Reconnect", testReconnect},
		{"Close", testClose},
		{"Network", testNetwork},
		{"NetworkInvalid", testNetworkInvalid},
		{"NetworkForeign", testNetworkForeign},
		{"NetworkVanished", testNetworkVanished},
		{"Volume", testVolume},
		{"VolumeBacking", testVolumeBacking},
		{"VolumeInvalid", testVolumeInvalid},
		{"VolumeVanished", testVolumeVanished},
		{"DomainDevices", testDomainDevices},
		{"DomainDevicesInvalid", testDomainDevicesInvalid},
		{"InUse", testInUse},
		{"Migrate", testMigrate},
		{"MigrateCancel", testMigrateCancel},
		{"MigrateAbortIncoming", testMigrateAbortIncoming},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(newEnv(t, newDriver, h))
		})
	}
}

// ---- environment ------------------------------------------------------------

var seq atomic.Uint64

type env struct {
	t    *testing.T
	d    hypervisor.Driver
	h    Hooks
	caps hypervisor.Capabilities
	rec  *recorder
	// newDriver makes another driver (the migration tests use two).
	newDriver func(*testing.T) hypervisor.Driver

	mu       sync.Mutex
	names    []string
	networks []string
	volumes  []string
}

func newEnv(t *testing.T, newDriver func(*testing.T) hypervisor.Driver, h Hooks) *env {
	t.Helper()
	d := newDriver(t)
	if d == nil {
		t.Fatal("newDriver returned nil")
	}
	e := &env{t: t, d: d, h: h, caps: d.Capabilities(), rec: newRecorder(d.Events()), newDriver: newDriver}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Cleanup(e.cleanupNetStore) // runs after the domains are gone
	t.Cleanup(e.cleanupDomains)  // runs before Close
	return e
}

func (e *env) cleanupDomains() {
	e.mu.Lock()
	names := e.names
	e.mu.Unlock()
	for _, n := range names {
		ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
		_ = e.d.Destroy(ctx, n)
		if err := e.d.Undefine(ctx, n); err != nil && !errors.Is(err, hypervisor.ErrNotFound) &&
			!errors.Is(err, hypervisor.ErrUnavailable) {
			e.t.Logf("cleanup: undefine %s: %v", n, err)
		}
		cancel()
	}
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
	e.t.Cleanup(cancel)
	return ctx
}

// name returns a fresh domain name, unique across test processes, and
// remembers it for cleanup.
func (e *env) name() string {
	n := fmt.Sprintf("kumoi-conf-%d-%d", os.Getpid(), seq.Add(1))
	e.mu.Lock()
	e.names = append(e.names, n)
	e.mu.Unlock()
	return n
}

// testCluster is the cluster identity test domains are tagged with.
const testCluster = "0b5e7a52-6f7e-4c55-9d6e-3f2a1c9b8d70"

func (e *env) spec() hypervisor.DomainSpec {
	n := e.name()
	return hypervisor.DomainSpec{
		Name: n, VMID: "vm-" + n, Epoch: 7, Cluster: testCluster,
		CPUs: e.h.CPUs, MemoryMiB: e.h.MemoryMiB, Boot: e.h.Boot,
	}
}

func (e *env) must(what string, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

func (e *env) mustIs(what string, err, target error) {
	e.t.Helper()
	if !errors.Is(err, target) {
		e.t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

// mustRefuseAll calls do with base changed by each of bad, in the order
// of their names, and fails unless every call is refused with
// hypervisor.ErrInvalidSpec ("what (name)" in the failure).
func mustRefuseAll[T any](e *env, what string, base T, bad map[string]func(*T), do func(T) error) {
	e.t.Helper()
	for _, k := range slices.Sorted(maps.Keys(bad)) {
		v := base
		bad[k](&v)
		e.mustIs(what+" ("+k+")", do(v), hypervisor.ErrInvalidSpec)
	}
}

func (e *env) define(s hypervisor.DomainSpec) {
	e.t.Helper()
	e.must("Define "+s.Name, e.d.Define(e.ctx(), s))
}

// running defines and starts a domain and waits until it runs.
func (e *env) running() hypervisor.DomainSpec {
	e.t.Helper()
	s := e.spec()
	e.define(s)
	e.must("Start "+s.Name, e.d.Start(e.ctx(), s.Name))
	e.waitState(s.Name, hypervisor.StateRunning)
	return s
}

func (e *env) get(name string) hypervisor.DomainInfo {
	e.t.Helper()
	in, err := e.d.Get(e.ctx(), name)
	e.must("Get "+name, err)
	return in
}

// waitState polls Get until the domain is in one of states.
func (e *env) waitState(name string, states ...hypervisor.State) hypervisor.DomainInfo {
	e.t.Helper()
	var last hypervisor.DomainInfo
	var lastErr error
	ok := poll(e.h.Timeout, func() bool {
		last, lastErr = e.d.Get(context.Background(), name)
		if lastErr != nil {
			return false
		}
		for _, s := range states {
			if last.State == s {
				return true
			}
		}
		return false
	})
	if !ok {
		e.t.Fatalf("domain %s: want state %v within %v; last: %+v (err %v)", name, states, e.h.Timeout, last, lastErr)
	}
	return last
}

// waitEvent waits for an event after mark (a recorder length) that
// matches; it checks the Kumoi tag against s when s.VMID is set.
func (e *env) waitEvent(mark int, s hypervisor.DomainSpec, kind hypervisor.EventKind, reasons ...string) hypervisor.Event {
	e.t.Helper()
	if !e.caps.Has(hypervisor.CapEvents) {
		return hypervisor.Event{}
	}
	match := func(ev hypervisor.Event) bool {
		if ev.Domain != s.Name || ev.Kind != kind {
			return false
		}
		if len(reasons) == 0 {
			return true
		}
		for _, r := range reasons {
			if ev.Reason == r {
				return true
			}
		}
		return false
	}
	ev, ok := e.rec.waitFor(mark, e.h.Timeout, match)
	if !ok {
		e.t.Fatalf("no %s event (reason %v) for %s within %v; events after mark %d: %+v",
			kind, reasons, s.Name, e.h.Timeout, mark, e.rec.since(mark))
	}
	if s.VMID != "" && (ev.VMID != s.VMID || ev.Epoch != s.Epoch) {
		e.t.Errorf("%s event for %s: tag (%q, %d), want (%q, %d)", kind, s.Name, ev.VMID, ev.Epoch, s.VMID, s.Epoch)
	}
	if ev.Time.IsZero() || time.Since(ev.Time) > time.Hour || time.Until(ev.Time) > time.Minute {
		e.t.Errorf("%s event for %s: implausible time %v", kind, s.Name, ev.Time)
	}
	return ev
}

func (e *env) guestReady(name string) {
	e.t.Helper()
	if e.h.GuestReady != nil {
		e.h.GuestReady(e.t, e.d, name)
	}
}

func (e *env) needHook(ok bool, hook string) {
	e.t.Helper()
	if !ok {
		e.t.Skipf("driver test gives no %s hook", hook)
	}
}

func (e *env) needCap(c hypervisor.Capability) {
	e.t.Helper()
	if !e.caps.Has(c) {
		e.t.Skipf("driver lacks capability %s", c)
	}
}

// poll calls cond until it is true or timeout passes, backing off from 1ms
// to 50ms between calls.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		t := time.NewTimer(wait)
		<-t.C
		if wait < 50*time.Millisecond {
			wait *= 2
		}
	}
}

// ---- event recorder -----------------------------------------------------------

type recorder struct {
	mu      sync.Mutex
	events  []hypervisor.Event
	changed chan struct{}
	closed  bool
}

func newRecorder(ch <-chan hypervisor.Event) *recorder {
	r := &recorder{changed: make(chan struct{})}
	go func() {
		for ev := range ch {
			r.mu.Lock()
			r.events = append(r.events, ev)
			close(r.changed)
			r.changed = make(chan struct{})
			r.mu.Unlock()
		}
		r.mu.Lock()
		r.closed = true
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}()
	return r
}

func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) since(mark int) []hypervisor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hypervisor.Event(nil), r.events[mark:]...)
}

func (r *recorder) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *recorder) waitFor(mark int, timeout time.Duration, match func(hypervisor.Event) bool) (hypervisor.Event, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, ev := range r.events[mark:] {
			if match(ev) {
				r.mu.Unlock()
				return ev, true
			}
		}
		mark = len(r.events)
		changed, closed := r.changed, r.closed
		r.mu.Unlock()
		if closed {
			return hypervisor.Event{}, false
		}
		select {
		case <-changed:
		case <-deadline.C:
			return hypervisor.Event{}, false
		}
	}
}

// ---- tests ------------------------------------------------------------------------

func testCapabilities(e *env) {
	if e.caps == nil {
		e.t.Fatal("Capabilities returned nil")
	}
	for _, c := range e.caps.List() {
		known := false
		for _, k := range hypervisor.AllCapabilities {
			known = known || c == k
		}
		if !known {
			e.t.Errorf("unknown capability %q", c)
		}
	}
	if ch1, ch2 := e.d.Events(), e.d.Events(); ch1 == nil || ch1 != ch2 {
		e.t.Error("Events must return one non-nil channel")
	}
	e.must("Health", e.d.Health(e.ctx()))
	e.t.Logf("capabilities: %s", e.caps)
}

func testDefine(e *env) {
	s := e.spec()
	mark := e.rec.mark()
	e.define(s)
	e.waitEvent(mark, s, hypervisor.EventDefined)
	in := e.get(s.Name)
	want := hypervisor.DomainInfo{Name: s.Name, VMID: s.VMID, Epoch: s.Epoch, Kumoi: true, Cluster: s.Cluster,
		State: hypervisor.StateShutoff, CPUs: s.CPUs, MemoryMiB: s.MemoryMiB}
	in.Reason = ""
	if !reflect.DeepEqual(in, want) {
		e.t.Fatalf("Get after Define: got %+v, want %+v", in, want)
	}
	list, err := e.d.List(e.ctx())
	e.must("List", err)
	if !sort.SliceIsSorted(list, func(i, j int) bool { return list[i].Name < list[j].Name }) {
		e.t.Errorf("List not sorted by name: %+v", list)
	}
	found := 0
	for _, l := range list {
		if l.Name == s.Name {
			found++
			l.Reason = ""
			if !reflect.DeepEqual(l, want) {
				e.t.Errorf("List entry: got %+v, want %+v", l, want)
			}
		}
	}
	if found != 1 {
		e.t.Fatalf("List has %s %d times, want once", s.Name, found)
	}

	// Same spec again: no-op.
	e.must("Define again", e.d.Define(e.ctx(), s))
	if got := e.get(s.Name); got.Epoch != s.Epoch || got.VMID != s.VMID {
		e.t.Fatalf("Define again changed the domain: %+v", got)
	}

	// Same VM, new epoch and size: updated.
	s2 := s
	s2.Epoch++
	s2.CPUs++
	s2.MemoryMiB *= 2
	mark = e.rec.mark()
	e.must("Define update", e.d.Define(e.ctx(), s2))
	e.waitEvent(mark, s2, hypervisor.EventDefined)
	if got := e.get(s.Name); got.Epoch != s2.Epoch || got.CPUs != s2.CPUs || got.MemoryMiB != s2.MemoryMiB {
		e.t.Fatalf("after update: got %+v, want epoch %d, cpus %d, memory %d", got, s2.Epoch, s2.CPUs, s2.MemoryMiB)
	}

	// Another VM id under the same name: refused, nothing changed.
	s3 := s2
	s3.VMID = "another-vm"
	e.mustIs("Define with another VM id", e.d.Define(e.ctx(), s3), hypervisor.ErrExists)
	if got := e.get(s.Name); got.VMID != s2.VMID || got.Epoch != s2.Epoch {
		e.t.Fatalf("refused Define changed the domain: %+v", got)
	}

	// Undefine: gone, event, NotFound.
	mark = e.rec.mark()
	e.must("Undefine", e.d.Undefine(e.ctx(), s.Name))
	e.waitEvent(mark, s2, hypervisor.EventUndefined)
	_, err = e.d.Get(e.ctx(), s.Name)
	e.mustIs("Get after Undefine", err, hypervisor.ErrNotFound)
}

func testDefineInvalid(e *env) {
	base := e.spec()
	bad := map[string]func(*hypervisor.DomainSpec){
		"no name":         func(s *hypervisor.DomainSpec) { s.Name = "" },
		"bad name":        func(s *hypervisor.DomainSpec) { s.Name = "kumoi-a b/c" },
		"no vm id":        func(s *hypervisor.DomainSpec) { s.VMID = "" },
		"zero cpus":       func(s *hypervisor.DomainSpec) { s.CPUs = 0 },
		"zero memory":     func(s *hypervisor.DomainSpec) { s.MemoryMiB = 0 },
		"bad format":      func(s *hypervisor.DomainSpec) { s.Boot = hypervisor.Boot{Image: "/x.img", ImageFormat: "vmdk"} },
		"initrd, no kern": func(s *hypervisor.DomainSpec) { s.Boot = hypervisor.Boot{Initrd: "/initrd"} },
	}
	mustRefuseAll(e, "Define", base, bad, func(s hypervisor.DomainSpec) error { return e.d.Define(e.ctx(), s) })
	_, err := e.d.Get(e.ctx(), base.Name)
	e.mustIs("Get after invalid Defines", err, hypervisor.ErrNotFound)
}

func testDefineWhileRunning(e *env) {
	s := e.running()
	s2 := s
	s2.Epoch++
	s2.CPUs++
	e.must("Define while running", e.d.Define(e.ctx(), s2))
	in := e.get(s.Name)
	if in.State != hypervisor.StateRunning || in.Epoch != s2.Epoch || in.CPUs != s.CPUs {
		e.t.Fatalf("after Define while running: got %+v; want running, epoch %d at once, cpus %d until restart",
			in, s2.Epoch, s.CPUs)
	}
	mark := e.rec.mark()
	e.must("Destroy", e.d.Destroy(e.ctx(), s.Name))
	ev := e.waitEvent(mark, s2, hypervisor.EventStopped, hypervisor.StopDestroyed)
	_ = ev
	if in := e.waitState(s.Name, hypervisor.StateShutoff); in.CPUs != s2.CPUs || in.Epoch != s2.Epoch {
		e.t.Fatalf("after restart point: got %+v, want cpus %d epoch %d", in, s2.CPUs, s2.Epoch)
	}
	e.must("Start", e.d.Start(e.ctx(), s.Name))
	if in := e.waitState(s.Name, hypervisor.StateRunning); in.CPUs != s2.CPUs {
		e.t.Fatalf("restarted with %d cpus, want %d", in.CPUs, s2.CPUs)
	}
}

func testLifecycle(e *env) {
	s := e.spec()
	e.define(s)

	mark := e.rec.mark()
	e.must("Start", e.d.Start(e.ctx(), s.Name))
	e.waitEvent(mark, s, hypervisor.EventStarted)
	e.waitState(s.Name, hypervisor.StateRunning)

	if e.caps.Has(hypervisor.CapSuspend) {
		mark = e.rec.mark()
		e.must("Suspend", e.d.Suspend(e.ctx(), s.Name))
		e.waitEvent(mark, s, hypervisor.EventSuspended)
		e.waitState(s.Name, hypervisor.StatePaused)

		mark = e.rec.mark()
		e.must("Resume", e.d.Resume(e.ctx(), s.Name))
		e.waitEvent(mark, s, hypervisor.EventResumed)
		e.waitState(s.Name, hypervisor.StateRunning)
	}
	e.guestReady(s.Name)
	mark = e.rec.mark()
	e.must("Shutdown", e.d.Shutdown(e.ctx(), s.Name, e.h.Timeout/2))
	if in := e.get(s.Name); in.State.Active() {
		e.t.Fatalf("Shutdown returned but the domain is %s", in.State)
	}
	if e.caps.Has(hypervisor.CapGracefulShutdown) {
		e.waitEvent(mark, s, hypervisor.EventStopped, hypervisor.StopShutdown)
	} else {
		e.waitEvent(mark, s, hypervisor.EventStopped, hypervisor.StopDestroyed)
	}

	mark = e.rec.mark()
	e.must("Start again", e.d.Start(e.ctx(), s.Name))
	e.waitEvent(mark, s, hypervisor.EventStarted)
	e.waitState(s.Name, hypervisor.StateRunning)

	if e.caps.Has(hypervisor.CapReboot) {
		e.must("Reboot", e.d.Reboot(e.ctx(), s.Name))
		e.waitState(s.Name, hypervisor.StateRunning)
	}

	mark = e.rec.mark()
	e.must("Destroy", e.d.Destroy(e.ctx(), s.Name))
	e.waitEvent(mark, s, hypervisor.EventStopped, hypervisor.StopDestroyed)
	if in := e.get(s.Name); in.State != hypervisor.StateShutoff || in.Reason != hypervisor.StopDestroyed {
		e.t.Fatalf("after Destroy: got %+v, want shutoff (destroyed)", in)
	}

	mark = e.rec.mark()
	e.must("Undefine", e.d.Undefine(e.ctx(), s.Name))
	e.waitEvent(mark, s, hypervisor.EventUndefined)
	_, err := e.d.Get(e.ctx(), s.Name)
	e.mustIs("Get after Undefine", err, hypervisor.ErrNotFound)
}

func testIdempotent(e *env) {
	s := e.running()
	e.must("Start a running domain", e.d.Start(e.ctx(), s.Name))
	e.must("Resume a running domain", ignoreUnsupported(e, e.d.Resume(e.ctx(), s.Name)))
	if e.caps.Has(hypervisor.CapSuspend) {
		e.must("Suspend", e.d.Suspend(e.ctx(), s.Name))
		e.waitState(s.Name, hypervisor.StatePaused)
		e.must("Suspend a paused domain", e.d.Suspend(e.ctx(), s.Name))
		e.must("Resume", e.d.Resume(e.ctx(), s.Name))
		e.waitState(s.Name, hypervisor.StateRunning)
	}
	e.must("Destroy", e.d.Destroy(e.ctx(), s.Name))
	e.waitState(s.Name, hypervisor.StateShutoff)
	e.must("Destroy a stopped domain", e.d.Destroy(e.ctx(), s.Name))
	e.must("Shutdown a stopped domain", e.d.Shutdown(e.ctx(), s.Name, time.Second))
	if in := e.get(s.Name); in.State != hypervisor.StateShutoff {
		e.t.Fatalf("no-ops changed the state to %s", in.State)
	}
}

func ignoreUnsupported(e *env, err error) error {
	if errors.Is(err, hypervisor.ErrUnsupported) && !e.caps.Has(hypervisor.CapSuspend) {
		return nil
	}
	return err
}

func testInvalidState(e *env) {
	s := e.spec()
	e.define(s)
	if e.caps.Has(hypervisor.CapSuspend) {
		e.mustIs("Suspend a stopped domain", e.d.Suspend(e.ctx(), s.Name), hypervisor.ErrInvalidState)
		e.mustIs("Resume a stopped domain", e.d.Resume(e.ctx(), s.Name), hypervisor.ErrInvalidState)
	}
	if e.caps.Has(hypervisor.CapReboot) {
		e.mustIs("Reboot a stopped domain", e.d.Reboot(e.ctx(), s.Name), hypervisor.ErrInvalidState)
	}
	e.must("Start", e.d.Start(e.ctx(), s.Name))
	e.waitState(s.Name, hypervisor.StateRunning)
	e.mustIs("Undefine a running domain", e.d.Undefine(e.ctx(), s.Name), hypervisor.ErrInvalidState)
	if e.caps.Has(hypervisor.CapSuspend) {
		e.must("Suspend", e.d.Suspend(e.ctx(), s.Name))
		e.waitState(s.Name, hypervisor.StatePaused)
		e.mustIs("Start a paused domain", e.d.Start(e.ctx(), s.Name), hypervisor.ErrInvalidState)
		if e.caps.Has(hypervisor.CapReboot) {
			e.mustIs("Reboot a paused domain", e.d.Reboot(e.ctx(), s.Name), hypervisor.ErrInvalidState)
		}
		e.mustIs("Undefine a paused domain", e.d.Undefine(e.ctx(), s.Name), hypervisor.ErrInvalidState)
	}
	if in := e.get(s.Name); !in.State.Active() {
		e.t.Fatalf("refused operations stopped the domain: %+v", in)
	}
}

func testNotFound(e *env) {
	n := e.name()
	ctx := e.ctx()
	ops := map[string]error{
		"Start":    e.d.Start(ctx, n),
		"Shutdown": e.d.Shutdown(ctx, n, time.Second),
		"Destroy":  e.d.Destroy(ctx, n),
		"Undefine": e.d.Undefine(ctx, n),
	}
	if e.caps.Has(hypervisor.CapSuspend) {
		ops["Suspend"] = e.d.Suspend(ctx, n)
		ops["Resume"] = e.d.Resume(ctx, n)
	}
	if e.caps.Has(hypervisor.CapReboot) {
		ops["Reboot"] = e.d.Reboot(ctx, n)
	}
	_, ops["Get"] = e.d.Get(ctx, n)
	for op, err := range ops {
		e.mustIs(op+" of an unknown domain", err, hypervisor.ErrNotFound)
	}
}

func testUnsupported(e *env) {
	missing := 0
	for _, c := range hypervisor.AllCapabilities {
		if !e.caps.Has(c) {
			missing++
		}
	}
	if missing == 0 {
		e.t.Skip("driver has every capability")
	}
	if !e.caps.Has(hypervisor.CapKernelBoot) {
		s := e.spec()
		s.Boot = hypervisor.Boot{Kernel: "/boot/vmlinuz", Cmdline: "console=ttyS0"}
		e.mustIs("Define with a kernel", e.d.Define(e.ctx(), s), hypervisor.ErrUnsupported)
	}
	if !e.caps.Has(hypervisor.CapDiskBoot) {
		s := e.spec()
		s.Boot = hypervisor.Boot{Image: "/var/lib/kumoi/disk.qcow2"}
		e.mustIs("Define with an image", e.d.Define(e.ctx(), s), hypervisor.ErrUnsupported)
	}
	s := e.running()
	if !e.caps.Has(hypervisor.CapSuspend) {
		e.mustIs("Suspend", e.d.Suspend(e.ctx(), s.Name), hypervisor.ErrUnsupported)
		e.mustIs("Resume", e.d.Resume(e.ctx(), s.Name), hypervisor.ErrUnsupported)
	}
	if !e.caps.Has(hypervisor.CapReboot) {
		e.mustIs("Reboot", e.d.Reboot(e.ctx(), s.Name), hypervisor.ErrUnsupported)
	}
	if !e.caps.Has(hypervisor.CapGracefulShutdown) {
		mark := e.rec.mark()
		e.must("Shutdown", e.d.Shutdown(e.ctx(), s.Name, time.Hour))
		e.waitEvent(mark, s, hypervisor.EventStopped, hypervisor.StopDestroyed)
	}
}

func testStats(e *env) {
	base, err := e.d.Stats(e.ctx())
	e.must("Stats", err)
	if base.CPUs < 1 || base.MemoryMiB < 1 {
		e.t.Fatalf("Stats: capacity %d cpus, %d MiB; want both positive", base.CPUs, base.MemoryMiB)
	}
	s := e.spec()
	e.define(s)
	st, err := e.d.Stats(e.ctx())
	e.must("Stats", err)
	if st.AllocatedCPUs != base.AllocatedCPUs || st.AllocatedMemoryMiB != base.AllocatedMemoryMiB ||
		st.Domains != base.Domains+1 {
		e.t.Fatalf("a defined, stopped domain: stats %+v, base %+v; want allocation unchanged, one more domain", st, base)
	}
	e.must("Start", e.d.Start(e.ctx(), s.Name))
	e.waitState(s.Name, hypervisor.StateRunning)
	st, err = e.d.Stats(e.ctx())
	e.must("Stats", err)
	if st.AllocatedCPUs != base.AllocatedCPUs+s.CPUs || st.AllocatedMemoryMiB != base.AllocatedMemoryMiB+s.MemoryMiB ||
		st.ActiveDomains != base.ActiveDomains+1 {
		e.t.Fatalf("running: stats %+v, base %+v; want +%d cpus, +%d MiB, +1 active", st, base, s.CPUs, s.MemoryMiB)
	}
	if e.caps.Has(hypervisor.CapSuspend) {
		e.must("Suspend", e.d.Suspend(e.ctx(), s.Name))
		e.waitState(s.Name, hypervisor.StatePaused)
		st2, err := e.d.Stats(e.ctx())
		e.must("Stats", err)
		if st2.AllocatedCPUs != st.AllocatedCPUs || st2.AllocatedMemoryMiB != st.AllocatedMemoryMiB {
			e.t.Fatalf("paused domains hold their resources: stats %+v, want %+v", st2, st)
		}
	}
	e.must("Destroy", e.d.Destroy(e.ctx(), s.Name))
	e.waitState(s.Name, hypervisor.StateShutoff)
	st, err = e.d.Stats(e.ctx())
	e.must("Stats", err)
	if st.AllocatedCPUs != base.AllocatedCPUs || st.AllocatedMemoryMiB != base.AllocatedMemoryMiB {
		e.t.Fatalf("after Destroy: stats %+v, want allocation of %+v", st, base)
	}
}

func testForeign(e *env) {
	e.needHook(e.h.DefineForeign != nil, "DefineForeign")
	base, err := e.d.Stats(e.ctx())
	e.must("Stats", err)
	n := e.name()
	mark := e.rec.mark()
	e.h.DefineForeign(e.t, e.d, n, 1, 32, true)
	list, err := e.d.List(e.ctx())
	e.must("List", err)
	var got *hypervisor.DomainInfo
	for i := range list {
		if list[i].Name == n {
			got = &list[i]
		}
	}
	if got == nil {
		e.t.Fatalf("List does not show foreign domain %s: %+v", n, list)
	}
	if got.Kumoi || got.VMID != "" || got.Epoch != 0 {
		e.t.Fatalf("foreign domain looks tagged: %+v", *got)
	}
	in := e.waitState(n, hypervisor.StateRunning)
	if in.CPUs != 1 || in.MemoryMiB != 32 {
		e.t.Fatalf("foreign domain size: %+v, want 1 cpu, 32 MiB", in)
	}
	e.waitEvent(mark, hypervisor.DomainSpec{Name: n}, hypervisor.EventStarted)
	if ev := e.rec.since(mark); e.caps.Has(hypervisor.CapEvents) {
		for _, x := range ev {
			if x.Domain == n && x.VMID != "" {
				e.t.Errorf("event of a foreign domain carries a tag: %+v", x)
			}
		}
	}
	st, err := e.d.Stats(e.ctx())
	e.must("Stats", err)
	if st.AllocatedCPUs != base.AllocatedCPUs+1 || st.AllocatedMemoryMiB != base.AllocatedMemoryMiB+32 {
		e.t.Fatalf("foreign domains count in the allocation: stats %+v, base %+v", st, base)
	}
	// Kumoi will not take a foreign domain's name.
	s := e.spec()
	s.Name = n
	e.mustIs("Define over a foreign domain", e.d.Define(e.ctx(), s), hypervisor.ErrExists)
	if in := e.get(n); in.Kumoi {
		e.t.Fatalf("refused Define tagged the foreign domain: %+v", in)
	}
}

// testClusterTag: the cluster identity round-trips through Define, Get
// and List; a domain defined without one (as builds older than cluster
// identity did) reads back with none; redefining it with one (a new
// epoch) tags it, at once while it runs.
func testClusterTag(e *env) {
	s := e.spec()
	s.Cluster = ""
	e.define(s)
	if in := e.get(s.Name); !in.Kumoi || in.Cluster != "" || in.VMID != s.VMID {
		e.t.Fatalf("domain defined without a cluster: got %+v, want tagged with vm %s and no cluster", in, s.VMID)
	}
	e.must("Start "+s.Name, e.d.Start(e.ctx(), s.Name))
	e.waitState(s.Name, hypervisor.StateRunning)
	s2 := s
	s2.Epoch++
	s2.Cluster = testCluster
	e.must("Define with a cluster while running", e.d.Define(e.ctx(), s2))
	if in := e.get(s.Name); in.Cluster != testCluster || in.Epoch != s2.Epoch || in.State != hypervisor.StateRunning {
		e.t.Fatalf("after Define with cluster %s while running: got %+v", testCluster, in)
	}
	list, err := e.d.List(e.ctx())
	e.must("List", err)
	found := false
	for _, l := range list {
		if l.Name == s.Name {
			found = true
			if l.Cluster != testCluster {
				e.t.Fatalf("List shows cluster %q for %s, want %s", l.Cluster, s.Name, testCluster)
			}
		}
	}
	if !found {
		e.t.Fatalf("List does not show %s", s.Name)
	}
	e.must("Destroy", e.d.Destroy(e.ctx(), s.Name))
	if in := e.waitState(s.Name, hypervisor.StateShutoff); in.Cluster != testCluster {
		e.t.Fatalf("after Destroy the domain's cluster is %q, want %s (persistent definition)", in.Cluster, testCluster)
	}
	bad := s2
	bad.Cluster = "not a cluster <id>"
	e.mustIs("Define with a malformed cluster", e.d.Define(e.ctx(), bad), hypervisor.ErrInvalidSpec)
}

func testGuestPowerOff(e *env) {
	e.needHook(e.h.PowerOffFromGuest != nil, "PowerOffFromGuest")
	s := e.running()
	e.guestReady(s.Name)
	mark := e.rec.mark()
	e.h.PowerOffFromGuest(e.t, e.d, s.Name)
	e.waitEvent(mark, s, hypervisor.EventStopped, hypervisor.StopShutdown)
	in := e.waitState(s.Name, hypervisor.StateShutoff)
	if !in.Kumoi || in.VMID != s.VMID {
		e.t.Fatalf("after guest power-off: %+v", in)
	}
}

func testCrash(e *env) {
	e.needHook(e.h.Crash != nil, "Crash")
	s := e.running()
	mark := e.rec.mark()
	e.h.Crash(e.t, e.d, s.Name)
	e.waitEvent(mark, s, hypervisor.EventStopped, hypervisor.StopCrashed, hypervisor.StopFailed)
	e.waitState(s.Name, hypervisor.StateShutoff, hypervisor.StateCrashed)
}

func testShutdownGrace(e *env) {
	e.needCap(hypervisor.CapGracefulShutdown)
	e.needHook(e.h.IgnoreShutdown != nil, "IgnoreShutdown")
	s := e.running()
	e.h.IgnoreShutdown(e.t, e.d, s.Name)
	mark := e.rec.mark()
	grace := 300 * time.Millisecond
	start := time.Now()
	e.must("Shutdown", e.d.Shutdown(e.ctx(), s.Name, grace))
	if el := time.Since(start); el < grace {
		e.t.Errorf("Shutdown of a guest that ignores ACPI returned after %v, before its grace %v", el, grace)
	}
	e.waitEvent(mark, s, hypervisor.EventStopped, hypervisor.StopDestroyed)
	if in := e.get(s.Name); in.State != hypervisor.StateShutoff {
		e.t.Fatalf("after Shutdown: %+v", in)
	}
}

func testShutdownNoGrace(e *env) {
	s := e.running()
	mark := e.rec.mark()
	e.must("Shutdown(0)", e.d.Shutdown(e.ctx(), s.Name, 0))
	e.waitEvent(mark, s, hypervisor.EventStopped, hypervisor.StopDestroyed)
	if in := e.get(s.Name); in.State != hypervisor.StateShutoff {
		e.t.Fatalf("after Shutdown(0): %+v", in)
	}
}

func testCanceledContext(e *env) {
	s := e.spec()
	e.define(s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errs := map[string]error{
		"Define": e.d.Define(ctx, e.spec()),
		"Start":  e.d.Start(ctx, s.Name),
		"Health": e.d.Health(ctx),
	}
	_, errs["List"] = e.d.List(ctx)
	_, errs["Stats"] = e.d.Stats(ctx)
	for op, err := range errs {
		e.mustIs(op+" with a canceled context", err, context.Canceled)
	}
	if in := e.get(s.Name); in.State != hypervisor.StateShutoff {
		e.t.Fatalf("Start with a canceled context started the domain: %+v", in)
	}
}

func testConcurrent(e *env) {
	specs := make([]hypervisor.DomainSpec, e.h.Parallel)
	for i := range specs {
		specs[i] = e.spec()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(specs))
	for _, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := e.ctx()
			for _, step := range []func() error{
				func() error { return e.d.Define(ctx, s) },
				func() error { return e.d.Define(ctx, s) },
				func() error { return e.d.Start(ctx, s.Name) },
				func() error { return e.d.Start(ctx, s.Name) },
			} {
				if err := step(); err != nil {
					errs <- fmt.Errorf("%s: %w", s.Name, err)
					return
				}
			}
			_, err := e.d.List(ctx)
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e.t.Error(err)
	}
	for _, s := range specs {
		e.waitState(s.Name, hypervisor.StateRunning)
	}
	for _, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.d.Destroy(e.ctx(), s.Name); err != nil {
				e.t.Errorf("Destroy %s: %v", s.Name, err)
			}
			if err := e.d.Undefine(e.ctx(), s.Name); err != nil {
				e.t.Errorf("Undefine %s: %v", s.Name, err)
			}
		}()
	}
	wg.Wait()
}

func testObservationLog(e *env) {
	e.needHook(e.h.Observations != nil, "Observations")
	s := e.running()
	e.must("Destroy", e.d.Destroy(e.ctx(), s.Name))
	e.waitState(s.Name, hypervisor.StateShutoff)
	var got []hypervisor.Observation
	ok := poll(e.h.Timeout, func() bool {
		got = got[:0]
		for _, o := range e.h.Observations(e.t, e.d) {
			if o.Domain == s.Name {
				got = append(got, o)
			}
		}
		return len(got) >= 2
	})
	if !ok || len(got) != 2 || got[0].Event != hypervisor.ObserveStart || got[1].Event != hypervisor.ObserveStop {
		e.t.Fatalf("observation log for %s: %+v; want one start then one stop", s.Name, got)
	}
	for _, o := range got {
		if o.VMID != s.VMID || o.Epoch != s.Epoch || o.Host == "" || o.Time.IsZero() {
			e.t.Errorf("observation %+v: want vm_id %q, epoch %d, a host and a time", o, s.VMID, s.Epoch)
		}
	}
	if got[1].Time.Before(got[0].Time) {
		e.t.Errorf("stop %v before start %v", got[1].Time, got[0].Time)
	}
}

func testReconnect(e *env) {
	e.needHook(e.h.CutConnection != nil && e.h.RestoreConnection != nil, "CutConnection/RestoreConnection")
	s := e.spec()
	e.define(s)
	e.h.CutConnection(e.t, e.d)
	ok := poll(e.h.Timeout, func() bool { return errors.Is(e.d.Health(context.Background()), hypervisor.ErrUnavailable) })
	if !ok {
		e.t.Fatalf("Health still %v after the connection was cut", e.d.Health(context.Background()))
	}
	_, err := e.d.Get(e.ctx(), s.Name)
	e.mustIs("Get while cut off", err, hypervisor.ErrUnavailable)
	e.mustIs("Start while cut off", e.d.Start(e.ctx(), s.Name), hypervisor.ErrUnavailable)
	_, err = e.d.List(e.ctx())
	e.mustIs("List while cut off", err, hypervisor.ErrUnavailable)
	_, err = e.d.Stats(e.ctx())
	e.mustIs("Stats while cut off", err, hypervisor.ErrUnavailable)

	mark := e.rec.mark()
	e.h.RestoreConnection(e.t, e.d)
	if !poll(e.h.Timeout, func() bool { return e.d.Health(context.Background()) == nil }) {
		e.t.Fatalf("Health after restore: %v", e.d.Health(context.Background()))
	}
	if e.caps.Has(hypervisor.CapEvents) {
		if _, ok := e.rec.waitFor(mark, e.h.Timeout, func(ev hypervisor.Event) bool {
			return ev.Kind == hypervisor.EventResync
		}); !ok {
			e.t.Fatalf("no resync event after reconnect; events: %+v", e.rec.since(mark))
		}
	}
	_, err = e.d.List(e.ctx())
	e.must("List after reconnect", err)
}

func testClose(e *env) {
	e.must("Close", e.d.Close())
	if !poll(e.h.Timeout, e.rec.isClosed) {
		e.t.Fatal("Events channel not closed after Close")
	}
	_, err := e.d.List(e.ctx())
	e.mustIs("List after Close", err, hypervisor.ErrUnavailable)
	e.mustIs("Health after Close", e.d.Health(e.ctx()), hypervisor.ErrUnavailable)
	e.must("Close again", e.d.Close())
}
