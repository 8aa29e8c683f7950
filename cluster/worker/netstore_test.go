package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/cluster/fenceguard"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/resource"
)

// fakeStore is a simulated host whose networks and volumes live in
// memory, and which remembers the domain specs it was given.
type fakeStore struct {
	*sim.Driver
	mu      sync.Mutex
	nets    map[string]hypervisor.NetworkDef
	down    map[string]bool // defined but not active
	vols    map[string]hypervisor.VolumeInfo
	specs   map[string]hypervisor.DomainSpec
	ensured []string // EnsureNetwork and EnsureVolume calls, by name
	removed []string // RemoveNetwork and RemoveVolume calls, by name
	dir     string   // the pool's directory
	// removeErr, when set, fails RemoveNetwork.
	removeErr error
}

func newFakeStore(t *testing.T) *fakeStore {
	return &fakeStore{Driver: sim.New(sim.Options{Host: "hv-1"}), nets: map[string]hypervisor.NetworkDef{}, down: map[string]bool{},
		vols: map[string]hypervisor.VolumeInfo{}, specs: map[string]hypervisor.DomainSpec{}, dir: t.TempDir()}
}

func (f *fakeStore) Define(ctx context.Context, spec hypervisor.DomainSpec) error {
	f.mu.Lock()
	f.specs[spec.Name] = spec
	f.mu.Unlock()
	return f.Driver.Define(ctx, spec)
}

func (f *fakeStore) EnsureNetwork(ctx context.Context, def hypervisor.NetworkDef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensured = append(f.ensured, def.Name)
	f.nets[def.Name] = def
	delete(f.down, def.Name)
	return nil
}

func (f *fakeStore) RemoveNetwork(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removeErr != nil {
		return f.removeErr
	}
	f.removed = append(f.removed, name)
	delete(f.nets, name)
	return nil
}

