package client

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/kumoi/kumoi/resource"
)

// Host is a typed view of a host object: the object as the API returned
// it, with its spec and status decoded.
type Host struct {
	// Object is the object as read: kind, name, id, labels, indexes, and
	// the spec and status as JSON. Hosts.Update writes Object.Labels and
	// Spec, with compare-and-set on Object.ModifyIndex.
	Object *resource.Object
	Spec   resource.HostSpec
	Status resource.HostStatus
}

// Name returns the host's name.
func (h *Host) Name() string { return h.Object.Name }

// State returns the host's status state (resource.Host*: ready, down,
// left, draining).
func (h *Host) State() string { return h.Status.State }

// Schedulable reports whether the scheduler may place new VMs on the host
// as far as its spec goes (it must also be ready).
func (h *Host) Schedulable() bool { return !h.Spec.Unschedulable }

// NewHost decodes a host object into its typed view. It fails when o is
// not a host or its spec or status cannot be decoded.
func NewHost(o *resource.Object) (*Host, error) {
	spec, st, err := decodeObject[resource.HostSpec, resource.HostStatus](o, resource.KindHost)
	if err != nil {
		return nil, err
	}
	return &Host{Object: o, Spec: *spec, Status: *st}, nil
}

// Hosts is the typed API of the hypervisor hosts; get it from
// Client.Hosts. Hosts are created by the system when a worker joins, so
// there is no Create.
type Hosts struct{ c *Client }

// Hosts returns the typed API of the hypervisor hosts.
func (c *Client) Hosts() *Hosts { return &Hosts{c: c} }

// Get reads one host. It fails with ErrNotFound when there is none. opts
// may be nil.
func (h *Hosts) Get(ctx context.Context, name string, opts *QueryOptions) (*Host, *QueryMeta, error) {
	return getAs(ctx, h.c, resource.KindHost, name, opts, NewHost)
}

// List reads the hosts that match opts.Selector, sorted by name; opts may
// be nil. The slice is empty, never nil, when none match.
func (h *Hosts) List(ctx context.Context, opts *QueryOptions) ([]*Host, *QueryMeta, error) {
	objs, meta, err := h.c.List(ctx, resource.KindHost, opts)
	if err != nil {
		return nil, nil, err
	}
	hosts, err := decodeAll(objs, NewHost)
	if err != nil {
		return nil, nil, err
	}
	return hosts, meta, nil
}

// Update writes host.Object.Labels and host.Spec (PUT /v1/hosts/{name})
// and returns the host after the write, with compare-and-set on
// host.Object.ModifyIndex: when the host changed since it was read (its
// worker reports often), it fails with ErrCASMismatch and writes nothing.
// Modify does the read-change-write loop.
func (h *Hosts) Update(ctx context.Context, host *Host) (*Host, error) {
	if host == nil || host.Object == nil {
		return nil, fmt.Errorf("update host: the host has no object; get it with Hosts.Get first")
	}
	next, err := encodeSpec(host.Object, host.Spec)
	if err != nil {
		return nil, err
	}
	o, err := h.c.Update(ctx, resource.KindHost, host.Object.Name, next, &WriteOptions{CAS: host.Object.ModifyIndex})
	if err != nil {
		return nil, err
	}
	return NewHost(o)
}

// Modify reads the host, lets change edit its Spec and Object.Labels, and
// writes them back with compare-and-set, reading and changing again when
// the host changed in between, up to ModifyAttempts times. When change
// leaves the host as it was, nothing is written.
func (h *Hosts) Modify(ctx context.Context, name string, change func(host *Host) error) (*Host, error) {
	o, err := h.c.Modify(ctx, resource.KindHost, name, func(cur *resource.Object) (*resource.Object, error) {
		host, err := NewHost(cur)
		if err != nil {
			return nil, err
		}
		before := *host
		before.Object = cur.Copy()
		if err := change(host); err != nil {
			return nil, err
		}
		if host.Spec == before.Spec && maps.Equal(host.Object.Labels, before.Object.Labels) {
			return nil, nil
		}
		return encodeSpec(host.Object, host.Spec)
	})
	if err != nil {
		return nil, err
	}
	return NewHost(o)
}

