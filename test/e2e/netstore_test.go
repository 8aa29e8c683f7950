package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestNetworksImagesVolumesCLI drives networks, images and volumes through
// the kumoi CLI against real processes (ACLs on, a sim worker): a VM with a
// NIC and two disks (one made from an image, one persistent volume) runs
// with the address the state machine allocated; what is in use cannot be
// deleted; bad input is refused naming the field and writes nothing; a
// checksum mismatch fails the VM; deleting the VM frees its address,
// deletes its own volume and keeps the persistent one.
func TestNetworksImagesVolumesCLI(t *testing.T) {
	c := newCluster(t, testcluster.Options{Controllers: 1, Workers: 1})
	c.WaitLeader(leaderTimeout)
	kumoi, must := cliOf(t, c)
	refused := func(mention string, args ...string) {
		t.Helper()
		out, err := kumoi(args...)
		if err == nil || !strings.Contains(out, mention) {
			t.Errorf("kumoi %s: %v\n%s\nwant a failure mentioning %q", strings.Join(args, " "), err, out, mention)
		}
	}
	getJSON := func(kind, name string) *resource.Object {
		t.Helper()
		var o resource.Object
		out := must(kind, "get", name, "-o", "json")
		if err := json.Unmarshal([]byte(out), &o); err != nil {
			t.Fatalf("kumoi %s get %s -o json: %v\n%s", kind, name, err, out)
		}
		return &o
	}

	// An image file in the workers' image directory.
	img := make([]byte, 64<<10)
	if _, err := rand.Read(img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.ImageDir(), "base.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)

	must("network", "create", "net1", "--cidr", "10.77.0.0/29", "--gateway", "10.77.0.1", "--mode", "nat", "--reserve", "10.77.0.2")
	must("image", "create", "base", "--file", "base.img", "--format", "raw", "--sha256", hex.EncodeToString(sum[:]))
	must("image", "create", "corrupt", "--file", "base.img", "--format", "raw", "--sha256", strings.Repeat("ab", 32))
	must("volume", "create", "data", "--size", "64MiB", "--persistent")

	// Bad input: refused, naming the field; nothing written.
	refused("spec.cidr", "network", "create", "bad1", "--cidr", "10.77.0.0/33")
	refused("spec.gateway", "network", "create", "bad2", "--cidr", "10.78.0.0/24", "--gateway", "10.79.0.1")
	refused("spec.cidr", "network", "create", "overlap", "--cidr", "10.77.0.0/24")
	refused("spec.size_mib", "volume", "create", "zero", "--size", "0")
	refused("image", "vm", "create", "nope", "--cpus", "1", "--memory", "64MiB", "--disk", "image=missing,size=64MiB")
	for _, kind := range []string{"network", "volume", "vm"} {
		if out := must(kind, "list", "-o", "json"); strings.Contains(out, `"bad`) || strings.Contains(out, `"overlap"`) || strings.Contains(out, `"zero"`) || strings.Contains(out, `"nope"`) {
			t.Errorf("a refused create left an object:\n%s", out)
		}
	}

	must("vm", "create", "web", "--cpus", "1", "--memory", "64MiB", "--network", "net1",
		"--disk", "image=base,size=128MiB", "--disk", "volume=data")
	var web *resource.VMSpec
	testcluster.WaitFor(t, vmRunningWithin, "web running", func() (bool, error) {
		o := getJSON("vm", "web")
		spec, st := resource.VMStateOf(o)
		web = spec
		if st.Phase == resource.PhaseFailed {
			return false, fmt.Errorf("web failed: %s", st.Reason)
		}
		return st.Phase == resource.PhaseRunning, nil
	})
	// 10.77.0.1 is the gateway and 10.77.0.2 reserved: the first free address is .3.
	if len(web.NICs) != 1 || web.NICs[0].IP != "10.77.0.3" || resource.ValidateMAC(web.NICs[0].MAC) != nil {
		t.Errorf("web's NICs = %+v; want one on net1 with 10.77.0.3 and a MAC", web.NICs)
	}
	if len(web.Disks) != 2 || web.Disks[0].Volume != "web-disk0" || web.Disks[1].Volume != "data" {
		t.Errorf("web's disks = %+v; want web-disk0 (from the image) and data", web.Disks)
	}
	if out := must("vm", "get", "web"); !strings.Contains(out, "10.77.0.3") || !strings.Contains(out, web.NICs[0].MAC) || !strings.Contains(out, "web-disk0") {
		t.Errorf("kumoi vm get web does not show the address, MAC and disks:\n%s", out)
	}
	worker := c.WorkerName(0)
	testcluster.WaitFor(t, vmRunningWithin, "the network, image and volumes ready on "+worker, func() (bool, error) {
		for _, k := range []struct{ kind, name string }{{"network", "net1"}, {"image", "base"}} {
			o := getJSON(k.kind, k.name)
			var st struct {
				Hosts map[string]resource.HostResourceState `json:"hosts"`
			}
			if err := json.Unmarshal(o.Status, &st); err != nil {
				return false, err
			}
			if st.Hosts[worker].State != resource.HostResourceReady {
				return false, fmt.Errorf("%s %s on %s: %+v", k.kind, k.name, worker, st.Hosts)
			}
		}
		for _, v := range []string{"web-disk0", "data"} {
			st, err := resource.DecodeStatus[resource.VolumeStatus](getJSON("volume", v))
			if err != nil {
				return false, err
			}
			if st.Phase != resource.VolumeReady || st.Host != worker || st.AttachedTo != "web" {
				return false, fmt.Errorf("volume %s: %+v", v, st)
			}
		}
		return true, nil
	})
	nst, err := resource.DecodeStatus[resource.NetworkStatus](getJSON("network", "net1"))
	if err != nil || nst.Allocated != 1 || nst.Capacity != 4 {
		t.Errorf("net1 status %+v (%v); want 1 of 4 addresses allocated", nst, err)
	}

	// In use: refused, saying by what.
	refused("web", "network", "delete", "net1")
	refused("web", "volume", "delete", "data")
	refused("web-disk0", "image", "delete", "base")
	// A static address held by web.
	refused("10.77.0.3", "vm", "create", "twin", "--cpus", "1", "--memory", "64MiB", "--network", "net1:10.77.0.3")

	// A checksum mismatch fails the VM, saying so.
	must("vm", "create", "bad", "--cpus", "1", "--memory", "64MiB", "--disk", "image=corrupt,size=64MiB")
	testcluster.WaitFor(t, vmRunningWithin, "bad failed for its checksum", func() (bool, error) {
		_, st := resource.VMStateOf(getJSON("vm", "bad"))
		return st.Phase == resource.PhaseFailed && strings.Contains(st.Reason, "sha256"), fmt.Errorf("bad is %s: %s", st.Phase, st.Reason)
	})

	// Deleting the VMs: web's own volume goes, the persistent one stays
	// (detached), the address is free again.
	must("vm", "delete", "web")
	must("vm", "delete", "bad")
	testcluster.WaitFor(t, writeDeadline, "web-disk0 deleted with web, data detached", func() (bool, error) {
		if out, err := kumoi("volume", "get", "web-disk0"); err == nil {
			return false, fmt.Errorf("web-disk0 still exists:\n%s", out)
		}
		st, err := resource.DecodeStatus[resource.VolumeStatus](getJSON("volume", "data"))
		return err == nil && st.AttachedTo == "", fmt.Errorf("data: %+v (%v)", st, err)
	})
	if nst, err := resource.DecodeStatus[resource.NetworkStatus](getJSON("network", "net1")); err != nil || nst.Allocated != 0 {
		t.Errorf("net1 after the delete: %+v (%v); want no address allocated", nst, err)
	}
	must("network", "delete", "net1")
	must("volume", "delete", "data")
	must("image", "delete", "base")
	for _, kind := range []string{"network", "volume", "image"} {
		if out := must(kind, "list", "-o", "json"); strings.Contains(out, `"net1"`) || strings.Contains(out, `"data"`) || strings.Contains(out, `"base"`) {
			t.Errorf("kumoi %s list after the deletes:\n%s", kind, out)
		}
	}
}
