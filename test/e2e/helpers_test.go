package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// Timeouts of the tests (stretched ×3 under CI by testcluster).
const (
	leaderTimeout  = 30 * time.Second // a cluster starts or re-elects
	convergeWithin = 30 * time.Second // a restarted node catches up
	writeDeadline  = 20 * time.Second // a write goes through, retrying
	requestTimeout = 5 * time.Second  // one HTTP request
)

func newCluster(t *testing.T, opts testcluster.Options) *testcluster.Cluster {
	t.Helper()
	return testcluster.New(t, opts)
}

func httpClient() *http.Client { return testcluster.NewHTTPClient(16, requestTimeout) }

// createBody is a POST /v1/vms body.
func createBody(name string, labels map[string]string, cpus int) []byte {
	b, err := json.Marshal(map[string]any{
		"name":   name,
		"labels": labels,
		"spec":   map[string]any{"cpus": cpus, "memory_mib": 64},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func do(hc *http.Client, method, url string, body []byte) (*testcluster.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	return testcluster.Do(ctx, hc, method, url, body)
}

// ledger records the writes of a test: which creates were acknowledged
// (201, with the object the server returned) and which names were ever
// sent. A create that was sent but not acknowledged may or may not have
// happened; an object with a name that was never sent must not exist.
type ledger struct {
	mu        sync.Mutex
	acked     map[string]*resource.Object
	attempted map[string]bool
}

func newLedger() *ledger {
	return &ledger{acked: map[string]*resource.Object{}, attempted: map[string]bool{}}
}

func (l *ledger) attempt(name string) {
	l.mu.Lock()
	l.attempted[name] = true
	l.mu.Unlock()
}

func (l *ledger) ack(o *resource.Object) {
	l.mu.Lock()
	l.acked[o.Name] = o
	l.mu.Unlock()
}

func (l *ledger) numAcked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

var errGaveUp = errors.New("gave up")

// create sends POST /v1/vms for name through the live nodes in turn until
// it is acknowledged (201), or ctx ends. 503s and transport errors are
// retried (the outcome of such an attempt is unknown: the ledger keeps the
// name as attempted). A 409 after an unknown outcome means an earlier
// attempt did apply. Any other answer is an error. It is safe to call from
// any goroutine.
func (l *ledger) create(ctx context.Context, c *testcluster.Cluster, hc *http.Client, name string, labels map[string]string) (*resource.Object, error) {
	body := createBody(name, labels, 1)
	l.attempt(name)
	unknown := false
	var last string
	for try := 0; ; try++ {
		urls := c.LiveURLs()
		if len(urls) == 0 {
			return nil, errors.New("no live node")
		}
		url := urls[try%len(urls)] + "/v1/vms"
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := testcluster.Do(rctx, hc, http.MethodPost, url, body)
		cancel()
		switch {
		case err != nil:
			unknown = true
			last = err.Error()
		case r.Status == http.StatusCreated:
			var o resource.Object
			if err := r.Decode(&o); err != nil {
				return nil, err
			}
			l.ack(&o)
			return &o, nil
		case r.Status == http.StatusConflict && unknown:
			return nil, nil // an earlier attempt applied; not acknowledged
		case r.Status == http.StatusServiceUnavailable || r.Status == http.StatusGatewayTimeout:
			unknown = true // a forwarder's 503 may follow a write that applied
			last = r.String()
		default:
			return nil, fmt.Errorf("POST %s %s: unexpected %s", url, name, r)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w on %s after %d attempts: %s", errGaveUp, name, try+1, last)
		case <-time.After(20 * time.Millisecond): // back off between attempts
		}
	}
}

// mustCreate creates name, retrying until writeDeadline, and fails the test
// unless the create is acknowledged.
func (l *ledger) mustCreate(t *testing.T, c *testcluster.Cluster, hc *http.Client, name string, labels map[string]string) *resource.Object {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Stretch(writeDeadline))
	defer cancel()
	o, err := l.create(ctx, c, hc, name, labels)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if o == nil {
		t.Fatalf("create %s: applied but never acknowledged", name)
	}
	return o
}

// list returns GET /v1/vms from url (local state with stale).
func list(hc *http.Client, url string, stale bool) ([]*resource.Object, error) {
	u := url + "/v1/vms"
	if stale {
		u += "?stale=true"
	}
	var objs []*resource.Object
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	err := testcluster.GetJSON(ctx, hc, u, &objs)
	return objs, err
}

// listLinearizable lists through any live node, retrying 503s until the
// deadline.
func listLinearizable(t *testing.T, c *testcluster.Cluster, hc *http.Client) []*resource.Object {
	t.Helper()
	var objs []*resource.Object
	testcluster.WaitFor(t, writeDeadline, "a linearizable list", func() (bool, error) {
		var lastErr error
		for _, u := range c.LiveURLs() {
			var err error
			if objs, err = list(hc, u, false); err == nil {
				return true, nil
			}
			lastErr = err
		}
		return false, lastErr
	})
	return objs
}

// key is what must survive of an object: everything but the status, which
// the system may rewrite.
type key struct {
	ID          string
	Labels      string
	Spec        string
	CreateIndex uint64
	ModifyIndex uint64
}

func keyOf(o *resource.Object) key {
	labels := make([]string, 0, len(o.Labels))
	for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
		labels = append(labels, k+"="+o.Labels[k])
	}
	return key{ID: o.ID, Labels: strings.Join(labels, ","), Spec: string(o.Spec), CreateIndex: o.CreateIndex, ModifyIndex: o.ModifyIndex}
}

type objSet map[string]key

func setOf(objs []*resource.Object) objSet {
	s := objSet{}
	for _, o := range objs {
		s[o.Name] = keyOf(o)
	}
	return s
}

// diff describes how got differs from want, or "" if it does not.
func diff(want, got objSet) string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[n]
		switch {
		case !ok:
			out = append(out, "missing "+n)
		case g != want[n]:
			out = append(out, fmt.Sprintf("%s differs: got %+v, want %+v", n, g, want[n]))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[n]; !ok {
			out = append(out, "unexpected "+n)
		}
	}
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("… and %d more", len(out)-10))
	}
	return strings.Join(out, "; ")
}

