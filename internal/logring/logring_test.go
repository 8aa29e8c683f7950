package logring

import (
	"fmt"
	"strings"
	"testing"
)

func TestRingKeepsTheLastWholeLines(t *testing.T) {
	r := New(20)
	fmt.Fprint(r, "one\ntw")
	fmt.Fprint(r, "o\nthree\n")
	if got := string(r.Tail(0)); got != "one\ntwo\nthree\n" {
		t.Errorf("tail %q", got)
	}
	if got := string(r.Tail(1)); got != "three\n" {
		t.Errorf("tail 1 %q", got)
	}
	fmt.Fprint(r, "four\nfive\nsix\n") // 24 bytes with the above: "one\n" and "two\n" go
	if got := string(r.Tail(0)); got != "three\nfour\nfive\nsix\n" {
		t.Errorf("tail after overflow %q", got)
	}
	fmt.Fprint(r, strings.Repeat("x", 50)+"\n") // longer than the ring: its end is kept
	if got := string(r.Tail(0)); got != strings.Repeat("x", 19)+"\n" {
		t.Errorf("tail after a long line %q", got)
	}
	var nilRing *Ring
	if n, err := nilRing.Write([]byte("x\n")); n != 2 || err != nil || nilRing.Tail(0) != nil {
		t.Error("a nil ring must accept and keep nothing")
	}
}
