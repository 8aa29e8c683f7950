package fsm_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/resource"
)

// ---- protocol 5: the published timing, monotonic evacuation, fencing ----

// hs5 is a protocol 5 host-state of host: the worker publishes fenceAfter,
// the controllers a grace of 4 s.
func hs5(name, state string, fenceAfterMS int64) *fsm.HostStateRequest {
	return &fsm.HostStateRequest{
		Time: tDown, Name: name, State: state, Capacity: amount(8, 8192), Reason: "missed probes",
		FenceAfterMS: fenceAfterMS, DownGraceMS: 4000,
	}
}

// evacSetup5 is evacSetup with h3's down period recorded in the protocol 5
// format at index 16 (its status.state_index).
func evacSetup5(t *testing.T, f *fsm.FSM) {
	t.Helper()
	evacSetup(t, f)
	fsm.TestMustApply(t, f, 16, fsm.HostStateRequestType, hs5("h3", resource.HostDown, 3000))
}

func evac5(stateIndex uint64, downFor time.Duration, fenceRequired bool) *fsm.EvacuateRequest {
	return &fsm.EvacuateRequest{
		Time: tDown.Add(time.Minute), Host: "h3", Reason: "h3 is down",
		StateIndex: stateIndex, DownForMS: downFor.Milliseconds(), FenceRequired: fenceRequired,
	}
}

func fence(state string, stateIndex uint64) *fsm.HostFenceRequest {
	return &fsm.HostFenceRequest{Time: tDown, Host: "h3", Fence: resource.HostFence{
		State: state, Attempts: 1, ExitCode: 0, Output: "ok", StartedAt: tDown, FinishedAt: tDown.Add(time.Second), StateIndex: stateIndex,
	}}
}

func TestHostStateTiming(t *testing.T) {
	runLifeCases(t, []lifeCase{
		{
			name: "a new state is named by its index, with the published timing", typ: fsm.HostStateRequestType,
			req: hs5("h2", resource.HostDown, 3000), wantEvents: "updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				st := hostStatus(t, f, "h2")
				if st.StateIndex != lat || st.FenceAfterMS != 3000 || st.DownGraceMS != 4000 || !st.Since.Equal(tDown) {
					t.Errorf("host/h2 = %+v, want state_index %d, fence_after_ms 3000, down_grace_ms 4000", st, lat)
				}
			},
		},
		{
			name: "a host first written in the new format gets a state index even if its state holds", typ: fsm.HostStateRequestType,
			req: hs5("h2", resource.HostReady, 3000), wantEvents: "updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := hostStatus(t, f, "h2"); st.StateIndex != lat || !st.Since.Equal(fsm.TestTime) {
					t.Errorf("host/h2 = %+v, want state_index %d and since unchanged", st, lat)
				}
			},
		},
		{
			name: "the same state keeps its index", typ: fsm.HostStateRequestType, req: hs5("h2", resource.HostDown, 2000),
			setup: func(t *testing.T, f *fsm.FSM) {
				fsm.TestMustApply(t, f, 9, fsm.HostStateRequestType, hs5("h2", resource.HostDown, 3000))
			},
			wantEvents: "updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := hostStatus(t, f, "h2"); st.StateIndex != 9 || st.FenceAfterMS != 2000 {
					t.Errorf("host/h2 = %+v, want state_index 9 kept, fence_after_ms 2000", st)
				}
			},
		},
		{
			name: "an entry of the older format that changes the state leaves the period unnamed", typ: fsm.HostStateRequestType,
			req: hsReq("h2", resource.HostReady, 2, 2048),
			setup: func(t *testing.T, f *fsm.FSM) {
				fsm.TestMustApply(t, f, 9, fsm.HostStateRequestType, hs5("h2", resource.HostDown, 3000))
			},
			wantEvents: "updated:host/h2",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := hostStatus(t, f, "h2"); st.StateIndex != 0 || st.State != resource.HostReady {
					t.Errorf("host/h2 = %+v, want state_index 0", st)
				}
			},
		},
		{
			name: "a created host is named by its index", typ: fsm.HostStateRequestType,
			req:        &fsm.HostStateRequest{Time: tDown, Name: "h9", ID: "id-h9", State: resource.HostReady, DownGraceMS: 4000},
			wantEvents: "created:host/h9",
			check: func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
				if st := hostStatus(t, f, "h9"); st.StateIndex != lat || st.DownGraceMS != 4000 || st.FenceAfterMS != 0 {
					t.Errorf("host/h9 = %+v", st)
				}
			},
		},
		{name: "fence-after without a grace", typ: fsm.HostStateRequestType, wantErr: resource.ErrInvalid,
			req: &fsm.HostStateRequest{Time: tDown, Name: "h2", State: resource.HostReady, FenceAfterMS: 3000}},
		{name: "a negative grace", typ: fsm.HostStateRequestType, wantErr: resource.ErrInvalid,
			req: &fsm.HostStateRequest{Time: tDown, Name: "h2", State: resource.HostReady, DownGraceMS: -1}},
		{name: "a grace of more than a day", typ: fsm.HostStateRequestType, wantErr: resource.ErrInvalid,
			req: &fsm.HostStateRequest{Time: tDown, Name: "h2", State: resource.HostReady, DownGraceMS: fsm.MaxTimingMS + 1}},
		{name: "a negative fence-after", typ: fsm.HostStateRequestType, wantErr: resource.ErrInvalid,
			req: &fsm.HostStateRequest{Time: tDown, Name: "h2", State: resource.HostReady, DownGraceMS: 4000, FenceAfterMS: -1}},
	})
}

