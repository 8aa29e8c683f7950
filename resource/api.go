package resource

import "time"

// Wire types of the HTTP API shared by the server (cluster) and the Go SDK
// (client). The JSON names are part of the public contract (docs/api.md).

// Error codes carried in ErrorBody.Code.
const (
	CodeInvalidJSON      = "invalid_json"       // 400: body is not valid JSON
	CodeInvalidArgument  = "invalid_argument"   // 400: a field or parameter is wrong
	CodeNotFound         = "not_found"          // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeAlreadyExists    = "already_exists"     // 409: duplicate name
	CodeCASMismatch      = "cas_mismatch"       // 409: modify_index differs from ?cas=N
	CodeStaleEpoch       = "stale_epoch"        // 409: a worker report for an old placement
	CodeConflict         = "conflict"           // 409: not allowed in the current state
	CodeBodyTooLarge     = "body_too_large"     // 413
	CodeNoLeader         = "no_leader"          // 503: retry later (Retry-After is set)
	CodeUnavailable      = "unavailable"        // 503: e.g. shutting down, leadership lost
	CodeTimeout          = "timeout"            // 504: outcome unknown
	CodeInternal         = "internal"           // 500
	CodeHalted           = "halted"             // 503: this controller's state machine halted (docs/api.md)
	CodeUpgradeRequired  = "upgrade_required"   // 409: some server speaks an older log protocol (docs/upgrade.md)
	CodeUnauthenticated  = "unauthenticated"    // 401: no token, or an unknown one (docs/security.md)
	CodePermissionDenied = "permission_denied"  // 403: the token lacks a rule the request needs
)

// ErrorResponse is the body of every non-2xx answer:
// {"error": {"code": "...", "message": "..."}}.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong and how to fix it.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Status is GET /v1/status: one controller's view of itself.
type Status struct {
	NodeID string `json:"node_id"`
	// ClusterID is the cluster's identity (a UUID chosen when it was
	// bootstrapped); empty until this node knows it.
	ClusterID string `json:"cluster_id"`
	// NodeUUID is this node's own persistent identity, created with its
	// data directory (a node whose data directory was wiped has a new one,
	// whatever its node_id).
	NodeUUID string `json:"node_uuid"`
	// Protocol is the highest log protocol this node speaks
	// (docs/upgrade.md).
	Protocol      int    `json:"protocol"`
	LeaderID      string `json:"leader_id"`
	LeaderAddr    string `json:"leader_api_addr,omitempty"`
	RaftState     string `json:"raft_state"` // Leader, Follower, Candidate, Shutdown
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LastLogIndex  uint64 `json:"last_log_index"`
	StateIndex    uint64 `json:"state_index"`
	APIAddr       string `json:"api_addr"`
	RaftAddr      string `json:"raft_addr"`
	GossipAddr    string `json:"gossip_addr"`
	Version       string `json:"version"`
	NumServers    int    `json:"num_servers"`
	LastContactMS int64  `json:"last_contact_ms"` // -1 on the leader
	Health        string `json:"health"`          // HealthOK or HealthHalted
	HealthReason  string `json:"health_reason,omitempty"`
	// RaftLogStore is the store this node keeps its Raft log in: "wal",
	// "boltdb" (docs/operations.md, "The Raft log store") or "inmem"
	// (dev mode).
	RaftLogStore string `json:"raft_log_store"`
	// ACL says whether ACLs are enforced and bootstrapped
	// (docs/security.md).
	ACL ACLStatus `json:"acl"`
}

// Status.Health values.
const (
	HealthOK = "ok"
	// HealthHalted: the controller's state machine met a log entry this
	// build cannot apply and stopped; the controller is out of service
	// (HealthReason says which entry and what to do).
	HealthHalted = "halted"
)

// Cluster is GET /v1/cluster.
type Cluster struct {
	// ClusterID is the cluster's identity (see Status.ClusterID).
	ClusterID string   `json:"cluster_id"`
	Leader    string   `json:"leader"`
	Servers   []Server `json:"servers"`
	Members   []Member `json:"members"`
}

