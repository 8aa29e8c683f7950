//go:build libvirt_dlopen

package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/libvirt"
	"github.com/kumoi/kumoi/internal/testcluster"
)

// migrationQEMUConf is the qemu.conf of the live-migration test's daemons:
// QEMU runs as root (its disks are the daemon's pool volumes), without
// cgroups or a private /dev, and an incoming migration's data (and the NBD
// server of a storage copy) listens on 127.0.0.1 only, on ports of the
// daemon's own range.
const migrationQEMUConf = `# kumoi test/qemu: live migration between two libvirtd on this machine
stdio_handler = "file"
cgroup_controllers = [ ]
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
migration_port_min = %d
migration_port_max = %d
`

// The paths the test's domains use, as each daemon sees them: its own
// directories are bound over /var/log/libvirt and /var/lib/libvirt, so the
// same path is a different file on each "host" (as on two machines).
const (
	migConsoleDir = "/var/log/libvirt/kumoi-console"
	migPoolDir    = "/var/lib/libvirt/kumoi-volumes"
)

// migHost is one of the two hosts: a libvirtd and a Kumoi driver on it.
type migHost struct {
	*Daemon
	drv *libvirt.Driver
	log *lockedBuffer // the driver's log
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// console is the serial console log of a domain on the host (written by
// that host's QEMU).
func (h migHost) console(dom string) string {
	b, _ := os.ReadFile(filepath.Join(h.Dir, "log", strings.TrimPrefix(migConsoleDir, "/var/log/libvirt/"), dom+".log"))
	return string(b)
}

func startMigHost(t *testing.T, name, hostUUID string, ports int) migHost {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := StartDaemonWith(ctx, "", DaemonOptions{Drivers: []string{"storage"},
		QEMUConf: fmt.Sprintf(migrationQEMUConf, ports, ports+39), NoKVM: os.Getenv(EnvKVM) != "1", HostUUID: hostUUID})
	if err != nil {
		t.Fatalf("libvirtd %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("libvirtd %s's logs:\n%s", name, tail(d.Logs(), 6000))
		}
		if err := d.Close(); err != nil {
			t.Errorf("libvirtd %s: %v", name, err)
		}
	})
	if err := os.MkdirAll(filepath.Join(d.Dir, "log", strings.TrimPrefix(migConsoleDir, "/var/log/libvirt/")), 0o755); err != nil {
		t.Fatal(err)
	}
	log := new(lockedBuffer)
	drv, err := libvirt.New(libvirt.Options{URI: d.URI, Host: name, DomainType: "qemu", ConsoleLogDir: migConsoleDir,
		StorageDir: migPoolDir, MigrationAddress: "127.0.0.1", ReconnectMin: 50 * time.Millisecond, ReconnectMax: time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Name: name, Output: log, Level: hclog.Info})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() }) // before the daemon's Close (cleanups run last first)
	if err := drv.Health(ctx); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !drv.Capabilities().Has(hypervisor.CapLiveMigration) {
		t.Fatalf("the driver on %s (%s) does not offer live migration: %s", name, d.URI, drv.Capabilities())
	}
	t.Logf("libvirtd %s: pid %d, host UUID %s, %s", name, d.Pid(), hostUUID, d.URI)
	h := migHost{Daemon: d, drv: drv, log: log}
	t.Cleanup(func() { t.Logf("the driver's log on %s:\n%s", name, h.log) })
	return h
}

