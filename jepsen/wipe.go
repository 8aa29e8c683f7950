package jepsen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// Findings collects what nemeses and the identity check find besides the
// history: notes and anomalies for the run's result, and the identity
// state (which controllers were wiped). Safe for concurrent use.
type Findings struct {
	Identity IdentityState

	mu        sync.Mutex
	notes     []string
	anomalies []Anomaly
}

// Note records a note of the run.
func (f *Findings) Note(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notes = append(f.notes, fmt.Sprintf(format, args...))
}

// Anomaly records an anomaly of the run.
func (f *Findings) Anomaly(a Anomaly) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.anomalies = append(f.anomalies, a)
}

// take returns and forgets the notes and anomalies recorded so far.
func (f *Findings) take() ([]string, []Anomaly) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, a := f.notes, f.anomalies
	f.notes, f.anomalies = nil, nil
	return n, a
}

// RefusalHint is what a controller started on an empty data directory
// with the id of a voter must say (docs/operations.md, "Node identity").
const RefusalHint = "kumoi cluster remove"

// RefusalTimeout bounds the wait for that refusal.
var RefusalTimeout = 30 * time.Second

// wipeRestart is the wipe-restart nemesis: a controller loses its disk and
// the operator replaces it as docs/operations.md says ("Replacing a failed
// controller"). Inject: SIGKILL a random controller (the leader when the
// draw falls on it), empty its data directory, and start it again as is
// (same command line, --bootstrap-expect included): while its id is a
// voter of the cluster it must refuse to start, exiting non-zero with a
// message that names `kumoi cluster remove` (else an anomaly
// wipe-restart). Heal: `kumoi cluster remove ID` (the CLI, against a live
// controller), then start it once more with the same command line on an
// empty data directory (emptied again when the draw says so, else as the
// refused start left it); the heal is done when it is a voter again with
// health ok (up to 60 s).
func (t *Target) wipeRestart(ctx context.Context) (string, healFunc, error) {
	c := t.C
	victim := t.Rng.Intn(c.N())
	rewipe := t.Rng.Intn(2) == 0
	id := c.ID(victim)
	role := "follower"
	if li, _ := c.Leader(); li == victim {
		role = "leader"
	}
	// Not cut short by the end of the run: a wiped controller must be
	// replaced, or the run ends with a controller short.
	wctx := context.WithoutCancel(ctx)
	heal := t.replaceHeal(victim, rewipe)
	if err := fatal(func() { c.Kill(victim) }); err != nil {
		return "", heal, err
	}
	if err := fatal(func() { c.Wipe(victim) }); err != nil {
		return "", heal, err
	}
	t.findings().Identity.Wiped(id)
	what := fmt.Sprintf("SIGKILL %s (the %s), wipe its data directory", id, role)
	// Started at once: after a leader's death, while the others elect a
	// new one. Nothing removes it from the configuration meanwhile, so
	// whether it was a voter can be asked after.
	start := time.Now()
	ref, err := startRefused(c, victim, RefusalTimeout)
	if err != nil {
		return what, heal, err
	}
	took := time.Since(start).Round(time.Millisecond)
	voter, verr := isVoter(wctx, t.Env, id)
	if verr != nil {
		return what, heal, fmt.Errorf("is %s still a voter? %w", id, verr)
	}
	switch {
	case ref.refused && ref.hint:
		what += fmt.Sprintf("; restart as is refused in %s (%s, names %q)", took, ref.how, RefusalHint)
		t.findings().Note("wipe-restart %s (the %s): the start on an empty data directory was refused in %s (%s), naming %q", id, role, took, ref.how, RefusalHint)
	case !voter:
		// Not a voter (nothing should have removed it): whatever it
		// did is allowed, but say so.
		what += fmt.Sprintf("; %s was not a voter, restart as is: %s", id, ref.describe())
		t.findings().Note("wipe-restart %s: not a voter of the configuration when started on an empty data directory: %s", id, ref.describe())
	default:
		what += "; restart as is NOT refused: " + ref.describe()
		t.findings().Anomaly(Anomaly{Type: "wipe-restart", Key: id,
			Detail: fmt.Sprintf("%s (the %s) was started with an empty data directory and its old command line while its id was a voter of the cluster: it must exit non-zero naming %q (docs/operations.md), but %s; its output: %s",
				id, role, RefusalHint, ref.describe(), ref.output)})
	}
	return what, heal, nil
}

// replaceHeal is wipe-restart's heal: the documented replacement of
// controller victim.
func (t *Target) replaceHeal(victim int, rewipe bool) healFunc {
	c := t.C
	id := c.ID(victim)
	return func(ctx context.Context) error {
		start := time.Now()
		how := "already running"
		if !c.Alive(victim) {
			if err := removeWithCLI(ctx, c, t.Env, victim); err != nil {
				return err
			}
			left := 0
			if ents, err := os.ReadDir(c.DataDir(victim)); err == nil {
				left = len(ents)
			}
			how = fmt.Sprintf("started on the data directory the refused start left (%d entries)", left)
			if rewipe {
				if err := fatal(func() { c.Wipe(victim) }); err != nil {
					return err
				}
				how = fmt.Sprintf("started on a data directory emptied again (the refused start had left %d entries)", left)
			}
			if err := fatal(func() { c.Start(victim) }); err != nil {
				return err
			}
		}
		if err := waitVoterOK(ctx, t.Env, c, id, 60*time.Second); err != nil {
			return fmt.Errorf("%s, %s: %w", id, how, err)
		}
		t.findings().Note("wipe-restart %s: kumoi cluster remove, %s, same command line: a voter with health ok %s after the heal began",
			id, how, time.Since(start).Round(time.Millisecond))
		return nil
	}
}

