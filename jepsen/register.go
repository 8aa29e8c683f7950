package jepsen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// RegisterLabel is the label of a register VM that holds its value.
const RegisterLabel = "jepsen-value"

// Register is the register workload: each of Keys VMs holds one register in
// its RegisterLabel label. Operations:
//
//   - read: a linearizable GET of the VM; the output is the label.
//   - write: a blind PUT of the labels {RegisterLabel: v} (no CAS).
//   - cas(old, new): a GET, recorded as a read, then a PUT with CAS set to
//     the modify_index that GET returned. If it succeeds, the object had
//     not changed since the GET, so the register still held old.
//
// Every written value is unique. The model is a register per key; a cas
// that failed (409) did nothing and is left out, since its modify_index
// may have changed for other reasons than the value.
type Register struct {
	Keys int

	seq atomic.Int64
}

// Name is "register".
func (r *Register) Name() string { return "register" }

func (r *Register) key(i int) string { return "jepsen-reg-" + strconv.Itoa(i) }

// registerInit is the value every register starts with.
const registerInit = "0"

// Setup creates the register VMs.
func (r *Register) Setup(ctx context.Context, env *Env) error {
	c := env.AnyClient()
	for i := 0; i < r.Keys; i++ {
		name := r.key(i)
		err := retry(ctx, 30*time.Second, func(ctx context.Context) error {
			_, err := createVM(ctx, c, name, map[string]string{RegisterLabel: registerInit})
			if errors.Is(err, client.ErrAlreadyExists) {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("create register %s: %w", name, err)
		}
	}
	return nil
}

// Run issues reads, writes and cas operations on random keys.
func (r *Register) Run(ctx context.Context, env *Env, worker int, process func() int, rng *rand.Rand, h *History) {
	c := env.Client(env.URLs[worker%len(env.URLs)])
	p := process()
	for env.Wait(ctx) {
		key := r.key(rng.Intn(r.Keys))
		st := StatusOK
		switch x := rng.Intn(10); {
		case x < 4:
			if _, ok := r.read(ctx, env, c, p, key, h); !ok {
				st = StatusFail
			}
		case x < 7:
			st = r.write(ctx, env, c, p, key, h)
		default:
			obj, ok := r.read(ctx, env, c, p, key, h)
			if !ok {
				st = StatusFail
				break
			}
			if ctx.Err() == nil {
				st = r.cas(ctx, env, c, p, key, obj, h)
			}
		}
		p = afterOp(ctx, st, p, process)
	}
}

func (r *Register) next() string { return strconv.FormatInt(r.seq.Add(1), 10) }

func (r *Register) read(ctx context.Context, env *Env, c *client.Client, p int, key string, h *History) (*resource.Object, bool) {
	op := Op{Process: p, Kind: "read", Key: key, Invoke: h.Now()}
	octx, cancel := context.WithTimeout(ctx, env.OpTimeout)
	defer cancel()
	obj, _, err := c.Get(octx, resource.KindVM, key, nil)
	if err != nil {
		h.Add(op, StatusFail, err) // a read changes nothing: any error is a failure
		return nil, false
	}
	op.Output = Value{Value: obj.Labels[RegisterLabel]}
	h.Add(op, StatusOK, nil)
	return obj, true
}

func (r *Register) write(ctx context.Context, env *Env, c *client.Client, p int, key string, h *History) Status {
	v := r.next()
	op := Op{Process: p, Kind: "write", Key: key, Input: Value{Value: v}, Invoke: h.Now()}
	octx, cancel := context.WithTimeout(ctx, env.OpTimeout)
	defer cancel()
	_, err := c.Update(octx, resource.KindVM, key, &resource.Object{
		Labels: map[string]string{RegisterLabel: v}, Spec: vmSpec}, nil)
	st := writeOutcome(err)
	h.Add(op, st, err)
	return st
}

func (r *Register) cas(ctx context.Context, env *Env, c *client.Client, p int, key string, read *resource.Object, h *History) Status {
	v := r.next()
	old := read.Labels[RegisterLabel]
	op := Op{Process: p, Kind: "cas", Key: key, Input: Value{Value: v, Old: old}, Invoke: h.Now()}
	octx, cancel := context.WithTimeout(ctx, env.OpTimeout)
	defer cancel()
	obj := read.Copy()
	obj.Labels = map[string]string{RegisterLabel: v}
	_, err := c.Update(octx, resource.KindVM, key, obj, &client.WriteOptions{CAS: read.ModifyIndex})
	st := writeOutcome(err)
	h.Add(op, st, err)
	return st
}

// Final reads every key once, through any controller.
func (r *Register) Final(ctx context.Context, env *Env, h *History) error {
	for i := 0; i < r.Keys; i++ {
		key := r.key(i)
		err := retry(ctx, 30*time.Second, func(ctx context.Context) error {
			for _, u := range env.URLs {
				if _, ok := r.read(ctx, env, env.Client(u), -1, key, h); ok {
					return nil
				}
			}
			return fmt.Errorf("no controller answered a read of %s", key)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// registerModel is the porcupine model of one register; partitioned by key.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regIn).Key
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(by))
		for _, k := range slices.Sorted(maps.Keys(by)) {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return registerInit },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(string), input.(regIn)
		switch in.Kind {
		case "read":
			return output.(string) == s, s
		case "write":
			return true, in.New
		case "cas":
			if s == in.Old {
				return true, in.New
			}
			// Only an unknown cas is in the history with a state it
			// does not match: it did not take effect there.
			return !in.Acked, s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regIn)
		switch in.Kind {
		case "read":
			return fmt.Sprintf("%s read → %q", in.Key, output)
		case "write":
			return fmt.Sprintf("%s write %q%s", in.Key, in.New, ackNote(in.Acked))
		default:
			return fmt.Sprintf("%s cas %q→%q%s", in.Key, in.Old, in.New, ackNote(in.Acked))
		}
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
}

func ackNote(acked bool) string {
	if acked {
		return ""
	}
	return " (unknown)"
}

// regIn is the input of a register operation for porcupine.
type regIn struct {
	Kind, Key, Old, New string
	Acked               bool
}

// porcupineOps turns the history into porcupine operations: ok reads, ok
// and unknown writes and cas operations; failures did nothing and are left
// out. It also returns, for each porcupine operation, its Op.
func porcupineOps(ops []Op) ([]porcupine.Operation, []Op) {
	var out []porcupine.Operation
	var src []Op
	for _, op := range ops {
		if op.Status == StatusFail || (op.Kind == "read" && op.Status != StatusOK) {
			continue
		}
		in := regIn{Kind: op.Kind, Key: op.Key, Old: op.Input.Old, New: op.Input.Value, Acked: op.Status == StatusOK}
		p := op.Process
		if p < 0 {
			p = 0
		}
		out = append(out, porcupine.Operation{ClientId: p, Input: in, Call: op.Invoke, Output: op.Output.Value, Return: op.Return})
		src = append(src, op)
	}
	return out, src
}

// CheckTimeout bounds the linearizability check of one history.
var CheckTimeout = 2 * time.Minute

// Check checks the history for linearizability, key by key, and writes
// porcupine's visualisation to out/history.html.
func (r *Register) Check(ops []Op, faults []FaultWindow, out string) Check {
	pops, src := porcupineOps(ops)
	res, info := porcupine.CheckOperationsVerbose(registerModel, pops, CheckTimeout)
	chk := Check{Valid: res == porcupine.Ok}
	if out != "" {
		var notes []porcupine.Annotation
		for _, f := range faults {
			notes = append(notes, porcupine.Annotation{Tag: "nemesis", Start: f.Start, End: f.End,
				Description: f.Nemesis, Details: f.What + " " + f.Error, BackgroundColor: "#fbd3d3"})
		}
		info.AddAnnotations(notes)
		if err := porcupine.VisualizePath(registerModel, info, filepath.Join(out, "history.html")); err != nil {
			chk.Notes = append(chk.Notes, "history.html: "+err.Error())
		}
	}
	switch res {
	case porcupine.Unknown:
		chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "check-timeout",
			Detail: fmt.Sprintf("the linearizability check did not finish within %s: the run is not known to be valid", CheckTimeout)})
	case porcupine.Illegal:
		// Find the keys that are not linearizable, one by one.
		byKey := map[string][]int{}
		for i, op := range src {
			byKey[op.Key] = append(byKey[op.Key], i)
		}
		for _, k := range slices.Sorted(maps.Keys(byKey)) {
			var kops []porcupine.Operation
			var kSrc []Op
			for _, i := range byKey[k] {
				kops = append(kops, pops[i])
				kSrc = append(kSrc, src[i])
			}
			if porcupine.CheckOperationsTimeout(registerModel, kops, CheckTimeout) == porcupine.Illegal {
				detail := fmt.Sprintf("the history of %s is not linearizable (%d operations; see history.html for the longest linearizable prefix)", k, len(byKey[k]))
				if at, ok := violation(kSrc); ok {
					detail += fmt.Sprintf("; it stops being linearizable when an operation ends at %.6f s: listed are the operations that ended last by then, in the order they ended, that one last", float64(at)/1e9)
					kSrc = endedBy(kSrc, at, 200)
				} else if len(kSrc) > 200 {
					kSrc = kSrc[len(kSrc)-200:]
				}
				chk.Anomalies = append(chk.Anomalies, Anomaly{Type: "nonlinearizable", Key: k, Detail: detail, Ops: kSrc})
			}
		}
	}
	return chk
}

// violationCheckTimeout bounds each check of violation's search.
const violationCheckTimeout = 10 * time.Second

// violation finds where the history of one key stops being linearizable:
// the earliest time at such that the operations invoked before it are not,
// an operation still running then taken as unknown (a read as not
// answered). That set only grows with the time, and a read's value can only
// come from a write invoked before the read ended, so the search is a
// bisection; the operation that ends at the time found is the one no
// order explains. false: the whole history is linearizable, or a check
// timed out.
func violation(ops []Op) (at int64, ok bool) {
	if len(ops) == 0 {
		return 0, false
	}
	lo, hi := ops[0].Invoke, int64(math.MinInt64)
	for _, o := range ops {
		lo = min(lo, o.Invoke)
		if o.Status == StatusOK {
			hi = max(hi, o.Return)
		}
	}
	legal := func(t int64) (bool, bool) {
		var cut []Op
		for _, o := range ops {
			if o.Invoke >= t {
				continue
			}
			if o.Return > t {
				if o.Kind == "read" {
					continue
				}
				o.Status, o.Return = StatusUnknown, math.MaxInt64
			}
			cut = append(cut, o)
		}
		pops, _ := porcupineOps(cut)
		switch porcupine.CheckOperationsTimeout(registerModel, pops, violationCheckTimeout) {
		case porcupine.Ok:
			return true, true
		case porcupine.Illegal:
			return false, true
		}
		return false, false
	}
	if l, done := legal(hi); l || !done {
		return 0, false
	}
	// legal(lo) holds: nothing was invoked before lo.
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		l, done := legal(mid)
		if !done {
			return 0, false
		}
		if l {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi, true
}

// endedBy returns at most n of ops invoked before at: those that ended
// last by then, in the order they ended (those still running at at just
// before those that ended then: the one that ended at at, the operation
// no order explains, is last).
func endedBy(ops []Op, at int64, n int) []Op {
	var out []Op
	for _, o := range ops {
		if o.Invoke < at {
			out = append(out, o)
		}
	}
	order := func(a, b Op) int {
		return cmp.Or(cmp.Compare(min(a.Return, at), min(b.Return, at)),
			cmp.Compare(boolInt(a.Return <= at), boolInt(b.Return <= at)), // running before ended
			cmp.Compare(a.Invoke, b.Invoke))
	}
	slices.SortStableFunc(out, order)
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
