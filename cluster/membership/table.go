package membership

import (
	"sort"
	"strconv"
	"sync"

	"github.com/hashicorp/memberlist"

	"github.com/kumoi/kumoi/resource"
)

// Member statuses.
const (
	StatusAlive   = "alive"
	StatusSuspect = "suspect"
	StatusDead    = "dead" // failed: stopped answering probes
	StatusLeft    = "left" // left on purpose
)

// Member is one agent seen in the gossip pool.
type Member struct {
	Name   string // memberlist name
	Addr   string // gossip address host:port
	Status string // StatusAlive, StatusSuspect, StatusDead or StatusLeft
	Meta   Meta
}

// Table tracks every agent seen in the gossip pool, including the ones that
// died or left (until they come back). It is safe for concurrent use.
type Table struct {
	mu      sync.Mutex
	members map[string]*Member
	changed chan struct{} // closed and replaced on every change
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{members: map[string]*Member{}, changed: make(chan struct{})}
}

// Set records n with status. A member that announced its leave and then
// failed is recorded as left.
func (t *Table) Set(n *memberlist.Node, status string) {
	meta := DecodeMeta(n.Name, n.Meta)
	t.mu.Lock()
	if prev, ok := t.members[n.Name]; ok && status == StatusDead && prev.Meta.Leaving {
		status = StatusLeft
	}
	t.members[n.Name] = &Member{Name: n.Name, Addr: n.Address(), Status: status, Meta: meta}
	ch := t.changed
	t.changed = make(chan struct{})
	t.mu.Unlock()
	close(ch)
}

// Changed returns a channel closed at the next change of the table.
func (t *Table) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

// Controller returns the controller whose id is id (a worker may share
// the id).
func (t *Table) Controller(id string) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.members {
		if m.Meta.ID == id && m.Meta.Role == RoleController {
			return *m, true
		}
	}
	return Member{}, false
}

// AliveControllers returns the alive controllers that advertise a Raft
// address, sorted by id.
func (t *Table) AliveControllers() []Member {
	out := t.filter(func(m *Member) bool {
		return m.Meta.Role == RoleController && m.Status == StatusAlive && m.Meta.Raft != ""
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Meta.ID < out[j].Meta.ID })
	return out
}

// Controllers returns every alive controller, whether it advertises a
// Raft address yet or not, sorted by id.
func (t *Table) Controllers() []Member {
	out := t.filter(func(m *Member) bool { return m.Meta.Role == RoleController && m.Status == StatusAlive })
	sort.Slice(out, func(i, j int) bool { return out[i].Meta.ID < out[j].Meta.ID })
	return out
}

// Workers returns every worker ever seen, with its gossip status.
func (t *Table) Workers() []Member {
	return t.filter(func(m *Member) bool { return m.Meta.Role == RoleWorker })
}

// DeadAddrs returns the gossip addresses of members that failed (not the
// ones that left on purpose), sorted.
func (t *Table) DeadAddrs() []string {
	var out []string
	for _, m := range t.filter(func(m *Member) bool { return m.Status == StatusDead }) {
		out = append(out, m.Addr)
	}
	sort.Strings(out)
	return out
}

// AnyAlive reports whether a member other than self is alive.
func (t *Table) AnyAlive(self string) bool {
	return len(t.filter(func(m *Member) bool { return m.Name != self && m.Status == StatusAlive })) > 0
}

func (t *Table) filter(keep func(*Member) bool) []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Member
	for _, m := range t.members {
		if keep(m) {
			out = append(out, *m)
		}
	}
	return out
}

// List returns the members as GET /v1/cluster shows them, sorted by name.
func (t *Table) List() []resource.Member {
	all := t.filter(func(*Member) bool { return true })
	out := make([]resource.Member, 0, len(all))
	for _, m := range all {
		tags := map[string]string{}
		if m.Meta.API != "" {
			tags["api"] = m.Meta.API
		}
		if m.Meta.Raft != "" {
			tags["raft"] = m.Meta.Raft
		}
		if m.Meta.Expect > 0 {
			tags["bootstrap_expect"] = strconv.Itoa(m.Meta.Expect)
		}
		if m.Meta.Role == RoleWorker {
			tags["host"] = m.Meta.ID
			tags["cpus"] = strconv.Itoa(m.Meta.CPUs)
			tags["memory_mib"] = strconv.FormatInt(m.Meta.MemoryMiB, 10)
			tags["driver"] = m.Meta.Driver
			tags["ready"] = strconv.FormatBool(m.Meta.Ready)
		}
		out = append(out, resource.Member{Name: m.Name, Address: m.Addr, Status: m.Status, Role: m.Meta.Role, Tags: tags})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
