package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumoi/kumoi/fsm"
	"github.com/kumoi/kumoi/internal/promutil"
)

// Metrics are the controller's kumoi_ Prometheus metrics. Raft's own metrics
// come from go-metrics through a sink the controller registers separately.
//
// A nil *Metrics is valid and records nothing.
type Metrics struct {
	requestDuration   *prometheus.HistogramVec
	requestsInFlight  prometheus.Gauge
	applyDuration     *prometheus.HistogramVec
	applyErrors       *prometheus.CounterVec
	fsmHalted         prometheus.Gauge
	raftApplyDuration prometheus.Histogram
	forwarded         prometheus.Counter
	forwardStreams    *prometheus.GaugeVec
}

// latencyBuckets cover fast API calls through blocking queries (up to the
// 10m maximum wait) and event streams.
var latencyBuckets = []float64{
	.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 600,
}

// NewMetrics creates the kumoi_ metrics and registers them with reg (nil:
// not registered). Calling it again with the same registry — dev mode runs
// several controllers in one process — returns metrics backed by the
// collectors already registered, so every caller records into the same
// series. It panics if reg holds a different metric under one of the names,
// a programming error like prometheus.MustRegister's.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requestDuration: promutil.RegisterOrReuse(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kumoi_http_request_duration_seconds",
			Help:    "HTTP API requests by method, route and status code: time to the end of the response (blocking queries and event streams included; their routes end in ?index or are /v1/events).",
			Buckets: latencyBuckets,
		}, []string{"method", "route", "code"})),
		requestsInFlight: promutil.RegisterOrReuse(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kumoi_http_requests_in_flight",
			Help: "HTTP API requests being served, including blocking queries and event streams.",
		})),
		applyDuration: promutil.RegisterOrReuse(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kumoi_fsm_apply_duration_seconds",
			Help:    "Time the state machine took to apply one Raft log entry, by command type.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}, []string{"type"})),
		applyErrors: promutil.RegisterOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kumoi_fsm_apply_errors_total",
			Help: "Log entries the state machine rejected (validation, CAS, conflicts) or could not apply (the entry that halted it), by command type.",
		}, []string{"type"})),
		fsmHalted: promutil.RegisterOrReuse(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kumoi_fsm_halted",
			Help: "1 once the state machine met a committed log entry this build cannot apply and halted: the controller is out of service (GET /v1/status says why).",
		})),
		raftApplyDuration: promutil.RegisterOrReuse(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kumoi_raft_apply_duration_seconds",
			Help:    "Time from proposing a command through Raft to its being applied on this node, as seen by the HTTP API.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		})),
		forwarded: promutil.RegisterOrReuse(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kumoi_forwarded_requests_total",
			Help: "HTTP API requests this controller forwarded to the leader.",
		})),
		forwardStreams: promutil.RegisterOrReuse(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kumoi_forward_streams",
			Help: "Open forwarding streams (writes forwarded to the leader over one connection): side=\"to_leader\" is this controller's own (0 or 1), side=\"from_followers\" those it serves as the leader, side=\"from_clients\" the request streams Go SDK clients opened to it (docs/api.md \"Request streams\").",
		}, []string{"side"})),
	}
	m.forwardStreams.WithLabelValues(streamToLeader)
	m.forwardStreams.WithLabelValues(streamFromFollowers)
	m.forwardStreams.WithLabelValues(streamFromClients)
	// Show every command type from the start, so rates work before the
	// first error.
	for _, t := range fsm.MessageTypes {
		m.applyErrors.WithLabelValues(t.String())
	}
	return m
}

// ObserveApply records one applied log entry; wire it to fsm.FSM.OnApply.
func (m *Metrics) ObserveApply(t fsm.MessageType, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.applyDuration.WithLabelValues(t.String()).Observe(d.Seconds())
	if err != nil {
		m.applyErrors.WithLabelValues(t.String()).Inc()
	}
	if errors.Is(err, fsm.ErrHalted) {
		m.fsmHalted.Set(1)
	}
}

func (m *Metrics) observeRequest(method, route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		method = "other" // bound the label's values
	}
	m.requestDuration.WithLabelValues(method, route, strconv.Itoa(code)).Observe(d.Seconds())
}

func (m *Metrics) observeRaftApply(d time.Duration) {
	if m == nil {
		return
	}
	m.raftApplyDuration.Observe(d.Seconds())
}

func (m *Metrics) forwardedInc() {
	if m == nil {
		return
	}
	m.forwarded.Inc()
}

// The sides of kumoi_forward_streams.
const (
	streamToLeader      = "to_leader"
	streamFromFollowers = "from_followers"
	streamFromClients   = "from_clients"
)

func (m *Metrics) forwardStreamsAdd(side string, n float64) {
	if m != nil {
		m.forwardStreams.WithLabelValues(side).Add(n)
	}
}

func (m *Metrics) requestStarted() {
	if m != nil {
		m.requestsInFlight.Inc()
	}
}

func (m *Metrics) requestDone() {
	if m != nil {
		m.requestsInFlight.Dec()
	}
}