func TestEvacuateMonotonic(t *testing.T) {
	evacuated := func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
		t.Helper()
		if st := vmStatus(t, f, "ra"); st.Phase != resource.PhasePending || st.Host != "" {
			t.Errorf("vm/ra (ha=restart) = %+v, want pending with no host", st)
		}
		if st := vmStatus(t, f, "rn"); st.Phase != resource.PhaseLost {
			t.Errorf("vm/rn (ha=none) = %+v, want lost", st)
		}
	}
	const all = "updated:vm/ra updated:vm/rn updated:vm/rs updated:host/h3"
	wrong := func(want string) func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
		return func(t *testing.T, f *fsm.FSM, r *fsm.Result) {
			if !strings.Contains(r.Err.Error(), want) {
				t.Errorf("error %q does not say %q", r.Err, want)
			}
			if st := vmStatus(t, f, "ra"); st.Phase != resource.PhaseRunning {
				t.Errorf("vm/ra = %+v after a refused evacuation", st)
			}
		}
	}
	// The host went down (older format, index 15) at tDown; the
	// evacuation's own time is a minute later: with wall clocks the grace
	// would have passed, but the measure says otherwise.
	runLifeCases(t, []lifeCase{
		{name: "measured for the grace", setup: evacSetup5, typ: fsm.EvacuateRequestType,
			req: evac5(16, 4*time.Second, false), wantEvents: all, check: evacuated},
		{name: "measured for less than the published grace (whatever the wall clocks say)", setup: evacSetup5, typ: fsm.EvacuateRequestType,
			req: evac5(16, 3999*time.Millisecond, false), wantErr: fsm.ErrWrongPhase, check: wrong("less than the grace of 4s")},
		{name: "measured for less than the proposer's own grace", setup: evacSetup5, typ: fsm.EvacuateRequestType,
			req:     func() *fsm.EvacuateRequest { r := evac5(16, 5*time.Second, false); r.Grace = time.Minute; return r }(),
			wantErr: fsm.ErrWrongPhase, check: wrong("less than the grace of 1m0s")},
		{name: "a negative measure", setup: evacSetup5, typ: fsm.EvacuateRequestType,
			req: evac5(16, -time.Second, false), wantErr: resource.ErrInvalid},
		{name: "a measure of an earlier period", typ: fsm.EvacuateRequestType, req: evac5(16, time.Hour, false),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup5(t, f)
				// h3 came back and went down again at index 18.
				fsm.TestMustApply(t, f, 17, fsm.HostStateRequestType, hs5("h3", resource.HostReady, 3000))
				fsm.TestMustApply(t, f, 18, fsm.HostStateRequestType, hs5("h3", resource.HostDown, 3000))
			},
			wantErr: fsm.ErrWrongPhase, check: wrong("began at 18")},
		{name: "a measure of a period that is not the host's", setup: evacSetup5, typ: fsm.EvacuateRequestType,
			req: evac5(15, time.Hour, false), wantErr: fsm.ErrWrongPhase, check: wrong("index 15")},
		{name: "a host of the older format has no named period", setup: evacSetup, typ: fsm.EvacuateRequestType,
			req: evac5(15, time.Hour, false), wantErr: fsm.ErrWrongPhase},
		{name: "a host that is ready again", typ: fsm.EvacuateRequestType, req: evac5(17, time.Hour, false),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup5(t, f)
				fsm.TestMustApply(t, f, 17, fsm.HostStateRequestType, hs5("h3", resource.HostReady, 3000))
			},
			wantErr: fsm.ErrWrongPhase, check: wrong("is ready")},
		{name: "a worker whose fence-after is not below the grace", typ: fsm.EvacuateRequestType, req: evac5(16, time.Hour, false),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup(t, f)
				fsm.TestMustApply(t, f, 16, fsm.HostStateRequestType, hs5("h3", resource.HostDown, 4000))
			},
			wantErr: fsm.ErrWrongPhase, check: wrong("--fence-after (4s) is not below the grace (4s)")},
		{name: "a worker that publishes no fence-after", typ: fsm.EvacuateRequestType, req: evac5(16, 4*time.Second, false),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup(t, f)
				fsm.TestMustApply(t, f, 16, fsm.HostStateRequestType, hs5("h3", resource.HostDown, 0))
			},
			wantEvents: all, check: evacuated},
		{name: "fencing required and not done", setup: evacSetup5, typ: fsm.EvacuateRequestType,
			req: evac5(16, time.Hour, true), wantErr: fsm.ErrWrongPhase, check: wrong("fence command has not succeeded")},
		{name: "fencing required and failed", typ: fsm.EvacuateRequestType, req: evac5(16, time.Hour, true),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup5(t, f)
				fsm.TestMustApply(t, f, 17, fsm.HostFenceRequestType, fence(resource.FenceFailed, 16))
			},
			wantErr: fsm.ErrWrongPhase, check: wrong("fence command has not succeeded")},
		{name: "fencing required and still running", typ: fsm.EvacuateRequestType, req: evac5(16, time.Hour, true),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup5(t, f)
				fsm.TestMustApply(t, f, 17, fsm.HostFenceRequestType, fence(resource.FenceRunning, 16))
			},
			wantErr: fsm.ErrWrongPhase},
		{name: "fencing required, succeeded for an earlier period", typ: fsm.EvacuateRequestType, req: evac5(19, time.Hour, true),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup5(t, f)
				fsm.TestMustApply(t, f, 17, fsm.HostFenceRequestType, fence(resource.FenceSucceeded, 16))
				fsm.TestMustApply(t, f, 18, fsm.HostStateRequestType, hs5("h3", resource.HostReady, 3000))
				fsm.TestMustApply(t, f, 19, fsm.HostStateRequestType, hs5("h3", resource.HostDown, 3000))
			},
			wantErr: fsm.ErrWrongPhase, check: wrong("fence command has not succeeded for its current down period (index 19)")},
		{name: "fencing required and succeeded", typ: fsm.EvacuateRequestType, req: evac5(16, 4*time.Second, true),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup5(t, f)
				fsm.TestMustApply(t, f, 17, fsm.HostFenceRequestType, fence(resource.FenceSucceeded, 16))
			},
			wantEvents: all, check: evacuated},
		{name: "the older format still applies on the wall clocks", setup: evacSetup5, typ: fsm.EvacuateRequestType,
			req: evac("h3", time.Minute, 30*time.Second), wantEvents: all, check: evacuated},
	})
}