// Drain marks the host unschedulable (spec.unschedulable=true): the
// scheduler places no new VMs on it. The VMs already there stay and keep
// running. It is the wire call of 'kumoi host drain': a read-modify-write
// of that one spec field with compare-and-set, retried when the host
// changed in between, that keeps the other spec fields as they are. A host
// already drained is returned as read, with nothing written.
func (h *Hosts) Drain(ctx context.Context, name string) (*Host, error) {
	return h.setSchedulable(ctx, name, false)
}

// Enable marks a drained host schedulable again
// (spec.unschedulable=false) and ends a drain with migrate (spec.drain
// removed: the leader stops moving its VMs off; migrations under way go
// on), as 'kumoi host enable' does. A host already schedulable and not
// draining is returned as read, with nothing written.
func (h *Hosts) Enable(ctx context.Context, name string) (*Host, error) {
	return h.setSchedulable(ctx, name, true)
}

func (h *Hosts) setSchedulable(ctx context.Context, name string, schedulable bool) (*Host, error) {
	if !schedulable {
		return h.DrainWith(ctx, name, DrainOptions{})
	}
	o, err := h.c.Modify(ctx, resource.KindHost, name, func(cur *resource.Object) (*resource.Object, error) {
		host, err := NewHost(cur)
		if err != nil {
			return nil, err
		}
		if host.Schedulable() && host.Spec.Drain == nil {
			return nil, nil
		}
		next, err := PatchSpec(cur, map[string]any{"unschedulable": false})
		if err != nil {
			return nil, err
		}
		return withoutSpecField(next, "drain")
	})
	if err != nil {
		return nil, err
	}
	return NewHost(o)
}

// VMs lists the VMs placed on the host (GET /v1/vms?host=NAME), sorted by
// name, as 'kumoi host vms' does. opts may narrow them with a label
// selector or ask for a stale or blocking read; opts.Host is replaced by
// host. A host without VMs, or that does not exist, gives an empty slice.
func (h *Hosts) VMs(ctx context.Context, host string, opts *QueryOptions) ([]*VM, *QueryMeta, error) {
	if err := checkName(resource.KindHost, host); err != nil {
		return nil, nil, err
	}
	o := QueryOptions{}
	if opts != nil {
		o = *opts
	}
	o.Host = host
	return h.c.VMs().List(ctx, &o)
}

// DrainOptions say how a host is drained: Migrate also asks the leader to
// move every VM off it (spec.drain={"migrate":true}; log protocol 9):
// running VMs live where both hosts take live migrations, by restart
// where only that is possible, the others cold.
type DrainOptions struct {
	Migrate bool
}

// DrainWith marks the host unschedulable and, with opts.Migrate, asks the
// leader to move its VMs off (kumoi host drain --migrate): a
// read-modify-write with compare-and-set of spec.unschedulable and
// spec.drain, retried when the host changed in between. Follow the drain
// with DrainStatus. Without Migrate it is Drain. A host already drained so
// is returned as read, with nothing written.
func (h *Hosts) DrainWith(ctx context.Context, name string, opts DrainOptions) (*Host, error) {
	o, err := h.c.Modify(ctx, resource.KindHost, name, func(cur *resource.Object) (*resource.Object, error) {
		host, err := NewHost(cur)
		if err != nil {
			return nil, err
		}
		migrating := host.Spec.Drain != nil && host.Spec.Drain.Migrate
		if !host.Schedulable() && (!opts.Migrate || migrating) {
			return nil, nil
		}
		patch := map[string]any{"unschedulable": true}
		if opts.Migrate {
			patch["drain"] = map[string]any{"migrate": true}
		}
		return PatchSpec(cur, patch)
	})
	if err != nil {
		return nil, err
	}
	return NewHost(o)
}

