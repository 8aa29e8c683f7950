package resource

import (
	"regexp"
	"testing"
)

// The regular expressions the byte loops of validate.go replaced.
var (
	dnsLabelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	labelKeyRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$`)
	labelValRe = regexp.MustCompile(`^[^\x00-\x1f\x7f]*$`)
)

func checkSyntaxRules(t *testing.T, s string) {
	t.Helper()
	if got, want := isDNSLabel(s), dnsLabelRe.MatchString(s); got != want {
		t.Errorf("isDNSLabel(%q) = %v, the regexp says %v", s, got, want)
	}
	if got, want := isLabelKey(s), labelKeyRe.MatchString(s); got != want {
		t.Errorf("isLabelKey(%q) = %v, the regexp says %v", s, got, want)
	}
	if got, want := isLabelValue(s), labelValRe.MatchString(s); got != want {
		t.Errorf("isLabelValue(%q) = %v, the regexp says %v", s, got, want)
	}
}

// TestSyntaxRulesMatchRegexps: the name and label rules accept exactly
// what their regular expressions accepted, on every string of up to three
// bytes from an alphabet with each class's edges, and on longer samples.
func TestSyntaxRulesMatchRegexps(t *testing.T) {
	alphabet := []byte{0, 0x1f, ' ', '-', '.', '/', '0', '9', ':', '@', 'A', 'Z', '[', '_', '`', 'a', 'z', '{', 0x7f, 0x80, 0xc3, 0xa9, 0xff}
	var strs []string
	strs = append(strs, "")
	for _, a := range alphabet {
		strs = append(strs, string([]byte{a}))
		for _, b := range alphabet {
			strs = append(strs, string([]byte{a, b}))
			for _, c := range alphabet {
				strs = append(strs, string([]byte{a, b, c}))
			}
		}
	}
	strs = append(strs, "web-1", "a--b", "-a", "a-", "kubernetes.io/role", "é", "x\u00e9y", "tab\there", "ok value with spaces", "\u202e")
	for _, s := range strs {
		checkSyntaxRules(t, s)
	}
}

// FuzzSyntaxRules: the same on any string.
func FuzzSyntaxRules(f *testing.F) {
	for _, s := range []string{"web-1", "a.b/c_d", "v\x7f", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(checkSyntaxRules)
}
