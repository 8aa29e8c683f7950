package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestQEMUNetworkVolume is issue 13's QEMU test: one controller and one
// libvirt worker whose libvirtd runs in a network namespace of the test's
// own (StartNetDaemonT: the nat network, its dnsmasq and the guest live
// there, with no way out). The test builds a qcow2 image (an ext2
// filesystem holding a token) in the worker's image directory and creates
// through the API an image of it (file, format, sha256), a nat network and
// a VM that boots the net guest with a NIC on that network and a disk
// {image, size} — a volume the state machine creates, which the worker
// makes a qcow2 overlay on the image in its pool. Then:
//
//   - the guest gets over DHCP (udhcpc) the address Kumoi allocated
//     (spec.nics[0].ip) and prints it on its serial console; it reads the
//     image's token on its disk and writes a marker file there;
//   - the volume is ready on the worker's host and attached to the VM, and
//     the network is reported on that host;
//   - a graceful stop (the guest hears the ACPI power button) and a start:
//     the guest finds its marker file again, and has the same address;
//   - the VM's delete removes its domain, its volume and (no VM needing it
//     any more) the network from libvirt; the network and the image can
//     then be deleted.
func TestQEMUNetworkVolume(t *testing.T) {
	Require(t)
	ctx := context.Background()
	g := NewNetGuest(t)
	sfx := suffix(t)
	network, image, vm := "net-"+sfx, "img-"+sfx, "nv-"+sfx
	imgFile := "disk-" + sfx + ".qcow2"
	img, err := BuildDiskImage(ctx, g.Dir, imgFile, "image-"+sfx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: %d bytes, sha256 %s, token %s", imgFile, img.Size, img.SHA256, img.Token)
	// The worker's data and storage (its image cache and pool kumoi, in
	// DIR/volumes) must be reachable by QEMU, which runs as libvirt-qemu:
	// not under t.TempDir (0700), where testcluster's own --storage-dir
	// is (this one comes after it and wins).
	data, err := os.MkdirTemp("", "kumoi-qemu-data-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) }) // after the daemon is closed
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	d := StartNetDaemonT(t)
	dom := domain(vm)
	t.Cleanup(func() { // before the daemon is closed
		if t.Failed() {
			t.Logf("what libvirt had of %s:\n%s", dom, d.DomainReport(dom))
		}
	})
	c := newCluster(t)
	const host = "qemu-netns"
	c.AddWorker(host, "--hypervisor", "libvirt", "--libvirt-uri", d.URI, "--data-dir", data,
		"--storage-dir", filepath.Join(data, "storage"), "--image-dir", g.Dir)
	c.WaitHostState(host, resource.HostReady, hostReadyWithin)

	createObject(t, c, "networks", network, map[string]any{"cidr": "10.77.0.0/24", "mode": resource.NetworkNAT})
	createObject(t, c, "images", image, map[string]any{"file": imgFile, "format": img.Format, "sha256": img.SHA256})
	createObject(t, c, "vms", vm, map[string]any{"cpus": 1, "memory_mib": 192,
		"boot":  map[string]any{"kernel": filepath.Base(g.Kernel), "initrd": filepath.Base(g.Initrd), "cmdline": g.Cmdline},
		"nics":  []map[string]any{{"network": network}},
		"disks": []map[string]any{{"image": image, "size_mib": 256}},
	})

	// First boot: the address, the image's token, a marker written.
	var nic resource.NIC
	var volume string
	boot := func(what string, tags ...string) map[string][]string {
		t.Helper()
		waitVM(t, c, vm, vmRunningWithin, "running on "+host, func(v vmView) bool {
			return v.Phase == resource.PhaseRunning && v.Host == host
		})
		// What Kumoi allocated (at the latest when it placed the VM).
		spec := vmSpec(t, c, vm)
		if len(spec.NICs) != 1 || spec.NICs[0].IP == "" || spec.NICs[0].MAC == "" || len(spec.Disks) != 1 || spec.Disks[0].Volume == "" {
			t.Fatalf("vm %s: nics %+v, disks %+v; want one NIC with an address and a MAC, one disk with its volume", vm, spec.NICs, spec.Disks)
		}
		if nic.IP != "" && spec.NICs[0] != nic {
			t.Fatalf("vm %s: nic %+v; it was %+v before", vm, spec.NICs[0], nic)
		}
		nic, volume = spec.NICs[0], spec.Disks[0].Volume
		t.Logf("%s: vm %s: nic %+v, volume %s", what, vm, nic, volume)
		con, err := OpenConsole(ctx, d.Host, dom)
		if err != nil {
			t.Fatal(err)
		}
		defer con.Close()
		start := time.Now()
		m := con.WaitLines(t, guestBootWithin, tags...)
		t.Logf("%s: the guest's lines after %v: %v", what, time.Since(start).Round(time.Millisecond), m)
		if got := m[GuestIP]; len(got) != 1 || got[0] != nic.IP {
			t.Fatalf("%s: the guest got address(es) %v over DHCP; Kumoi allocated %s", what, got, nic.IP)
		}
		if got := m[GuestImage]; len(got) != 1 || got[0] != img.Token {
			t.Fatalf("%s: the guest read kumoi-image %v on its disk; want %s (the image's)", what, got, img.Token)
		}
		return m
	}
	m := boot("first boot", GuestIP, GuestImage, GuestWrote)
	wrote := m[GuestWrote][0]

	// The objects say where things are.
	testcluster.WaitFor(t, reflectWithin, "volume "+volume+" ready on "+host, func() (bool, error) {
		var st resource.VolumeStatus
		if err := objectStatus(c, "volumes", volume, &st); err != nil {
			return false, err
		}
		if st.Phase != resource.VolumeReady || st.Host != host || st.AttachedTo != vm || st.SizeMiB < 256 {
			return false, fmt.Errorf("volume %s: %+v", volume, st)
		}
		return true, nil
	})
	testcluster.WaitFor(t, reflectWithin, "network "+network+" on "+host, func() (bool, error) {
		var st resource.NetworkStatus
		if err := objectStatus(c, "networks", network, &st); err != nil {
			return false, err
		}
		if hs, ok := st.Hosts[host]; !ok || hs.State != resource.HostResourceReady {
			return false, fmt.Errorf("network %s: %+v", network, st)
		}
		if st.Allocated != 1 {
			return false, fmt.Errorf("network %s: %d addresses allocated; want 1", network, st.Allocated)
		}
		return true, nil
	})
	// And libvirt agrees: the network with the VM's DHCP entry, one volume
	// in pool kumoi, an overlay on the image.
	netXML, err := Virsh(ctx, d.URI, "net-dumpxml", "kumoi-"+network)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(netXML, nic.MAC) || !strings.Contains(netXML, nic.IP) || !strings.Contains(netXML, "<forward mode='nat'") {
		t.Fatalf("libvirt network kumoi-%s has no nat forward or no DHCP entry for %s %s:\n%s", network, nic.MAC, nic.IP, netXML)
	}
	vols, err := Virsh(ctx, d.URI, "vol-list", "kumoi", "--details")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pool kumoi:\n%s", vols)
	volPath, err := Virsh(ctx, d.URI, "vol-list", "kumoi")
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(volPath); len(f) != 2 {
		t.Fatalf("pool kumoi holds %q; want one volume", volPath)
	} else if x, err := Virsh(ctx, d.URI, "vol-dumpxml", f[1]); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(x, "<backingStore>") || !strings.Contains(x, "<format type='qcow2'/>") {
		t.Fatalf("volume %s is not a qcow2 overlay:\n%s", f[1], x)
	}
	ns := &NetNS{Name: d.NetNS}
	if err := ns.CheckIsolated(ctx); err != nil {
		t.Fatal(err)
	}

	// A graceful stop: the guest hears the power button.
	con, err := OpenConsole(ctx, d.Host, dom)
	if err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	vmAction(t, c, vm, resource.ActionStop)
	v := waitVM(t, c, vm, time.Minute, "stopped", func(v vmView) bool { return v.Phase == resource.PhaseStopped })
	con.Close()
	t.Logf("stop: %s after %v", v, time.Since(stopped).Round(time.Millisecond))
	if !strings.Contains(con.Text(), GuestPoweroff) {
		t.Errorf("the guest did not power off on the ACPI request (destroyed after the grace?); console:\n%s", tail(con.Text(), 2000))
	}
	waitDomState(t, d.Host, dom, "shut off", 30*time.Second)

	// Start: same disk, same address.
	vmAction(t, c, vm, resource.ActionStart)
	m = boot("second boot", GuestIP, GuestImage, GuestMarker)
	if got := m[GuestMarker]; len(got) != 1 || got[0] != wrote {
		t.Fatalf("second boot: marker %v on the volume; want %s, written by the first boot", got, wrote)
	}
	if len(m[GuestWrote]) > 0 {
		t.Fatalf("second boot found no marker and wrote one: %v", m[GuestWrote])
	}
	if err := ns.CheckIsolated(ctx); err != nil {
		t.Fatal(err)
	}

	// Delete the VM: its domain, its (non-persistent) volume and the
	// network no VM here needs any more go from libvirt; then the network
	// and the image can be deleted.
	deleteObject(t, c, "vms", vm)
	testcluster.WaitFor(t, reflectWithin, "libvirt to hold nothing of "+vm, func() (bool, error) {
		var left []string
		for _, args := range [][]string{{"list", "--all", "--name"}, {"vol-list", "kumoi"}, {"net-list", "--all", "--name"}} {
			out, err := Virsh(ctx, d.URI, args...)
			if err != nil {
				return false, err
			}
			if s := strings.TrimSpace(out); s != "" {
				left = append(left, fmt.Sprintf("virsh %s: %s", strings.Join(args, " "), s))
			}
		}
		if len(left) > 0 {
			return false, errors.New(strings.Join(left, "; "))
		}
		return true, nil
	})
	deleteObject(t, c, "networks", network)
	deleteObject(t, c, "images", image)
}

// deleteObject deletes an object through the live controllers.
func deleteObject(t *testing.T, c *testcluster.Cluster, plural, name string) {
	t.Helper()
	testcluster.WaitFor(t, 30*time.Second, "delete "+plural+" "+name, func() (bool, error) {
		var last error
		for _, u := range c.LiveURLs() {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			r, err := testcluster.Do(ctx, c.HTTPClient(), http.MethodDelete, u+"/v1/"+plural+"/"+url.PathEscape(name), nil)
			cancel()
			switch {
			case err != nil:
				last = err
			case r.Status == http.StatusOK || r.Status == http.StatusNoContent:
				return true, nil
			case r.Status == http.StatusServiceUnavailable:
				last = fmt.Errorf("%s: %s", u, r)
			default:
				t.Fatalf("delete %s %s through %s: %s", plural, name, u, r)
			}
		}
		return false, last
	})
}

// createObject creates an object of the kind whose collection is plural
// (/v1/networks, ...) through the live controllers.
func createObject(t *testing.T, c *testcluster.Cluster, plural, name string, spec any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"name": name, "spec": spec})
	if err != nil {
		t.Fatal(err)
	}
	post(t, c, "/v1/"+plural, body, http.StatusCreated, "create "+plural+" "+name)
}

