package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// QueryOptions tune a read. The zero value (or nil) is a linearizable,
// non-blocking read of every object.
type QueryOptions struct {
	// Stale lets any controller answer from its local state, which may lag
	// the leader; it keeps working without a leader.
	Stale bool
	// WaitIndex makes the read block until the state index is greater than
	// WaitIndex (or WaitTime passes). Pass the QueryMeta.Index of the last
	// read.
	WaitIndex uint64
	// WaitTime bounds a blocking read (the server caps it).
	WaitTime time.Duration
	// Selector filters a List by labels: "app=web,tier!=db" (see
	// resource.ParseSelector).
	Selector string
	// Host limits a List of VMs to those placed on that host.
	Host string
	// Limit makes List return one page of at most Limit objects, and Next
	// the page that starts at a QueryMeta.NextToken. With neither, List
	// pages through the whole collection itself.
	Limit int
	Next  string
}

// QueryMeta is what a read learned about the state it read.
type QueryMeta struct {
	// Index is the state index the answer reflects; feed it back as
	// QueryOptions.WaitIndex to wait for the next change.
	Index uint64
	// KnownLeader says whether the answering controller knew a leader.
	KnownLeader bool
	// LastContact is how long ago the answering follower last heard from
	// the leader: how stale a stale read may be (0 on the leader).
	LastContact time.Duration
	// NextToken, after a List of one page (QueryOptions.Limit or Next),
	// is the QueryOptions.Next of the page that follows; "" on the last.
	NextToken string
}

// HeaderNext carries the token of a list's next page.
const HeaderNext = resource.HeaderNext

// WriteOptions tune a write.
type WriteOptions struct {
	// CAS, when not 0, makes the write fail with ErrCASMismatch unless the
	// object's modify_index equals CAS.
	CAS uint64
}

func (o *QueryOptions) values() url.Values {
	v := url.Values{}
	if o == nil {
		return v
	}
	if o.Stale {
		v.Set("stale", "true")
	}
	if o.WaitIndex > 0 {
		v.Set("index", strconv.FormatUint(o.WaitIndex, 10))
		if o.WaitTime > 0 {
			v.Set("wait", o.WaitTime.String())
		}
	}
	if o.Selector != "" {
		v.Set("selector", o.Selector)
	}
	if o.Host != "" {
		v.Set("host", o.Host)
	}
	if o.Limit > 0 {
		v.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Next != "" {
		v.Set("next", o.Next)
	}
	return v
}

func (o *QueryOptions) waitTime() time.Duration {
	if o == nil || o.WaitIndex == 0 {
		return 0
	}
	if o.WaitTime <= 0 {
		return 30 * time.Second // the server's default
	}
	return o.WaitTime
}

func (o *WriteOptions) values() url.Values {
	v := url.Values{}
	if o != nil && o.CAS != 0 {
		v.Set("cas", strconv.FormatUint(o.CAS, 10))
	}
	return v
}

// Plural returns the URL collection name of a kind: "vm" → "vms". Kinds this
// client does not know get an "s" appended, as the API does for every kind.
func Plural(kind resource.Kind) string {
	if info, ok := resource.Lookup(kind); ok {
		return info.Plural
	}
	return string(kind) + "s"
}

func collectionPath(kind resource.Kind) string { return "/v1/" + url.PathEscape(Plural(kind)) }

func objectPath(kind resource.Kind, name string) string {
	return collectionPath(kind) + "/" + url.PathEscape(name)
}

func checkName(kind resource.Kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", kind)
	}
	return nil
}

// Create makes a new object of kind. It fails with ErrAlreadyExists when
// the name is taken.
func (c *Client) Create(ctx context.Context, kind resource.Kind, req resource.CreateRequest) (*resource.Object, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("create %s: encode request: %w", kind, err)
	}
	var out resource.Object
	r := &request{method: "POST", path: collectionPath(kind), body: body}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Get reads one object. It fails with ErrNotFound when there is none; the
// QueryMeta is then still returned when the server sent it, so that a
// blocking Get can wait for the object to appear.
func (c *Client) Get(ctx context.Context, kind resource.Kind, name string, opts *QueryOptions) (*resource.Object, *QueryMeta, error) {
	if err := checkName(kind, name); err != nil {
		return nil, nil, err
	}
	var out resource.Object
	r := &request{method: "GET", path: objectPath(kind, name), query: opts.values(),
		idempotent: true, wait: opts.waitTime()}
	meta, err := c.call(ctx, r, &out)
	if err != nil {
		return nil, meta, err
	}
	return &out, meta, nil
}

