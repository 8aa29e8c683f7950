package fsm

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/kumoi/kumoi/resource"
)

// A create in a binary encoding (log protocol 10, CreateBinRequestType):
// the same command as a CreateRequest, with its accessor (what an
// AccessorRequest would carry), without JSON. A create was the entry
// every replica decoded most often, and its JSON (a with-accessor
// envelope around the create) was decoded twice, then once more for the
// metrics: about a fifth of a follower's state machine at 128 writers
// (docs/benchmarks.md). The leader proposes it once every server speaks
// protocol 10 (EncodeFor); any build of protocol 10 applies both forms.
//
// The payload, after the type byte: the accessor, the time as seconds
// since the Unix epoch (zig-zag varint) and nanoseconds (uvarint, below
// 1e9), the kind, the name, the ID, the labels (a uvarint count of
// name/value pairs, no name twice), the spec (JSON, as in a
// CreateRequest). Strings and the spec are a uvarint length and the
// bytes. Nothing may follow.

// CreateBinRequest is what a CreateBinRequestType entry carries: a create
// and the accessor ID of the token that made it (empty: none). Encode and
// NewBatchOp take it for that type.
type CreateBinRequest struct {
	Accessor string
	Create   *CreateRequest
}

// EncodeCreateBin returns the log entry of req with accessor (empty: none)
// in the binary encoding. A nil spec is encoded as JSON's null, as a
// CreateRequest's JSON has it.
func EncodeCreateBin(accessor string, req *CreateRequest) []byte {
	n := 32 + len(accessor) + len(req.Kind) + len(req.Name) + len(req.ID) + len(req.Spec)
	for k, v := range req.Labels {
		n += 4 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, byte(CreateBinRequestType))
	b = appendBinString(b, accessor)
	t := req.Time
	b = binary.AppendVarint(b, t.Unix())
	b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	b = appendBinString(b, string(req.Kind))
	b = appendBinString(b, req.Name)
	b = appendBinString(b, req.ID)
	b = binary.AppendUvarint(b, uint64(len(req.Labels)))
	// In name order: the same create, the same bytes (one label, the
	// common case, needs no sorted copy of the keys).
	if len(req.Labels) == 1 {
		for k, v := range req.Labels {
			b = appendBinString(appendBinString(b, k), v)
		}
	} else {
		for _, k := range slices.Sorted(maps.Keys(req.Labels)) {
			b = appendBinString(b, k)
			b = appendBinString(b, req.Labels[k])
		}
	}
	spec := req.Spec
	if spec == nil {
		spec = []byte("null")
	}
	b = binary.AppendUvarint(b, uint64(len(spec)))
	return append(b, spec...)
}

// EncodeFor returns the log entry of a command for a cluster whose servers
// all speak protocol proto: a create (with or without an accessor) in the
// binary encoding from protocol 10 on, any other command as Encode does.
func EncodeFor(t MessageType, req any, proto int) ([]byte, error) {
	if proto >= MinProtocol(CreateBinRequestType) {
		switch r := req.(type) {
		case *CreateRequest:
			if t == CreateRequestType {
				return EncodeCreateBin("", r), nil
			}
		case *AccessorRequest:
			if c, ok := r.inner.(*CreateRequest); ok && t == AccessorRequestType && r.Type == CreateRequestType {
				return EncodeCreateBin(r.Accessor, c), nil
			}
		}
	}
	return Encode(t, req)
}

func appendBinString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// binDecoder reads a binary payload; the first error sticks.
type binDecoder struct {
	b   []byte
	err error
}

func (d *binDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrBadPayload}, args...)...)
	}
}

func (d *binDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *binDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *binDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("a field of %d bytes in %d", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// str decodes a string as encoding/json decodes one from the same
// request's JSON form: each byte that is not part of valid UTF-8 becomes
// U+FFFD. (A binary entry's string is raw bytes; kept so, a label value
// or accessor with such a byte was stored as it was, and a snapshot's
// JSON, and any JSON-encoded entry, would have changed it: the state
// differed after a restore. Found by FuzzApply.)
func (d *binDecoder) str() string { return jsonString(d.bytes()) }

// jsonString is string(b) with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as encoding/json decodes a string.
func jsonString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		out = utf8.AppendRune(out, r) // utf8.RuneError for an invalid byte (size 1)
		b = b[size:]
	}
	return string(out)
}

// decodeCreateBin is the applier of CreateBinRequestType.
func decodeCreateBin(payload []byte) (func(*writer) error, error) {
	acc, req, err := DecodeCreateBin(payload)
	if err != nil {
		return nil, err
	}
	create := func(w *writer) error { return w.create(req) }
	if acc == "" {
		return create, nil
	}
	return asAccessor(acc, create), nil
}

// DecodeCreateBin decodes the payload of a CreateBinRequestType entry
// (after its type byte): its accessor and create. An error wraps
// ErrBadPayload.
func DecodeCreateBin(payload []byte) (string, *CreateRequest, error) {
	d := &binDecoder{b: payload}
	acc := d.str()
	sec, nsec := d.varint(), d.uvarint()
	if d.err == nil && nsec >= 1e9 {
		d.fail("%d nanoseconds", nsec)
	}
	req := &CreateRequest{}
	req.Kind = resource.Kind(d.str())
	req.Name = d.str()
	req.ID = d.str()
	if n := d.uvarint(); n > 0 && d.err == nil {
		if n > uint64(len(d.b))/2 { // a pair takes two bytes at least
			d.fail("%d labels in %d bytes", n, len(d.b))
		} else {
			req.Labels = make(map[string]string, n)
			// A key given twice, byte for byte, is malformed. Keys that
			// differ only where they are not valid UTF-8 become the same
			// key, as in the JSON form: the later one's value stays.
			var rawSeen map[string]bool // once a key was not valid UTF-8
			for range n {
				kb, vb := d.bytes(), d.bytes()
				if d.err != nil {
					break
				}
				if rawSeen == nil && utf8.Valid(kb) {
					k := string(kb)
					if _, dup := req.Labels[k]; dup {
						d.fail("label %q twice", k)
						break
					}
					req.Labels[k] = jsonString(vb)
					continue
				}
				if rawSeen == nil {
					rawSeen = make(map[string]bool, n)
					for k := range req.Labels {
						rawSeen[k] = true // all valid so far: raw as stored
					}
				}
				if rawSeen[string(kb)] {
					d.fail("label %q twice", jsonString(kb))
					break
				}
				rawSeen[string(kb)] = true
				req.Labels[jsonString(kb)] = jsonString(vb)
			}
		}
	}
	if spec := d.bytes(); len(spec) > 0 {
		req.Spec = spec
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the create", len(d.b))
	}
	if d.err != nil {
		return "", nil, d.err
	}
	req.Time = time.Unix(sec, int64(nsec)).UTC()
	return acc, req, nil
}