// DrainStatus is how far a host's drain is (GET /v1/hosts/{name}/drain).
type DrainStatus struct {
	Host     string `json:"host"`
	Draining bool   `json:"draining"` // spec.unschedulable
	Migrate  bool   `json:"migrate"`  // the leader moves the VMs off
	// VMsTotal is VMsLeft plus the VMs that left the host since the
	// current leader began draining it; VMsLeft the VMs still there
	// (migrating ones too).
	VMsTotal  int              `json:"vms_total"`
	VMsLeft   int              `json:"vms_left"`
	Migrating []DrainMigrating `json:"migrating"`
	Blocked   []DrainBlocked   `json:"blocked"`
}

// DrainMigrating is a VM migrating off the host: to Target, with Mode
// (live, restart), in State (preparing, ready, aborting).
type DrainMigrating struct {
	VM     string `json:"vm"`
	Target string `json:"target"`
	Mode   string `json:"mode"`
	State  string `json:"state"`
}

// DrainBlocked is a VM that cannot move now, and why.
type DrainBlocked struct {
	VM     string `json:"vm"`
	Reason string `json:"reason"`
}

// DrainStatus reads how far the drain of host is: the VMs left, those
// migrating and those that cannot move, with why (the leader's drain
// loop's word, or what would stop each VM moving now when the leader does
// not drain the host). It fails with ErrNotFound when there is no such
// host.
func (h *Hosts) DrainStatus(ctx context.Context, name string) (*DrainStatus, error) {
	if err := checkName(resource.KindHost, name); err != nil {
		return nil, err
	}
	var out DrainStatus
	r := &request{method: "GET", path: objectPath(resource.KindHost, name) + "/drain", idempotent: true}
	if _, err := h.c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RebalanceOptions: DryRun only computes the moves; Max bounds them (0:
// the server's default, 5; at most 100).
type RebalanceOptions struct {
	DryRun bool
	Max    int
}

// RebalanceMove is one migration of a rebalance: VM from host From to To,
// Mode live or cold, and why; Error is why the state machine refused it
// (performed rebalances).
type RebalanceMove struct {
	VM     string `json:"vm"`
	From   string `json:"from"`
	To     string `json:"to"`
	Mode   string `json:"mode"`
	Reason string `json:"reason"`
	Error  string `json:"error,omitempty"`
}

// RebalanceResult is the answer of POST /v1/rebalance.
type RebalanceResult struct {
	Moves     []RebalanceMove `json:"moves"`
	Performed bool            `json:"performed"`
}

// Rebalance computes, and unless opts.DryRun starts, migrations that move
// the cluster toward its placement strategy (POST /v1/rebalance; kumoi
// host rebalance): spread moves VMs from the most to the least loaded
// hosts, binpack empties the least loaded hosts. Running VMs move live,
// stopped ones cold. A performed rebalance is not resent after an attempt
// whose outcome is unknown.
func (h *Hosts) Rebalance(ctx context.Context, opts RebalanceOptions) (*RebalanceResult, error) {
	body, err := json.Marshal(map[string]any{"dry_run": opts.DryRun, "max": opts.Max})
	if err != nil {
		return nil, err
	}
	var out RebalanceResult
	r := &request{method: "POST", path: "/v1/rebalance", body: body, idempotent: opts.DryRun}
	if _, err := h.c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	if out.Moves == nil {
		out.Moves = []RebalanceMove{}
	}
	return &out, nil
}

// withoutSpecField is o with the spec field removed.
func withoutSpecField(o *resource.Object, field string) (*resource.Object, error) {
	spec := map[string]json.RawMessage{}
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		return nil, fmt.Errorf("%s: cannot read its spec: %w", o, err)
	}
	delete(spec, field)
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	o.Spec = raw
	return o, nil
}
