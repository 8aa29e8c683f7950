package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumoi/kumoi/hypervisor"
)

// TestMigrateAcrossProcesses: a simulated host of another process (here:
// one the source cannot find in its own registry) takes a live migration
// through its MigrationDir; the source's stop is observed before the
// target's start, which comes only with FinishIncoming.
func TestMigrateAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	var srcLog, dstLog bytes.Buffer
	src := New(Options{Host: "a", ObservationLog: &srcLog})
	dst := New(Options{Host: "b", ObservationLog: &dstLog, MigrationDir: t.TempDir()})
	defer src.Close()
	defer dst.Close()
	s := migSpec("web")
	if err := src.Define(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, s.Name); err != nil {
		t.Fatal(err)
	}
	uri, err := dst.PrepareIncoming(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	// What another process sees: the directory, not this registry.
	remote := strings.Replace(uri, "sim://b/", "sim://b/other-process-", 1)
	if lookupHost(remote) != nil || migrationDirOf(remote) == "" {
		t.Fatalf("test setup: %q must not be registered and must name a directory", remote)
	}
	// Not prepared on that side yet for another VM: refused, runs here.
	other := migSpec("db")
	if err := src.Define(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, other.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := src.MigrateOut(ctx, other.Name, remote, hypervisor.MigrateOptions{}); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("migrate of an unprepared VM: %v, want ErrInvalidState", err)
	}
	if d, err := src.Get(ctx, other.Name); err != nil || d.State != hypervisor.StateRunning {
		t.Fatalf("db after a refused migration: %+v %v", d, err)
	}
	res, err := src.MigrateOut(ctx, s.Name, remote, hypervisor.MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Downtime <= 0 {
		t.Errorf("downtime %v", res.Downtime)
	}
	if _, err := src.Get(ctx, s.Name); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("source still has the domain: %v", err)
	}
	if running, err := dst.Incoming(ctx, s.Name); err != nil || running {
		t.Errorf("Incoming before FinishIncoming = %v, %v; the arrival is held paused", running, err)
	}
	if strings.Contains(dstLog.String(), `"start"`) {
		t.Errorf("the target observed a start before FinishIncoming: %s", dstLog.String())
	}
	retag := s
	retag.Epoch = 7
	if err := dst.Define(ctx, retag); err != nil {
		t.Fatal(err)
	}
	if err := dst.FinishIncoming(ctx, s.Name); err != nil {
		t.Fatal(err)
	}
	d, err := dst.Get(ctx, s.Name)
	if err != nil || d.State != hypervisor.StateRunning || d.VMID != s.VMID || d.Epoch != 7 {
		t.Fatalf("target domain %+v %v, want running with the VM's id at epoch 7", d, err)
	}
	var stop, start hypervisor.Observation
	if err := json.Unmarshal(bytes.TrimSpace(lastLine(t, srcLog.Bytes(), "web")), &stop); err != nil || stop.Event != hypervisor.ObserveStop {
		t.Fatalf("source's last observation of web: %+v %v", stop, err)
	}
	if err := json.Unmarshal(bytes.TrimSpace(lastLine(t, dstLog.Bytes(), "web")), &start); err != nil || start.Event != hypervisor.ObserveStart || start.Epoch != 7 {
		t.Fatalf("target's observation of web: %+v %v", start, err)
	}
	if start.Time.Before(stop.Time) {
		t.Errorf("the target's start (%v) is before the source's stop (%v)", start.Time, stop.Time)
	}
}

// TestMigrateAcrossProcessesAbort: an aborted preparation leaves no marker
// that a later migration of the same VM could take for a delivery.
func TestMigrateAcrossProcessesAbort(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dst := New(Options{Host: "b", MigrationDir: dir})
	defer dst.Close()
	s := migSpec("web")
	if _, err := dst.PrepareIncoming(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := dst.AbortIncoming(ctx, s.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Get(ctx, s.Name); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("aborted arrival still defined: %v", err)
	}
	if ms, _ := filepathGlob(dir); len(ms) != 0 {
		t.Errorf("markers left: %v", ms)
	}
}

func lastLine(t *testing.T, log []byte, vm string) []byte {
	t.Helper()
	var last []byte
	for _, l := range bytes.Split(log, []byte("\n")) {
		if bytes.Contains(l, []byte(`"kumoi-`+vm+`"`)) {
			last = l
		}
	}
	if last == nil {
		t.Fatalf("no observation of %s in %s", vm, log)
	}
	return last
}

func filepathGlob(dir string) ([]string, error) { return filepath.Glob(filepath.Join(dir, "*")) }

func migSpec(name string) hypervisor.DomainSpec {
	return hypervisor.DomainSpec{Name: hypervisor.DomainName(name), VMID: "id-" + name, Epoch: 1, CPUs: 2, MemoryMiB: 512}
}
