package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestFenceCommand (real binaries: 3 controllers with --fence-command, 2
// workers): a worker holding an ha=restart VM is killed (-9). After the
// grace the leader runs the fence command, which fails at first: the VM
// stays on the down host, status.fence says failed after 1 attempt, and
// `kumoi host get` shows it. The retry (5 s later) succeeds, and only then
// the VM runs on the other host. The script saw the host as $1 and its
// labels and the cluster's identity in its environment.
func TestFenceCommand(t *testing.T) {
	dir := t.TempDir()
	script, log := filepath.Join(dir, "fence.sh"), filepath.Join(dir, "fence.log")
	body := `#!/bin/sh
echo "run host=$1 env_host=$KUMOI_FENCE_HOST labels=$KUMOI_FENCE_LABELS bmc=$KUMOI_FENCE_LABEL_BMC cluster=$KUMOI_CLUSTER_ID" >>` + log + `
if [ "$(grep -c '^run ' ` + log + `)" -lt 2 ]; then echo "Failed: BMC did not answer"; exit 1; fi
echo "Success: Powered OFF"
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, testcluster.Options{Workers: 2, ControllerArgs: []string{"--fence-command", script + ` "$1"`},
		WorkerArgs: []string{"--label", "bmc=10.9.9.9"}})
	hc := httpClient()
	c.WaitLeader(leaderTimeout)
	for w := range c.Workers() {
		c.WaitHostState(c.WorkerName(w), resource.HostReady, hostReadyWithin)
	}
	mustCreateVM(t, c, hc, "web", resource.HARestart)
	sts := waitVMs(t, c, hc, vmRunningWithin, "web running", func(sts map[string]vmState) error {
		if s := sts["web"]; s.Phase != resource.PhaseRunning {
			return fmt.Errorf("web is %s (%s)", s, s.Reason)
		}
		return nil
	})
	victim := sts["web"].Host
	killed := time.Now()
	c.KillWorker(c.WorkerIndex(victim))
	c.WaitHostState(victim, resource.HostDown, hostDownWithin)

	var failed *resource.HostStatus
	testcluster.WaitFor(t, haRestartWithin, "the first fence run to fail", func() (bool, error) {
		_, hs, err := c.Host(victim)
		if err != nil || hs.Fence == nil || hs.Fence.State != resource.FenceFailed {
			return false, err
		}
		failed = hs
		return true, nil
	})
	t.Logf("fence failed %s after the kill: %+v", time.Since(killed).Round(time.Millisecond), failed.Fence)
	if f := failed.Fence; f.Attempts != 1 || f.ExitCode != 1 || !strings.Contains(f.Output, "BMC did not answer") || f.StateIndex != failed.StateIndex {
		t.Errorf("fence record after the failure: %+v (host state_index %d)", f, failed.StateIndex)
	}
	if now, err := anyVMStates(hc, c); err != nil || now["web"].Host != victim {
		t.Fatalf("web is %s after a failed fencing (%v); want it still on %s", now["web"], err, victim)
	}
	// The CLI shows it.
	cmd := exec.Command(c.Bin(), "host", "get", victim)
	cmd.Env = testcluster.CLIEnv(append(os.Environ(), "KUMOI_ADDR="+strings.Join(c.LiveURLs(), ",")))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fence:   failed after 1 attempt") || !strings.Contains(string(out), "output:  Failed: BMC did not answer") {
		t.Errorf("kumoi host get %s: %v\n%s", victim, err, out)
	}
	t.Logf("kumoi host get %s:\n%s", victim, out)

	waitVMs(t, c, hc, haRestartWithin, "web running elsewhere after the fencing succeeded", func(sts map[string]vmState) error {
		if s := sts["web"]; s.Phase != resource.PhaseRunning || s.Host == victim {
			return fmt.Errorf("web is %s (%s)", s, s.Reason)
		}
		return nil
	})
	_, hs, err := c.Host(victim)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("web running elsewhere %s after the kill; fence %+v; host reason %q", time.Since(killed).Round(time.Millisecond), hs.Fence, hs.Reason)
	if f := hs.Fence; f == nil || f.State != resource.FenceSucceeded || f.Attempts != 2 || f.StateIndex != failed.StateIndex || f.FinishedAt.Before(failed.Fence.FinishedAt) {
		t.Errorf("fence record after the move: %+v; want succeeded on attempt 2 for period %d", f, failed.StateIndex)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(0)
	if err != nil {
		t.Fatal(err)
	}
	want := "run host=" + victim + " env_host=" + victim + " labels=bmc=10.9.9.9 bmc=10.9.9.9 cluster=" + st.ClusterID
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 2 || lines[0] != want || lines[1] != want {
		t.Errorf("fence log:\n%s\nwant two lines %q", b, want)
	}
}
