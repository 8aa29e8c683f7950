package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// pagingServer serves GET /v1/vms in pages of 2 of names, with the index
// header idx, and records the queries it got.
func pagingServer(t *testing.T, names []string, idx uint64) (*httptest.Server, *[]string, *sync.Mutex) {
	var mu sync.Mutex
	var queries []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		start := 0
		if n := r.URL.Query().Get("next"); n != "" {
			start, _ = strconv.Atoi(n)
		}
		end := min(start+2, len(names))
		if l := r.URL.Query().Get("limit"); l != "" {
			n, _ := strconv.Atoi(l)
			end = min(start+n, len(names))
		}
		var objs []*resource.Object
		for _, n := range names[start:end] {
			objs = append(objs, &resource.Object{Kind: resource.KindVM, Name: n})
		}
		if end < len(names) {
			w.Header().Set(client.HeaderNext, strconv.Itoa(end))
		}
		w.Header().Set(client.HeaderIndex, strconv.FormatUint(idx, 10))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(objs)
	}))
	t.Cleanup(s.Close)
	return s, &queries, &mu
}

// TestListPagesTransparently: List without Limit follows X-Kumoi-Next to
// the end; only the first page blocks; with Limit it returns one page and
// its NextToken.
func TestListPagesTransparently(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	s, queries, mu := pagingServer(t, names, 42)
	c := newClient(t, s.URL)
	ctx := context.Background()

	objs, meta, err := c.List(ctx, resource.KindVM, &client.QueryOptions{WaitIndex: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 5 || objs[4].Name != "e" || meta.Index != 42 || meta.NextToken != "" {
		t.Fatalf("List: %d objects, meta %+v", len(objs), meta)
	}
	mu.Lock()
	q := append([]string(nil), *queries...)
	*queries = nil
	mu.Unlock()
	if len(q) != 3 || q[0] != "index=7" || q[1] != "next=2" || q[2] != "next=4" {
		t.Fatalf("queries %q", q)
	}

	objs, meta, err = c.List(ctx, resource.KindVM, &client.QueryOptions{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 || meta.NextToken != "3" {
		t.Fatalf("one page: %d objects, next %q", len(objs), meta.NextToken)
	}
	objs, meta, err = c.List(ctx, resource.KindVM, &client.QueryOptions{Limit: 3, Next: meta.NextToken})
	if err != nil || len(objs) != 2 || meta.NextToken != "" {
		t.Fatalf("last page: %d objects, meta %+v, %v", len(objs), meta, err)
	}
}