func TestHostFence(t *testing.T) {
	recorded := func(want resource.HostFence) func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
		return func(t *testing.T, f *fsm.FSM, _ *fsm.Result) {
			st := hostStatus(t, f, "h3")
			if st.Fence == nil || *st.Fence != want || st.State != resource.HostDown || st.StateIndex != 16 {
				t.Errorf("host/h3 = %+v, fence %+v; want fence %+v", st, st.Fence, want)
			}
		}
	}
	bad := func(mod func(*fsm.HostFenceRequest)) *fsm.HostFenceRequest {
		r := fence(resource.FenceFailed, 16)
		mod(r)
		return r
	}
	runLifeCases(t, []lifeCase{
		{name: "records the result of the current period", setup: evacSetup5, typ: fsm.HostFenceRequestType,
			req: fence(resource.FenceFailed, 16), wantEvents: "updated:host/h3",
			check: recorded(resource.HostFence{State: resource.FenceFailed, Attempts: 1, Output: "ok", StartedAt: tDown, FinishedAt: tDown.Add(time.Second), StateIndex: 16})},
		{name: "the same record again writes nothing", typ: fsm.HostFenceRequestType, req: fence(resource.FenceRunning, 16),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup5(t, f)
				fsm.TestMustApply(t, f, 17, fsm.HostFenceRequestType, fence(resource.FenceRunning, 16))
			}},
		{name: "a record of an earlier period than the one recorded", typ: fsm.HostFenceRequestType, req: fence(resource.FenceSucceeded, 16),
			setup: func(t *testing.T, f *fsm.FSM) {
				evacSetup5(t, f)
				fsm.TestMustApply(t, f, 17, fsm.HostStateRequestType, hs5("h3", resource.HostReady, 3000))
				fsm.TestMustApply(t, f, 18, fsm.HostStateRequestType, hs5("h3", resource.HostDown, 3000))
				fsm.TestMustApply(t, f, 19, fsm.HostFenceRequestType, fence(resource.FenceFailed, 18))
			},
			wantErr: fsm.ErrWrongPhase},
		{name: "a record of a period the host has not reached", setup: evacSetup5, typ: fsm.HostFenceRequestType,
			req: fence(resource.FenceSucceeded, 17), wantErr: fsm.ErrWrongPhase},
		{name: "a host of the older format", setup: evacSetup, typ: fsm.HostFenceRequestType,
			req: fence(resource.FenceSucceeded, 15), wantErr: fsm.ErrWrongPhase},
		{name: "no such host", setup: evacSetup5, typ: fsm.HostFenceRequestType,
			req: bad(func(r *fsm.HostFenceRequest) { r.Host = "zz" }), wantErr: fsm.ErrNotFound},
		{name: "no period", setup: evacSetup5, typ: fsm.HostFenceRequestType,
			req: bad(func(r *fsm.HostFenceRequest) { r.Fence.StateIndex = 0 }), wantErr: resource.ErrInvalid},
		{name: "an unknown state", setup: evacSetup5, typ: fsm.HostFenceRequestType,
			req: bad(func(r *fsm.HostFenceRequest) { r.Fence.State = "done" }), wantErr: resource.ErrInvalid},
		{name: "no attempt", setup: evacSetup5, typ: fsm.HostFenceRequestType,
			req: bad(func(r *fsm.HostFenceRequest) { r.Fence.Attempts = 0 }), wantErr: resource.ErrInvalid},
		{name: "too much output", setup: evacSetup5, typ: fsm.HostFenceRequestType,
			req: bad(func(r *fsm.HostFenceRequest) { r.Fence.Output = strings.Repeat("x", resource.MaxFenceOutput+1) }), wantErr: resource.ErrInvalid},
		{name: "a time out of range in UTC", setup: evacSetup5, wantErr: resource.ErrInvalid,
			data: []byte("\x0d" + `{"host":"h3","fence":{"state":"failed","attempts":1,"exit_code":1,"state_index":16,"started_at":"0000-01-01T00:00:00+01:00"}}`)},
		{name: "an unknown field", halts: true, wantErr: fsm.ErrBadPayload,
			data: []byte("\x0d" + `{"host":"h3","fence":{"state":"succeeded","attempts":1,"state_index":16,"power":"off"}}`)},
	})
}

