package resource

import (
	"encoding/json"
	"reflect"
)

// DecodeCreateRequest is DecodeStrict(data, req, "") — the same checks,
// errors and result — for the body of every create, the leader's hot
// path: once the strict check has found data one well-formed object of
// known, exactly spelled, unrepeated keys, the common body (strings
// without escapes, a spec object) is taken apart in one pass instead of
// by json.Unmarshal's reflection. Anything else goes to json.Unmarshal
// as before (FuzzDecodeCreateRequest compares the two). *req is replaced,
// not merged into as json.Unmarshal would: what it held before is gone
// whichever path decodes it.
func DecodeCreateRequest(data []byte, req *CreateRequest) error {
	*req = CreateRequest{}
	valid, err := checkExact(data, createRequestType, "")
	if err != nil {
		return err
	}
	if !valid {
		return decodeTolerant(data, req, "")
	}
	var fast CreateRequest
	if decodeCreateFast(data, &fast) {
		*req = fast
		return nil
	}
	if err := json.Unmarshal(data, req); err != nil {
		return jsonFieldError(err, "")
	}
	return nil
}

var createRequestType = reflect.TypeFor[*CreateRequest]()

// decodeCreateFast decodes data, known to be one well-formed JSON object
// whose keys are CreateRequest's (checkExact), when it has the common
// shape: name a string and labels an object of strings (or null), none
// with an escape, spec an object, each key once. false: decode it the
// general way.
func decodeCreateFast(data []byte, req *CreateRequest) bool {
	s := fastScanner{b: data}
	if s.next() != '{' {
		return false
	}
	s.i++
	var seen [3]bool
	for {
		c := s.next()
		if c == '}' {
			return s.i+1 == len(s.b) || s.rest()
		}
		if c == ',' {
			s.i++
		}
		key, ok := s.plainBytes()
		if !ok || s.next() != ':' {
			return false
		}
		s.i++
		c = s.next()
		var field int
		switch string(key) { // no copy: the compiler compares the bytes
		case "name":
			name, ok := s.plainBytes()
			if !ok {
				return false
			}
			req.Name, field = string(name), 0
		case "labels":
			switch c {
			case 'n':
				if !s.literal("null") {
					return false
				}
				req.Labels = nil
			case '{':
				labels, ok := s.plainStringMap()
				if !ok {
					return false
				}
				req.Labels = labels
			default:
				return false
			}
			field = 1
		case "spec":
			if c != '{' {
				return false
			}
			start := s.i
			if !s.skipValue() {
				return false
			}
			req.Spec = json.RawMessage(append([]byte(nil), s.b[start:s.i]...))
			field = 2
		default:
			return false
		}
		if seen[field] {
			return false
		}
		seen[field] = true
	}
}

// fastScanner walks JSON known to be well-formed.
type fastScanner struct {
	b []byte
	i int
}

// next skips whitespace and returns the byte there (0 at the end).
func (s *fastScanner) next() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

// rest reports whether only whitespace follows the closing brace at s.i.
func (s *fastScanner) rest() bool {
	s.i++
	return s.next() == 0
}

// plainBytes reads a string at s.i that holds no escape (its bytes are
// its value).
func (s *fastScanner) plainBytes() ([]byte, bool) {
	if s.next() != '"' {
		return nil, false
	}
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			return nil, false
		case '"':
			v := s.b[s.i+1 : j]
			s.i = j + 1
			return v, true
		}
	}
	return nil, false
}

// plainStringMap reads an object of plain strings at s.i.
func (s *fastScanner) plainStringMap() (map[string]string, bool) {
	s.i++ // {
	m := map[string]string{}
	for {
		c := s.next()
		if c == '}' {
			s.i++
			return m, true
		}
		if c == ',' {
			s.i++
		}
		k, ok := s.plainBytes()
		if !ok || s.next() != ':' {
			return nil, false
		}
		s.i++
		v, ok := s.plainBytes()
		if !ok {
			return nil, false
		}
		if _, dup := m[string(k)]; dup {
			return nil, false
		}
		m[string(k)] = string(v)
	}
}

// literal reads lit at s.i.
func (s *fastScanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// skipValue moves past the object or array at s.i.
func (s *fastScanner) skipValue() bool {
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				s.i++
				return true
			}
		case '"':
			for s.i++; s.i < len(s.b) && s.b[s.i] != '"'; s.i++ {
				if s.b[s.i] == '\\' {
					s.i++
				}
			}
		}
		s.i++
	}
	return false
}
