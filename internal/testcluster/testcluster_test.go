package testcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/resource"
)

func TestReserveBlockGivesDisjointAddresses(t *testing.T) {
	a, err := reserveBlock("", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.release()
	b, err := reserveBlock("", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer b.release()
	if a.ip(0) == b.ip(0) {
		t.Fatalf("two clusters got the same base address %s", a.ip(0))
	}
	if got, want := a.ip(2)[strings.LastIndex(a.ip(2), ".")+1:], "13"; got != want {
		t.Errorf("third node's last octet = %s, want %s", got, want)
	}
	// An explicit base held by someone else is waited for, then refused.
	if _, err := reserveBlock(a.ip(0), 200*time.Millisecond); err == nil {
		t.Errorf("reserving a held block succeeded")
	}
	a.release()
	c, err := reserveBlock(a.base.String(), time.Second)
	if err != nil {
		t.Fatalf("reserving a released block: %v", err)
	}
	c.release()
}

func TestReserveBlockRejectsBadBase(t *testing.T) {
	for _, base := range []string{"10.0.0.1", "127.0.0.250", "nope", "::1"} {
		if b, err := reserveBlock(base, 0); err == nil {
			b.release()
			t.Errorf("reserveBlock(%q) succeeded", base)
		}
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	var sb strings.Builder
	for i := range 100 {
		sb.WriteString(strings.Repeat("x", i) + "\n")
	}
	if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(tail(p, 3), "\n")
	if len(got) != 3 || len(got[0]) != 97 || len(got[2]) != 99 {
		t.Errorf("tail = %d lines %v", len(got), got)
	}
	if s := tail(filepath.Join(t.TempDir(), "missing"), 3); !strings.Contains(s, "cannot read") {
		t.Errorf("tail of a missing file = %q", s)
	}
}

func TestStretch(t *testing.T) {
	t.Setenv("CI", "true")
	if Stretch(time.Second) != 3*time.Second {
		t.Errorf("Stretch under CI = %s", Stretch(time.Second))
	}
	t.Setenv("CI", "false")
	if Stretch(time.Second) != time.Second || InCI() {
		t.Errorf("CI=false counts as CI")
	}
}

// TestWorkerProcesses runs one controller and one simulated worker as real
// processes: the worker's host becomes ready, a graceful stop takes it
// out, a restart makes it ready again, and a SIGKILL down.
func TestWorkerProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := New(t, Options{Controllers: 1, Workers: 1, LogLevel: "info"})
	c.WaitLeader(0)
	name := c.WorkerName(0)
	if name != "sim-1" || c.WorkerIndex(name) != 0 || c.WorkerIP(0) == c.IP(0) {
		t.Fatalf("worker 0 is %s on %s (controller on %s)", name, c.WorkerIP(0), c.IP(0))
	}
	hs := c.WaitHostState(name, "ready", 30*time.Second)
	if hs.Capacity.CPUs != 8 || hs.Capacity.MemoryMiB != 16<<10 {
		t.Errorf("capacity %+v, want the default 8 CPUs and 16 GiB", hs.Capacity)
	}
	// The worker's driver logs the start of a VM's domain in its
	// observation log.
	obs := c.WorkerObservationLog(0)
	if filepath.Dir(obs) != filepath.Dir(c.WorkerLogPath(0)) || !strings.HasSuffix(obs, name+ObservationLogSuffix) {
		t.Errorf("observation log %s, want %s%s next to the log %s", obs, name, ObservationLogSuffix, c.WorkerLogPath(0))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := Do(ctx, c.HTTPClient(), http.MethodPost, c.URL(0)+"/v1/vms", []byte(`{"name":"obs-1","spec":{"cpus":1,"memory_mib":64}}`))
	if err != nil || r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("create vm: %v %v", r, err)
	}
	WaitFor(t, 30*time.Second, "a start of obs-1 in the observation log", func() (bool, error) {
		b, err := os.ReadFile(obs)
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			var o struct{ Host, Domain, Event string }
			if json.Unmarshal([]byte(line), &o) == nil && o.Host == name && o.Domain == "kumoi-obs-1" && o.Event == "start" {
				return true, nil
			}
		}
		return false, fmt.Errorf("observation log: %q", b)
	})
	// A graceful stop exits with status 0 (Stop checks it); the host
	// becomes left (not down: the worker announced its leave).
	c.StopWorker(0)
	c.WaitHostState(name, "left", 30*time.Second)
	c.StartWorker(0)
	c.WaitHostState(name, "ready", 30*time.Second)
	// A pause and a resume are in the history, with the pid.
	c.PauseWorker(0)
	c.ResumeWorker(0)
	if !c.WorkerAlive(0) || c.WorkerPid(0) == 0 {
		t.Fatal("the worker is not running after PauseWorker, ResumeWorker")
	}
	killed := time.Now()
	c.KillWorker(0)
	if c.WorkerAlive(0) {
		t.Fatal("the worker is alive after KillWorker")
	}
	// Two starts and two exits, the last a SIGKILL seen after it was
	// sent; the pause and resume between the second start and exit.
	h := c.WorkerHistory(0)
	if len(h) != 6 || h[0].Kind != ProcStart || h[1].Kind != ProcExit || h[2].Kind != ProcStart ||
		h[3].Kind != ProcPause || h[4].Kind != ProcResume || h[5].Kind != ProcExit {
		t.Fatalf("worker history %+v, want start, exit, start, pause, resume, exit", h)
	}
	if h[3].Pid != h[2].Pid || h[4].Pid != h[2].Pid || h[4].Time.Before(h[3].Time) {
		t.Errorf("pause %+v, resume %+v: want pid %d, in that order", h[3], h[4], h[2].Pid)
	}
	if last := h[5]; !last.Expected || last.Signal != "killed" || last.Time.Before(killed) || last.Node != name || last.Pid != h[2].Pid {
		t.Errorf("last exit %+v, want the SIGKILL of pid %d after %s", last, h[2].Pid, killed.Format(time.StampMicro))
	}
	if h[1].Signal != "terminated" || !h[1].Expected {
		t.Errorf("graceful stop %+v, want SIGTERM", h[1])
	}
	if len(c.History(0)) != 1 {
		t.Errorf("controller history %+v, want one start", c.History(0))
	}
	c.WaitHostState(name, "down", 30*time.Second)
	if _, _, err := c.Host("nope"); !errors.Is(err, ErrNoHost) {
		t.Errorf("Host(nope) = %v, want ErrNoHost", err)
	}
}

// TestWipeAndStartExpectExit: Wipe empties a stopped controller's data
// directory (and refuses a running one); a start whose exit is expected
// from the start (StartExpectExit) is not reported as a crash however
// soon the process exits, and Wait says how it exited.
func TestWipeAndStartExpectExit(t *testing.T) {
	if testing.Short() && !InCI() {
		t.Skip("starts processes")
	}
	bin := Binary(t, "")
	// One controller whose last --bootstrap-expect (2) is refused at
	// once: the process exits non-zero right after its start.
	tb := NewStandalone("wipe", t.Logf)
	defer tb.Close()
	c := New(tb, Options{Bin: bin, Controllers: 1, NoStart: true, LogLevel: "info", ControllerArgs: []string{"--bootstrap-expect", "2"}})
	if c.Bin() != bin {
		t.Errorf("Bin() = %s, want %s", c.Bin(), bin)
	}
	junk := filepath.Join(c.DataDir(0), "raft", "junk")
	if err := os.MkdirAll(filepath.Dir(junk), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Wipe(0)
	if ents, err := os.ReadDir(c.DataDir(0)); err != nil || len(ents) != 0 {
		t.Fatalf("after Wipe the data directory has %d entries (%v)", len(ents), err)
	}
	c.StartExpectExit(0)
	err := c.Wait(0, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exit status") {
		t.Fatalf("Wait = %v; want a non-zero exit", err)
	}
	if cr := c.crashReport(); cr != "" {
		t.Errorf("an expected exit reported as a crash: %s", cr)
	}
	// A running node is not wiped.
	c.opts.ControllerArgs = nil
	c.Start(0)
	var ferr error
	func() {
		defer Recover(&ferr)
		c.Wipe(0)
	}()
	if ferr == nil || !strings.Contains(ferr.Error(), "it is running") {
		t.Errorf("Wipe of a running node: %v", ferr)
	}
	c.Kill(0)
}

// TestTLSCluster: with Options.TLS every node runs with certificates of
// the test CA, the API answers only HTTPS (URL is https), the harness's
// client trusts it, and a worker reaches the controllers over TLS: its
// host becomes ready and a VM runs on it.
func TestTLSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := New(t, Options{Controllers: 3, Workers: 1, LogLevel: "info", TLS: true})
	c.WaitLeader(0)
	if !strings.HasPrefix(c.URL(0), "https://") {
		t.Fatalf("URL(0) = %s, want https", c.URL(0))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Plain HTTP to the TLS port is refused.
	plain := "http://" + strings.TrimPrefix(c.URL(1), "https://") + "/v1/status"
	if r, err := Do(ctx, NewHTTPClient(2, 5*time.Second), http.MethodGet, plain, nil); err == nil && r.Status == http.StatusOK {
		t.Fatalf("plain HTTP to a TLS API answered %s", r)
	}
	c.WaitHostState(c.WorkerName(0), "ready", 30*time.Second)
	// A write through a follower is forwarded over TLS.
	lead, _ := c.WaitLeader(0)
	via := (lead + 1) % c.N()
	r, err := Do(ctx, c.HTTPClient(), http.MethodPost, c.URL(via)+"/v1/vms", []byte(`{"name":"tls-1","spec":{"cpus":1,"memory_mib":64}}`))
	if err != nil || r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("create vm through %s: %v %v", c.ID(via), r, err)
	}
	WaitFor(t, 30*time.Second, "tls-1 running", func() (bool, error) {
		var o resource.Object
		if err := GetJSON(ctx, c.HTTPClient(), c.URL(lead)+"/v1/vms/tls-1", &o); err != nil {
			return false, err
		}
		st, err := resource.DecodeStatus[resource.VMStatus](&o)
		if err != nil {
			return false, err
		}
		return st.Phase == resource.PhaseRunning, fmt.Errorf("tls-1 is %s (%s)", st.Phase, st.Reason)
	})
}
