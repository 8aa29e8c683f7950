package qemu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// Bounds of the waits (TCG guests and a busy 2-core machine are slow).
const (
	leaderWithin    = 60 * time.Second
	hostReadyWithin = 90 * time.Second // the first libvirt connection probes QEMU's capabilities
	vmRunningWithin = 90 * time.Second
	reflectWithin   = 30 * time.Second // a change behind Kumoi's back shows in the VM
	requestTimeout  = 5 * time.Second
)

// suffix makes the names of a run's VMs (and so of their domains on the
// shared system daemon) unique.
func suffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func domain(vm string) string { return "kumoi-" + vm }

// newCluster is one controller (real processes, KUMOI_BIN) started with
// ctrlArgs.
func newCluster(t *testing.T, ctrlArgs ...string) *testcluster.Cluster {
	t.Helper()
	opts := testcluster.Options{Controllers: 1, LogLevel: "info", ControllerArgs: ctrlArgs}
	if os.Getenv("KUMOI_TEST_QEMU_KEEP") != "" {
		dir, err := os.MkdirTemp("", "kumoi-qemu-logs-")
		if err != nil {
			t.Fatal(err)
		}
		opts.LogDir = dir
		t.Logf("keeping the node logs in %s", dir)
	}
	c := testcluster.New(t, opts)
	c.WaitLeader(leaderWithin)
	return c
}

// addLibvirtWorker starts a libvirt worker on h with a data directory of
// its own, booting files from the guest's directory (--image-dir), and
// waits until its host is ready.
func addLibvirtWorker(t *testing.T, c *testcluster.Cluster, name string, h Host, g *Guest) int {
	t.Helper()
	w := c.AddWorker(name, "--hypervisor", "libvirt", "--libvirt-uri", h.URI, "--data-dir", t.TempDir(), "--image-dir", g.Dir)
	c.WaitHostState(name, resource.HostReady, hostReadyWithin)
	return w
}

// createVM creates a VM that boots the guest: its kernel and initrd by
// their names in the worker's image directory (the guest's directory).
func createVM(t *testing.T, c *testcluster.Cluster, name, ha string, g *Guest) {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"name": name,
		"spec": map[string]any{"cpus": 1, "memory_mib": 128, "ha": ha,
			"boot": map[string]any{"kernel": filepath.Base(g.Kernel), "initrd": filepath.Base(g.Initrd), "cmdline": g.Cmdline}},
	})
	if err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 30*time.Second, "create "+name, func() (bool, error) {
		var last error
		for _, u := range c.LiveURLs() {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			r, err := testcluster.Do(ctx, c.HTTPClient(), http.MethodPost, u+"/v1/vms", body)
			cancel()
			switch {
			case err != nil:
				last = err
			case r.Status == http.StatusCreated:
				return true, nil
			case r.Status == http.StatusServiceUnavailable:
				last = fmt.Errorf("%s: %s", u, r)
			default:
				t.Fatalf("create %s through %s: %s", name, u, r)
			}
		}
		return false, last
	})
}

// vmView is what the tests look at in a VM object.
type vmView struct {
	Power, HA string
	resource.VMStatus
}

func (v vmView) String() string {
	return fmt.Sprintf("phase %s on %q (power %s, ha %s, restarts %d, reason %q)", v.Phase, v.Host, v.Power, v.HA, v.Restarts, v.Reason)
}

// getVM reads a VM (linearizable) through the live controllers in turn.
func getVM(c *testcluster.Cluster, name string) (vmView, error) {
	var last error = fmt.Errorf("no controller is running")
	for _, u := range c.LiveURLs() {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		r, err := testcluster.Do(ctx, c.HTTPClient(), http.MethodGet, u+"/v1/vms/"+url.PathEscape(name), nil)
		cancel()
		if err != nil {
			last = err
			continue
		}
		if r.Status != http.StatusOK {
			last = fmt.Errorf("GET vm %s: %s", name, r)
			continue
		}
		var o resource.Object
		if err := r.Decode(&o); err != nil {
			return vmView{}, err
		}
		spec, err := resource.DecodeSpec[resource.VMSpec](&o)
		if err != nil {
			return vmView{}, err
		}
		st, err := resource.DecodeStatus[resource.VMStatus](&o)
		if err != nil {
			return vmView{}, err
		}
		return vmView{Power: spec.Power, HA: spec.HA, VMStatus: *st}, nil
	}
	return vmView{}, last
}

// waitVM waits until VM name satisfies ok and returns it. It logs each
// distinct state it sees on the way, with the time since the wait began.
func waitVM(t *testing.T, c *testcluster.Cluster, name string, timeout time.Duration, what string, ok func(vmView) bool) vmView {
	t.Helper()
	var v vmView
	start, last := time.Now(), ""
	testcluster.WaitFor(t, timeout, fmt.Sprintf("vm %s %s", name, what), func() (bool, error) {
		var err error
		if v, err = getVM(c, name); err != nil {
			return false, err
		}
		if s := v.String(); s != last {
			t.Logf("  %v: vm %s %s", time.Since(start).Round(time.Millisecond), name, s)
			last = s
		}
		if !ok(v) {
			return false, fmt.Errorf("vm %s: %s", name, v)
		}
		return true, nil
	})
	return v
}

// waitDomState waits until a domain's state on h is want.
func waitDomState(t *testing.T, h Host, dom, want string, timeout time.Duration) {
	t.Helper()
	testcluster.WaitFor(t, timeout, fmt.Sprintf("%s to be %q on %s", dom, want, h.URI), func() (bool, error) {
		st, err := h.DomState(context.Background(), dom)
		if err != nil {
			return false, err
		}
		if st != want {
			return false, fmt.Errorf("%s is %q", dom, st)
		}
		return true, nil
	})
}

// holds checks cond every 100 ms for d and fails the test at the first
// time it is false: that something does NOT happen.
func holds(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := cond(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
