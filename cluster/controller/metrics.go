package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumoi/kumoi/internal/promutil"
)

// metrics are the leader loops' counters (deploy/prometheus/kumoi-alerts.yml).
type metrics struct {
	fenceRuns   *prometheus.CounterVec
	evacuations prometheus.Counter
	evacuated   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		fenceRuns: promutil.RegisterOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kumoi_fence_commands_total",
			Help: "Runs of --fence-command for down hosts by this controller while it led, by result (succeeded, failed).",
		}, []string{"result"})),
		evacuations: promutil.RegisterOrReuse(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kumoi_evacuations_total",
			Help: "Down hosts whose VMs this controller evacuated while it led (ha=restart VMs placed elsewhere, the others marked lost).",
		})),
		evacuated: promutil.RegisterOrReuse(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kumoi_evacuated_vms_total",
			Help: "VMs of down hosts this controller restarted elsewhere or marked lost while it led.",
		})),
	}
	// Both results from the start, so that rates work before the first.
	m.fenceRuns.WithLabelValues("succeeded")
	m.fenceRuns.WithLabelValues("failed")
	return m
}
