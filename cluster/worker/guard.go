package worker

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kumoi/kumoi/cluster/fenceguard"
)

// Fence guard modes (--fence-guard).
const (
	GuardOff      = "off"      // no guard: domains die with the worker (sim)
	GuardSpawn    = "spawn"    // start one detached if none answers
	GuardExternal = "external" // one runs on its own (a service unit)
)

// guardLink is the worker's side of its fence guard (package
// fenceguard): it renews the guard with every proof that the host is
// ready, and the worker starts a domain only once the guard holds a fresh
// proof, so that a domain never runs unguarded.
type guardLink struct {
	dir    string
	spawn  []string // the guard's command line (GuardSpawn)
	token  string   // the ACL token the spawned guard gets in KUMOI_TOKEN
	logger hclog.Logger

	mu        sync.Mutex
	conn      net.Conn
	r         *bufio.Scanner
	seq       uint64
	spawnedAt time.Time
	warnedAt  time.Time
}

// renewTimeout bounds one renewal: a guard that does not answer in time
// is as good as absent for this pass (nothing is started).
const renewTimeout = 300 * time.Millisecond

// renew sends rn and returns the guard's answer, connecting (and, in
// spawn mode, starting a guard) when needed.
func (l *guardLink) renew(rn fenceguard.Renewal) (fenceguard.Ack, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		if err := l.dial(); err != nil {
			return fenceguard.Ack{}, err
		}
	}
	l.seq++
	rn.Seq = l.seq
	ack, err := l.exchange(rn)
	if err != nil {
		l.conn.Close()
		l.conn = nil
		return ack, err
	}
	if ack.Error != "" {
		return ack, errors.New("the fence guard refused the renewal: " + ack.Error)
	}
	return ack, nil
}

func (l *guardLink) exchange(rn fenceguard.Renewal) (fenceguard.Ack, error) {
	var ack fenceguard.Ack
	b, err := json.Marshal(rn)
	if err != nil {
		return ack, err
	}
	_ = l.conn.SetDeadline(time.Now().Add(renewTimeout))
	if _, err := l.conn.Write(append(b, '\n')); err != nil {
		return ack, err
	}
	for l.r.Scan() {
		if err := json.Unmarshal(l.r.Bytes(), &ack); err != nil {
			return ack, err
		}
		if ack.Seq == rn.Seq {
			return ack, nil
		}
		// An answer to an earlier renewal that timed out: skip it.
	}
	if err := l.r.Err(); err != nil {
		return ack, err
	}
	return ack, errors.New("the fence guard closed the connection")
}

// dial connects to the guard's socket; in spawn mode it starts a guard
// when none answers (at most every 2 s).
func (l *guardLink) dial() error {
	c, err := net.DialTimeout("unix", fenceguard.SocketPath(l.dir), renewTimeout)
	if err == nil {
		l.conn, l.r = c, bufio.NewScanner(c)
		return nil
	}
	if l.spawn == nil {
		if time.Since(l.warnedAt) > 10*time.Second {
			l.warnedAt = time.Now()
			l.logger.Warn("no fence guard answers (--fence-guard external): this worker starts no VM until one does", "socket", fenceguard.SocketPath(l.dir), "error", err)
		}
		return err
	}
	if time.Since(l.spawnedAt) < 2*time.Second {
		return fmt.Errorf("waiting for the fence guard to start: %w", err)
	}
	l.spawnedAt = time.Now()
	if serr := l.start(); serr != nil {
		l.logger.Warn("cannot start the fence guard: this worker starts no VM until one runs", "command", l.spawn, "error", serr)
		return serr
	}
	return fmt.Errorf("started a fence guard: %w", err)
}

