package jepsen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/internal/testapi"
	"github.com/kumoi/kumoi/resource"
)

// TestWriteOutcome pins the classification the checkers rely on, with the
// harness' own clients (one controller, no retries): a write is a failure
// only when it certainly did nothing.
func TestWriteOutcome(t *testing.T) {
	ctx := context.Background()
	api := testapi.New(t)
	env := &Env{URLs: []string{api.URL}, OpTimeout: 2 * time.Second}
	defer env.close()
	c := env.Client(api.URL)
	create := func(name string) Status {
		_, err := createVM(ctx, c, name, nil)
		return writeOutcome(err)
	}

	if st := create("a"); st != StatusOK {
		t.Errorf("create: %s, want ok", st)
	}
	if st := create("a"); st != StatusFail {
		t.Errorf("create of a taken name (409): %s, want fail", st)
	}
	_, err := c.Delete(ctx, resource.KindVM, "missing", nil)
	if st := writeOutcome(err); st != StatusFail {
		t.Errorf("delete of a missing VM (404: %v): %s, want fail", err, st)
	}
	api.Unavailable.Store(1)
	if st := create("b"); st != StatusFail {
		t.Errorf("503 no_leader: %s, want fail", st)
	}
	api.UnavailableUnknown.Store(1)
	if st := create("c"); st != StatusUnknown {
		t.Errorf("503 without Retry-After: %s, want unknown", st)
	}
	api.UnavailableUnknown.Store(1)
	_, err = c.Action(ctx, "a", client.ActionStop)
	if st := writeOutcome(err); st != StatusUnknown {
		t.Errorf("action answered 503 without Retry-After (%v): %s, want unknown", err, st)
	}

	dead := env.Client(testapi.DeadAddr(t))
	if _, err := createVM(ctx, dead, "d", nil); writeOutcome(err) != StatusFail {
		t.Errorf("create on a refused connection (%v): %s, want fail", err, writeOutcome(err))
	}
	if _, err := dead.Action(ctx, "d", client.ActionStart); writeOutcome(err) != StatusFail {
		t.Errorf("action on a refused connection (%v): %s, want fail", err, writeOutcome(err))
	}

	for _, status := range []int{http.StatusInternalServerError, http.StatusGatewayTimeout} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
		}))
		_, err := createVM(ctx, env.Client(srv.URL), "e", nil)
		if st := writeOutcome(err); st != StatusUnknown {
			t.Errorf("create answered %d (%v): %s, want unknown", status, err, st)
		}
		srv.Close()
	}
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer hang.Close()
	defer close(release)
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := createVM(tctx, env.Client(hang.URL), "f", nil); writeOutcome(err) != StatusUnknown {
		t.Errorf("create that timed out (%v): %s, want unknown", err, writeOutcome(err))
	}
}
