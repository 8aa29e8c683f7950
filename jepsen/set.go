package jepsen

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// SetLabel labels the VMs of a set run with the run id.
const SetLabel = "jepsen-set"

// Set is the set workload: every operation creates a VM with a new unique
// name; after the faults are healed one linearizable list reads them all.
// No acknowledged create may be missing, no VM may be present that was
// never attempted, and none may appear twice.
type Set struct {
	final []string // names in the final list, in its order
}

// Name is "set".
func (s *Set) Name() string { return "set" }

// Setup does nothing.
func (s *Set) Setup(context.Context, *Env) error { return nil }

// Run creates VMs named set-<worker>-<n>.
func (s *Set) Run(ctx context.Context, env *Env, worker int, process func() int, _ *rand.Rand, h *History) {
	c := env.Client(env.URLs[worker%len(env.URLs)])
	p := process()
	for n := 0; env.Wait(ctx); n++ {
		name := fmt.Sprintf("set-%d-%d", worker, n)
		op := Op{Process: p, Kind: "create", Key: name, Input: Value{Value: name}, Invoke: h.Now()}
		octx, cancel := context.WithTimeout(ctx, env.OpTimeout)
		_, err := createVM(octx, c, name, map[string]string{SetLabel: env.RunID})
		cancel()
		st := writeOutcome(err)
		h.Add(op, st, err)
		p = afterOp(ctx, st, p, process)
	}
}

// Final lists the run's VMs with a linearizable read.
func (s *Set) Final(ctx context.Context, env *Env, h *History) error {
	c := env.AnyClient()
	return retry(ctx, 30*time.Second, func(ctx context.Context) error {
		op := Op{Process: -1, Kind: "list", Invoke: h.Now()}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		objs, _, err := c.List(lctx, resource.KindVM, &client.QueryOptions{Selector: SetLabel + "=" + env.RunID})
		if err != nil {
			h.Add(op, StatusFail, err)
			return err
		}
		s.final = s.final[:0]
		for _, o := range objs {
			s.final = append(s.final, o.Name)
		}
		op.Output = Value{Value: fmt.Sprintf("%d objects", len(objs))}
		h.Add(op, StatusOK, nil)
		return nil
	})
}

// Check compares the final list with the creates.
func (s *Set) Check(ops []Op, _ []FaultWindow, _ string) Check {
	attempted := map[string]Op{}
	for _, op := range ops {
		if op.Kind == "create" {
			attempted[op.Key] = op
		}
	}
	seen := map[string]int{}
	for _, n := range s.final {
		seen[n]++
	}
	var lost, unexpected, dups []Op
	var unexpectedNames, dupNames []string
	for name, op := range attempted {
		if op.Status == StatusOK && seen[name] == 0 {
			lost = append(lost, op)
		}
	}
	for name, k := range seen {
		op, ok := attempted[name]
		switch {
		case !ok || op.Status == StatusFail:
			unexpectedNames = append(unexpectedNames, name)
			if ok {
				unexpected = append(unexpected, op)
			}
		case k > 1:
			dupNames = append(dupNames, name)
			dups = append(dups, op)
		}
	}
	sortOps(lost)
	sortOps(unexpected)
	sortOps(dups)
	sort.Strings(unexpectedNames)
	sort.Strings(dupNames)
	var chk Check
	if len(lost) > 0 {
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "lost",
			Detail: fmt.Sprintf("%d acknowledged creates are missing from the final list", len(lost)), Ops: lost})
	}
	if len(unexpectedNames) > 0 {
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "unexpected",
			Detail: fmt.Sprintf("%d VMs are present that were never attempted or whose create failed: %s", len(unexpectedNames), strings.Join(unexpectedNames, ", ")),
			Ops:    unexpected})
	}
	if len(dupNames) > 0 {
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "duplicate",
			Detail: fmt.Sprintf("%d names appear more than once in the final list: %s", len(dupNames), strings.Join(dupNames, ", ")), Ops: dups})
	}
	var unknownPresent, unknownAbsent int
	for name, op := range attempted {
		if op.Status == StatusUnknown {
			if seen[name] > 0 {
				unknownPresent++
			} else {
				unknownAbsent++
			}
		}
	}
	chk.Notes = append(chk.Notes, fmt.Sprintf("final list: %d VMs; creates of unknown outcome: %d present, %d absent",
		len(s.final), unknownPresent, unknownAbsent))
	chk.Valid = len(chk.Anomalies) == 0
	return chk
}

func sortOps(ops []Op) {
	sort.Slice(ops, func(i, j int) bool { return ops[i].Invoke < ops[j].Invoke })
}
