package fsm

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// writer accumulates the effects of one command inside a transaction.
type writer struct {
	txn     *memdb.Txn
	index   uint64
	caches  *indexCaches // the store's indexers' (nil: nothing primed)
	objects []*resource.Object
	events  []resource.Event
	// touched hosts get their allocation recomputed before commit.
	touched map[string]bool
	// itemErrs are per-item outcomes of place and report commands.
	itemErrs []error
	// resErrs are the outcomes of a report's resource reports.
	resErrs []error
	// touchedNets and touchedVols get their status recomputed before
	// commit (devices.go); netNext is where each network's next dynamic
	// allocation starts, as this entry left it.
	touchedNets, touchedVols map[string]bool
	netNext                  map[string]string
	// heldDeltas is how many addresses the entry moved onto (or off)
	// each network; recountNets are counted from the index instead
	// (devices.go, netHeld).
	heldDeltas  map[string]int64
	recountNets map[string]bool
	// usageMoves are the entry's changes of projects' usage, applied
	// (and the quotas checked) before commit (projects.go);
	// recountProjects are counted from their members instead.
	usageMoves      []usageMove
	recountProjects []string
	// wrote: txn was changed (a failure after that needs a rollback).
	wrote bool
	// accessor is the accessor ID of the token that made the command
	// (AccessorRequest), "" for the controllers' own commands: objects
	// the command writes get it as ModifiedBy, its events as Accessor.
	accessor string
	// count counts a kind's objects as this entry sees them (counts.go);
	// nil: no cap.
	count func(*writer, resource.Kind) int
	// evDelta is what events[:evCounted] create minus delete, per kind
	// (counts.go: objectCount moves it on, so that a batch of N creates
	// costs O(N), not O(N²)).
	evDelta   kindCounts
	evCounted int
	// uses remembers hostUseTxn by host (applycache.go); placing: the VM
	// being written is placeOne's, which updates uses itself.
	uses    map[string]hostUse
	placing bool
	// groups remembers placedMembers by group (applycache.go).
	groups map[string][]GroupMember
	// hostDecs remembers what hostRead decoded (applycache.go).
	hostDecs map[*resource.Object]hostDecode
}

func (w *writer) lookup(kind resource.Kind, name string, cas uint64) (*resource.Object, error) {
	if _, ok := resource.Lookup(kind); !ok {
		return nil, resource.Errorf("kind", "unknown kind %q", kind)
	}
	cur, err := getTxn(w.txn, nil, kind, name)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	if cas != 0 && cur.ModifyIndex != cas {
		return nil, fmt.Errorf("%s %q: %w: it is %d, the request expected %d (re-read the object and retry)",
			kind, name, ErrCASMismatch, cur.ModifyIndex, cas)
	}
	return cur, nil
}

func (w *writer) put(o *resource.Object, evType string) error {
	return w.putObject(o, evType, true)
}

// putObject writes o; stamp: record the command's accessor on it (not
// for changes derived from another object's, such as a host's
// allocation; the event names the accessor either way).
func (w *writer) putObject(o *resource.Object, evType string, stamp bool) error {
	old, moved, err := w.projectOld(o)
	if err != nil {
		return err
	}
	return w.putOver(o, evType, stamp, old, moved)
}

// putCreated writes o, a new object whose name create has just found
// free (so there is no stored version to look up): inserted as new
// (memdb's InsertNew, third_party/go-memdb), which refuses an id another
// object has (ErrExists; the transaction then holds part of the insert,
// and the failed entry's writes are rolled back as any failed entry's).
func (w *writer) putCreated(o *resource.Object) error {
	return w.put1(o, resource.EventCreated, true, nil, hasProject(o.Kind), true)
}

// putOver writes o over old (projectOld's: the stored version whose
// project usage moves, and whether it moves).
func (w *writer) putOver(o *resource.Object, evType string, stamp bool, old *resource.Object, moved bool) error {
	return w.put1(o, evType, stamp, old, moved, false)
}

// put1 is putOver, with fresh: o is new (putCreated).
func (w *writer) put1(o *resource.Object, evType string, stamp bool, old *resource.Object, moved, fresh bool) error {
	if stamp && w.accessor != "" {
		o.ModifiedBy = w.accessor
	}
	if o.Kind == resource.KindVM && !w.placing {
		w.vmWritten()
	}
	w.wrote = true
	if fresh {
		if err := w.txn.InsertNew(tableObjects, o); errors.Is(err, memdb.ErrNotNew) {
			return fmt.Errorf("object id %q: %w", o.ID, ErrExists)
		} else if err != nil {
			return fmt.Errorf("fsm: insert %s: %w", o, err)
		}
	} else if err := w.txn.Insert(tableObjects, o); err != nil {
		return fmt.Errorf("fsm: insert %s: %w", o, err)
	}
	if moved {
		w.projectWritten(old, o)
		if o.Kind == resource.KindVM {
			if old != nil {
				w.moveHeld(old, -1)
			}
			w.moveHeld(o, 1)
		}
	}
	// The kind's index is recorded at commit, from the events.
	w.objects = append(w.objects, o)
	w.events = append(w.events, resource.Event{Index: w.index, Type: evType, Kind: o.Kind, Name: o.Name, Object: o, Accessor: w.accessor})
	return nil
}

// decodeState decodes o's spec and status; a payload that does not
// decode is ErrBadPayload.
func decodeState[S, T any](o *resource.Object) (*S, *T, error) {
	spec, err := resource.DecodeSpec[S](o)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	st, err := resource.DecodeStatus[T](o)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	return spec, st, nil
}

func (w *writer) vm(name string) (*resource.Object, *resource.VMSpec, *resource.VMStatus, error) {
	o, err := getTxn(w.txn, nil, resource.KindVM, name)
	if err != nil {
		return nil, nil, nil, err
	}
	if o == nil {
		return nil, nil, nil, fmt.Errorf("vm %q: %w", name, ErrNotFound)
	}
	spec, st, err := decodeState[resource.VMSpec, resource.VMStatus](o)
	if err != nil {
		return nil, nil, nil, err
	}
	primeStatusFields(w.caches, o.Status, st)
	return o, spec, st, nil
}

func (w *writer) host(name string) (*resource.Object, *resource.HostSpec, *resource.HostStatus, error) {
	o, err := getTxn(w.txn, nil, resource.KindHost, name)
	if err != nil {
		return nil, nil, nil, err
	}
	if o == nil {
		return nil, nil, nil, fmt.Errorf("host %q: %w", name, ErrNotFound)
	}
	spec, st, err := decodeState[resource.HostSpec, resource.HostStatus](o)
	if err != nil {
		return nil, nil, nil, err
	}
	spec.Default()
	return o, spec, st, nil
}

// putVMStatus writes a VM's new status (and marks the hosts involved).
func (w *writer) putVMStatus(o *resource.Object, old, st *resource.VMStatus) error {
	raw, err := resource.MarshalVMStatus(st)
	if err != nil {
		return err
	}
	primeStatusFields(w.caches, raw, st)
	n := o.Copy()
	n.Status = raw
	n.ModifyIndex = w.index
	w.touch(old.Host)
	w.touch(st.Host)
	if old.Migration != nil {
		w.touch(old.Migration.Target)
	}
	if st.Migration != nil {
		w.touch(st.Migration.Target)
	}
	return w.put(n, resource.EventUpdated)
}
