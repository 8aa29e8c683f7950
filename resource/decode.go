package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeStrict decodes JSON a client sent into v, exactly:
//
//   - the body must be valid UTF-8 with no lone surrogate escape (nothing
//     is replaced by U+FFFD silently);
//   - object keys must equal a field's JSON name exactly (encoding/json
//     alone folds case, and folds the Kelvin sign U+212A to "k");
//   - a key may appear once per object (encoding/json alone keeps the last);
//   - unknown fields are refused, named by their full path
//     ("spec.boot.zzz");
//   - nothing may follow the JSON value.
//
// Errors are *FieldError naming the offending field with prefix (e.g.
// "spec"). Fields of type json.RawMessage are checked for duplicate keys
// and UTF-8 only; their content is decoded exactly where it is used
// (NormalizeRequestSpec).
func DecodeStrict(data []byte, v any, prefix string) error {
	valid, err := checkExact(data, reflect.TypeOf(v), prefix)
	if err != nil {
		return err
	}
	if !valid {
		return decodeTolerant(data, v, prefix)
	}
	// One well-formed value whose keys are all known fields spelled
	// exactly: what DisallowUnknownFields and the check for trailing data
	// would refuse cannot be there, and json.Unmarshal decodes without a
	// Decoder's copy of the input.
	if err := json.Unmarshal(data, v); err != nil {
		return jsonFieldError(err, prefix)
	}
	return nil
}

// CheckExact checks data against the JSON shape of t as DecodeStrict does,
// without decoding it. A malformed body is an error too (its message names
// the byte offset).
func CheckExact(data []byte, t reflect.Type, prefix string) error {
	_, err := checkExact(data, t, prefix)
	return err
}

// checkExact is CheckExact; valid says whether data is one well-formed
// JSON value (nothing after it).
func checkExact(data []byte, t reflect.Type, prefix string) (valid bool, err error) {
	if !utf8.Valid(data) {
		off := validUTF8Prefix(data)
		return false, Errorf(orRoot(prefix), "is not valid UTF-8 (bad byte at offset %d); send UTF-8 text", off)
	}
	if off, ok := checkSurrogates(data); !ok {
		return false, Errorf(orRoot(prefix), "has a lone UTF-16 surrogate escape at byte %d; send a valid \\u escape pair or the character itself", off)
	}
	if json.Valid(data) {
		// The common case, without a token stream (json.Decoder.Token
		// allocates per token): the same walk over bytes already known
		// to be one well-formed value, finding the same first error.
		s := exactScanner{data: data}
		return true, s.value(t, prefix)
	}
	return false, checkExactTokens(data, t, prefix)
}

// checkExactTokens is CheckExact by json.Decoder tokens: for malformed
// input, whose error names the byte offset as encoding/json sees it.
func checkExactTokens(data []byte, t reflect.Type, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	c := exactChecker{dec: dec}
	if err := c.value(t, prefix); err != nil {
		if _, ok := err.(*FieldError); ok {
			return err
		}
		return jsonFieldError(err, prefix)
	}
	return nil
}

func validUTF8Prefix(b []byte) int {
	off := 0
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return off
		}
		off += n
		b = b[n:]
	}
	return off
}

// checkSurrogates finds a \u escape of a UTF-16 surrogate that is not part
// of a high+low pair (encoding/json turns those into U+FFFD silently).
func checkSurrogates(data []byte) (int, bool) {
	inStr := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !inStr {
			if c == '"' {
				inStr = true
			}
			continue
		}
		switch c {
		case '"':
			inStr = false
		case '\\':
			if i+5 < len(data) && data[i+1] == 'u' {
				r, ok := hex4(data[i+2 : i+6])
				if ok && utf16.IsSurrogate(r) {
					if r < 0xdc00 && i+11 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
						if r2, ok := hex4(data[i+8 : i+12]); ok && r2 >= 0xdc00 && r2 < 0xe000 {
							i += 11
							continue
						}
					}
					return i, false
				}
				i += 5
				continue
			}
			i++ // the escaped character
		}
	}
	return 0, true
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

type exactChecker struct {
	dec   *json.Decoder
	depth int
}

// maxJSONDepth bounds the nesting of a body (encoding/json's own limit).
const maxJSONDepth = 10000

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
)

// shapeOf is the type whose JSON shape a value of type t must have: t
// without pointers, or nil (any shape; only duplicate keys are refused)
// for raw JSON, interfaces and types that decode themselves.
func shapeOf(t reflect.Type) reflect.Type {
	if t == nil {
		return nil
	}
	// Remembered per type: reflect.PointerTo looks a type's pointer type
	// up in a global map each time (and deep in a request goroutine's
	// fresh stack, grows it).
	if s, ok := shapes.Load(t); ok {
		return s.(shape).t
	}
	s := shape{computeShape(t)}
	shapes.Store(t, s)
	return s.t
}

// shapes caches shapeOf: reflect.Type → shape (the types of the API's
// request structs, a bounded set).
var shapes sync.Map

type shape struct{ t reflect.Type }

func computeShape(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t == rawMessageType || t.Kind() == reflect.Interface ||
		reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType)) {
		return nil
	}
	return t
}

