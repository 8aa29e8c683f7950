package resource

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// AppendJSON appends s's JSON encoding to b: byte for byte what
// json.Marshal(s) gives (TestVMStatusAppendJSON, FuzzVMStatusAppendJSON),
// without its reflection. The state machine encodes a VM's status on
// every write of it (a create, a placement, a report), on every replica.
// Keep it in step with the struct's fields and tags; the fuzz test fails
// when a field is added here but not there, or the other way round.
func (s *VMStatus) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"phase":`...)
	b = appendJSONString(b, s.Phase)
	if s.Host != "" {
		b = append(b, `,"host":`...)
		b = appendJSONString(b, s.Host)
	}
	b = appendUintField(b, `,"epoch":`, s.Epoch)
	if s.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, s.Reason)
	}
	var err error
	if b, err = appendTimeField(b, `,"since":`, s.Since); err != nil {
		return nil, err
	}
	b = appendUintField(b, `,"reboot_requested":`, s.RebootRequested)
	b = appendUintField(b, `,"reboot_done":`, s.RebootDone)
	if s.StopForced {
		b = append(b, `,"stop_forced":true`...)
	}
	b = appendUintField(b, `,"restarts":`, s.Restarts)
	b = appendUintField(b, `,"report_seq":`, s.ReportSeq)
	if m := s.Migration; m != nil {
		b = append(b, `,"migration":{"id":`...)
		b = strconv.AppendUint(b, m.ID, 10)
		b = append(b, `,"target":`...)
		b = appendJSONString(b, m.Target)
		b = append(b, `,"mode":`...)
		b = appendJSONString(b, m.Mode)
		b = append(b, `,"state":`...)
		b = appendJSONString(b, m.State)
		if m.URI != "" {
			b = append(b, `,"uri":`...)
			b = appendJSONString(b, m.URI)
		}
		if b, err = appendTimeField(b, `,"since":`, m.Since); err != nil {
			return nil, err
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// MarshalVMStatus is json.Marshal(s), faster (VMStatus.AppendJSON). The
// result is allocated at its length: the state keeps every VM's status,
// and a buffer grown by append would hold up to twice it (a pending VM's,
// with its reason and time, outgrew 128 bytes into 256).
func MarshalVMStatus(s *VMStatus) (json.RawMessage, error) {
	var buf [512]byte
	b, err := s.AppendJSON(buf[:0])
	if err != nil {
		return nil, err
	}
	return append(json.RawMessage(nil), b...), nil
}

// appendUintField appends key and v unless v is 0 (omitempty).
func appendUintField(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, key...)
	return strconv.AppendUint(b, v, 10)
}

// appendTimeField appends key and t as time.Time's MarshalJSON writes
// it, unless t is zero (omitzero).
func appendTimeField(b []byte, key string, t time.Time) ([]byte, error) {
	if t.IsZero() {
		return b, nil
	}
	b = append(append(b, key...), '"')
	b, err := t.AppendText(b) // MarshalJSON's text, without its allocation
	if err != nil {
		// As json.Marshal says it (a MarshalerError without its Type
		// panics when printed), with MarshalJSON's words.
		err = errors.New("Time.MarshalJSON: " + strings.TrimPrefix(err.Error(), "Time.AppendText: "))
		return nil, &json.MarshalerError{Type: reflect.TypeFor[time.Time](), Err: err}
	}
	return append(b, '"'), nil
}
