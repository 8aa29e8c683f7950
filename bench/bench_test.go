package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// Budgets of one creates run: whichever comes first.
const (
	maxCreates = 200_000
	// KUMOI_BENCH_DURATION overrides the duration (a Go duration).
	defaultDuration = 10 * time.Second
)

func runDuration(b *testing.B) time.Duration {
	if s := os.Getenv("KUMOI_BENCH_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("KUMOI_BENCH_DURATION=%q is not a positive duration", s)
		}
		return d
	}
	return defaultDuration
}

// createBody is a POST /v1/vms body for name.
func createBody(name string) []byte {
	return []byte(`{"name":"` + name + `","labels":{"bench":"creates"},"spec":{"cpus":1,"memory_mib":64}}`)
}

// createsResult is what one creates run measured.
type createsResult struct {
	acked    int
	failed   int
	elapsed  time.Duration
	lat      []time.Duration // of acknowledged creates, sorted
	firstErr string
}

func (r *createsResult) perSecond() float64 { return float64(r.acked) / r.elapsed.Seconds() }

// percentile of the sorted latencies, in milliseconds.
func (r *createsResult) percentile(p float64) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat)-1) * p)
	return float64(r.lat[i]) / float64(time.Millisecond)
}

func (r *createsResult) report(b *testing.B) {
	b.ReportMetric(r.perSecond(), "creates/s")
	b.ReportMetric(r.percentile(0.50), "p50-ms")
	b.ReportMetric(r.percentile(0.99), "p99-ms")
	b.ReportMetric(float64(r.failed), "errors")
	b.ReportMetric(0, "ns/op") // one op is a whole run; meaningless
	b.Logf("%d creates in %s (%.0f/s), %d failed; latency p50 %.2f ms, p99 %.2f ms, max %.2f ms",
		r.acked, r.elapsed.Round(time.Millisecond), r.perSecond(), r.failed,
		r.percentile(0.5), r.percentile(0.99), r.percentile(1))
	if r.firstErr != "" {
		b.Logf("first error: %s", r.firstErr)
	}
}

// runCreates has clients goroutines POST /v1/vms with unique names to
// targets (client k uses targets[k%len]) until d passes or maxCreates are
// sent.
func runCreates(hc *http.Client, targets []string, clients int, d time.Duration, prefix string) *createsResult {
	return runCreatesOf(hc, targets, clients, d, prefix, createBody)
}

// runCreatesOf is runCreates with the bodies body(name) makes.
func runCreatesOf(hc *http.Client, targets []string, clients int, d time.Duration, prefix string, body func(name string) []byte) *createsResult {
	return runWrites(clients, d, func(k, seq int) error {
		url := targets[k%len(targets)] + "/v1/vms"
		r, err := testcluster.Do(context.Background(), hc, http.MethodPost, url, body(fmt.Sprintf("%s-%d-%d", prefix, k, seq)))
		if err != nil {
			return err
		}
		if r.Status != http.StatusCreated {
			return errors.New(r.String())
		}
		return nil
	})
}

// benchCluster starts a 3-controller cluster of real processes (fsync on,
// the default) and waits until it has a leader that answers writes. A
// secure cluster runs with ACLs (every request carries the harness's
// management token) and TLS (HTTPS, mutual-TLS Raft); the plain one with
// neither (--acl=false, plain TCP).
func benchCluster(b *testing.B, secure bool) (*testcluster.Cluster, *http.Client) {
	b.Helper()
	opts := testcluster.Options{LogLevel: "info", TLS: secure}
	if !secure {
		opts.ControllerArgs = []string{"--acl=false"}
	}
	c := testcluster.New(b, opts)
	hc := testcluster.NewHTTPClient(256, 30*time.Second)
	b.Cleanup(hc.CloseIdleConnections)
	leader, _ := c.WaitLeader(30 * time.Second)
	warmUp(b, hc, c.URL(leader))
	return c, hc
}

// warmUp waits until the leader acknowledges writes.
func warmUp(b *testing.B, hc *http.Client, url string) {
	b.Helper()
	n := 0
	testcluster.WaitFor(b, 30*time.Second, "the leader to take writes", func() (bool, error) {
		n++
		r, err := testcluster.Do(context.Background(), hc, http.MethodPost, url+"/v1/vms", createBody("warmup-"+strconv.Itoa(n)))
		if err != nil {
			return false, err
		}
		return r.Status == http.StatusCreated, errors.New(r.String())
	})
}

