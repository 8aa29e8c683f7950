package client_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/resource"
)

// putHost stores a ready host as the system would when its worker joins.
func putHost(tb testing.TB, s *testapi.Server, name string, labels map[string]string) *resource.Object {
	tb.Helper()
	return s.Put(tb, resource.KindHost, name, labels, resource.HostSpec{},
		resource.HostStatus{State: resource.HostReady, Address: "10.0.0.1", Driver: "sim",
			Capacity: resource.Resources{CPUs: 8, MemoryMiB: 16384}, Allocated: resource.Resources{CPUs: 1, MemoryMiB: 256}})
}

func TestHostsGetList(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	hosts := newClient(t, s.URL).Hosts()
	ctx := context.Background()
	putHost(t, s, "hv-2", map[string]string{"rack": "b"})
	putHost(t, s, "hv-1", map[string]string{"rack": "a"})

	list, meta, err := hosts.List(ctx, nil)
	if err != nil || !slices.Equal(names(list), []string{"hv-1", "hv-2"}) || meta.Index != s.Index() {
		t.Fatalf("List = %v, %+v, %v", names(list), meta, err)
	}
	list, _, err = hosts.List(ctx, &client.QueryOptions{Selector: "rack=b"})
	if err != nil || !slices.Equal(names(list), []string{"hv-2"}) {
		t.Fatalf("List(rack=b) = %v, %v", names(list), err)
	}
	h, _, err := hosts.Get(ctx, "hv-1", nil)
	if err != nil || h.Name() != "hv-1" || h.State() != resource.HostReady || !h.Schedulable() ||
		h.Status.Capacity.MemoryMiB != 16384 || h.Spec.CPUOvercommit != 1 || h.Object.Labels["rack"] != "a" {
		t.Fatalf("Get = %+v, %v", h, err)
	}
	if _, _, err := hosts.Get(ctx, "hv-9", nil); !client.IsNotFound(err) {
		t.Errorf("Get(missing): %v", err)
	}
	if _, _, err := hosts.List(ctx, &client.QueryOptions{Selector: "=rack"}); !errors.Is(err, resource.ErrInvalid) {
		t.Errorf("List with a bad selector: %v", err)
	}
}

func TestHostsDrainEnable(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	hosts := newClient(t, s.URL).Hosts()
	ctx := context.Background()
	putHost(t, s, "hv-1", nil)
	s.Put(t, resource.KindHost, "hv-2", nil, resource.HostSpec{CPUOvercommit: 4, MemoryOvercommit: 1.5}, nil)

	puts := func(name string) int { return countRequests(s, http.MethodPut, "/v1/hosts/"+name) }
	h, err := hosts.Drain(ctx, "hv-1")
	if err != nil || h.Schedulable() || !h.Spec.Unschedulable || puts("hv-1") != 1 {
		t.Fatalf("Drain = %+v, %v (%d PUTs)", h, err, puts("hv-1"))
	}
	// The same wire calls as 'kumoi host drain': a GET, then a PUT with cas.
	for _, r := range s.Requests() {
		if r.Method == http.MethodPut && r.Query.Get("cas") == "" {
			t.Errorf("PUT without cas: %s", r.RawQuery)
		}
	}
	// Already drained: nothing written.
	idx := s.Index()
	if h, err := hosts.Drain(ctx, "hv-1"); err != nil || !h.Spec.Unschedulable || s.Index() != idx || puts("hv-1") != 1 {
		t.Errorf("second Drain: %v, wrote: %t", err, s.Index() != idx)
	}
	h, err = hosts.Enable(ctx, "hv-1")
	if err != nil || !h.Schedulable() || puts("hv-1") != 2 {
		t.Fatalf("Enable = %+v, %v", h, err)
	}
	idx = s.Index()
	if _, err := hosts.Enable(ctx, "hv-1"); err != nil || s.Index() != idx {
		t.Errorf("second Enable: %v, wrote: %t", err, s.Index() != idx)
	}
	// The other spec fields are kept.
	h, err = hosts.Drain(ctx, "hv-2")
	if err != nil || h.Spec.CPUOvercommit != 4 || h.Spec.MemoryOvercommit != 1.5 || !h.Spec.Unschedulable {
		t.Errorf("Drain of an overcommitted host = %+v, %v", h.Spec, err)
	}
	if _, err := hosts.Drain(ctx, "hv-9"); !client.IsNotFound(err) {
		t.Errorf("Drain(missing): %v", err)
	}
	if _, err := hosts.Enable(ctx, "hv-9"); !client.IsNotFound(err) {
		t.Errorf("Enable(missing): %v", err)
	}

	// A worker report between the read and the write: read again, retry.
	var bumps atomic.Int32
	s.Hook = func(r *http.Request) {
		if r.Method == http.MethodPut && bumps.Add(1) == 1 {
			s.SetStatus(t, resource.KindHost, "hv-1", resource.HostStatus{State: resource.HostReady, Reason: "report"})
		}
	}
	before := puts("hv-1")
	if h, err := hosts.Drain(ctx, "hv-1"); err != nil || !h.Spec.Unschedulable || h.Status.Reason != "report" {
		t.Fatalf("Drain during a report = %+v, %v", h, err)
	}
	if n := puts("hv-1") - before; n != 2 {
		t.Errorf("%d PUTs, want 2", n)
	}
}

