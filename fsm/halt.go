package fsm

import (
	"errors"
	"fmt"
)

// Halting. A log entry is either understood by this build — then applying
// it either succeeds or fails with a business error (validation, CAS,
// capacity, wrong phase: an error Result, the state unchanged), the same
// on every replica — or it is not: an empty entry, an unknown message type
// without IgnoreUnknownTypeFlag, a payload that does not decode strictly
// (the entry's, a batch's or one of its operations'), or a panic in an
// applier. Skipping such an entry would let this replica silently diverge
// from the ones that apply it, so the FSM halts instead: it records the
// first such entry (Halted, HaltedCh), applies nothing of it and nothing
// after it (every later entry's Result wraps ErrHalted and changes
// nothing; AppliedIndex stays at the last entry applied), refuses to take
// or restore snapshots, and stays halted until the process restarts. Its
// owner must take the node out of service (cluster/controller does).
//
// Whether an entry is understood depends only on its bytes, never on the
// state: a batch's operations are all decoded before the first is applied.

var (
	// ErrHalted is wrapped by every error of a halted FSM: the *HaltError
	// of the entry that halted it, and the Result of every entry after it.
	ErrHalted = errors.New("the state machine has halted")
	// ErrApplyPanic is the cause of a halt due to a panic in an applier (a
	// bug).
	ErrApplyPanic = errors.New("panic while applying a log entry (a bug)")
)

// HaltError describes the entry that halted an FSM. It wraps ErrHalted
// and its Cause (ErrUnknownCommand, ErrBadPayload or ErrApplyPanic).
type HaltError struct {
	Index uint64      // the entry's log index
	Type  MessageType // its type byte (0 for an empty entry)
	Cause error
}

func (e *HaltError) Error() string {
	return fmt.Sprintf("%s at log entry %d (%s): %v", ErrHalted, e.Index, e.Type, e.Cause)
}

// Unwrap returns ErrHalted and the cause.
func (e *HaltError) Unwrap() []error { return []error{ErrHalted, e.Cause} }

// Halted returns the *HaltError of the entry that halted f, or nil while
// f applies the log.
func (f *FSM) Halted() error {
	if he := f.halt.Load(); he != nil {
		return he
	}
	return nil
}

// HaltedCh is closed when f halts.
func (f *FSM) HaltedCh() <-chan struct{} { return f.haltCh }

// haltAt halts f (if it is not halted already) with he and returns the
// error of he's entry.
func (f *FSM) haltAt(he *HaltError) error {
	if f.halt.CompareAndSwap(nil, he) {
		close(f.haltCh)
		f.logger.Error("HALTED: this node cannot apply a committed log entry and stops applying the log; "+
			"skipping it would make this replica diverge from the others. "+
			"This build cannot apply the cluster's log: upgrade it, or remove and replace the node",
			"index", he.Index, "type", he.Type.String(), "error", he.Cause, "last_applied", f.applied.Load())
	}
	return he
}

// notApplied is the Result error of an entry given to a halted FSM.
func notApplied(index uint64, he *HaltError) error {
	return fmt.Errorf("%w: log entry %d not applied (halted at entry %d (%s): %v)", ErrHalted, index, he.Index, he.Type, he.Cause)
}
