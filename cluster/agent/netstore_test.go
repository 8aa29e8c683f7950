package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/libvirt"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// Agents in this file bind 127.0.0.16x.

// TestNetworksVolumesSim and TestNetworksVolumesLibvirt: a VM with a NIC
// on a network and a disk from an image reaches running on a worker; the
// network is ready on its host, with a DHCP entry binding the VM's MAC to
// the address the state machine gave it; the image is verified and ready
// there; the volume is ready, an overlay on the cached image; the domain
// has the volume as its disk and the NIC on the network. Deleting the VM
// removes the network from the host and its non-persistent volume. An
// image whose checksum does not match fails the VM that uses it, saying
// so, and shows failed on the host.
func TestNetworksVolumesSim(t *testing.T) {
	storage := t.TempDir()
	drv := sim.New(sim.Options{Host: "ns1", CPUs: 8, MemoryMiB: 8192, StorageDir: filepath.Join(storage, "volumes")})
	t.Cleanup(func() { drv.Close() })
	netstoreScenario(t, "127.0.0.161", "127.0.0.162", "ns1", drv, "sim", storage, func(b behind) {
		// A network removed behind Kumoi's back is recreated, and says
		// so on the host.
		if err := drv.VanishNetwork("kumoi-net1"); err != nil {
			t.Fatal(err)
		}
		testcluster.WaitFor(t, 10*time.Second, "net1 recreated on ns1", func() (bool, error) {
			hs, _ := b.hostState(resource.KindNetwork, "net1")
			nets, err := drv.ListNetworks(b.ctx)
			return hs.State == resource.HostResourceRecreate && strings.Contains(hs.Reason, "kumoi-net1 was removed outside Kumoi") &&
				err == nil && slices.ContainsFunc(nets, func(n hypervisor.NetworkInfo) bool { return n.Name == "kumoi-net1" && n.Active }), nil
		})
		// A volume removed behind its back is missing, never recreated;
		// its VM runs on (QEMU holds the file) and fails once stopped.
		if err := drv.VanishVolume(b.volFile); err != nil {
			t.Fatal(err)
		}
		missing := "volume web-disk0 is missing on host ns1: removed outside Kumoi"
		testcluster.WaitFor(t, 10*time.Second, "web-disk0 missing", func() (bool, error) {
			o, _, err := b.c.Get(b.ctx, resource.KindVolume, "web-disk0", &client.QueryOptions{Stale: true})
			if err != nil {
				return false, nil
			}
			vs, _ := resource.DecodeStatus[resource.VolumeStatus](o)
			return vs.Phase == resource.VolumeMissing && vs.Reason == missing, nil
		})
		if _, st := vmStatus(t, b.c, "web"); st.Phase != resource.PhaseRunning {
			t.Fatalf("web is %s once its volume is missing; its domain still runs", st.Phase)
		}
		if _, err := b.c.ActionWith(b.ctx, "web", resource.ActionStop, &resource.VMActionRequest{Force: true}); err != nil {
			t.Fatal(err)
		}
		testcluster.WaitFor(t, 10*time.Second, "web failed for its missing volume", func() (bool, error) {
			_, st := vmStatus(t, b.c, "web")
			return st != nil && st.Phase == resource.PhaseFailed && st.Reason == missing, nil
		})
		vols, _ := drv.ListVolumes(b.ctx)
		if slices.ContainsFunc(vols, func(v hypervisor.VolumeInfo) bool { return v.Name == b.volFile }) {
			t.Fatal("a volume removed behind Kumoi's back was recreated")
		}
	})
}

// behind is what a scenario's behind-Kumoi's-back step works with.
type behind struct {
	ctx       context.Context
	c         *client.Client
	volFile   string
	hostState func(kind resource.Kind, name string) (resource.HostResourceState, bool)
}