func TestHostsUpdateModify(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	hosts := newClient(t, s.URL).Hosts()
	ctx := context.Background()
	putHost(t, s, "hv-1", nil)

	h, _, err := hosts.Get(ctx, "hv-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Spec.CPUOvercommit = 4
	h.Object.Labels["rack"] = "a"
	up, err := hosts.Update(ctx, h)
	if err != nil || up.Spec.CPUOvercommit != 4 || up.Object.Labels["rack"] != "a" || up.Status.State != resource.HostReady {
		t.Fatalf("Update = %+v, %v", up, err)
	}
	if _, err := hosts.Update(ctx, h); !errors.Is(err, client.ErrCASMismatch) {
		t.Errorf("stale Update: %v", err)
	}
	up.Spec.CPUOvercommit = 100
	_, err = hosts.Update(ctx, up)
	var ae *client.APIError
	if !errors.Is(err, resource.ErrInvalid) || !errors.As(err, &ae) || ae.Field != "spec.cpu_overcommit" {
		t.Errorf("Update with a bad ratio: %v", err)
	}
	if _, err := hosts.Update(ctx, nil); err == nil {
		t.Error("Update(nil) succeeded")
	}

	m, err := hosts.Modify(ctx, "hv-1", func(h *client.Host) error { h.Spec.MemoryOvercommit = 2; return nil })
	if err != nil || m.Spec.MemoryOvercommit != 2 || m.Spec.CPUOvercommit != 4 {
		t.Fatalf("Modify = %+v, %v", m, err)
	}
	idx := s.Index()
	if _, err := hosts.Modify(ctx, "hv-1", func(h *client.Host) error { h.Spec.MemoryOvercommit = 2; return nil }); err != nil || s.Index() != idx {
		t.Errorf("no-op Modify: %v, wrote: %t", err, s.Index() != idx)
	}
	if _, err := hosts.Modify(ctx, "hv-1", func(h *client.Host) error { h.Object.Labels["zone"] = "z1"; return nil }); err != nil || s.Index() == idx {
		t.Errorf("label Modify: %v, wrote: %t", err, s.Index() != idx)
	}
	if _, err := hosts.Modify(ctx, "hv-9", func(*client.Host) error { return nil }); !client.IsNotFound(err) {
		t.Errorf("Modify(missing): %v", err)
	}
}

func TestHostsVMs(t *testing.T) {
	t.Parallel()
	s := testapi.New(t)
	hosts := newClient(t, s.URL).Hosts()
	ctx := context.Background()
	putHost(t, s, "hv-1", nil)
	putHost(t, s, "hv-2", nil)
	putVM(t, s, "a", resource.PowerRunning, resource.PhaseRunning, "hv-1")
	putVM(t, s, "b", resource.PowerRunning, resource.PhaseRunning, "hv-2")
	s.Put(t, resource.KindVM, "c", map[string]string{"app": "db"}, resource.VMSpec{CPUs: 1, MemoryMiB: 256},
		resource.VMStatus{Phase: resource.PhaseRunning, Host: "hv-1", Epoch: 1})

	vms, _, err := hosts.VMs(ctx, "hv-1", nil)
	if err != nil || !slices.Equal(names(vms), []string{"a", "c"}) || vms[0].Status.Host != "hv-1" {
		t.Fatalf("VMs(hv-1) = %v, %v", names(vms), err)
	}
	vms, _, err = hosts.VMs(ctx, "hv-1", &client.QueryOptions{Selector: "app=db", Host: "hv-2"})
	if err != nil || !slices.Equal(names(vms), []string{"c"}) {
		t.Fatalf("VMs(hv-1, app=db) = %v, %v", names(vms), err)
	}
	vms, _, err = hosts.VMs(ctx, "hv-9", nil)
	if err != nil || vms == nil || len(vms) != 0 {
		t.Fatalf("VMs(hv-9) = %v, %v; want an empty slice", vms, err)
	}
	if _, _, err := hosts.VMs(ctx, "", nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("VMs(\"\"): %v", err)
	}
	last := s.Requests()[len(s.Requests())-1]
	if last.Path != "/v1/vms" || last.Query.Get("host") != "hv-9" {
		t.Errorf("request %+v, want GET /v1/vms?host=hv-9", last)
	}
}
