package jepsen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kumoi/kumoi/hypervisor"
)

// The placement workload's libvirtd mode (--worker-driver libvirtd) runs
// one libvirt daemon per worker host (internal/libvirtd: libvirt's test
// driver served on the daemon's own unix socket), so that the domains
// live in the daemon and outlive their worker, as QEMU guests do under a
// real libvirtd. The checker does not take the workers' word for what
// runs where: a poller reads every daemon's active domains all run long
// (DomainSample), and checkDaemonDoubleRuns finds, from those reads alone,
// a VM whose domain was certainly active on two daemons at one instant.
//
// Soundness. A read is a window [Start, End] (the time before the
// request was sent, the time its whole answer had arrived); the list it
// returns held at some instant of the window, which one is unknown. The
// test driver gives a domain a new id each time it starts (its
// nextDomID counter, never reused while the daemon runs: checked by
// TestDaemonNewIDPerStart), so when the same (daemon, domain, id) is seen
// active in reads W1 and W2, it is the same activation, and an activation
// is one unbroken interval: the domain was active throughout [End(W1),
// Start(W2)]. Each activation's certain span goes from the End of its
// first read to the Start of its last; an activation seen once, or in
// overlapping reads, has no certain span. Two certain spans of one VM's
// domain on two daemons that overlap are a double run that really
// happened, whatever the reads missed in between (a failed or slow read
// only shortens what is certain; it never makes anything certain). So is
// a read of one daemon that saw the domain while lying wholly within the
// other daemon's certain span: at the instant that read reflects, both
// were active (this catches activations too short for two reads).

// DaemonPollInterval is the pause between two reads of one daemon;
// DaemonReadTimeout bounds one read (a paused daemon answers nothing: the
// reading virsh is killed and the read is an error).
var (
	DaemonPollInterval = 150 * time.Millisecond
	DaemonReadTimeout  = 2 * time.Second
)

// ActiveDomain is a domain a read found active (running or paused).
type ActiveDomain struct {
	Name string `json:"name"`
	ID   int    `json:"id"`
}

// DomainSample is one read of a daemon's active domains: the list held at
// some instant between Start and End. Err is set when the read failed
// (timed out, the daemon did not answer): Domains is then empty and says
// nothing.
type DomainSample struct {
	Host    string         `json:"host"`
	Start   time.Time      `json:"start"`
	End     time.Time      `json:"end"`
	Domains []ActiveDomain `json:"domains,omitempty"`
	Err     string         `json:"error,omitempty"`
}

