package controller

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

func TestFenceEnv(t *testing.T) {
	got := fenceEnv("hv-1", map[string]string{"zone": "z1", "bmc.ip": "10.0.0.9", "rack-id": "r1"}, "cid")
	want := []string{
		"KUMOI_FENCE_HOST=hv-1", "KUMOI_CLUSTER_ID=cid",
		"KUMOI_FENCE_LABEL_BMC_IP=10.0.0.9", "KUMOI_FENCE_LABEL_RACK_ID=r1", "KUMOI_FENCE_LABEL_ZONE=z1",
		"KUMOI_FENCE_LABELS=bmc.ip=10.0.0.9,rack-id=r1,zone=z1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("fenceEnv:\n got %q\nwant %q", got, want)
	}
	if got := fenceEnv("hv-2", nil, ""); !slices.Contains(got, "KUMOI_FENCE_LABELS=") {
		t.Errorf("fenceEnv without labels = %q; want an empty KUMOI_FENCE_LABELS", got)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 16}
	b.Write([]byte("short"))
	if got := b.String(); got != "short" {
		t.Errorf("got %q", got)
	}
	b = &tailBuffer{max: 16}
	for range 100 {
		b.Write([]byte("0123456789é"))
	}
	got := b.String()
	if len(got) > 16 || !strings.HasPrefix(got, "[…]\n") || !strings.HasSuffix(got, "89é") || !utf8.ValidString(got) {
		t.Errorf("cut output %q (%d bytes): want at most 16 valid bytes, the mark, then the end", got, len(got))
	}
}

func TestFenceBackoff(t *testing.T) {
	f := &fencer{c: &Controller{cfg: Config{FenceRetryMin: 5 * time.Second, FenceRetryMax: time.Minute}}}
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, f.backoff(n))
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute}
	if !slices.Equal(got, want) {
		t.Errorf("backoff = %v, want %v", got, want)
	}
}

// TestRunFenceCommand: the command gets the host as $1 and its
// environment; a non-zero status is reported as such, with the output; a
// command that outlives --fence-timeout is killed with its children.
func TestRunFenceCommand(t *testing.T) {
	dir := t.TempDir()
	c := &Controller{cfg: Config{FenceTimeout: 5 * time.Second}, logger: hclog.NewNullLogger()}
	h := &resource.Object{Kind: resource.KindHost, Name: "hv-1", Labels: map[string]string{"bmc": "10.1.2.3"}}

	c.cfg.FenceCommand = `echo "host=$1 bmc=$KUMOI_FENCE_LABEL_BMC"; echo oops >&2; exit 7`
	code, out, err := c.runFenceCommand(context.Background(), h)
	if code != 7 || err != nil || out != "host=hv-1 bmc=10.1.2.3\noops\n" {
		t.Errorf("exit 7: code %d, output %q, error %v", code, out, err)
	}
	c.cfg.FenceCommand = `true`
	if code, _, err := c.runFenceCommand(context.Background(), h); code != 0 || err != nil {
		t.Errorf("true: code %d, error %v", code, err)
	}

	// A hanging fence agent and its child are killed at the timeout.
	pidFile := filepath.Join(dir, "child.pid")
	c.cfg.FenceTimeout = 500 * time.Millisecond
	c.cfg.FenceCommand = `sleep 60 & echo $! >` + pidFile + `; wait`
	start := time.Now()
	code, _, err = c.runFenceCommand(context.Background(), h)
	if code != -1 || err == nil || !strings.Contains(err.Error(), "--fence-timeout 500ms") || time.Since(start) > 4*time.Second {
		t.Errorf("hanging command: code %d, error %v after %s; want -1 and a timeout error soon after 500ms", code, err, time.Since(start))
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	testcluster.WaitFor(t, 5*time.Second, "the fence command's child to be killed", func() (bool, error) {
		_, err := os.Stat("/proc/" + strings.TrimSpace(string(b)))
		return os.IsNotExist(err), nil
	})
}

func TestHostNotes(t *testing.T) {
	down := &resource.HostStatus{State: resource.HostDown, StateIndex: 7,
		Fence: &resource.HostFence{State: resource.FenceFailed, StateIndex: 7, Reason: "fencing failed: exit 1"}}
	cases := []struct {
		name      string
		hs        *resource.HostStatus
		state     string
		fa, grace int64
		want      string
	}{
		{"nothing to say", &resource.HostStatus{State: resource.HostReady}, resource.HostReady, 3000, 4000, ""},
		{"unpublished fence-after", &resource.HostStatus{}, resource.HostReady, 0, 4000, ""},
		{"fence-after at the grace", &resource.HostStatus{}, resource.HostReady, 4000, 4000,
			"its VMs are never moved elsewhere: the worker's --fence-after (4s) is not below the controllers' --host-down-grace (4s); lower --fence-after or raise --host-down-grace"},
		{"the fencing of the current period", down, resource.HostDown, 3000, 4000, "fencing failed: exit 1"},
		{"a host back up drops it", down, resource.HostReady, 3000, 4000, ""},
		{"a record of an earlier period", &resource.HostStatus{State: resource.HostDown, StateIndex: 9, Fence: down.Fence}, resource.HostDown, 3000, 4000, ""},
	}
	for _, tc := range cases {
		if got := hostNotes(tc.hs, tc.state, tc.fa, tc.grace); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := joinReason("the worker stopped answering gossip probes", "fencing failed"); got != "the worker stopped answering gossip probes; fencing failed" {
		t.Errorf("joinReason: %q", got)
	}
}