// List reads the objects of kind that match opts.Selector, sorted by name.
// The slice is empty, never nil, when nothing matches.
//
// Without opts.Limit and opts.Next, List follows the pages of a long
// collection (docs/api.md, "Pagination") and returns every object; only
// the first page blocks (opts.WaitIndex), and the QueryMeta is the first
// page's, so that a watcher feeding its Index back misses no change made
// while it read the later pages. Objects changed between pages may be seen
// as they were on either side of the change.
func (c *Client) List(ctx context.Context, kind resource.Kind, opts *QueryOptions) ([]*resource.Object, *QueryMeta, error) {
	paged := opts != nil && (opts.Limit > 0 || opts.Next != "")
	var all []*resource.Object
	var first *QueryMeta
	q := opts.values()
	wait := opts.waitTime()
	for {
		var out []*resource.Object
		r := &request{method: "GET", path: collectionPath(kind), query: q, idempotent: true, wait: wait}
		meta, err := c.call(ctx, r, &out)
		if err != nil {
			return nil, nil, err
		}
		if first == nil {
			first = meta
		}
		all = append(all, out...)
		if paged || meta.NextToken == "" {
			break
		}
		// The next page: no blocking, from where this one stopped.
		q = opts.values()
		q.Del("index")
		q.Del("wait")
		q.Set("next", meta.NextToken)
		wait = 0
	}
	if all == nil {
		all = []*resource.Object{}
	}
	if !paged {
		first.NextToken = ""
	}
	return all, first, nil
}

// Update replaces the labels and spec of the named object with obj's and
// returns the new object. The system-owned fields of obj (id, indexes,
// status) are ignored; its kind and name, if set, must be kind and name.
// With opts.CAS it fails with ErrCASMismatch when the object changed since.
// The usual read-modify-write is Get, Copy, change, Update with CAS set to
// the ModifyIndex that Get returned.
func (c *Client) Update(ctx context.Context, kind resource.Kind, name string, obj *resource.Object, opts *WriteOptions) (*resource.Object, error) {
	if err := checkName(kind, name); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, fmt.Errorf("update %s %q: object is nil", kind, name)
	}
	req := resource.UpdateRequest{
		Kind: obj.Kind, Name: obj.Name, ID: obj.ID, Labels: obj.Labels,
		CreateIndex: obj.CreateIndex, ModifyIndex: obj.ModifyIndex, Spec: obj.Spec,
	}
	if req.Labels == nil {
		req.Labels = map[string]string{}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("update %s %q: encode request: %w", kind, name, err)
	}
	var out resource.Object
	r := &request{method: "PUT", path: objectPath(kind, name), query: opts.values(),
		body: body, idempotent: false} // a resent CAS write that was applied would fail with cas_mismatch
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete removes the named object and returns it as it was. It fails with
// ErrNotFound when there is none, and with ErrCASMismatch when opts.CAS is
// set and the object changed since.
func (c *Client) Delete(ctx context.Context, kind resource.Kind, name string, opts *WriteOptions) (*resource.Object, error) {
	if err := checkName(kind, name); err != nil {
		return nil, err
	}
	var out resource.Object
	r := &request{method: "DELETE", path: objectPath(kind, name), query: opts.values(), idempotent: false} // a resent delete that was applied would answer 404
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Report sends a worker's observations of the VMs placed on host. Reports
// carry the placement epoch the worker acts on; the answer says, per VM,
// whether the report was recorded (a stale epoch or a VM that is not on
// host is refused). A report is idempotent: it states what is.
func (c *Client) Report(ctx context.Context, host string, reports []resource.VMReport) (*resource.ReportResponse, error) {
	return c.report(ctx, host, resource.ReportRequest{Reports: reports})
}

// ReportMigrations posts a worker's migration events for its host (POST
// /v1/hosts/{host}/migrations); each result says whether its event was
// recorded. Safe to resend: an event already recorded changes nothing.
func (c *Client) ReportMigrations(ctx context.Context, host string, events []resource.MigrationEvent) (*resource.MigrationEventsResponse, error) {
	if err := checkName(resource.KindHost, host); err != nil {
		return nil, err
	}
	body, err := json.Marshal(resource.MigrationEventsRequest{Events: events})
	if err != nil {
		return nil, fmt.Errorf("migration events: encode request: %w", err)
	}
	var out resource.MigrationEventsResponse
	r := &request{method: "POST", path: objectPath(resource.KindHost, host) + "/migrations", body: body, idempotent: true}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// report posts req to host's report endpoint (Report, ReportAll).
func (c *Client) report(ctx context.Context, host string, req resource.ReportRequest) (*resource.ReportResponse, error) {
	if err := checkName(resource.KindHost, host); err != nil {
		return nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("report: encode request: %w", err)
	}
	var out resource.ReportResponse
	r := &request{method: "POST", path: objectPath(resource.KindHost, host) + "/report", body: body, idempotent: true}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
