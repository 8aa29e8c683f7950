package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid object")

// FieldError says which field is wrong and how to fix it.
type FieldError struct {
	Field string // JSON path, e.g. "spec.cpus"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Errorf returns a *FieldError for field.
func Errorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

const (
	// MaxNameLen is the longest object name (a DNS label).
	MaxNameLen = 63
	// MaxLabels is the most labels one object may carry.
	MaxLabels = 64
	// MaxLabelKeyLen and MaxLabelValueLen bound a label.
	MaxLabelKeyLen   = 63
	MaxLabelValueLen = 255
)

// The rules below are byte loops rather than regular expressions: they run
// for every write, on the leader and again in every replica's state
// machine. TestSyntaxRulesMatchRegexps holds them to the expressions they
// replace:
//
//	DNS label:   ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$
//	label key:   ^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$
//	label value: ^[^\x00-\x1f\x7f]*$

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }

// isDNSLabel: lower-case letters, digits and '-', not at either end.
func isDNSLabel(s string) bool {
	if s == "" || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '-' {
			return false
		}
	}
	return true
}

// isLabelKey: ASCII letters, digits, '.', '_', '/' and '-', starting and
// ending with a letter or digit.
func isLabelKey(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		switch c := s[i]; {
		case isAlnum(c), c == '.', c == '_', c == '/', c == '-':
		default:
			return false
		}
	}
	return true
}

// isLabelValue: no ASCII control byte (the regexp matched invalid UTF-8
// as U+FFFD, which is not one, so this is a byte check).
func isLabelValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// validLabel is the check of one label of ValidateLabels.
func validLabel(k, v string) bool {
	return len(k) > 0 && len(k) <= MaxLabelKeyLen && isLabelKey(k) && len(v) <= MaxLabelValueLen && isLabelValue(v)
}

// ValidateName checks that name is a DNS label (RFC 1123): lower-case letters,
// digits and '-', starting and ending with a letter or digit, ≤ 63 chars.
func ValidateName(name string) error {
	switch {
	case name == "":
		return Errorf("name", "must not be empty; use a DNS label such as \"web-1\"")
	case len(name) > MaxNameLen:
		return Errorf("name", "is %d characters long; the limit is %d", len(name), MaxNameLen)
	case !isDNSLabel(name):
		return Errorf("name", "%q is not a DNS label: use lower-case letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// ValidateLabels checks label keys and values.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return Errorf("labels", "has %d labels; the limit is %d", len(labels), MaxLabels)
	}
	ok := true
	for k, v := range labels {
		ok = ok && validLabel(k, v)
	}
	if ok {
		return nil
	}
	// Name the first bad label in key order, whatever the map's order.
	for _, k := range SortedLabelKeys(labels) {
		v := labels[k]
		if len(k) == 0 || len(k) > MaxLabelKeyLen || !isLabelKey(k) {
			return Errorf("labels", "key %q is invalid: use 1-%d ASCII letters, digits, '.', '_', '/' or '-', starting and ending with a letter or digit", k, MaxLabelKeyLen)
		}
		if len(v) > MaxLabelValueLen || !isLabelValue(v) {
			return Errorf("labels."+k, "value must be printable text of at most %d bytes of UTF-8 (got %d bytes)", MaxLabelValueLen, len(v))
		}
	}
	return nil
}

// ValidateRequestMeta is ValidateMeta for a request: the labels are also
// checked by ValidateRequestLabels.
func ValidateRequestMeta(name string, labels map[string]string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return ValidateRequestLabels(labels)
}

// ValidateRequestLabels is ValidateLabels for labels a client sent: a
// value must also be valid UTF-8 (never replaced silently) without
// control characters (C0, DEL, C1), bidirectional controls (U+202A–U+202E,
// U+2066–U+2069), line or paragraph separators (U+2028, U+2029) or a byte
// order mark (U+FEFF). Lengths are counted in bytes of UTF-8 (docs/api.md).
// (ValidateLabels, the state machine's check, stays as it was so that
// older log entries apply as they did.)
func ValidateRequestLabels(labels map[string]string) error {
	if err := ValidateLabels(labels); err != nil {
		return err
	}
	ok := true
	for _, v := range labels {
		ok = ok && checkText(v) == ""
	}
	if ok {
		return nil
	}
	for _, k := range SortedLabelKeys(labels) {
		if msg := checkText(labels[k]); msg != "" {
			return Errorf("labels."+k, "value %s", msg)
		}
	}
	return nil
}

// checkText says what is wrong with s as user text, or "": invalid UTF-8,
// control characters, bidi controls, line/paragraph separators, a BOM.
func checkText(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for i, r := range s {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return fmt.Sprintf("has control character U+%04X at byte %d; remove it", r, i)
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			return fmt.Sprintf("has bidirectional control U+%04X at byte %d; remove it", r, i)
		case r == 0x2028 || r == 0x2029:
			return fmt.Sprintf("has line/paragraph separator U+%04X at byte %d; remove it", r, i)
		case r == 0xfeff:
			return fmt.Sprintf("has a byte order mark (U+FEFF) at byte %d; remove it", i)
		}
	}
	return ""
}

// decodeTolerant decodes JSON into v, rejecting unknown fields and
// trailing data but, as encoding/json does, matching field names without
// regard to case and keeping the last of duplicate keys. The state machine
// decodes log entries with it (entries older rules accepted must apply as
// they did); requests go through DecodeStrict. Errors name the offending
// field with prefix (e.g. "spec").
func decodeTolerant(data []byte, v any, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonFieldError(err, prefix)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Errorf(orRoot(prefix), "unexpected data after the JSON value")
	}
	return nil
}

func orRoot(prefix string) string {
	if prefix == "" {
		return "body"
	}
	return prefix
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	if field == "" {
		return prefix
	}
	return prefix + "." + field
}

// jsonFieldError turns encoding/json errors into FieldErrors naming the field.
func jsonFieldError(err error, prefix string) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return Errorf(orRoot(prefix), "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		f := join(prefix, typ.Field)
		return Errorf(orRoot(f), "must be %s, not JSON %s", typeName(typ.Type.String()), typ.Value)
	case errors.Is(err, io.EOF):
		return Errorf(orRoot(prefix), "is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(orRoot(prefix), "malformed JSON: unexpected end of input")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name := strings.Trim(f, `"`)
		if name == "" {
			return Errorf(orRoot(prefix), "has a field with an empty name; remove it")
		}
		return Errorf(join(prefix, name), "unknown field; remove it (check the spelling against the API reference)")
	}
	return Errorf(orRoot(prefix), "%s", strings.TrimPrefix(msg, "json: "))
}

func typeName(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "string", t == "resource.Kind":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "map["):
		return "an object"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	}
	return "an object"
}