// start runs the guard detached: its own session, so that neither a
// signal to the worker's process group nor the worker's death reaches it.
func (l *guardLink) start() error {
	out, err := os.OpenFile(filepath.Join(l.dir, fenceguard.LogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(l.spawn[0], l.spawn[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	if l.token != "" {
		// In the environment, not on the command line (which any
		// local user can read).
		cmd.Env = append(os.Environ(), "KUMOI_TOKEN="+l.token)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	l.logger.Info("started a fence guard", "pid", cmd.Process.Pid, "log", filepath.Join(l.dir, fenceguard.LogFile))
	go func() { _ = cmd.Wait() }() // reaped while the worker lives
	return nil
}

func (l *guardLink) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
}

// renewGuard renews the guard after a pass's reads. proof is the start of
// the pass's host read on the boot-time clock when it showed the host
// ready or draining (0 otherwise). It returns whether this pass may start
// domains as far as the guard goes: no guard is configured, or the guard
// holds a proof at least as fresh as this one.
func (w *Worker) renewGuard(proof time.Duration) bool {
	if w.guard == nil {
		return true
	}
	ack, err := w.guard.renew(fenceguard.Renewal{
		Host:        w.cfg.NodeID,
		Cluster:     w.ClusterID(),
		Controllers: w.controllerAddrs(),
		Proof:       proof,
	})
	if err != nil {
		w.logger.Debug("fence guard renewal failed", "error", err)
		return false
	}
	if ack.Fence != nil {
		w.noteGuardFence(*ack.Fence)
	}
	return proof != 0 && ack.Proof >= proof
}

// noteGuardFence remembers the domains of a fence of the guard not seen
// before.
func (w *Worker) noteGuardFence(rec fenceguard.FenceRecord) {
	if rec.Seq <= w.guardFenceSeq {
		return
	}
	w.guardFenceSeq = rec.Seq
	for _, d := range rec.Domains {
		w.guardFenced[d] = rec
	}
}

// loadGuardFence reads the guard's latest fence from its record file. The
// guard writes it before it destroys the first domain, so a pass that
// lists domains and then loads it never takes the guard's destroy for
// one behind Kumoi's back (an acknowledgement may come too late: the
// worker paused between its renewal and its listing).
func (w *Worker) loadGuardFence() {
	if w.guard == nil {
		return
	}
	b, err := os.ReadFile(filepath.Join(w.guard.dir, fenceguard.RecordFile))
	if err != nil {
		return
	}
	var rec fenceguard.FenceRecord
	if json.Unmarshal(b, &rec) == nil {
		w.noteGuardFence(rec)
	}
}

// controllerAddrs are the alive controllers' API addresses, as gossip
// shows them.
func (w *Worker) controllerAddrs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var addrs []string
	for _, m := range w.ctrls.AliveControllers() {
		if m.Meta.API != "" {
			addrs = append(addrs, w.apiScheme()+"://"+m.Meta.API)
		}
	}
	return addrs
}

// apiScheme is the scheme of the controllers' APIs: https with TLS.
func (w *Worker) apiScheme() string {
	if w.cfg.tlsClient != nil {
		return "https"
	}
	return "http"
}

// newGuardLink sets up the link to the fence guard the configuration asks
// for (nil: none).
func newGuardLink(cfg *Config, logger hclog.Logger) (*guardLink, error) {
	switch cfg.FenceGuard {
	case GuardOff:
		return nil, nil
	case GuardSpawn:
		if len(cfg.GuardCommand) == 0 {
			return nil, errors.New("--fence-guard spawn: no command to start the guard with")
		}
	case GuardExternal:
	default:
		return nil, fmt.Errorf("--fence-guard %q: use spawn, external or off", cfg.FenceGuard)
	}
	dir := cfg.DataDir
	if dir == "" {
		return nil, fmt.Errorf("--fence-guard %s needs --data-dir: the guard keeps its socket there, and a restarted worker finds its guard there", cfg.FenceGuard)
	}
	if err := fenceguard.CheckDir(dir); err != nil {
		return nil, err
	}
	l := &guardLink{dir: dir, logger: logger.Named("guard-link")}
	if cfg.FenceGuard == GuardSpawn {
		l.spawn = cfg.GuardCommand
		l.token = cfg.Token
	}
	return l, nil
}
