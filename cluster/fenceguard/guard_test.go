package fenceguard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
	"github.com/kumoi/kumoi/hypervisor/sim"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

const (
	testCluster = "11111111-1111-4111-8111-111111111111"
	fenceAfter  = 400 * time.Millisecond
)

// fixture: a sim host with two running domains of the cluster and one of
// another cluster, a guard on it, and a fake controller that answers the
// host's state.
type fixture struct {
	drv   *sim.Driver
	dir   string
	g     *Guard
	state atomic.Value // the host state the controller answers
	reads atomic.Int64
	srv   *httptest.Server
	stop  context.CancelFunc
	done  chan error
}

func newFixture(t *testing.T, idle time.Duration) *fixture {
	t.Helper()
	f := &fixture{drv: sim.New(sim.Options{Host: "hv1"}), dir: t.TempDir(), done: make(chan error, 1)}
	t.Cleanup(func() { f.drv.Close() })
	f.state.Store(resource.HostReady)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/hosts/hv1" {
			http.NotFound(w, r)
			return
		}
		f.reads.Add(1)
		st, _ := json.Marshal(resource.HostStatus{State: f.state.Load().(string), Reason: "test"})
		o := resource.Object{Kind: resource.KindHost, Name: "hv1", ID: "h-1", Status: st}
		o.ModifyIndex = 10
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(o)
	}))
	t.Cleanup(f.srv.Close)
	ctx := context.Background()
	for _, d := range []struct{ name, cluster string }{{"kumoi-a", testCluster}, {"kumoi-b", testCluster}, {"kumoi-other", "22222222-2222-4222-8222-222222222222"}} {
		if err := f.drv.Define(ctx, hypervisor.DomainSpec{Name: d.name, VMID: d.name, Epoch: 1, Cluster: d.cluster, CPUs: 1, MemoryMiB: 64}); err != nil {
			t.Fatal(err)
		}
		if err := f.drv.Start(ctx, d.name); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.dir, "cluster_id"), []byte(testCluster+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Dir: f.dir, NodeID: "hv1", Driver: f.drv, FenceAfter: fenceAfter, ExitWhenIdle: idle})
	if err != nil {
		t.Fatal(err)
	}
	f.g = g
	ctx, f.stop = context.WithCancel(ctx)
	go func() { f.done <- g.Run(ctx) }()
	t.Cleanup(func() {
		f.stop()
		select {
		case <-f.done:
		case <-time.After(5 * time.Second):
			t.Error("the guard did not stop")
		}
	})
	testcluster.WaitFor(t, 5*time.Second, "the guard's socket", func() (bool, error) {
		_, err := os.Stat(SocketPath(f.dir))
		return err == nil, err
	})
	return f
}

// active lists the active domains.
func (f *fixture) active(t *testing.T) []string {
	t.Helper()
	ds, err := f.drv.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range ds {
		if d.State.Active() {
			out = append(out, d.Name)
		}
	}
	return out
}

// worker is a renewing worker over the socket.
type worker struct {
	conn net.Conn
	r    *bufio.Scanner
	seq  uint64
}

func dialWorker(t *testing.T, dir string) *worker {
	t.Helper()
	c, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &worker{conn: c, r: bufio.NewScanner(c)}
}

func (w *worker) renew(t *testing.T, rn Renewal) Ack {
	t.Helper()
	w.seq++
	rn.Seq = w.seq
	b, _ := json.Marshal(rn)
	if _, err := w.conn.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	if !w.r.Scan() {
		t.Fatalf("no answer: %v", w.r.Err())
	}
	var ack Ack
	if err := json.Unmarshal(w.r.Bytes(), &ack); err != nil {
		t.Fatal(err)
	}
	if ack.Seq != rn.Seq {
		t.Fatalf("answer to %d, want %d", ack.Seq, rn.Seq)
	}
	return ack
}