// TestQEMULiveMigration migrates a running TCG guest live between two
// libvirtd of the test's own on this machine (each its own socket,
// directories and host UUID; migration data and the storage copy over
// 127.0.0.1) through the Kumoi libvirt driver, as two workers would:
//
//   - the guest (NewHeartbeatGuest: a counter on its serial console every
//     200 ms, a mark written on its volume) is defined and started on A
//     with a volume in A's pool; B has an empty volume of the same size
//     at the same path (its own pool), as the target's worker makes it;
//   - B's PrepareIncoming gives the URI; a MigrateOut with a low bandwidth
//     is cancelled: libvirt aborts, the guest keeps running on A, nothing
//     is left on B;
//   - MigrateOut with CopyStorage: A has no domain any more; on B the
//     domain runs (Incoming, FinishIncoming) with the same Kumoi tag, B's
//     QEMU's console log shows the counter going on from where A's
//     stopped, with no boot line (no reboot), and B's volume holds the
//     mark the guest wrote on A (the storage was copied).
func TestQEMULiveMigration(t *testing.T) {
	Require(t)
	g := NewHeartbeatGuest(t)
	a := startMigHost(t, "mig-a", "8a1c1e2e-0000-4000-8000-00000000000a", 49400)
	b := startMigHost(t, "mig-b", "8a1c1e2e-0000-4000-8000-00000000000b", 49440)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sfx := suffix(t)
	vol := "kumoi-mig-" + sfx + ".qcow2"
	va, err := a.drv.EnsureVolume(ctx, hypervisor.VolumeDef{Name: vol, SizeMiB: 16})
	if err != nil {
		t.Fatal(err)
	}
	vb, err := b.drv.EnsureVolume(ctx, hypervisor.VolumeDef{Name: vol, SizeMiB: 16})
	if err != nil {
		t.Fatal(err)
	}
	if va.Path != vb.Path {
		t.Fatalf("the volumes are at %s on A and %s on B; a storage copy needs the same path", va.Path, vb.Path)
	}
	spec := hypervisor.DomainSpec{Name: "kumoi-mig-" + sfx, VMID: "vm-mig-" + sfx, Epoch: 7, Cluster: "cluster-" + sfx,
		CPUs: 1, MemoryMiB: 128, Boot: hypervisor.Boot{Kernel: g.Kernel, Initrd: g.Initrd, Cmdline: g.Cmdline},
		Disks: []hypervisor.DomainDisk{{Path: va.Path, Format: hypervisor.ImageQCOW2}}}
	name := spec.Name
	t.Cleanup(func() { // before the daemons close
		if t.Failed() {
			t.Logf("A:\n%s\nA's console:\n%s", a.DomainReport(name), tail(a.console(name), 3000))
			t.Logf("B:\n%s\nB's console:\n%s", b.DomainReport(name), tail(b.console(name), 3000))
		}
	})
	if err := a.drv.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.drv.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	var bootID string
	testcluster.WaitFor(t, 5*time.Minute, "the guest on A to boot, mark its disk and beat", func() (bool, error) {
		con := a.console(name)
		m := regexp.MustCompile(GuestDiskMark + ` ([0-9a-f-]+)`).FindStringSubmatch(con)
		if m == nil || len(Beats(con)) < 5 {
			return false, fmt.Errorf("A's console:\n%s", tail(con, 2000))
		}
		bootID = m[1]
		return true, nil
	})
	t.Logf("guest up on A after %v (TCG), boot id %s", time.Since(start).Round(time.Millisecond), bootID)

	uri, err := b.drv.PrepareIncoming(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PrepareIncoming on B: %s", uri)
	if again, err := b.drv.PrepareIncoming(ctx, spec); err != nil || again != uri {
		t.Fatalf("PrepareIncoming again: %q, %v; want %q", again, err, uri)
	}

	// A migration cancelled midway (1 MiB/s: the disk alone takes 16 s)
	// is aborted: the guest runs on A as before, B has nothing.
	actx, acancel := context.WithTimeout(ctx, 4*time.Second)
	astart := time.Now()
	_, err = a.drv.MigrateOut(actx, name, uri, hypervisor.MigrateOptions{CopyStorage: true, BandwidthMiBs: 1})
	acancel()
	if err == nil || errors.Is(err, hypervisor.ErrMigrationUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled MigrateOut: %v; want the context's error (aborted), not unknown", err)
	}
	t.Logf("cancelled MigrateOut returned after %v: %v", time.Since(astart).Round(time.Millisecond), err)
	if in, err := a.drv.Get(ctx, name); err != nil || in.State != hypervisor.StateRunning {
		t.Fatalf("on A after the aborted migration: %+v, %v; want running", in, err)
	}
	if running, err := b.drv.Incoming(ctx, name); err != nil || running {
		t.Fatalf("Incoming on B after the aborted migration: %v, %v", running, err)
	}
	testcluster.WaitFor(t, 30*time.Second, "B to have no domain after the aborted migration", func() (bool, error) {
		st, err := b.DomState(ctx, name)
		return err == nil && st == "", fmt.Errorf("B: %q, %v", st, err)
	})
	if err := b.drv.AbortIncoming(ctx, name); err != nil {
		t.Fatalf("AbortIncoming with nothing there: %v", err)
	}
	beatsBefore := Beats(a.console(name))
	testcluster.WaitFor(t, 30*time.Second, "the guest on A to beat on after the aborted migration", func() (bool, error) {
		n := Beats(a.console(name))
		return len(n) > len(beatsBefore)+3, fmt.Errorf("beats on A: %d, %d before", len(n), len(beatsBefore))
	})

	// The migration, with B's view of the arriving domain sampled
	// meanwhile: while it is paused (arriving), Incoming says no. Incoming
	// is asked first: the state only goes from paused to running, so a
	// yes followed by a paused state would be a wrong yes.
	watchCtx, stopWatch := context.WithCancel(ctx)
	seen := make(chan []string, 1)
	go func() {
		var views []string
		for watchCtx.Err() == nil {
			running, ierr := b.drv.Incoming(watchCtx, name)
			in, gerr := b.drv.Get(watchCtx, name)
			v := fmt.Sprintf("%s(%s) incoming=%v", in.State, in.Reason, running)
			if errors.Is(gerr, hypervisor.ErrNotFound) {
				v = "absent"
			} else if gerr != nil || ierr != nil {
				v = fmt.Sprintf("error %v / %v", gerr, ierr)
			}
			if len(views) == 0 || views[len(views)-1] != v {
				views = append(views, v)
			}
			select {
			case <-watchCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		seen <- views
	}()
	mstart := time.Now()
	res, err := a.drv.MigrateOut(ctx, name, uri, hypervisor.MigrateOptions{CopyStorage: true, MaxDowntime: 500 * time.Millisecond})
	took := time.Since(mstart)
	stopWatch()
	views := <-seen
	t.Logf("B during the migration: %s", strings.Join(views, " → "))
	for _, v := range views {
		if strings.HasPrefix(v, "paused") && strings.HasSuffix(v, "incoming=true") {
			t.Errorf("Incoming said true for a paused arrival on B: %s", v)
		}
	}
	if err != nil {
		t.Fatalf("MigrateOut after %v: %v", took, err)
	}
	t.Logf("MigrateOut: %v, downtime %v", took.Round(time.Millisecond), res.Downtime)

	// A: no domain.
	if _, err := a.drv.Get(ctx, name); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("on A after the migration: %v; want not found", err)
	}
	if st, err := a.DomState(ctx, name); err != nil || st != "" {
		t.Fatalf("virsh on A after the migration: %q, %v; want no domain", st, err)
	}
	// B: running, persistent, with the Kumoi tag.
	if running, err := b.drv.Incoming(ctx, name); err != nil || !running {
		t.Fatalf("Incoming on B: %v, %v; want running", running, err)
	}
	if err := b.drv.FinishIncoming(ctx, name); err != nil {
		t.Fatal(err)
	}
	in, err := b.drv.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != hypervisor.StateRunning || in.VMID != spec.VMID || in.Epoch != spec.Epoch || in.Cluster != spec.Cluster || !in.Kumoi {
		t.Fatalf("on B: %+v; want running, tagged %s epoch %d cluster %s", in, spec.VMID, spec.Epoch, spec.Cluster)
	}
	if out, err := Virsh(ctx, b.URI, "dominfo", name); err != nil || !regexp.MustCompile(`(?m)^Persistent:\s+yes`).MatchString(out) {
		t.Fatalf("virsh dominfo on B: %v\n%s; want persistent", err, out)
	}
	if x, err := Virsh(ctx, b.URI, "dumpxml", "--inactive", name); err != nil || !strings.Contains(x, spec.VMID) {
		t.Fatalf("B's persistent definition has no Kumoi tag: %v\n%s", err, x)
	}

	// B's console: the counter goes on from A's last beat, no new boot.
	lastA := Beats(a.console(name))
	if len(lastA) == 0 {
		t.Fatal("no beats on A's console")
	}
	finalA := lastA[len(lastA)-1]
	var beatsB []int
	testcluster.WaitFor(t, time.Minute, "the guest to beat on B", func() (bool, error) {
		beatsB = Beats(b.console(name))
		return len(beatsB) >= 10, fmt.Errorf("B's console (%d beats):\n%s", len(beatsB), tail(b.console(name), 1500))
	})
	conB := b.console(name)
	if strings.Contains(conB, GuestBoot) || strings.Contains(conB, GuestUp) {
		t.Fatalf("B's console shows a boot: the guest restarted instead of moving:\n%s", tail(conB, 2000))
	}
	if strings.Count(a.console(name), GuestBoot) != 1 {
		t.Fatalf("A's console shows %d boots", strings.Count(a.console(name), GuestBoot))
	}
	if beatsB[0] < finalA+1 || beatsB[0] > finalA+2 {
		t.Fatalf("the last beat on A was %d, the first whole one on B %d: not where it left off", finalA, beatsB[0])
	}
	for i := 1; i < len(beatsB); i++ {
		if beatsB[i] != beatsB[i-1]+1 {
			t.Fatalf("beats on B jump from %d to %d", beatsB[i-1], beatsB[i])
		}
	}
	t.Logf("beats: 1..%d on A, %d..%d on B; no boot on B", finalA, beatsB[0], beatsB[len(beatsB)-1])

	// B's volume holds what the guest wrote on A.
	raw := filepath.Join(t.TempDir(), "b.raw")
	bFile := filepath.Join(b.Dir, "lib", strings.TrimPrefix(vb.Path, "/var/lib/libvirt/"))
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", bFile, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert %s: %v: %s", bFile, err, out)
	}
	disk, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := DiskMarkPrefix + " " + bootID; !bytes.HasPrefix(disk, []byte(want)) {
		t.Fatalf("B's volume starts with %q; want %q (written by the guest on A)", disk[:min(len(disk), 64)], want)
	}
	t.Logf("B's volume holds the guest's mark %s", bootID)

	if err := b.drv.Destroy(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := b.drv.Undefine(ctx, name); err != nil {
		t.Fatal(err)
	}
}