// value checks the next JSON value against t (nil: any shape; only
// duplicate keys are refused).
func (c *exactChecker) value(t reflect.Type, path string) error {
	tok, err := c.dec.Token()
	if err != nil {
		return err
	}
	t = shapeOf(t)
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar: its type is checked by the decoder
	}
	if c.depth++; c.depth > maxJSONDepth {
		return Errorf(orRoot(path), "is nested more than %d levels deep", maxJSONDepth)
	}
	defer func() { c.depth-- }()
	switch d {
	case '{':
		var fields map[string]reflect.Type
		var elem reflect.Type
		if t != nil {
			switch t.Kind() {
			case reflect.Struct:
				fields = jsonFields(t)
			case reflect.Map:
				elem = t.Elem()
			}
		}
		seen := map[string]bool{}
		for c.dec.More() {
			kt, err := c.dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			p := join(path, key)
			if seen[key] {
				return Errorf(p, "is given twice; give each field once")
			}
			seen[key] = true
			ft := elem
			if fields != nil {
				var known bool
				if ft, known = fields[key]; !known {
					return unknownField(fields, path, key)
				}
			}
			if err := c.value(ft, p); err != nil {
				return err
			}
		}
		_, err := c.dec.Token()
		return err
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; c.dec.More(); i++ {
			if err := c.value(elem, fmt.Sprintf("%s[%d]", orRoot(path), i)); err != nil {
				return err
			}
		}
		_, err := c.dec.Token()
		return err
	}
	return nil
}

// exactScanner is exactChecker over bytes that json.Valid accepted: one
// well-formed value, nested at most encoding/json's limit deep, so that
// it needs no syntax checks of its own. Paths are built only for errors
// and containers.
type exactScanner struct {
	data []byte
	pos  int
}

// skipSpace moves past JSON whitespace.
func (s *exactScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// str moves past the string at pos and returns its raw bytes (without
// quotes) and whether it holds an escape.
func (s *exactScanner) str() ([]byte, bool) {
	start := s.pos + 1
	escaped := false
	for i := start; i < len(s.data); i++ {
		switch s.data[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			s.pos = i + 1
			return s.data[start:i], escaped
		}
	}
	s.pos = len(s.data)
	return s.data[start:], escaped
}

// key returns an object key as encoding/json decodes it.
func (s *exactScanner) key() string {
	at := s.pos
	raw, escaped := s.str()
	if !escaped {
		return string(raw)
	}
	var k string
	_ = json.Unmarshal(s.data[at:s.pos], &k) // valid: json.Valid said so
	return k
}

// closes moves to the next member of an array or object: it says whether
// the container ends there (and moves past its close), or moves past the
// comma before the next member.
func (s *exactScanner) closes(end byte) bool {
	s.skipSpace()
	if s.data[s.pos] == end {
		s.pos++
		return true
	}
	if s.data[s.pos] == ',' {
		s.pos++
		s.skipSpace()
	}
	return false
}

// skipScalar moves past a number, true, false or null.
func (s *exactScanner) skipScalar() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return
		}
		s.pos++
	}
}

// value checks the value at pos against t as exactChecker.value does.
func (s *exactScanner) value(t reflect.Type, path string) error {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return nil
	}
	switch s.data[s.pos] {
	case '"':
		s.str()
		return nil
	case '{', '[':
	default:
		s.skipScalar()
		return nil
	}
	t = shapeOf(t)
	if s.data[s.pos] == '[' {
		s.pos++
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; !s.closes(']'); i++ {
			p := path
			if c := s.data[s.pos]; c == '{' || c == '[' {
				p = fmt.Sprintf("%s[%d]", orRoot(path), i)
			}
			if err := s.value(elem, p); err != nil {
				return err
			}
		}
		return nil
	}
	s.pos++
	var fields map[string]reflect.Type
	var elem reflect.Type
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = jsonFields(t)
		case reflect.Map:
			elem = t.Elem()
		}
	}
	var small [16]string
	seen := small[:0]
	var seenMap map[string]bool
	for !s.closes('}') {
		key := s.key()
		if seenMap != nil {
			if seenMap[key] {
				return Errorf(join(path, key), "is given twice; give each field once")
			}
			seenMap[key] = true
		} else {
			for _, k := range seen {
				if k == key {
					return Errorf(join(path, key), "is given twice; give each field once")
				}
			}
			if len(seen) < cap(seen) {
				seen = append(seen, key)
			} else {
				seenMap = make(map[string]bool, 2*len(seen))
				for _, k := range seen {
					seenMap[k] = true
				}
				seenMap[key] = true
			}
		}
		ft := elem
		if fields != nil {
			var known bool
			if ft, known = fields[key]; !known {
				return unknownField(fields, path, key)
			}
		}
		s.skipSpace()
		s.pos++ // the colon
		s.skipSpace()
		p := path
		if c := s.data[s.pos]; c == '{' || c == '[' {
			p = join(path, key)
		}
		if err := s.value(ft, p); err != nil {
			return err
		}
	}
	return nil
}

func unknownField(fields map[string]reflect.Type, path, key string) error {
	p := join(path, key)
	if key == "" {
		return Errorf(orRoot(path), "has a field with an empty name; remove it")
	}
	for name := range fields {
		if strings.EqualFold(name, key) {
			return Errorf(p, "unknown field; field names are case-sensitive: did you mean %q?", name)
		}
	}
	return Errorf(p, "unknown field; remove it (check the spelling against the API reference)")
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields maps the JSON names of struct type t's fields (as
// encoding/json sees them, embedded structs inlined) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	addJSONFields(t, m, 0)
	fieldCache.Store(t, m)
	return m
}

func addJSONFields(t reflect.Type, m map[string]reflect.Type, depth int) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			et := ft
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct && depth < 8 {
				addJSONFields(et, m, depth+1)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := m[name]; !dup || depth == 0 {
			m[name] = ft
		}
	}
}
