// Package agent wires the cluster/ roles into running agents: Start runs a
// controller with the HTTP API in front of it (controller.Controller as the
// api.Backend, the API's metrics wired to the state machine), StartDev runs
// a whole dev cluster in one process (controllers plus workers on the sim
// driver), and Registry is the process-wide Prometheus registry (Kumoi's,
// Raft's and memberlist's metrics).
//
// The agent is the only package that imports several roles; nothing in
// cluster/ imports it. Its tests are the in-process integration tests of
// the roles together: bootstrap and membership, workers and HA, fencing
// under partitions, policies, libvirt reconciliation.
package agent