// Server is one entry of the Raft configuration.
type Server struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
	// Role is ServerVoter, or ServerNonvoter for a new server that
	// replicates the log but does not vote until the leader promotes it
	// (once it has caught up).
	Role string `json:"role"`
	// LastIndex is the last Raft index the server reported applying (0
	// when it did not answer).
	LastIndex uint64 `json:"last_index"`
	// Version and Protocol are the build version and the highest log
	// protocol the server advertises in gossip (Protocol 0: not seen, or a
	// build from before protocol versions).
	Version  string `json:"version,omitempty"`
	Protocol int    `json:"protocol"`
	// RaftLogStore is the server's Raft log store (Status.RaftLogStore);
	// empty when it did not answer.
	RaftLogStore string `json:"raft_log_store,omitempty"`
	// Health is ServerOK, ServerCatchingUp (more than a few entries
	// behind the answering node's commit index) or ServerUnreachable
	// (its API did not answer).
	Health string `json:"health"`
}

// Server roles and health (Server.Role, Server.Health).
const (
	ServerVoter       = "voter"
	ServerNonvoter    = "nonvoter"
	ServerOK          = "ok"
	ServerCatchingUp  = "catching-up"
	ServerUnreachable = "unreachable"
)

// Member is one node of the gossip pool.
type Member struct {
	Name    string            `json:"name"`
	Address string            `json:"address"` // gossip host:port
	Status  string            `json:"status"`  // alive, suspect, dead, left
	Role    string            `json:"role"`    // controller, worker
	Tags    map[string]string `json:"tags,omitempty"`
}

// Event types.
const (
	EventCreated = "created"
	EventUpdated = "updated"
	EventDeleted = "deleted"
	// EventReset tells a stream reader that events it asked for are no
	// longer retained: re-list the objects, then resume from Index.
	EventReset = "reset"
	// EventHeartbeat is a keep-alive line of an idle stream; Index is the
	// newest index the stream has covered. It is not an object change.
	EventHeartbeat = "heartbeat"
)

// HTTP headers of the API.
const (
	// HeaderIndex carries the Raft index a read reflects or a write made;
	// pass it back as ?index= for a blocking query.
	HeaderIndex = "X-Kumoi-Index"
	// HeaderKnownLeader says whether the answering node knows a leader.
	HeaderKnownLeader = "X-Kumoi-Known-Leader"
	// HeaderLastContact is how long (ms) since a follower heard from the
	// leader (stale reads).
	HeaderLastContact = "X-Kumoi-Last-Contact"
	// HeaderForwarded marks a request that one controller forwarded to the
	// leader; it is never forwarded again.
	HeaderForwarded = "X-Kumoi-Forwarded"
	// HeaderToken is an alternative to "Authorization: Bearer <secret>".
	HeaderToken = "X-Kumoi-Token"
	// HeaderActAs names the accessor a controller's own policy runner
	// acts as; only the controller's internal secret may send it.
	HeaderActAs = "X-Kumoi-Act-As"
)

// RemoveServerResponse is the body of DELETE /v1/cluster/servers/{id}.
type RemoveServerResponse struct {
	Removed string `json:"removed"` // the server ID
	Index   uint64 `json:"index"`   // the Raft index of the configuration change
}

// AgentSelf is the body of GET /v1/agent/self: the answering controller's
// status and its agent's configuration (flag name -> value), secrets
// redacted.
type AgentSelf struct {
	Status Status         `json:"status"`
	Config map[string]any `json:"config"`
}

// TransferLeaderRequest is the (optional) body of POST
// /v1/operator/raft/transfer-leader: the server to lead ("": any voter).
type TransferLeaderRequest struct {
	To string `json:"to,omitempty"`
}

