package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumoi/kumoi/cluster/fenceguard"
	lvd "github.com/kumoi/kumoi/internal/libvirtd"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// The fence guard on real processes (issue 11): libvirt workers whose
// domains live in a libvirtd of their own, so they outlive the worker
// exactly as QEMU guests do. Whatever single process on host A fails,
// the VM never runs on A and B at once, as the daemons themselves show.

// lvHost is a libvirt worker with its own daemon and data directory.
type lvHost struct {
	name string
	w    int // worker index
	lv   *libvirtd
	dir  string
}

// addLibvirtWorker starts a libvirt worker on a new daemon.
func addLibvirtWorker(t *testing.T, c *testcluster.Cluster, name string, args ...string) *lvHost {
	t.Helper()
	lv := startLibvirtd(t)
	dir := t.TempDir()
	w := c.AddWorker(name, append([]string{"--hypervisor", "libvirt", "--libvirt-uri", lv.uri, "--data-dir", dir, "--cpus", "4", "--memory", "8GiB"}, args...)...)
	return &lvHost{name: name, w: w, lv: lv, dir: dir}
}

// guardPid is the pid of the host's fence guard (0: none running).
func (h *lvHost) guardPid() int {
	b, err := os.ReadFile(filepath.Join(h.dir, fenceguard.PIDFile))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// domSample is one read of a daemon's active domains: name → domain id.
type domSample struct {
	host   string
	active map[string]string
}

// daemonWatch reads every daemon's active domains in turn, all the time,
// and records a double run when a domain is active on one daemon in a
// read that falls between two reads of another daemon that show the same
// domain, with the same id, active there: libvirt gives a domain a new id
// at every start, so it was active there throughout.
type daemonWatch struct {
	mu      sync.Mutex
	doubles []string
	reads   int
	stop    chan struct{}
	done    chan struct{}
}

func watchDaemons(t *testing.T, hosts ...*lvHost) *daemonWatch {
	t.Helper()
	dw := &daemonWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(dw.done)
		var seq []domSample
		for i := 0; ; i++ {
			select {
			case <-dw.stop:
				return
			default:
			}
			h := hosts[i%len(hosts)]
			// A short timeout: a paused daemon costs the watch little.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			out, err := lvd.Virsh(ctx, h.lv.uri, "list")
			cancel()
			if err != nil {
				seq = nil // a gap: nothing is concluded across it
				continue
			}
			s := domSample{host: h.name, active: map[string]string{}}
			for l := range strings.Lines(out) {
				if f := strings.Fields(l); len(f) >= 2 && strings.HasPrefix(f[1], "kumoi-") {
					s.active[f[1]] = f[0]
				}
			}
			seq = append(seq, s)
			dw.mu.Lock()
			dw.reads++
			if n := len(seq); n >= 3 {
				a, mid, b := seq[n-3], seq[n-2], seq[n-1]
				for dom, id := range a.active {
					if a.host == b.host && a.host != mid.host && b.active[dom] == id && mid.active[dom] != "" {
						dw.doubles = append(dw.doubles, fmt.Sprintf("%s active on %s (id %s) and on %s (id %s) at %s",
							dom, a.host, id, mid.host, mid.active[dom], time.Now().Format("15:04:05.000")))
					}
				}
			}
			dw.mu.Unlock()
			if len(seq) > 3 {
				seq = seq[len(seq)-3:]
			}
		}
	}()
	t.Cleanup(dw.finish)
	return dw
}

func (dw *daemonWatch) finish() {
	select {
	case <-dw.stop:
	default:
		close(dw.stop)
	}
	<-dw.done
}

// check stops the watch and fails the test on any double run, or if it
// made fewer than minReads reads.
func (dw *daemonWatch) check(t *testing.T, minReads int) {
	t.Helper()
	dw.finish()
	dw.mu.Lock()
	defer dw.mu.Unlock()
	if dw.reads < minReads {
		t.Errorf("only %d reads of the daemons: the watch saw too little to conclude", dw.reads)
	}
	for _, d := range dw.doubles {
		t.Errorf("double run: %s", d)
	}
	t.Logf("%d reads of the daemons, %d double runs", dw.reads, len(dw.doubles))
}

