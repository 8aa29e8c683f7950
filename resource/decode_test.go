package resource

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestNormalizeSpecStaysTolerant: the state machine's NormalizeSpec applies
// logged specs as older rules accepted them (case-folded names, 0 as
// default); requests go through NormalizeRequestSpec, which refuses them.
func TestNormalizeSpecStaysTolerant(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		raw  string
	}{
		{KindVM, `{"CPUS":1,"memory_mib":1}`},
		{KindVM, `{"cpus":1,"memory_mib":1,"boot":{"kernel":"/k","cmdline":"a\u0001b"}}`},
		{KindHost, `{"cpu_overcommit":0}`},
		{KindPolicy, `{"source":"x","max_steps":0}`},
	} {
		if _, err := NormalizeSpec(tc.kind, json.RawMessage(tc.raw)); err != nil {
			t.Errorf("NormalizeSpec(%s) = %v; want it accepted (older log entries)", tc.raw, err)
		}
		_, err := NormalizeRequestSpec(tc.kind, json.RawMessage(tc.raw))
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("NormalizeRequestSpec(%s) = %v; want a FieldError", tc.raw, err)
		}
	}
	// The canonical output of a request is a fixed point of NormalizeSpec.
	out, err := NormalizeRequestSpec(KindHost, json.RawMessage(`{"cpu_overcommit":2}`))
	if err != nil {
		t.Fatal(err)
	}
	again, err := NormalizeSpec(KindHost, out)
	if err != nil || string(again) != string(out) {
		t.Fatalf("NormalizeSpec(%s) = %s, %v", out, again, err)
	}
}

func TestCheckSurrogates(t *testing.T) {
	for in, ok := range map[string]bool{
		`"a"`:                true,
		`"\ud83d\ude00"`:     true,
		`"\\ud800"`:          true, // an escaped backslash, then text
		`"\ud800"`:           false,
		`"\udc00"`:           false,
		`"\ud800\u0041"`:     false,
		`"\ud800`:            false,
		`{"\ud800":1}`:       false,
		`"x\"\ud83d\ude00"`:  true,
		`"\u00e9\u212a"`:     true,
		`"\uD83D\uDE00"`:     true,
		`"\ud83d\ude00\udc"`: true, // malformed escape: the JSON parser reports it
	} {
		if _, got := checkSurrogates([]byte(in)); got != ok {
			t.Errorf("checkSurrogates(%s) = %v, want %v", in, got, ok)
		}
	}
}

// TestDecodeStrictDeepNesting: a deeply nested body is refused, not
// walked to the bottom of the stack.
func TestDecodeStrictDeepNesting(t *testing.T) {
	deep := `{"name":"a","labels":` + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + `}`
	var v CreateRequest
	err := DecodeStrict([]byte(deep), &v, "")
	var fe *FieldError
	if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "nested") {
		t.Fatalf("err %v", err)
	}
}
