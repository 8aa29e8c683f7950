package membership

import (
	"encoding/json"
	"fmt"
)

// Roles an agent advertises in its metadata.
const (
	RoleController = "controller"
	RoleWorker     = "worker"
)

// MaxMetaBytes is memberlist's limit on a node's metadata.
const MaxMetaBytes = 512

// Meta is what an agent advertises in its gossip metadata: the common
// fields, then the controller's and the worker's own. One type serves for
// writing and reading, so the schema cannot drift between the two sides.
// Every field is omitted when empty; older agents ignore fields they do
// not know.
type Meta struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	// Cluster is the identity (UUID) of the cluster the agent belongs to,
	// empty until it knows one. Agents of two clusters refuse each other
	// (Delegate.NotifyAlive, NotifyMerge).
	Cluster string `json:"cluster,omitempty"`
	// Version is the agent's build version, Proto the highest log
	// protocol it speaks (fsm.ProtocolVersion; 0: a build from before
	// protocol versions, which speaks 1). Leaders propose a command only
	// when every server speaks its protocol.
	Version string `json:"version,omitempty"`
	Proto   int    `json:"proto,omitempty"`
	// Leaving is set (by a metadata update) just before a graceful leave:
	// memberlist does not tell a leave from a failure in NotifyLeave.
	Leaving bool `json:"leaving,omitempty"`

	// Controllers: where to reach the API and Raft, and the node's
	// --bootstrap-expect.
	API    string `json:"api,omitempty"`
	Raft   string `json:"raft,omitempty"`
	Expect int    `json:"expect,omitempty"`
	// DownGraceMS is the controller's --host-down-grace in milliseconds.
	DownGraceMS int64 `json:"down_grace_ms,omitempty"`

	// Workers: the host's capacity, driver and labels. Ready is false
	// until the worker's first reconciliation after joining has removed
	// every domain that is no longer its own.
	CPUs      int               `json:"cpus,omitempty"`
	MemoryMiB int64             `json:"memory_mib,omitempty"`
	Driver    string            `json:"driver,omitempty"`
	Ready     bool              `json:"ready,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Foreign names Kumoi domains on the worker's host that belong to
	// another cluster (left alone), as many as fit in the metadata;
	// ForeignCount is how many there are in all.
	Foreign      []string `json:"foreign,omitempty"`
	ForeignCount int      `json:"foreign_count,omitempty"`
	// FenceAfterMS is the worker's --fence-after in milliseconds: the
	// leader records it in the host's status and does not evacuate a
	// host whose fence-after is not below the grace (docs/ha.md).
	FenceAfterMS int64 `json:"fence_after_ms,omitempty"`
	// ImageDir is the worker's --image-dir (omitted when it does not fit
	// in the metadata): the leader records it in the host's status, and
	// the API refuses a VM whose absolute boot path lies outside it.
	ImageDir string `json:"image_dir,omitempty"`
	// Migrate is the migration modes the worker takes part in (live,
	// restart): the leader records them in the host's status; a host
	// without one is not migrated to or from while its VMs run.
	Migrate []string `json:"migrate,omitempty"`
}

// Encode returns m as gossip metadata, or an error if it exceeds
// MaxMetaBytes.
func (m Meta) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMetaBytes {
		return nil, fmt.Errorf("gossip metadata of %s is %d bytes; memberlist allows %d (fewer or shorter labels?)", m.ID, len(b), MaxMetaBytes)
	}
	return b, nil
}

// DecodeMeta reads an agent's metadata. Metadata that does not decode
// (an agent of another kind on the port) names the member only.
func DecodeMeta(name string, b []byte) Meta {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{ID: name}
	}
	return m
}
