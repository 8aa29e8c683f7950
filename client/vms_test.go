package client_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// putVM stores a VM with the given power, phase and host, as the system
// would have left it.
func putVM(tb testing.TB, s *testapi.Server, name, power, phase, host string) *resource.Object {
	tb.Helper()
	return s.Put(tb, resource.KindVM, name, map[string]string{"app": "web"},
		resource.VMSpec{CPUs: 1, MemoryMiB: 256, Power: power},
		resource.VMStatus{Phase: phase, Host: host, Epoch: 1})
}

// apiCode returns the API error code of err, or "".
func apiCode(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

func names[T interface{ Name() string }](xs []T) []string {
	out := []string{}
	for _, x := range xs {
		out = append(out, x.Name())
	}
	return out
}

func TestVMsCreateGetListDelete(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	vms := newClient(t, s.URL).VMs()
	ctx := context.Background()

	vm, err := vms.Create(ctx, "web", resource.VMSpec{CPUs: 2, MemoryMiB: 1024}, map[string]string{"app": "web"})
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name() != "web" || vm.Phase() != resource.PhasePending || vm.Spec.CPUs != 2 || vm.Spec.MemoryMiB != 1024 ||
		vm.Spec.Power != resource.PowerRunning || vm.Spec.HA != resource.HANone || vm.Object.Labels["app"] != "web" || vm.Object.ID == "" {
		t.Fatalf("created %+v / %+v", vm, vm.Object)
	}
	if _, err := vms.Create(ctx, "db", resource.VMSpec{CPUs: 1, MemoryMiB: 512}, nil); err != nil {
		t.Fatal(err)
	}

	// Bad input: a taken name, a wrong spec, a bad name.
	_, err = vms.Create(ctx, "web", resource.VMSpec{CPUs: 1, MemoryMiB: 1}, nil)
	if !errors.Is(err, client.ErrAlreadyExists) || !client.IsConflict(err) {
		t.Errorf("duplicate create: %v", err)
	}
	_, err = vms.Create(ctx, "x", resource.VMSpec{CPUs: 0, MemoryMiB: 1}, nil)
	var ae *client.APIError
	if !errors.Is(err, resource.ErrInvalid) || !errors.As(err, &ae) || ae.Field != "spec.cpus" {
		t.Errorf("create with 0 cpus: %v", err)
	}
	if _, err := vms.Create(ctx, "Not_A_Label", resource.VMSpec{CPUs: 1, MemoryMiB: 1}, nil); !errors.Is(err, resource.ErrInvalid) {
		t.Errorf("create with a bad name: %v", err)
	}

	got, meta, err := vms.Get(ctx, "web", nil)
	if err != nil || got.Object.ID != vm.Object.ID || !reflect.DeepEqual(got.Spec, vm.Spec) || meta.Index != s.Index() {
		t.Fatalf("Get = %+v, %+v, %v", got, meta, err)
	}
	if _, meta, err := vms.Get(ctx, "nope", nil); !client.IsNotFound(err) || meta == nil || meta.Index != s.Index() {
		t.Errorf("Get(missing) = %+v, %v; want not found with the index", meta, err)
	}
	if _, _, err := vms.Get(ctx, "", nil); err == nil {
		t.Error("Get with an empty name succeeded")
	}

	list, _, err := vms.List(ctx, nil)
	if err != nil || !slices.Equal(names(list), []string{"db", "web"}) {
		t.Fatalf("List = %v, %v", names(list), err)
	}
	list, _, err = vms.List(ctx, &client.QueryOptions{Selector: "app=web"})
	if err != nil || !slices.Equal(names(list), []string{"web"}) || list[0].Spec.CPUs != 2 {
		t.Fatalf("List(app=web) = %v, %v", names(list), err)
	}
	list, _, err = vms.List(ctx, &client.QueryOptions{Selector: "app=none"})
	if err != nil || list == nil || len(list) != 0 {
		t.Fatalf("List(nothing) = %#v, %v; want an empty slice", list, err)
	}
	if _, _, err := vms.List(ctx, &client.QueryOptions{Selector: "=x"}); !errors.Is(err, resource.ErrInvalid) {
		t.Errorf("List with a bad selector: %v", err)
	}

	del, err := vms.Delete(ctx, "web", nil)
	if err != nil || del.Name() != "web" || del.Spec.CPUs != 2 {
		t.Fatalf("Delete = %+v, %v", del, err)
	}
	if _, err := vms.Delete(ctx, "web", nil); !client.IsNotFound(err) {
		t.Errorf("second Delete: %v", err)
	}
	db, _, _ := vms.Get(ctx, "db", nil)
	if _, err := vms.Delete(ctx, "db", &client.WriteOptions{CAS: db.Object.ModifyIndex + 100}); !errors.Is(err, client.ErrCASMismatch) {
		t.Errorf("Delete with a stale CAS: %v", err)
	}
	if _, err := vms.Delete(ctx, "db", &client.WriteOptions{CAS: db.Object.ModifyIndex}); err != nil {
		t.Errorf("Delete with CAS: %v", err)
	}
}

func TestVMsUpdateAndModify(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	vms := newClient(t, s.URL).VMs()
	ctx := context.Background()
	vm, err := vms.Create(ctx, "web", resource.VMSpec{CPUs: 1, MemoryMiB: 512}, map[string]string{"app": "web"})
	if err != nil {
		t.Fatal(err)
	}

	vm.Spec.CPUs = 4
	vm.Object.Labels["tier"] = "front"
	up, err := vms.Update(ctx, vm)
	if err != nil || up.Spec.CPUs != 4 || up.Object.Labels["tier"] != "front" || up.Object.ModifyIndex <= vm.Object.ModifyIndex {
		t.Fatalf("Update = %+v, %v", up, err)
	}
	if o := s.Object(resource.KindVM, "web"); !strings.Contains(string(o.Spec), `"cpus":4`) {
		t.Errorf("stored spec %s", o.Spec)
	}
	// The update was a compare-and-set on what was read.
	reqs := s.Requests()
	if last := reqs[len(reqs)-1]; last.Method != http.MethodPut || last.Query.Get("cas") == "" {
		t.Errorf("update request %+v, want a PUT with cas", last)
	}
	// Writing the stale view again loses.
	vm.Spec.CPUs = 8
	if _, err := vms.Update(ctx, vm); !errors.Is(err, client.ErrCASMismatch) {
		t.Errorf("stale Update: %v, want ErrCASMismatch", err)
	}
	up.Spec.Power = "on"
	if _, err := vms.Update(ctx, up); !errors.Is(err, resource.ErrInvalid) {
		t.Errorf("Update with a bad power: %v", err)
	}
	if _, err := vms.Update(ctx, &client.VM{}); err == nil {
		t.Error("Update of a VM without object succeeded")
	}
	gone := *up
	gone.Object = up.Object.Copy()
	gone.Object.Name = "gone"
	gone.Spec.Power = resource.PowerRunning
	if _, err := vms.Update(ctx, &gone); !client.IsNotFound(err) {
		t.Errorf("Update of a missing VM: %v", err)
	}

	// Modify retries when a worker report lands between its read and write.
	var bumps atomic.Int32
	s.Hook = func(r *http.Request) {
		if r.Method == http.MethodPut && bumps.Add(1) == 1 {
			s.SetStatus(t, resource.KindVM, "web", resource.VMStatus{Phase: resource.PhaseScheduled, Host: "hv-1", Epoch: 9})
		}
	}
	puts := countRequests(s, http.MethodPut, "/v1/vms/web")
	m, err := vms.Modify(ctx, "web", func(vm *client.VM) error {
		vm.Spec.MemoryMiB = 2048
		delete(vm.Object.Labels, "tier")
		return nil
	})
	if err != nil || m.Spec.MemoryMiB != 2048 || m.Spec.CPUs != 4 || m.Object.Labels["tier"] != "" || m.Status.Host != "hv-1" {
		t.Fatalf("Modify = %+v, %v", m, err)
	}
	if n := countRequests(s, http.MethodPut, "/v1/vms/web") - puts; n != 2 {
		t.Errorf("%d PUTs, want 2 (one lost to the report, one retried)", n)
	}
	s.Hook = nil

	// No change: nothing written.
	idx := s.Index()
	same, err := vms.Modify(ctx, "web", func(vm *client.VM) error { vm.Spec.MemoryMiB = 2048; return nil })
	if err != nil || same.Object.ModifyIndex != m.Object.ModifyIndex || s.Index() != idx {
		t.Errorf("no-op Modify wrote: %v, index %d → %d", err, idx, s.Index())
	}
	// An error from change: nothing written, the error as is.
	errNo := errors.New("not today")
	if _, err := vms.Modify(ctx, "web", func(vm *client.VM) error { vm.Spec.CPUs = 99; return errNo }); !errors.Is(err, errNo) || s.Index() != idx {
		t.Errorf("Modify with a failing change: %v", err)
	}
	if _, err := vms.Modify(ctx, "nope", func(*client.VM) error { return nil }); !client.IsNotFound(err) {
		t.Errorf("Modify of a missing VM: %v", err)
	}

	// A VM that keeps changing: Modify gives up after ModifyAttempts.
	s.Hook = func(r *http.Request) {
		if r.Method == http.MethodPut {
			s.SetStatus(t, resource.KindVM, "web", resource.VMStatus{Phase: resource.PhaseScheduled, Host: "hv-1", Epoch: 9})
		}
	}
	puts = countRequests(s, http.MethodPut, "/v1/vms/web")
	_, err = vms.Modify(ctx, "web", func(vm *client.VM) error { vm.Spec.CPUs = 2; return nil })
	if !errors.Is(err, client.ErrCASMismatch) || !strings.Contains(err.Error(), "kept changing") {
		t.Errorf("Modify against a busy VM: %v", err)
	}
	if n := countRequests(s, http.MethodPut, "/v1/vms/web") - puts; n != client.ModifyAttempts {
		t.Errorf("%d PUTs, want %d", n, client.ModifyAttempts)
	}
}

func TestVMsActions(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	vms := newClient(t, s.URL).VMs()
	ctx := context.Background()
	putVM(t, s, "web", resource.PowerRunning, resource.PhaseRunning, "hv-1")
	putVM(t, s, "off", resource.PowerStopped, resource.PhaseStopped, "hv-1")

	type verb func(context.Context, string) (*client.VM, error)
	stop := func(ctx context.Context, name string) (*client.VM, error) { return vms.Stop(ctx, name, false) }
	forceStop := func(ctx context.Context, name string) (*client.VM, error) { return vms.Stop(ctx, name, true) }
	for _, tc := range []struct {
		name      string
		verb      verb
		vm        string
		path      string
		wantPower string
		wantCode  string // an error's API code
	}{
		{"suspend running", vms.Suspend, "web", "/v1/vms/web/suspend", resource.PowerSuspended, ""},
		{"resume suspended power", vms.Resume, "web", "/v1/vms/web/resume", resource.PowerRunning, ""},
		{"reboot running", vms.Reboot, "web", "/v1/vms/web/reboot", resource.PowerRunning, ""},
		{"stop", stop, "web", "/v1/vms/web/stop", resource.PowerStopped, ""},
		{"force stop", forceStop, "web", "/v1/vms/web/stop", resource.PowerStopped, ""},
		{"start", vms.Start, "web", "/v1/vms/web/start", resource.PowerRunning, ""},
		{"suspend stopped", vms.Suspend, "off", "/v1/vms/off/suspend", "", resource.CodeConflict},
		{"resume stopped", vms.Resume, "off", "/v1/vms/off/resume", "", resource.CodeConflict},
		{"reboot stopped", vms.Reboot, "off", "/v1/vms/off/reboot", "", resource.CodeConflict},
		{"stop stopped", stop, "off", "/v1/vms/off/stop", resource.PowerStopped, ""},
		{"start missing", vms.Start, "nope", "/v1/vms/nope/start", "", resource.CodeNotFound},
		{"stop missing", stop, "nope", "/v1/vms/nope/stop", "", resource.CodeNotFound},
		{"suspend missing", vms.Suspend, "nope", "/v1/vms/nope/suspend", "", resource.CodeNotFound},
		{"resume missing", vms.Resume, "nope", "/v1/vms/nope/resume", "", resource.CodeNotFound},
		{"reboot missing", vms.Reboot, "nope", "/v1/vms/nope/reboot", "", resource.CodeNotFound},
	} {
		before := countRequests(s, http.MethodPost, tc.path)
		vm, err := tc.verb(ctx, tc.vm)
		if n := countRequests(s, http.MethodPost, tc.path) - before; n != 1 {
			t.Errorf("%s: %d POSTs to %s, want 1", tc.name, n, tc.path)
		}
		if tc.wantCode != "" {
			if err == nil || apiCode(err) != tc.wantCode {
				t.Errorf("%s: %v, want code %s", tc.name, err, tc.wantCode)
			}
			if tc.wantCode == resource.CodeConflict && (!client.IsConflict(err) || !strings.Contains(err.Error(), "is stopped")) {
				t.Errorf("%s: %v, want a 409 naming the phase", tc.name, err)
			}
			if tc.wantCode == resource.CodeNotFound && !client.IsNotFound(err) {
				t.Errorf("%s: %v, want ErrNotFound", tc.name, err)
			}
			continue
		}
		if err != nil || vm.Name() != tc.vm || vm.Spec.Power != tc.wantPower {
			t.Errorf("%s = %+v, %v; want power %s", tc.name, vm, err, tc.wantPower)
		}
	}
	for _, r := range s.Requests() {
		if r.Method == http.MethodPost && r.RawQuery != "" {
			t.Errorf("action sent with query %q", r.RawQuery)
		}
	}
	if vm, _, _ := vms.Get(ctx, "web", nil); vm.Status.RebootRequested == 0 {
		t.Errorf("reboot not requested: %+v", vm.Status)
	}

	// Start of a failed VM places it again.
	putVM(t, s, "bad", resource.PowerRunning, resource.PhaseFailed, "hv-1")
	vm, err := vms.Start(ctx, "bad")
	if err != nil || vm.Phase() != resource.PhasePending || vm.Status.Host != "" {
		t.Errorf("Start(failed) = %+v, %v; want pending again", vm, err)
	}
	// Actions are safe to repeat: a second start writes nothing.
	idx := s.Index()
	if _, err := vms.Start(ctx, "web"); err != nil || s.Index() != idx {
		t.Errorf("repeated Start: %v, index %d → %d", err, idx, s.Index())
	}
	// And retried on 503 like any idempotent request.
	s.UnavailableUnknown.Store(1)
	if vm, err := vms.Stop(ctx, "web", false); err != nil || vm.Spec.Power != resource.PowerStopped {
		t.Errorf("Stop after a 503: %+v, %v", vm, err)
	}
}

func TestVMsWait(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	s.Lifecycle = testapi.Healthy("hv-1")
	vms := newClient(t, s.URL).VMs()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := vms.Create(ctx, "web", resource.VMSpec{CPUs: 1, MemoryMiB: 256}, nil); err != nil {
		t.Fatal(err)
	}
	vm, err := vms.Wait(ctx, "web", resource.PhaseRunning)
	if err != nil || vm.Phase() != resource.PhaseRunning || vm.Status.Host != "hv-1" {
		t.Fatalf("Wait(running) = %+v, %v", vm, err)
	}
	// It waited with blocking reads, one per step (scheduled, starting,
	// running), each after the index the previous one saw.
	var indexes []string
	for _, r := range s.Requests() {
		if r.Path == "/v1/vms/web" && r.Query.Has("index") {
			indexes = append(indexes, r.Query.Get("index"))
			if r.Query.Get("wait") == "" {
				t.Errorf("blocking read without wait: %s", r.RawQuery)
			}
		}
	}
	if len(indexes) != 3 || indexes[0] == indexes[1] || indexes[1] == indexes[2] {
		t.Errorf("blocking reads at indexes %v, want 3 increasing", indexes)
	}

	steps := []struct {
		verb  func() (*client.VM, error)
		phase string
	}{
		{func() (*client.VM, error) { return vms.Suspend(ctx, "web") }, resource.PhaseSuspended},
		{func() (*client.VM, error) { return vms.Resume(ctx, "web") }, resource.PhaseRunning},
		{func() (*client.VM, error) { return vms.Stop(ctx, "web", false) }, resource.PhaseStopped},
		{func() (*client.VM, error) { return vms.Start(ctx, "web") }, resource.PhaseRunning},
	}
	for _, st := range steps {
		if _, err := st.verb(); err != nil {
			t.Fatal(err)
		}
		vm, err := vms.Wait(ctx, "web", st.phase)
		if err != nil || vm.Phase() != st.phase {
			t.Fatalf("Wait(%s) = %+v, %v", st.phase, vm, err)
		}
	}
	// Already there: one read, no blocking.
	before := len(s.Requests())
	if vm, err := vms.Wait(ctx, "web", resource.PhaseRunning); err != nil || vm.Phase() != resource.PhaseRunning || len(s.Requests()) != before+1 {
		t.Errorf("Wait for the current phase: %v, %d requests", err, len(s.Requests())-before)
	}

	// A VM that fails on its way.
	s.Lifecycle = func(*resource.Object) []testapi.Step {
		return []testapi.Step{
			{Status: resource.VMStatus{Phase: resource.PhaseScheduled, Host: "hv-1"}},
			{Status: resource.VMStatus{Phase: resource.PhaseFailed, Host: "hv-1", Reason: "out of memory on hv-1"}},
		}
	}
	if _, err := vms.Create(ctx, "bad", resource.VMSpec{CPUs: 1, MemoryMiB: 256}, nil); err != nil {
		t.Fatal(err)
	}
	vm, err = vms.Wait(ctx, "bad", resource.PhaseRunning)
	var fe *client.VMFailedError
	if !errors.As(err, &fe) || fe.Want != resource.PhaseRunning || vm == nil || vm.Phase() != resource.PhaseFailed ||
		!strings.Contains(err.Error(), "out of memory on hv-1") {
		t.Fatalf("Wait on a failing VM = %+v, %v", vm, err)
	}
	// Waiting for failed itself is fine.
	if vm, err := vms.Wait(ctx, "bad", resource.PhaseFailed); err != nil || vm.Phase() != resource.PhaseFailed {
		t.Errorf("Wait(failed) = %+v, %v", vm, err)
	}

	// Bad input and missing VMs.
	before = len(s.Requests())
	if _, err := vms.Wait(ctx, "web", "up"); err == nil || !strings.Contains(err.Error(), "not a VM phase") || len(s.Requests()) != before {
		t.Errorf("Wait for a bad phase: %v", err)
	}
	if _, err := vms.Wait(ctx, "nope", resource.PhaseRunning); !client.IsNotFound(err) {
		t.Errorf("Wait for a missing VM: %v", err)
	}
}

func TestVMsWaitEnds(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	vms := newClient(t, s.URL).VMs()
	putVM(t, s, "stuck", resource.PowerRunning, resource.PhasePending, "")

	// The context ends first: the error says where the VM is.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	vm, err := vms.Wait(ctx, "stuck", resource.PhaseRunning)
	if !errors.Is(err, context.DeadlineExceeded) || vm == nil || vm.Phase() != resource.PhasePending ||
		!strings.Contains(err.Error(), "is pending, not running") {
		t.Fatalf("Wait past the deadline = %+v, %v", vm, err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := vms.Wait(cctx, "stuck", resource.PhaseRunning); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled context: %v", err)
	}

	// A change by someone else wakes the waiter; a delete ends it.
	type result struct {
		vm  *client.VM
		err error
	}
	wait := func(name, phase string) <-chan result {
		blocking := func() int {
			n := 0
			for _, r := range s.Requests() {
				if r.Path == "/v1/vms/"+name && r.Query.Has("index") {
					n++
				}
			}
			return n
		}
		before := blocking()
		ch := make(chan result, 1)
		go func() {
			vm, err := vms.Wait(context.Background(), name, phase)
			ch <- result{vm, err}
		}()
		testcluster.WaitFor(t, 10*time.Second, "a blocking read", func() (bool, error) { return blocking() > before, nil })
		return ch
	}
	ch := wait("stuck", resource.PhaseRunning)
	s.SetStatus(t, resource.KindVM, "stuck", resource.VMStatus{Phase: resource.PhaseScheduled, Host: "hv-2", Epoch: 3})
	s.SetStatus(t, resource.KindVM, "stuck", resource.VMStatus{Phase: resource.PhaseRunning, Host: "hv-2", Epoch: 3})
	if r := <-ch; r.err != nil || r.vm.Phase() != resource.PhaseRunning || r.vm.Status.Host != "hv-2" {
		t.Fatalf("Wait woken by reports = %+v, %v", r.vm, r.err)
	}
	ch = wait("stuck", resource.PhaseStopped)
	s.Remove(resource.KindVM, "stuck")
	if r := <-ch; !client.IsNotFound(r.err) {
		t.Fatalf("Wait on a deleted VM = %+v, %v; want not found", r.vm, r.err)
	}
}
