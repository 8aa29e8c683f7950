package jepsen

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
)

// The checkers must be able to fail: hand-made histories with known
// anomalies, and their valid twins.

func okOp(p int, kind, key string, in, out Value, invoke, ret int64) Op {
	return Op{Process: p, Kind: kind, Key: key, Input: in, Output: out, Status: StatusOK, Invoke: invoke, Return: ret, Ended: ret}
}

func unknownOp(p int, kind, key string, in Value, invoke int64) Op {
	return Op{Process: p, Kind: kind, Key: key, Input: in, Status: StatusUnknown, Invoke: invoke, Return: math.MaxInt64, Ended: invoke + 5}
}

func TestRegisterCheck(t *testing.T) {
	r := &Register{Keys: 2}
	for _, tc := range []struct {
		name  string
		ops   []Op
		valid bool
	}{
		{"write then read", []Op{
			okOp(0, "write", "a", Value{Value: "1"}, Value{}, 0, 10),
			okOp(1, "read", "a", Value{}, Value{Value: "1"}, 20, 30),
		}, true},
		{"stale read after an acknowledged write", []Op{
			okOp(0, "write", "a", Value{Value: "1"}, Value{}, 0, 10),
			okOp(1, "read", "a", Value{}, Value{Value: registerInit}, 20, 30),
		}, false},
		{"unknown write seen later", []Op{
			unknownOp(0, "write", "a", Value{Value: "1"}, 0),
			okOp(1, "read", "a", Value{}, Value{Value: registerInit}, 20, 30),
			okOp(1, "read", "a", Value{}, Value{Value: "1"}, 40, 50),
		}, true},
		{"unknown write seen, then gone", []Op{
			unknownOp(0, "write", "a", Value{Value: "1"}, 0),
			okOp(1, "read", "a", Value{}, Value{Value: "1"}, 20, 30),
			okOp(1, "read", "a", Value{}, Value{Value: registerInit}, 40, 50),
		}, false},
		{"acknowledged cas from a value the register did not hold", []Op{
			okOp(0, "write", "a", Value{Value: "1"}, Value{}, 0, 10),
			okOp(1, "cas", "a", Value{Old: registerInit, Value: "2"}, Value{}, 20, 30),
		}, false},
		{"unknown cas that cannot apply", []Op{
			okOp(0, "write", "a", Value{Value: "1"}, Value{}, 0, 10),
			unknownOp(1, "cas", "a", Value{Old: registerInit, Value: "2"}, 20),
			okOp(1, "read", "a", Value{}, Value{Value: "1"}, 40, 50),
		}, true},
		{"keys are independent", []Op{
			okOp(0, "write", "a", Value{Value: "1"}, Value{}, 0, 10),
			okOp(1, "read", "b", Value{}, Value{Value: registerInit}, 20, 30),
			okOp(1, "read", "a", Value{}, Value{Value: "1"}, 40, 50),
		}, true},
		{"failed write ignored", []Op{
			{Process: 0, Kind: "write", Key: "a", Input: Value{Value: "1"}, Status: StatusFail, Invoke: 0, Return: 10},
			okOp(1, "read", "a", Value{}, Value{Value: registerInit}, 20, 30),
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chk := r.Check(tc.ops, nil, "")
			if chk.Valid != tc.valid {
				t.Fatalf("valid = %v, want %v; anomalies %+v", chk.Valid, tc.valid, chk.Anomalies)
			}
			if !tc.valid && (len(chk.Anomalies) != 1 || chk.Anomalies[0].Type != "nonlinearizable" || chk.Anomalies[0].Key != "a") {
				t.Fatalf("anomalies = %+v, want one nonlinearizable on key a", chk.Anomalies)
			}
		})
	}
}

func TestSetCheck(t *testing.T) {
	create := func(name string, st Status) Op {
		return Op{Kind: "create", Key: name, Input: Value{Value: name}, Status: st}
	}
	ops := []Op{create("x", StatusOK), create("y", StatusUnknown), create("z", StatusFail), create("w", StatusUnknown)}
	for _, tc := range []struct {
		name  string
		final []string
		want  []string // anomaly types
	}{
		{"all there", []string{"x", "y"}, nil},
		{"unknown absent", []string{"x"}, nil},
		{"lost", []string{"y"}, []string{"lost"}},
		{"failed create present", []string{"x", "z"}, []string{"unexpected"}},
		{"never attempted", []string{"x", "q"}, []string{"unexpected"}},
		{"duplicate", []string{"x", "x"}, []string{"duplicate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Set{final: tc.final}
			chk := s.Check(ops, nil, "")
			var got []string
			for _, a := range chk.Anomalies {
				got = append(got, a.Type)
			}
			if chk.Valid != (len(tc.want) == 0) || len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
				t.Fatalf("valid %v, anomalies %v; want %v", chk.Valid, got, tc.want)
			}
		})
	}
}

// TestRegisterCheckListsTheViolation: the operations an anomaly lists
// are those that ended last where the history stops being linearizable
// (with the one that breaks it), not the history's last: a stale read
// early in a long history is listed, and the detail says when it ended.
func TestRegisterCheckListsTheViolation(t *testing.T) {
	var ops []Op
	tm := int64(0)
	write := func(v string) {
		ops = append(ops, okOp(0, "write", "a", Value{Value: v}, Value{}, tm, tm+10))
		tm += 20
	}
	read := func(p int, v string) {
		ops = append(ops, okOp(p, "read", "a", Value{}, Value{Value: v}, tm, tm+10))
		tm += 20
	}
	var stale Op
	for i := range 300 {
		write(strconv.Itoa(i))
		read(0, strconv.Itoa(i))
		if i == 100 {
			read(1, "99") // stale: 100 was acknowledged before it began
			stale = ops[len(ops)-1]
		}
	}
	chk := (&Register{Keys: 1}).Check(ops, nil, "")
	if chk.Valid || len(chk.Anomalies) != 1 {
		t.Fatalf("valid %v, anomalies %+v", chk.Valid, chk.Anomalies)
	}
	a := chk.Anomalies[0]
	if len(a.Ops) == 0 || len(a.Ops) > 200 || a.Ops[len(a.Ops)-1] != stale {
		t.Fatalf("%d operations listed, the last %+v; want the stale read %+v last", len(a.Ops), a.Ops[len(a.Ops)-1], stale)
	}
	if want := fmt.Sprintf("%.6f s", float64(stale.Return)/1e9); !strings.Contains(a.Detail, want) {
		t.Fatalf("detail %q does not say the violation's time %s", a.Detail, want)
	}
}
