package hypervisor

import "time"

// Observation is one line of a driver's observation log (the drivers'
// Options.ObservationLog): a domain became active, or ceased to be, on a
// host. The chaos harness reads these lines from every host to prove that no
// VM was ever active on two hosts at once. A driver writes a start no later
// than the domain starts (before it asks the hypervisor, or when it first
// sees the domain active) and a stop no earlier than the domain has stopped
// (once it has seen it off), so each start..stop interval covers the real one.
type Observation struct {
	Time   time.Time `json:"time"`
	Host   string    `json:"host"`
	Domain string    `json:"domain"`
	VMID   string    `json:"vm_id"`
	Epoch  uint64    `json:"epoch"`
	Event  string    `json:"event"` // ObserveStart or ObserveStop
	Reason string    `json:"reason,omitempty"`
}

// Observation events.
const (
	ObserveStart = "start"
	ObserveStop  = "stop"
)