// BenchmarkCreates measures POST /v1/vms on a 3-node cluster of real
// processes with fsync on: creates/s and latency percentiles at 1, 16 and
// 128 concurrent clients sending to the leader, and at 128 clients sending
// to the followers (which forward to the leader), without ACLs and TLS;
// then the same 128-client rows with ACLs and TLS on (secure). Each
// sub-benchmark gets a fresh cluster, so that its numbers do not depend on
// how many objects the ones before it left behind.
func BenchmarkCreates(b *testing.B) {
	d := runDuration(b)
	for _, tc := range []struct {
		name      string
		prefix    string // of the object names
		clients   int
		followers bool
		secure    bool // ACLs and TLS on
	}{
		{"clients=1", "l1", 1, false, false},
		{"clients=16", "l16", 16, false, false},
		{"clients=128", "l128", 128, false, false},
		{"clients=128,via=followers", "f128", 128, true, false},
		{"clients=1,secure", "s1", 1, false, true},
		{"clients=128,secure", "s128", 128, false, true},
		{"clients=128,via=followers,secure", "sf128", 128, true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, hc := benchCluster(b, tc.secure)
			leader, _ := c.WaitLeader(30 * time.Second)
			targets := []string{c.URL(leader)}
			if tc.followers {
				targets = nil
				for i := range c.N() {
					if i != leader {
						targets = append(targets, c.URL(i))
					}
				}
			}
			for run := range b.N {
				res := runCreates(hc, targets, tc.clients, d, fmt.Sprintf("%s-%d", tc.prefix, run))
				if run == b.N-1 {
					res.report(b)
				}
			}
			if l, _ := c.Leader(); l != leader {
				b.Logf("note: leadership moved during the run (%s → %s)", c.ID(leader), c.ID(l))
			}
		})
	}
}

// BenchmarkFailover kills the leader (SIGKILL) ten times and measures, each
// time, how long from the kill until a client hammering every live node
// gets a write acknowledged. Between rounds the killed node is restarted
// and catches up.
func BenchmarkFailover(b *testing.B) {
	const rounds = 10
	c, _ := benchCluster(b, false)
	fast := testcluster.NewHTTPClient(16, 300*time.Millisecond)
	b.Cleanup(fast.CloseIdleConnections)
	for range b.N {
		var (
			times []time.Duration
			lines []string
		)
		for round := range rounds {
			leader, leaderID := c.WaitLeader(30 * time.Second)
			c.WaitConverged(30 * time.Second)
			start := time.Now()
			c.Kill(leader)
			ackAt, via, err := firstAck(fast, c.LiveURLs(), fmt.Sprintf("failover-%d", round), 30*time.Second)
			if err != nil {
				b.Fatalf("round %d: no write acknowledged after killing %s: %v", round, leaderID, err)
			}
			took := ackAt.Sub(start) // from the SIGKILL
			times = append(times, took)
			_, newID := c.WaitLeader(30 * time.Second)
			lines = append(lines, fmt.Sprintf("%s→%s %dms (via %s)", leaderID, newID, took.Milliseconds(), via[len("http://"):]))
			c.Start(leader)
			c.WaitLeader(30 * time.Second)
		}
		c.WaitConverged(30 * time.Second)
		slices.Sort(times)
		p50 := times[len(times)/2-1+len(times)%2] // lower median
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		var sum time.Duration
		for _, t := range times {
			sum += t
		}
		b.ReportMetric(ms(p50), "p50-ms")
		b.ReportMetric(ms(times[len(times)-1]), "max-ms")
		b.ReportMetric(ms(sum/time.Duration(len(times))), "mean-ms")
		b.ReportMetric(0, "ns/op")
		// One line: the benchmark framework cuts long BENCH output.
		b.Logf("failover over %d kills: min %s p50 %s max %s; rounds: %s", rounds, times[0].Round(time.Millisecond),
			p50.Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), strings.Join(lines, ", "))
	}
}

// firstAck hammers urls with creates (several clients per node, short
// timeouts, a short pause after each refusal) and returns when the first
// 201 arrived and which node gave it.
func firstAck(hc *http.Client, urls []string, prefix string, limit time.Duration) (time.Time, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	type ack struct {
		at  time.Time
		url string
	}
	acks := make(chan ack, 1)
	var wg sync.WaitGroup
	var n atomic.Int64
	const perNode = 4
	for k := range perNode * len(urls) {
		url := urls[k%len(urls)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				name := fmt.Sprintf("%s-%d", prefix, n.Add(1))
				r, err := testcluster.Do(ctx, hc, http.MethodPost, url+"/v1/vms", createBody(name))
				if err == nil && r.Status == http.StatusCreated {
					select {
					case acks <- ack{time.Now(), url}:
					default:
					}
					cancel()
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Millisecond): // back off after a refusal
				}
			}
		}()
	}
	wg.Wait()
	select {
	case a := <-acks:
		return a.at, a.url, nil
	default:
		return time.Time{}, "", fmt.Errorf("none within %s", limit)
	}
}

// profiling reports whether the benchmark binary writes a profile.
func profiling() bool {
	for _, name := range []string{"test.cpuprofile", "test.memprofile", "test.mutexprofile", "test.blockprofile"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return true
		}
	}
	return os.Getenv("KUMOI_BENCH_INPROCESS") != ""
}
