package resource

import (
	"fmt"
	"strings"
)

// Selector is a parsed label selector: a conjunction of requirements.
// Syntax (comma-separated, all must hold): "k=v", "k==v", "k!=v", "k"
// (label present), "!k" (label absent). The empty selector matches all.
type Selector []Requirement

// Requirement is one term of a Selector.
type Requirement struct {
	Key   string
	Op    string // "=", "!=", "exists", "!exists"
	Value string
}

// ParseSelector parses s; errors say which term is wrong.
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	for _, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		var r Requirement
		switch {
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			r = Requirement{Key: strings.TrimSpace(k), Op: "!=", Value: strings.TrimSpace(v)}
		case strings.Contains(term, "=="):
			k, v, _ := strings.Cut(term, "==")
			r = Requirement{Key: strings.TrimSpace(k), Op: "=", Value: strings.TrimSpace(v)}
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			r = Requirement{Key: strings.TrimSpace(k), Op: "=", Value: strings.TrimSpace(v)}
		case strings.HasPrefix(term, "!"):
			r = Requirement{Key: strings.TrimSpace(term[1:]), Op: "!exists"}
		default:
			r = Requirement{Key: term, Op: "exists"}
		}
		if r.Key == "" || !isLabelKey(r.Key) {
			return nil, fmt.Errorf("label selector term %q: key must be a label key such as app or tier (write k=v, k!=v, k or !k, separated by commas)", term)
		}
		sel = append(sel, r)
	}
	return sel, nil
}

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s {
		v, ok := labels[r.Key]
		switch r.Op {
		case "=":
			if !ok || v != r.Value {
				return false
			}
		case "!=":
			if ok && v == r.Value {
				return false
			}
		case "exists":
			if !ok {
				return false
			}
		case "!exists":
			if ok {
				return false
			}
		}
	}
	return true
}

// String renders the selector in canonical form.
func (s Selector) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		switch r.Op {
		case "exists":
			parts[i] = r.Key
		case "!exists":
			parts[i] = "!" + r.Key
		default:
			parts[i] = r.Key + r.Op + r.Value
		}
	}
	return strings.Join(parts, ",")
}
