package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func checkVMStatusJSON(t *testing.T, s *VMStatus) {
	t.Helper()
	want, werr := json.Marshal(s)
	got, err := MarshalVMStatus(s)
	if fmt.Sprint(err) != fmt.Sprint(werr) || !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON(%+v) = %s, %v; json.Marshal gives %s, %v", s, got, err, want, werr)
	}
	// The state keeps it: no room to spare beyond the allocator's size
	// class (at most 64 bytes apart below 1 KiB).
	if len(got) < 1024 && cap(got)-len(got) >= 64 {
		t.Fatalf("MarshalVMStatus(%+v): %d bytes in a buffer of %d", s, len(got), cap(got))
	}
}

func TestVMStatusAppendJSON(t *testing.T) {
	at := time.Date(2026, 12, 4, 11, 30, 0, 123456789, time.UTC)
	checkVMStatusJSON(t, &VMStatus{})
	checkVMStatusJSON(t, &VMStatus{Phase: PhasePending, Reason: ReasonNoHosts, Since: at})
	checkVMStatusJSON(t, &VMStatus{Phase: PhaseRunning, Host: "h<1>", Epoch: 7, Reason: "a \"quoted\" & \u2028 é reason\n", Since: at.In(time.FixedZone("x", 3600)),
		RebootRequested: 9, RebootDone: 8, StopForced: true, Restarts: 2, ReportSeq: 1 << 62,
		Migration: &VMMigration{ID: 12, Target: "h2", Mode: MigrationLive, State: MigrationPreparing, URI: "qemu+tls://h2/system", Since: at}})
	checkVMStatusJSON(t, &VMStatus{Phase: PhaseMigrating, Migration: &VMMigration{}})
	// A time json.Marshal refuses is refused here too.
	checkVMStatusJSON(t, &VMStatus{Phase: PhasePending, Since: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})

	// Every field of the struct is written (a field added to VMStatus
	// must be added to AppendJSON).
	full := &VMStatus{Phase: "p", Host: "h", Epoch: 1, Reason: "r", Since: at, RebootRequested: 1, RebootDone: 1, StopForced: true,
		Restarts: 1, ReportSeq: 1, Migration: &VMMigration{ID: 1, Target: "t", Mode: "m", State: "s", URI: "u", Since: at}}
	for _, v := range []reflect.Value{reflect.ValueOf(*full), reflect.ValueOf(*full.Migration)} {
		for i := range v.NumField() {
			if v.Field(i).IsZero() {
				t.Fatalf("the test's full %s leaves %s zero: set it", v.Type(), v.Type().Field(i).Name)
			}
		}
	}
	checkVMStatusJSON(t, full)
}

func FuzzVMStatusAppendJSON(f *testing.F) {
	f.Add("running", "h1", "booted", "h2", "live", "preparing", "uri", uint64(3), uint64(1), int64(1764846000), int64(5), true, true)
	f.Add("", "", "", "", "", "", "", uint64(0), uint64(0), int64(0), int64(0), false, false)
	f.Add("x<y", "é", "\x00\xff", "\u2029", "&", "\"", "\\", uint64(1<<63), uint64(7), int64(-62135596801), int64(-1), true, false)
	f.Fuzz(func(t *testing.T, phase, host, reason, target, mode, state, uri string, epoch, seq uint64, sec, nsec int64, forced, mig bool) {
		s := &VMStatus{Phase: phase, Host: host, Reason: reason, Epoch: epoch, ReportSeq: seq, RebootDone: seq / 2, Restarts: epoch / 3,
			StopForced: forced, Since: time.Unix(sec, nsec)}
		if sec == 0 && nsec == 0 {
			s.Since = time.Time{}
		}
		if mig {
			s.Migration = &VMMigration{ID: seq, Target: target, Mode: mode, State: state, URI: uri, Since: time.Unix(nsec, sec).UTC()}
		}
		checkVMStatusJSON(t, s)
	})
}
