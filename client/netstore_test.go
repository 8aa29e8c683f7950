package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/api/apitest"
	"github.com/kumoi/kumoi/resource"
)

func TestNetworksImagesVolumes(t *testing.T) {
	t.Parallel()
	s := apitest.New(t)
	c := newClient(t, s.URL)
	ctx := context.Background()

	nets := c.Networks()
	n, err := nets.Create(ctx, "net1", resource.NetworkSpec{CIDR: "10.10.0.0/24"}, map[string]string{"env": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Name() != "net1" || n.Spec.Gateway != "10.10.0.1" || n.Spec.Mode != resource.NetworkNAT || !n.Spec.DHCPOn() || n.Object.Labels["env"] != "prod" {
		t.Fatalf("created %+v", n)
	}
	if _, err := nets.Create(ctx, "bad", resource.NetworkSpec{CIDR: "10.0.0.0/24", Gateway: "10.1.0.1"}, nil); !errors.Is(err, resource.ErrInvalid) || !strings.Contains(err.Error(), "spec.gateway") {
		t.Fatalf("bad gateway: %v", err)
	}
	if _, err := nets.Create(ctx, "net1", resource.NetworkSpec{CIDR: "10.11.0.0/24"}, nil); !errors.Is(err, client.ErrAlreadyExists) {
		t.Fatalf("duplicate: %v", err)
	}
	got, _, err := nets.Get(ctx, "net1", nil)
	if err != nil || !reflect.DeepEqual(got.Spec, n.Spec) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	n2, err := nets.Modify(ctx, "net1", func(x *client.Network) error { x.Spec.MTU = 1400; x.Object.Labels["team"] = "a"; return nil })
	if err != nil || n2.Spec.MTU != 1400 || n2.Object.Labels["team"] != "a" || n2.Object.ModifyIndex == n.Object.ModifyIndex {
		t.Fatalf("Modify = %+v, %v", n2, err)
	}
	same, err := nets.Modify(ctx, "net1", func(x *client.Network) error { x.Spec.MTU = 1400; return nil })
	if err != nil || same.Object.ModifyIndex != n2.Object.ModifyIndex {
		t.Fatalf("a Modify that changes nothing wrote: %v", err)
	}
	if _, err := nets.Update(ctx, n); !errors.Is(err, client.ErrCASMismatch) {
		t.Fatalf("stale Update: %v", err)
	}
	list, _, err := nets.List(ctx, &client.QueryOptions{Selector: "team=a"})
	if err != nil || !reflect.DeepEqual(names(list), []string{"net1"}) {
		t.Fatalf("List = %v, %v", names(list), err)
	}

	imgs := c.Images()
	img, err := imgs.Create(ctx, "debian", resource.ImageSpec{File: "debian.qcow2", SHA256: strings.Repeat("A", 64)}, nil)
	if err != nil || img.Spec.Format != resource.FormatQCOW2 || img.Spec.SHA256 != strings.Repeat("a", 64) {
		t.Fatalf("image %+v, %v", img, err)
	}
	if _, err := imgs.Modify(ctx, "debian", func(x *client.Image) error { x.Spec.Format = resource.FormatRaw; return nil }); !errors.Is(err, resource.ErrInvalid) {
		t.Fatalf("an image changed: %v", err)
	}
	if x, err := imgs.Modify(ctx, "debian", func(x *client.Image) error { x.Object.Labels = map[string]string{"os": "debian"}; return nil }); err != nil || x.Object.Labels["os"] != "debian" {
		t.Fatalf("image labels: %+v, %v", x, err)
	}

	vols := c.Volumes()
	v, err := vols.Create(ctx, "v1", resource.VolumeSpec{SizeMiB: 1024, Image: "debian", Persistent: true}, nil)
	if err != nil || v.Phase() != resource.VolumePending || v.Spec.SizeMiB != 1024 {
		t.Fatalf("volume %+v, %v", v, err)
	}
	if v, err = vols.Resize(ctx, "v1", 2048); err != nil || v.Spec.SizeMiB != 2048 || !v.Spec.Persistent || v.Spec.Image != "debian" {
		t.Fatalf("Resize = %+v, %v", v, err)
	}
	if _, err := vols.Resize(ctx, "v1", 10); !errors.Is(err, resource.ErrInvalid) || !strings.Contains(err.Error(), "shrink") {
		t.Fatalf("shrink: %v", err)
	}
	if _, err := vols.Resize(ctx, "nope", 10); !client.IsNotFound(err) {
		t.Fatalf("resize of a missing volume: %v", err)
	}

	// Attach and detach: read-modify-write of the VM's disks.
	if _, err := c.VMs().Create(ctx, "web", resource.VMSpec{CPUs: 1, MemoryMiB: 256, Power: resource.PowerStopped,
		NICs: []resource.NIC{{Network: "net1", IP: "10.10.0.5", MAC: "52:54:00:00:00:05"}}}, nil); err != nil {
		t.Fatal(err)
	}
	vm, err := c.AttachVolume(ctx, "v1", "web")
	if err != nil || !reflect.DeepEqual(vm.Volumes(), []string{"v1"}) {
		t.Fatalf("AttachVolume = %+v, %v", vm, err)
	}
	if !reflect.DeepEqual(vm.Addresses(), []string{"10.10.0.5"}) || !reflect.DeepEqual(vm.MACs(), []string{"52:54:00:00:00:05"}) {
		t.Fatalf("addresses %v, MACs %v", vm.Addresses(), vm.MACs())
	}
	again, err := vols.Attach(ctx, "v1", "web")
	if err != nil || again.Object.ModifyIndex != vm.Object.ModifyIndex {
		t.Fatalf("a second attach wrote: %+v, %v", again, err)
	}
	if _, err := c.AttachVolume(ctx, "nope", "web"); !client.IsNotFound(err) {
		t.Fatalf("attach of a missing volume: %v", err)
	}
	vm, err = c.DetachVolume(ctx, "v1")
	if err != nil || len(vm.Spec.Disks) != 0 || len(vm.Volumes()) != 0 {
		t.Fatalf("DetachVolume = %+v, %v", vm, err)
	}
	if _, err := vols.Detach(ctx, "v1"); !errors.Is(err, client.ErrNotAttached) {
		t.Fatalf("detach of a detached volume: %v", err)
	}
	if _, err := vols.Delete(ctx, "v1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := imgs.Delete(ctx, "debian", nil); err != nil {
		t.Fatal(err)
	}
}

// AttachVolume retries its compare-and-set write when the VM changes
// between its read and its write.
func TestAttachVolumeRetriesCAS(t *testing.T) {
	t.Parallel()
	s := apitest.New(t)
	var puts atomic.Int32
	var c *client.Client
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/vms/") && puts.Add(1) == 1 {
			// Someone else changes the VM first.
			if _, err := c.VMs().Modify(r.Context(), "web", func(vm *client.VM) error { vm.Object.Labels["by"] = "other"; return nil }); err != nil {
				t.Error(err)
			}
		}
		u := *r.URL
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, s.URL+u.RequestURI(), r.Body)
		req.Header = r.Header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(proxy.Close)
	c = newClient(t, s.URL)
	pc := newClient(t, proxy.URL)
	ctx := context.Background()
	if _, err := c.VMs().Create(ctx, "web", resource.VMSpec{CPUs: 1, MemoryMiB: 256, Power: resource.PowerStopped}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Volumes().Create(ctx, "v1", resource.VolumeSpec{SizeMiB: 10}, nil); err != nil {
		t.Fatal(err)
	}
	vm, err := pc.AttachVolume(ctx, "v1", "web")
	if err != nil || vm.Object.Labels["by"] != "other" || !reflect.DeepEqual(vm.Volumes(), []string{"v1"}) || puts.Load() != 2 {
		t.Fatalf("AttachVolume = %+v, %v (puts %d)", vm, err, puts.Load())
	}
}

func TestReportAll(t *testing.T) {
	t.Parallel()
	s := apitest.New(t)
	s.AddHost(t, "h1")
	c := newClient(t, s.URL)
	ctx := context.Background()
	if _, err := c.Networks().Create(ctx, "net1", resource.NetworkSpec{CIDR: "10.10.0.0/24"}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := c.ReportAll(ctx, "h1", resource.ReportRequest{Resources: []resource.ResourceReport{
		{Kind: resource.KindNetwork, Name: "net1", State: resource.HostResourceReady},
	}})
	if err != nil || len(out.ResourceResults) != 1 || out.ResourceResults[0].Name != "net1" || out.ResourceResults[0].Kind != resource.KindNetwork {
		t.Fatalf("ReportAll = %+v, %v", out, err)
	}
	if _, err := c.ReportAll(ctx, "h1", resource.ReportRequest{Resources: []resource.ResourceReport{{Kind: "vm", Name: "x", State: "ready"}}}); !errors.Is(err, resource.ErrInvalid) || !strings.Contains(err.Error(), "resources[0].kind") {
		t.Fatalf("bad resource report: %v", err)
	}
	if _, err := c.ReportAll(ctx, "Bad_Host", resource.ReportRequest{}); err == nil {
		t.Fatal("a bad host name was sent")
	}
}