// TransferLeaderResponse is its answer: who led, and who leads now.
type TransferLeaderResponse struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// SnapshotMeta describes a snapshot of the cluster's state, as GET
// /v1/operator/snapshot saves it (meta.json of the archive,
// internal/snapfile) and kumoi operator snapshot inspect shows it.
type SnapshotMeta struct {
	Format    int    `json:"format"`     // the archive layout's version
	ClusterID string `json:"cluster_id"` // the identity of the cluster saved
	// Index is the Raft index of the last log entry the state holds.
	Index uint64 `json:"index"`
	// Version and Protocol are the saving controller's build and the log
	// protocol it speaks; StateVersion the state stream's format.
	Version      string    `json:"version"`
	Protocol     int       `json:"protocol"`
	StateVersion int       `json:"state_version"`
	Node         string    `json:"node"`    // the controller that saved it
	Created      time.Time `json:"created"` // when
	// Objects counts the objects per kind, ACLPolicies and ACLTokens the
	// ACL records.
	Objects     map[Kind]int `json:"objects"`
	ACLPolicies int          `json:"acl_policies"`
	ACLTokens   int          `json:"acl_tokens"`
	// Size and SHA256 (hex) are state.json's.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// SnapshotRestoreResponse is the body of PUT /v1/operator/snapshot.
type SnapshotRestoreResponse struct {
	ClusterID string `json:"cluster_id"` // the cluster's identity now
	// Replaced is the identity the cluster had before, when a forced
	// restore gave it the snapshot's.
	Replaced string `json:"replaced,omitempty"`
	// SnapshotIndex is the index the snapshot was saved at; Index the
	// Raft index the restored state takes in this cluster.
	SnapshotIndex uint64       `json:"snapshot_index"`
	Index         uint64       `json:"index"`
	Objects       map[Kind]int `json:"objects"`
}

// Event is one line of GET /v1/events (NDJSON). Object is the object after
// the change (before it, for deletes).
type Event struct {
	Index  uint64  `json:"index"`
	Type   string  `json:"type"`
	Kind   Kind    `json:"kind,omitempty"`
	Name   string  `json:"name,omitempty"`
	Object *Object `json:"object,omitempty"`
	// Accessor is the accessor ID of the token that made the change
	// (omitted for the controllers' own writes and with ACLs off).
	Accessor string `json:"accessor,omitempty"`
}

// ReportRequest is the body of POST /v1/hosts/{name}/report: a worker's
// observations of the VMs placed on its host.
type ReportRequest struct {
	Reports []VMReport `json:"reports"`
	// Resources are the worker's observations of the networks, images
	// and volumes on its host (log protocol 7).
	Resources []ResourceReport `json:"resources,omitempty"`
}

// ResourceReport is one network, image or volume on the reporting host.
// A network or image's state lands in status.hosts[host]; a volume's in
// its status (phase from State: ready, missing or failed; pending changes
// nothing), only while status.host is the reporting host and ID is the
// volume's id. State removed drops the host's entry (networks, images).
type ResourceReport struct {
	Kind   Kind   `json:"kind"`
	Name   string `json:"name"`
	ID     string `json:"id,omitempty"` // the object's id the worker acted on
	State  string `json:"state"`        // a HostResource* state
	Reason string `json:"reason,omitempty"`
	// SizeMiB is a volume's size as the disk now is.
	SizeMiB int64 `json:"size_mib,omitempty"`
	// Seq orders a worker's reports, as VMReport.Seq: recorded only
	// above the last one recorded for this host (a network's or image's
	// status.hosts[host].seq, a volume's status.report_seq). Log
	// protocol 11.
	Seq uint64 `json:"seq,omitempty"`
}

// ResourceResult answers one ResourceReport: nil Error when recorded.
type ResourceResult struct {
	Kind  Kind       `json:"kind"`
	Name  string     `json:"name"`
	Error *ErrorBody `json:"error,omitempty"`
}

// VMReport is one VM's observed state, for the placement epoch the worker
// acts on. SetPower makes the desired power follow a change made behind
// Kumoi's back (a guest that powered itself off: "stopped").
type VMReport struct {
	VM       string `json:"vm"`
	Epoch    uint64 `json:"epoch"`
	Phase    string `json:"phase"`
	Reason   string `json:"reason,omitempty"`
	SetPower string `json:"set_power,omitempty"`
	// RebootDone acknowledges a reboot (status.reboot_requested) done.
	RebootDone uint64 `json:"reboot_done,omitempty"`
	// Restarts is the VM's restart count once the worker restarted it
	// (status.restarts + 1 on the report of a restart, and on the reports
	// that follow it in this placement). Recorded when it is exactly one
	// more than status.restarts, so a re-sent report does not count twice.
	// Needs log protocol 4; a cluster that speaks less records the report
	// without it.
	Restarts uint64 `json:"restarts,omitempty"`
	// Seq orders a worker's reports: it grows with every report the
	// worker sends, across its restarts (0: not ordered, as from a
	// worker of an earlier release). The controllers record a VM's
	// report only when Seq is above the last one they recorded for the
	// placement (status.report_seq), so a report delivered late — a
	// request that a partition held back while newer ones got through —
	// cannot put back an older state. Needs log protocol 11; a cluster
	// that speaks less records the report without it.
	Seq uint64 `json:"seq,omitempty"`
}

// ReportResponse answers a ReportRequest: one result per report, in order.
type ReportResponse struct {
	Index   uint64         `json:"index"`
	Results []ReportResult `json:"results"`
	// ResourceResults answer ReportRequest.Resources, in order.
	ResourceResults []ResourceResult `json:"resource_results,omitempty"`
}

// ReportResult is nil Error when the report was recorded.
type ReportResult struct {
	VM    string     `json:"vm"`
	Error *ErrorBody `json:"error,omitempty"`
}

// VMActionRequest is the optional body of POST /v1/vms/{name}/{action}.
type VMActionRequest struct {
	// Force (stop only): power the VM off at once instead of asking the
	// guest to shut down; it also cuts short a graceful stop under way.
	Force bool `json:"force,omitempty"`
	// Host (migrate only): the host to move the VM to; empty lets the
	// controllers pick one (the scheduler's choice, with the VM's
	// requirements, rank and affinity).
	Host string `json:"host,omitempty"`
	// Live (migrate only): move a running VM without stopping it (log
	// protocol 9). Restart: move a running VM by shutting it down on its
	// host and starting it on the target. Without either, only a VM that
	// runs nowhere moves (cold). Abort: cancel the migration under way
	// (the VM stays where it runs).
	Live    bool `json:"live,omitempty"`
	Restart bool `json:"restart,omitempty"`
	Abort   bool `json:"abort,omitempty"`
}

// MigrationEvent is a worker's word on a migration of a VM (docs/api.md):
// Event is prepared (the target), done or failed (either side), for the
// migration ID (status.migration.id).
type MigrationEvent struct {
	VM    string `json:"vm"`
	ID    uint64 `json:"id"`
	Event string `json:"event"`
	// URI (prepared): how the source's hypervisor reaches this host's.
	URI    string `json:"uri,omitempty"`
	Reason string `json:"reason,omitempty"`
	// DowntimeMS (done, live): how long the guest was paused, as the
	// hypervisor measured it (0: unknown).
	DowntimeMS int64 `json:"downtime_ms,omitempty"`
}

// MigrationEventsRequest is the body of POST /v1/hosts/{name}/migrations.
type MigrationEventsRequest struct {
	Events []MigrationEvent `json:"events"`
}

// MigrationEventsResponse answers it: one result per event, in order
// (nil Error: recorded).
type MigrationEventsResponse struct {
	Index   uint64         `json:"index"`
	Results []ReportResult `json:"results"`
}

// DrainStatus is the answer of GET /v1/hosts/{name}/drain: how far a
// host's drain is.
type DrainStatus struct {
	Host     string `json:"host"`
	Draining bool   `json:"draining"` // spec.unschedulable
	Migrate  bool   `json:"migrate"`  // spec.drain.migrate: the leader moves the VMs off
	// VMsTotal is VMsLeft plus the VMs that left the host since the
	// current leader began draining it; VMsLeft the VMs still there
	// (migrating ones too).
	VMsTotal  int              `json:"vms_total"`
	VMsLeft   int              `json:"vms_left"`
	Migrating []DrainMigrating `json:"migrating"`
	Blocked   []DrainBlocked   `json:"blocked"`
}

// DrainMigrating is a VM migrating off a drained host: to Target, with
// Mode (live, restart), in State (preparing, ready, aborting).
type DrainMigrating struct {
	VM     string `json:"vm"`
	Target string `json:"target"`
	Mode   string `json:"mode"`
	State  string `json:"state"`
}

// DrainBlocked is a VM that cannot move off a drained host now, and why.
type DrainBlocked struct {
	VM     string `json:"vm"`
	Reason string `json:"reason"`
}

// RebalanceRequest is the body of POST /v1/rebalance: DryRun only
// computes the moves; Max bounds them (0: the default).
type RebalanceRequest struct {
	DryRun bool `json:"dry_run"`
	Max    int  `json:"max"`
}

// RebalanceMove is one migration of a rebalance: VM from host From to To,
// Mode live or cold, and why; Error is why the state machine refused it
// (performed rebalances only).
type RebalanceMove struct {
	VM     string `json:"vm"`
	From   string `json:"from"`
	To     string `json:"to"`
	Mode   string `json:"mode"`
	Reason string `json:"reason"`
	Error  string `json:"error,omitempty"`
}

// RebalanceResponse answers POST /v1/rebalance.
type RebalanceResponse struct {
	Moves     []RebalanceMove `json:"moves"`
	Performed bool            `json:"performed"`
}
