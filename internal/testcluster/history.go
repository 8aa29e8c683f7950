package testcluster

import "time"

// Kinds of ProcEvent.
const (
	ProcStart = "start"
	ProcExit  = "exit"
	// ProcPause and ProcResume: the harness sent SIGSTOP (Pause,
	// PauseWorker) or SIGCONT (Resume, ResumeWorker); the time is taken
	// right before the signal.
	ProcPause  = "pause"
	ProcResume = "resume"
)

// ProcEvent is one start or exit of a node's process, as the harness saw
// it. A start's Time is taken right after the process was created (it can
// have done nothing before); an exit's right after the harness saw it
// exit (wait(2) returned: the process and, with the sim driver, every
// domain it ran are gone), so it is no earlier than the real exit.
type ProcEvent struct {
	Node string    `json:"node"`
	Kind string    `json:"kind"` // ProcStart, ProcExit, ProcPause or ProcResume
	Time time.Time `json:"time"`
	Pid  int       `json:"pid"`
	// Expected (exit): the harness had killed or stopped the process
	// (false: it exited on its own).
	Expected bool `json:"expected,omitempty"`
	// Signal (exit) is the last signal the harness sent to end the
	// process ("killed" for SIGKILL, "terminated" for SIGTERM), if any.
	Signal string `json:"signal,omitempty"`
	// How (exit) is how it ended: "signal: killed", "exit status 0", … .
	How string `json:"how,omitempty"`
}

// ObservationLogSuffix ends the name of a worker's observation log,
// <log dir>/<worker name>.observations.jsonl.
const ObservationLogSuffix = ".observations.jsonl"

// History lists every start and exit (and pause and resume) of controller
// i's process, oldest first.
func (c *Cluster) History(i int) []ProcEvent { return c.history(c.node(i)) }

// WorkerHistory lists every start and exit (and pause and resume) of
// worker w's process, oldest first: when the harness killed it (the exit of a SIGKILL, Signal
// "killed") and restarted it. A process that is running has a start
// without an exit after it.
func (c *Cluster) WorkerHistory(w int) []ProcEvent { return c.history(c.worker(w)) }

func (c *Cluster) history(n *node) []ProcEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ProcEvent(nil), n.history...)
}

// WorkerObservationLog is the file worker w's driver appends to
// (`kumoi agent --worker --observation-log FILE`): one JSON line
// (hypervisor.Observation) per domain start and stop on its host, from
// every start of the worker. It is next to the worker's log
// (Options.LogDir, else the cluster's temporary directory).
//
// A worker killed with SIGKILL writes no stop for the domains that die
// with it (sim driver): use WorkerHistory's exits to close them.
func (c *Cluster) WorkerObservationLog(w int) string { return c.worker(w).obsPath }