// TestRenewalsHoldFencing: while the worker renews with fresh proofs the
// guard destroys nothing and reads nothing itself; once they stop (and no
// controller is known to read from), it destroys the cluster's domains
// fence-after after the last proof, never another cluster's, and records
// the fence.
func TestRenewalsHoldFencing(t *testing.T) {
	f := newFixture(t, 0)
	w := dialWorker(t, f.dir)
	end := time.Now().Add(3 * fenceAfter)
	for time.Now().Before(end) {
		ack := w.renew(t, Renewal{Host: "hv1", Cluster: testCluster, Proof: Now()})
		if ack.Error != "" || ack.Fence != nil {
			t.Fatalf("ack %+v", ack)
		}
		time.Sleep(fenceAfter / 8) // the worker's renewal interval
	}
	if got := f.active(t); len(got) != 3 {
		t.Fatalf("fenced while renewed: active %v", got)
	}
	last := Now()
	w.renew(t, Renewal{Host: "hv1", Cluster: testCluster, Proof: last})
	testcluster.WaitFor(t, 5*time.Second, "the cluster's domains to be destroyed", func() (bool, error) {
		got := f.active(t)
		return len(got) == 1 && got[0] == "kumoi-other", errors.New(strings.Join(got, ","))
	})
	if el := Now() - last; el < fenceAfter {
		t.Errorf("fenced %s after the last proof, before fence-after %s", el, fenceAfter)
	}
	ack := w.renew(t, Renewal{Host: "hv1", Cluster: testCluster})
	if ack.Fence == nil || strings.Join(ack.Fence.Domains, ",") != "kumoi-a,kumoi-b" {
		t.Fatalf("the ack does not carry the fence of kumoi-a and kumoi-b: %+v", ack.Fence)
	}
	var rec FenceRecord
	b, err := os.ReadFile(filepath.Join(f.dir, RecordFile))
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.Seq != ack.Fence.Seq {
		t.Fatalf("record file: %s, %v; want seq %d", b, err, ack.Fence.Seq)
	}

	// Fenced: a domain started without a new proof is stopped again; a
	// proof taken after the fence lifts it.
	if err := f.drv.Start(context.Background(), "kumoi-a"); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 5*time.Second, "kumoi-a, started while fenced, to be destroyed", func() (bool, error) {
		return len(f.active(t)) == 1, errors.New(strings.Join(f.active(t), ","))
	})
	w.renew(t, Renewal{Host: "hv1", Cluster: testCluster, Proof: Now()})
	if err := f.drv.Start(context.Background(), "kumoi-a"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * Tick) // give a wrong guard the chance to destroy it
	if got := f.active(t); len(got) != 2 {
		t.Errorf("after a fresh proof, kumoi-a was stopped again: active %v", got)
	}
}

// TestGuardReadsWhenRenewalsStop: with the worker gone, the guard reads
// the host itself: ready keeps the domains; once the reads say down (or
// fail) it fences fence-after after the last read that said ready, not at
// once (a restarting worker's host is down for a moment).
func TestGuardReadsWhenRenewalsStop(t *testing.T) {
	f := newFixture(t, 0)
	w := dialWorker(t, f.dir)
	w.renew(t, Renewal{Host: "hv1", Cluster: testCluster, Controllers: []string{f.srv.URL}, Proof: Now()})
	w.conn.Close()
	testcluster.WaitFor(t, 5*time.Second, "the guard to read the host itself", func() (bool, error) {
		return f.reads.Load() >= 3, nil
	})
	if got := f.active(t); len(got) != 3 {
		t.Fatalf("fenced although its reads say ready: active %v", got)
	}
	f.state.Store(resource.HostDown)
	at := Now()
	testcluster.WaitFor(t, 5*time.Second, "the guard to fence once the reads say down", func() (bool, error) {
		return len(f.active(t)) == 1, errors.New(strings.Join(f.active(t), ","))
	})
	el := Now() - at
	t.Logf("fenced %s after the host went down", el)
	// The last ready read started at most fence-after/3 (+ a tick) before
	// the switch; the fence comes fence-after after it.
	if el < fenceAfter-fenceAfter/3-2*Tick {
		t.Errorf("fenced %s after the reads said down: before fence-after (%s) after the last ready read", el, fenceAfter)
	}
}

// TestGuardBadRenewals: another host's renewal and junk are refused and
// change nothing; a second guard on the directory does not start.
func TestGuardBadRenewals(t *testing.T) {
	f := newFixture(t, 0)
	w := dialWorker(t, f.dir)
	if ack := w.renew(t, Renewal{Host: "hv2", Proof: Now()}); !strings.Contains(ack.Error, "hv1") {
		t.Errorf("another host's renewal: %+v", ack)
	}
	if ack := w.renew(t, Renewal{Host: "hv1", Proof: Now() + time.Hour}); ack.Proof != 0 {
		t.Errorf("a proof from the future was taken: %+v", ack)
	}
	if _, err := w.conn.Write([]byte("{junk\n")); err != nil {
		t.Fatal(err)
	}
	if !w.r.Scan() || !strings.Contains(w.r.Text(), "bad renewal") {
		t.Errorf("junk: %q", w.r.Text())
	}
	g2, err := New(Config{Dir: f.dir, NodeID: "hv1", Driver: f.drv, FenceAfter: fenceAfter})
	if err != nil {
		t.Fatal(err)
	}
	if err := g2.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("a second guard on the directory: %v, want ErrRunning", err)
	}
}

