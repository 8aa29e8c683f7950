package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// External fencing: for a host that has been down (or left) for the grace,
// the leader runs the operator's --fence-command, e.g. a fence_ipmilan
// invocation that powers the machine off, and records each run on the host
// object (status.fence) through Raft. The host's VMs are evacuated only
// once a run succeeded for its current down period (evacuate.go; the state
// machine checks it). A failed run is retried with a backoff and the host
// keeps its VMs meanwhile.

// fenceHost runs the fence command once (attempt n) for host's down period
// that began at stateIndex and records its start and its result. It
// reports whether the command succeeded and the success was recorded.
func (c *Controller) fenceHost(ctx context.Context, h *resource.Object, stateIndex uint64, attempt int, retryIn time.Duration) bool {
	started := time.Now()
	rec := resource.HostFence{
		State: resource.FenceRunning, Attempts: attempt, ExitCode: -1, StartedAt: started.UTC(), StateIndex: stateIndex,
		Reason: fmt.Sprintf("fencing: running the fence command (attempt %d); the host keeps its VMs until it succeeds", attempt),
	}
	if !c.recordFence(ctx, h.Name, rec) {
		return false
	}
	c.logger.Warn("fencing a down host: running --fence-command", "host", h.Name, "attempt", attempt, "state_index", stateIndex)
	code, out, runErr := c.runFenceCommand(ctx, h)
	if ctx.Err() != nil {
		return false // no longer the leader: the next one fences again
	}
	rec.ExitCode, rec.Output, rec.FinishedAt = code, out, time.Now().UTC()
	took := time.Since(started).Round(time.Millisecond)
	if runErr == nil && code == 0 {
		rec.State = resource.FenceSucceeded
		rec.Reason = fmt.Sprintf("fenced: the fence command succeeded on attempt %d (in %s); its VMs are moved elsewhere", attempt, took)
		c.logger.Warn("fenced a down host", "host", h.Name, "attempt", attempt, "took", took)
		c.metrics.fenceRuns.WithLabelValues("succeeded").Inc()
		return c.recordFence(ctx, h.Name, rec)
	}
	rec.State = resource.FenceFailed
	why := fmt.Sprintf("exited with status %d", code)
	if runErr != nil {
		why = runErr.Error()
	}
	rec.Reason = fmt.Sprintf("fencing failed: the fence command %s on attempt %d; retrying in %s; the host keeps its VMs until it succeeds",
		why, attempt, retryIn)
	c.metrics.fenceRuns.WithLabelValues("failed").Inc()
	c.logger.Error("fence command failed; the host keeps its VMs", "host", h.Name, "attempt", attempt, "error", why,
		"output", rec.Output, "retry_in", retryIn)
	c.recordFence(ctx, h.Name, rec)
	return false
}

// recordFence writes a fence record on the host through Raft.
func (c *Controller) recordFence(ctx context.Context, host string, rec resource.HostFence) bool {
	req := fsm.HostFenceRequest{Time: time.Now().UTC(), Host: host, Fence: rec}
	if _, err := c.Propose(ctx, fsm.HostFenceRequestType, &req); err != nil {
		if ctx.Err() == nil {
			c.logger.Warn("could not record the fencing of a host", "host", host, "state", rec.State, "error", err)
		}
		return false
	}
	return true
}

// runFenceCommand runs --fence-command for host: /bin/sh -c CMD
// kumoi-fence HOST, with the host's name and labels and the cluster's
// identity in the environment, for at most --fence-timeout. It returns
// the exit status (-1 when it did not exit by itself), the combined
// output (its last resource.MaxFenceOutput bytes) and why it did not run
// or finish.
func (c *Controller) runFenceCommand(ctx context.Context, h *resource.Object) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.FenceTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c.cfg.FenceCommand, "kumoi-fence", h.Name)
	cmd.Env = append(os.Environ(), fenceEnv(h.Name, h.Labels, c.ClusterID())...)
	out := &tailBuffer{max: resource.MaxFenceOutput}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, killed whole on timeout: a fence agent's
	// children must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	var exitErr *exec.ExitError
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("did not finish within --fence-timeout %s (killed)", c.cfg.FenceTimeout)
	case errors.As(err, &exitErr) && code >= 0:
		err = nil // a plain non-zero status
	case errors.As(err, &exitErr):
		err = fmt.Errorf("was killed (%v)", exitErr)
	case err != nil:
		err = fmt.Errorf("could not run: %v", err)
	}
	return code, out.String(), err
}

// fenceEnv is the environment the fence command gets besides the
// controller's own: KUMOI_FENCE_HOST, KUMOI_FENCE_LABELS (k=v,k=v sorted
// by key), KUMOI_FENCE_LABEL_<KEY> per label (the key upper-cased, every
// other character than a letter or digit made _) and KUMOI_CLUSTER_ID.
func fenceEnv(host string, labels map[string]string, clusterID string) []string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	pairs := make([]string, len(keys))
	env := []string{"KUMOI_FENCE_HOST=" + host, "KUMOI_CLUSTER_ID=" + clusterID}
	for i, k := range keys {
		pairs[i] = k + "=" + labels[k]
		env = append(env, "KUMOI_FENCE_LABEL_"+labelEnvName(k)+"="+labels[k])
	}
	return append(env, "KUMOI_FENCE_LABELS="+strings.Join(pairs, ","))
}

// labelEnvName is a label key as an environment variable suffix.
func labelEnvName(k string) string {
	return strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return unicode.ToUpper(r)
		}
		return '_'
	}, k)
}

// tailBuffer keeps the last max bytes written to it (valid UTF-8 when
// read), noting that the start was cut.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
	cut bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
		b.cut = true
	}
	return len(p), nil
}

// String is the output: its last bytes, prefixed by a mark when the start
// was cut, at most max bytes in all.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	const mark = "[…]\n"
	s := b.buf
	cut := b.cut
	if len(s) > b.max {
		s, cut = s[len(s)-b.max:], true
	}
	if cut {
		s = s[min(len(s), len(mark)):]
	}
	out := strings.ToValidUTF8(string(s), "")
	if cut {
		out = mark + out
	}
	return out
}
