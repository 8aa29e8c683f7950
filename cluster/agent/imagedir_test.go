package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/cluster/worker"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestBootPathsInImageDir: host paths are not user input. Each worker
// publishes its --image-dir in its host's status; a VM boots a name in it;
// a path outside it (or a symbolic link out of it, a FIFO) fails the VM
// with the reason and its domain is never defined; the API refuses an
// absolute path outside the image directory of the host a VM is on, or is
// moved to, and always refuses "..".
func TestBootPathsInImageDir(t *testing.T) {
	base := t.TempDir()
	dirA, dirB := filepath.Join(base, "a"), filepath.Join(base, "b")
	for _, d := range []string{dirA, dirB} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "disk.qcow2"), []byte("qcow"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "secret"), filepath.Join(dirA, "link")); err != nil {
		t.Fatal(err)
	}
	a := startTestAgent(t, "img-c", "127.0.0.70", 1)
	drvs := map[string]*sim.Driver{}
	for _, h := range []struct {
		name, ip, dir string
		mem           int64
	}{{"img-a", "127.0.0.71", dirA, 8192}, {"img-b", "127.0.0.72", dirB, 1536}} {
		// img-a has far more memory: the scheduler places there first.
		drv := sim.New(sim.Options{Host: h.name, CPUs: 16, MemoryMiB: h.mem})
		drvs[h.name] = drv
		w, err := worker.Start(worker.Config{NodeID: h.name, BindIP: h.ip, Join: []string{"127.0.0.70:7402"}, Driver: drv, DriverName: "sim",
			ImageDir: h.dir, Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: newTestWriter(t)}).Named(h.name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Kill() })
	}
	c, err := client.New(client.Config{Addrs: []string{"http://" + a.APIAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, dir := range map[string]string{"img-a": dirA, "img-b": dirB} {
		testcluster.WaitFor(t, 15*time.Second, name+" ready with its image_dir", func() (bool, error) {
			o, _, err := c.Get(ctx, resource.KindHost, name, nil)
			if err != nil || o == nil {
				return false, err
			}
			hs, err := resource.DecodeStatus[resource.HostStatus](o)
			return err == nil && hs.State == resource.HostReady && hs.ImageDir == dir, err
		})
	}

	// A name in the image directory boots.
	createTestVM(t, c, "good", `{"cpus":1,"memory_mib":128,"boot":{"image":"disk.qcow2"}}`)
	testcluster.WaitFor(t, 15*time.Second, "good running", running(t, c, "good"))

	// Refused by the worker (the API does not know the host yet): the VM
	// fails with the reason, and no domain is defined.
	for _, tc := range []struct{ name, boot, reason string }{
		{"shadow", `{"image":"/etc/shadow"}`, `boot.image "/etc/shadow" is outside this host's image directory ` + dirA + " (--image-dir)"},
		{"link", `{"image":"link","image_format":"raw"}`, `boot.image "link" leads by a symbolic link to ` + filepath.Join(base, "secret")},
		{"missing", `{"kernel":"vmlinuz"}`, `boot.kernel "vmlinuz" does not exist in this host's image directory ` + dirA},
	} {
		createTestVM(t, c, tc.name, `{"cpus":1,"memory_mib":128,"boot":`+tc.boot+`}`)
		testcluster.WaitFor(t, 15*time.Second, tc.name+" failed", func() (bool, error) {
			_, st := vmStatus(t, c, tc.name)
			return st != nil && st.Phase == resource.PhaseFailed && strings.Contains(st.Reason, tc.reason), nil
		})
		_, st := vmStatus(t, c, tc.name)
		if _, err := drvs[st.Host].Get(ctx, "kumoi-"+tc.name); err == nil {
			t.Errorf("%s: a domain was defined for a refused boot path", tc.name)
		}
	}

	// The API: ".." is always refused; an absolute path outside the
	// image directory of the VM's host is refused on update and migrate.
	_, err = c.Create(ctx, resource.KindVM, resource.CreateRequest{Name: "dots", Spec: json.RawMessage(`{"cpus":1,"memory_mib":128,"boot":{"image":"../secret"}}`)})
	wantBad(t, err, "spec.boot.image", `".." component`)

	createTestVM(t, c, "abs", `{"cpus":1,"memory_mib":1024,"boot":{"image":"`+dirA+`/disk.qcow2"}}`)
	testcluster.WaitFor(t, 15*time.Second, "abs running", running(t, c, "abs"))
	o, _, err := c.Get(ctx, resource.KindVM, "abs", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, st := vmStatus(t, c, "abs"); st.Host != "img-a" {
		t.Fatalf("abs is on %s, want img-a", st.Host)
	}
	o.Spec = json.RawMessage(`{"cpus":1,"memory_mib":1024,"boot":{"image":"` + dirB + `/disk.qcow2"}}`)
	_, err = c.Update(ctx, resource.KindVM, "abs", o, nil)
	wantBad(t, err, "spec.boot.image", "is outside the image directory "+dirA+" of host img-a")
	// Moved cold.
	if _, err := c.ActionWith(ctx, "abs", resource.ActionStop, &resource.VMActionRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 15*time.Second, "abs stopped", func() (bool, error) {
		_, st := vmStatus(t, c, "abs")
		return st != nil && st.Phase == resource.PhaseStopped, nil
	})
	_, err = c.ActionWith(ctx, "abs", resource.ActionMigrate, &resource.VMActionRequest{Host: "img-b"})
	wantBad(t, err, "spec.boot.image", "is outside the image directory "+dirB+" of host img-b")
	// A name moves anywhere.
	o.Spec = json.RawMessage(`{"cpus":1,"memory_mib":1024,"power":"stopped","boot":{"image":"disk.qcow2"}}`)
	if _, err := c.Update(ctx, resource.KindVM, "abs", o, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ActionWith(ctx, "abs", resource.ActionMigrate, &resource.VMActionRequest{Host: "img-b"}); err != nil {
		t.Fatal(err)
	}
	if _, st := vmStatus(t, c, "abs"); st.Host != "img-b" {
		t.Errorf("abs is on %s after the move, want img-b", st.Host)
	}
}

func wantBad(t *testing.T, err error, field, msg string) {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || ae.Field != field || !strings.Contains(err.Error(), msg) {
		t.Errorf("got %v; want a 400 on %s saying %q", err, field, msg)
	}
}