// refusal is how a start that should be refused ended.
type refusal struct {
	refused bool   // exited with a non-zero status
	hint    bool   // its output names RefusalHint
	running bool   // still running after the timeout (then killed)
	how     string // exit status, or "still running after …"
	output  string // what it wrote (the end of it)
}

func (r refusal) describe() string {
	switch {
	case r.running:
		return r.how + " (killed)"
	case !r.refused:
		return "it " + r.how
	case !r.hint:
		return fmt.Sprintf("it exited (%s) without naming %q", r.how, RefusalHint)
	}
	return fmt.Sprintf("refused (%s)", r.how)
}

// startRefused starts controller i (not running) with its command line
// and waits up to timeout for it to exit; a node still running then is
// killed. It returns how it ended and what it wrote to its log.
func startRefused(c *testcluster.Cluster, i int, timeout time.Duration) (refusal, error) {
	var off int64
	if st, err := os.Stat(c.LogPath(i)); err == nil {
		off = st.Size()
	}
	if err := fatal(func() { c.StartExpectExit(i) }); err != nil {
		return refusal{}, err
	}
	var r refusal
	werr := c.Wait(i, timeout)
	if c.Alive(i) {
		r.running, r.how = true, fmt.Sprintf("still running after %s", testcluster.Stretch(timeout))
		if err := fatal(func() { c.Kill(i) }); err != nil {
			return r, err
		}
	} else if werr != nil {
		r.refused = true
		r.how = strings.TrimPrefix(werr.Error(), c.ID(i)+" exited with ")
	} else {
		r.how = "exited with status 0"
	}
	if f, err := os.Open(c.LogPath(i)); err == nil {
		if _, err := f.Seek(off, io.SeekStart); err == nil {
			b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
			r.output = string(b)
		}
		f.Close()
	}
	r.hint = strings.Contains(r.output, RefusalHint)
	if len(r.output) > 2000 {
		r.output = "…" + r.output[len(r.output)-2000:]
	}
	return r, nil
}

// isVoter reports whether the raft configuration, as a leader answers,
// has id as a voter (waiting up to 15 s for an answer: after the
// leader's death the others elect one first).
func isVoter(ctx context.Context, env *Env, id string) (bool, error) {
	voter := false
	err := testcluster.Poll(ctx, 15*time.Second, func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		cl, err := env.AnyClient().Cluster(cctx)
		if err != nil {
			return false, err
		}
		voter = false
		for _, s := range cl.Servers {
			if s.ID == id && s.Voter {
				voter = true
			}
		}
		return true, nil
	})
	return voter, err
}

// removeWithCLI runs `kumoi cluster remove ID` (the binary the nodes run)
// against a live controller other than victim, as an operator would,
// trying the live controllers in turn for up to 30 s (a leader may be
// being elected). A removal whose answer was lost counts if the
// configuration no longer has the server.
func removeWithCLI(ctx context.Context, c *testcluster.Cluster, env *Env, victim int) error {
	id := c.ID(victim)
	var last error
	k := 0
	err := testcluster.Poll(ctx, 30*time.Second, func() (bool, error) {
		var live []int
		for _, i := range c.Live() {
			if i != victim {
				live = append(live, i)
			}
		}
		if len(live) == 0 {
			return false, errors.New("no live controller to ask")
		}
		addr := c.URL(live[k%len(live)])
		k++
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, c.Bin(), "cluster", "remove", id, "--addr", addr, "--timeout", "10s")
		cmd.Env = testcluster.CLIEnv(os.Environ())
		if strings.HasPrefix(addr, "https://") {
			// A TLS run: the CLI verifies the controllers with the
			// test CA, as an operator gives theirs.
			ca, err := testcluster.CAPrefix()
			if err != nil {
				return false, err
			}
			cmd.Env = append(cmd.Env, "KUMOI_CACERT="+ca+".pem")
		}
		out, err := cmd.CombinedOutput()
		if err == nil {
			return true, nil
		}
		last = fmt.Errorf("kumoi cluster remove %s --addr %s: %v: %s", id, addr, err, strings.TrimSpace(string(out)))
		if removedFromConfig(cctx, env, id) {
			return true, nil
		}
		return false, last
	})
	if err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	return nil
}

// waitVoterOK waits until the raft configuration, as a leader answers,
// has every controller as a voter and id with health ok.
func waitVoterOK(ctx context.Context, env *Env, c *testcluster.Cluster, id string, timeout time.Duration) error {
	return testcluster.Poll(ctx, timeout, func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		cl, err := env.AnyClient().Cluster(cctx)
		if err != nil {
			return false, err
		}
		voters, ok := 0, false
		for _, s := range cl.Servers {
			if s.Voter && c.Index(s.ID) >= 0 {
				voters++
			}
			if s.ID == id && s.Voter && s.Health == resource.ServerOK {
				ok = true
			}
		}
		if voters != c.N() || !ok {
			return false, fmt.Errorf("%d of %d controllers are voters, %s voter with health ok: %v (%s)", voters, c.N(), id, ok, serverList(cl.Servers))
		}
		return true, nil
	})
}

// findings returns t.Findings, made on first use.
func (t *Target) findings() *Findings {
	t.findingsOnce.Do(func() {
		if t.Findings == nil {
			t.Findings = &Findings{}
		}
	})
	return t.Findings
}
