package jepsen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
)

// Nemesis injects one kind of fault and heals it.
type Nemesis interface {
	// Name is the nemesis' flag name, e.g. "kill-leader".
	Name() string
	// Inject starts the fault and says what it did ("killed c2").
	Inject(ctx context.Context) (string, error)
	// Heal ends the fault Inject started; it does nothing if there is none.
	Heal(ctx context.Context) error
}

// Nemeses lists the nemesis names.
var Nemeses = []string{"kill-leader", "pause-leader", "partition-leader"}

// NewNemesis returns the nemesis called name acting on c.
func NewNemesis(name string, c *testcluster.Cluster) (Nemesis, error) {
	switch name {
	case "kill-leader":
		return &killLeader{c: c}, nil
	case "pause-leader":
		return &pauseLeader{c: c}, nil
	case "partition-leader":
		if err := CanPartition(); err != nil {
			return nil, err
		}
		return &partitionLeader{c: c}, nil
	}
	return nil, fmt.Errorf("unknown nemesis %q (%s)", name, strings.Join(Nemeses, ", "))
}

// CanPartition says why partition nemeses cannot run here, or nil.
func CanPartition() error {
	if os.Geteuid() != 0 {
		return errors.New("partition nemeses need root (they add iptables rules); run as root, or leave partition-leader out of --nemesis")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return errors.New("partition nemeses need iptables, which is not installed")
	}
	return nil
}

// leader waits up to 10s for a live node that says it leads.
func leader(ctx context.Context, c *testcluster.Cluster) (int, error) {
	idx := -1
	err := testcluster.Poll(ctx, 10*time.Second, func() (bool, error) {
		idx, _ = c.Leader()
		return idx >= 0, nil
	})
	if err != nil {
		return -1, fmt.Errorf("no leader to target: %w", err)
	}
	return idx, nil
}

// fatal runs f, turning a testcluster failure (a panic of Standalone's
// Fatalf) into an error.
func fatal(f func()) (err error) {
	defer testcluster.Recover(&err)
	f()
	return nil
}

type killLeader struct {
	c      *testcluster.Cluster
	killed int
	active bool
}

func (n *killLeader) Name() string { return "kill-leader" }

func (n *killLeader) Inject(ctx context.Context) (string, error) {
	idx, err := leader(ctx, n.c)
	if err != nil {
		return "", err
	}
	if err := fatal(func() { n.c.Kill(idx) }); err != nil {
		return "", err
	}
	n.killed, n.active = idx, true
	return "SIGKILL leader " + n.c.ID(idx), nil
}

func (n *killLeader) Heal(context.Context) error {
	if !n.active {
		return nil
	}
	n.active = false
	return fatal(func() { n.c.Start(n.killed) })
}

type pauseLeader struct {
	c      *testcluster.Cluster
	paused int
	active bool
}

func (n *pauseLeader) Name() string { return "pause-leader" }

func (n *pauseLeader) Inject(ctx context.Context) (string, error) {
	idx, err := leader(ctx, n.c)
	if err != nil {
		return "", err
	}
	if err := fatal(func() { n.c.Pause(idx) }); err != nil {
		return "", err
	}
	n.paused, n.active = idx, true
	return "SIGSTOP leader " + n.c.ID(idx), nil
}

func (n *pauseLeader) Heal(context.Context) error {
	if !n.active {
		return nil
	}
	n.active = false
	return fatal(func() { n.c.Resume(n.paused) })
}

// iptablesComment marks every rule the harness adds, so that leftovers
// can be found: iptables -S INPUT | grep kumoi-jepsen.
const iptablesComment = "kumoi-jepsen"

type partitionLeader struct {
	c     *testcluster.Cluster
	mu    sync.Mutex
	rules [][]string // rule specs added to INPUT
}

func (n *partitionLeader) Name() string { return "partition-leader" }

func (n *partitionLeader) Inject(ctx context.Context) (string, error) {
	idx, err := leader(ctx, n.c)
	if err != nil {
		return "", err
	}
	ip := n.c.IP(idx)
	for _, dir := range []string{"-s", "-d"} {
		spec := []string{"INPUT", dir, ip + "/32", "-m", "comment", "--comment", iptablesComment, "-j", "DROP"}
		if err := iptables(ctx, "-I", spec); err != nil {
			return "", errors.Join(err, n.Heal(ctx))
		}
		n.mu.Lock()
		n.rules = append(n.rules, spec)
		n.mu.Unlock()
	}
	return fmt.Sprintf("isolate leader %s (%s) with iptables DROP on INPUT", n.c.ID(idx), ip), nil
}

func (n *partitionLeader) Heal(ctx context.Context) error {
	n.mu.Lock()
	rules := n.rules
	n.rules = nil
	n.mu.Unlock()
	var errs []error
	for _, spec := range rules {
		errs = append(errs, iptables(context.WithoutCancel(ctx), "-D", spec))
	}
	return errors.Join(errs...)
}

func iptables(ctx context.Context, action string, spec []string) error {
	args := append([]string{"-w", action}, spec...)
	out, err := exec.CommandContext(ctx, "iptables", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// HealthTimeout bounds the health checks around each fault.
var HealthTimeout = 15 * time.Second

// healthy waits until every node runs, is not paused, answers its status
// and names the same leader. It returns how long that took.
func healthy(ctx context.Context, c *testcluster.Cluster) (time.Duration, error) {
	start := time.Now()
	err := testcluster.Poll(ctx, HealthTimeout, func() (bool, error) {
		live := c.Live()
		if len(live) != c.N() {
			return false, fmt.Errorf("%d of %d nodes are live", len(live), c.N())
		}
		sts, errs := c.Statuses()
		for i, err := range errs {
			return false, fmt.Errorf("%s: %w", c.ID(i), err)
		}
		lead := ""
		for _, i := range live {
			st := sts[i]
			if st.LeaderID == "" || (lead != "" && st.LeaderID != lead) {
				return false, fmt.Errorf("no agreed leader (%s names %q)", c.ID(i), st.LeaderID)
			}
			lead = st.LeaderID
		}
		return true, nil
	})
	if err != nil {
		return time.Since(start), fmt.Errorf("cluster not healthy: %w", err)
	}
	return time.Since(start), nil
}
