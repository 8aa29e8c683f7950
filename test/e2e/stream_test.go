package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestSDKStreams: a Go SDK client with Config.Stream sends its writes over
// one request stream per controller (docs/api.md "Request streams"), over
// TLS, to a follower (which forwards them) and to the leader; the answers,
// errors included, are the ones HTTP gives; each request is checked with
// its own ACL token; reads go over HTTP; a controller that stops is failed
// over from as over HTTP.
func TestSDKStreams(t *testing.T) {
	c := newCluster(t, testcluster.Options{TLS: true})
	leader, _ := c.WaitLeader(leaderTimeout)
	follower := (leader + 1) % c.N()
	other := (leader + 2) % c.N()
	ca, err := testcluster.CAPrefix()
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := client.TLSConfigFromFiles(ca+".pem", "", "")
	if err != nil {
		t.Fatal(err)
	}
	newTokenClient := func(token string, addrs ...string) *client.Client {
		cl, err := client.New(client.Config{Addrs: addrs, Token: token, TLS: tlsCfg, Stream: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	newStreamClient := func(addrs ...string) *client.Client {
		return newTokenClient(testcluster.ManagementToken, addrs...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*writeDeadline)
	defer cancel()
	spec := resource.VMSpec{CPUs: 1, MemoryMiB: 64}

	// Many writes at once through a follower and through the leader.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for via, idx := range map[string]int{"follower": follower, "leader": leader} {
		cl := newStreamClient(c.URL(idx))
		for k := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("s-%s-%d", via, k)
				vm, err := cl.VMs().Create(ctx, name, spec, map[string]string{"via": via})
				if err == nil && (vm.Name() != name || vm.Object.CreateIndex == 0) {
					err = fmt.Errorf("created %s: answered %+v", name, vm.Object)
				}
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Each controller holds one stream from a client (the follower's own
	// to the leader is counted apart).
	for _, idx := range []int{follower, leader} {
		if v := metricValue(t, c.URL(idx), `kumoi_forward_streams{side="from_clients"}`); v != 1 {
			t.Errorf("%s: %v client streams, want 1", c.ID(idx), v)
		}
	}

	// Errors are the API's, as over HTTP.
	cl := newStreamClient(c.URL(follower))
	if _, err := cl.VMs().Create(ctx, "s-follower-0", spec, nil); !errors.Is(err, client.ErrConflict) {
		t.Errorf("a create of an existing name over a stream: %v, want a conflict", err)
	}
	var apiErr *client.APIError
	if _, err := cl.VMs().Create(ctx, "Bad Name", spec, nil); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Code != "invalid_argument" {
		t.Errorf("a bad name over a stream: %v, want 400 invalid_argument", err)
	}
	// Each request on a stream is checked with its own token: one that
	// may write only VMs labelled team=web.
	hc := httpClient()
	for _, w := range []struct {
		path string
		body any
	}{
		{"/v1/acl/policies", map[string]any{"name": "web-writers", "rules": []map[string]string{
			{"kind": "vm", "access": "write", "selector": "team=web"}}}},
		{"/v1/acl/tokens", map[string]any{"name": "web", "policies": []string{"web-writers"}}},
	} {
		b, err := json.Marshal(w.body)
		if err != nil {
			t.Fatal(err)
		}
		r, err := do(hc, http.MethodPost, c.URL(leader)+w.path, b)
		if err != nil || r.Status >= 300 {
			t.Fatalf("POST %s: %v %v", w.path, r, err)
		}
		if w.path == "/v1/acl/tokens" {
			var tok resource.ACLToken
			if err := r.Decode(&tok); err != nil {
				t.Fatal(err)
			}
			web := newTokenClient(tok.SecretID, c.URL(follower))
			if _, err := web.VMs().Create(ctx, "s-web", spec, map[string]string{"team": "web"}); err != nil {
				t.Fatalf("a permitted write over a stream: %v", err)
			}
			if _, err := web.VMs().Create(ctx, "s-db", spec, map[string]string{"team": "db"}); !errors.Is(err, client.ErrPermissionDenied) {
				t.Fatalf("a forbidden write over a stream: %v, want permission denied", err)
			}
		}
	}

	// Reads (over HTTP) see every write.
	vms, _, err := cl.VMs().List(ctx, &client.QueryOptions{Selector: "via"})
	if err != nil || len(vms) != 64 {
		t.Fatalf("listed %d VMs with the label via (%v), want 64", len(vms), err)
	}
	if _, err := cl.VMs().Delete(ctx, "s-leader-0", nil); err != nil {
		t.Fatalf("a delete over a stream: %v", err)
	}

	// The controller the client uses stops: the next write goes to the
	// next address, as over HTTP (the stream's dial is refused, so the
	// write was never sent).
	fo := newStreamClient(c.URL(other), c.URL(leader))
	if _, err := fo.VMs().Create(ctx, "s-before-stop", spec, nil); err != nil {
		t.Fatal(err)
	}
	c.Stop(other)
	if _, err := fo.VMs().Create(ctx, "s-after-stop", spec, nil); err != nil {
		t.Fatalf("a write after the client's controller stopped: %v", err)
	}
	if _, _, err := fo.VMs().Get(ctx, "s-after-stop", nil); err != nil {
		t.Fatal(err)
	}
}

// metricValue reads one sample of GET /metrics from url (-1: absent).
func metricValue(t *testing.T, url, sample string) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := httpClient().Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}
