// Package api is the controller's HTTP API (docs/api.md) over a small
// Backend interface: routing and method checks (handler.go), object CRUD
// with linearizable, stale and blocking reads (objects.go, reads.go), VM
// actions (vm_actions.go), worker reports (reports.go), the event stream
// (events.go), forwarding to the leader (forward.go), cluster status and
// membership (cluster.go), errors and their HTTP answers (errors.go),
// strict body and query decoding (decode.go), and the kumoi_ metrics
// (metrics.go).
//
// Every write takes one shape: forward to the leader if this node does not
// lead, decode and validate the body strictly, stamp time and ids, propose
// through Backend.Apply, answer with the object and X-Kumoi-Index.
//
// It must not import hashicorp/raft (the controller maps Raft's errors
// onto resource's once) nor any other cluster/ role package: the agent
// wires a controller in as the Backend, and tests use a bare FSM.
package api