// fenceCluster is a controller and libvirt host A running "keep"
// (ha=restart) and "solo" (ha=none), then host B, empty.
func fenceCluster(t *testing.T) (*testcluster.Cluster, *lvHost, *lvHost) {
	t.Helper()
	c := newCluster(t, testcluster.Options{Controllers: 1})
	c.WaitLeader(leaderTimeout)
	hc := httpClient()
	a := addLibvirtWorker(t, c, "lv-a")
	c.WaitHostState(a.name, resource.HostReady, hostReadyWithin)
	mustCreateVM(t, c, hc, "keep", resource.HARestart)
	mustCreateVM(t, c, hc, "solo", resource.HANone)
	waitVMs(t, c, hc, vmRunningWithin, "keep and solo running on lv-a", func(s map[string]vmState) error {
		for _, n := range []string{"keep", "solo"} {
			if s[n].Phase != resource.PhaseRunning || s[n].Host != a.name {
				return fmt.Errorf("%s is %s", n, s[n])
			}
		}
		return nil
	})
	b := addLibvirtWorker(t, c, "lv-b")
	c.WaitHostState(b.name, resource.HostReady, hostReadyWithin)
	if a.guardPid() == 0 {
		t.Fatalf("lv-a runs VMs but no fence guard (no %s in %s)", fenceguard.PIDFile, a.dir)
	}
	return c, a, b
}

// waitMoved waits until keep runs on B, solo is lost, and A's daemon
// runs neither.
func waitMoved(t *testing.T, c *testcluster.Cluster, a, b *lvHost) {
	t.Helper()
	hc := httpClient()
	waitVMs(t, c, hc, haRestartWithin, "keep running on lv-b and solo lost", func(s map[string]vmState) error {
		if s["keep"].Phase != resource.PhaseRunning || s["keep"].Host != b.name {
			return fmt.Errorf("keep is %s", s["keep"])
		}
		if s["solo"].Phase != resource.PhaseLost {
			return fmt.Errorf("solo is %s", s["solo"])
		}
		return nil
	})
	testcluster.WaitFor(t, 10*time.Second, "lv-a's daemon to run no Kumoi domain", func() (bool, error) {
		act, err := a.lv.Active(context.Background())
		var kumoi []string
		for _, d := range act {
			if strings.HasPrefix(d, "kumoi-") {
				kumoi = append(kumoi, d)
			}
		}
		return err == nil && len(kumoi) == 0, fmt.Errorf("active on lv-a: %v (%v)", kumoi, err)
	})
	rec := readFenceRecord(t, a)
	for _, d := range []string{"kumoi-keep", "kumoi-solo"} {
		if !strings.Contains(strings.Join(rec.Domains, " "), d) {
			t.Errorf("the guard's fence record does not name %s: %+v", d, rec)
		}
	}
}

