package agent

import (
	"context"
	"fmt"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
	"github.com/kumoi/kumoi/script"
)

// lineCounter counts the log lines that contain a string.
type lineCounter struct {
	mu   sync.Mutex
	want string
	n    int
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n += strings.Count(string(p), l.want)
	return len(p), nil
}

func (l *lineCounter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// TestPolicyLimits is issue 12's two policy defects. A handler `x = [0] *
// 100000000` (max_steps 1000, timeout 1s) took the leader to 1.8 GB: it
// now fails at once with "memory budget exceeded" in the policy's status
// and the leader's heap hardly moves. Infinite recursion stored a 3.3 MB
// backtrace in the status and wrote 100k log lines: the recursion is now
// bounded, the stored error is at most script.MaxErrorText with the middle
// of the backtrace elided, and a handler failing on every event logs one
// line per interval.
func TestPolicyLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	failed := &lineCounter{want: "policy handler failed"}
	d, err := StartDev(ctx, DevConfig{Controllers: 1, BindIP: "127.0.0.75", APIPort: 17400,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: failed})})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	c, err := client.New(client.Config{Addrs: d.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	applyPolicy(t, c, "hog", "events = [\"vm.created\"]\ndef on_event(ev):\n    x = [0] * 100000000\n    print(len(x))\n",
		func(s *resource.PolicySpec) { s.MaxSteps, s.Timeout = 1000, "1s" })
	applyPolicy(t, c, "recurse", "events = [\"vm.created\"]\ndef f(n):\n    return f(n + 1)\ndef on_event(ev):\n    f(0)\n",
		func(s *resource.PolicySpec) { s.MaxSteps = 100_000_000 })
	for _, n := range []string{"hog", "recurse"} {
		testcluster.WaitFor(t, 15*time.Second, n+" loaded", func() (bool, error) { p := policyState(t, c, n); return p != nil && p.Loaded(), nil })
	}
	heap := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(heap)
	before := heap[0].Value.Uint64()
	const vms = 30
	for i := range vms {
		createTestVM(t, c, fmt.Sprintf("lim-%d", i), `{"cpus":1,"memory_mib":128}`)
	}
	testcluster.WaitFor(t, 60*time.Second, "every event handled", func() (bool, error) {
		h, r := policyState(t, c, "hog"), policyState(t, c, "recurse")
		return h != nil && r != nil && h.Status.Failed == vms && r.Status.Failed == vms, nil
	})
	metrics.Read(heap)
	// 30 handlers of 1.6 GB each before; now what the cluster itself
	// allocates for 30 VMs and 60 status writes.
	if grew := heap[0].Value.Uint64() - before; grew > 1<<30 {
		t.Errorf("the process allocated %d MiB while the policies ran", grew>>20)
	}
	h := policyState(t, c, "hog")
	if e := h.Status.RecentErrors[len(h.Status.RecentErrors)-1]; !strings.Contains(e.Message, "script stopped: memory budget of 64MiB exceeded") || !strings.Contains(e.Message, "hog.star:3:") {
		t.Errorf("hog's error: %q; want the memory budget exceeded at hog.star:3", e.Message)
	}
	r := policyState(t, c, "recurse")
	for _, e := range r.Status.RecentErrors {
		if len(e.Message) > script.MaxErrorText || !strings.Contains(e.Message, "call depth limit of 1000 exceeded") || !strings.Contains(e.Message, "frames elided") {
			t.Errorf("recurse's error (%d bytes): %.600q; want the call depth limit, at most %d bytes, frames elided", len(e.Message), e.Message, script.MaxErrorText)
		}
	}
	// 60 failures, rate-limited per policy: a couple of lines each.
	if n := failed.count(); n < 2 || n > 10 {
		t.Errorf("%d lines \"policy handler failed\" logged for %d failures; want one per policy per %s", n, 2*vms, "10s")
	}
}