// DomainSpan is one activation of a domain on a daemon (host), as the
// reads saw it: seen Reads times, first in a read that ended at From, last
// in one that started at To. When From < To the domain was certainly
// active throughout [From, To]; FirstStart and LastEnd bound the reads
// that saw it (it may have been active a little before and after).
type DomainSpan struct {
	Host       string    `json:"host"`
	Domain     string    `json:"domain"`
	ID         int       `json:"id"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	FirstStart time.Time `json:"first_read_start"`
	LastEnd    time.Time `json:"last_read_end"`
	Reads      int       `json:"reads"`

	windows [][2]time.Time // every read that saw it: [start, end]
}

// Certain reports whether the span proves the domain active for a
// positive time (From before To).
func (s DomainSpan) Certain() bool { return s.From.Before(s.To) }

// domainSpans turns reads into the activations they saw: one span per
// (host, domain, id), from the end of its first read to the start of its
// last. Failed reads are ignored. The spans are sorted by host, domain
// and From.
func domainSpans(samples []DomainSample) []DomainSpan {
	type key struct {
		host, name string
		id         int
	}
	spans := map[key]*DomainSpan{}
	for _, s := range samples {
		if s.Err != "" {
			continue
		}
		for _, d := range s.Domains {
			k := key{s.Host, d.Name, d.ID}
			sp := spans[k]
			if sp == nil {
				spans[k] = &DomainSpan{Host: s.Host, Domain: d.Name, ID: d.ID, From: s.End, To: s.Start,
					FirstStart: s.Start, LastEnd: s.End, Reads: 1, windows: [][2]time.Time{{s.Start, s.End}}}
				continue
			}
			sp.Reads++
			sp.windows = append(sp.windows, [2]time.Time{s.Start, s.End})
			if s.End.Before(sp.From) {
				sp.From, sp.FirstStart = s.End, s.Start
			}
			if s.Start.After(sp.To) {
				sp.To, sp.LastEnd = s.Start, s.End
			}
		}
	}
	out := make([]DomainSpan, 0, len(spans))
	for _, sp := range spans {
		out = append(out, *sp)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		return a.From.Before(b.From)
	})
	return out
}

// DaemonDoubleRun is a domain certainly active on two daemons at once:
// throughout [From, To] when Instant is false (A's and B's certain spans
// overlap there), or at some instant of the read window [From, To] when
// Instant is true (a read of one daemon saw it while the other's certain
// span covered the whole read).
type DaemonDoubleRun struct {
	Domain   string
	A, B     DomainSpan
	From, To time.Time
	Instant  bool
}

// daemonDoubleRuns finds, for each domain name, the pairs of activations
// on different hosts that were certainly active at one instant: their
// certain spans overlap for a positive time, or one was seen by a read
// that lies wholly within the other's certain span.
func daemonDoubleRuns(spans []DomainSpan) []DaemonDoubleRun {
	byName := map[string][]DomainSpan{}
	for _, sp := range spans {
		byName[sp.Domain] = append(byName[sp.Domain], sp)
	}
	var out []DaemonDoubleRun
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		list := byName[name]
		for i := range list {
			for j := i + 1; j < len(list); j++ {
				a, b := list[i], list[j]
				if a.Host == b.Host {
					continue
				}
				if b.Host < a.Host {
					a, b = b, a
				}
				if d, ok := doubleRun(a, b); ok {
					out = append(out, d)
				}
			}
		}
	}
	return out
}

// doubleRun says whether activations a and b (of one domain, on two
// hosts) were certainly active at one instant, and when.
func doubleRun(a, b DomainSpan) (DaemonDoubleRun, bool) {
	d := DaemonDoubleRun{Domain: a.Domain, A: a, B: b}
	if a.Certain() && b.Certain() {
		d.From, d.To = a.From, a.To
		if b.From.After(d.From) {
			d.From = b.From
		}
		if b.To.Before(d.To) {
			d.To = b.To
		}
		if d.From.Before(d.To) {
			return d, true
		}
	}
	// A read of one inside the other's certain span: at the instant
	// that read reflects, both were active.
	for _, p := range [][2]DomainSpan{{a, b}, {b, a}} {
		x, y := p[0], p[1]
		if !y.Certain() {
			continue
		}
		for _, w := range x.windows {
			if !w[0].Before(y.From) && !w[1].After(y.To) {
				d.From, d.To, d.Instant = w[0], w[1], true
				return d, true
			}
		}
	}
	return d, false
}

// DaemonTarget is a daemon the poller reads: the host (worker) it serves
// and its URI.
type DaemonTarget struct {
	Host string
	URI  string
}

// domainPoller reads every daemon's active domains every
// DaemonPollInterval, each daemon in its own goroutine through its own
// interactive virsh (one process per daemon, one request per read).
type domainPoller struct {
	every, timeout time.Duration // DaemonPollInterval, DaemonReadTimeout at the start
	stop           chan struct{}
	wg             sync.WaitGroup

	mu      sync.Mutex
	samples []DomainSample
}

// startDomainPoller starts reading the daemons.
func startDomainPoller(targets []DaemonTarget) *domainPoller {
	p := &domainPoller{every: DaemonPollInterval, timeout: DaemonReadTimeout, stop: make(chan struct{})}
	for _, t := range targets {
		p.wg.Add(1)
		go p.loop(t)
	}
	return p
}

func (p *domainPoller) loop(t DaemonTarget) {
	defer p.wg.Done()
	sh := &virshShell{uri: t.URI}
	defer sh.close()
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for {
		start := time.Now()
		doms, err := sh.list(p.timeout)
		s := DomainSample{Host: t.Host, Start: start, End: time.Now(), Domains: doms}
		if err != nil {
			s.Domains, s.Err = nil, err.Error()
		}
		p.mu.Lock()
		p.samples = append(p.samples, s)
		p.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

// Stop stops the reads (waiting for those in flight, each bounded by
// the read timeout) and returns every sample.
func (p *domainPoller) Stop() []DomainSample {
	if p == nil {
		return nil
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.samples
}

// virshShell is an interactive `virsh -c URI` whose connection serves
// every read: a read writes `list` and an `echo` of a marker, and waits
// for the marker. A read that times out kills the process; the next read
// starts a new one.
type virshShell struct {
	uri   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   chan []byte
	buf   []byte
	n     int
}

func (v *virshShell) start() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command("virsh", "-q", "-c", v.uri)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		r.Close()
		w.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return err
	}
	w.Close()
	out := make(chan []byte, 16)
	go func() {
		defer r.Close()
		defer close(out)
		for {
			b := make([]byte, 4096)
			n, err := r.Read(b)
			if n > 0 {
				out <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	v.cmd, v.stdin, v.out, v.buf = cmd, stdin, out, nil
	return nil
}

func (v *virshShell) close() {
	if v.cmd == nil {
		return
	}
	v.stdin.Close()
	_ = v.cmd.Process.Kill()
	_ = v.cmd.Wait()
	for range v.out { // until the reader has seen the pipe close
	}
	v.cmd = nil
}

// list reads the active domains (virsh list: id, name, state).
func (v *virshShell) list(timeout time.Duration) ([]ActiveDomain, error) {
	if v.cmd == nil {
		if err := v.start(); err != nil {
			return nil, err
		}
	}
	v.n++
	marker := fmt.Sprintf("@@kumoi-jepsen-%d@@", v.n)
	if _, err := fmt.Fprintf(v.stdin, "list\necho %s\n", marker); err != nil {
		v.close()
		return nil, fmt.Errorf("virsh: %w", err)
	}
	// The marker's output follows the newline that ends virsh's echo
	// of the command ("virsh # echo MARKER\n"), and has no newline of
	// its own.
	want := []byte("\n" + marker)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if i := bytes.Index(v.buf, want); i >= 0 {
			text := string(v.buf[:i])
			v.buf = append([]byte(nil), v.buf[i+len(want):]...)
			return parseVirshList(text)
		}
		select {
		case b, ok := <-v.out:
			if !ok {
				v.close()
				return nil, fmt.Errorf("virsh exited: %s", truncateString(strings.TrimSpace(string(v.buf)), 300))
			}
			v.buf = append(v.buf, b...)
		case <-deadline.C:
			v.close()
			return nil, fmt.Errorf("no answer within %s", timeout)
		}
	}
}

// parseVirshList parses what an interactive virsh printed for `list`
// (its prompts and echoed commands included): one " ID NAME STATE" line
// per active domain. Any "error:" line fails the read.
func parseVirshList(text string) ([]ActiveDomain, error) {
	var out []ActiveDomain
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if i := strings.LastIndex(line, "virsh # "); i >= 0 {
			line = strings.TrimSpace(line[i+len("virsh # "):])
		}
		if line == "" || line == "list" || strings.HasPrefix(line, "echo ") {
			continue
		}
		if strings.HasPrefix(line, "error") {
			return nil, errors.New("virsh: " + line)
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("virsh list: unexpected line %q", line)
		}
		id, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("virsh list: unexpected line %q", line)
		}
		out = append(out, ActiveDomain{Name: f[1], ID: id})
	}
	return out, nil
}

// kumoiDomain reports whether a daemon's domain is one of Kumoi's (the
// test driver's own "test" domain is not).
func kumoiDomain(name string) bool { return strings.HasPrefix(name, hypervisor.DomainPrefix) }

// daemonSummary describes the reads, for the notes.
func daemonSummary(samples []DomainSample, spans []DomainSpan) string {
	reads, failed := map[string]int{}, map[string]int{}
	var longest time.Duration
	for _, s := range samples {
		reads[s.Host]++
		if s.Err != "" {
			failed[s.Host]++
			continue
		}
		longest = max(longest, s.End.Sub(s.Start))
	}
	var parts []string
	for _, h := range slices.Sorted(maps.Keys(reads)) {
		parts = append(parts, fmt.Sprintf("%s %d (%d failed)", h, reads[h], failed[h]))
	}
	certain := 0
	for _, sp := range spans {
		if sp.Certain() {
			certain++
		}
	}
	return fmt.Sprintf("daemon reads (every %s, %s timeout): %s; longest successful read %s; %d domain activations seen, %d with a certain span",
		DaemonPollInterval, DaemonReadTimeout, strings.Join(parts, ", "), longest.Round(time.Millisecond), len(spans), certain)
}