// TestGuardExits: a guard exits when its directory is removed, and (with
// ExitWhenIdle) when no worker renews and nothing of its cluster runs.
func TestGuardExits(t *testing.T) {
	t.Run("dir removed", func(t *testing.T) {
		f := newFixture(t, 0)
		if err := os.RemoveAll(f.dir); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-f.done:
			f.done <- err
		case <-time.After(5 * time.Second):
			t.Fatal("the guard did not exit when its directory was removed")
		}
	})
	t.Run("idle", func(t *testing.T) {
		f := newFixture(t, 2*fenceAfter)
		// No renewal: it fences at fence-after, then is idle.
		select {
		case err := <-f.done:
			f.done <- err
		case <-time.After(10 * time.Second):
			t.Fatal("the idle guard did not exit")
		}
		if got := f.active(t); len(got) != 1 {
			t.Errorf("active after the idle exit: %v (only kumoi-other should run)", got)
		}
	})
	t.Run("libvirt gone", func(t *testing.T) {
		// Its domains fenced, then libvirt stops answering for good (a
		// test's libvirtd torn down): it exits once idle for as long,
		// where it waited for libvirt for ever (left behind by tests).
		f := newFixture(t, 4*fenceAfter)
		testcluster.WaitFor(t, 10*time.Second, "the cluster's domains fenced", func() (bool, error) {
			return len(f.active(t)) == 1, nil
		})
		f.drv.SetUnavailable(true)
		select {
		case err := <-f.done:
			f.done <- err
		case <-time.After(15 * time.Second):
			t.Fatal("the guard did not exit with libvirt gone and nothing of its cluster running")
		}
	})
	t.Run("libvirt gone with a domain running", func(t *testing.T) {
		// libvirt stops answering while a domain of the cluster ran: the
		// guard stays (it may still have to fence it).
		f := newFixture(t, 2*fenceAfter)
		f.drv.SetUnavailable(true)
		deadline := time.Now().Add(6 * fenceAfter)
		for time.Now().Before(deadline) {
			select {
			case err := <-f.done:
				t.Fatalf("the guard exited (%v) while a domain of its cluster may run", err)
			case <-time.After(50 * time.Millisecond):
			}
		}
		f.drv.SetUnavailable(false)
	})
}