func readFenceRecord(t *testing.T, h *lvHost) fenceguard.FenceRecord {
	t.Helper()
	var rec fenceguard.FenceRecord
	b, err := os.ReadFile(filepath.Join(h.dir, fenceguard.RecordFile))
	if err != nil {
		t.Fatalf("no fence record on %s: %v", h.name, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestFenceGuardWorkerKill: kill -9 of a libvirt worker leaves its
// domains running in libvirtd; its guard destroys them before the VM is
// restarted elsewhere. The restarted worker finds the same guard, its
// host comes back, and the ha=none VM still placed there runs again,
// saying that the guard had stopped it.
func TestFenceGuardWorkerKill(t *testing.T) {
	c, a, b := fenceCluster(t)
	hc := httpClient()
	pid := a.guardPid()
	dw := watchDaemons(t, a, b)
	c.KillWorker(a.w)
	waitMoved(t, c, a, b)
	dw.check(t, 10)

	c.StartWorker(a.w)
	c.WaitHostState(a.name, resource.HostReady, hostReadyWithin)
	sts := waitVMs(t, c, hc, vmRunningWithin, "solo running again on lv-a", func(s map[string]vmState) error {
		if s["solo"].Phase != resource.PhaseRunning || s["solo"].Host != a.name {
			return fmt.Errorf("solo is %s", s["solo"])
		}
		return nil
	})
	if !strings.Contains(sts["solo"].Reason, "fence guard") {
		t.Errorf("solo's reason does not say the fence guard stopped it: %q", sts["solo"].Reason)
	}
	if got := a.guardPid(); got != pid {
		t.Errorf("the restarted worker runs guard pid %d, not the surviving guard %d", got, pid)
	}
	if st := a.lv.domState(t, "kumoi-keep"); st == "running" {
		t.Errorf("kumoi-keep runs on lv-a again although it runs on lv-b")
	}
}

// TestFenceGuardWorkerPause: a worker paused (SIGSTOP) for longer than
// the grace is as good as dead to the controllers; its guard stops its
// domains before they restart elsewhere, and the worker, continued,
// starts nothing that moved.
func TestFenceGuardWorkerPause(t *testing.T) {
	c, a, b := fenceCluster(t)
	dw := watchDaemons(t, a, b)
	c.PauseWorker(a.w)
	waitMoved(t, c, a, b)
	c.ResumeWorker(a.w)
	c.WaitHostState(a.name, resource.HostReady, hostReadyWithin)
	testcluster.WaitFor(t, 10*time.Second, "lv-a to run solo again", func() (bool, error) {
		st, err := a.lv.DomState(context.Background(), "kumoi-solo")
		return st == "running", fmt.Errorf("kumoi-solo on lv-a: %q (%v)", st, err)
	})
	dw.check(t, 10)
}

// TestFenceGuardLibvirtHang: a libvirtd stopped (SIGSTOP) for longer than
// the grace hangs every libvirt call of the worker. The host stays ready
// (the guests of a hung libvirtd do not die with it), the guard keeps the
// proof fresh with its own reads, nothing is fenced or moved, and all is
// as before once libvirtd continues.
func TestFenceGuardLibvirtHang(t *testing.T) {
	c, a, b := fenceCluster(t)
	hc := httpClient()
	dw := watchDaemons(t, a, b)
	if err := a.lv.Pause(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(8 * time.Second) // twice the grace
	for time.Now().Before(deadline) {
		sts, err := anyVMStates(hc, c)
		if err == nil && (sts["keep"].Host != a.name || sts["solo"].Host != a.name) {
			t.Errorf("a VM left lv-a while only its libvirtd hung: keep %s, solo %s", sts["keep"], sts["solo"])
			break
		}
		time.Sleep(200 * time.Millisecond) // a bounded observation window, not a wait for a condition
	}
	if err := a.lv.Resume(); err != nil {
		t.Fatal(err)
	}
	waitVMs(t, c, hc, vmRunningWithin, "keep and solo running on lv-a", func(s map[string]vmState) error {
		for _, n := range []string{"keep", "solo"} {
			if s[n].Phase != resource.PhaseRunning || s[n].Host != a.name {
				return fmt.Errorf("%s is %s", n, s[n])
			}
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(a.dir, fenceguard.RecordFile)); err == nil {
		guardLog, _ := os.ReadFile(filepath.Join(a.dir, "fence-guard.log"))
		t.Errorf("the guard fenced although the host stayed ready: %+v\nits log:\n%s", readFenceRecord(t, a), guardLog)
	}
	// Reads of the paused daemon time out (1 s each).
	dw.check(t, 5)
}

// TestFenceGuardQuickRestart: a worker killed and started again at once
// (an upgrade) is back, ready, before its guard's proof is fence-after
// old: nothing is fenced and the guests never stop, although the
// controllers mark the host down while the new worker reconciles. (With a
// longer fence-after and grace than the defaults, so that a slow machine
// does not decide the test.)
func TestFenceGuardQuickRestart(t *testing.T) {
	c := newCluster(t, testcluster.Options{Controllers: 1, ControllerArgs: []string{"--host-down-grace", "12s"}})
	c.WaitLeader(leaderTimeout)
	hc := httpClient()
	a := addLibvirtWorker(t, c, "lv-a", "--fence-after", "9s", "--host-down-grace", "12s")
	c.WaitHostState(a.name, resource.HostReady, hostReadyWithin)
	mustCreateVM(t, c, hc, "keep", resource.HARestart)
	waitVMs(t, c, hc, vmRunningWithin, "keep running on lv-a", func(s map[string]vmState) error {
		if s["keep"].Phase != resource.PhaseRunning || s["keep"].Host != a.name {
			return fmt.Errorf("keep is %s", s["keep"])
		}
		return nil
	})
	id := func() string {
		out, err := virsh(a.lv.uri, "domid", "kumoi-keep")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	before := id()
	c.KillWorker(a.w)
	c.StartWorker(a.w)
	c.WaitHostState(a.name, resource.HostReady, hostReadyWithin)
	// Ready again: a guard's fence could only come from a proof older
	// than fence-after, so wait until the new worker has renewed past it.
	testcluster.WaitFor(t, 20*time.Second, "the new worker to be reconciled with the guard", func() (bool, error) {
		b, err := os.ReadFile(c.WorkerLogPath(a.w))
		return strings.Count(string(b), "reconciled; host is ready") >= 2, err
	})
	if _, err := os.Stat(filepath.Join(a.dir, fenceguard.RecordFile)); err == nil {
		t.Fatalf("the guard fenced on a quick restart: %+v", readFenceRecord(t, a))
	}
	if after := id(); after != before {
		t.Errorf("kumoi-keep's domain id went from %s to %s: it was stopped and started again", before, after)
	}
}
