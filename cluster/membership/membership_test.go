package membership

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func node(t *testing.T, name string, m Meta) *memberlist.Node {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &memberlist.Node{Name: name, Addr: []byte{127, 0, 0, 1}, Port: 7402, Meta: b}
}

// TestMetaOneSchema: what a controller and a worker write is what every
// agent reads back, field for field, and the names on the wire are the
// ones older agents read.
func TestMetaOneSchema(t *testing.T) {
	for _, m := range []Meta{
		{ID: "c1", Role: RoleController, API: "127.0.0.1:7400", Raft: "127.0.0.1:7401", Expect: 3},
		{ID: "h1", Role: RoleWorker, CPUs: 8, MemoryMiB: 16384, Driver: "sim", Ready: true, Labels: map[string]string{"zone": "a"}},
		{ID: "h2", Role: RoleWorker, Leaving: true},
	} {
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got := DecodeMeta("x", b)
		if gb, _ := json.Marshal(got); string(gb) != string(b) {
			t.Fatalf("round trip: %s → %s", b, gb)
		}
	}
	b, _ := Meta{ID: "h1", Role: RoleWorker, CPUs: 2, MemoryMiB: 512, Driver: "libvirt", Ready: true, Leaving: true, Labels: map[string]string{"k": "v"}}.Encode()
	for _, key := range []string{`"id":"h1"`, `"role":"worker"`, `"cpus":2`, `"memory_mib":512`, `"driver":"libvirt"`, `"ready":true`, `"leaving":true`, `"labels":{"k":"v"}`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("worker metadata %s lacks %s", b, key)
		}
	}
}

func TestMetaLimitAndGarbage(t *testing.T) {
	big := Meta{ID: "h1", Role: RoleWorker, Labels: map[string]string{"k": strings.Repeat("v", MaxMetaBytes)}}
	if _, err := big.Encode(); err == nil || !strings.Contains(err.Error(), "512") {
		t.Fatalf("oversized metadata: err = %v, want one naming the limit", err)
	}
	if m := DecodeMeta("stranger", []byte("not json")); m.ID != "stranger" || m.Role != "" {
		t.Fatalf("undecodable metadata: %+v, want the member's name only", m)
	}
}

// TestTable: statuses, the leave-then-fail rule, the role filters and the
// API's member list.
func TestTable(t *testing.T) {
	tb := NewTable()
	changed := tb.Changed()
	tb.Set(node(t, "c1", Meta{ID: "c1", Role: RoleController, API: "a1", Raft: "r1", Expect: 3}), StatusAlive)
	select {
	case <-changed:
	default:
		t.Fatal("Changed was not closed by Set")
	}
	tb.Set(node(t, "c2", Meta{ID: "c2", Role: RoleController, API: "a2"}), StatusAlive) // no raft address
	tb.Set(node(t, "h1", Meta{ID: "h1", Role: RoleWorker, CPUs: 4, MemoryMiB: 1024, Driver: "sim", Ready: true}), StatusAlive)
	tb.Set(node(t, "c1-worker", Meta{ID: "c1", Role: RoleWorker}), StatusAlive)

	if got := tb.AliveControllers(); len(got) != 1 || got[0].Meta.ID != "c1" {
		t.Fatalf("AliveControllers = %+v, want c1 only (c2 has no raft address)", got)
	}
	if m, ok := tb.Controller("c1"); !ok || m.Meta.Role != RoleController || m.Meta.API != "a1" {
		t.Fatalf("Controller(c1) = %+v %v, want the controller, not the worker sharing its id", m, ok)
	}
	if got := tb.Workers(); len(got) != 2 {
		t.Fatalf("Workers = %+v, want h1 and c1-worker", got)
	}

	// A worker that announced its leave and then stops answering has left.
	tb.Set(node(t, "h1", Meta{ID: "h1", Role: RoleWorker, Leaving: true}), StatusAlive)
	tb.Set(node(t, "h1", Meta{ID: "h1", Role: RoleWorker, Leaving: true}), StatusDead)
	// One that did not announce it failed.
	tb.Set(node(t, "c1-worker", Meta{ID: "c1", Role: RoleWorker}), StatusDead)
	for _, m := range tb.Workers() {
		want := map[string]string{"h1": StatusLeft, "c1-worker": StatusDead}[m.Name]
		if m.Status != want {
			t.Errorf("worker %s is %s, want %s", m.Name, m.Status, want)
		}
	}
	if got := tb.DeadAddrs(); len(got) != 1 {
		t.Fatalf("DeadAddrs = %v, want the failed member only", got)
	}
	if !tb.AnyAlive("c1") {
		t.Fatal("AnyAlive(c1) = false with c2 alive")
	}

	list := tb.List()
	if len(list) != 4 || list[0].Name != "c1" {
		t.Fatalf("List = %+v, want 4 members sorted by name", list)
	}
	tags := list[0].Tags
	if tags["api"] != "a1" || tags["raft"] != "r1" || tags["bootstrap_expect"] != "3" {
		t.Fatalf("controller tags = %v", tags)
	}
	for _, m := range list {
		if m.Name == "c1-worker" && (m.Tags["host"] != "c1" || m.Tags["ready"] != "false" || m.Tags["cpus"] != "0") {
			t.Fatalf("worker tags = %v", m.Tags)
		}
	}
}

// TestDelegate: the delegate serves the metadata it was last given and
// records events, calling OnChange after each.
func TestDelegate(t *testing.T) {
	tb := NewTable()
	calls := 0
	d, err := NewDelegate(Meta{ID: "c1", Role: RoleController}, tb, func() { calls++ }, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := d.Meta()
	m.Leaving = true
	if err := d.SetMeta(m); err != nil {
		t.Fatal(err)
	}
	if got := DecodeMeta("c1", d.NodeMeta(MaxMetaBytes)); !got.Leaving {
		t.Fatalf("NodeMeta after SetMeta = %+v, want leaving", got)
	}
	n := node(t, "w1", Meta{ID: "w1", Role: RoleWorker})
	d.NotifyJoin(n)
	n.State = memberlist.StateLeft
	d.NotifyLeave(n)
	if calls != 2 {
		t.Fatalf("OnChange called %d times, want 2", calls)
	}
	if w := tb.Workers(); len(w) != 1 || w[0].Status != StatusLeft {
		t.Fatalf("after a graceful leave: %+v, want left", w)
	}
}