// TestQEMUKiller kills a process whose command line names the guest, and
// refuses one that does not (a reused pid).
func TestQEMUKiller(t *testing.T) {
	dir := t.TempDir()
	start := func(args ...string) *exec.Cmd {
		cmd := exec.Command("sleep", args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	// A stand-in for QEMU whose command line names the guest: sleep with
	// that argv[0] (not bash -c, which may exec sleep in its place and so
	// drop the name from the command line while the test runs).
	qemu := exec.Command("sleep", "60")
	qemu.Args = []string{"guest=kumoi-x", "60"}
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 5*time.Second, "the stand-in to run", func() (bool, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", qemu.Process.Pid))
		return strings.Contains(string(b), "guest=kumoi-x"), err
	})
	other := start("60")
	if err := os.WriteFile(filepath.Join(dir, "kumoi-x.pid"), []byte(strconv.Itoa(qemu.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kumoi-y.pid"), []byte(strconv.Itoa(other.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	kill := QEMUKiller(dir)
	if err := kill("kumoi-y"); err == nil || !strings.Contains(err.Error(), "not kumoi-y's QEMU") {
		t.Errorf("kill of a process that is not the guest's: %v", err)
	}
	if err := kill("kumoi-x"); err != nil {
		t.Fatal(err)
	}
	if err := qemu.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the guest's process: %v, want killed", err)
	}
	if err := kill("kumoi-z"); err == nil {
		t.Error("kill without a pid file succeeded")
	}
}

// TestGuardRemembersControllers: a guard started again (no worker yet)
// reads the host from the controllers the last worker named, and so keeps
// the domains while the host is ready.
func TestGuardRemembersControllers(t *testing.T) {
	f := newFixture(t, 0)
	w := dialWorker(t, f.dir)
	w.renew(t, Renewal{Host: "hv1", Cluster: testCluster, Controllers: []string{f.srv.URL}, Proof: Now()})
	w.conn.Close()
	f.stop()
	<-f.done
	f.done <- nil // for the fixture's cleanup

	g, err := New(Config{Dir: f.dir, NodeID: "hv1", Driver: f.drv, FenceAfter: fenceAfter})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	before := f.reads.Load()
	testcluster.WaitFor(t, 5*time.Second, "the new guard to read the host", func() (bool, error) {
		return f.reads.Load() >= before+3, nil
	})
	if got := f.active(t); len(got) != 3 {
		t.Errorf("the new guard fenced although the host is ready: active %v", got)
	}
}

// TestBoundedHang: a call that hangs costs its timeout once; while it is
// out no new call starts (one goroutine per hang, not one per tick); once
// it returns, calls run again.
func TestBoundedHang(t *testing.T) {
	release := make(chan struct{})
	_, err := bounded(context.Background(), func(context.Context) (int, error) { <-release; return 1, nil })
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("a hung call: %v, want a timeout", err)
	}
	if _, err := bounded(context.Background(), func(context.Context) (int, error) { return 2, nil }); !errors.Is(err, errHung) {
		t.Fatalf("a call while one hangs: %v, want errHung", err)
	}
	close(release)
	testcluster.WaitFor(t, 5*time.Second, "the hung call to return", func() (bool, error) {
		v, err := bounded(context.Background(), func(context.Context) (int, error) { return 3, nil })
		return err == nil && v == 3, err
	})
}

// hangingList is a driver whose List fails once told to (libvirtd hangs).
type hangingList struct {
	*sim.Driver
	hang atomic.Bool
}

func (h *hangingList) List(ctx context.Context) ([]hypervisor.DomainInfo, error) {
	if h.hang.Load() {
		return nil, errors.New("libvirt does not answer")
	}
	return h.Driver.List(ctx)
}

// TestFenceWhileLibvirtHangs: with libvirt not answering, a guard with a
// process killer stops the cluster's domains it last listed by their
// processes (never another cluster's).
func TestFenceWhileLibvirtHangs(t *testing.T) {
	f := newFixture(t, 0) // only for its domains and cluster file
	f.stop()
	<-f.done
	f.done <- nil
	drv := &hangingList{Driver: f.drv}
	var mu sync.Mutex
	var killed []string
	g, err := New(Config{Dir: f.dir, NodeID: "hv1", Driver: drv, FenceAfter: fenceAfter, Kill: func(d string) error {
		mu.Lock()
		defer mu.Unlock()
		killed = append(killed, d)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.list(context.Background()); err != nil { // what the loop does every 2 s
		t.Fatal(err)
	}
	drv.hang.Store(true)
	g.fence(context.Background(), "test")
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(killed, ",") != "kumoi-a,kumoi-b" {
		t.Errorf("killed %v, want the cluster's kumoi-a and kumoi-b", killed)
	}
}

// blockingList is a driver whose List waits on release once armed.
type blockingList struct {
	*sim.Driver
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (b *blockingList) List(ctx context.Context) ([]hypervisor.DomainInfo, error) {
	if b.armed.CompareAndSwap(true, false) {
		close(b.entered)
		<-b.release
	}
	return b.Driver.List(ctx)
}

// TestProofWaitsForSweep: a proof (the worker's leave to start its
// domains) is not recorded while a sweep of a fenced guard is listing and
// stopping domains, so a domain the worker starts after its renewal is
// never stopped by a sweep that decided before the proof. (The race left
// a VM stopped "outside Kumoi" after a paused worker continued.)
func TestProofWaitsForSweep(t *testing.T) {
	f := newFixture(t, 0) // only for its domains and cluster file
	f.stop()
	<-f.done
	f.done <- nil
	drv := &blockingList{Driver: f.drv, entered: make(chan struct{}), release: make(chan struct{})}
	g, err := New(Config{Dir: f.dir, NodeID: "hv1", Driver: drv, FenceAfter: fenceAfter})
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.fenced, g.fencedAt = true, Now()
	g.mu.Unlock()
	drv.armed.Store(true)
	swept := make(chan struct{})
	go func() { defer close(swept); g.fenceActive(context.Background(), nil) }()
	<-drv.entered // the sweep is listing
	renewed := make(chan Ack, 1)
	go func() { renewed <- g.renew(Renewal{Host: "hv1", Cluster: testCluster, Proof: Now()}) }()
	select {
	case <-renewed:
		t.Fatal("a renewal's proof was recorded in the middle of a sweep")
	case <-time.After(100 * time.Millisecond): // a bounded window in which the renewal must not complete
	}
	close(drv.release)
	<-swept
	if ack := <-renewed; ack.Proof == 0 {
		t.Errorf("the renewal after the sweep recorded no proof: %+v", ack)
	}
	g.mu.Lock()
	fenced := g.fenced
	g.mu.Unlock()
	if fenced {
		t.Error("still fenced after a proof taken after the fence")
	}
}