// vmAction posts a VM action (a graceful stop, start).
func vmAction(t *testing.T, c *testcluster.Cluster, vm, action string) {
	t.Helper()
	post(t, c, "/v1/vms/"+url.PathEscape(vm)+"/"+action, []byte(`{}`), http.StatusOK, action+" "+vm)
}

// post sends a write through the live controllers in turn until one
// answers want (503 and transport errors are tried again; any other answer
// fails the test).
func post(t *testing.T, c *testcluster.Cluster, path string, body []byte, want int, what string) {
	t.Helper()
	testcluster.WaitFor(t, 30*time.Second, what, func() (bool, error) {
		var last error
		for _, u := range c.LiveURLs() {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			r, err := testcluster.Do(ctx, c.HTTPClient(), http.MethodPost, u+path, body)
			cancel()
			switch {
			case err != nil:
				last = err
			case r.Status == want:
				return true, nil
			case r.Status == http.StatusServiceUnavailable:
				last = fmt.Errorf("%s: %s", u, r)
			default:
				t.Fatalf("%s through %s: %s", what, u, r)
			}
		}
		return false, last
	})
}

// getObject reads an object (linearizable) through the live controllers.
func getObject(c *testcluster.Cluster, plural, name string) (*resource.Object, error) {
	var last error = errors.New("no controller is running")
	for _, u := range c.LiveURLs() {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		r, err := testcluster.Do(ctx, c.HTTPClient(), http.MethodGet, u+"/v1/"+plural+"/"+url.PathEscape(name), nil)
		cancel()
		if err != nil {
			last = err
			continue
		}
		if r.Status != http.StatusOK {
			last = fmt.Errorf("GET %s %s: %s", plural, name, r)
			continue
		}
		var o resource.Object
		if err := r.Decode(&o); err != nil {
			return nil, err
		}
		return &o, nil
	}
	return nil, last
}

// objectStatus decodes an object's status into st.
func objectStatus(c *testcluster.Cluster, plural, name string, st any) error {
	o, err := getObject(c, plural, name)
	if err != nil {
		return err
	}
	if len(o.Status) == 0 {
		return fmt.Errorf("%s %s has no status yet", plural, name)
	}
	return json.Unmarshal(o.Status, st)
}

// vmSpec reads a VM's spec (with what the state machine filled in).
func vmSpec(t *testing.T, c *testcluster.Cluster, name string) *resource.VMSpec {
	t.Helper()
	var spec *resource.VMSpec
	testcluster.WaitFor(t, 10*time.Second, "vm "+name, func() (bool, error) {
		o, err := getObject(c, "vms", name)
		if err != nil {
			return false, err
		}
		spec, err = resource.DecodeSpec[resource.VMSpec](o)
		return err == nil, err
	})
	return spec
}