// waitSameEverywhere polls until every live node's local state (?stale)
// equals the linearizable state and every node has the same commit,
// applied and last log index; it returns that state.
func waitSameEverywhere(t *testing.T, c *testcluster.Cluster, hc *http.Client) objSet {
	t.Helper()
	c.WaitConverged(convergeWithin)
	want := setOf(listLinearizable(t, c, hc))
	testcluster.WaitFor(t, convergeWithin, "every node's local state to equal the leader's", func() (bool, error) {
		for _, i := range c.Live() {
			objs, err := list(hc, c.URL(i), true)
			if err != nil {
				return false, fmt.Errorf("%s: %w", c.ID(i), err)
			}
			if d := diff(want, setOf(objs)); d != "" {
				return false, fmt.Errorf("%s differs from the leader: %s", c.ID(i), d)
			}
		}
		return true, nil
	})
	return want
}

// checkLedger checks a node's objects against the ledger: every
// acknowledged create is there as acknowledged (same id and create index),
// and nothing is there that was never sent.
func checkLedger(t *testing.T, who string, l *ledger, got objSet) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var problems []string
	for _, n := range slices.Sorted(maps.Keys(l.acked)) {
		o := l.acked[n]
		g, ok := got[n]
		switch {
		case !ok:
			problems = append(problems, "acknowledged "+n+" is missing")
		case g.ID != o.ID || g.CreateIndex != o.CreateIndex:
			problems = append(problems, fmt.Sprintf("acknowledged %s has id %s index %d, acknowledged as id %s index %d", n, g.ID, g.CreateIndex, o.ID, o.CreateIndex))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(got)) {
		if !l.attempted[n] {
			problems = append(problems, n+" was never written")
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Errorf("%s: %d problems: %s", who, len(problems), strings.Join(problems, "; "))
	}
}

// wantAPIError checks r's status, its JSON error code (one of codes) and,
// if not empty, that the field or message names mention.
func wantAPIError(t *testing.T, what string, r *testcluster.Response, status int, codes []string, mention string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %s, want %d", what, r, status)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	e := r.APIError()
	if e == nil {
		t.Errorf("%s: body %q is not a JSON error", what, r.Body)
		return
	}
	if !slices.Contains(codes, e.Code) {
		t.Errorf("%s: code %q, want one of %v (%s)", what, e.Code, codes, e.Message)
	}
	if e.Message == "" {
		t.Errorf("%s: empty error message", what)
	}
	if mention != "" && e.Field != mention && !strings.Contains(e.Message, mention) {
		t.Errorf("%s: error %+v does not name %q", what, *e, mention)
	}
}

// cliOf runs the kumoi binary against c's controllers, with the management
// token (testcluster.CLIEnv): kumoi returns its combined output and error,
// must fails the test on an error and returns the output.
func cliOf(t *testing.T, c *testcluster.Cluster) (kumoi func(args ...string) (string, error), must func(args ...string) string) {
	env := testcluster.CLIEnv(append(os.Environ(), "KUMOI_ADDR="+strings.Join(c.URLs(), ",")))
	kumoi = func(args ...string) (string, error) {
		cmd := exec.Command(c.Bin(), args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	must = func(args ...string) string {
		t.Helper()
		out, err := kumoi(args...)
		if err != nil {
			t.Fatalf("kumoi %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	return kumoi, must
}