// TestFencingProtocol: the protocol 5 formats need protocol 5, and a
// protocol 4 FSM halts on a host-fence entry (as a build of it would).
func TestFencingProtocol(t *testing.T) {
	for _, tc := range []struct {
		t    fsm.MessageType
		req  any
		want int
	}{
		{fsm.HostFenceRequestType, &fsm.HostFenceRequest{}, 5},
		{fsm.HostStateRequestType, &fsm.HostStateRequest{DownGraceMS: 4000}, 5},
		{fsm.HostStateRequestType, &fsm.HostStateRequest{FenceAfterMS: 1}, 5},
		{fsm.EvacuateRequestType, &fsm.EvacuateRequest{Grace: time.Second}, 1},
		{fsm.EvacuateRequestType, &fsm.EvacuateRequest{StateIndex: 3}, 5},
		{fsm.EvacuateRequestType, &fsm.EvacuateRequest{FenceRequired: true}, 5},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{mustOp(t, fsm.EvacuateRequestType, &fsm.EvacuateRequest{DownForMS: 1})}}, 5},
		{fsm.BatchRequestType, &fsm.BatchRequest{Ops: []fsm.BatchOp{mustOp(t, fsm.HostStateRequestType, &fsm.HostStateRequest{DownGraceMS: 1})}}, 5},
	} {
		if got := fsm.RequiredProtocol(tc.t, tc.req); got != tc.want {
			t.Errorf("RequiredProtocol(%s, %+v) = %d, want %d", tc.t, tc.req, got, tc.want)
		}
	}
	old := fsm.New(fsm.Config{MaxProtocol: 4})
	res := fsm.TestApply(t, old, 1, fsm.HostFenceRequestType, fence(resource.FenceSucceeded, 1))
	if !errors.Is(res.Err, fsm.ErrHalted) || !errors.Is(old.Halted(), fsm.ErrUnknownCommand) {
		t.Fatalf("protocol 4 FSM on host-fence: %v (halted %v), want a halt on an unknown command", res.Err, old.Halted())
	}
}
