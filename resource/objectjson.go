package resource

import (
	"encoding/json"
	"slices"
	"strconv"
)

// AppendJSON appends o's JSON encoding to b: byte for byte what
// json.Marshal(o) gives, without its reflection and without re-scanning
// Spec and Status. encoding/json compacts and HTML-escapes every
// json.RawMessage it writes, a pass over each object's largest fields on
// every answer; the state store holds them as json.Marshal wrote them
// (compact, valid), so where they hold no byte that compaction or
// escaping would change they are appended as they are. Anything else (a
// string to escape, a raw field with a space, <, >, & or a byte of
// U+2028/U+2029, an empty raw field) takes json.Marshal's own path for
// that value. For an object whose Spec and Status are each nil or valid
// JSON — every object of the state store: each write path marshals them,
// and a restore decodes them — the result is json.Marshal's
// (TestObjectAppendJSON, FuzzObjectAppendJSON); for an invalid one it may
// not be JSON where json.Marshal fails.
func (o *Object) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"kind":`...)
	b = appendJSONString(b, string(o.Kind))
	b = append(b, `,"name":`...)
	b = appendJSONString(b, o.Name)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, o.ID)
	b = append(b, `,"labels":`...)
	if o.Labels == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		var few [8]string
		keys := few[:0]
		for k := range o.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, o.Labels[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"create_index":`...)
	b = strconv.AppendUint(b, o.CreateIndex, 10)
	b = append(b, `,"modify_index":`...)
	b = strconv.AppendUint(b, o.ModifyIndex, 10)
	if o.ModifiedBy != "" {
		b = append(b, `,"modified_by":`...)
		b = appendJSONString(b, o.ModifiedBy)
	}
	var err error
	b = append(b, `,"spec":`...)
	if b, err = appendRawJSON(b, o.Spec); err != nil {
		return nil, err
	}
	b = append(b, `,"status":`...)
	if b, err = appendRawJSON(b, o.Status); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// AppendObjectsJSON appends what json.Marshal(objs) gives.
func AppendObjectsJSON(b []byte, objs []*Object) ([]byte, error) {
	if objs == nil {
		return append(b, "null"...), nil
	}
	b = append(b, '[')
	for i, o := range objs {
		if i > 0 {
			b = append(b, ',')
		}
		if o == nil {
			b = append(b, "null"...)
			continue
		}
		var err error
		if b, err = o.AppendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// appendJSONString appends s as encoding/json writes a string: quoted
// as it is when every byte is printable ASCII other than ", \, <, > and
// &; otherwise through json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendRawJSON appends a raw field as json.Marshal writes a
// json.RawMessage: null when nil; as it is when no byte of it would be
// changed by compaction or HTML escaping (the state store's fields are
// compact and valid); otherwise through json.Marshal, which also reports
// an invalid one.
func appendRawJSON(b []byte, raw json.RawMessage) ([]byte, error) {
	if raw == nil {
		return append(b, "null"...), nil
	}
	if len(raw) > 0 && plainRaw(raw) {
		return append(b, raw...), nil
	}
	q, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	return append(b, q...), nil
}

// plainRaw reports whether raw holds nothing encoding/json's compaction
// removes (whitespace between tokens) or its HTML escaping rewrites (<,
// >, & and U+2028/U+2029, whose UTF-8 starts with 0xE2, is escaped
// anywhere), and starts as an object, array or string does. Whitespace
// inside strings stays, as compaction keeps it.
func plainRaw(raw []byte) bool {
	switch raw[0] {
	case '{', '[', '"':
	default:
		return false // numbers, literals: rare here; let json.Marshal check them
	}
	inString, escaped := false, false
	for _, c := range raw {
		switch {
		case c == '<' || c == '>' || c == '&' || c == 0xE2:
			return false
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return false
		}
	}
	return true
}