func (f *fakeStore) ListNetworks(ctx context.Context) ([]hypervisor.NetworkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []hypervisor.NetworkInfo
	for _, d := range f.nets {
		out = append(out, hypervisor.NetworkInfo{Name: d.Name, Active: !f.down[d.Name], Mode: d.Mode, Bridge: d.Bridge, CIDR: d.CIDR, Hosts: d.Hosts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeStore) EnsureVolume(ctx context.Context, def hypervisor.VolumeDef) (hypervisor.VolumeInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensured = append(f.ensured, def.Name)
	v, ok := f.vols[def.Name]
	if !ok {
		v = hypervisor.VolumeInfo{Name: def.Name, Path: filepath.Join(f.dir, def.Name), Format: hypervisor.ImageQCOW2, Backing: def.Backing}
	}
	v.SizeMiB = max(v.SizeMiB, def.SizeMiB)
	f.vols[def.Name] = v
	return v, nil
}

func (f *fakeStore) RemoveVolume(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, name)
	delete(f.vols, name)
	return nil
}

func (f *fakeStore) ListVolumes(ctx context.Context) ([]hypervisor.VolumeInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []hypervisor.VolumeInfo
	for _, v := range f.vols {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeStore) calls() (ensured, removed []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ensured), slices.Clone(f.removed)
}

const testCluster = "c0ffee"

// newResWorker is a worker of cluster testCluster on host hv-1 over a
// fakeStore, with an image directory and a storage directory of its own.
func newResWorker(t *testing.T) (*Worker, *fakeStore, string) {
	t.Helper()
	drv := newFakeStore(t)
	t.Cleanup(func() { drv.Close() })
	imgDir := t.TempDir()
	cfg := Config{NodeID: "hv-1", Driver: drv, ImageDir: imgDir, StorageDir: t.TempDir(), FenceAfter: DefaultFenceAfter}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	w := &Worker{cfg: cfg, logger: hclog.NewNullLogger(), drv: drv, cluster: testCluster,
		reported: map[string]resource.VMReport{}, stopping: map[string]bool{}, failed: map[string]uint64{},
		seenUp: map[string]uint64{}, notes: map[string]note{}, guardFenced: map[string]fenceguard.FenceRecord{},
		resReported: map[string]resource.ResourceReport{}, netUp: map[string]bool{}, netDefs: map[string]hypervisor.NetworkDef{},
		netRemoved: map[string]bool{}, netRemoving: map[string]bool{}, volMade: map[string]bool{}, waiting: map[string]string{},
		shutdowns: map[string]*pendingShutdown{}, kick: make(chan struct{}, 1), mayStart: true}
	w.images = newImageCache(&w.cfg, w.logger, w.wake)
	return w, drv, imgDir
}

func mkObj(t *testing.T, kind resource.Kind, name, id string, spec, status any) *resource.Object {
	t.Helper()
	o := &resource.Object{Kind: kind, Name: name, ID: id, Labels: map[string]string{}}
	var err error
	if o.Spec, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if status != nil {
		if o.Status, err = json.Marshal(status); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

func mkVM(t *testing.T, name string, spec resource.VMSpec, host string) *resource.Object {
	if spec.CPUs == 0 {
		spec.CPUs, spec.MemoryMiB, spec.Power = 1, 64, resource.PowerRunning
	}
	return mkObj(t, resource.KindVM, name, "id-"+name, spec, resource.VMStatus{Phase: resource.PhaseScheduled, Host: host, Epoch: 1})
}

func mkNet(t *testing.T, name string, spec resource.NetworkSpec, status *resource.NetworkStatus) *resource.Object {
	spec.Default()
	return mkObj(t, resource.KindNetwork, name, "id-"+name, spec, status)
}

func mkVol(t *testing.T, name string, spec resource.VolumeSpec, st resource.VolumeStatus) *resource.Object {
	return mkObj(t, resource.KindVolume, name, "id-"+name, spec, st)
}

// pass runs the resource part of a pass and records its reports as the
// controllers would.
func pass(t *testing.T, w *Worker, rp *resPass, vms []*resource.Object) []resource.ResourceReport {
	t.Helper()
	rp.complete = true
	w.res = rp
	w.convergeResources(context.Background(), rp, vms, true)
	w.recordResources(rp.reports, make([]resource.ResourceResult, len(rp.reports)), true)
	return rp.reports
}

func findReport(reps []resource.ResourceReport, kind resource.Kind, name string) (resource.ResourceReport, bool) {
	for _, r := range reps {
		if r.Kind == kind && r.Name == name {
			return r, true
		}
	}
	return resource.ResourceReport{}, false
}

func TestBridgeName(t *testing.T) {
	a := BridgeName("cluster-a", "net1")
	if len(a) != 13 || !strings.HasPrefix(a, "kb-") || resource.ValidateBridgeName(a) != nil {
		t.Fatalf("bridge name %q: want kb- and 10 hex digits, a valid interface name", a)
	}
	if a != BridgeName("cluster-a", "net1") {
		t.Fatal("the bridge name is not deterministic")
	}
	if a == BridgeName("cluster-b", "net1") || a == BridgeName("cluster-a", "net2") {
		t.Fatal("two clusters (or two networks) share a bridge name")
	}
	// sha256("cluster-a/net1") starts with these digits.
	if want := "kb-" + fmt.Sprintf("%x", sha256Sum("cluster-a/net1"))[:10]; a != want {
		t.Fatalf("bridge name %q, want %q", a, want)
	}
}

func TestNetworkDefAndDHCPHosts(t *testing.T) {
	w, drv, _ := newResWorker(t)
	vms := []*resource.Object{
		mkVM(t, "b", resource.VMSpec{NICs: []resource.NIC{{Network: "net1", IP: "10.10.0.3", MAC: "52:54:00:00:00:02"}}}, "hv-1"),
		mkVM(t, "a", resource.VMSpec{NICs: []resource.NIC{
			{Network: "net1", IP: "10.10.0.2", MAC: "52:54:00:00:00:09"},
			{Network: "lan", IP: "192.168.1.20", MAC: "52:54:00:00:00:03"},
		}}, "hv-1"),
		mkVM(t, "full", resource.VMSpec{NICs: []resource.NIC{{Network: "net1", MAC: "52:54:00:00:00:05"}}}, "hv-1"),                  // no address yet
		mkVM(t, "away", resource.VMSpec{NICs: []resource.NIC{{Network: "net1", IP: "10.10.0.7", MAC: "52:54:00:00:00:07"}}}, "hv-2"), // another host's
	}
	rp := newResPass()
	rp.networks["net1"] = mkNet(t, "net1", resource.NetworkSpec{CIDR: "10.10.0.0/24", MTU: 9000}, nil)
	rp.networks["lan"] = mkNet(t, "lan", resource.NetworkSpec{CIDR: "192.168.1.0/24", Mode: resource.NetworkBridge, Bridge: "br0"}, nil)
	rp.labels = map[string]string{resource.BridgeLabelPrefix + "lan": "br-lan"}
	reps := pass(t, w, rp, vms)

	net1 := drv.nets["kumoi-net1"]
	want := []hypervisor.DHCPHost{{MAC: "52:54:00:00:00:02", IP: "10.10.0.3", Name: "b"}, {MAC: "52:54:00:00:00:09", IP: "10.10.0.2", Name: "a"}}
	if !slices.Equal(net1.Hosts, want) {
		t.Errorf("net1 DHCP hosts %+v, want %+v (the NICs of this host's VMs with an address, by MAC)", net1.Hosts, want)
	}
	if net1.Mode != hypervisor.NetModeNAT || net1.Bridge != BridgeName(testCluster, "net1") || net1.CIDR != "10.10.0.0/24" || net1.Gateway != "10.10.0.1" || !net1.DHCP || net1.MTU != 9000 {
		t.Errorf("net1 def %+v", net1)
	}
	lan := drv.nets["kumoi-lan"]
	if lan.Mode != hypervisor.NetModeBridge || lan.Bridge != "br-lan" || lan.DHCP || len(lan.Hosts) != 0 {
		t.Errorf("lan def %+v: want bridge mode on the host label's bridge br-lan, no DHCP", lan)
	}
	for _, n := range []string{"net1", "lan"} {
		if r, ok := findReport(reps, resource.KindNetwork, n); !ok || r.State != resource.HostResourceReady || r.ID != "id-"+n {
			t.Errorf("network %s report %+v (found %v), want ready", n, r, ok)
		}
	}

	// An IPv6 network: no DHCP entries (libvirt keys DHCPv6 leases on a
	// DUID Kumoi does not know); the address is the guest's to set.
	v6 := mkNet(t, "v6", resource.NetworkSpec{CIDR: "fd00:10::/64", Gateway: "fd00:10::1"}, nil)
	v6vm := mkVM(t, "six", resource.VMSpec{NICs: []resource.NIC{{Network: "v6", IP: "fd00:10::2", MAC: "52:54:00:00:00:66"}}}, "hv-1")
	if def := w.networkDef(v6, &resource.NetworkSpec{CIDR: "fd00:10::/64", Gateway: "fd00:10::1", Mode: resource.NetworkNAT}, nil, []*resource.Object{v6vm}); def.DHCP || len(def.Hosts) != 0 || def.CIDR != "fd00:10::/64" {
		t.Errorf("IPv6 network def %+v: want its address and no DHCP", def)
	}

	// Without the label: spec.bridge.
	rp = newResPass()
	rp.networks["lan"] = mkNet(t, "lan", resource.NetworkSpec{CIDR: "192.168.1.0/24", Mode: resource.NetworkBridge, Bridge: "br0"}, nil)
	if def := w.networkDef(rp.networks["lan"], &resource.NetworkSpec{Mode: resource.NetworkBridge, Bridge: "br0"}, nil, vms); def.Bridge != "br0" {
		t.Errorf("bridge without label %q, want br0", def.Bridge)
	}

	// The VM devices: NICs in order, with the network's MTU.
	w.res = nil
	rp = newResPass()
	rp.networks["net1"] = mkNet(t, "net1", resource.NetworkSpec{CIDR: "10.10.0.0/24", MTU: 9000}, nil)
	rp.networks["lan"] = mkNet(t, "lan", resource.NetworkSpec{CIDR: "192.168.1.0/24", Mode: resource.NetworkBridge, Bridge: "br0"}, nil)
	pass(t, w, rp, vms)
	spec, _ := resource.DecodeSpec[resource.VMSpec](vms[1])
	_, nics, wait, fail := w.vmDevices(&vmPass{o: vms[1], spec: spec})
	wantNICs := []hypervisor.DomainNIC{{Network: "kumoi-net1", MAC: "52:54:00:00:00:09", MTU: 9000}, {Network: "kumoi-lan", MAC: "52:54:00:00:00:03"}}
	if wait != "" || fail != "" || !slices.Equal(nics, wantNICs) {
		t.Errorf("devices of a: nics %+v wait %q fail %q; want %+v", nics, wait, fail, wantNICs)
	}
	// Nothing changed: nothing ensured again, nothing reported.
	ensured, _ := drv.calls()
	rp = newResPass()
	rp.networks = map[string]*resource.Object{"net1": mkNet(t, "net1", resource.NetworkSpec{CIDR: "10.10.0.0/24", MTU: 9000}, nil),
		"lan": mkNet(t, "lan", resource.NetworkSpec{CIDR: "192.168.1.0/24", Mode: resource.NetworkBridge, Bridge: "br0"}, nil)}
	rp.labels = map[string]string{resource.BridgeLabelPrefix + "lan": "br-lan"}
	if reps := pass(t, w, rp, vms); len(reps) != 0 {
		t.Errorf("an unchanged pass reported %+v", reps)
	}
	if again, _ := drv.calls(); len(again) != len(ensured)+1 { // lan's bridge changed back to br-lan
		t.Errorf("an unchanged pass ensured %v (before: %v)", again[len(ensured):], ensured)
	}
}

func TestNetworkRecreatedAndRemoved(t *testing.T) {
	w, drv, _ := newResWorker(t)
	vm := mkVM(t, "web", resource.VMSpec{NICs: []resource.NIC{{Network: "net1", IP: "10.10.0.2", MAC: "52:54:00:00:00:01"}}}, "hv-1")
	net := func(st *resource.NetworkStatus) *resPass {
		rp := newResPass()
		rp.networks["net1"] = mkNet(t, "net1", resource.NetworkSpec{CIDR: "10.10.0.0/24"}, st)
		return rp
	}
	if r, _ := findReport(pass(t, w, net(nil), []*resource.Object{vm}), resource.KindNetwork, "net1"); r.State != resource.HostResourceReady {
		t.Fatalf("first pass: %+v, want ready", r)
	}
	// Removed behind Kumoi's back: recreated, and said so.
	drv.mu.Lock()
	delete(drv.nets, "kumoi-net1")
	drv.mu.Unlock()
	r, _ := findReport(pass(t, w, net(nil), []*resource.Object{vm}), resource.KindNetwork, "net1")
	if r.State != resource.HostResourceRecreate || !strings.Contains(r.Reason, "kumoi-net1 was removed outside Kumoi") {
		t.Fatalf("after a removal behind Kumoi's back: %+v, want recreated with the reason", r)
	}
	if _, ok := drv.nets["kumoi-net1"]; !ok {
		t.Fatal("the network was not recreated")
	}
	// A worker restarted meanwhile knows from the status that it was up.
	w2, drv2, _ := newResWorker(t)
	r, _ = findReport(pass(t, w2, net(&resource.NetworkStatus{Hosts: map[string]resource.HostResourceState{"hv-1": {State: resource.HostResourceReady}}}), []*resource.Object{vm}), resource.KindNetwork, "net1")
	if r.State != resource.HostResourceRecreate {
		t.Fatalf("a restarted worker finding a network the status says is up missing: %+v, want recreated", r)
	}
	if _, ok := drv2.nets["kumoi-net1"]; !ok {
		t.Fatal("not recreated")
	}
	// Stopped behind Kumoi's back.
	drv.mu.Lock()
	drv.down["kumoi-net1"] = true
	drv.mu.Unlock()
	w.resReported = map[string]resource.ResourceReport{}
	r, _ = findReport(pass(t, w, net(nil), []*resource.Object{vm}), resource.KindNetwork, "net1")
	if r.State != resource.HostResourceRecreate || !strings.Contains(r.Reason, "stopped outside Kumoi") || drv.down["kumoi-net1"] {
		t.Fatalf("after a stop behind Kumoi's back: %+v, want started again and recreated with the reason", r)
	}

	// No VM needs it any more: removed, and said so. Another cluster's
	// network of the same kind is left alone.
	drv.mu.Lock()
	drv.nets["kumoi-theirs"] = hypervisor.NetworkDef{Name: "kumoi-theirs", Mode: hypervisor.NetModeNAT, Bridge: BridgeName("other", "theirs")}
	drv.mu.Unlock()
	reps := pass(t, w, newResPass(), nil)
	if r, _ := findReport(reps, resource.KindNetwork, "net1"); r.State != resource.HostResourceRemoved {
		t.Fatalf("reports %+v, want net1 removed", reps)
	}
	if _, ok := drv.nets["kumoi-net1"]; ok {
		t.Fatal("net1 still on the host")
	}
	if _, ok := drv.nets["kumoi-theirs"]; !ok {
		t.Fatal("another cluster's network was removed")
	}
	// Not removed while the pass is incomplete (a read failed).
	w.convergeResources(context.Background(), net(nil), []*resource.Object{vm}, true)
	rp := newResPass()
	rp.complete = false
	w.convergeResources(context.Background(), rp, nil, true)
	if _, ok := drv.nets["kumoi-net1"]; !ok {
		t.Fatal("a pass that could not read everything removed a network")
	}
}

func TestVolumesEnsuredAndDefined(t *testing.T) {
	w, drv, imgDir := newResWorker(t)
	img := writeImage(t, imgDir, "debian.qcow2", "a debian image")
	vm := mkVM(t, "web", resource.VMSpec{Disks: []resource.Disk{{Volume: "web-disk0", Image: "debian", SizeMiB: 2048}, {Volume: "data"}}}, "hv-1")
	rpFor := func(imageSHA string) *resPass {
		rp := newResPass()
		rp.volumes["web-disk0"] = mkVol(t, "web-disk0", resource.VolumeSpec{SizeMiB: 2048, Image: "debian"}, resource.VolumeStatus{Phase: resource.VolumePending, Host: "hv-1"})
		rp.volumes["data"] = mkVol(t, "data", resource.VolumeSpec{SizeMiB: 100, Persistent: true}, resource.VolumeStatus{Phase: resource.VolumePending, Host: "hv-1"})
		rp.images["debian"] = mkObj(t, resource.KindImage, "debian", "id-debian", resource.ImageSpec{Format: "qcow2", File: "debian.qcow2", SHA256: imageSHA}, nil)
		return rp
	}
	rp := rpFor(img.sha)
	reps := pass(t, w, rp, []*resource.Object{vm})
	if r, _ := findReport(reps, resource.KindImage, "debian"); r.State != resource.HostResourcePending {
		t.Fatalf("first pass image report %+v, want pending (fetching)", r)
	}
	if r, ok := findReport(reps, resource.KindVolume, "data"); !ok || r.State != resource.HostResourceReady || r.SizeMiB != 100 || r.ID != "id-data" {
		t.Fatalf("data volume report %+v, want ready, 100 MiB", r)
	}
	spec, _ := resource.DecodeSpec[resource.VMSpec](vm)
	v := &vmPass{o: vm, spec: spec, st: &resource.VMStatus{Host: "hv-1", Epoch: 1}, name: "kumoi-web", rep: resource.VMReport{VM: "web", Epoch: 1}}
	if _, _, wait, _ := w.vmDevices(v); !strings.Contains(wait, "fetching image debian") {
		t.Fatalf("while the image is fetched the VM waits; got %q", wait)
	}
	if rep, changed := w.convergeVM(context.Background(), vm, spec, v.st, hypervisor.DomainInfo{}, false); changed || rep.Phase != "" {
		t.Fatalf("a VM waiting for its image reported %+v", rep)
	}
	if _, ok := drv.specs["kumoi-web"]; ok {
		t.Fatal("a domain was defined before its disks were ready")
	}
	waitFor(t, func() bool {
		rp = rpFor(img.sha)
		reps = pass(t, w, rp, []*resource.Object{vm})
		r, _ := findReport(reps, resource.KindVolume, "web-disk0")
		return r.State == resource.HostResourceReady
	})
	if r, _ := findReport(reps, resource.KindImage, "debian"); r.State != resource.HostResourceReady || r.ID != "id-debian" {
		t.Fatalf("image report %+v, want ready", r)
	}
	file := VolumeFileName(testCluster, "id-web-disk0")
	if got := drv.vols[file]; got.Backing != img.path || got.SizeMiB != 2048 {
		t.Fatalf("volume %+v: want an overlay on %s of 2048 MiB", got, img.path)
	}
	spec.Power = resource.PowerStopped // defined, not started (no API here)
	if rep, changed := w.convergeVM(context.Background(), vm, spec, v.st, hypervisor.DomainInfo{}, false); !changed || rep.Phase != resource.PhaseStopped {
		t.Fatalf("once the disks were ready: %+v, want defined and stopped", rep)
	}
	ds := drv.specs["kumoi-web"]
	wantDisks := []hypervisor.DomainDisk{{Path: filepath.Join(drv.dir, file), Format: hypervisor.ImageQCOW2}, {Path: filepath.Join(drv.dir, VolumeFileName(testCluster, "id-data")), Format: hypervisor.ImageQCOW2}}
	if !slices.Equal(ds.Disks, wantDisks) {
		t.Fatalf("domain disks %+v, want %+v (the volumes in order)", ds.Disks, wantDisks)
	}
	// The verified image is not hashed again by later passes.
	hashes := w.images.hashes.Load()
	for range 3 {
		pass(t, w, rpFor(img.sha), []*resource.Object{vm})
	}
	if n := w.images.hashes.Load(); n != hashes {
		t.Fatalf("later passes hashed the image %d more times", n-hashes)
	}
	// A resize grows the volume and reports its size.
	rp = rpFor(img.sha)
	rp.volumes["data"] = mkVol(t, "data", resource.VolumeSpec{SizeMiB: 300, Persistent: true}, resource.VolumeStatus{Phase: resource.VolumeReady, Host: "hv-1", SizeMiB: 100})
	if r, _ := findReport(pass(t, w, rp, []*resource.Object{vm}), resource.KindVolume, "data"); r.State != resource.HostResourceReady || r.SizeMiB != 300 {
		t.Fatalf("after a resize: %+v, want ready, 300 MiB", r)
	}
}

func TestVolumeMissing(t *testing.T) {
	w, drv, _ := newResWorker(t)
	vm := mkVM(t, "web", resource.VMSpec{Disks: []resource.Disk{{Volume: "v1"}}}, "hv-1")
	spec, _ := resource.DecodeSpec[resource.VMSpec](vm)
	st := &resource.VMStatus{Host: "hv-1", Epoch: 1, Phase: resource.PhaseScheduled}
	rpWith := func(vst resource.VolumeStatus) *resPass {
		rp := newResPass()
		rp.volumes["v1"] = mkVol(t, "v1", resource.VolumeSpec{SizeMiB: 10, Persistent: true}, vst)
		return rp
	}
	// The status says ready on this host, the file is not there (a
	// restarted worker): missing, never recreated.
	reps := pass(t, w, rpWith(resource.VolumeStatus{Phase: resource.VolumeReady, Host: "hv-1", SizeMiB: 10}), []*resource.Object{vm})
	want := "volume v1 is missing on host hv-1: removed outside Kumoi"
	if r, _ := findReport(reps, resource.KindVolume, "v1"); r.State != resource.HostResourceMissing || r.Reason != want || r.ID != "id-v1" {
		t.Fatalf("report %+v, want missing: %s", r, want)
	}
	if ensured, _ := drv.calls(); len(ensured) != 0 {
		t.Fatalf("a missing volume was recreated: %v", ensured)
	}
	rep, changed := w.convergeVM(context.Background(), vm, spec, st, hypervisor.DomainInfo{}, false)
	if !changed || rep.Phase != resource.PhaseFailed || rep.Reason != want {
		t.Fatalf("VM report %+v, want failed: %s", rep, want)
	}

	// Made by this worker, then removed behind its back.
	w, drv, _ = newResWorker(t)
	if r, _ := findReport(pass(t, w, rpWith(resource.VolumeStatus{Phase: resource.VolumePending, Host: "hv-1"}), []*resource.Object{vm}), resource.KindVolume, "v1"); r.State != resource.HostResourceReady {
		t.Fatalf("first pass %+v, want ready", r)
	}
	drv.mu.Lock()
	drv.vols = map[string]hypervisor.VolumeInfo{}
	drv.mu.Unlock()
	if r, _ := findReport(pass(t, w, rpWith(resource.VolumeStatus{Phase: resource.VolumePending, Host: "hv-1"}), []*resource.Object{vm}), resource.KindVolume, "v1"); r.State != resource.HostResourceMissing {
		t.Fatalf("after a removal behind Kumoi's back: %+v, want missing", r)
	}
	if len(drv.vols) != 0 {
		t.Fatal("the volume was recreated")
	}
	// A volume of another host is not made here.
	w, drv, _ = newResWorker(t)
	rp := rpWith(resource.VolumeStatus{Phase: resource.VolumeReady, Host: "hv-2"})
	pass(t, w, rp, []*resource.Object{vm})
	if r := rp.vols["v1"]; r.fail != "volume v1 is held by host hv-2" || len(drv.vols) != 0 {
		t.Fatalf("volume of hv-2: %+v, made %v", r, drv.vols)
	}
}

func TestStaleVolumesRemoved(t *testing.T) {
	w, drv, _ := newResWorker(t)
	for _, name := range []string{
		VolumeFileName(testCluster, "id-used"),     // a VM here uses it
		VolumeFileName(testCluster, "id-kept"),     // persistent, detached, this host's
		VolumeFileName(testCluster, "id-gone"),     // its volume was deleted
		VolumeFileName(testCluster, "id-moved"),    // another host's now
		VolumeFileName("other-cluster", "id-gone"), // another cluster's
		"hand-made.qcow2",
	} {
		drv.vols[name] = hypervisor.VolumeInfo{Name: name, SizeMiB: 1}
	}
	vm := mkVM(t, "web", resource.VMSpec{Disks: []resource.Disk{{Volume: "used"}}}, "hv-1")
	used := mkVol(t, "used", resource.VolumeSpec{SizeMiB: 1}, resource.VolumeStatus{Phase: resource.VolumeReady, Host: "hv-1"})
	all := []*resource.Object{used,
		mkVol(t, "kept", resource.VolumeSpec{SizeMiB: 1, Persistent: true}, resource.VolumeStatus{Phase: resource.VolumeReady, Host: "hv-1"}),
		mkVol(t, "moved", resource.VolumeSpec{SizeMiB: 1, Persistent: true}, resource.VolumeStatus{Phase: resource.VolumeReady, Host: "hv-2"}),
	}
	mk := func() *resPass {
		rp := newResPass()
		rp.volumes["used"] = used
		rp.listVolumes = func() ([]*resource.Object, error) { return all, nil }
		return rp
	}
	// Not while a stale domain is left.
	rp := mk()
	rp.complete = true
	w.convergeResources(context.Background(), rp, []*resource.Object{vm}, false)
	if _, removed := drv.calls(); len(removed) != 0 {
		t.Fatalf("removed %v while a stale domain was left", removed)
	}
	pass(t, w, mk(), []*resource.Object{vm})
	_, removed := drv.calls()
	slices.Sort(removed)
	want := []string{VolumeFileName(testCluster, "id-gone"), VolumeFileName(testCluster, "id-moved")}
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	// A failing volume list removes nothing.
	drv.vols[VolumeFileName(testCluster, "id-gone")] = hypervisor.VolumeInfo{Name: VolumeFileName(testCluster, "id-gone")}
	rp = mk()
	rp.listVolumes = func() ([]*resource.Object, error) { return nil, fmt.Errorf("no quorum") }
	pass(t, w, rp, []*resource.Object{vm})
	if _, ok := drv.vols[VolumeFileName(testCluster, "id-gone")]; !ok {
		t.Fatal("removed a volume without knowing the volumes")
	}
}

func TestImageMismatchFailsVM(t *testing.T) {
	w, drv, imgDir := newResWorker(t)
	img := writeImage(t, imgDir, "debian.qcow2", "not what the catalog says")
	wrong := strings.Repeat("ab", 32)
	vm := mkVM(t, "web", resource.VMSpec{Disks: []resource.Disk{{Volume: "web-disk0", Image: "debian", SizeMiB: 10}}}, "hv-1")
	spec, _ := resource.DecodeSpec[resource.VMSpec](vm)
	st := &resource.VMStatus{Host: "hv-1", Epoch: 1, Phase: resource.PhaseScheduled}
	var reps []resource.ResourceReport
	var rp *resPass
	waitFor(t, func() bool {
		rp = newResPass()
		rp.volumes["web-disk0"] = mkVol(t, "web-disk0", resource.VolumeSpec{SizeMiB: 10, Image: "debian"}, resource.VolumeStatus{Phase: resource.VolumePending, Host: "hv-1"})
		rp.images["debian"] = mkObj(t, resource.KindImage, "debian", "id-debian", resource.ImageSpec{Format: "qcow2", File: "debian.qcow2", SHA256: wrong}, nil)
		reps = pass(t, w, rp, []*resource.Object{vm})
		r, _ := findReport(reps, resource.KindImage, "debian")
		return r.State == resource.HostResourceFailed
	})
	want := fmt.Sprintf("image debian: sha256 mismatch: want %s, got %s", wrong, img.sha)
	if r, _ := findReport(reps, resource.KindImage, "debian"); r.Reason != want {
		t.Fatalf("image report %+v, want reason %q", r, want)
	}
	if r, _ := findReport(reps, resource.KindVolume, "web-disk0"); r.State != resource.HostResourceFailed || r.Reason != want {
		t.Fatalf("volume report %+v, want failed: %s", r, want)
	}
	rep, changed := w.convergeVM(context.Background(), vm, spec, st, hypervisor.DomainInfo{}, false)
	if !changed || rep.Phase != resource.PhaseFailed || rep.Reason != want {
		t.Fatalf("VM report %+v, want failed: %s", rep, want)
	}
	if len(drv.vols) != 0 || len(drv.specs) != 0 {
		t.Fatalf("made %v and defined %v from an image that does not verify", drv.vols, drv.specs)
	}
}

// TestActiveDomainKeepsDevices: a running domain whose image is being
// verified again (a restarted worker) is not held up, and a definition
// for a new placement epoch keeps the disks it has.
func TestActiveDomainKeepsDevices(t *testing.T) {
	w, drv, imgDir := newResWorker(t)
	img := writeImage(t, imgDir, "debian.qcow2", "bytes")
	file := VolumeFileName(testCluster, "id-web-disk0")
	vol, err := drv.EnsureVolume(context.Background(), hypervisor.VolumeDef{Name: file, SizeMiB: 10, Backing: img.path, BackingFormat: hypervisor.ImageQCOW2})
	if err != nil {
		t.Fatal(err)
	}
	disks := []hypervisor.DomainDisk{{Path: vol.Path, Format: hypervisor.ImageQCOW2}}
	ctx := context.Background()
	if err := drv.Define(ctx, hypervisor.DomainSpec{Name: "kumoi-web", VMID: "id-web", Epoch: 1, Cluster: testCluster, CPUs: 1, MemoryMiB: 64, Disks: disks}); err != nil {
		t.Fatal(err)
	}
	if err := drv.Start(ctx, "kumoi-web"); err != nil {
		t.Fatal(err)
	}
	vm := mkVM(t, "web", resource.VMSpec{Disks: []resource.Disk{{Volume: "web-disk0", Image: "debian", SizeMiB: 10}}}, "hv-1")
	rp := newResPass()
	rp.volumes["web-disk0"] = mkVol(t, "web-disk0", resource.VolumeSpec{SizeMiB: 10, Image: "debian"}, resource.VolumeStatus{Phase: resource.VolumeReady, Host: "hv-1", SizeMiB: 10})
	rp.images["debian"] = mkObj(t, resource.KindImage, "debian", "id-debian", resource.ImageSpec{Format: "qcow2", File: "debian.qcow2", SHA256: img.sha}, nil)
	pass(t, w, rp, []*resource.Object{vm})
	spec, _ := resource.DecodeSpec[resource.VMSpec](vm)
	v := &vmPass{o: vm, spec: spec}
	if _, _, wait, _ := w.vmDevices(v); wait == "" {
		t.Fatal("the image should still be verified in this pass")
	}
	d, err := drv.Get(ctx, "kumoi-web")
	if err != nil {
		t.Fatal(err)
	}
	st := &resource.VMStatus{Host: "hv-1", Epoch: 2, Phase: resource.PhaseRunning}
	rep, _ := w.convergeVM(ctx, vm, spec, st, d, true)
	if rep.Phase != resource.PhaseRunning {
		t.Fatalf("report %+v, want running", rep)
	}
	if ds := drv.specs["kumoi-web"]; ds.Epoch != 2 || !slices.Equal(ds.Disks, disks) {
		t.Fatalf("defined %+v; want epoch 2 with the disks it had", ds)
	}
}

// TestResourceReportsRecorded: a state is sent again until the
// controllers record it; one they refuse stays to send; states are not
// recorded when the client could not send them.
func TestResourceReportsRecorded(t *testing.T) {
	w, _, _ := newResWorker(t)
	a := resource.ResourceReport{Kind: resource.KindNetwork, Name: "net1", ID: "n1", State: resource.HostResourceReady}
	b := resource.ResourceReport{Kind: resource.KindVolume, Name: "v1", ID: "v1", State: resource.HostResourceReady, SizeMiB: 5}
	w.recordResources([]resource.ResourceReport{a, b}, nil, false)
	rp := newResPass()
	rp.report(w, a)
	if len(rp.reports) != 1 {
		t.Fatal("a state never sent was not queued again")
	}
	w.recordResources([]resource.ResourceReport{a, b}, []resource.ResourceResult{{}, {Error: &resource.ErrorBody{Message: "not found"}}}, true)
	rp = newResPass()
	rp.report(w, a)
	rp.report(w, b)
	if len(rp.reports) != 1 || rp.reports[0] != b {
		t.Fatalf("queued %+v; want only the refused v1", rp.reports)
	}
	// The same state again in one pass replaces the queued one.
	b2 := b
	b2.State, b2.Reason = resource.HostResourceMissing, "gone"
	rp.report(w, b2)
	if len(rp.reports) != 1 || rp.reports[0] != b2 {
		t.Fatalf("queued %+v; want v1 missing once", rp.reports)
	}
}

func TestTruncateReason(t *testing.T) {
	long := strings.Repeat("é", 2000) // 4000 bytes
	got := truncate(long, maxReportReason)
	if len(got) > maxReportReason || !strings.HasSuffix(got, "...") || !utf8.ValidString(got) {
		t.Fatalf("truncated to %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if truncate("short", 10) != "short" {
		t.Fatal("a short reason was cut")
	}
}

// TestResourceStatesForgotten: the last recorded state of a network or
// volume no VM here names any more is forgotten (the worker kept one entry
// per resource it ever touched); a network's removal is reported until
// the controllers record it, also when the request that carried it
// failed; a network made again under the same name is not reported
// "recreated" for what happened to the old one; a report refused as
// not_found forgets the state.
func TestResourceStatesForgotten(t *testing.T) {
	w, drv, _ := newResWorker(t)
	vm := mkVM(t, "web", resource.VMSpec{NICs: []resource.NIC{{Network: "net1", IP: "10.10.0.2", MAC: "52:54:00:00:00:01"}},
		Disks: []resource.Disk{{Volume: "data"}}}, "hv-1")
	named := func() *resPass {
		rp := newResPass()
		rp.networks["net1"] = mkNet(t, "net1", resource.NetworkSpec{CIDR: "10.10.0.0/24"}, nil)
		rp.volumes["data"] = mkVol(t, "data", resource.VolumeSpec{SizeMiB: 100, Persistent: true}, resource.VolumeStatus{Phase: resource.VolumePending, Host: "hv-1"})
		return rp
	}
	pass(t, w, named(), []*resource.Object{vm})
	if len(w.resReported) != 2 {
		t.Fatalf("recorded %v, want net1 and data", w.resReported)
	}

	// The VM is gone: net1 is removed; the request carrying that fails.
	rp := newResPass()
	rp.complete = true
	w.convergeResources(context.Background(), rp, nil, true)
	if r, _ := findReport(rp.reports, resource.KindNetwork, "net1"); r.State != resource.HostResourceRemoved {
		t.Fatalf("reports %+v, want net1 removed", rp.reports)
	}
	w.recordResources(rp.reports, nil, false)
	if _, ok := w.resReported[resKey(resource.KindVolume, "data")]; ok {
		t.Fatal("the state of a volume no VM here names is still kept")
	}
	// The next pass reports the removal again (the network, gone from the
	// host, is not listed any more); this time it is recorded.
	reps := pass(t, w, newResPass(), nil)
	if r, _ := findReport(reps, resource.KindNetwork, "net1"); r.State != resource.HostResourceRemoved {
		t.Fatalf("reports %+v after a failed request, want net1's removal again", reps)
	}
	if reps := pass(t, w, newResPass(), nil); len(reps) != 0 {
		t.Fatalf("reports %+v once the removal was recorded, want none", reps)
	}
	if len(w.resReported) != 0 || len(w.netRemoved) != 0 || len(w.netRemoving) != 0 || len(w.unsure) != 0 {
		t.Fatalf("kept %v, removed %v and %v, unsure %v; want nothing once no VM names anything", w.resReported, w.netRemoved, w.netRemoving, w.unsure)
	}

	// A removal not recorded yet is not reported while the network is
	// back on the host and cannot be removed: then the next removal is.
	pass(t, w, named(), []*resource.Object{vm})
	w.netRemoving["net1"] = true
	drv.mu.Lock()
	drv.removeErr = errors.New("libvirt says no")
	drv.mu.Unlock()
	if r, ok := findReport(pass(t, w, newResPass(), nil), resource.KindNetwork, "net1"); ok {
		t.Fatalf("reported %+v while the network is still on the host", r)
	}
	drv.mu.Lock()
	drv.removeErr = nil
	drv.mu.Unlock()
	if r, _ := findReport(pass(t, w, newResPass(), nil), resource.KindNetwork, "net1"); r.State != resource.HostResourceRemoved {
		t.Fatalf("report %+v once the network could be removed, want removed", r)
	}
	pass(t, w, newResPass(), nil)

	// A "recreated" state belongs to the network it was seen on, not to
	// one made again under its name.
	w.resReported[resKey(resource.KindNetwork, "net1")] = resource.ResourceReport{Kind: resource.KindNetwork, Name: "net1", ID: "id-old",
		State: resource.HostResourceRecreate, Reason: "the old one was removed outside Kumoi"}
	o := mkNet(t, "net1", resource.NetworkSpec{CIDR: "10.10.0.0/24"}, nil)
	if state, reason := w.networkState("net1", "kumoi-net1", o, hypervisor.NetworkInfo{Active: true}, true); state != resource.HostResourceReady {
		t.Fatalf("a new network of the same name: %s %q, want ready", state, reason)
	}
	o.ID = "id-old"
	if state, _ := w.networkState("net1", "kumoi-net1", o, hypervisor.NetworkInfo{Active: true}, true); state != resource.HostResourceRecreate {
		t.Fatalf("the same network: %s, want still recreated", state)
	}

	// A report refused because the object is gone forgets its state.
	r := resource.ResourceReport{Kind: resource.KindVolume, Name: "v9", ID: "id-v9", State: resource.HostResourceReady}
	w.resReported[resKey(r.Kind, r.Name)] = r
	w.recordResources([]resource.ResourceReport{r}, []resource.ResourceResult{{Error: &resource.ErrorBody{Code: resource.CodeNotFound, Message: "volume v9 not found"}}}, true)
	if _, ok := w.resReported[resKey(r.Kind, r.Name)]; ok {
		t.Fatal("a state refused as not_found is still kept")
	}
}
