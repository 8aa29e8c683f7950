package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kumoi/kumoi/internal/libvirtd"
)

// domainName is VM vm's libvirt domain (hypervisor/libvirt).
func domainName(vm string) string { return "kumoi-" + vm }

// sweepEvery paces domainWatch's reads of the daemons.
const sweepEvery = 100 * time.Millisecond

// readDaemon lists d's active domains, 5 s at most.
func readDaemon(d *libvirtd.Daemon) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.Active(ctx)
}

// readDaemons reads every daemon (keyed by its host) and returns, for each
// active domain, the hosts whose daemon runs it.
func readDaemons(daemons map[string]*libvirtd.Daemon) (map[string][]string, error) {
	on := map[string][]string{}
	for _, h := range slices.Sorted(maps.Keys(daemons)) {
		act, err := readDaemon(daemons[h])
		if err != nil {
			return nil, fmt.Errorf("libvirtd of %s: %w", h, err)
		}
		for _, dom := range act {
			on[dom] = append(on[dom], h)
		}
	}
	return on, nil
}

// domainWatch reads the daemons of a libvirtd BenchmarkHostFailover round
// directly, from just after the kill of the victim's worker until finish.
// Each sweep reads the other hosts' daemons first and the victim's last.
// While the victim's worker is dead nothing starts a domain on its daemon,
// so a domain that the victim's daemon shows active was active since the
// kill: when a sweep sees a VM's domain active on another daemon and then
// on the victim's, the VM ran twice at the instant of the first read.
type domainWatch struct {
	stop     chan struct{}
	fencedCh chan struct{} // closed once the victim's domains are seen stopped
	done     chan watchResult
	doubled  atomic.Int64 // sweeps that saw a double run so far
}

// watchResult is what a domainWatch saw; durations are from the kill.
type watchResult struct {
	// fenced: the end of the first read of the victim's daemon that
	// showed none of the moved VMs' domains active (0: none did).
	fenced time.Duration
	// lastSeen: the start of the last read that showed one active.
	lastSeen time.Duration
	// doubles: the VMs whose domain a sweep saw active on two daemons.
	doubles            map[string]*doubleRun
	sweeps, readErrors int
}

type doubleRun struct {
	hosts       []string
	first, last time.Duration // the sweeps that saw it, from the kill
	sweeps      int
}

func (r *watchResult) describeDoubles() string {
	var s []string
	for _, vm := range slices.Sorted(maps.Keys(r.doubles)) {
		d := r.doubles[vm]
		s = append(s, fmt.Sprintf("%s on %s in %d sweeps %d–%dms", vm, strings.Join(d.hosts, "+"), d.sweeps, d.first.Milliseconds(), d.last.Milliseconds()))
	}
	return strings.Join(s, "; ")
}

// watchDomains starts watching the daemons after victim's worker was
// killed at kill. names are all the VMs; moved those that ran on victim.
func watchDomains(daemons map[string]*libvirtd.Daemon, victim string, names, moved []string, kill time.Time) *domainWatch {
	w := &domainWatch{stop: make(chan struct{}), fencedCh: make(chan struct{}), done: make(chan watchResult, 1)}
	var others []string
	for _, h := range slices.Sorted(maps.Keys(daemons)) {
		if h != victim {
			others = append(others, h)
		}
	}
	movedDoms := map[string]bool{}
	for _, n := range moved {
		movedDoms[domainName(n)] = true
	}
	go func() {
		res := watchResult{doubles: map[string]*doubleRun{}}
		tick := time.NewTicker(sweepEvery)
		defer tick.Stop()
		for {
			on, doubled := map[string][]string{}, false
			for _, h := range others {
				act, err := readDaemon(daemons[h])
				if err != nil {
					res.readErrors++
					continue
				}
				for _, dom := range act {
					on[dom] = append(on[dom], h)
				}
			}
			first := time.Now()
			act, err := readDaemon(daemons[victim])
			switch {
			case err != nil:
				res.readErrors++
			default:
				running := false
				for _, dom := range act {
					on[dom] = append(on[dom], victim)
					running = running || movedDoms[dom]
				}
				if running {
					res.lastSeen = first.Sub(kill)
				} else if res.fenced == 0 {
					res.fenced = time.Since(kill)
					close(w.fencedCh)
				}
			}
			for _, n := range names {
				hosts := on[domainName(n)]
				if len(hosts) < 2 {
					continue
				}
				at := first.Sub(kill)
				d := res.doubles[n]
				if d == nil {
					d = &doubleRun{hosts: hosts, first: at}
					res.doubles[n] = d
				}
				d.last = at
				d.sweeps++
				doubled = true
			}
			if doubled {
				w.doubled.Add(1)
			}
			res.sweeps++
			select {
			case <-w.stop:
				w.done <- res
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// finish waits until the victim's domains are seen stopped or until
// deadline, whichever comes first, stops the watch and returns what it
// saw.
func (w *domainWatch) finish(deadline time.Time) watchResult {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.fencedCh:
	case <-t.C:
	}
	close(w.stop)
	return <-w.done
}