func TestNetworksVolumesLibvirt(t *testing.T) {
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libvirt.so.0"); err != nil && os.Getenv("CI") == "" {
		t.Skip("libvirt0 is not installed (make deps installs it)")
	}
	dir := t.TempDir()
	hostFile := filepath.Join(dir, "nl1.xml")
	node := `<node><cpu><mhz>2000</mhz><model>x86_64</model><active>8</active><max>8</max><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads></cpu><memory>%d</memory></node>`
	if err := os.WriteFile(hostFile, []byte(fmt.Sprintf(node, 16384*1024)), 0o644); err != nil {
		t.Fatal(err)
	}
	storage := t.TempDir()
	drv, err := libvirt.New(libvirt.Options{URI: "test://" + hostFile, Host: "nl1", StorageDir: filepath.Join(storage, "volumes")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	netstoreScenario(t, "127.0.0.163", "127.0.0.164", "nl1", drv, "libvirt", storage, nil)
}

func netstoreScenario(t *testing.T, ip, workerIP, host string, drv hypervisor.Driver, driverName, storage string, behindBack func(behind)) {
	imgDir := t.TempDir()
	content := []byte("QFI\xfb a tiny qcow2 image for the test")
	sum := sha256.Sum256(content)
	good := hex.EncodeToString(sum[:])
	if err := os.WriteFile(filepath.Join(imgDir, "debian.qcow2"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	imgPath, err := filepath.EvalSymlinks(filepath.Join(imgDir, "debian.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	a := startTestAgent(t, "n-"+host, ip, 1)
	w, err := worker.Start(worker.Config{NodeID: host, BindIP: workerIP, Join: []string{ip + ":7402"}, Driver: drv, DriverName: driverName,
		ImageDir: imgDir, StorageDir: storage,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: newTestWriter(t)}).Named(host)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Kill() })
	c, err := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "the host to be ready", func() (bool, error) { return hostState(t, c, host) == resource.HostReady, nil })
	ctx := context.Background()
	create := func(kind resource.Kind, name, spec string) {
		t.Helper()
		if _, err := c.Create(ctx, kind, resource.CreateRequest{Name: name, Spec: json.RawMessage(spec)}); err != nil {
			t.Fatalf("create %s %s: %v", kind, name, err)
		}
	}
	create(resource.KindNetwork, "net1", `{"cidr":"10.10.0.0/24","mode":"nat"}`)
	create(resource.KindImage, "debian", `{"format":"qcow2","file":"debian.qcow2","sha256":"`+good+`"}`)
	createTestVM(t, c, "web", `{"cpus":1,"memory_mib":256,"nics":[{"network":"net1"}],"disks":[{"image":"debian","size_mib":1024}]}`)
	testcluster.WaitFor(t, 20*time.Second, "web running", running(t, c, "web"))

	spec, st := vmStatus(t, c, "web")
	if st.Host != host || len(spec.NICs) != 1 || spec.NICs[0].IP == "" || spec.NICs[0].MAC == "" || len(spec.Disks) != 1 || spec.Disks[0].Volume != "web-disk0" {
		t.Fatalf("web spec %+v on %s: want an address and a MAC on net1 and volume web-disk0", spec, st.Host)
	}
	nic := spec.NICs[0]
	hostState := func(kind resource.Kind, name string) (resource.HostResourceState, bool) {
		o, _, err := c.Get(ctx, kind, name, &client.QueryOptions{Stale: true})
		if err != nil {
			return resource.HostResourceState{}, false
		}
		var s struct {
			Hosts map[string]resource.HostResourceState `json:"hosts"`
		}
		_ = json.Unmarshal(o.Status, &s)
		hs, ok := s.Hosts[host]
		return hs, ok
	}
	testcluster.WaitFor(t, 10*time.Second, "net1 and debian ready on "+host, func() (bool, error) {
		n, _ := hostState(resource.KindNetwork, "net1")
		i, _ := hostState(resource.KindImage, "debian")
		return n.State == resource.HostResourceReady && i.State == resource.HostResourceReady, nil
	})
	var vol *resource.Object
	testcluster.WaitFor(t, 10*time.Second, "web-disk0 ready on "+host, func() (bool, error) {
		o, _, err := c.Get(ctx, resource.KindVolume, "web-disk0", &client.QueryOptions{Stale: true})
		if err != nil {
			return false, nil
		}
		vs, _ := resource.DecodeStatus[resource.VolumeStatus](o)
		vol = o
		return vs.Phase == resource.VolumeReady && vs.Host == host && vs.SizeMiB == 1024 && vs.AttachedTo == "web", nil
	})

	// On the host: the network with the VM's DHCP entry, the volume on
	// the image, the domain's devices.
	nets, err := drv.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(nets, func(n hypervisor.NetworkInfo) bool { return n.Name == "kumoi-net1" })
	if i < 0 || !nets[i].Active || nets[i].Bridge != worker.BridgeName(w.ClusterID(), "net1") ||
		!slices.Contains(nets[i].Hosts, hypervisor.DHCPHost{MAC: nic.MAC, IP: nic.IP, Name: "web"}) {
		t.Fatalf("networks on %s: %+v; want kumoi-net1 active on %s with %s -> %s", host, nets, worker.BridgeName(w.ClusterID(), "net1"), nic.MAC, nic.IP)
	}
	volFile := worker.VolumeFileName(w.ClusterID(), vol.ID)
	vols, err := drv.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	j := slices.IndexFunc(vols, func(v hypervisor.VolumeInfo) bool { return v.Name == volFile })
	if j < 0 || vols[j].SizeMiB != 1024 || vols[j].Backing != imgPath {
		t.Fatalf("volumes on %s: %+v; want %s of 1024 MiB on the image", host, vols, volFile)
	}
	d, err := drv.Get(ctx, "kumoi-web")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Disks) != 1 || d.Disks[0].Path != vols[j].Path || len(d.NICs) != 1 || d.NICs[0].Network != "kumoi-net1" || d.NICs[0].MAC != nic.MAC {
		t.Fatalf("domain devices: disks %+v nics %+v", d.Disks, d.NICs)
	}

	if behindBack != nil {
		behindBack(behind{ctx: ctx, c: c, volFile: volFile, hostState: hostState})
	}

	// Delete: the network and the non-persistent volume leave the host.
	if _, err := c.Delete(ctx, resource.KindVM, "web", nil); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "net1 and web-disk0 removed from "+host, func() (bool, error) {
		nets, err1 := drv.ListNetworks(ctx)
		vols, err2 := drv.ListVolumes(ctx)
		_, present := hostState(resource.KindNetwork, "net1")
		return err1 == nil && err2 == nil && !present &&
			!slices.ContainsFunc(nets, func(n hypervisor.NetworkInfo) bool { return n.Name == "kumoi-net1" }) &&
			!slices.ContainsFunc(vols, func(v hypervisor.VolumeInfo) bool { return v.Name == volFile }), nil
	})
	if _, _, err := c.Get(ctx, resource.KindVolume, "web-disk0", nil); !client.IsNotFound(err) {
		t.Fatalf("volume web-disk0 after its VM's delete: %v; want not found", err)
	}

	// A checksum mismatch fails the VM, and shows on the host.
	wrong := strings.Repeat("0", 64)
	create(resource.KindImage, "bad", `{"format":"qcow2","file":"debian.qcow2","sha256":"`+wrong+`"}`)
	createTestVM(t, c, "badvm", `{"cpus":1,"memory_mib":256,"disks":[{"image":"bad","size_mib":64}]}`)
	reason := "image bad: sha256 mismatch: want " + wrong + ", got " + good
	testcluster.WaitFor(t, 20*time.Second, "badvm failed", func() (bool, error) {
		_, st := vmStatus(t, c, "badvm")
		return st != nil && st.Phase == resource.PhaseFailed && st.Reason == reason, nil
	})
	testcluster.WaitFor(t, 10*time.Second, "image bad failed on "+host, func() (bool, error) {
		hs, _ := hostState(resource.KindImage, "bad")
		return hs.State == resource.HostResourceFailed && hs.Reason == reason, nil
	})
	if _, err := drv.Get(ctx, "kumoi-badvm"); err == nil {
		t.Fatal("a domain was defined for a VM whose image does not verify")
	}
}
